"""Exactly-once delivery for every channel (email, Slack): a claim row per (channel, target,
topic, day), taken before sending and completed after.

States of a `deliveries` row:

    claimed ──► sending ──► sent
       │           │
       └─► failed ◄┘          failed: a permanent refusal, kept with its reason

- **claimed**: the unique idempotency key is ours; nothing irreversible has happened yet. The
  sender prepares here (SMTP: connect, STARTTLS, AUTH, MAIL FROM, RCPT TO are all revocable:
  a server discards a transaction that never reached the end of DATA).
- **sending**: committed right before the one irreversible step (SMTP: DATA; Slack:
  chat.postMessage). From here on the receiver may have the message.
- **sent**: the receiver acknowledged it; the message id (Message-ID / Slack ts) is stored.

A second claimer of a live claim loses and does nothing. A claim older than the lease belongs to
a crashed (or hopelessly stalled) sender and is taken over, by rule:

- stuck in **claimed**: nothing reached the receiver, so it is sent now — no loss, no duplicate.
- stuck in **sending**: the crash fell between "about to transmit" and "acknowledged", and the
  receiver may or may not have it. If the channel can look (`confirm`: Slack can search the
  channel for the key), its answer settles it exactly. SMTP cannot be asked, so the message is
  sent again *with the same Message-ID* (derived from the idempotency key): at-least-once at the
  SMTP level, one message in a mailbox whose delivery agent or client drops repeated
  Message-IDs (Gmail, Sieve `duplicate`, procmail `formail -D`), never a lost brief. The window
  that can produce that repeat is the DATA transfer and one database commit, milliseconds.

Re-running a day therefore sends nothing new: sent rows are final, live claims are skipped,
failed rows stay failed unless asked (`retry_failed`) once the cause is fixed.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from store.models import Delivery, utcnow

log = logging.getLogger(__name__)

CLAIMED, SENDING, SENT, FAILED = "claimed", "sending", "sent", "failed"
CHANNELS = ("email", "slack")


class DeliveryError(Exception):
    pass


class TransientDeliveryError(DeliveryError):
    """Try again later (connection refused, timeout, SMTP 4xx, Slack rate limit): the claim is released.

    `maybe_delivered`: the connection broke after transmitting began, so the receiver may have the
    message; the row stays `sending` and the next attempt resolves it by the crash rule.
    """

    def __init__(self, reason: str, *, maybe_delivered: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.maybe_delivered = maybe_delivered
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The receiver refused for good (SMTP 5xx, unknown Slack channel): the row is failed with the reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ClaimLost(DeliveryError):
    """Our claim expired and another sender took the delivery over: do not transmit."""


@dataclass
class DeliveryAttempt:
    """What a `send` callable is given: who it is delivering, and the commit point to call."""

    delivery_id: int
    idempotency_key: str
    channel: str
    target: str
    attempt: int  # 1 for the first try
    resumed_from: str | None  # claimed | sending: this run took over a crashed sender's claim
    _mark_sending: Callable[[], None] = field(repr=False)
    transmitting_marked: bool = False

    def transmitting(self) -> None:
        """Call right before the irreversible step. Raises ClaimLost if the claim is no longer ours."""
        if not self.transmitting_marked:
            self._mark_sending()
            self.transmitting_marked = True


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str  # sent (now) | already_sent | in_progress | failed
    delivery_id: int
    idempotency_key: str
    channel: str
    target: str
    attempts: int
    message_id: str | None = None
    error: str | None = None
    resumed_from: str | None = None  # claimed | sending when a crashed sender's claim was taken over
    retry_after: float | None = None  # in_progress: seconds until that claim's lease runs out

    @property
    def sent_now(self) -> bool:
        return self.status == SENT


def idempotency_key(channel: str, target: str, topic: str, day: str) -> str:
    """sha256 of channel|target|topic|day: the same delivery always has the same key."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    return hashlib.sha256(f"{channel}|{target.strip().lower()}|{topic}|{day}".encode()).hexdigest()


