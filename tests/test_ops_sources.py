"""`briefcast sources remove | edit`, and topics checked wherever the CLI takes one (OPML import:
the flag wins over folder titles; a folder that names no topic is said, not stored as a topic)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from embed.encoder import FakeEncoder
from embed.index import IndexStore
from embed.pipeline import embed_pending
from embed.runtime import search_context
from embed.search import search
from ingest.localserver import LocalServer
from ingest.refresh import refresh
from store import repo
from store.db import open_database
from store.models import Item, Passage, Source, Tombstone
from tests.cli_inprocess import briefcast
from tests.conftest import make_settings
from tests.test_refresh import LONG, rss

PRIVATE = {"BRIEFCAST_ALLOW_PRIVATE_ADDRESSES": "1"}


@pytest.fixture
def two_feeds(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "keep.rss").write_text(rss([("k1", "Kept one", LONG + " lithography"), ("k2", "Kept two", LONG + " wafers")]))
    (root / "drop.rss").write_text(rss([("d1", "Dropped one", LONG + " zeppelin"), ("d2", "Dropped two", LONG + " zeppelin")]))
    with LocalServer(root) as server:
        yield server


def count(sessions, model, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_purge_deletes_items_with_tombstones_and_the_index_drops_their_passages(tmp_path, db_url, two_feeds):
    settings = make_settings(tmp_path, db_url, encoder="fake")
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        repo.add_source(session, two_feeds.url("/keep.rss"))
        drop, _ = repo.add_source(session, two_feeds.url("/drop.rss"))
        drop_id = drop.id
    refresh(settings, sessions, force=True)
    store = IndexStore(settings.index_dir)
    embed_pending(sessions, FakeEncoder(), store)
    doomed = count(sessions, Passage, Passage.item_id.in_(select(Item.id).where(Item.source_id == drop_id)))
    before = store.meta().count
    assert doomed > 0

    with sessions() as session, session.begin():
        source = repo.find_source(session, two_feeds.url("/drop.rss"))
        source.active = False
        assert repo.purge_source_items(session, source.id, reason="source removed") == (2, doomed)
    assert count(sessions, Item, Item.source_id == drop_id) == 0
    assert count(sessions, Tombstone, Tombstone.source_id == drop_id) == 2
    hits = search(search_context(settings, sessions), "zeppelin", k=10, mode="keyword")
    assert not [h for h in hits if h.source_id == drop_id]  # search skips them before the next embed
    report = embed_pending(sessions, FakeEncoder(), store)
    assert report.passages_removed == doomed and store.meta().count == before - doomed

    with sessions() as session, session.begin():  # added again: fetched again, its purged items stay gone
        _, created = repo.add_source(session, two_feeds.url("/drop.rss"))
        assert not created and session.get(Source, drop_id).active
    feed = two_feeds.root / "drop.rss"
    feed.write_text(rss([("d1", "Dropped one", LONG + " zeppelin"), ("d2", "Dropped two", LONG + " zeppelin"),
                         ("d3", "Fresh one", LONG + " airship")]))
    outcome = next(o for o in refresh(settings, sessions, force=True).sources if o.source_id == drop_id)
    assert outcome.status == "new" and outcome.new_items == 1
    with sessions() as session:
        assert session.scalars(select(Item.title).where(Item.source_id == drop_id)).all() == ["Fresh one"]
    sessions.kw["bind"].dispose()


def test_briefcast_sources_remove_keeps_or_purges(tmp_path, two_feeds):
    for path in ("/keep.rss", "/drop.rss"):
        assert briefcast(tmp_path, "sources", "add", two_feeds.url(path), **PRIVATE).returncode == 0
    assert json.loads(briefcast(tmp_path, "fetch", "--json", **PRIVATE).stdout)["new_items"] == 4

    kept = briefcast(tmp_path, "sources", "remove", "1")
    assert kept.returncode == 0 and "its 2 items are kept" in kept.stdout
    listed = {s["id"]: s for s in json.loads(briefcast(tmp_path, "sources", "list", "--json").stdout)}
    assert listed[1]["active"] is False and listed[1]["items"] == 2
    assert "removed (not fetched)" in briefcast(tmp_path, "sources", "list").stdout
    fetched = json.loads(briefcast(tmp_path, "fetch", "--json", "--all", **PRIVATE).stdout)
    assert [s["url"] for s in fetched["sources"]] == [two_feeds.url("/drop.rss")]  # the removed one is not fetched

    purged = briefcast(tmp_path, "sources", "remove", two_feeds.url("/drop.rss"), "--purge")
    assert purged.returncode == 0 and "2 items deleted (tombstoned)" in purged.stdout
    assert json.loads(briefcast(tmp_path, "items", "list", "--json").stdout)[0]["title"].startswith("Kept")
    missing = briefcast(tmp_path, "sources", "remove", "99")
    assert missing.returncode == 2 and "no source '99'" in missing.stderr


def test_briefcast_sources_edit_changes_only_what_is_given(tmp_path):
    assert briefcast(tmp_path, "sources", "add", "https://news.example.org/feed", "--weight", "2").returncode == 0
    changed = briefcast(tmp_path, "sources", "edit", "1", "--title", "News", "--topic", "ai-geopolitics", "--kind", "podcast")
    assert changed.returncode == 0, changed.stderr
    assert "title (none) -> News" in changed.stdout and "kind feed -> podcast" in changed.stdout
    (row,) = json.loads(briefcast(tmp_path, "sources", "list", "--json").stdout)
    assert (row["title"], row["topic"], row["kind"], row["weight"]) == ("News", "ai-geopolitics", "podcast", 2.0)
    cleared = briefcast(tmp_path, "sources", "edit", "https://news.example.org/feed", "--topic", "", "--weight", "0.5")
    assert cleared.returncode == 0 and "topic ai-geopolitics -> (none)" in cleared.stdout
    assert json.loads(briefcast(tmp_path, "sources", "list", "--json").stdout)[0]["topic"] is None
    for bad, says in ((["--topic", "ai-geopolitcs"], "did you mean 'ai-geopolitics'"), (["--weight", "11"], "weight"),
                      (["--kind", "video"], "--kind must be one of"), ([], "nothing to change")):
        refused = briefcast(tmp_path, "sources", "edit", "1", *bad)
        assert refused.returncode == 2 and says in refused.stderr, (bad, refused.stderr)
    assert briefcast(tmp_path, "sources", "edit", "7", "--weight", "1").returncode == 2


OPML = """<?xml version="1.0"?><opml version="2.0"><head><title>subs</title></head><body>
<outline text="AI Geopolitics" title="AI Geopolitics">
  <outline type="rss" text="ChinaTalk" xmlUrl="https://chinatalk.example/feed"/>
