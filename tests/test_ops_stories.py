"""`briefcast stories list`: a day's stories with ids, titles, members and scores (before issue 12
story ids were only in brief.json)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from api.commands.stories import ranked_stories, seen_stories, story_members
from store import repo
from store.db import open_database
from store.entry import Entry
from store.models import Item, Story, StoryItem, StoryScore
from tests.cli_inprocess import briefcast


def build_stories(sessions, day: date) -> dict[str, int]:
    """Three stories: two ranked for ai-geopolitics on `day` (one selected), one seen that day, not ranked."""
    seen = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)
    with sessions() as session, session.begin():
        wire, _ = repo.add_source(session, "https://wire.example/feed", title="Chip Wire")
        pod, _ = repo.add_source(session, "https://pod.example/feed", kind="podcast", title="Compute Pod")
        repo.upsert_entries(session, wire, [Entry(title="Rule counts memory bandwidth", text="x " * 40, guid="w1")])
        repo.upsert_entries(session, pod, [Entry(title="Episode 7: the new rule", text="y " * 40, guid="p1")])
        items = {i.title: i.id for i in session.query(Item)}
        ids = {}
        for title, count in (("Memory-bandwidth rule", 2), ("Lumen-3 release", 1), ("Unranked", 0)):
            story = Story(title=title, item_count=count, corroboration=count, first_seen=seen, last_seen=seen)
            session.add(story)
            session.flush()
            ids[title] = story.id
        session.add_all([StoryItem(story_id=ids["Memory-bandwidth rule"], item_id=items["Rule counts memory bandwidth"]),
                         StoryItem(story_id=ids["Memory-bandwidth rule"], item_id=items["Episode 7: the new rule"],
                                   similarity=0.8)])
        session.add_all([
            StoryScore(story_id=ids["Lumen-3 release"], topic="ai-geopolitics", day=day.isoformat(), total=0.9,
                       relevance=0.7, rank=None),
            StoryScore(story_id=ids["Memory-bandwidth rule"], topic="ai-geopolitics", day=day.isoformat(), total=0.6,
                       relevance=0.6, corroboration=1.5, rank=1),
        ])
    return ids


def test_ranked_stories_come_selected_first_with_their_members(tmp_path, db_url):
    sessions = open_database(db_url)
    day = date(2026, 12, 6)
    ids = build_stories(sessions, day)
    with sessions() as session:
        rows = ranked_stories(session, "ai-geopolitics", day, limit=10)
        assert [(r["id"], r["score"]["rank"]) for r in rows] == [(ids["Memory-bandwidth rule"], 1),
                                                                 (ids["Lumen-3 release"], None)]
        assert rows[0]["score"]["corroboration"] == 1.5 and rows[0]["items"] == 2
        members = story_members(session, ids["Memory-bandwidth rule"])
        assert {(m["title"], m["source"]) for m in members} == {("Rule counts memory bandwidth", "Chip Wire"),
                                                                ("Episode 7: the new rule", "Compute Pod")}
        assert ranked_stories(session, "ai-geopolitics", day - timedelta(days=1), limit=10) == []
        unranked = seen_stories(session, day, UTC, limit=10)
        assert {r["title"] for r in unranked} == set(ids) and all(r["score"] is None for r in unranked)
    sessions.kw["bind"].dispose()


def test_briefcast_stories_list(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sessions = open_database(f"sqlite:///{data / 'briefcast.db'}")
    today = datetime.now(UTC).date()
    ids = build_stories(sessions, today)
    sessions.kw["bind"].dispose()

    listed = json.loads(briefcast(tmp_path, "stories", "list", "--json").stdout)
    assert listed["day"] == today.isoformat()
    assert [s["id"] for s in listed["stories"]] == [ids["Memory-bandwidth rule"], ids["Lumen-3 release"]]
    assert listed["stories"][0]["members"][0]["source"] in ("Chip Wire", "Compute Pod")
    human = briefcast(tmp_path, "stories", "list", "--members")
    assert human.returncode == 0 and "Memory-bandwidth rule" in human.stdout and "Chip Wire" in human.stdout
    assert "briefcast explain ID" in human.stdout
    other_day = json.loads(briefcast(tmp_path, "stories", "list", "--day", "2020-01-01", "--json").stdout)
    assert other_day["stories"] == []
    wrong = briefcast(tmp_path, "stories", "list", "--topic", "ai-geopolitcs")
    assert wrong.returncode == 2 and "did you mean 'ai-geopolitics'" in wrong.stderr and "known topics" in wrong.stderr
    assert briefcast(tmp_path, "stories", "list", "--day", "12/06").returncode == 2
