"""A topic's daily ranking: relevance x corroboration x novelty x recency x source weight, then MMR.

Parts, each in 0..1 except corroboration (1..2) and source weight (the sources' own, default 1):
  relevance      digest.topics: the story's centroid against the profile, plus keywords
  corroboration  2n / (n + 1) for n distinct independent publishers: 1 for one, 1.5 for three,
                 saturating, so a story many outlets carry beats a scoop without drowning relevance
  novelty        1 if no earlier brief of this topic carried the story; else the share of its
                 distinct members added since that brief (an old story counts only for its news)
  recency        0.5 ** (hours since the story was last seen / recency_half_life_hours)
  source weight  the highest weight among the story's publishers (sources.weight)
Candidates are the stories last seen within `rank_window_hours` before the end of the brief's day
(in the topic's time zone). Below `min_relevance` a story is off-topic and ranked nowhere.

A story that only posts carry (no article, no episode) is never ranked: it goes to the unverified
list, labelled (seed 003's rumour). The rest are picked by maximal marginal relevance over the
story centroids, so two near-same stories do not both take a top slot. Every part and its inputs
are stored in StoryScore, which `briefcast explain` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.cluster import (
    MemberView,
    centroid_of,
    distinct_members,
    lead_member,
    posts_only,
    publishers,
    story_members,
)
from digest.topics import Refiner, TopicProfile, TopicScorer, keyword_boost, load_topic
from embed.encoder import Encoder
from store.models import Brief, BriefStory, Item, Source, Story, StoryItem, StoryScore
from store.settings import Settings

LEAD_WORDS = 200  # of the lead item's text, searched for the profile's keywords
# A story no member of which the passage encoder understands (told only in Chinese) has a centroid
# that says nothing: its relevance is the story encoder's (USE-m3) cosine to the topic's texts,
# mapped onto MiniLM's scale: the slope by least squares over the sample world's English stories
# (correlation 0.92 over 18), the offset raised by the gap between Chinese items and their English
# twins (+0.061, fitting half of crosslingual_pairs.json; held-out mean error 0.051).
# benchmarks/crosslingual.py --relevance; docs/multilingual.md.
FOREIGN_SCALE = 1.312
FOREIGN_OFFSET = 0.05


class ForeignScorer:
    """Relevance of stories told only in languages the passage encoder lacks, by the story encoder;
    the topic's texts are embedded on the first such story (an English-only day never loads it)."""

    def __init__(self, profile: TopicProfile, encoder: Encoder, passage_languages: frozenset[str] | None) -> None:
        self.profile, self.encoder, self.passage_languages = profile, encoder, passage_languages
        self._scorer: TopicScorer | None = None

    def applies(self, members: list[MemberView]) -> bool:
        from embed.multilingual import covers

        distinct = distinct_members(members)
        return bool(distinct) and not any(covers(self.passage_languages, m.language) for m in distinct)

    def score(self, text: str):
        if self._scorer is None:
            self._scorer = TopicScorer(self.profile, self.encoder)
        relevance = self._scorer.score(self.encoder.embed_batch([text])[0], text)
        embedded = 0.5 * relevance.max_similarity + 0.5 * relevance.mean_similarity
        mapped = FOREIGN_SCALE * embedded + FOREIGN_OFFSET + keyword_boost(relevance.keywords)
        return replace(relevance, score=float(np.clip(mapped, 0.0, 1.0)))


@dataclass
class RankedStory:
    story_id: int
    title: str
    relevance: float
    corroboration: float
    novelty: float
    recency: float
    source_weight: float
    total: float
    posts_only: bool
    details: dict
    centroid: np.ndarray = field(repr=False)
    rank: int | None = None


@dataclass
class Ranking:
    topic: str
    day: str
    selected: list[RankedStory]  # the top K, rank 1 first, all different stories
    unverified: list[RankedStory]  # relevant stories only posts carry: shown labelled, never ranked
    scored: list[RankedStory]  # every candidate, selected or not


