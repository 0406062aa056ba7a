"""What a reader trips over in a brief, counted: the figures benchmarks/brief_quality.py prints and
tests/test_brief_quality.py pins.

Counted over what the general reader reads (the general cards' text fields, the podcast insights,
the unverified claims):
- orphaned openings: a sentence opening with a pronoun or connective ("It", "And", "This") that
  does not follow its source predecessor (the summary sentence before it, citing the same passage);
- datelines ("WASHINGTON — ..."), unbalanced quotes, glued titles (a headline run into its
  subheading), verbless fragments (spaCy: no verb at a root);
- sentences repeated across fields (anywhere in the brief, once is enough);
- words per card and in the brief.
The same counts run on any list of text fields, so the seeds (written by people) are the reference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from digest.summary.budget import CARD_FIELDS
from digest.summary.language import english
from digest.summary.schema import DailyBrief, InsightCard, Sentence
from digest.summary.sentences import glued, quotes_balanced
from ingest.text import word_count

# The brief_counts tool's list (shared/tools/brief_counts.py) and the same dateline pattern, so
# our figure and the tool's agree; plus the wire-service forms.
OPENERS = frozenset({"it", "its", "they", "their", "them", "this", "that", "these", "those", "he", "she", "his",
                     "her", "and", "but", "so", "also", "however", "still", "yet", "which", "then", "meanwhile"})
DATELINE = re.compile(r"^[A-Z][A-Z .'-]{2,}\s+[—–-]{1,2}\s|^(?:[A-Z][\w.]*\s*)?\((?:Reuters|AP|AFP|CNN)\)\s*[—–-]")


@dataclass
class Counts:
    orphaned_openings: int = 0
    datelines: int = 0
    unbalanced_quotes: int = 0
    glued_titles: int = 0
    fragments: int = 0
    repeated: int = 0
    sentences: int = 0
    words_per_card: list[int] = field(default_factory=list)
    brief_words: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few offending sentences per count

    def problems(self) -> int:
        return self.orphaned_openings + self.datelines + self.unbalanced_quotes + self.glued_titles + self.fragments

    def as_dict(self) -> dict:
        return asdict(self)


def first_word(text: str) -> str:
    match = re.match(r"[\W_]*([A-Za-z]+)", text)  # "It's" opens with "It"
    return match.group(1).lower() if match else ""


def count_fields(fields: Sequence[Sequence[Sentence | str]], joined_fields: Sequence[int] = ()) -> Counts:
    """The counts over lists of sentences (each list one field); in the fields whose index is in
    `joined_fields` (a summary paragraph) a sentence right after one citing the same passages is
    read with it, as a continuation."""
    counts = Counts()
    texts: list[str] = []
    for n, group in enumerate(fields):
        previous: Sentence | None = None
        for item in group:
            sentence = item if isinstance(item, Sentence) else Sentence(text=str(item))
            text = " ".join(sentence.text.split())
            joined = n in joined_fields and previous is not None and previous.passage_ids == sentence.passage_ids \
                and bool(sentence.passage_ids)
            _tally(counts, "orphaned_openings", first_word(text) in OPENERS and not joined, text)
            _tally(counts, "datelines", bool(DATELINE.match(text)), text)
            _tally(counts, "unbalanced_quotes", not quotes_balanced(text), text)
            _tally(counts, "glued_titles", glued(text), text)
            texts.append(text)
            previous = sentence
    for text, parse in zip(texts, english().parse_many(texts)):
        _tally(counts, "fragments", not parse.has_verb, text)
    repeats = Counter(" ".join(t.lower().split()) for t in texts)
    counts.repeated = sum(c - 1 for c in repeats.values() if c > 1)
    counts.sentences = len(texts)
    counts.brief_words = sum(word_count(t) for t in texts)
    return counts


def _tally(counts: Counts, name: str, hit: bool, text: str) -> None:
    if hit:
        setattr(counts, name, getattr(counts, name) + 1)
        counts.examples.setdefault(name, [])
        if len(counts.examples[name]) < 3:
            counts.examples[name].append(text)


def card_fields(card: InsightCard) -> list[list[Sentence]]:
    return [list(getattr(card, f)) for f in CARD_FIELDS]


def count_cards(cards: Sequence[InsightCard]) -> Counts:
    fields = [f for card in cards for f in card_fields(card)]
    summaries = [n for n in range(len(fields)) if n % len(CARD_FIELDS) == 0]
    counts = count_fields(fields, summaries)
    counts.words_per_card = [sum(word_count(s.text) for f in card_fields(c) for s in f) for c in cards]
    return counts


def count_brief(brief: DailyBrief) -> Counts:
    """The counts over what the general reader reads in a stored brief."""
    general = [c for c in brief.cards if not c.persona] or list(brief.cards)
    shown = list({c.story_id: c for c in reversed(general)}.values())[::-1]
    insights = brief.podcasts.insights if brief.podcasts else []
    told = [i.insight for i in insights] + [r.insight for i in insights for r in i.related]
    fields = [f for card in shown for f in card_fields(card)] + [told, list(brief.unverified)]
    summaries = [n for n in range(len(shown) * len(CARD_FIELDS)) if n % len(CARD_FIELDS) == 0]
    counts = count_fields(fields, summaries)
    counts.words_per_card = [sum(word_count(s.text) for f in card_fields(c) for s in f) for c in shown]
    return counts

