"""Items -> stories: incremental clustering by embedding similarity within a time window.

Each pending item (embedded, in no story yet), oldest first, joins the story whose centroid is
most similar to it, if that similarity reaches `story_threshold` and the story's items lie within
`story_window_hours` of it; otherwise it starts a story. A story's centroid is the running mean
of its distinct members' vectors, stored as float32 bytes *unnormalised*: an item's dot product
with that mean is its average cosine to the members (average link). A normalised centroid would
drift: the mean direction of five different stories on one topic is close to every story on the
topic, and swallows them all (measured: one 17-item story of six labelled stories). The mean's
length falls as the members spread, so a diffuse story stops attracting items.

Near-duplicates (a syndicated copy, a repost, a teaser of the same text: shingle Jaccard or
containment above `near_duplicate_overlap`, with the shingling of ingest.threads) join the story
of the item they copy with `duplicate_of` set: they are members, but count once: not in the
centroid, not in corroboration, not in the summary cache key. A copy on another site therefore
adds no publisher: the copy says nothing its original did not.

Corroboration is the number of distinct independent publishers among the distinct members. A
publisher is a source: a feed, a podcast, or a thread (all of one thread's posts are one
publisher). Two feeds of one newsroom count as two; merge them in the sources list if that matters.

The default encoder (all-MiniLM-L6-v2) is English-only: it maps any two Chinese texts close
together whatever they say (measured: the six Chinese sample items, on five stories, formed one).
So items in a language outside `story_languages` (default ["en"]) stay stories of their own. With
a multilingual encoder (encoder = "sentence-transformers" with encoder_path pointing at e.g.
multilingual-e5) set story_languages = [] and the same code clusters across languages.

One clusterer at a time: run it from one process (the Celery helper runs it as a single task).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.vectors import item_vectors, unit
from embed.encoder import Encoder
from embed.index import IndexStore, VectorIndex
from ingest.threads import normalise_for_dedupe, word_shingles  # the one shingling of the project
from store.models import Item, Story, StoryItem
from store.settings import Settings

CHUNK = 500  # items per transaction
DUPLICATE_CANDIDATES = 3  # the most similar stories searched for the original of a copy
MIN_CONTAINMENT_SHINGLES = 20  # a shorter text is judged on Jaccard only: containment of a few words means nothing
CITED_KINDS = ("article", "episode")  # what corroborates a claim; posts alone do not


@dataclass
class ClusterReport:
    items: int = 0
    new_stories: int = 0
    joined: int = 0
    duplicates: int = 0
    skipped: int = 0  # no vector yet (not embedded): clustered on a later run
    story_ids: list[int] = field(default_factory=list)  # every story created or changed


def item_time(item: Item) -> datetime:
    return item.published or item.created_at


def shingles_of(text: str) -> frozenset[str]:
    return word_shingles(normalise_for_dedupe(text or ""))


def overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """max(Jaccard, containment of the smaller set in the larger): a cut or re-footered copy of a
    long text shares most of the shorter one's shingles even when the Jaccard falls."""
    if not a or not b:
        return 0.0
    shared = len(a & b)
    jaccard = shared / (len(a) + len(b) - shared)
    smaller = min(len(a), len(b))
    return max(jaccard, shared / smaller) if smaller >= MIN_CONTAINMENT_SHINGLES else jaccard


def _could_overlap(a: int, b: int, threshold: float) -> bool:
    """Whether two shingle sets of these sizes can reach the threshold: Jaccard is at most
    min/max; containment needs the smaller set to be long enough to count."""
    small, large = min(a, b), max(a, b)
    return small > 0 and (small >= MIN_CONTAINMENT_SHINGLES or small >= threshold * large)


@dataclass
class _Member:
    item_id: int
    shingles: frozenset[str]