def deliver_once(
    sessions: sessionmaker[Session],
    *,
    channel: str,
    target: str,
    topic: str,
    day: str,
    send: Callable[[DeliveryAttempt], str],
    worker_id: str,
    brief_id: int | None = None,
    subscriber_id: int | None = None,
    lease_seconds: float = 600.0,
    two_phase: bool = False,
    confirm: Callable[[DeliveryAttempt], str | None] | None = None,
    retry_failed: bool = False,
    now: Callable[[], datetime] = utcnow,
) -> DeliveryOutcome:
    """Send at most one message per (channel, target, topic, day), and never lose it.

    `send(attempt)` transmits and returns the message id (Message-ID, Slack ts). With
    `two_phase=False` the row is marked `sending` just before `send` is called; with
    `two_phase=True`, `send` must call `attempt.transmitting()` itself right before the
    irreversible step (SMTP: after RCPT TO, before DATA), so failures before it stay clean.
    `confirm(attempt)`, when the channel can look, says whether a crashed `sending` attempt
    landed (its message id) or not (None).

    Raises TransientDeliveryError (claim released: retry later); PermanentDeliveryError is
    recorded and returned as status `failed`.
    """
    key = idempotency_key(channel, target, topic, day)
    token = f"{worker_id}:{uuid.uuid4().hex[:12]}"
    claim = _claim(sessions, key, token, lease_seconds, retry_failed, now, dict(
        channel=channel, target=target, topic=topic, day=day, brief_id=brief_id, subscriber_id=subscriber_id))
    if isinstance(claim, DeliveryOutcome):
        return claim
    attempt = DeliveryAttempt(
        delivery_id=claim.id, idempotency_key=key, channel=channel, target=target, attempt=claim.attempts,
        resumed_from=claim.resumed_from, _mark_sending=lambda: _mark_sending(sessions, claim.id, token, now),
    )
    if claim.resumed_from == SENDING and confirm is not None:
        landed = confirm(attempt)
        if landed:
            return _complete(sessions, attempt, token, landed, now)
    return _transmit(sessions, attempt, token, send, two_phase, now)


@dataclass
class _Claim:
    id: int
    attempts: int
    resumed_from: str | None


def _claim(sessions, key, token, lease_seconds, retry_failed, now, fields) -> _Claim | DeliveryOutcome:
    at = now()
    try:
        with sessions() as session, session.begin():
            row = Delivery(idempotency_key=key, status=CLAIMED, attempts=1, claimed_at=at, claimed_by=token, **fields)
            session.add(row)
            session.flush()
            return _Claim(row.id, 1, None)
    except IntegrityError as exc:
        refused = exc  # the key exists (someone claimed this delivery before), or a foreign key is wrong
    with sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.idempotency_key == key)).first()
    if row is None:
        raise refused  # not a duplicate key: e.g. a brief_id or subscriber_id that does not exist
    decision = _decide(row, at, lease_seconds, retry_failed)
    if isinstance(decision, DeliveryOutcome):
        return decision
    # Compare-and-set on what we read, in its own write transaction (SQLite cannot upgrade a
    # read snapshot that another writer has moved past): of two takers, one matches, one not.
    with sessions() as session, session.begin():
        taken = session.execute(
            update(Delivery)
            .where(Delivery.id == row.id, Delivery.status == row.status, _same_claimant(row.claimed_by))
            .values(status=CLAIMED if row.status == FAILED else row.status, claimed_by=token, claimed_at=at,
                    attempts=Delivery.attempts + 1)
        ).rowcount
        if taken != 1:  # another sender took it between our read and our write
            return _outcome(row, "in_progress", retry_after=lease_seconds)
        if decision:
            log.warning("delivery %s: taking over a claim left in %r by %s", row.id, row.status, row.claimed_by)
        return _Claim(row.id, row.attempts + 1, decision or None)


def _decide(row: Delivery, at: datetime, lease_seconds: float, retry_failed: bool) -> str | DeliveryOutcome:
    """'' to claim a released row, 'claimed'/'sending' to take over a crashed one, or an outcome to stop."""
    if row.status == SENT:
        return _outcome(row, "already_sent")
    if row.status == FAILED:
        return "" if retry_failed else _outcome(row, FAILED)
    if row.claimed_at is None:  # released after a transient error
        return row.status if row.status == SENDING else ""
    held = (at - row.claimed_at).total_seconds()
    if held < lease_seconds:
        return _outcome(row, "in_progress", retry_after=lease_seconds - held)
    return row.status


