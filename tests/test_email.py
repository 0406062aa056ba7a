"""The email brief through a real SMTP server on loopback (aiosmtpd): what it received, parsed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.delivery import TransientDeliveryError, deliveries_for, idempotency_key
from digest.mail import SmtpConfig, SmtpTransport, message_id_for, send_brief_email, write_brief_files
from digest.subscribers import add_subscriber, list_subscribers
from tests.email_helpers import Recorder, SmtpServer, card, free_port, mail_settings, sample_brief, store_brief

DAY = "2026-12-01"


@pytest.fixture
def world(tmp_path, sqlite_url, smtp):
    from store.db import open_database

    settings = mail_settings(tmp_path, sqlite_url, smtp.port)
    sessions = open_database(settings.db_url)
    subscriber, _ = add_subscriber(sessions, "ana@reader.example", name="Ana Lima", persona="Director of AI/ML",
                                   topics=["ai-geopolitics"], timezone="Europe/Paris")
    brief = sample_brief()  # the first story has a card for Ana's persona too
    brief.cards.insert(1, card(1, "Beijing answers the new chip rules", persona="Director of AI/ML"))
    yield settings, sessions, subscriber, store_brief(sessions, brief)
    sessions.kw["bind"].dispose()


def test_the_received_message_has_both_parts_list_headers_and_clean_links(world, smtp):
    settings, sessions, subscriber, brief_id = world
    outcome = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
    assert outcome.status == "sent" and outcome.attempts == 1
    assert len(smtp.received) == 1
    got = smtp.received[0]
    assert got.mail_from == "brief@briefs.example" and got.rcpt_tos == ["ana@reader.example"]
    msg = got.message
    key = idempotency_key("email", "ana@reader.example", "ai-geopolitics", DAY)
    assert msg["Message-ID"] == message_id_for(key, settings.smtp_from) == outcome.message_id
    assert msg["Message-ID"].endswith("@briefs.example>")
    assert msg["To"] == "Ana Lima <ana@reader.example>"
    assert msg["Subject"].startswith("AI geopolitics brief, Tuesday 1 December 2026")
    assert msg["Date"]
    token = subscriber.unsubscribe_token
    unsub = msg["List-Unsubscribe"]
    assert f"<https://briefs.example/unsubscribe/{token}>" in unsub
    assert re.search(r"<mailto:brief@briefs\.example\?subject=unsubscribe%20" + re.escape(token) + ">", unsub)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw_header = re.search(rb"^List-Unsubscribe: (.*)$", got.raw, re.M).group(1)  # as sent: no encoded-words
    assert raw_header.decode("ascii").strip() == unsub and b"=?" not in raw_header
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]  # the last part is the preferred one
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert text.count("KEY TAKEAWAY FOR DIRECTOR OF AI/ML") == 1  # her card for the first story, the general ones after
    assert f"https://briefs.example/unsubscribe/{token}" in text
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert "https://news.example/1001" in hrefs and "https://pod.example/ep41#t=125" in hrefs
    assert f"https://briefs.example/unsubscribe/{token}" in hrefs
    for part in (text, html):
        assert "<script" not in part.lower() and "onerror" not in part.lower() and "javascript:" not in part.lower()


def test_a_second_run_sends_nothing(world, smtp):
    settings, sessions, subscriber, brief_id = world
    first = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="a")
    second = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="b")
    assert (first.status, second.status) == ("sent", "already_sent")
    assert second.message_id == first.message_id
    assert len(smtp.received) == 1


def test_permanent_refusal_is_failed_with_the_reason(world, smtp):
    settings, sessions, subscriber, brief_id = world
    smtp.handler.refuse = "550 5.1.1 mailbox unavailable"
    outcome = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
    assert outcome.status == "failed" and "550" in outcome.error and "mailbox unavailable" in outcome.error
    smtp.handler.refuse = None
    again = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
    assert again.status == "failed" and len(smtp.received) == 0  # not retried by itself
    fixed = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t",
                             retry_failed=True)
    assert fixed.status == "sent" and len(smtp.received) == 1


def test_a_4xx_reply_is_transient_and_the_retry_sends_once(world, smtp):
    settings, sessions, subscriber, brief_id = world
    smtp.handler.refuse = "451 4.3.0 try again later"
    with pytest.raises(TransientDeliveryError, match="451"):
        send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
    [row] = deliveries_for(sessions, topic="ai-geopolitics", day=DAY)
    assert row.status == "claimed" and row.claimed_at is None and "451" in row.error  # released, retryable
    smtp.handler.refuse = None
    outcome = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
    assert outcome.status == "sent" and outcome.attempts == 2 and len(smtp.received) == 1


def test_server_down_then_up_sends_once_late(tmp_path, sqlite_url):
    from store.db import open_database

    port = free_port()
    settings = mail_settings(tmp_path, sqlite_url, port)
    sessions = open_database(settings.db_url)
    subscriber, _ = add_subscriber(sessions, "ana@reader.example", topics=["ai-geopolitics"])
    brief_id = store_brief(sessions)
    for _ in range(2):  # nothing listens on the port: connection refused, twice
        with pytest.raises(TransientDeliveryError, match="ConnectionRefused"):
            send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
    server = SmtpServer(port=port).start()
    try:
        late = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
        again = send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id, worker_id="t")
    finally:
        server.stop()
    assert late.status == "sent" and late.attempts == 3 and again.status == "already_sent"
    assert len(server.received) == 1


def test_smtp_auth_uses_the_configured_credentials(tmp_path, sqlite_url):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"brief" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself

    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=authenticator,  # loopback only
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        from email.message import EmailMessage

        message = EmailMessage()
        message["From"], message["To"], message["Subject"], message["Message-ID"] = (
            "b <brief@briefs.example>", "ana@reader.example", "hi", "<m1@briefs.example>")
        message.set_content("hello")
        good = SmtpConfig("127.0.0.1", port, "none", "brief", "s3cret", 10.0, "b <brief@briefs.example>")
        assert SmtpTransport(good).send(message) == "<m1@briefs.example>"
        bad = SmtpConfig("127.0.0.1", port, "none", "brief", "wrong", 10.0, "b <brief@briefs.example>")
        from digest.delivery import PermanentDeliveryError

        with pytest.raises(PermanentDeliveryError, match="535"):
            SmtpTransport(bad).send(message)
    finally:
        controller.stop()
    assert seen[0] == (b"brief", b"s3cret") and len(recorder.received) == 1


def test_files_written_for_the_day(tmp_path, sqlite_url):
    settings = mail_settings(tmp_path, sqlite_url, 25)
    files = write_brief_files(settings, sample_brief(DAY))
    assert files.html.parent == settings.data_dir / "briefs" / "ai-geopolitics" / DAY
    import email
    import email.policy
    import json

    eml = email.message_from_bytes(files.eml.read_bytes(), policy=email.policy.default)
    assert eml["To"] == settings.preview_to and eml["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    sent_html = eml.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip("\n")
    assert sent_html == files.html.read_text(encoding="utf-8").rstrip("\n")
    assert json.loads(files.json.read_text())["day"] == DAY
    assert "KEY INSIGHTS" in files.text.read_text()


def test_cli_digest_writes_files_and_sends_once(tmp_path, sqlite_url, smtp, monkeypatch):
    from api.cli import app
    from store.db import open_database

    out = tmp_path / "out"
    env = {"BRIEFCAST_DATA_DIR": str(tmp_path / "data"), "BRIEFCAST_DATABASE_URL": sqlite_url,
           "BRIEFCAST_SMTP_HOST": "127.0.0.1", "BRIEFCAST_SMTP_PORT": str(smtp.port),
           "BRIEFCAST_SMTP_FROM": "briefcast <brief@briefs.example>"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sessions = open_database(sqlite_url)
    store_brief(sessions)  # the stored brief is the day's brief: build_daily_brief returns it
    runner = CliRunner()
    for address in ("ana@reader.example", "bo@reader.example"):
        result = runner.invoke(app, ["subscribers", "add", address, "--tz", "Europe/Paris"])
        assert result.exit_code == 0, result.output
    assert len(list_subscribers(sessions, topic="ai-geopolitics")) == 2
    args = ["digest", "--date", DAY, "--out", str(out), "--send"]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "sent" in first.output and "Top 5 insights" in first.output
    for name in ("brief.html", "brief.txt", "brief.json", "brief.eml"):
        assert (out / name).is_file() and str(out / name) in first.output.replace("\n", "")
    second = runner.invoke(app, args, terminal_width=200)
    assert second.exit_code == 0 and second.output.count("already sent") == 2
    rebuild = runner.invoke(app, ["digest", "--date", DAY, "--rebuild"], terminal_width=200)
    assert rebuild.exit_code == 2 and "already has deliveries (2 sent)" in rebuild.output  # what readers got stays
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == ["ana@reader.example", "bo@reader.example"]
    bad = runner.invoke(app, ["digest", "--date", "1 Dec"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
    monkeypatch.setenv("BRIEFCAST_SMTP_FROM", "briefcast")
    no_sender = runner.invoke(app, ["digest", "--date", DAY])
    assert no_sender.exit_code == 2 and "BRIEFCAST_SMTP_FROM 'briefcast' has no usable email address" in no_sender.output
    sessions.kw["bind"].dispose()


def test_cli_rejects_bad_subscribers_with_clear_errors(tmp_path, sqlite_url, monkeypatch):
    from api.cli import app

    monkeypatch.setenv("BRIEFCAST_DATABASE_URL", sqlite_url)
    runner = CliRunner()
    cases = {("not-an-address",): "exactly one @", ("a@b",): "needs a dot", ("a b@c.org",): "no spaces",
             ("x@y.org", "--tz", "Mars/Olympus"): "unknown time zone", ("x@y.org", "--topic", "cooking"): "unknown topic"}
    for args, message in cases.items():
        result = runner.invoke(app, ["subscribers", "add", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert runner.invoke(app, ["subscribers", "list", "--json"]).output.strip() == "[]"
    result = runner.invoke(app, ["subscribers", "remove", "ghost@y.org"])
    assert result.exit_code == 2 and "no subscriber" in result.output


def test_unsubscribe_by_token_deactivates(world):
    from digest.subscribers import unsubscribe

    settings, sessions, subscriber, brief_id = world
    assert unsubscribe(sessions, "not-a-token") is None
    assert unsubscribe(sessions, subscriber.unsubscribe_token).active is False
    assert send_brief_email(settings, sessions, subscriber_id=subscriber.id, brief_id=brief_id) is None


def test_templates_ship_as_package_data():
    import tomllib

    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "templates/*" in data["tool"]["setuptools"]["package-data"]["digest"]
