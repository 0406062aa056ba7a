"""The extractive backend: every field is made of source sentences, so nothing can be invented.

Sentences are scored by centrality (cosine to the story's centroid, each item weighing the same
so one long article does not drown the others) and picked by MMR so they do not repeat each
other. Advice ("should", "must", "consider", an imperative opening) feeds "in practice" and the
takeaway; general statements (no figures, few names) the principles. No model call is made, so
nothing is logged to model_calls.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embed.encoder import Encoder
from digest.summary.base import StoryInput, Summarizer, register
from digest.summary.schema import GlossaryTerm, InsightCard, PodcastInsight, Sentence, SourceRef, StoryBrief
from digest.summary.text import (
    STOPWORDS,
    addresses_model,
    is_generic,
    is_jargon,
    is_question,
    is_recommendation,
    name_mentions,
    reading_minutes,
    split_sentences,
    tokens,
    word_count,
)
from digest.summary.vectors import SentenceVectors, as_vectors

MIN_WORDS, MAX_WORDS = 6, 60
MMR_LAMBDA = 0.7
POST_PENALTY = 0.05  # posts are the noisiest source: an article saying the same thing wins
# Names every reader of the topic knows: never glossary entries.
COMMON_NAMES = {"ai", "us", "u.s", "uk", "eu", "un", "ceo", "usa", "china", "america", "europe", "india",
                "japan", "russia", "chinese", "american", "european", "western", "gpu", "gpus", "llm", "llms", "api",
                "apis"}


@dataclass(frozen=True)
class Candidate:
    text: str
    passage_id: int
    item_id: int
    order: int  # reading order across the story: passage order, then sentence position
    kind: str

    def sentence(self) -> Sentence:
        return Sentence(text=self.text, passage_ids=[self.passage_id])


class Pool:
    """A story's candidate sentences with their vectors and centrality, computed once."""

    def __init__(self, story: StoryInput, vectors: SentenceVectors) -> None:
        self.story = story
        self.candidates = candidates(story)
        self.words = sum(word_count(c.text) for c in self.candidates)
        self.vectors = vectors.embed([c.text for c in self.candidates])
        self.centroid = _item_balanced_centroid(self.vectors, [c.item_id for c in self.candidates])
        self.scores = self._scores()

    def _scores(self) -> np.ndarray:
        if not self.candidates:
            return np.zeros(0, dtype=np.float32)
        scores = self.vectors @ self.centroid
        terms = [t.lower() for t in self.story.topic_terms]
        for n, c in enumerate(self.candidates):
            lower = c.text.lower()
            scores[n] += 0.05 * any(t in lower for t in terms) - POST_PENALTY * (c.kind == "post")
        return scores

    def indices(self, keep=lambda c: True, exclude: set[int] = frozenset()) -> list[int]:
        return [n for n, c in enumerate(self.candidates) if n not in exclude and keep(c)]

    def mmr(self, pool: Sequence[int], k: int, bonus: np.ndarray | None = None) -> list[int]:
        """Maximal marginal relevance: relevance minus the closest already-picked sentence."""
        chosen: list[int] = []
        relevance = self.scores if bonus is None else self.scores + bonus
        left = list(pool)
        while left and len(chosen) < k:
            if chosen:
                redundancy = np.max(self.vectors[left] @ self.vectors[chosen].T, axis=1)
            else:
                redundancy = np.zeros(len(left))
            value = MMR_LAMBDA * relevance[left] - (1 - MMR_LAMBDA) * redundancy
            best = left[int(np.argmax(value))]
            chosen.append(best)
            left.remove(best)
        return chosen

    def sentences(self, picked: Sequence[int], reading_order: bool = False) -> list[Sentence]:
        if reading_order:
            picked = sorted(picked, key=lambda n: self.candidates[n].order)
        return [self.candidates[n].sentence() for n in picked]


