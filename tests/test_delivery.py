"""Exactly once: the delivery claim on SQLite and PostgreSQL, senders killed at each point of an
SMTP delivery (real processes, a real SMTP server on loopback), racing senders, lease takeover."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from digest.delivery import (
    PermanentDeliveryError,
    TransientDeliveryError,
    deliver_once,
    deliveries_for,
    idempotency_key,
)
from digest.mail import send_brief_email
from digest.subscribers import add_subscriber
from store.models import utcnow
from tests.email_helpers import SmtpServer, mail_settings, store_brief

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-12-01"


def once(sessions, send, *, worker="w1", target="ana@reader.example", **kw):
    return deliver_once(sessions, channel="email", target=target, topic="ai-geopolitics", day=DAY, send=send,
                        worker_id=worker, **kw)


class Sender:
    """A send callable that records its calls; `fail` raises instead."""

    def __init__(self, fail: Exception | None = None):
        self.calls, self.fail = [], fail

    def __call__(self, attempt):
        self.calls.append(attempt)
        if self.fail:
            raise self.fail
        return f"<m-{attempt.idempotency_key[:8]}@x>"


# --- the claim itself, on both databases ---------------------------------------------------------


def test_key_is_stable_and_names_the_delivery():
    a = idempotency_key("email", "Ana@Reader.example ", "ai-geopolitics", DAY)
    assert a == idempotency_key("email", "ana@reader.example", "ai-geopolitics", DAY) and len(a) == 64
    assert a != idempotency_key("slack", "ana@reader.example", "ai-geopolitics", DAY)
    assert a != idempotency_key("email", "ana@reader.example", "ai-geopolitics", "2026-12-02")
    with pytest.raises(ValueError, match="unknown channel"):
        idempotency_key("fax", "x", "t", DAY)


def test_sent_once_then_nothing(sessions):
    send = Sender()
    first, second = once(sessions, send), once(sessions, send, worker="w2")
    assert (first.status, second.status) == ("sent", "already_sent") and len(send.calls) == 1
    assert second.message_id == first.message_id
    [row] = deliveries_for(sessions, topic="ai-geopolitics", day=DAY)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None


def test_a_live_claim_makes_the_second_claimer_do_nothing(sessions):
    inner = Sender()
    seen = {}

    def slow(attempt):  # while this sender holds the claim, another one tries
        seen["other"] = once(sessions, inner, worker="w2")
        return "<m@x>"

    outcome = once(sessions, slow, lease_seconds=600)
    assert outcome.status == "sent"
    assert seen["other"].status == "in_progress" and 0 < seen["other"].retry_after <= 600
    assert inner.calls == []


def test_a_stalled_sender_overtaken_after_its_lease_does_not_transmit(sessions):
    """Two-phase: the first sender stalls before DATA; its lease runs out; a second sender takes
    over and sends; the first one's commit point then refuses (ClaimLost): one message."""
    second = Sender()
    clock = {"t": utcnow()}
    now = lambda: clock["t"]  # noqa: E731
    outcomes = {}

    def stalled(attempt):
        clock["t"] += timedelta(seconds=700)
        outcomes["second"] = once(sessions, second, worker="w2", now=now, lease_seconds=600)
        attempt.transmitting()  # too late: raises ClaimLost
        raise AssertionError("transmitted after losing the claim")

    first = once(sessions, stalled, two_phase=True, now=now, lease_seconds=600)
    assert outcomes["second"].status == "sent" and outcomes["second"].resumed_from == "claimed"
    assert first.status == "in_progress" and len(second.calls) == 1


def test_transient_errors_release_the_claim_for_a_retry(sessions):
    with pytest.raises(TransientDeliveryError):
        once(sessions, Sender(TransientDeliveryError("421 busy")))
    [row] = deliveries_for(sessions, topic="ai-geopolitics", day=DAY)
    assert (row.status, row.claimed_at, row.error) == ("claimed", None, "421 busy")
    retry = once(sessions, Sender())
    assert retry.status == "sent" and retry.attempts == 2 and retry.resumed_from is None


def test_a_break_after_transmitting_began_is_resolved_by_confirm(sessions):
    with pytest.raises(TransientDeliveryError):
        once(sessions, Sender(TransientDeliveryError("reset during DATA", maybe_delivered=True)))
    [row] = deliveries_for(sessions, topic="ai-geopolitics", day=DAY)
    assert row.status == "sending"  # the receiver may have it
    send = Sender()
    landed = once(sessions, send, confirm=lambda attempt: "<landed@x>")  # the channel can look: it is there
    assert landed.status == "sent" and landed.message_id == "<landed@x>" and landed.resumed_from == "sending"
    assert send.calls == []


def test_confirm_saying_no_sends_again(sessions):
    with pytest.raises(TransientDeliveryError):
        once(sessions, Sender(TransientDeliveryError("reset", maybe_delivered=True)))
    send = Sender()
    outcome = once(sessions, send, confirm=lambda attempt: None)
    assert outcome.status == "sent" and len(send.calls) == 1 and send.calls[0].resumed_from == "sending"


def test_permanent_errors_are_recorded_and_not_retried(sessions):
    outcome = once(sessions, Sender(PermanentDeliveryError("550 no such user")))
    assert outcome.status == "failed" and outcome.error == "550 no such user"
    send = Sender()
    assert once(sessions, send).status == "failed" and send.calls == []
    assert once(sessions, send, retry_failed=True).status == "sent" and len(send.calls) == 1