@dataclass
class _StoryState:
    """A story as the clusterer holds it during a run."""

    id: int
    centroid: np.ndarray  # the mean of the distinct members' unit vectors (not normalised)
    distinct: int
    first_seen: datetime
    last_seen: datetime
    members: list[_Member] | None = None  # distinct members' shingles, loaded on first need

    def absorb(self, vector: np.ndarray, when: datetime) -> None:
        self.centroid = (self.centroid * self.distinct + vector) / (self.distinct + 1)
        self.distinct += 1
        self.first_seen, self.last_seen = min(self.first_seen, when), max(self.last_seen, when)


class Clusterer:
    """One run's state: the open stories (centroid matrix) and the settings that bound joining."""

    def __init__(self, settings: Settings, index: VectorIndex | None, encoder: Encoder | None = None) -> None:
        self.languages = tuple(lang.lower() for lang in settings.story_languages)
        self.threshold = settings.story_threshold
        self.window = timedelta(hours=settings.story_window_hours)
        self.near_duplicate = settings.near_duplicate_overlap
        self.index, self.encoder = index, encoder
        self.stories: list[_StoryState] = []
        self._matrix: np.ndarray | None = None  # row n: stories[n].centroid
        self._seen: np.ndarray | None = None  # row n: stories[n] first/last seen, epoch seconds

    def understood(self, language: str | None) -> bool:
        """Whether the encoder's vectors mean anything for this language (unknown: assume so)."""
        return not self.languages or not language or language.lower().startswith(self.languages)

    def load_open_stories(self, session: Session, since: datetime) -> None:
        rows = session.execute(select(Story, Item.language).outerjoin(Item, Item.id == Story.lead_item_id)
                               .where(Story.last_seen >= since - self.window, Story.centroid.is_not(None)))
        for story, language in rows:
            if not self.understood(language):
                continue
            distinct = sum(1 for m in story.members if m.duplicate_of is None)
            self.stories.append(_StoryState(story.id, np.frombuffer(story.centroid, dtype=np.float32).copy(),
                                            max(distinct, 1), story.first_seen, story.last_seen))
        self._matrix = None

    def _rebuild(self) -> None:
        if self.stories:
            self._matrix = np.stack([s.centroid for s in self.stories])
            self._seen = np.array([[s.first_seen.timestamp(), s.last_seen.timestamp()] for s in self.stories])
        else:
            self._matrix = self._seen = None

    def _changed(self, n: int) -> None:
        """Story n absorbed an item: update its rows in place (restacking per item costs O(stories))."""
        if self._matrix is not None and n < len(self._matrix):
            story = self.stories[n]
            self._matrix[n] = story.centroid
            self._seen[n] = (story.first_seen.timestamp(), story.last_seen.timestamp())

    def candidates(self, vector: np.ndarray, when: datetime) -> list[tuple[float, int]]:
        """(similarity, story row) of the open stories within the window, most similar first."""
        if self._matrix is None or len(self._matrix) != len(self.stories):
            self._rebuild()
        if self._matrix is None:
            return []
        t, window = when.timestamp(), self.window.total_seconds()
        inside = np.flatnonzero((self._seen[:, 0] - window <= t) & (t <= self._seen[:, 1] + window))
        sims = self._matrix[inside] @ vector
        order = np.argsort(-sims)
        return [(float(sims[n]), int(inside[n])) for n in order]

    def add(self, session: Session, item: Item, vector: np.ndarray, report: ClusterReport) -> int:
        """Place one item; returns its story id."""
        when = item_time(item)
        mine = shingles_of(f"{item.title} {item.text}")
        if not self.understood(item.language):
            return self._new_story(session, item, vector, when, mine, report, open_to_others=False)
        ranked = self.candidates(vector, when)
        for similarity, row in ranked[:DUPLICATE_CANDIDATES]:
            story = self.stories[row]
            original = self._original_of(session, story, mine)
            if original is not None:
                session.add(StoryItem(story_id=story.id, item_id=item.id, similarity=similarity, duplicate_of=original))
                story.first_seen, story.last_seen = min(story.first_seen, when), max(story.last_seen, when)
                self._changed(row)
                report.duplicates += 1
                return story.id
        if ranked and ranked[0][0] >= self.threshold:
            similarity, row = ranked[0]
            story = self.stories[row]
            session.add(StoryItem(story_id=story.id, item_id=item.id, similarity=similarity))
            self._remember(session, story, item.id, mine)
            story.absorb(vector, when)
            self._changed(row)
            report.joined += 1
            return story.id
        return self._new_story(session, item, vector, when, mine, report)

    def _new_story(self, session, item, vector, when, mine, report, open_to_others: bool = True) -> int:
        story = Story(title=item.title or "", first_seen=when, last_seen=when, lead_item_id=item.id,
                      centroid=vector.astype(np.float32).tobytes(), item_count=1, corroboration=1)
        session.add(story)
        session.flush()
        session.add(StoryItem(story_id=story.id, item_id=item.id, similarity=1.0))
        if open_to_others:
            self.stories.append(_StoryState(story.id, vector.copy(), 1, when, when, [_Member(item.id, mine)]))
            self._matrix = None
        report.new_stories += 1
        return story.id

    def _original_of(self, session: Session, story: _StoryState, mine: frozenset[str]) -> int | None:
        if story.members is None:
            story.members = _load_members(session, story.id)
        scored = [(overlap(mine, m.shingles), m.item_id) for m in story.members
                  if _could_overlap(len(mine), len(m.shingles), self.near_duplicate)]
        best = max(scored, default=None)
        return best[1] if best is not None and best[0] >= self.near_duplicate else None

    def _remember(self, session: Session, story: _StoryState, item_id: int, mine: frozenset[str]) -> None:
        if story.members is None:
            story.members = _load_members(session, story.id)  # before the new row is flushed
            story.members = [m for m in story.members if m.item_id != item_id]
        story.members.append(_Member(item_id, mine))


