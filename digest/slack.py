"""The daily brief posted to the configured Slack channel, exactly once per (channel, topic, day).

The Slack side of delivery, beside digest.mail: `post_brief` is what the worker's deliver task
and `briefcast slack post` call; the Block Kit it posts comes from digest.slack_blocks. It claims
the delivery through digest.delivery (channel "slack", target the channel id) and posts with
chat.postMessage.
Every post carries its idempotency key in Slack message metadata, so a sender that crashed
between posting and recording the post is settled by reading the channel (`confirm`), not by
posting again. Errors come out named: `SlackTransientError` (connection trouble, HTTP 429 with
its Retry-After, 5xx) is for the worker to retry; a permanent refusal (invalid_auth,
channel_not_found, ...) ends as a `failed` delivery carrying Slack's reason.
"""

from __future__ import annotations

import http.client
import logging
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from digest.delivery import (
    DeliveryAttempt,
    DeliveryOutcome,
    PermanentDeliveryError,
    TransientDeliveryError,
    deliver_once,
)
from digest.slack_blocks import brief_blocks, brief_text
from digest.summary.schema import DailyBrief, from_dict
from store.models import Brief
from store.settings import Settings

log = logging.getLogger(__name__)
METADATA_EVENT = "briefcast_brief"
CONFIRM_LOOKBACK = timedelta(days=7)
CONFIRM_PAGES = 5
TRANSIENT_SLACK_ERRORS = frozenset({"ratelimited", "rate_limited", "service_unavailable", "internal_error",
                                    "fatal_error", "request_timeout"})
HINTS = {
    "invalid_auth": "check BRIEFCAST_SLACK_BOT_TOKEN",
    "not_authed": "set BRIEFCAST_SLACK_BOT_TOKEN",
    "token_revoked": "the bot token was revoked: reinstall the app and set the new token",
    "account_inactive": "the bot token belongs to a deactivated app or user",
    "channel_not_found": "check BRIEFCAST_SLACK_CHANNEL (a channel id such as C0123456789) and that the bot can see it",
    "not_in_channel": "invite the bot to the channel (/invite @briefcast)",
    "is_archived": "the channel is archived",
    "missing_scope": "the app needs the chat:write scope",
    "invalid_blocks": "Slack rejected the Block Kit (a bug: please report the brief id)",
}


class SlackTransientError(TransientDeliveryError):
    """Slack could not take the post now; retry later (after `retry_after` seconds when Slack said)."""


class SlackNotConfigured(RuntimeError):
    """No bot token or no channel: nothing can be posted."""


class BriefUnreadable(ValueError):
    """A stored payload that no longer fits the DailyBrief shape; the message names the row."""


def load_brief(row: Brief) -> DailyBrief:
    try:
        return from_dict(DailyBrief, row.payload)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise BriefUnreadable(f"brief {row.id} ({row.topic}, {row.day}) cannot be read: {exc}") from None


def slack_posting_enabled(settings: Settings) -> bool:
    return bool(settings.slack_bot_token and settings.slack_bot_token.get_secret_value() and settings.slack_channel)


def web_client(settings: Settings):
    """A WebClient on `slack_api_url`, without the SDK's own retries: a retried chat.postMessage
    could post twice, so retrying is the worker's job, through the delivery claim."""
    from slack_sdk import WebClient

    base = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(token=token, base_url=base, timeout=int(settings.slack_timeout), retry_handlers=[])