def _same_claimant(claimed_by: str | None):
    return Delivery.claimed_by.is_(None) if claimed_by is None else Delivery.claimed_by == claimed_by


def _transmit(sessions, attempt: DeliveryAttempt, token: str, send, two_phase: bool, now) -> DeliveryOutcome:
    try:
        if not two_phase:
            attempt.transmitting()
        message_id = send(attempt)
    except ClaimLost:
        return _outcome_by_id(sessions, attempt.delivery_id, "in_progress")
    except PermanentDeliveryError as exc:
        return _fail(sessions, attempt, exc.reason, now)
    except TransientDeliveryError as exc:
        # An earlier attempt that may have landed keeps the row `sending`, so `confirm` is still asked.
        _release(sessions, attempt, token, exc.reason,
                 keep_sending=exc.maybe_delivered or attempt.resumed_from == SENDING)
        raise
    except BaseException:
        # A bug or a kill: before transmitting, free the claim; after, leave `sending` for the lease rule.
        if not attempt.transmitting_marked:
            _release(sessions, attempt, token, "sender raised before transmitting",
                     keep_sending=attempt.resumed_from == SENDING)
        raise
    return _complete(sessions, attempt, token, message_id, now)


def _mark_sending(sessions, delivery_id: int, token: str, now) -> None:
    with sessions() as session, session.begin():
        updated = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.claimed_by == token, Delivery.status.in_((CLAIMED, SENDING)))
            .values(status=SENDING, claimed_at=now())
        ).rowcount
    if updated != 1:
        raise ClaimLost(f"delivery {delivery_id}: the claim was taken over")


def _complete(sessions, attempt: DeliveryAttempt, token: str, message_id: str, now) -> DeliveryOutcome:
    with sessions() as session, session.begin():
        row = session.get(Delivery, attempt.delivery_id)
        if row.claimed_by != token:
            log.error("delivery %s: sent after our claim was taken over by %s", row.id, row.claimed_by)
        row.status, row.sent_at, row.message_id, row.error = SENT, now(), message_id, None
        return _outcome(row, SENT, resumed_from=attempt.resumed_from)


def _fail(sessions, attempt: DeliveryAttempt, reason: str, now) -> DeliveryOutcome:
    with sessions() as session, session.begin():
        row = session.get(Delivery, attempt.delivery_id)
        row.status, row.error, row.claimed_at = FAILED, reason[:4000], None
        return _outcome(row, FAILED, resumed_from=attempt.resumed_from)


def _release(sessions, attempt: DeliveryAttempt, token: str, reason: str, *, keep_sending: bool) -> None:
    """Free the claim for the next try; `sending` stays only when the receiver may have the message."""
    with sessions() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id == attempt.delivery_id, Delivery.claimed_by == token)
            .values(status=SENDING if keep_sending else CLAIMED, claimed_by=None, claimed_at=None, error=reason[:4000])
        )


def _outcome(row: Delivery, status: str, **extra) -> DeliveryOutcome:
    return DeliveryOutcome(
        status=status, delivery_id=row.id, idempotency_key=row.idempotency_key, channel=row.channel,
        target=row.target, attempts=row.attempts, message_id=row.message_id, error=row.error, **extra,
    )


def _outcome_by_id(sessions, delivery_id: int, status: str) -> DeliveryOutcome:
    with sessions() as session:
        return _outcome(session.get(Delivery, delivery_id), status)


def deliveries_for(sessions: sessionmaker[Session], *, topic: str, day: str, channel: str | None = None) -> list[Delivery]:
    """Every delivery row of a topic's day (detached), for reports and tests."""
    with sessions() as session:
        query = select(Delivery).where(Delivery.topic == topic, Delivery.day == day).order_by(Delivery.id)
        if channel:
            query = query.where(Delivery.channel == channel)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows
