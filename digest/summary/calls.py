"""Every generative model call, logged to model_calls: the prompt (messages as JSON) and its hash,
the reply's text, backend, model, purpose, tokens, seconds, outcome (ok | retried | invalid |
fallback | error | too_long) and the error text, so a bad summary can be audited.

The extractive backend makes no model call and logs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from store.models import ModelCall

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRecord:
    backend: str
    model: str
    purpose: str
    prompt_hash: str
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    outcome: str
    error: str | None = None
    prompt: str | None = None  # the messages as JSON
    response: str | None = None


def prompt_text(messages: list[dict]) -> str:
    return json.dumps(messages, ensure_ascii=False)


def prompt_hash(messages: list[dict], schema: dict | None = None) -> str:
    payload = json.dumps({"messages": messages, "schema": schema}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def record_call(sessions: sessionmaker[Session] | None, record: CallRecord) -> None:
    """One model_calls row; a logging failure is reported, never raised into the summary."""
    if sessions is None:
        return
    try:
        with sessions() as session:
            session.add(ModelCall(**record.__dict__))
            session.commit()
    except Exception as exc:  # noqa: BLE001  the summary matters more than its log line
        log.warning("could not log a model call (%s %s): %s", record.backend, record.purpose, exc)


class CallLog:
    """Where a backend's calls go: the database (when given sessions) and a short memory of the
    latest, which benchmarks and tests read to count calls."""

    def __init__(self, sessions: sessionmaker[Session] | None = None, keep: int = 1000) -> None:
        self.sessions = sessions
        self.recent: deque[CallRecord] = deque(maxlen=keep)
        self.count = 0
        self._lock = threading.Lock()

    def record(self, record: CallRecord) -> None:
        with self._lock:
            self.recent.append(record)
            self.count += 1
        record_call(self.sessions, record)
