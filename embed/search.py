"""Hybrid retrieval: FAISS vectors + BM25 keyword search (tantivy, embed/keyword.py), both from
the same index version, fused with reciprocal rank fusion, filtered, and grouped so one item does
not fill the page. The database supplies only filters and the rows of the final hits.

A filter returns its own best matches whatever the rest of the index holds: each ranking looks a
few times deeper than it needs and, when that holds too few of the filter's passages (one source
flooding the top), ranks again inside the filter's passage ids (a FAISS id selector, a tantivy
id clause)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, Select, bindparam, false, select
from sqlalchemy.orm import Session, sessionmaker

from embed.encoder import Encoder
from embed.index import IndexMismatchError, IndexReader, Snapshot, VectorIndex
from embed.multilingual_index import MultilingualSearch, encoder_of, other_script
from embed.owners import PassageOwners, owners_from_database
from store.links import moment_url, safe_url
from store.models import Item, Passage, Source

RRF_K = 60  # the constant from Cormack et al. (2009); damps the weight of top ranks
MODES = ("hybrid", "vector", "keyword")
_STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from had has have how i in is it its of on or say said "
    "says that the their them they this to was were what when where which who why will with about into "
    "than then there these those our we you your his her he she not been more so if can would could "
    "should also just all any some one very there's it's".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SearchFilters:
    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None  # a source id, or its exact URL
    kind: str | None = None  # article | episode | post
    language: str | None = None  # primary subtag: "en" matches en-gb
    topic: str | None = None


@dataclass
class SearchHit:
    item_id: int
    passage_id: int
    title: str
    url: str | None
    source: str
    source_id: int
    published: datetime | None
    kind: str
    language: str | None
    text: str
    score: float
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    more_passages: int = 0  # other matching passages of the same item, folded into this hit
    # Where to open the hit: an episode's URL at the passage's moment (`#t=754`, `?t=754s` on
    # YouTube), else the item's URL; only http(s).
    link: str | None = None


@dataclass
class SearchContext:
    """What a search needs; the encoder and index load on first use (the API starts without torch)."""

    sessions: sessionmaker[Session]
    reader: IndexReader
    encoder_factory: Callable[[], Encoder]
    owners: PassageOwners = field(default_factory=PassageOwners, repr=False)  # passage -> item, in memory
    multilingual: MultilingualSearch | None = None  # the second index, across languages (None: off)
    _encoder: Encoder | None = field(default=None, repr=False)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = self.encoder_factory()
        return self._encoder


def keyword_terms(query: str) -> list[str]:
    terms = [w.lower() for w in _WORD.findall(query)]
    kept = [t for t in terms if t not in _STOPWORDS]
    return list(dict.fromkeys(kept or terms))[:32]


_SOURCE_ID_MAX = 2**31 - 1  # sources.id is a 32-bit integer on PostgreSQL


def _filtered(query: Select, filters: SearchFilters, candidates: bool = False) -> Select:
    """`query` over passages joined to their item and source, restricted to what `filters` admit.

    candidates: the query also names a few hundred passage ids; the plan must start from them.
    SQLite's planner, without statistics, guesses an equality on an indexed column keeps ~10 rows
    and would start from `items.source_id` (every item of a source), probing the id list once per
    item: 130 ms for a 960-item source at 5k passages, growing with the source. `+ 0` keeps the
    same meaning and takes the column's index out of the plan (on PostgreSQL too, harmlessly).
    """
    source_of_item = Item.source_id + 0 if candidates else Item.source_id
    query = query.join(Item, Item.id == Passage.item_id).join(Source, Source.id == source_of_item)
    if filters.since:
        query = query.where(Item.published >= filters.since)
    if filters.until:
        query = query.where(Item.published < filters.until)
    if filters.kind:
        query = query.where(Item.kind == filters.kind)
    if filters.language:
        lang = filters.language.lower()
        query = query.where((Item.language == lang) | Item.language.like(lang + "-%"))
    if filters.topic:
        query = query.where(Source.topic == filters.topic)
    if filters.source:
        query = query.where(_source_clause(filters.source, source_of_item))
    return query


def _source_clause(source: str, source_of_item):
    """A source id (ASCII digits: '²' is a digit to str.isdigit but no number) or its exact URL;
    an id no row can have matches nothing rather than overflowing the database's integer."""
    if source.isascii() and source.isdigit():
        return source_of_item == int(source) if int(source) <= _SOURCE_ID_MAX else false()
    return Source.url == source


OVERFETCH = 5  # a filtered ranking first looks this many times deeper than it needs, then inside the filter


class Scope:
    """What a filter admits, for one search: checks candidates against the database, and the
    whole set of passage ids it admits, asked once and only if a ranking needs it."""

    def __init__(self, conn: Connection, filters: SearchFilters) -> None:
        self.conn, self.filters = conn, filters
        self.active = filters != SearchFilters()
        self._ids: np.ndarray | None = None

    def keep(self, ranked: list[int]) -> list[int]:
        """`ranked` without the ids the filter excludes, in order."""
        if not self.active or not ranked:
            return ranked
        query = _filtered(select(Passage.id), self.filters, candidates=True).where(Passage.id.in_(ranked))
        allowed = set(self.conn.scalars(query))
        return [i for i in ranked if i in allowed]

    def ids(self) -> np.ndarray:
        if self._ids is None:
            rows = self.conn.scalars(_filtered(select(Passage.id), self.filters))
            self._ids = np.fromiter(rows, dtype=np.int64)
        return self._ids


def _within(scope: Scope, depth: int, rank: Callable[[int, np.ndarray | None], list[int]],
            exhausted: Callable[[list[int], int], bool]) -> list[int]:
    """The filter's best `depth` ids. Cheap first: rank OVERFETCH x deeper and keep what the filter
    admits; enough kept (or nothing left to rank) and those are its best. Otherwise its matches
    lie below the cut (one source flooding the top): rank again inside the filter's ids."""
    if not scope.active:
        return rank(depth, None)
    wanted = depth * OVERFETCH
    ranked = rank(wanted, None)
    kept = scope.keep(ranked)
    if len(kept) >= depth or exhausted(ranked, wanted):
        return kept[:depth]
    return rank(depth, scope.ids())


def vector_ranking(ctx: SearchContext, conn: Connection, snap: Snapshot, query: str, filters: SearchFilters,
                   depth: int, scope: Scope | None = None) -> list[int]:
    index = snap.vectors
    if index is None or index.count == 0:
        return []
    # The same model, or a query encoder that declares itself one for this index's model (the
    # int8 ONNX export of MiniLM for MiniLM's torch vectors): anything else is refused.
    if not ctx.encoder.can_query(index.model_id):
        raise IndexMismatchError(f"index built with {index.model_id}, search uses {ctx.encoder.model_id}: "
                                 "run `briefcast reindex`")
    embedded = ctx.encoder.embed_batch([query])

    def rank(k: int, within: np.ndarray | None) -> list[int]:
        _, ids = index.search(embedded, k, within=within)
        return [int(i) for i in ids[0] if i >= 0] if len(ids) else []

    # IVF may return fewer than asked with more left unprobed: only a count this small is all of it.
    return _within(scope or Scope(conn, filters), depth, rank, lambda _ranked, wanted: index.count <= wanted)


def keyword_ranking(conn: Connection, snap: Snapshot, query: str, filters: SearchFilters, depth: int,
                    scope: Scope | None = None) -> list[int]:
    """BM25 over the query's words, any of them (OR), top `depth` only.

    An index written before keywords were versioned with the vectors has no keyword half until
    the next `briefcast embed` adds it: until then this ranking is empty and hybrid is vector-only.
    """
    terms = keyword_terms(query)
    if not terms or snap.keywords is None:
        return []
    keywords = snap.keywords

    def rank(k: int, within: np.ndarray | None) -> list[int]:
        return keywords.search(terms, k, within=within)

    # BM25 over OR'ed terms is exact: fewer than asked means every passage with a term was ranked.
    return _within(scope or Scope(conn, filters), depth, rank, lambda ranked, wanted: len(ranked) < wanted)


def multilingual_ranking(ml: MultilingualSearch, indexes: list[VectorIndex], query: str, depth: int,
                         scope: Scope) -> tuple[list[int], dict[int, float]]:
    """The second index's hits at or above its cosine floor, best first (both stores merged by
    cosine; each one's cosine beside): what an English query finds in Chinese, or a Chinese query
    in either language."""
    embedded = ml.encoder.embed_batch([query])
    merged: dict[int, float] = {}
    for index in indexes:
        if not ml.encoder.can_query(encoder_of(index.model_id)):
            raise IndexMismatchError(f"multilingual index built with {index.model_id}, search uses "
                                     f"{ml.encoder.model_id}: run `briefcast embed`")
        scored: dict[int, float] = {}

        def rank(k: int, within: np.ndarray | None, index: VectorIndex = index) -> list[int]:
            scores, ids = index.search(embedded, k, within=within)
            kept = [(int(i), float(c)) for c, i in zip(scores[0], ids[0]) if i >= 0 and c >= ml.floor] if len(ids) else []
            scored.update(kept)
            return [i for i, _ in kept]

        # Below the floor nothing more can pass: fewer than asked means all that can were ranked.
        for pid in _within(scope, depth, rank, lambda ranked, wanted: len(ranked) < wanted):
            merged[pid] = scored[pid]
    return sorted(merged, key=merged.__getitem__, reverse=True)[:depth], merged


def vector_rankings(ctx: SearchContext, conn: Connection, snap: Snapshot, query: str, filters: SearchFilters,
                    depth: int, scope: Scope, hybrid: bool = False) -> list[list[int]]:
    """The passage encoder's ranking and, while the second index holds anything, its ranking too.

    Each encoder ranks only what it reads: a query mostly in another script (Chinese) is not
    ranked by the passage encoder (English-only MiniLM), and the passage encoder's ranking drops
    the passages in languages it does not read (its cosines there are noise)."""
    ml = ctx.multilingual
    foreign = ml is not None and other_script(query)
    across = ml.indexes(foreign) if ml is not None else []
    rankings = []
    if not (foreign and across):
        ranked = vector_ranking(ctx, conn, snap, query, filters, depth, scope)
        unread = ml.other_ids() if across else frozenset()
        rankings.append([pid for pid in ranked if pid not in unread] if unread else ranked)
    if across:
        found, cosine = multilingual_ranking(ml, across, query, depth, scope)
        rankings.append(found)
        if hybrid and not foreign:
            # An English query's Chinese hits can get no keyword vote (another script): the close
            # ones (the strong floor, above every unrelated query's cosine) get it from here. Once
            # only, a Chinese twin sat below every English item found both ways.
            rankings.append([pid for pid in found if cosine[pid] >= ml.strong])
    return rankings


def fuse(rankings: list[list[int]]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking, start=1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)


def search(ctx: SearchContext, query: str, k: int = 10, filters: SearchFilters | None = None,
           mode: str = "hybrid") -> list[SearchHit]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    filters = filters or SearchFilters()
    depth = max(100, 10 * k)
    snap = ctx.reader.snapshot()  # one version for both rankings
    with ctx.sessions() as session:
        conn = session.connection()  # one connection for the whole search
        rankings, scope = [], Scope(conn, filters)  # both rankings share the filter's ids
        if mode in ("hybrid", "vector"):
            rankings.extend(vector_rankings(ctx, conn, snap, query, filters, depth, scope, hybrid=mode == "hybrid"))
        if mode in ("hybrid", "keyword"):
            rankings.append(keyword_ranking(conn, snap, query, filters, depth, scope))
        return _grouped_hits(ctx, conn, fuse(rankings), k)


