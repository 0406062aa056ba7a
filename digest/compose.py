"""The daily brief of one topic: stories -> ranking -> grounded summaries of the top K -> Brief row.

`build_daily_brief` is idempotent: a brief is built once per (topic, day) and every later call,
in any process, returns the stored copy (which is what gets sent). Two builders racing on the
same (topic, day) both finish; the unique constraint keeps the first, and the second returns it.

Cost: the summariser is called only for the top K stories, never per item: K insight cards, one
story brief for the lead story, and podcast insights for at most K stories with episodes. Every
output goes through the grounding check before it reaches the brief. Cards are written once per
persona the topic's subscribers chose (at most MAX_PERSONAS), so each reader's key takeaway is for them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from digest.cluster import BRIEF_LANGUAGE, centroid_of, cluster_pending, distinct_members, item_language, story_members
from digest.insights import group_related
from digest.rank import Ranking, RankedStory, rank_stories
from digest.topics import TopicProfile, load_topic
from digest.vectors import passage_vectors
from embed.encoder import Encoder
from embed.index import VectorIndex
from digest.summary.base import GENERAL_READER, PassageText, StoryInput, Summarizer
from digest.summary.budget import fit_brief
from digest.summary.runtime import Summaries
from digest.summary.schema import (
    DailyBrief,
    InsightCard,
    PodcastBrief,
    PodcastInsight,
    Sentence,
    SourceRef,
    StoryBrief,
    from_dict,
    to_dict,
)
from store.models import Brief, BriefStory, Delivery, Item, Passage, Source, Story, Subscriber
from store.settings import Settings

MAX_PERSONAS = 3  # persona cards per story besides the general reader's: the ones subscribers chose
log = logging.getLogger(__name__)

PASSAGES_PER_STORY = 24  # what a summariser reads of one story, most central first
PASSAGES_PER_ITEM = 4  # so one long transcript cannot crowd the other sources out
PODCAST_INSIGHTS_PER_EPISODE = 3
UNVERIFIED_CLAIMS = 5  # claims only posts carry, listed under their own label


# --- the summariser, behind one seam -------------------------------------------------------------


def summaries_for(settings: Settings, sessions: sessionmaker[Session], encoder: Encoder,
                  summarizer: Summarizer | None) -> Summaries:
    """The configured summariser (or the given one) with the support check built from settings:
    nothing reaches a brief unchecked."""
    from digest.summary.runtime import make_summaries

    return make_summaries(settings, encoder, sessions, summarizer)


# --- story inputs ----------------------------------------------------------------------------------


def _publisher(source: Source) -> str:
    return source.title or source.site_url or source.url


def source_refs(session: Session, item_ids: list[int]) -> dict[int, SourceRef]:
    rows = session.execute(select(Item, Source).join(Source, Source.id == Item.source_id).where(Item.id.in_(item_ids))).all()
    return {i.id: SourceRef(item_id=i.id, title=i.title, url=i.url, publisher=_publisher(s), kind=i.kind,
                            published=i.published.isoformat() if i.published else None, language=item_language(i))
            for i, s in rows}


def readable(language: str | None) -> bool:
    """Whether a source is in the brief's language (unknown: taken as it)."""
    return language in (None, BRIEF_LANGUAGE)


def foreign_only(story: StoryInput) -> str | None:
    """The language of a story no source tells in the brief's language, else None."""
    languages = {s.language for s in story.sources}
    if not story.sources or any(readable(x) for x in languages):
        return None
    return sorted(languages)[0]


def central_passages(session: Session, item_ids: list[int], centroid: np.ndarray | None, index: VectorIndex | None,
                     limit: int = PASSAGES_PER_STORY) -> list[Passage]:
    """The story's passages most similar to its centroid, at most PASSAGES_PER_ITEM per item;
    in reading order (by item) when no vectors are at hand."""
    passages = list(session.scalars(select(Passage).where(Passage.item_id.in_(item_ids))
                                    .order_by(Passage.item_id, Passage.position)))
    vectors = passage_vectors(index, [p.id for p in passages]) if centroid is not None else {}
    if vectors:
        passages.sort(key=lambda p: -float(vectors[p.id] @ centroid) if p.id in vectors else 1.0)
    taken: dict[int, int] = {}
    out: list[Passage] = []
    for passage in passages:
        if taken.get(passage.item_id, 0) < PASSAGES_PER_ITEM:
            out.append(passage)
            taken[passage.item_id] = taken.get(passage.item_id, 0) + 1
        if len(out) >= limit:
            break
    return out