def _load_members(session: Session, story_id: int) -> list[_Member]:
    rows = session.execute(
        select(Item.id, Item.title, Item.text).join(StoryItem, StoryItem.item_id == Item.id)
        .where(StoryItem.story_id == story_id, StoryItem.duplicate_of.is_(None))
    ).all()
    return [_Member(r[0], shingles_of(f"{r[1]} {r[2]}")) for r in rows]


def pending_query():
    """Items in no story, oldest first, so each story's first item is its earliest."""
    return (select(Item.id).outerjoin(StoryItem, StoryItem.item_id == Item.id).where(StoryItem.id.is_(None))
            .order_by(Item.published.asc().nulls_last(), Item.id))


def pending_items(session: Session, limit: int | None = None) -> list[Item]:
    ids = list(session.scalars(pending_query().limit(limit) if limit else pending_query()))
    return _items_in_order(session, ids)


def _items_in_order(session: Session, ids: list[int]) -> list[Item]:
    found = {i.id: i for i in session.scalars(select(Item).where(Item.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def cluster_items(settings: Settings, session: Session, items: list[Item], index: VectorIndex | None,
                  encoder: Encoder | None = None, clusterer: Clusterer | None = None) -> ClusterReport:
    """Place the given items (oldest first) into stories, inside the caller's transaction."""
    report = ClusterReport()
    vectors = item_vectors(session, items, index, encoder)
    placeable = [i for i in items if i.id in vectors]
    report.skipped = len(items) - len(placeable)
    if clusterer is None:
        clusterer = Clusterer(settings, index, encoder)
        if placeable:
            clusterer.load_open_stories(session, min(item_time(i) for i in placeable))
    touched: set[int] = set()
    for item in placeable:
        touched.add(clusterer.add(session, item, vectors[item.id], report))
        report.items += 1
    session.flush()
    states = {state.id: state for state in clusterer.stories}
    for story_id in touched:  # stories of a language the encoder lacks are touched but not open
        state = states.get(story_id)
        refresh_story(session, session.get(Story, story_id), state.centroid if state else None)
    report.story_ids = sorted(touched)
    return report


def cluster_pending(settings: Settings, sessions: sessionmaker[Session], *, encoder: Encoder | None = None,
                    index: VectorIndex | None = None, limit: int | None = None) -> ClusterReport:
    """Cluster every item not yet in a story (the stage function; the worker calls this).

    Vectors come from the passage index in `settings.index_dir` (or `index`); `encoder` is only
    used for items the index does not hold, and only when it is the index's model.
    """
    if index is None:
        index = IndexStore(settings.index_dir).load()
    with sessions() as session:
        pending = list(session.scalars(pending_query()))  # items arriving meanwhile wait for the next run
    if limit is not None:
        pending = pending[:limit]
    total = ClusterReport()
    clusterer: Clusterer | None = None
    for start in range(0, len(pending), CHUNK):
        with sessions() as session, session.begin():
            chunk = pending[start:start + CHUNK]
            placed = set(session.scalars(select(StoryItem.item_id).where(StoryItem.item_id.in_(chunk))))
            items = [i for i in _items_in_order(session, chunk) if i.id not in placed]  # by a run meanwhile
            if not items:
                continue
            if clusterer is None:
                clusterer = Clusterer(settings, index, encoder)
                clusterer.load_open_stories(session, min(item_time(i) for i in items))
            _merge(total, cluster_items(settings, session, items, index, encoder, clusterer))
    total.story_ids = sorted(set(total.story_ids))
    return total


def _merge(total: ClusterReport, part: ClusterReport) -> None:
    total.items += part.items
    total.new_stories += part.new_stories
    total.joined += part.joined
    total.duplicates += part.duplicates
    total.skipped += part.skipped
    total.story_ids.extend(part.story_ids)


# --- what a story is: recomputed from its members ---------------------------------------------


@dataclass(frozen=True)
class MemberView:
    item_id: int
    source_id: int
    kind: str
    title: str
    published: datetime
    content_hash: str
    duplicate_of: int | None
    similarity: float


def story_members(session: Session, story_id: int) -> list[MemberView]:
    rows = session.execute(
        select(Item, StoryItem).join(StoryItem, StoryItem.item_id == Item.id).where(StoryItem.story_id == story_id)
    ).all()
    members = [MemberView(i.id, i.source_id, i.kind, i.title, item_time(i), i.content_hash, si.duplicate_of, si.similarity)
               for i, si in rows]
    return sorted(members, key=lambda m: (m.published, m.item_id))


def distinct_members(members: Iterable[MemberView]) -> list[MemberView]:
    return [m for m in members if m.duplicate_of is None]


def publishers(members: Iterable[MemberView]) -> set[int]:
    """Distinct independent publishers: sources of the distinct members (copies count once)."""
    return {m.source_id for m in distinct_members(members)}


def posts_only(members: Iterable[MemberView]) -> bool:
    return not any(m.kind in CITED_KINDS for m in distinct_members(members))


def lead_member(members: list[MemberView]) -> MemberView | None:
    """The earliest distinct article or episode, else the earliest distinct post."""
    distinct = distinct_members(members)
    cited = [m for m in distinct if m.kind in CITED_KINDS]
    return (cited or distinct or members or [None])[0]


def members_hash(members: Iterable[MemberView]) -> str:
    """Stable over member order and over copies: the summary cache key."""
    hashes = sorted(f"{m.item_id}:{m.content_hash}" for m in distinct_members(members))
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def refresh_story(session: Session, story: Story, centroid: np.ndarray | None = None) -> Story:
    members = story_members(session, story.id)
    lead = lead_member(members)
    story.item_count = len(members)
    story.corroboration = len(publishers(members))
    story.first_seen = min((m.published for m in members), default=story.first_seen)
    story.last_seen = max((m.published for m in members), default=story.last_seen)
    story.lead_item_id = lead.item_id if lead else None
    story.title = lead.title if lead else story.title
    story.content_hash = members_hash(members)
    if centroid is not None:
        story.centroid = np.asarray(centroid, dtype=np.float32).tobytes()
    return story


def centroid_of(story: Story) -> np.ndarray | None:
    """The story's direction (unit length): for relevance, MMR and central passages."""
    return None if story.centroid is None else unit(np.frombuffer(story.centroid, dtype=np.float32))
