"""A story's editorial page and an insight card, from the briefs that carried them.

The editorial (seed 001) is the brief's lead StoryBrief when this story led, else a stored
story brief of it (the summary cache), else one told from its card: the card's summary and key
insights as paragraphs, cited [n] to the card's sources by the passages behind each sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from api.web.languages import other_lang
from digest.render import CardView, LeadView, card_view, clean_text, lead_view, select_cards
from digest.summary.schema import DailyBrief, InsightCard, StoryBrief, from_dict
from store.models import Passage, Story, Summary


@dataclass
class RelatedStory:
    story_id: int
    title: str
    line: str
    lang: str = ""  # the title's language when a card is covered only in another one


@dataclass
class SourceLine:
    """One numbered source of the editorial: [n] links to it."""

    title: str
    url: str | None
    publisher: str
    kind: str
    published: datetime | None  # from the item (the brief keeps only its day)
    at: str  # episodes: m:ss of the cited passage
    lang: str  # "zh" for an item in another language than the page's, else ""


@dataclass
class StoryPage:
    story_id: int
    title: str
    title_lang: str  # "zh" for a headline in another language than the page's
    topic: str
    topic_title: str
    day: str
    lead: LeadView | None
    card: CardView | None
    explanation: dict | None  # api.commands.explain.load_explanation's answer
    sources: list[SourceLine] = field(default_factory=list)  # the editorial's [n], in order
    members: list[dict] = field(default_factory=list)  # the story's items the sources do not list already
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
    told = _told(sessions, brief, story_id, card)
    lead = _editorial(sessions, told)
    topic, day = (brief.topic, brief.day) if brief else (settings.web_topic, None)
    explanation = _explanation(sessions, story_id, topic, day)
    items = _item_facts(sessions, [ref.item_id for ref in (told.sources if told else [])]
                        + [m["item_id"] for m in (explanation or {}).get("members") or []])
    sources = _source_lines(lead, told, items) if lead else []
    cited = {ref.item_id for ref in told.sources} if lead else set()
    members = [m for m in _members(sessions, explanation, items) if m["item_id"] not in cited]
    return StoryPage(
        story_id=story_id, title=(lead.title if lead else "") or (clean_text(card.title) if card else "") or title,
        title_lang=_title_lang(card, items), topic=topic,
        topic_title=clean_text(brief.topic_title) if brief and brief.topic_title else topic, day=day or "",
        lead=lead, card=card_view(card, brief.podcasts.insights if brief.podcasts else []) if card else None,
        explanation=explanation, sources=sources, members=members,
        related=_related(brief, story_id, persona) if brief else [])


def _item_facts(sessions, item_ids: list[int]) -> dict[int, tuple[str, datetime | None]]:
    """item id -> (its language for a lang attribute, when it was published)."""
    from store.models import Item

    if not item_ids:
        return {}
    with sessions() as session:
        rows = session.execute(select(Item.id, Item.language, Item.published).where(Item.id.in_(set(item_ids)))).all()
    return {item_id: (other_lang(language), published) for item_id, language, published in rows}


def _title_lang(card: InsightCard | None, items: dict) -> str:
    """A card covered only in Chinese keeps its Chinese headline; a story all of whose items are in
    one other language has a headline in it."""
    if card is not None and card.covered_only_in:
        return other_lang(card.covered_only_in)
    langs = {lang for lang, _ in items.values()}
    return langs.pop() if len(langs) == 1 else ""


def _source_lines(lead: LeadView, told: StoryBrief, items: dict) -> list[SourceLine]:
    lines = []
    for link, ref in zip(lead.sources, told.sources, strict=True):
        lang, published = items.get(ref.item_id, (other_lang(ref.language), None))
        lines.append(SourceLine(title=link.title, url=link.url, publisher=link.publisher, kind=link.kind,
                                published=published, at=link.at, lang=lang or other_lang(ref.language)))
    return lines


@dataclass
class InsightPage:
    card: CardView
    title_lang: str  # a card covered only in Chinese keeps its Chinese headline
    brief: DailyBrief
    related: list[RelatedStory]


def insight_card(sessions, story_id: int, persona: str | None) -> InsightPage | None:
    from api.web.briefs_data import briefs_with_story

    for brief in briefs_with_story(sessions, story_id):
        card = _card_for(brief, story_id, persona)
        if card is not None:
            view = card_view(card, brief.podcasts.insights if brief.podcasts else [])
            return InsightPage(view, other_lang(card.covered_only_in), brief, _related(brief, story_id, persona))
    return None


def _card_for(brief: DailyBrief, story_id: int, persona: str | None) -> InsightCard | None:
    mine = [c for c in brief.cards if c.story_id == story_id]
    if not mine:
        return None
    chosen = select_cards(DailyBrief(brief.topic, brief.topic_title, brief.day, brief.generated_at, mine, None, None),
                          persona, limit=1)
    return chosen[0] if chosen else None


def _related(brief: DailyBrief, story_id: int, persona: str | None) -> list[RelatedStory]:
    from digest.render import covered_only_label, one_line

    # A card covered only in Chinese has no sentence of its own: its label, not its headline again.
    return [RelatedStory(c.story_id, clean_text(c.title), covered_only_label(c) or one_line(c), other_lang(c.covered_only_in))
            for c in select_cards(brief, persona, limit=len(brief.cards)) if c.story_id != story_id]


def _told(sessions, brief: DailyBrief | None, story_id: int, card: InsightCard | None) -> StoryBrief | None:
    """The brief's lead story brief, a stored one, or one made of the card (none for a card without a summary)."""
    told = brief.lead if brief and brief.lead and brief.lead.story_id == story_id else _cached_brief(sessions, story_id)
    if told is None and card is not None and (card.summary or card.key_insights):
        told = StoryBrief(story_id=story_id, title=card.title, sources=card.sources, glossary=[],
                          reading_minutes=card.reading_minutes,
                          paragraphs=[p for p in (card.summary, card.key_insights) if p])
    return told


def _editorial(sessions, told: StoryBrief | None) -> LeadView | None:
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


def _members(sessions, explanation: dict | None, items: dict) -> list[dict]:
    """The story's items with their links, times and languages (copies marked)."""
    from digest.render import safe_url
    from store.models import Item

    members = (explanation or {}).get("members") or []
    ids = [m["item_id"] for m in members]
    with sessions() as session:
        urls = dict(session.execute(select(Item.id, Item.url).where(Item.id.in_(ids))).all()) if ids else {}
    return [{"item_id": m["item_id"], "title": clean_text(m["title"]) or "untitled", "url": safe_url(urls.get(m["item_id"])),
             "publisher": clean_text(m["publisher"]), "kind": m["kind"], "published": m["published"],
             "duplicate": m["duplicate_of"] is not None, "lang": items.get(m["item_id"], ("", None))[0], "at": ""}
            for m in members]