def story_input(session: Session, story: Story, profile: TopicProfile, index: VectorIndex | None,
                kinds: tuple[str, ...] | None = None) -> StoryInput:
    """What the summariser reads of one story: its distinct members (copies add nothing), their
    most central passages, and the topic's terms and personas. `kinds` narrows it (episodes only)."""
    members = [m for m in distinct_members(story_members(session, story.id)) if kinds is None or m.kind in kinds]
    # A summary is written from sources in the brief's language only (no machine translation:
    # a Chinese sentence never reaches an English card); the others are cited as sources, after them.
    members.sort(key=lambda m: not readable(m.language))
    refs = source_refs(session, [m.item_id for m in members])
    read = [m.item_id for m in members if readable(m.language)] or [m.item_id for m in members]
    chosen = central_passages(session, read, centroid_of(story), index)
    for passage in chosen:  # an episode is cited at its first chosen passage's time
        ref = refs.get(passage.item_id)
        if ref is not None and ref.kind == "episode" and ref.start is None:
            refs[passage.item_id] = replace(ref, start=passage.start, end=passage.end)
    return StoryInput(
        story_id=story.id, title=story.title, topic=profile.name,
        sources=[refs[m.item_id] for m in members if m.item_id in refs],
        passages=[PassageText(p.id, p.item_id, p.text, p.start, p.end, p.speaker, p.position) for p in chosen],
        topic_terms=list(profile.keywords), personas=list(profile.personas),
    )


# --- unverified claims ---------------------------------------------------------------------------


def unverified_claim(story_in: StoryInput, summaries: Summaries) -> Sentence | None:
    """A posts-only story as one line: its most central post sentence that stands alone (whole,
    quotes closed), citing it. The brief keeps it apart (DailyBrief.unverified, `unverified=True`);
    renderers label the section."""
    from digest.summary.extractive import central_sentence

    sentence = central_sentence(story_in, summaries.checker.vectors)
    return None if sentence is None else replace(sentence, unverified=True)


def _gather_unverified(cards: list[InsightCard], lead: StoryBrief | None, posts_only: list[Sentence],
                       limit: int) -> list[Sentence]:
    """Posts-only stories first, then the post-only claims the support check lifted out of the
    cards and the story brief; each once, at most `limit`."""
    seen: set[str] = set()
    out: list[Sentence] = []
    for sentence in [*posts_only, *(s for c in cards for s in c.unverified_claims),
                     *(lead.unverified_claims if lead else [])]:
        if sentence.text not in seen:
            seen.add(sentence.text)
            out.append(replace(sentence, unverified=True))
    return out[:limit]


# --- the brief -----------------------------------------------------------------------------------


def stored_brief(session: Session, topic: str, day: str) -> tuple[int, DailyBrief] | None:
    row = session.scalars(select(Brief).where(Brief.topic == topic, Brief.day == day)).first()
    return None if row is None else (row.id, from_dict(DailyBrief, row.payload))


def _discard_if_empty_and_unsent(session: Session, brief_id: int, brief: DailyBrief) -> bool:
    """A brief built before the day's items arrived has no insights: build it again, unless it
    already went out (then it is what readers got, and stays)."""
    if brief.cards:
        return False
    if session.scalar(select(func.count()).select_from(Delivery).where(Delivery.brief_id == brief_id)):
        return False
    session.execute(delete(Brief).where(Brief.id == brief_id))
    return True


class BriefAlreadySent(RuntimeError):
    """A brief that went out (or is going out) is what its readers got: it is never rebuilt."""


