"""Budgets like the seeds': what one card and the whole brief may hold, and how they are trimmed.

Seed 000's card is 337 words with a long summary; seed 002 gives ten insights in 486 words. A
brief of five cards, the podcast insights and the unverified claims has to be a five-minute read
on a phone, so a card's text fields stay within CARD_WORDS and the brief within BRIEF_WORDS.
Every backend's card goes through `fit_card`: the extractive one picks within the budget, a
model's reply is trimmed here when it ran over.

Trimming drops the least needed sentence first: extra principles and actions, then insights
beyond two, then summary sentences beyond two (each field keeps its order, so the last sentence
of a field goes first); the minimums (summary 2, takeaway 1, insights 2) are never cut.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from digest.summary.schema import InsightCard, Sentence
from ingest.text import word_count

CARD_FIELDS = ("summary", "key_takeaway", "key_insights", "principles", "in_practice")
CARD_WORDS = 250  # the most a card's text fields may hold
BRIEF_WORDS = 1500  # the whole brief: cards, podcast insights, unverified claims (links excluded)
BRIEF_TARGET_WORDS = 1200
WORDS_PER_MINUTE = 230
# (fewest, most) sentences per field; principles and in_practice are omitted when the sources have none.
FIELD_LIMITS = {"summary": (2, 4), "key_takeaway": (1, 1), "key_insights": (2, 4), "principles": (0, 2),
                "in_practice": (0, 2)}
# What goes first when a card is over budget: (field, the count it may fall to).
TRIM_ORDER = (("in_practice", 1), ("principles", 1), ("key_insights", 3), ("summary", 3), ("in_practice", 0),
              ("principles", 0), ("key_insights", 2), ("summary", 2))


def words(sentences: Iterable[Sentence]) -> int:
    return sum(word_count(s.text) for s in sentences)


def card_words(card: InsightCard) -> int:
    return sum(words(getattr(card, f)) for f in CARD_FIELDS)


def reading_minutes(n_words: int) -> int:
    return max(1, math.ceil(n_words / WORDS_PER_MINUTE))


def within_limits(card: InsightCard) -> InsightCard:
    """Each field cut to its most sentences (a model may write more than asked)."""
    return dataclasses.replace(card, **{f: list(getattr(card, f))[:FIELD_LIMITS[f][1]] for f in CARD_FIELDS})


def fit_card(card: InsightCard, max_words: int = CARD_WORDS) -> InsightCard:
    """The card within its field limits and `max_words`, its reading time its own."""
    card = within_limits(card)
    for field, floor in TRIM_ORDER:
        if card_words(card) <= max_words:
            break
        kept = list(getattr(card, field))
        while len(kept) > floor and card_words(dataclasses.replace(card, **{field: kept})) > max_words:
            kept.pop()
        card = dataclasses.replace(card, **{field: kept})
    return dataclasses.replace(card, reading_minutes=reading_minutes(card_words(card)))


# --- the whole brief ---------------------------------------------------------------------------------

CARD_STEPS = (CARD_WORDS, 220, 200, 180, 160, 140)  # card budgets tried, largest first, until the brief fits


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def dedupe_across_cards(cards: list[InsightCard]) -> list[InsightCard]:
    """A sentence shown in an earlier story's card is not repeated in a later one (stories on one
    topic share sources; each sentence is read once)."""
    shown: set[str] = set()
    out: list[InsightCard] = []
    for story_id in dict.fromkeys(c.story_id for c in cards):
        mine = [c for c in cards if c.story_id == story_id]
        out.extend(dataclasses.replace(c, **{f: [s for s in getattr(c, f) if _key(s.text) not in shown]
                                             for f in CARD_FIELDS}) for c in mine)
        shown |= {_key(s.text) for c in mine for f in CARD_FIELDS for s in getattr(c, f)}
    return out


def brief_words(cards: list[InsightCard], podcasts, unverified: list[Sentence]) -> int:
    """What the general reader reads: the general cards, the podcast insights, the unverified list."""
    general = [c for c in cards if not c.persona] or cards
    insights = podcasts.insights if podcasts else []
    told = [i.insight for i in insights] + [r.insight for i in insights for r in i.related]
    return sum(card_words(c) for c in general) + words(told) + words(unverified)


def fit_brief(cards: list[InsightCard], podcasts, unverified: list[Sentence],
              target: int = BRIEF_TARGET_WORDS, limit: int = BRIEF_WORDS):
    """Cards without repeats, then card budgets lowered step by step until the brief reaches its
    target; podcast insights that repeat a card's sentence go, and related ones are cut last."""
    cards = dedupe_across_cards(cards)
    podcasts = _without_repeats(podcasts, cards)
    fitted = cards
    for budget in CARD_STEPS:
        fitted = [fit_card(c, budget) for c in cards]
        if brief_words(fitted, podcasts, unverified) <= target:
            break
    while podcasts and brief_words(fitted, podcasts, unverified) > limit and any(i.related for i in podcasts.insights):
        podcasts = dataclasses.replace(podcasts, insights=[dataclasses.replace(i, related=i.related[:-1])
                                                           for i in podcasts.insights])
    return fitted, podcasts, unverified


def _without_repeats(podcasts, cards: list[InsightCard]):
    if not podcasts:
        return podcasts
    shown = {_key(s.text) for c in cards for f in CARD_FIELDS for s in getattr(c, f)}
    kept = [dataclasses.replace(i, related=[r for r in i.related if _key(r.insight.text) not in shown])
            for i in podcasts.insights if _key(i.insight.text) not in shown]
    return dataclasses.replace(podcasts, insights=kept) if kept else None
