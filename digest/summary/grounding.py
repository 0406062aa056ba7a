"""The support check: is each output sentence carried by the passages it cites?

Two cheap signals, combined into one score in 0..1:
- similarity: the best cosine between the sentence and any cited passage sentence (or pair of
  adjacent sentences, for a claim that spans two);
- lexical: the share of the sentence's content words found in the cited passages, minus a
  penalty for every number and every name the passages do not contain (an invented figure or
  entity is the commonest hallucination, and embeddings barely see it).
An optional LLM judge (a capable model behind the openai backend) can veto what passes.
Sentences without citations, or whose citations name no passage of the story, are unsupported.

Claims that only posts carry (kind=post, no article or episode says the same) are labelled
unverified by `label_unverified`, and kept out of the insights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from digest.summary.base import PassageText, StoryInput
from digest.summary.schema import InsightCard, PodcastInsight, Sentence, StoryBrief
from digest.summary.text import addresses_model, content_words, entities, numbers, split_sentences
from digest.summary.vectors import SentenceVectors

# Fitted on the dev splits of SummEdits (news, podcast) and QAGS (CNN/DM, XSum) with MiniLM by
# benchmarks/grounding.py; the held-out figures are in docs/benchmarks.md. Coverage terms are
# shares of the claim's content words; penalties count missing numbers / names (at most 2 each).
WEIGHTS = {
    "similarity": 0.5,  # best cosine to one evidence sentence
    "coverage": 0.5,  # content words found anywhere in the cited passages
    "local_coverage": 0.0,  # ... found in the few sentences most similar to the claim (no gain on dev)
    "number": 0.15,  # per number the cited passages do not contain (at most 2 counted)
    "entity": 0.2,  # per name the cited passages do not contain
    "local_number": 0.1,  # per number absent from the most similar sentences (a swapped figure)
    "local_entity": 0.0,  # per name absent from them (no gain on dev)
}
DEFAULT_THRESHOLD = 0.73
LOCAL_UNITS = 3  # how many of the most similar evidence sentences make the claim's local context

DROP = "drop"
MARK = "mark"


@dataclass(frozen=True)
class Support:
    score: float
    similarity: float
    coverage: float
    missing_numbers: tuple[str, ...] = ()
    missing_entities: tuple[str, ...] = ()
    local_coverage: float = 0.0
    local_missing_numbers: int = 0
    local_missing_entities: int = 0


UNCITED = Support(score=0.0, similarity=0.0, coverage=0.0)


class Judge(Protocol):
    """A model that reads each sentence beside its evidence: True supported, False not, None unsure."""

    def judge(self, claims: Sequence[str], evidence: Sequence[Sequence[str]]) -> list[bool | None]: ...


def combine(support: Support, weights: Mapping[str, float] | None = None) -> float:
    """The support score in 0..1 from a Support's features (weights: WEIGHTS, or a candidate's when fitting)."""
    w = WEIGHTS if weights is None else weights
    score = (w["similarity"] * support.similarity + w["coverage"] * support.coverage
             + w["local_coverage"] * support.local_coverage
             - w["number"] * min(len(support.missing_numbers), 2) - w["entity"] * min(len(support.missing_entities), 2)
             - w["local_number"] * min(support.local_missing_numbers, 2)
             - w["local_entity"] * min(support.local_missing_entities, 2))
    return float(min(1.0, max(0.0, score)))


def evidence_units(texts: Iterable[str]) -> list[str]:
    """The cited passages as sentences: what a claim is compared with."""
    return [u for text in texts for u in _units(text)]


@lru_cache(maxsize=20_000)
def _units(text: str) -> tuple[str, ...]:
    return tuple(split_sentences(text))


def _coverage(words: frozenset[str], text: str) -> float:
    return len(words & content_words(text)) / len(words) if words else 1.0


class GroundingChecker:
    def __init__(self, vectors: SentenceVectors, threshold: float = DEFAULT_THRESHOLD,
                 judge: Judge | None = None, mode: str = DROP) -> None:
        if mode not in (DROP, MARK):
            raise ValueError(f"grounding mode must be {DROP!r} or {MARK!r}, not {mode!r}")
        self.vectors = vectors
        self.threshold = threshold
        self.judge = judge
        self.mode = mode

    # -- scoring -------------------------------------------------------------------------------

    def score_many(self, claims: Sequence[str], evidence: Sequence[Sequence[str]]) -> list[Support]:
        """One Support per claim against its own evidence texts (passages); embeds in one batch."""
        units = [evidence_units(texts) for texts in evidence]
        flat = list(dict.fromkeys([*claims, *(u for us in units for u in us)]))
        row = {text: n for n, text in enumerate(flat)}
        matrix = self.vectors.embed(flat)
        return [self._support(claim, texts, us, matrix, row) for claim, texts, us in zip(claims, evidence, units)]

    def score(self, claim: str, evidence: Sequence[str]) -> Support:
        return self.score_many([claim], [evidence])[0]

    def _support(self, claim: str, texts: Sequence[str], units: list[str], matrix: np.ndarray,
                 row: Mapping[str, int]) -> Support:
        if not units:
            return UNCITED
        cosines = matrix[[row[u] for u in units]] @ matrix[row[claim]]
        nearest = " ".join(units[n] for n in np.argsort(-cosines)[:LOCAL_UNITS])
        joined = " ".join(texts)
        words = content_words(claim)
        lower, near_lower = joined.lower(), nearest.lower()
        claim_numbers, claim_entities = numbers(claim), entities(claim)
        support = Support(
            score=0.0, similarity=float(np.max(cosines)), coverage=_coverage(words, joined),
            missing_numbers=tuple(sorted(claim_numbers - numbers(joined))),
            missing_entities=tuple(sorted(e for e in claim_entities if e not in lower)),
            local_coverage=_coverage(words, nearest),
            local_missing_numbers=len(claim_numbers - numbers(nearest)),
            local_missing_entities=sum(1 for e in claim_entities if e not in near_lower))
        return dataclasses.replace(support, score=combine(support))

    def signature(self) -> str:
        """What decides this check's verdicts: part of the summaries cache key."""
        weights = ",".join(f"{k}={v}" for k, v in sorted(WEIGHTS.items()))
        judge = type(self.judge).__name__ if self.judge else "none"
        return f"{self.vectors.encoder.model_id}|{self.threshold}|{self.mode}|{weights}|judge={judge}"

    def supported(self, support: Support) -> bool:
        return support.score >= self.threshold

    # -- sentences -----------------------------------------------------------------------------

    def check_sentences(self, sentences: Sequence[Sentence], passages: Mapping[int, str]) -> list[Sentence]:
        """Scores every sentence against its cited passages; drops (or marks) the unsupported."""
        return self.check_groups([sentences], passages)[0]

    def check_groups(self, groups: Sequence[Sequence[Sentence]], passages: Mapping[int, str]) -> list[list[Sentence]]:
        """check_sentences over several lists at once: one embedding batch, one judge call."""
        sentences = [s for group in groups for s in group]
        checked = iter(self._checked(sentences, passages))
        out = [[c for c in (next(checked) for _ in group) if c is not None] for group in groups]
        return out

    def _checked(self, sentences: Sequence[Sentence], passages: Mapping[int, str]) -> list[Sentence | None]:
        cited = [[pid for pid in s.passage_ids if pid in passages] for s in sentences]
        supports = self.score_many([s.text for s in sentences], [[passages[p] for p in ids] for ids in cited])
        verdicts = [bool(ids) and self.supported(sup) and not addresses_model(s.text)
                    for s, ids, sup in zip(sentences, cited, supports)]
        verdicts = self._judged(sentences, cited, passages, verdicts)
        return [dataclasses.replace(sentence, passage_ids=ids, support=round(support.score, 3), unsupported=not ok)
                if ok or self.mode == MARK else None
                for sentence, ids, support, ok in zip(sentences, cited, supports, verdicts)]

    def _judged(self, sentences, cited, passages, verdicts: list[bool]) -> list[bool]:
        """The judge sees only what passed the cheap check, and can only veto."""
        if self.judge is None:
            return verdicts
        todo = [n for n, ok in enumerate(verdicts) if ok]
        if not todo:
            return verdicts
        answers = self.judge.judge([sentences[n].text for n in todo], [[passages[p] for p in cited[n]] for n in todo])
        out = list(verdicts)
        for n, answer in zip(todo, answers):
            if answer is False:
                out[n] = False
        return out

    # -- whole outputs -------------------------------------------------------------------------

    def check_card(self, card: InsightCard, story: StoryInput) -> InsightCard:
        fields = ("summary", "key_takeaway", "key_insights", "principles", "in_practice")
        checked = self.check_groups([getattr(card, f) for f in fields], passage_texts(story))
        card = dataclasses.replace(card, **dict(zip(fields, checked)), topics=grounded_terms(card.topics, story))
        return separate_unverified_card(card, story, self)

    def check_brief(self, brief: StoryBrief, story: StoryInput) -> StoryBrief:
        definitions = [[term.definition] for term in brief.glossary]
        checked = self.check_groups([*brief.paragraphs, *definitions], passage_texts(story))
        paragraphs = [p for p in checked[: len(brief.paragraphs)] if p]
        glossary = [dataclasses.replace(term, definition=kept[0])
                    for term, kept in zip(brief.glossary, checked[len(brief.paragraphs):])
                    if kept and term.term.lower() in kept[0].text.lower() and not addresses_model(term.term)]
        brief = dataclasses.replace(brief, paragraphs=paragraphs, glossary=glossary)
        return separate_unverified_brief(brief, story, self)

    def check_podcast(self, insights: Sequence[PodcastInsight], episode: StoryInput) -> list[PodcastInsight]:
        checked = self.check_groups([[i.insight] for i in insights], passage_texts(episode))
        return [dataclasses.replace(i, insight=kept[0]) for i, kept in zip(insights, checked) if kept]

    def check(self, output, story: StoryInput):
        if isinstance(output, InsightCard):
            return self.check_card(output, story)
        if isinstance(output, StoryBrief):
            return self.check_brief(output, story)
        return self.check_podcast(output, story)


def passage_texts(story: StoryInput) -> dict[int, str]:
    """What a summary may cite: each passage without the sentences that talk to the model."""
    return {p.passage_id: sanitise(p.text) for p in story.passages}


def sanitise(text: str) -> str:
    """A passage without its sentences addressed to a model ("ignore previous instructions...")."""
    sentences = split_sentences(text)
    if not any(addresses_model(s) for s in sentences):
        return text
    return " ".join(s for s in sentences if not addresses_model(s))


def sanitised_story(story: StoryInput) -> StoryInput:
    passages = [dataclasses.replace(p, text=sanitise(p.text)) for p in story.passages]
    return dataclasses.replace(story, passages=[p for p in passages if p.text.strip()])


def grounded_terms(terms: Iterable[str], story: StoryInput) -> list[str]:
    """Topic labels whose words all occur in the story's text (or its topic terms)."""
    vocabulary = content_words(" ".join([*passage_texts(story).values(), story.title, *story.topic_terms]))
    out: list[str] = []
    for term in terms:
        words = content_words(term)
        if words and words <= vocabulary and not addresses_model(term) and term not in out:
            out.append(term)
    return out


# -- unverified: claims only posts carry --------------------------------------------------------

def label_unverified(sentences: Sequence[Sentence], story: StoryInput,
                     checker: GroundingChecker | None = None) -> list[Sentence]:
    """Marks `unverified` every sentence whose citations are all posts, unless (with a checker) an
    article or episode passage of the story supports it too; that passage is then added to its
    citations. Sentences citing any article or episode are left as they are."""
    kinds = _passage_kinds(story)
    independent = {pid: p.text for pid, p in _by_id(story).items() if kinds.get(pid) not in (None, "post")}
    out: list[Sentence] = []
    post_only = [s for s in sentences if s.passage_ids and all(kinds.get(p) == "post" for p in s.passage_ids)]
    confirmations = _confirmations(post_only, independent, checker)
    post_ids = {id(s) for s in post_only}
    for sentence in sentences:
        if id(sentence) not in post_ids:
            out.append(sentence)
        elif (pid := confirmations.get(id(sentence))) is not None:
            out.append(dataclasses.replace(sentence, passage_ids=[*sentence.passage_ids, pid], unverified=False))
        else:
            out.append(dataclasses.replace(sentence, unverified=True))
    return out


def _confirmations(claims: Sequence[Sentence], independent: Mapping[int, str],
                   checker: GroundingChecker | None) -> dict[int, int]:
    """For each post-only claim, the best independent passage that supports it, if one does."""
    if checker is None or not claims or not independent:
        return {}
    ids = list(independent)
    found: dict[int, int] = {}
    for claim in claims:
        supports = checker.score_many([claim.text] * len(ids), [[independent[p]] for p in ids])
        best = max(range(len(ids)), key=lambda n: supports[n].score)
        if checker.supported(supports[best]):
            found[id(claim)] = ids[best]
    return found


def _by_id(story: StoryInput) -> dict[int, PassageText]:
    return {p.passage_id: p for p in story.passages}


def _passage_kinds(story: StoryInput) -> dict[int, str]:
    kind_of_item = {s.item_id: s.kind for s in story.sources}
    return {p.passage_id: kind_of_item.get(p.item_id, "article") for p in story.passages}


def _split_unverified(sentences: Sequence[Sentence]) -> tuple[list[Sentence], list[Sentence]]:
    return [s for s in sentences if not s.unverified], [s for s in sentences if s.unverified]


def still_unverified(claims: Sequence[Sentence], story: StoryInput, checker: GroundingChecker | None) -> list[Sentence]:
    """Of a backend's post-only claims, those no article or episode confirms."""
    return [s for s in label_unverified(claims, story, checker) if s.unverified]