def discard_unsent_brief(sessions: sessionmaker[Session], topic: str, day: str) -> bool:
    """Delete the stored (topic, day) brief so the next build writes it anew (after changing the
    summariser or the topic profile); BriefAlreadySent when any delivery of that day exists."""
    with sessions() as session, session.begin():
        found = stored_brief(session, topic, day)
        if found is None:
            return False
        deliveries = session.execute(select(Delivery.status, func.count()).where(
            Delivery.topic == topic, Delivery.day == day).group_by(Delivery.status)).all()
        if deliveries:
            states = ", ".join(f"{n} {status}" for status, n in deliveries)
            raise BriefAlreadySent(f"the {topic} brief for {day} already has deliveries ({states}); "
                                   "a brief readers got is never rebuilt")
        session.execute(delete(BriefStory).where(BriefStory.brief_id == found[0]))
        session.execute(delete(Brief).where(Brief.id == found[0]))
        return True


def _has_episode(session: Session, story_id: int) -> bool:
    return any(m.kind == "episode" for m in distinct_members(story_members(session, story_id)))


@dataclass
class _Composed:
    cards: list[InsightCard]
    lead: StoryBrief | None
    podcasts: PodcastBrief | None
    unverified: list[Sentence]
    story_ids: list[int]


def compose(settings: Settings, sessions: sessionmaker[Session], profile: TopicProfile, day: str, ranking: Ranking,
            summaries: Summaries, encoder: Encoder, index: VectorIndex | None) -> _Composed:
    with sessions() as session:
        stories = {s.story_id: session.get(Story, s.story_id) for s in [*ranking.selected, *ranking.scored]}
        inputs = {s.story_id: story_input(session, stories[s.story_id], profile, index) for s in ranking.selected}
        cards = _cards(summaries, [inputs[s.story_id] for s in ranking.selected], brief_personas(session, profile))
        lead = None
        if ranking.selected:
            first = ranking.selected[0].story_id
            lead = summaries.story_brief(inputs[first]) if foreign_only(inputs[first]) is None else None
            lead = lead if lead and lead.paragraphs else None
        podcasts = _podcasts(session, settings, profile, day, ranking, stories, summaries, encoder, index)
        posts_only = []
        for s in ranking.unverified[: settings.brief_k]:
            claim = unverified_claim(story_input(session, stories[s.story_id], profile, index), summaries)
            if claim is not None:
                posts_only.append(claim)
    unverified = _gather_unverified(cards, lead, posts_only, UNVERIFIED_CLAIMS)
    cards, podcasts, unverified = fit_brief(cards, podcasts, unverified)
    story_ids = list(dict.fromkeys(c.story_id for c in cards))
    return _Composed(cards, lead, podcasts, unverified, story_ids)


def _cards(summaries: Summaries, stories: list[StoryInput], personas: list[str]) -> list[InsightCard]:
    """The general reader's card of each story, then a card for each persona that the story has
    something particular for (a persona card the summariser wrote as the general one is dropped:
    its reader gets the general card, without a false label)."""
    out: list[InsightCard] = []
    for story in stories:
        language = foreign_only(story)
        if language is not None:
            out.append(covered_only_card(story, language))
            continue
        general = summaries.card(story, GENERAL_READER)
        if general.unverified or not (general.summary or general.key_insights):
            continue
        out.append(general)
        for persona in personas:
            card = summaries.card(story, persona)
            if card.persona and not card.unverified and card.summary:
                out.append(card)
    return out


def covered_only_card(story: StoryInput, language: str) -> InsightCard:
    """A story told only in another language: its original headline and its sources, labelled; no
    summary (nothing here translates, and a foreign sentence is not a summary for this reader)."""
    return InsightCard(story_id=story.story_id, title=story.title, summary=[], key_takeaway=[], persona="",
                       key_insights=[], principles=[], in_practice=[], topics=[], best_for=[], sources=story.sources,
                       related=[], attribution="", reading_minutes=1, backend="none", covered_only_in=language)


def brief_personas(session: Session, profile: TopicProfile) -> list[str]:
    """The personas the topic's active subscribers chose (known to the topic first), at most
    MAX_PERSONAS: each is one more summariser call per story (the cost grows with K x personas).
    Everyone else, and the brief on disk, get the general reader's cards."""
    rows = session.execute(select(Subscriber.persona, Subscriber.topics).where(
        Subscriber.active.is_(True), Subscriber.persona.is_not(None))).all()
    wanted = {persona.strip() for persona, topics in rows if persona.strip() and profile.name in (topics or [])}
    known = [p for p in profile.persona_names if p in wanted]
    others = sorted(wanted - set(profile.persona_names))
    return list(dict.fromkeys([*known, *others]))[:MAX_PERSONAS]


