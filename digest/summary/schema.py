"""The typed outputs a brief is rendered from (seeds 000-002), JSON-serialisable both ways.

Every sentence carries the ids of the passages that support it; the support check fills
`support` and drops, or marks, what the cited passages do not carry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

SYNTHESIS_LABEL = "Editorial perspective - synthesised analysis, not factual reporting."


@dataclass
class Sentence:
    text: str
    passage_ids: list[int] = field(default_factory=list)  # what supports it; never empty in a brief
    support: float | None = None  # the support check's score, 0..1
    unverified: bool = False  # only posts carry it: shown as such, never ranked as an insight
    unsupported: bool = False  # failed the support check; only kept when grounding marks instead of drops


@dataclass
class SourceRef:
    """One item a card or brief cites: numbered [n] in a story brief."""

    item_id: int
    title: str
    url: str | None
    publisher: str
    kind: str  # article | episode | post
    published: str | None = None  # ISO 8601
    start: float | None = None  # episodes: where the cited passage starts, in seconds
    end: float | None = None
    language: str | None = None  # base language of the item ("zh"); None: unknown (taken as the brief's)


@dataclass
class InsightCard:
    """Seed 000: one story as an editorial card, for one persona."""

    story_id: int
    title: str
    summary: list[Sentence]
    key_takeaway: list[Sentence]
    persona: str
    key_insights: list[Sentence]
    principles: list[Sentence]
    in_practice: list[Sentence]
    topics: list[str]
    best_for: list[str]
    sources: list[SourceRef]
    related: list[SourceRef]
    attribution: str  # "Original article published by X"
    reading_minutes: int
    backend: str = ""
    model: str = ""
    unverified: bool = False
    unverified_claims: list[Sentence] = field(default_factory=list)  # post-only claims, kept out of the fields
    # A story no source tells in the brief's language ("zh"): the card is its original headline and
    # sources, labelled, with no summary (no machine translation here, and no foreign sentences).
    covered_only_in: str | None = None


@dataclass
class GlossaryTerm:
    term: str
    definition: Sentence


@dataclass
class StoryBrief:
    """Seed 001: one story told from several sources, [n] citations, a glossary."""

    story_id: int
    title: str
    paragraphs: list[list[Sentence]]
    sources: list[SourceRef]  # [n] is sources[n-1]
    glossary: list[GlossaryTerm]
    reading_minutes: int
    label: str = SYNTHESIS_LABEL
    backend: str = ""
    model: str = ""
    unverified_claims: list[Sentence] = field(default_factory=list)  # post-only claims, kept out of the text


@dataclass
class PodcastInsight:
    """Seed 002: an insight from one episode, with the same point from other episodes under it."""

    insight: Sentence
    episode: SourceRef
    story_id: int | None = None
    related: list[PodcastInsight] = field(default_factory=list)


@dataclass
class PodcastBrief:
    topic: str
    day: str
    insights: list[PodcastInsight]


@dataclass
class DailyBrief:
    """What one topic's morning email and Slack post are rendered from."""

    topic: str
    topic_title: str
    day: str  # YYYY-MM-DD
    generated_at: str  # ISO 8601
    cards: list[InsightCard]  # the top five, five different stories
    lead: StoryBrief | None
    podcasts: PodcastBrief | None
    unverified: list[Sentence] = field(default_factory=list)  # claims only posts carry: shown labelled, not ranked
    story_ids: list[int] = field(default_factory=list)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


T = TypeVar("T")


def from_dict(cls: type[T], data: Any) -> T:
    """Rebuild a dataclass tree from `to_dict` output (nested dataclasses, lists, optionals)."""
    return _build(cls, data)


def _build(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = get_origin(tp)
    if origin is list:
        (inner,) = get_args(tp)
        return [_build(inner, x) for x in data]
    if origin is not None and type(None) in get_args(tp):  # X | None
        inner = next(a for a in get_args(tp) if a is not type(None))
        return _build(inner, data)
    if dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: _build(hints[k], v) for k, v in data.items() if k in names})
    return data
