"""post_brief: the daily brief in the channel exactly once, against a recording Slack on loopback,
with the delivery claims on SQLite and the real PostgreSQL."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from digest.delivery import deliveries_for
from digest.slack import SlackNotConfigured, SlackTransientError, post_brief
from store.db import open_database
from store.models import Delivery
from tests.test_slack import CHANNEL, TODAY, all_text, assert_valid_blocks, make_brief, slack, slack_settings, store_brief  # noqa: F401


@pytest.fixture
def posting(tmp_path, db_url, slack):
    settings = slack_settings(tmp_path, db_url, slack)
    sessions = open_database(settings.db_url)
    yield settings, sessions, store_brief(sessions, make_brief())
    sessions.kw["bind"].dispose()


def test_posting_twice_posts_once(posting, slack):
    settings, sessions, brief_id = posting
    first = post_brief(settings, sessions, brief_id, worker_id="w1")
    second = post_brief(settings, sessions, brief_id, worker_id="w2")
    assert (first.status, second.status) == ("sent", "already_sent")
    (posted,) = slack.bodies("/api/chat.postMessage")
    assert posted["channel"] == CHANNEL and first.message_id == second.message_id == slack.messages[0]["ts"]
    assert_valid_blocks(posted["blocks"])
    assert "Insight 5: memory bandwidth caps reshape chip exports" in all_text(posted["blocks"])
    assert posted["metadata"]["event_payload"]["idempotency_key"] == first.idempotency_key
    (row,) = deliveries_for(sessions, topic="ai-geopolitics", day=TODAY, channel="slack")
    assert (row.target, row.status, row.brief_id) == (CHANNEL, "sent", brief_id)


def test_rate_limited_post_raises_the_transient_error_then_posts_once(posting, slack):
    settings, sessions, brief_id = posting
    slack.failures.append(("ratelimited", 7))
    with pytest.raises(SlackTransientError) as caught:
        post_brief(settings, sessions, brief_id)
    assert caught.value.retry_after == 7 and "429" in caught.value.reason and not caught.value.maybe_delivered
    assert slack.messages == []
    assert post_brief(settings, sessions, brief_id).status == "sent"
    assert post_brief(settings, sessions, brief_id).status == "already_sent"
    assert len(slack.bodies("/api/chat.postMessage")) == 2 and len(slack.messages) == 1


@pytest.mark.parametrize("error, hint", [("invalid_auth", "BRIEFCAST_SLACK_BOT_TOKEN"),
                                         ("channel_not_found", "BRIEFCAST_SLACK_CHANNEL")])
def test_a_permanent_refusal_fails_with_slacks_reason(posting, slack, error, hint):
    settings, sessions, brief_id = posting
    slack.failures.append((error, 0))
    outcome = post_brief(settings, sessions, brief_id)
    assert outcome.status == "failed" and error in outcome.error and hint in outcome.error
    assert post_brief(settings, sessions, brief_id).status == "failed"  # not retried by itself
    assert len(slack.bodies("/api/chat.postMessage")) == 1 and slack.messages == []


def test_a_5xx_after_slack_posted_is_settled_by_reading_the_channel(posting, slack):
    settings, sessions, brief_id = posting
    slack.failures.append(("server_error", 0))  # Slack stores the message, then answers 500
    with pytest.raises(SlackTransientError) as caught:
        post_brief(settings, sessions, brief_id)
    assert caught.value.maybe_delivered
    outcome = post_brief(settings, sessions, brief_id)
    assert outcome.status == "sent" and outcome.resumed_from == "sending"
    assert outcome.message_id == slack.messages[0]["ts"]
    assert len(slack.messages) == 1 and len(slack.bodies("/api/chat.postMessage")) == 1
    assert slack.bodies("/api/conversations.history")[0]["channel"] == CHANNEL


def test_a_crash_before_posting_is_resumed_with_one_post(posting, slack):
    """A sender killed while it held a fresh claim: after the lease, the next one posts, once."""
    settings, sessions, brief_id = posting
    post_brief(settings, sessions, brief_id)
    with sessions() as session, session.begin():  # rewind: as if the first sender died before posting
        session.execute(update(Delivery).values(status="claimed", message_id=None, sent_at=None,
                                                claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    slack.messages.clear()
    outcome = post_brief(settings, sessions, brief_id)
    assert outcome.status == "sent" and outcome.resumed_from == "claimed" and len(slack.messages) == 1


def test_connection_refused_is_transient(tmp_path, sqlite_url, slack):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = slack_settings(tmp_path, sqlite_url, slack, slack_api_url=f"http://127.0.0.1:{closed}/api/")
    sessions = open_database(settings.db_url)
    brief_id = store_brief(sessions, make_brief())
    with pytest.raises(SlackTransientError, match="cannot reach the Slack API") as caught:
        post_brief(settings, sessions, brief_id)
    assert not caught.value.maybe_delivered
    (row,) = deliveries_for(sessions, topic="ai-geopolitics", day=TODAY)
    assert row.status == "claimed" and row.claimed_by is None  # released: the next try posts
    sessions.kw["bind"].dispose()


def test_a_deleted_brief_is_skipped_and_missing_settings_are_named(posting, slack, tmp_path, sqlite_url):
    settings, sessions, _ = posting
    assert post_brief(settings, sessions, 999_999) is None
    with pytest.raises(SlackNotConfigured, match="BRIEFCAST_SLACK_CHANNEL"):
        post_brief(settings.model_copy(update={"slack_channel": None}), sessions, 1)
    assert slack.calls == []


@pytest.mark.slow
def test_briefcast_slack_post_posts_once_and_says_when_there_is_no_brief(tmp_path, slack):
    from tests.test_cli import briefcast

    settings = slack_settings(tmp_path, f"sqlite:///{tmp_path / 'data' / 'briefcast.db'}", slack)
    sessions = open_database(settings.db_url)
    store_brief(sessions, make_brief(day="2026-11-30"))
    sessions.kw["bind"].dispose()
    env = {"BRIEFCAST_SLACK_BOT_TOKEN": "xoxb-cli", "BRIEFCAST_SLACK_CHANNEL": CHANNEL,
           "BRIEFCAST_SLACK_API_URL": f"{slack.url}/api/"}
    first = briefcast(tmp_path, "slack", "post", "--date", "2026-11-30", **env)
    again = briefcast(tmp_path, "slack", "post", "--date", "2026-11-30", **env)
    assert first.returncode == again.returncode == 0, first.stderr
    assert f"→ {CHANNEL}: sent" in first.stdout and "already_sent" in again.stdout
    assert len(slack.messages) == 1
    missing = briefcast(tmp_path, "slack", "post", "--date", "2026-11-29", **env)
    assert missing.returncode == 1 and "no brief stored for ai-geopolitics on 2026-11-29" in missing.stderr