def test_a_wrong_brief_id_is_an_error_not_a_claim(sessions):
    from sqlalchemy.exc import IntegrityError

    send = Sender()
    with pytest.raises(IntegrityError):
        once(sessions, send, brief_id=424242)  # no such brief: the foreign key refuses the row
    assert send.calls == [] and deliveries_for(sessions, topic="ai-geopolitics", day=DAY) == []


def test_a_bug_in_the_sender_before_transmitting_frees_the_claim(sessions):
    def broken(attempt):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        once(sessions, broken, two_phase=True)
    [row] = deliveries_for(sessions, topic="ai-geopolitics", day=DAY)
    assert row.status == "claimed" and row.claimed_at is None
    assert once(sessions, Sender()).status == "sent"


# --- real processes killed at each point, a real SMTP server -------------------------------------

CRASHING_SENDER = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from digest.mail import SmtpConfig, SmtpTransport, send_brief_email
    from store.db import open_database
    from store.settings import Settings

    point, subscriber_id, brief_id, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    settings = Settings()
    sessions = open_database(settings.db_url)

    def die(at):
        if point == at:
            os.kill(os.getpid(), signal.SIGKILL)

    class Crashing(SmtpTransport):
        def send(self, message, *, before_data=lambda: None):
            die("claimed")  # the claim is committed; nothing transmitted
            def commit_point():
                before_data()
                die("sending")  # `sending` committed; DATA not started
            message_id = super().send(message, before_data=commit_point)
            die("accepted")  # the server has the message; `sent` not committed
            return message_id

    while go and not Path(go).exists():  # racers start together
        time.sleep(0.005)
    outcome = send_brief_email(settings, sessions, subscriber_id=subscriber_id, brief_id=brief_id,
                               worker_id=f"proc-{os.getpid()}", transport=Crashing(SmtpConfig.from_settings(settings)))
    print(outcome.status if outcome else "none")
""")


@pytest.fixture
def mail_world(tmp_path, db_url, sessions):
    server = SmtpServer().start()
    settings = mail_settings(tmp_path, db_url, server.port)
    subscriber, _ = add_subscriber(sessions, "ana@reader.example", topics=["ai-geopolitics"])
    brief_id = store_brief(sessions)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")} | {
        "BRIEFCAST_CONFIG": str(tmp_path / "absent.toml"), "BRIEFCAST_DATABASE_URL": db_url,
        "BRIEFCAST_DATA_DIR": str(tmp_path / "data"), "BRIEFCAST_SMTP_HOST": "127.0.0.1",
        "BRIEFCAST_SMTP_PORT": str(server.port), "BRIEFCAST_SMTP_FROM": settings.smtp_from,
    }
    yield settings, subscriber.id, brief_id, server, env
    server.stop()


def start_sender(env, point, subscriber_id, brief_id, go="") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CRASHING_SENDER, point, str(subscriber_id), str(brief_id), go],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("point, row_left, received_at_crash", [
    ("claimed", "claimed", 0),
    ("sending", "sending", 0),
    ("accepted", "sending", 1),
])
def test_a_sender_killed_at_each_point_is_resolved(mail_world, sessions, point, row_left, received_at_crash):
    settings, subscriber_id, brief_id, server, env = mail_world
    proc = start_sender(env, point, subscriber_id, brief_id)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, err  # SIGKILL: no cleanup ran
    [row] = deliveries_for(sessions, topic="ai-geopolitics", day=DAY)
    assert row.status == row_left and row.claimed_by.startswith("proc-")
    assert len(server.received) == received_at_crash

    # Within the lease the dead sender's claim still stands: nobody sends.
    waiting = send_brief_email(settings, sessions, subscriber_id=subscriber_id, brief_id=brief_id, worker_id="next")
    assert waiting.status == "in_progress" and len(server.received) == received_at_crash

    # Once the lease has run out, the next run takes over by the rule for that state.
    expired = settings.model_copy(update={"delivery_lease_seconds": 0.0})
    outcome = send_brief_email(expired, sessions, subscriber_id=subscriber_id, brief_id=brief_id, worker_id="next")
    assert outcome.status == "sent" and outcome.resumed_from == row_left and outcome.attempts == 2
    again = send_brief_email(expired, sessions, subscriber_id=subscriber_id, brief_id=brief_id, worker_id="later")
    assert again.status == "already_sent"

    ids = server.handler.message_ids()
    assert set(ids) == {outcome.message_id}  # never lost; one Message-ID, whatever happened
    if point == "accepted":
        # The one window SMTP cannot see into: the server accepted, the sender died before
        # recording it. The copy is re-sent with the SAME Message-ID, so a mailbox that drops
        # repeated Message-IDs (Gmail, Sieve "duplicate", formail -D) holds one brief.
        assert len(ids) == 2
    else:
        assert len(ids) == 1  # nothing had reached the server: exactly one message


def test_racing_senders_send_one_message(mail_world, sessions, tmp_path):
    settings, subscriber_id, brief_id, server, env = mail_world
    go = tmp_path / "go"
    procs = [start_sender(env, "none", subscriber_id, brief_id, str(go)) for _ in range(3)]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(out.strip())
    assert sorted(results).count("sent") == 1, results
    assert set(results) <= {"sent", "in_progress", "already_sent"}
    assert len(server.received) == 1
