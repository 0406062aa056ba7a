"""Filters choose among all matches, not among the top few hundred: one source floods the index
with thousands of passages that match the query better than anything else, and each filter
(source, kind, topic, language, since/until) still returns its own best matches, in each mode,
from a flat and from an IVF index, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from embed.encoder import FakeEncoder
from embed.index import IndexReader, IndexStore
from embed.pipeline import embed_pending
from embed.search import SearchContext, SearchFilters, search
from store import repo
from store.entry import Entry, Kind
from store.models import Item, Passage
from tests.test_search import world  # noqa: F401  (the fixture: 4 items embedded, SQLite and PostgreSQL)

NOW = datetime(2026, 11, 20, tzinfo=UTC)
QUERY = "export controls accelerators"
# IVF lists probed unfiltered: few (so a filter must widen them), but not 2. The flood's passages
# repeat one text, so k-means leaves many lists empty, and which centroids end up empty depends on
# the CPU's float paths: on an Intel machine the query's two nearest lists were both empty and the
# unfiltered search found nothing at all (on AMD they were not).
NPROBE = 8
FLOOD_ITEMS, FLOOD_SENTENCES = 40, 1000  # ~75 passages an item: 3,000 passages from one source
# Every sentence of the flood says the query's words, and little else.
FLOOD = "Export controls on accelerators. More export controls for accelerators today. "
NICHE = {  # a few items, each mentioning the query once among other things
    "tulips": "Dutch growers planted tulips early. A grower mentioned export controls on accelerators in passing.",
    "ferries": "The ferry timetable changes in spring. Export controls on accelerators came up at the harbour meeting.",
    "cheese": "A cheese cave in the Alps ages wheels for a year. Someone asked about export controls on accelerators.",
}


@pytest.fixture(params=["flat", "ivf"])
def flooded(request, sessions, tmp_path):
    with sessions() as session, session.begin():
        flood, _ = repo.add_source(session, "https://flood.example/feed", topic="chips", title="Flood")
        niche, _ = repo.add_source(session, "https://niche.example/feed", kind="podcast", topic="niche", title="Niche")
        repo.upsert_entries(session, flood, [
            Entry(title=f"Export controls, part {n}", text=FLOOD * FLOOD_SENTENCES, guid=f"flood-{n}",
                  url=f"https://flood.example/{n}", language="en", published=NOW - timedelta(days=30 + n))
            for n in range(FLOOD_ITEMS)])
        repo.upsert_entries(session, niche, [
            Entry(title=key.capitalize(), text=text, guid=key, url=f"https://niche.example/{key}", kind=Kind.EPISODE,
                  language="de-at", published=NOW - timedelta(hours=n))
            for n, (key, text) in enumerate(NICHE.items())])
        niche_id = niche.id
    store = IndexStore(tmp_path / "index")
    encoder = FakeEncoder()
    embed_pending(sessions, encoder, store, index_kind=request.param)
    assert store.meta().kind == request.param
    with sessions() as session:
        flood_passages = session.scalar(select(func.count()).select_from(Passage).join(Item)
                                        .where(Item.source_id != niche_id))
    assert flood_passages >= 2500
    return SearchContext(sessions=sessions, reader=IndexReader(store, nprobe=NPROBE), encoder_factory=lambda: encoder), niche_id


NICHE_TITLES = {key.capitalize() for key in NICHE}


def niche_filters(niche_id: int) -> list[SearchFilters]:
    """Each filter the niche passes and the flood does not."""
    return [SearchFilters(source=str(niche_id)), SearchFilters(source="https://niche.example/feed"),
            SearchFilters(kind="episode"), SearchFilters(topic="niche"), SearchFilters(language="de"),
            SearchFilters(since=NOW - timedelta(days=1)),
            SearchFilters(since=NOW - timedelta(days=1), until=NOW + timedelta(days=1), language="de-at")]


def test_each_filter_finds_the_few_matches_a_flooding_source_buries(flooded):
    ctx, niche_id = flooded
    for mode in ("hybrid", "vector", "keyword"):
        unfiltered = search(ctx, QUERY, k=10, mode=mode)
        assert unfiltered and not NICHE_TITLES & {h.title for h in unfiltered}  # buried under the flood
        for filters in niche_filters(niche_id):
            hits = search(ctx, QUERY, k=10, filters=filters, mode=mode)
            assert {h.title for h in hits} == NICHE_TITLES, (mode, filters, [h.title for h in hits])
            assert all(h.source_id == niche_id for h in hits)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        # k beyond the niche: exactly its items, nothing from elsewhere
        assert {h.title for h in search(ctx, QUERY, k=50, filters=SearchFilters(topic="niche"), mode=mode)} == NICHE_TITLES
        # a filter the flood passes still ranks the flood; one nothing passes finds nothing
        flood = search(ctx, QUERY, k=10, filters=SearchFilters(topic="chips"), mode=mode)
        assert len(flood) == 10 and {h.source for h in flood} == {"Flood"}
        assert search(ctx, QUERY, k=10, filters=SearchFilters(topic="nothing-here"), mode=mode) == []


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_vector_search_within_ids_is_the_exact_top_k_of_those_ids(kind):
    """Flat: always. IVF: a filter keeping 1.5% of the vectors probes every list."""
    import numpy as np

    from embed.encoder import normalise
    from embed.index import VectorIndex

    rng = np.random.default_rng(7)
    vectors = normalise(rng.standard_normal((4000, 32)).astype(np.float32))
    ids = np.arange(10, 4010, dtype=np.int64)
    index = VectorIndex.build("m", ids, vectors, kind=kind)  # IVF: 252 lists, 16 probed unfiltered
    query = normalise(rng.standard_normal((1, 32)).astype(np.float32))
    within = np.concatenate([rng.choice(ids, 60, replace=False), [999_999]])  # one id the index lacks
    _, found = index.search(query, 10, within=within)
    members = np.isin(ids, within)
    best = ids[members][np.argsort(-(vectors[members] @ query[0]))][:10]
    assert found[0].tolist() == best.tolist()
    assert index.search(query, 10, within=np.array([], dtype=np.int64))[1].shape == (1, 0)


@pytest.mark.parametrize("source", ["²", "99999999999999999999999", "2147483648"])
def test_a_source_no_row_can_have_matches_nothing(world, source):  # noqa: F811
    """'²' passes str.isdigit but is no number; the others overflow SQLite's or PostgreSQL's integer."""
    ctx, *_ = world
    assert search(ctx, "export controls", k=10, filters=SearchFilters(source=source)) == []


@pytest.mark.parametrize("source", ["1", "https://news.example/feed"])
def test_checking_candidates_against_a_source_starts_from_the_candidates(sqlite_url, source):
    """SQLite, without statistics, would start from every item of the source and probe the id
    list once per item (3.4-5.6 s a query for a 99,800-passage source at 100k: /tmp/issue11_index.md)."""
    from embed.search import _filtered
    from store.db import make_engine, migrate
    from store.models import Passage as P

    engine = make_engine(sqlite_url)
    migrate(engine)
    query = _filtered(select(P.id), SearchFilters(source=source), candidates=True).where(P.id.in_(list(range(1, 501))))
    with engine.connect() as conn:
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    engine.dispose()
    steps = [step for step in plan if "sources" not in step]  # a URL finds its one source row first
    assert steps[0].startswith("SEARCH passages USING INTEGER PRIMARY KEY"), plan
    assert not any("ix_items_source_id" in step for step in plan), plan
