"""Slack's retries, handled once.

Slack resends an event it thinks we missed (X-Slack-Retry-Num / X-Slack-Retry-Reason, up to three
times within about five minutes) and a signed request can be replayed inside the five-minute
signature window. Each event_id / trigger_id is claimed in the `slack_requests` table before any
work: the unique key makes the claim atomic across API workers, on SQLite (the embedded default,
where there may be no Redis at all) as on PostgreSQL. A retry of something claimed is acknowledged
and does nothing. A handler that fails releases its claim, so Slack's next retry can do the work.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from store.models import SlackRequest

log = logging.getLogger(__name__)
KEEP = timedelta(days=1)  # far beyond Slack's retry window; older claims are pruned


def request_key(body: dict) -> tuple[str, str] | None:
    """(key, kind) for a request worth de-duplicating; None for url_verification and the like."""
    if not isinstance(body, dict):
        return None
    if body.get("type") == "event_callback" and body.get("event_id"):
        return f"event:{body['event_id']}"[:160], "event"
    if body.get("command") and body.get("trigger_id"):
        return f"command:{body['trigger_id']}"[:160], "command"
    return None


def claim(sessions: sessionmaker[Session], key: str, kind: str) -> bool:
    """True for the first claim of `key`; False when it was taken before (a retry or a replay)."""
    now = datetime.now(UTC)
    try:
        with sessions() as session, session.begin():
            session.add(SlackRequest(key=key, kind=kind, received_at=now))
    except IntegrityError:
        return False
    _prune(sessions, now - KEEP)
    return True


def release(sessions: sessionmaker[Session], key: str | None) -> None:
    if not key:
        return
    with sessions() as session, session.begin():
        session.execute(delete(SlackRequest).where(SlackRequest.key == key))


def _prune(sessions: sessionmaker[Session], before: datetime) -> None:
    try:
        with sessions() as session, session.begin():
            session.execute(delete(SlackRequest).where(SlackRequest.received_at < before))
    except Exception as exc:  # pruning is housekeeping: a busy database must not fail the request
        log.warning("could not prune old slack_requests rows: %s", exc)
