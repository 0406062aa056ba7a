"""`briefcast status`: sources due and failing with reasons, the embed backlog, each topic's next
brief in its own time zone, today's deliveries; on SQLite and PostgreSQL, and through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from api.status import TopicClock, collect_status, next_send
from store import repo
from store.entry import Entry
from store.models import Brief, Delivery, Story, StoryScore, Subscriber
from tests.conftest import make_settings
from tests.cli_inprocess import briefcast

NOW = datetime(2026, 12, 6, 8, 30, tzinfo=UTC)  # 17:30 in Tokyo, 09:30 in Paris
TOKYO = """name = "asia-chips"
title = "Chips in Asia"
description = "Semiconductors and AI chips in East Asia."
timezone = "Asia/Tokyo"
send_time = "07:00"
personas = ["Analyst"]
"""


def tokyo_topics(tmp_path):
    folder = tmp_path / "topics"
    folder.mkdir(exist_ok=True)
    (folder / "asia-chips.toml").write_text(TOKYO)
    return folder


def build_world(sessions, now: datetime = NOW) -> None:
    """Four sources (fine, failing, never fetched, removed), two items not yet embedded, stories,
    a brief for ai-geopolitics today, and deliveries sent, failed and in progress."""
    day = now.date().isoformat()
    with sessions() as session, session.begin():
        ok, _ = repo.add_source(session, "https://ok.example/feed", title="Fine Feed")
        bad, _ = repo.add_source(session, "https://bad.example/feed", title="Broken Feed")
        repo.add_source(session, "https://new.example/feed")
        gone, _ = repo.add_source(session, "https://gone.example/feed")
        ok.next_due_at, ok.last_status = now + timedelta(minutes=40), "new"
        bad.next_due_at, bad.consecutive_failures, bad.last_status = now + timedelta(hours=2), 3, "failed"
        bad.last_error = "HTTP 503 Service Unavailable from bad.example"
        gone.active = False
        repo.upsert_entries(session, ok, [Entry(title="A", text="Chips " * 50, guid="a"),
                                          Entry(title="B", text="Rules " * 50, guid="b")])
        today = Story(title="Chip rules tighten", first_seen=now - timedelta(hours=5), last_seen=now - timedelta(hours=1))
        old = Story(title="Older", first_seen=now - timedelta(days=3), last_seen=now - timedelta(days=2))
        session.add_all([today, old])
        session.flush()
        session.add_all([StoryScore(story_id=today.id, topic="ai-geopolitics", day=day, total=0.8, rank=1),
                         StoryScore(story_id=old.id, topic="ai-geopolitics", day=day, total=0.2)])
        brief = Brief(topic="ai-geopolitics", day=day, payload={}, content_hash="x", created_at=now)
        session.add(brief)
        for n, email in enumerate(["sent@example.org", "failed@example.org", "busy@example.org", "later@example.org"]):
            session.add(Subscriber(email=email, unsubscribe_token=f"t{n}", topics=["ai-geopolitics"]))
        session.add(Subscriber(email="quit@example.org", unsubscribe_token="t9", topics=["ai-geopolitics"], active=False))
        for n, (target, status, error) in enumerate([("sent@example.org", "sent", None),
                                                     ("failed@example.org", "failed", "550 5.1.1 mailbox unknown"),
                                                     ("busy@example.org", "claimed", None)]):
            session.add(Delivery(idempotency_key=f"k{n}", channel="email", target=target, topic="ai-geopolitics",
                                 day=day, status=status, error=error, attempts=1))


def test_status_reports_sources_backlog_topics_and_deliveries(tmp_path, db_url):
    from store.db import open_database

    settings = make_settings(tmp_path, db_url, topics_dir=tokyo_topics(tmp_path))
    sessions = open_database(settings.db_url)
    build_world(sessions)
    report = collect_status(settings, sessions, now=NOW)
    sessions.kw["bind"].dispose()

    sources = report["sources"]
    assert (sources["total"], sources["active"], sources["removed"], sources["due_now"]) == (4, 3, 1, 1)
    assert sources["next_due_at"] == "2026-12-06T09:10:00+00:00"  # the fine feed, in 40 minutes
    assert sources["failing"] == 1
    (failure,) = sources["failures"]
    assert failure["source"] == "Broken Feed" and failure["failures"] == 3 and "HTTP 503" in failure["reason"]
    assert report["items"]["waiting_to_embed"] == 2 and report["items"]["total"] == 2
    assert report["index"] is None

    topics = {t["topic"]: t for t in report["topics"]}
    geo = topics["ai-geopolitics"]
    assert geo["next_brief_at"] == "2026-12-07T07:00+00:00" and geo["next_brief_state"] == "built"
    assert geo["brief_today"]["built_at"] == NOW.isoformat()
    assert geo["stories_today"] == {"seen": 1, "ranked": 2, "selected": 1}
    deliveries = geo["deliveries_today"]
    assert (deliveries["sent"], deliveries["failed"], deliveries["pending"]) == (1, 1, 2)  # busy + later; quit is inactive
    assert deliveries["failures"] == [{"channel": "email", "target": "failed@example.org",
                                       "reason": "550 5.1.1 mailbox unknown", "attempts": 1}]
    tokyo = topics["asia-chips"]  # 17:30 in Tokyo: today's 07:00 passed and nothing was built
    assert tokyo["timezone"] == "Asia/Tokyo" and tokyo["today"] == "2026-12-06"
    assert tokyo["next_brief_at"] == "2026-12-06T07:00+09:00" and tokyo["next_brief_state"] == "due"
    assert tokyo["brief_today"] is None and tokyo["deliveries_today"]["pending"] == 0


def test_the_next_brief_is_today_before_the_send_time_and_tomorrow_once_built():
    paris = TopicClock("t", "T", ZoneInfo("Europe/Paris"), time(7, 0))
    early = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)  # 06:00 in Paris
    assert next_send(paris, early, built_today=False) == (datetime(2026, 12, 6, 7, 0, tzinfo=paris.zone), "scheduled")
    late = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    assert next_send(paris, late, built_today=False)[1] == "due"
    assert next_send(paris, late, built_today=True) == (datetime(2026, 12, 7, 7, 0, tzinfo=paris.zone), "built")


def test_briefcast_status_prints_and_emits_json(tmp_path):
    from store.db import open_database

    data = tmp_path / "data"
    data.mkdir()
    sessions = open_database(f"sqlite:///{data / 'briefcast.db'}")
    build_world(sessions, now=datetime.now(UTC))  # the CLI's clock is the real one
    sessions.kw["bind"].dispose()
    env = {"BRIEFCAST_TOPICS_DIR": str(tokyo_topics(tmp_path))}
    human = briefcast(tmp_path, "status", **env)
    assert human.returncode == 0, human.stderr
    assert "Broken Feed: 3 failure(s) in a row" in human.stdout and "HTTP 503 Service Unavailable" in human.stdout
    assert "waiting to be embedded: 2 items" in human.stdout
    assert "Topic asia-chips (Asia/Tokyo, sends at 07:00" in human.stdout
    assert "failed@example.org: 550 5.1.1 mailbox unknown" in human.stdout
    report = json.loads(briefcast(tmp_path, "status", "--json", **env).stdout)
    assert set(report) == {"now", "sources", "items", "index", "topics"}
    assert {t["topic"] for t in report["topics"]} == {"ai-geopolitics", "asia-chips"}