def separate_unverified_card(card: InsightCard, story: StoryInput, checker: GroundingChecker | None) -> InsightCard:
    """Post-only claims leave the card's fields for `unverified_claims`; a card with nothing but
    post-only claims is itself unverified (shown labelled, never ranked as an insight)."""
    fields = ("summary", "key_takeaway", "key_insights", "principles", "in_practice")
    kept, moved = {}, still_unverified(card.unverified_claims, story, checker)
    for name in fields:
        kept[name], out = _split_unverified(label_unverified(getattr(card, name), story, checker))
        moved.extend(s for s in out if s.text not in {m.text for m in moved})
    only_posts = not any(kept[f] for f in fields) and bool(moved)
    if only_posts:  # keep the text visible, labelled, rather than an empty card
        kept["summary"] = moved
    return dataclasses.replace(card, **kept, unverified_claims=[] if only_posts else moved,
                               unverified=card.unverified or only_posts)


def separate_unverified_brief(brief: StoryBrief, story: StoryInput, checker: GroundingChecker | None) -> StoryBrief:
    paragraphs, moved = [], still_unverified(brief.unverified_claims, story, checker)
    for paragraph in brief.paragraphs:
        kept, out = _split_unverified(label_unverified(paragraph, story, checker))
        moved.extend(out)
        if kept:
            paragraphs.append(kept)
    return dataclasses.replace(brief, paragraphs=paragraphs, unverified_claims=moved)