def _podcasts(session, settings, profile, day, ranking: Ranking, stories, summaries: Summaries, encoder,
              index) -> PodcastBrief | None:
    """Podcast insights from the best-ranked stories that have episodes: at most K summariser calls."""
    eligible = sorted((s for s in ranking.scored if not s.posts_only and not s.details.get("off_topic") and s.total > 0),
                      key=lambda s: (s.rank is None, s.rank or 0, -s.total))
    with_episodes: list[RankedStory] = [s for s in eligible if _has_episode(session, s.story_id)][: settings.brief_k]
    insights: list[PodcastInsight] = []
    for ranked in with_episodes:
        episode_input = story_input(session, stories[ranked.story_id], profile, index, kinds=("episode",))
        found = summaries.podcast(episode_input, PODCAST_INSIGHTS_PER_EPISODE)
        insights.extend(replace(i, story_id=ranked.story_id) for i in found if not i.insight.unverified)
    if not insights:
        return None
    grouped = group_related(insights, encoder, settings.related_insight_threshold, limit=settings.brief_k)
    return PodcastBrief(topic=profile.name, day=day, insights=grouped)


def build_daily_brief(settings: Settings, sessions: sessionmaker[Session], topic: str, day: date, *,
                      encoder: Encoder | None = None, summarizer: Summarizer | None = None,
                      summaries: Summaries | None = None, now: datetime | None = None,
                      rebuild: bool = False) -> tuple[int, DailyBrief]:
    """The (topic, day) brief: the stored one if it exists, else built, stored and returned.
    `rebuild` discards a stored brief that has not been sent first (BriefAlreadySent if it was).

    Clusters pending items, ranks the topic's stories for the day, summarises the top
    `settings.brief_k` through the grounding check, stores the Brief and its BriefStory rows.
    """
    profile = load_topic(settings, topic)  # an unknown topic fails here, before any work
    day_str = day.isoformat()
    if rebuild:
        discard_unsent_brief(sessions, topic, day_str)
    with sessions() as session, session.begin():
        found = stored_brief(session, topic, day_str)
        if found is not None and _discard_if_empty_and_unsent(session, *found):
            found = None
    if found is not None:
        return found
    if encoder is None:
        from embed.runtime import make_encoder

        encoder = make_encoder(settings)
    from embed.runtime import passage_vectors_source

    index = passage_vectors_source(settings, sessions)
    summaries = summaries or summaries_for(settings, sessions, encoder, summarizer)
    cluster_pending(settings, sessions, encoder=encoder, index=index)
    ranking = rank_stories(settings, sessions, topic, day, encoder=encoder, now=now)
    composed = compose(settings, sessions, profile, day_str, ranking, summaries, encoder, index)
    brief = DailyBrief(topic=topic, topic_title=profile.title, day=day_str,
                       generated_at=(now or datetime.now(UTC)).isoformat(), cards=composed.cards, lead=composed.lead,
                       podcasts=composed.podcasts, unverified=composed.unverified, story_ids=composed.story_ids)
    return _store(sessions, brief)


def _store(sessions: sessionmaker[Session], brief: DailyBrief) -> tuple[int, DailyBrief]:
    payload = to_dict(brief)
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    try:
        with sessions() as session, session.begin():
            row = Brief(topic=brief.topic, day=brief.day, payload=payload, content_hash=digest)
            session.add(row)
            session.flush()
            for rank, story_id in enumerate(brief.story_ids, 1):
                session.add(BriefStory(brief_id=row.id, story_id=story_id, rank=rank))
            return row.id, brief
    except IntegrityError:  # another builder stored it first: theirs is the brief
        with sessions() as session:
            found = stored_brief(session, brief.topic, brief.day)
        if found is None:
            raise
        log.info("brief %s %s was built concurrently; returning the stored one", brief.topic, brief.day)
        return found
