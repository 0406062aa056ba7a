"""Embed and search on SQLite and PostgreSQL with the fake encoder: passages, skip-unchanged,
deletes leaving the index, model changes rebuilding, hybrid ranking, filters and grouping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from embed.encoder import FakeEncoder
from embed.index import IndexReader, IndexStore
from embed.pipeline import embed_pending
from embed.search import SearchContext, SearchFilters, keyword_terms, search
from store import repo
from store.entry import Entry, Kind, Segment
from store.models import Item, Passage

NOW = datetime(2026, 11, 20, tzinfo=UTC)
DOCS = {
    "chips": ("Commerce tightens export controls on AI accelerators",
              "The Commerce Department added a memory bandwidth threshold to its export controls on AI "
              "accelerators. Chinese labs said they would move to domestic chips. " * 3),
    "lumen": ("Lumen AI releases open-weight Lumen-3",
              "Lumen AI released the open weights of Lumen-3, a reasoning model trained with a tenth of the "
              "compute of closed rivals. Developers can host it locally. " * 3),
    "robot": ("A cooking robot that stirs soup", "The ladle robot stirs soup and fries eggs in a home kitchen. " * 4),
}


@pytest.fixture
def world(settings, sessions, tmp_path):
    with sessions() as session, session.begin():
        news, _ = repo.add_source(session, "https://news.example/feed", topic="ai-geopolitics", title="News")
        pod, _ = repo.add_source(session, "https://pod.example/feed", kind="podcast", topic="ai-geopolitics", title="Pod")
        entries = [Entry(title=t, text=body, guid=key, url=f"https://news.example/{key}", language="en-gb",
                         published=NOW - timedelta(days=n)) for n, (key, (t, body)) in enumerate(DOCS.items())]
        repo.upsert_entries(session, news, entries)
        episode = Entry(title="Chips and open weights", kind=Kind.EPISODE, guid="ep1", language="en", published=NOW,
                        segments=[Segment("Export controls on accelerators keep tightening.", 0.0, 6.5, "Ana"),
                                  Segment("Open weights let anyone run the model at home.", 6.5, 12.0, "Bo")])
        episode.text = " ".join(s.text for s in episode.segments)
        repo.upsert_entries(session, pod, [episode])
    store = IndexStore(tmp_path / "index")
    encoder = FakeEncoder()
    report = embed_pending(sessions, encoder, store)
    ctx = SearchContext(sessions=sessions, reader=IndexReader(store), encoder_factory=lambda: encoder)
    return ctx, store, encoder, report


def titles(hits):
    return [h.title for h in hits]


def test_every_item_is_split_and_embedded_once(world, sessions):
    ctx, store, encoder, report = world
    with sessions() as session:
        passages = session.scalar(select(func.count()).select_from(Passage))
        embedded = session.scalar(select(func.count()).where(Passage.embedded_model == encoder.model_id))
    assert report.items_split == 4 and passages == embedded == report.passages_embedded == store.meta().count
    again = embed_pending(sessions, encoder, store)
    assert again.items_split == 0 and again.passages_embedded == 0 and store.meta().count == passages


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_each_mode_finds_the_right_item_first(world, mode):
    ctx, *_ = world
    hits = search(ctx, "export controls on accelerators", k=5, mode=mode)
    assert hits and hits[0].title in (DOCS["chips"][0], "Chips and open weights")
    assert DOCS["robot"][0] not in titles(hits[:2])


def test_results_are_grouped_per_item_and_carry_timestamps(world):
    ctx, *_ = world
    hits = search(ctx, "export controls accelerators open weights", k=10)
    assert len({h.item_id for h in hits}) == len(hits)
    episode = next(h for h in hits if h.kind == "episode")
    assert episode.start == 0.0 and episode.end == 12.0 and episode.source == "Pod"


def test_filters_kind_language_time_source_topic(world):
    ctx, *_ = world
    q = "export controls open weights"
    assert {h.kind for h in search(ctx, q, filters=SearchFilters(kind="episode"))} == {"episode"}
    assert {h.language for h in search(ctx, q, filters=SearchFilters(language="en"))} <= {"en", "en-gb"}
    assert all(h.language == "en-gb" for h in search(ctx, q, filters=SearchFilters(language="en-gb")))
    recent = search(ctx, q, filters=SearchFilters(since=NOW - timedelta(hours=1)))
    assert recent and all(h.published >= NOW - timedelta(hours=1) for h in recent)
    by_source = search(ctx, q, filters=SearchFilters(source="https://pod.example/feed"))
    assert {h.source for h in by_source} == {"Pod"}
    assert search(ctx, q, filters=SearchFilters(topic="cooking")) == []


def test_deleted_item_leaves_the_index(world, sessions):
    ctx, store, encoder, _ = world
    with sessions() as session, session.begin():
        chips = session.scalars(select(Item).where(Item.guid == "chips")).one()
        repo.delete_item(session, chips.id)
    report = embed_pending(sessions, encoder, store)
    assert report.passages_removed >= 1
    assert DOCS["chips"][0] not in titles(search(ctx, "export controls memory bandwidth", k=10))
    with sessions() as session:
        assert store.meta().count == session.scalar(select(func.count()).select_from(Passage))


def test_changed_text_re_embeds_only_changed_passages(world, sessions):
    ctx, store, encoder, _ = world
    with sessions() as session, session.begin():
        source = repo.list_sources(session)[0]
        t, body = DOCS["robot"]
        repo.upsert_entries(session, source, [Entry(title=t, text=body + " Now it also bakes bread.", guid="robot",
                                                    url="https://news.example/robot", language="en-gb")])
    report = embed_pending(sessions, encoder, store)
    assert report.items_split == 1 and report.passages_embedded == 1
    assert titles(search(ctx, "bakes bread", k=1, mode="keyword")) == [DOCS["robot"][0]]


def test_a_different_model_forces_a_rebuild(world, sessions):
    ctx, store, _, _ = world
    other = FakeEncoder(dim=64)
    report = embed_pending(sessions, other, store)
    assert report.rebuilt and store.meta().model_id == other.model_id and store.meta().dim == 64
    with sessions() as session:
        assert session.scalar(select(func.count()).where(Passage.embedded_model != other.model_id)) == 0


def test_keyword_terms_drop_stopwords_and_punctuation():
    assert keyword_terms('What did podcasts say about "DeepSeek\'s" export-control workarounds?') == [
        "podcasts", "deepseek", "s", "export", "control", "workarounds"]
    assert keyword_terms("the") == ["the"]


def test_sqlite_connections_use_wal_and_read_through_a_memory_map(tmp_path):
    from store.db import SQLITE_MMAP_BYTES, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == SQLITE_MMAP_BYTES
    engine.dispose()