def post_brief(settings: Settings, sessions: sessionmaker[Session], brief_id: int, *,
               worker_id: str = "slack") -> DeliveryOutcome | None:
    """Post brief `brief_id` to `settings.slack_channel` once. None if the brief is gone.

    Returns the delivery outcome: status `sent` (now), `already_sent`, `in_progress` (another
    sender holds the claim) or `failed` (a permanent refusal; `error` says why).
    Raises SlackTransientError (retry later) and SlackNotConfigured.
    """
    if not slack_posting_enabled(settings):
        raise SlackNotConfigured("set BRIEFCAST_SLACK_BOT_TOKEN and BRIEFCAST_SLACK_CHANNEL to post the brief to Slack")
    with sessions() as session:
        row = session.get(Brief, brief_id)
        if row is None:
            return None
        topic, day, brief = row.topic, row.day, load_brief(row)
    client, channel = web_client(settings), settings.slack_channel

    def send(attempt: DeliveryAttempt) -> str:
        metadata = {"event_type": METADATA_EVENT,
                    "event_payload": {"idempotency_key": attempt.idempotency_key, "topic": topic, "day": day}}
        response = call_slack(client, "chat_postMessage", channel=channel, text=brief_text(brief),
                              blocks=brief_blocks(brief), metadata=metadata, unfurl_links=False, unfurl_media=False)
        return str(response["ts"])

    def confirm(attempt: DeliveryAttempt) -> str | None:
        return find_posted(client, channel, attempt.idempotency_key)

    return deliver_once(sessions, channel="slack", target=channel, topic=topic, day=day, send=send,
                        confirm=confirm, worker_id=worker_id, brief_id=brief_id)


def find_posted(client, channel: str, key: str, now: datetime | None = None) -> str | None:
    """The ts of a message in `channel` carrying idempotency key `key`, or None.

    Without the channels:history scope the channel cannot be read: the answer is then None and
    the brief is posted again (at least once, never lost), with a warning saying why.
    """
    oldest = ((now or datetime.now(UTC)) - CONFIRM_LOOKBACK).timestamp()
    cursor = None
    for _ in range(CONFIRM_PAGES):
        try:
            page = call_slack(client, "conversations_history", channel=channel, oldest=f"{oldest:.6f}", limit=200,
                              include_all_metadata=True, cursor=cursor)
        except PermanentDeliveryError as exc:
            log.warning("cannot read %s to check for an earlier post (%s): posting again", channel, exc.reason)
            return None
        for message in page.get("messages", []):
            meta = message.get("metadata") or {}
            if meta.get("event_type") == METADATA_EVENT and (meta.get("event_payload") or {}).get("idempotency_key") == key:
                return str(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


def call_slack(client, method: str, **arguments):
    """One Web API call; failures become SlackTransientError or PermanentDeliveryError."""
    from slack_sdk.errors import SlackApiError

    try:
        return getattr(client, method)(**{k: v for k, v in arguments.items() if v is not None})
    except SlackApiError as exc:
        raise classify_api_error(method, exc) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, timeout
        raise SlackTransientError(f"cannot reach the Slack API at {client.base_url} ({method}): {exc}",
                                  maybe_delivered=_maybe_sent(exc)) from None


def classify_api_error(method: str, exc) -> Exception:
    status = exc.response.status_code
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    error = str(data.get("error") or f"HTTP {status}")
    if status == 429 or error in ("ratelimited", "rate_limited"):
        wait = _retry_after(exc.response.headers)
        return SlackTransientError(f"Slack rate-limited {method} (HTTP {status}): retry after {wait:g} s",
                                   retry_after=wait)
    if status >= 500 or error in TRANSIENT_SLACK_ERRORS:
        # The post may have gone through before the failure: the delivery stays `sending` and
        # the next attempt looks in the channel before posting.
        return SlackTransientError(f"Slack failed {method} (HTTP {status}): {error}", maybe_delivered=True)
    hint = HINTS.get(error)
    return PermanentDeliveryError(f"Slack refused {method}: {error}" + (f" ({hint})" if hint else ""))


def _retry_after(headers) -> float:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            value = value[0] if isinstance(value, list) else value
            try:
                return max(1.0, float(value))
            except ValueError:
                break
    return 30.0


def _maybe_sent(exc: BaseException) -> bool:
    """Refused or unresolvable: the request never left. A timeout or reset: it may have arrived."""
    reason = getattr(exc, "reason", exc)
    return not isinstance(reason, (ConnectionRefusedError, socket.gaierror))
