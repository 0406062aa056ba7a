"""`briefcast digest --send --to ADDRESS` (a test send: no subscriber, no delivery recorded) against
a real SMTP server on loopback, and `subscribers add` on an existing address changing only what
is given (it used to reset the time zone to UTC and the topics to the default)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from digest.subscribers import SubscriberError, add_subscriber, list_subscribers
from store.db import open_database
from store.models import Delivery
from tests.email_helpers import card, sample_brief, store_brief

DAY = "2026-12-01"  # sample_brief's day


@pytest.fixture
def cli(tmp_path, sqlite_url, smtp, monkeypatch):
    env = {"BRIEFCAST_DATA_DIR": str(tmp_path / "data"), "BRIEFCAST_DATABASE_URL": sqlite_url,
           "BRIEFCAST_SMTP_HOST": "127.0.0.1", "BRIEFCAST_SMTP_PORT": str(smtp.port),
           "BRIEFCAST_SMTP_FROM": "briefcast <brief@briefs.example>", "COLUMNS": "250"}  # rich: no wrapping
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sessions = open_database(sqlite_url)
    yield sessions
    sessions.kw["bind"].dispose()


def run(*args: str):
    from api.cli import app

    return CliRunner().invoke(app, list(args), terminal_width=200)


def deliveries(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Delivery))


def brief_with_a_policy_card():
    brief = sample_brief()
    brief.cards.append(card(2, "Story number 2, for policy makers", persona="Policy Maker"))
    return brief


def test_a_test_send_reaches_one_address_and_leaves_the_days_deliveries_alone(cli, smtp):
    sessions = cli
    store_brief(sessions, brief_with_a_policy_card())
    assert run("subscribers", "add", "ana@reader.example").exit_code == 0
    test = run("digest", "--date", DAY, "--send", "--to", "me@ops.example", "--persona", "policy maker")
    assert test.exit_code == 0, test.output
    assert "test email sent to me@ops.example" in test.output and "not recorded as a delivery" in test.output
    (received,) = smtp.received
    assert received.rcpt_tos == ["me@ops.example"]
    message = received.message
    assert message["Subject"].startswith("[test] ") and message["Message-ID"].startswith("<brief-test.")
    assert "Story number 2, for policy makers" in message.get_body(("plain",)).get_content()  # the persona's card
    assert deliveries(sessions) == 0 and [s.email for s in list_subscribers(sessions)] == ["ana@reader.example"]

    real = run("digest", "--date", DAY, "--send")  # the subscribers still get theirs
    assert real.exit_code == 0 and "sent" in real.output
    assert [r.rcpt_tos for r in smtp.received] == [["me@ops.example"], ["ana@reader.example"]]
    assert "Story number 2, for policy makers" not in smtp.received[1].message.get_body(("plain",)).get_content()
    assert smtp.received[1].message["Message-ID"] != message["Message-ID"]
    again = run("digest", "--date", DAY, "--send", "--to", "me@ops.example")  # a test send can be repeated
    assert again.exit_code == 0 and len(smtp.received) == 3 and deliveries(sessions) == 1


def test_test_send_options_are_checked_before_any_work(cli, smtp):
    store_brief(cli)
    for args, says in ((["--to", "me@ops.example"], "give it with --send"),
                       (["--send", "--to", "not-an-address"], "exactly one @"),
                       (["--send", "--to", "me@ops.example", "--persona", "Chef"], "unknown persona 'Chef'"),
                       (["--send", "--persona", "Policy Maker"], "--persona chooses the cards of a test send"),
                       (["--send", "--to", "me@ops.example", "--retry-failed"], "--retry-failed concerns")):
        refused = run("digest", "--date", DAY, *args)
        assert refused.exit_code == 2 and says in refused.output, (args, refused.output)
    assert smtp.received == [] and deliveries(cli) == 0


def test_a_refused_test_send_says_why_and_exits_1(cli, smtp):
    store_brief(cli)
    smtp.handler.refuse = "550 5.7.1 relaying denied"
    refused = run("digest", "--date", DAY, "--send", "--to", "me@ops.example")
    assert refused.exit_code == 1 and "relaying denied" in refused.output and deliveries(cli) == 0


def test_subscribers_add_on_an_existing_address_changes_only_the_options_given(cli):
    added = run("subscribers", "add", "ana@reader.example", "--tz", "Europe/Paris", "--persona", "policy maker",
                "--name", "Ana")
    assert added.exit_code == 0 and "persona Policy Maker" in added.output  # as the profile spells it
    renamed = run("subscribers", "add", "ana@reader.example", "--name", "Ana Lima")
    assert renamed.exit_code == 0 and "updated" in renamed.output
    (ana,) = list_subscribers(cli)
    assert (ana.name, ana.timezone, ana.persona, ana.topics) == ("Ana Lima", "Europe/Paris", "Policy Maker",
                                                                ["ai-geopolitics"])
    wrong = run("subscribers", "add", "ana@reader.example", "--persona", "Chef")
    assert wrong.exit_code == 2 and "known personas: Director of AI/ML, Policy Maker, Consultant" in wrong.output
    assert run("subscribers", "add", "ana@reader.example", "--persona", "").exit_code == 0
    assert list_subscribers(cli)[0].persona is None and list_subscribers(cli)[0].timezone == "Europe/Paris"
    typo = run("subscribers", "add", "bo@reader.example", "--topic", "ai-geopolitcs")
    assert typo.exit_code == 2 and "ai-geopolitics" in typo.output and len(list_subscribers(cli)) == 1


def test_add_subscriber_keeps_unnamed_fields_on_both_databases(db_url):
    sessions = open_database(db_url)
    add_subscriber(sessions, "ana@reader.example", timezone="Asia/Tokyo", topics=["a", "b"], persona="X")
    view, created = add_subscriber(sessions, "ana@reader.example", name="Ana")
    assert not created and (view.timezone, view.topics, view.persona, view.name) == ("Asia/Tokyo", ["a", "b"], "X", "Ana")
    fresh, _ = add_subscriber(sessions, "bo@reader.example", default_topics=["ai-geopolitics"])
    assert (fresh.timezone, fresh.topics) == ("UTC", ["ai-geopolitics"])

    def no_personas(persona, topics):
        raise SubscriberError(f"unknown persona {persona!r}")

    with pytest.raises(SubscriberError):
        add_subscriber(sessions, "ana@reader.example", persona="Y", timezone="UTC", check_persona=no_personas)
    assert list_subscribers(sessions)[0].timezone == "Asia/Tokyo"  # a refused change changes nothing
    sessions.kw["bind"].dispose()
