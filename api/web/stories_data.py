"""A story's editorial page and an insight card, from the briefs that carried them.

The editorial (seed 001) is the brief's lead StoryBrief when this story led, else a stored
story brief of it (the summary cache), else one told from its card: the card's summary and key
insights as paragraphs, cited [n] to the card's sources by the passages behind each sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from digest.render import CardView, LeadView, card_view, clean_text, lead_view, select_cards
from digest.summary.schema import DailyBrief, InsightCard, StoryBrief, from_dict
from store.models import Passage, Story, Summary


@dataclass
class RelatedStory:
    story_id: int
    title: str
    line: str


@dataclass
class StoryPage:
    story_id: int
    title: str
    topic: str
    day: str
    lead: LeadView | None
    card: CardView | None
    explanation: dict | None  # api.commands.explain.load_explanation's answer
    members: list[dict] = field(default_factory=list)  # each: title, url, publisher, kind, published
    related: list[RelatedStory] = field(default_factory=list)


def story_page(settings, sessions, story_id: int, persona: str | None) -> StoryPage | None:
    from api.web.briefs_data import briefs_with_story

    with sessions() as session:
        story = session.get(Story, story_id)
        if story is None:
            return None
        title = clean_text(story.title)
    briefs = briefs_with_story(sessions, story_id)
    brief = briefs[0] if briefs else None
    card = _card_for(brief, story_id, persona) if brief else None
    lead = _editorial(sessions, brief, story_id, card)
    topic, day = (brief.topic, brief.day) if brief else (settings.web_topic, None)
    explanation = _explanation(sessions, story_id, topic, day)
    return StoryPage(
        story_id=story_id, title=(lead.title if lead else "") or (clean_text(card.title) if card else "") or title,
        topic=topic, day=day or "", lead=lead,
        card=card_view(card, brief.podcasts.insights if brief.podcasts else []) if card else None,
        explanation=explanation, members=_members(sessions, explanation),
        related=_related(brief, story_id, persona) if brief else [])


def insight_card(sessions, story_id: int, persona: str | None) -> tuple[CardView, DailyBrief, list[RelatedStory]] | None:
    from api.web.briefs_data import briefs_with_story

    for brief in briefs_with_story(sessions, story_id):
        card = _card_for(brief, story_id, persona)
        if card is not None:
            view = card_view(card, brief.podcasts.insights if brief.podcasts else [])
            return view, brief, _related(brief, story_id, persona)
    return None


def _card_for(brief: DailyBrief, story_id: int, persona: str | None) -> InsightCard | None:
    mine = [c for c in brief.cards if c.story_id == story_id]
    if not mine:
        return None
    chosen = select_cards(DailyBrief(brief.topic, brief.topic_title, brief.day, brief.generated_at, mine, None, None),
                          persona, limit=1)
    return chosen[0] if chosen else None


def _related(brief: DailyBrief, story_id: int, persona: str | None) -> list[RelatedStory]:
    from digest.render import one_line

    return [RelatedStory(c.story_id, clean_text(c.title), one_line(c))
            for c in select_cards(brief, persona, limit=len(brief.cards)) if c.story_id != story_id]


def _editorial(sessions, brief: DailyBrief | None, story_id: int, card: InsightCard | None) -> LeadView | None:
    told = brief.lead if brief and brief.lead and brief.lead.story_id == story_id else _cached_brief(sessions, story_id)
    if told is None and card is not None:
        told = StoryBrief(story_id=story_id, title=card.title, sources=card.sources, glossary=[],
                          reading_minutes=card.reading_minutes,
                          paragraphs=[p for p in (card.summary, card.key_insights) if p])
    if told is None:
        return None
    ids = {pid for paragraph in told.paragraphs for s in paragraph for pid in s.passage_ids}
    with sessions() as session:
        owners = dict(session.execute(select(Passage.id, Passage.item_id).where(Passage.id.in_(ids))).all()) if ids else {}
    return lead_view(told, owners)


def _cached_brief(sessions, story_id: int) -> StoryBrief | None:
    with sessions() as session:
        row = session.scalars(select(Summary).where(Summary.story_id == story_id, Summary.kind == "story_brief")
                              .order_by(Summary.created_at.desc())).first()
        if row is None:
            return None
        try:
            return from_dict(StoryBrief, row.payload)
        except (TypeError, KeyError, AttributeError, ValueError):
            return None


def _explanation(sessions, story_id: int, topic: str, day: str | None) -> dict | None:
    from api.commands.explain import load_explanation

    with sessions() as session:
        found = load_explanation(session, story_id, topic, day)
    return found if isinstance(found, dict) else None


def _members(sessions, explanation: dict | None) -> list[dict]:
    """The story's items with their links and times (copies marked), for "Sources"."""
    from digest.render import safe_url
    from store.models import Item

    members = (explanation or {}).get("members") or []
    ids = [m["item_id"] for m in members]
    with sessions() as session:
        urls = dict(session.execute(select(Item.id, Item.url).where(Item.id.in_(ids))).all()) if ids else {}
    return [{"item_id": m["item_id"], "title": clean_text(m["title"]) or "untitled", "url": safe_url(urls.get(m["item_id"])),
             "publisher": clean_text(m["publisher"]), "kind": m["kind"], "published": m["published"],
             "duplicate": m["duplicate_of"] is not None} for m in members]