def candidates(story: StoryInput) -> list[Candidate]:
    """Source sentences fit to quote: whole, of a readable length, said once, not addressed to a model."""
    kind_of = {s.item_id: s.kind for s in story.sources}
    seen: set[str] = {" ".join(tokens(s.title)) for s in story.sources}  # a headline is not a summary sentence
    out: list[Candidate] = []
    order = 0
    for passage in story.passages:
        kind = kind_of.get(passage.item_id, "article")
        for text in split_sentences(passage.text):
            order += 1
            key = " ".join(tokens(text))
            if key in seen or not _quotable(text, kind):
                continue
            seen.add(key)
            out.append(Candidate(text, passage.passage_id, passage.item_id, order, kind))
    return out


def _quotable(text: str, kind: str) -> bool:
    if not MIN_WORDS <= word_count(text) <= MAX_WORDS or addresses_model(text):
        return False
    if kind == "post" and not re.search(r"[.!?\"'”’)]$", text):  # a truncated post ends mid-sentence
        return False
    return "http" not in text and "<" not in text


def _item_balanced_centroid(vectors: np.ndarray, items: Sequence[int]) -> np.ndarray:
    if len(vectors) == 0:
        return np.zeros(vectors.shape[1], dtype=np.float32)
    groups: dict[int, list[int]] = {}
    for n, item in enumerate(items):
        groups.setdefault(item, []).append(n)
    centroid = np.mean([vectors[rows].mean(axis=0) for rows in groups.values()], axis=0)
    return (centroid / max(float(np.linalg.norm(centroid)), 1e-12)).astype(np.float32)