</outline>
<outline text="Cooking">
  <outline type="rss" text="Soup" xmlUrl="https://soup.example/feed"/>
</outline>
<outline type="rss" text="Loose" xmlUrl="https://loose.example/feed"/>
</body></opml>"""


def topics_of(tmp_path) -> dict[str, str | None]:
    return {s["url"].split("/")[2]: s["topic"] for s in json.loads(briefcast(tmp_path, "sources", "list", "--json").stdout)}


def test_opml_folders_that_name_a_topic_give_it_and_the_flag_wins(tmp_path):
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML)
    plain = briefcast(tmp_path, "sources", "import", str(opml))
    assert plain.returncode == 0 and "3 added" in plain.stdout
    assert "folder 'Cooking' is not a topic" in plain.stderr and "ai-geopolitics" in plain.stderr
    assert topics_of(tmp_path) == {"chinatalk.example": "ai-geopolitics", "soup.example": None, "loose.example": None}

    flagged = tmp_path / "flagged"
    flagged.mkdir()
    assert briefcast(flagged, "sources", "import", str(opml), "--topic", "ai-geopolitics").returncode == 0
    assert set(topics_of(flagged).values()) == {"ai-geopolitics"}


def test_unknown_topics_are_refused_with_the_known_ones_listed(tmp_path):
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML)
    for args in (["sources", "import", str(opml), "--topic", "ai-geopolitcs"],
                 ["sources", "add", "https://news.example.org/feed", "--topic", "ai-geopolitcs"],
                 ["subscribers", "list", "--topic", "ai-geopolitcs"],
                 ["subscribers", "add", "ana@reader.example", "--topic", "ai-geopolitcs"],
                 ["digest", "--topic", "ai-geopolitcs"], ["explain", "1", "--topic", "ai-geopolitcs"],
                 ["stories", "list", "--topic", "ai-geopolitcs"], ["slack", "post", "--topic", "ai-geopolitcs"]):
        refused = briefcast(tmp_path, *args)
        assert refused.returncode == 2, args
        assert "unknown topic 'ai-geopolitcs'" in refused.stderr and "ai-geopolitics" in refused.stderr, refused.stderr
    assert json.loads(briefcast(tmp_path, "sources", "list", "--json").stdout) == []  # nothing stored
    assert briefcast(tmp_path, "sources", "add", "https://news.example.org/feed", "--topic", "ai-geopolitics").returncode == 0
    searched = briefcast(tmp_path, "search", "chips", "--topic", "ai-geopolitcs")  # checked against the sources' topics
    assert searched.returncode == 2 and "did you mean 'ai-geopolitics'" in searched.stderr
    toml = tmp_path / "sources.toml"
    toml.write_text('[[source]]\nurl = "https://a.example/feed"\ntopic = "AI geopolitics"\n')
    refused = briefcast(tmp_path, "sources", "import", str(toml))
    assert refused.returncode == 2 and "source #1" in refused.stderr and "known topics: ai-geopolitics" in refused.stderr