def day_window(profile: TopicProfile, day: date, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, reference) in UTC: the brief's day ends at local midnight; its reference instant is
    that end, or now if earlier (a brief built in the morning measures ages from the morning)."""
    end_local = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=profile.zone)
    end = end_local.astimezone(UTC)
    start = datetime.combine(day, datetime.min.time(), tzinfo=profile.zone).astimezone(UTC)
    now = now or datetime.now(UTC)
    return start, min(end, max(now, start))


def corroboration_factor(publisher_count: int) -> float:
    n = max(1, publisher_count)
    return 2 * n / (n + 1)


def recency_factor(last_seen: datetime, reference: datetime, half_life_hours: float) -> tuple[float, float]:
    age = max(0.0, (reference - last_seen).total_seconds() / 3600)
    return 0.5 ** (age / half_life_hours), age


def candidate_stories(session: Session, topic: str, since: datetime, until: datetime) -> list[Story]:
    """Stories seen in the window with a member from a source of this topic (or of no topic)."""
    query = (select(Story).where(Story.last_seen >= since, Story.first_seen <= until)
             .where(Story.id.in_(select(StoryItem.story_id).join(Item, Item.id == StoryItem.item_id)
                                 .join(Source, Source.id == Item.source_id)
                                 .where((Source.topic == topic) | Source.topic.is_(None))))
             .order_by(Story.id))
    return list(session.scalars(query))


def novelty_of(session: Session, story_id: int, topic: str, day: str) -> tuple[float, dict]:
    """1 for a story no earlier brief carried; else the share of distinct members added since."""
    earlier = session.execute(
        select(Brief.id, Brief.day, Brief.created_at).join(BriefStory, BriefStory.brief_id == Brief.id)
        .where(BriefStory.story_id == story_id, Brief.topic == topic, Brief.day < day)
        .order_by(Brief.created_at.desc()).limit(1)
    ).first()
    if earlier is None:
        return 1.0, {"earlier_brief": None}
    added = session.scalars(select(StoryItem.added_at).where(StoryItem.story_id == story_id,
                                                            StoryItem.duplicate_of.is_(None))).all()
    since = earlier[2]
    fresh = sum(1 for a in added if a is not None and a > since)
    return (fresh / len(added) if added else 0.0), {"earlier_brief": earlier[0], "earlier_day": earlier[1],
                                                   "members_since": fresh, "members": len(added)}


def _story_text(session: Session, members: list[MemberView]) -> str:
    lead = lead_member(members)
    body = session.get(Item, lead.item_id).text if lead else ""
    titles = " ".join(m.title for m in distinct_members(members))
    return f"{titles} {' '.join((body or '').split()[:LEAD_WORDS])}"


def _source_weight(session: Session, source_ids: set[int]) -> float:
    weights = session.scalars(select(Source.weight).where(Source.id.in_(source_ids))).all()
    return max((w if w is not None else 1.0 for w in weights), default=1.0)


def score_story(session: Session, story: Story, topic: str, day: str, scorer: TopicScorer, reference: datetime,
                settings: Settings, foreign: ForeignScorer | None = None) -> RankedStory | None:
    centroid = centroid_of(story)
    if centroid is None:
        return None
    members = story_members(session, story.id)
    text = _story_text(session, members)
    by_story_encoder = foreign is not None and foreign.applies(members)
    relevance = foreign.score(text) if by_story_encoder else scorer.score(centroid, text)
    sources = publishers(members)
    corroboration = corroboration_factor(len(sources))
    novelty, novelty_details = novelty_of(session, story.id, topic, day)
    recency, age = recency_factor(story.last_seen, reference, settings.recency_half_life_hours)
    weight = _source_weight(session, sources)
    total = relevance.score * corroboration * novelty * recency * weight
    only_posts = posts_only(members)
    details = {
        "relevance": relevance.details() | ({"by": foreign.encoder.model_id} if by_story_encoder else {}),
        "corroboration": {"publishers": sorted(sources), "count": len(sources)},
        "novelty": novelty_details,
        "recency": {"last_seen": story.last_seen.isoformat(), "reference": reference.isoformat(),
                    "age_hours": round(age, 2), "half_life_hours": settings.recency_half_life_hours},
        "source_weight": {"sources": sorted(sources), "weight": weight},
        "members": len(members), "distinct_members": len(distinct_members(members)),
        "kinds": sorted({m.kind for m in distinct_members(members)}),
        "posts_only": only_posts,
    }
    return RankedStory(story.id, story.title, relevance.score, corroboration, novelty, recency, weight, total,
                       only_posts, details, np.asarray(centroid, dtype=np.float32))


def mmr_select(stories: list[RankedStory], k: int, lam: float) -> list[RankedStory]:
    """Greedy maximal marginal relevance: score (scaled to the best) minus similarity to the picked."""
    pool = sorted((s for s in stories if s.total > 0), key=lambda s: (-s.total, s.story_id))
    if not pool:
        return []
    best = pool[0].total
    picked: list[RankedStory] = []
    while pool and len(picked) < k:
        def gain(s: RankedStory) -> tuple[float, float]:
            redundancy = max((float(s.centroid @ p.centroid) for p in picked), default=0.0)
            return lam * s.total / best - (1 - lam) * max(0.0, redundancy), redundancy

        choice = max(pool, key=lambda s: (gain(s)[0], -s.story_id))
        mmr, redundancy = gain(choice)
        choice.details["mmr"] = {"score": round(mmr, 4), "max_similarity_to_picked": round(redundancy, 4),
                                 "lambda": lam}
        choice.rank = len(picked) + 1
        picked.append(choice)
        pool.remove(choice)
    return picked


def store_scores(session: Session, topic: str, day: str, scored: list[RankedStory]) -> None:
    existing = {s.story_id: s for s in session.scalars(select(StoryScore).where(
        StoryScore.topic == topic, StoryScore.day == day, StoryScore.story_id.in_([s.story_id for s in scored])))}
    for s in scored:
        row = existing.get(s.story_id) or StoryScore(story_id=s.story_id, topic=topic, day=day)
        row.relevance, row.corroboration, row.novelty = s.relevance, s.corroboration, s.novelty
        row.recency, row.source_weight, row.total, row.rank = s.recency, s.source_weight, s.total, s.rank
        row.details = _json_safe(s.details)
        session.add(row)


def _json_safe(details: dict) -> dict:
    """Floats rounded, NaN impossible: the JSON column must load on SQLite and PostgreSQL alike."""
    def clean(value):
        if isinstance(value, float):
            return None if math.isnan(value) else round(value, 6)
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return clean(details)


def rank_stories(settings: Settings, sessions: sessionmaker[Session], topic: str, day: date, *, encoder: Encoder,
                 k: int | None = None, now: datetime | None = None, refiner: Refiner | None = None,
                 story_encoder: Encoder | None | str = "settings") -> Ranking:
    """Score every candidate story for (topic, day), pick the top k, store every score; the stage
    function the worker calls. `encoder` must be the index's model (profiles and centroids share a
    space); `story_encoder` (default: the one settings name) scores stories told only in languages
    the encoder lacks."""
    from embed.multilingual import languages_of

    profile = load_topic(settings, topic)
    scorer = TopicScorer(profile, encoder, refiner)
    if story_encoder == "settings":
        from embed.runtime import make_story_encoder

        story_encoder = make_story_encoder(settings)
    passage_languages = languages_of(encoder.model_id)
    foreign = ForeignScorer(profile, story_encoder, passage_languages) \
        if story_encoder is not None and passage_languages is not None else None
    k = settings.brief_k if k is None else k
    day_str = day.isoformat()
    _start, reference = day_window(profile, day, now)
    since = reference - timedelta(hours=settings.rank_window_hours)
    with sessions() as session, session.begin():
        scored = [s for story in candidate_stories(session, topic, since, reference)
                  if (s := score_story(session, story, topic, day_str, scorer, reference, settings, foreign)) is not None]
        relevant = [s for s in scored if s.relevance >= settings.min_relevance]
        for s in scored:
            s.details["off_topic"] = s.relevance < settings.min_relevance
        selected = mmr_select([s for s in relevant if not s.posts_only], k, settings.mmr_lambda)
        unverified = sorted((s for s in relevant if s.posts_only), key=lambda s: (-s.relevance * s.recency, s.story_id))
        store_scores(session, topic, day_str, scored)
    return Ranking(topic, day_str, selected, unverified, scored)