@register("extractive")
class ExtractiveSummarizer(Summarizer):
    name = "extractive"

    def __init__(self, encoder: Encoder | SentenceVectors, insights: int = 2, summary: int = 4,
                 principles: int = 3, in_practice: int = 3, brief_sentences: int = 10, glossary: int = 4) -> None:
        self.vectors = as_vectors(encoder)
        self.model = f"extractive+{self.vectors.encoder.model_id}"
        self.sizes = dict(insights=insights, summary=summary, principles=principles, in_practice=in_practice,
                          brief=brief_sentences, glossary=glossary)

    # -- insight card (seed 000) -----------------------------------------------------------------

    def insight_card(self, story: StoryInput, persona: str) -> InsightCard:
        pool = Pool(story, self.vectors)
        statements = _independent_first(pool, pool.indices(lambda c: not is_question(c.text)))
        advice = [n for n in statements if is_recommendation(pool.candidates[n].text)]
        claims = [n for n in statements if n not in set(advice)]
        insights = pool.mmr(claims, self.sizes["insights"])
        used = set(insights)
        summary = pool.mmr([n for n in claims if n not in used], self.sizes["summary"])
        used |= set(summary)
        principles = pool.mmr([n for n in claims if n not in used and is_generic(pool.candidates[n].text)],
                              self.sizes["principles"])
        spare = [n for n in claims if n not in used and n not in set(principles)]
        takeaway = self._takeaway(pool, advice or spare or insights, persona)
        practice = pool.mmr([n for n in advice if n not in takeaway], self.sizes["in_practice"])
        card_sentences = [*insights, *summary, *principles, *takeaway, *practice]
        return InsightCard(
            story_id=story.story_id, title=story.title,
            summary=pool.sentences(summary, reading_order=True), key_takeaway=pool.sentences(takeaway),
            persona=persona, key_insights=pool.sentences(insights), principles=pool.sentences(principles),
            in_practice=pool.sentences(practice), topics=topics(story), best_for=self._best_for(pool),
            sources=cited_sources(story, pool, card_sentences), related=uncited_sources(story, pool, card_sentences),
            attribution=attribution(story.sources), reading_minutes=reading_minutes(pool.words),
            backend=self.name, model=self.model, unverified_claims=post_claims(pool),
        )

    def _takeaway(self, pool: Pool, options: Sequence[int], persona: str) -> list[int]:
        """The advice (else claim) most central and closest to what the persona cares about."""
        if not options:
            return []
        target = self.vectors.embed([f"{persona}: {pool.story.topic} {pool.story.title}"])[0]
        value = pool.scores[list(options)] + 0.5 * (pool.vectors[list(options)] @ target)
        return [list(options)[int(np.argmax(value))]]

    def _best_for(self, pool: Pool) -> list[str]:
        personas = pool.story.personas
        if not personas or not len(pool.vectors):
            return list(personas[:3])
        closeness = self.vectors.embed(personas) @ pool.centroid
        return [personas[n] for n in np.argsort(-closeness)[:3]]

    # -- story brief (seed 001) ------------------------------------------------------------------

    def story_brief(self, story: StoryInput) -> StoryBrief:
        pool = Pool(story, self.vectors)
        statements = _independent_first(pool, pool.indices(lambda c: not is_question(c.text)))
        picked = self._diverse(pool, statements, self.sizes["brief"])
        lead, rest = picked[:2], sorted(picked[2:], key=lambda n: pool.candidates[n].order)
        paragraphs = [pool.sentences(lead)] + [pool.sentences(rest[i:i + 3]) for i in range(0, len(rest), 3)]
        paragraphs = [p for p in paragraphs if p]
        words = sum(word_count(s.text) for p in paragraphs for s in p)
        return StoryBrief(
            story_id=story.story_id, title=story.title, paragraphs=paragraphs,
            sources=list(story.sources), glossary=glossary(pool, self.sizes["glossary"]),
            reading_minutes=reading_minutes(words), backend=self.name, model=self.model,
            unverified_claims=post_claims(pool),
        )

    @staticmethod
    def _diverse(pool: Pool, statements: list[int], k: int) -> list[int]:
        """MMR with a push towards sources not yet quoted, so the brief is told from several."""
        chosen: list[int] = []
        left = list(statements)
        while left and len(chosen) < k:
            quoted = Counter(pool.candidates[n].item_id for n in chosen)
            bonus = np.array([-0.04 * quoted[pool.candidates[n].item_id] for n in left], dtype=np.float32)
            redundancy = (np.max(pool.vectors[left] @ pool.vectors[chosen].T, axis=1) if chosen
                          else np.zeros(len(left), dtype=np.float32))
            value = MMR_LAMBDA * (pool.scores[left] + bonus) - (1 - MMR_LAMBDA) * redundancy
            chosen.append(left.pop(int(np.argmax(value))))
        return chosen

    # -- podcast insights (seed 002) -------------------------------------------------------------

    def podcast_insights(self, episode: StoryInput, limit: int = 3) -> list[PodcastInsight]:
        pool = Pool(episode, self.vectors)
        claims = pool.indices(lambda c: not is_question(c.text) and word_count(c.text) >= 10)
        passages = {p.passage_id: p for p in episode.passages}
        out = []
        for n in pool.mmr(claims, limit):
            candidate = pool.candidates[n]
            passage = passages[candidate.passage_id]
            source = episode.source_of(candidate.item_id) or SourceRef(
                item_id=candidate.item_id, title=episode.title, url=None, publisher="", kind="episode")
            source = SourceRef(**{**source.__dict__, "start": passage.start, "end": passage.end})
            out.append(PodcastInsight(insight=candidate.sentence(), episode=source, story_id=episode.story_id))
        return out


def _independent_first(pool: Pool, pool_indices: list[int]) -> list[int]:
    """Articles and episodes tell the story; posts only when nothing else does."""
    independent = [n for n in pool_indices if pool.candidates[n].kind != "post"]
    return independent or pool_indices


def post_claims(pool: Pool, limit: int = 3) -> list[Sentence]:
    """The most central things only posts say, when articles or episodes tell the story too:
    candidates for the brief's "unverified" list (the support check confirms or labels them)."""
    if all(c.kind == "post" for c in pool.candidates):
        return []
    posts = pool.indices(lambda c: c.kind == "post" and not is_question(c.text))
    return [dataclasses.replace(s, unverified=True) for s in pool.sentences(pool.mmr(posts, limit))]


# -- fields built from the story, not from sentences ------------------------------------------------