def _grouped_hits(ctx: SearchContext, conn: Connection, fused: list[tuple[int, float]], k: int) -> list[SearchHit]:
    """The top k items, each by its best passage. Owners come from memory (embed/owners.py);
    should the hits' rows disagree with them, the query is regrouped from the database."""
    ids = [p for p, _ in fused]
    owner, from_memory = _owners(ctx, conn, ids)
    grouped = _group_by_item(owner, fused)
    hits = _hydrate(conn, grouped, k)
    if from_memory and not _rows_agree(hits, grouped[:k], owner):
        owner = owners_from_database(conn, ids)
        ctx.owners.correct(owner, ids)
        hits = _hydrate(conn, _group_by_item(owner, fused), k)
    return hits


def _owners(ctx: SearchContext, conn: Connection, ids: list[int]) -> tuple[dict[int, int], bool]:
    remembered = ctx.owners.lookup(conn, ids)
    return (remembered, True) if remembered is not None else (owners_from_database(conn, ids), False)


def _rows_agree(hits: list[SearchHit], top: list[tuple[int, float, int]], owner: dict[int, int]) -> bool:
    return len(hits) == len(top) and all(owner.get(h.passage_id) == h.item_id for h in hits)


# Core statements over plain columns, built once: SQLAlchemy caches their compiled form, and no
# ORM objects are made per row (profiled: ORM loading of Passage/Item/Source was most of a
# vector search's time at 1M). Item.text, a whole article, is never read here.
_IDS = bindparam("ids", expanding=True)
_PASSAGES, _ITEMS, _SOURCES = Passage.__table__, Item.__table__, Source.__table__
_HIT_ROWS = (
    select(_PASSAGES.c.id, _PASSAGES.c.text, _PASSAGES.c.start, _PASSAGES.c.end, _PASSAGES.c.speaker,
           _ITEMS.c.id, _ITEMS.c.title, _ITEMS.c.url, _ITEMS.c.published, _ITEMS.c.kind, _ITEMS.c.language,
           _SOURCES.c.id, _SOURCES.c.title, _SOURCES.c.url)
    .join(_ITEMS, _ITEMS.c.id == _PASSAGES.c.item_id).join(_SOURCES, _SOURCES.c.id == _ITEMS.c.source_id)
    .where(_PASSAGES.c.id.in_(_IDS))
)


def _group_by_item(owner: dict[int, int], fused: list[tuple[int, float]]) -> list[tuple[int, float, int]]:
    """Best passage per item, with how many more of its passages matched."""
    best: dict[int, tuple[int, float, int]] = {}
    for pid, score in fused:
        item = owner.get(pid)
        if item is None:
            continue  # deleted since the index was written
        if item in best:
            p, s, more = best[item]
            best[item] = (p, s, more + 1)
        else:
            best[item] = (pid, score, 0)
    return sorted(best.values(), key=lambda t: t[1], reverse=True)


def _hydrate(conn: Connection, grouped: list[tuple[int, float, int]], k: int) -> list[SearchHit]:
    top = grouped[:k]
    if not top:
        return []
    by_id = {row[0]: row for row in conn.execute(_HIT_ROWS, {"ids": [p for p, _, _ in top]})}
    hits = []
    for pid, score, more in top:
        if pid not in by_id:
            continue
        _, text, start, end, speaker, item_id, title, url, published, kind, language, source_id, s_title, s_url = by_id[pid]
        hits.append(SearchHit(
            item_id=item_id, passage_id=pid, title=title, url=url, source=s_title or s_url, source_id=source_id,
            published=published, kind=kind, language=language, text=text, score=round(score, 6),
            start=start, end=end, speaker=speaker, more_passages=more,
            link=moment_url(url, start) if kind == "episode" else safe_url(url),
        ))
    return hits