def topics(story: StoryInput, limit: int = 6) -> list[str]:
    """The topic's terms that the story mentions, then its most repeated phrases."""
    kinds = {s.item_id: s.kind for s in story.sources}
    told = [p.text for p in story.passages if kinds.get(p.item_id) != "post"] or [p.text for p in story.passages]
    text = " ".join(told)
    lower = text.lower()
    found: list[str] = []
    candidates = [t for t in story.topic_terms if t.lower() in lower] + frequent_phrases(text)
    for term in candidates:  # "chip" and "chips", "export control(s)": one of each
        if len(found) >= limit:
            break
        if all(term.lower() not in f.lower() and f.lower() not in term.lower() for f in found):
            found.append(term)
    return [t if any(c.isupper() for c in t) else t.title() for t in found]


def frequent_phrases(text: str, limit: int = 10) -> list[str]:
    """Two- and three-word phrases without stopwords that recur, longest and most frequent first."""
    counts: Counter[str] = Counter()
    clauses = (c for s in dict.fromkeys(split_sentences(text)) for c in re.split(r"[,;:()\u2014\u2013\"“”]", s))
    for clause in clauses:
        words = re.findall(r"[A-Za-z][\w-]+", clause)
        for size in (2, 3):
            for i in range(len(words) - size + 1):
                gram = words[i:i + size]
                if all(w.lower() not in STOPWORDS and len(w) > 2 for w in gram):
                    counts[" ".join(gram).lower()] += 1
    ranked = sorted((g for g, c in counts.items() if c >= 2), key=lambda g: (-counts[g] * len(g.split()), g))
    return ranked[:limit]


def glossary(pool: Pool, limit: int) -> list[GlossaryTerm]:
    """Names a reader may not know (acronyms, model names, recurring proper names), each defined
    by the source sentence that best introduces it."""
    mentions: dict[str, list[int]] = {}
    publishers = {s.publisher.lower() for s in pool.story.sources}
    independent = any(c.kind != "post" for c in pool.candidates)
    for n, c in enumerate(pool.candidates):
        if independent and c.kind == "post":  # a rumour's names are not terms to teach
            continue
        for name in name_mentions(c.text):
            if not set(name.lower().split()) <= COMMON_NAMES and name.lower() not in publishers:
                mentions.setdefault(name, []).append(n)
    best = {t: max(ns, key=lambda n: _definition_value(pool, n, t)) for t, ns in mentions.items()}

    def value(term: str) -> float:  # jargon, introduced by a sentence that defines it, recurring
        return 2 * is_jargon(term) + 2 * _defines(pool.candidates[best[term]].text, term) + min(len(mentions[term]), 3)

    ranked = sorted((t for t in mentions if is_jargon(t) or len(mentions[t]) >= 2), key=lambda t: (-value(t), t))
    return [GlossaryTerm(term=t, definition=pool.candidates[best[t]].sentence()) for t in ranked[:limit]]


def _defines(text: str, term: str) -> bool:
    return bool(re.search(rf"{re.escape(term)}(?:['’]s)?\s*(?:,|\(|is\b|are\b|was\b|refers|means|stands|family)"
                          rf"|(?:called|known as|named)\s+{re.escape(term)}", text))


def _definition_value(pool: Pool, n: int, term: str) -> float:
    return float(pool.scores[n]) + (0.5 if _defines(pool.candidates[n].text, term) else 0.0)


def cited_sources(story: StoryInput, pool: Pool, picked: Sequence[int]) -> list[SourceRef]:
    items = {pool.candidates[n].item_id for n in picked}
    return [s for s in story.sources if s.item_id in items]


def uncited_sources(story: StoryInput, pool: Pool, picked: Sequence[int]) -> list[SourceRef]:
    items = {pool.candidates[n].item_id for n in picked}
    return [s for s in story.sources if s.item_id not in items]


def attribution(sources: Sequence[SourceRef]) -> str:
    """"Original article published by X" (the publishers of articles and episodes; posts only if
    nothing else tells the story)."""
    primary = [s for s in sources if s.kind != "post"] or list(sources)
    publishers = list(dict.fromkeys(s.publisher for s in primary if s.publisher))
    if not publishers:
        return ""
    noun = {"episode": "episode", "post": "post"}.get(primary[0].kind, "article")
    if len(publishers) == 1:
        return f"Original {noun} published by {publishers[0]}."
    names = ", ".join(publishers[:-1]) + f" and {publishers[-1]}"
    return f"Original {noun}s published by {names}."
