"""The extractive backend: every field is made of source sentences, so nothing can be invented.

Only sentences fit to stand alone are candidates (digest.summary.sentences: datelines stripped,
pronouns resolved where one name fits, fragments, filler and half quotes left out). Each is
scored by centrality (cosine to the story's centroid, each item weighing the same so one long
article does not drown the others) and by corroboration (how many other items say something
close). The card is then built like an editor would:

- Summary, one paragraph of 2-4 sentences: the most corroborated lede, then what other sources
  add (maximal marginal relevance, with a push towards sources not yet quoted). A sentence that
  leans on its predecessor may follow it there, and nowhere else.
- Key takeaway, one sentence: the implication or advice that is most central, and, for a persona,
  closest to what the persona cares about. A persona gets its own takeaway only when the story
  has a sentence that serves it clearly better than the general reader's; otherwise its reader
  gets the general card, without a "for <persona>" label.
- Key insights, 2-4 specific sentences (names, figures) not said above, ordered for the persona.
- Principles (general statements: no names, no figures, present tense) and In practice (advice)
  only when the sources contain such sentences; the section is omitted rather than filled.

Every card is then fitted to its word budget (digest.summary.budget). No model call is made.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from digest.summary.base import GENERAL_READER, Persona, StoryInput, Summarizer, register
from digest.summary.budget import fit_card, reading_minutes
from digest.summary.language import NAME_LABELS, Parse, english
from digest.summary.schema import GlossaryTerm, InsightCard, PodcastInsight, Sentence, SourceRef, StoryBrief
from digest.summary.sentences import judge_sequence, source_sentences
from digest.summary.text import STOPWORDS, is_jargon, is_recommendation, name_mentions, numbers, tokens, word_count
from digest.summary.vectors import SentenceVectors, as_vectors
from embed.encoder import Encoder

MMR_LAMBDA = 0.7
POST_PENALTY = 0.05  # posts are the noisiest source: an article saying the same thing wins
TOPIC_BONUS = 0.05
CORROBORATION_COSINE = 0.6  # another item "says the same" when one of its sentences is this close (MiniLM)
CORROBORATION_WEIGHT = 0.06  # per corroborating item, at most three counted
NEW_SOURCE_BONUS = 0.05  # summary: what another source adds beats more of the same source
LEDE_BONUS = 0.12  # the summary's first sentence: an item's opening sentences say what happened
LEDE_SENTENCES = 2  # how many opening sentences of an item count as its lede (after its title)
REDUNDANT_COSINE = 0.8  # a sentence this close to one already shown says nothing new
SUMMARY_WORDS = 100
STORY_BRIEF_WORDS = 170
PODCAST_MIN_WORDS = 10
MIN_INSIGHTS = 2
ADVICE_BONUS = 0.08  # a takeaway is best advice the sources give ...
IMPLICATION_BONUS = 0.04  # ... or what the news means
PERSONA_WEIGHT = 0.5  # how much the persona's interest moves the takeaway choice
PERSONA_MARGIN = 0.08  # the persona's takeaway must be this much closer to its interest than the general one
PERSONA_MIN_AFFINITY = 0.25
PERSONA_TERM_BONUS = 0.04  # per persona term in the sentence, at most three counted
PRINCIPLE_MAX_WORDS = 32
# A sentence about consequences: what the reader should take away rather than what happened.
_IMPLICATION = re.compile(r"\b(?:means?|meant|will|could|would|may|might|risks?|threat|signals?|suggests?|"
                          r"implications?|likely|expects?|expected|matters?|pressure|advantage|lesson|"
                          r"so that|because|which is why|the point)\b", re.IGNORECASE)
# Names every reader of the topic knows: never glossary entries.
COMMON_NAMES = {"ai", "us", "u.s", "uk", "eu", "un", "ceo", "usa", "china", "america", "europe", "india",
                "japan", "russia", "chinese", "american", "european", "western", "gpu", "gpus", "llm", "llms", "api",
                "apis"}


@dataclass(frozen=True)
class Candidate:
    text: str  # as shown: the sentence rules' rewrite of the source sentence
    passage_id: int
    item_id: int
    order: int  # reading order across the story: passage order, then sentence position
    kind: str
    needs_previous: bool = False  # shown only right after its source predecessor
    previous: int | None = None  # the pool index of that predecessor
    lede: bool = False  # among the first sentences of its item: where news puts what happened

    def sentence(self) -> Sentence:
        return Sentence(text=self.text, passage_ids=[self.passage_id])


@dataclass
class Candidates:
    found: list[Candidate] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count, for the quality figures


def candidates(story: StoryInput) -> Candidates:
    """Source sentences that may be shown: fit to stand alone, or right after their predecessor;
    each said once (overlapping passages repeat sentences), never a headline."""
    kind_of = {s.item_id: s.kind for s in story.sources}
    title_of = {s.item_id: s.title for s in story.sources}
    seen: dict[str, int] = {" ".join(tokens(s.title)): -1 for s in story.sources}
    out = Candidates()
    order = 0
    for passage in story.passages:
        kind = kind_of.get(passage.item_id, "article")
        raw = source_sentences(passage.text)
        verdicts = judge_sequence(raw, kind=kind, titles=[title_of.get(passage.item_id, "")])
        index_of_raw: dict[int, int] = {}
        for n, (source, verdict) in enumerate(zip(raw, verdicts)):
            order += 1
            key = " ".join(tokens(source))
            if key in seen:
                if seen[key] >= 0:
                    index_of_raw[n] = seen[key]
                continue
            if not verdict.usable or "http" in verdict.text or "<" in verdict.text:
                out.rejected[verdict.reason or "markup"] += 1
                continue
            previous = index_of_raw.get(n - 1) if verdict.needs_previous else None
            if verdict.needs_previous and previous is None:
                out.rejected["orphan"] += 1
                continue
            seen[key] = index_of_raw[n] = len(out.found)
            lede = passage.position == 0 and n <= LEDE_SENTENCES
            out.found.append(Candidate(verdict.text, passage.passage_id, passage.item_id, order, kind,
                                       verdict.needs_previous, previous, lede))
    return out


class Pool:
    """A story's candidate sentences with their vectors, parses and scores, computed once."""

    def __init__(self, story: StoryInput, vectors: SentenceVectors) -> None:
        self.story = story
        found = candidates(story)
        self.candidates, self.rejected = found.found, found.rejected
        self.vectors = vectors.embed([c.text for c in self.candidates])
        self.parses: list[Parse] = english().parse_many([c.text for c in self.candidates])
        self.centroid = _item_balanced_centroid(self.vectors, [c.item_id for c in self.candidates])
        self.corroboration = self._corroboration()
        self.scores = self._scores()

    def _corroboration(self) -> np.ndarray:
        """For each sentence, how many other items have a sentence this close (at most three)."""
        if not self.candidates:
            return np.zeros(0, dtype=np.float32)
        sims = self.vectors @ self.vectors.T
        items = np.array([c.item_id for c in self.candidates])
        counts = np.zeros(len(self.candidates), dtype=np.float32)
        for item in np.unique(items):
            others = items == item
            close = (sims[:, others] >= CORROBORATION_COSINE).any(axis=1) & (items != item)
            counts += close
        return np.minimum(counts, 3)

    def _scores(self) -> np.ndarray:
        if not self.candidates:
            return np.zeros(0, dtype=np.float32)
        scores = self.vectors @ self.centroid
        terms = [t.lower() for t in self.story.topic_terms]
        for n, c in enumerate(self.candidates):
            lower = c.text.lower()
            scores[n] += TOPIC_BONUS * any(t in lower for t in terms) - POST_PENALTY * (c.kind == "post")
        return scores

    def indices(self, keep=lambda n, c: True, exclude: set[int] = frozenset()) -> list[int]:
        return [n for n, c in enumerate(self.candidates) if n not in exclude and keep(n, c)]

    def standalone(self, exclude: set[int] = frozenset()) -> list[int]:
        """Sentences that stand alone, told by articles and episodes (posts only when nothing else tells it)."""
        found = self.indices(lambda n, c: not c.needs_previous and c.kind != "post", exclude)
        return found or self.indices(lambda n, c: not c.needs_previous, exclude)

    def redundant(self, n: int, shown: Sequence[int]) -> bool:
        return bool(shown) and float(np.max(self.vectors[list(shown)] @ self.vectors[n])) >= REDUNDANT_COSINE

    def mmr(self, pool: Sequence[int], k: int, bonus: np.ndarray | None = None,
            shown: Sequence[int] = ()) -> list[int]:
        """Maximal marginal relevance: relevance minus the closest sentence already picked or shown."""
        chosen: list[int] = []
        relevance = self.scores if bonus is None else self.scores + bonus
        left = [n for n in pool if not self.redundant(n, shown)]
        while left and len(chosen) < k:
            against = [*shown, *chosen]
            redundancy = (np.max(self.vectors[left] @ self.vectors[against].T, axis=1) if against
                          else np.zeros(len(left)))
            value = MMR_LAMBDA * relevance[left] - (1 - MMR_LAMBDA) * redundancy
            best = left[int(np.argmax(value))]
            chosen.append(best)
            left = [n for n in left if n != best and not self.redundant(n, [best])]
        return chosen

    def sentences(self, picked: Sequence[int]) -> list[Sentence]:
        return [self.candidates[n].sentence() for n in picked]

    def words(self, picked: Sequence[int]) -> int:
        return sum(word_count(self.candidates[n].text) for n in picked)

    # -- what a sentence is ----------------------------------------------------------------------

    def named(self, n: int) -> bool:
        return any(e.label in NAME_LABELS and e.label != "NORP" for e in self.parses[n].entities)

    def specific(self, n: int) -> bool:
        return self.named(n) or bool(numbers(self.candidates[n].text))

    def advice(self, n: int) -> bool:
        """Advice to the reader: an imperative, or "should", "it is worth", "consider"... Not "must",
        which in news mostly reports a rule imposed on someone."""
        text = self.candidates[n].text
        if any(q in text for q in '"“”') or _HINDSIGHT.search(text):  # someone else's words; "should have"
            return False
        return is_recommendation(text) and not (_OBLIGATION.search(text) and not _ADVICE.search(text))

    def implication(self, n: int) -> bool:
        return bool(_IMPLICATION.search(self.candidates[n].text))

    def principle(self, n: int) -> bool:
        """A general statement: no names or figures, present tense, a general subject (not "the X"
        of this story), short, not advice."""
        parse, text = self.parses[n], self.candidates[n].text
        if self.specific(n) or self.advice(n) or word_count(text) > PRINCIPLE_MAX_WORDS or parse.root is None:
            return False
        if any(t.tag in ("NNP", "NNPS") and (parse.entity_at(i) is None or parse.entity_at(i).label != "NORP")
               for i, t in enumerate(parse.tokens)):
            return False
        subject = parse.subject
        if subject is None or _particular(parse, subject) or parse.tokens[parse.root].lower in _SPEECH:
            return False
        root = parse.tokens[parse.root]
        present = root.tag in ("VBZ", "VBP") or any(
            parse.tokens[c].tag in ("VBZ", "VBP") or parse.tokens[c].lower in ("can", "may", "might", "could")
            for c in parse.children(parse.root))
        return present and not any(t.tag == "VBD" or t.lower in ("will", "'ll", "won't") for t in parse.tokens)


_SPEECH = frozenset("say says said argue argues argued note notes noted tell tells told claim claims claimed".split())
_HINDSIGHT = re.compile(r"\b(?:should|must|ought to)(?: not)? have\b|\bshould've\b", re.IGNORECASE)
_OBLIGATION = re.compile(r"\b(?:must|have to|has to|is required|are required)\b", re.IGNORECASE)
_ADVICE = re.compile(r"\b(?:should|ought to|worth|recommend|advis|consider|make sure|be sure to|need to|needs to)\b",
                     re.IGNORECASE)


def _particular(parse: Parse, subject: int) -> bool:
    """A subject that names one thing of this story: "The memory test", "Its licence", "Meridian"."""
    head = parse.tokens[subject]
    if head.pos == "PRON":
        return head.lower not in ("everyone", "anyone", "nobody", "no one", "everybody")
    dets = [parse.tokens[c] for c in parse.children(subject) if parse.tokens[c].dep in ("det", "poss")]
    definite = any(d.lower in ("the", "this", "that", "these", "those", "its", "their", "his", "her", "each", "both")
                   for d in dets)
    return definite or (not dets and head.tag in ("NNP", "NNPS"))


def _item_balanced_centroid(vectors: np.ndarray, items: Sequence[int]) -> np.ndarray:
    if len(vectors) == 0:
        return np.zeros(vectors.shape[1], dtype=np.float32)
    groups: dict[int, list[int]] = {}
    for n, item in enumerate(items):
        groups.setdefault(item, []).append(n)
    centroid = np.mean([vectors[rows].mean(axis=0) for rows in groups.values()], axis=0)
    return (centroid / max(float(np.linalg.norm(centroid)), 1e-12)).astype(np.float32)


class PersonaLens:
    """How close a sentence is to what a persona cares about: its examples (cosine) and terms."""

    def __init__(self, persona: Persona, vectors: SentenceVectors) -> None:
        self.persona = persona
        self.examples = vectors.embed(persona.texts())
        self.terms = [t.lower() for t in persona.terms]

    def affinity(self, pool: Pool, n: int) -> float:
        closeness = float(np.max(self.examples @ pool.vectors[n]))
        lower = pool.candidates[n].text.lower()
        hits = sum(1 for t in self.terms if re.search(rf"(?<!\w){re.escape(t)}", lower))
        return closeness + PERSONA_TERM_BONUS * min(hits, 3)


@register("extractive")
class ExtractiveSummarizer(Summarizer):
    name = "extractive"

    def __init__(self, encoder: Encoder | SentenceVectors, insights: int = 3, summary: int = 4,
                 principles: int = 2, in_practice: int = 2, glossary: int = 3) -> None:
        self.vectors = as_vectors(encoder)
        self.model = f"extractive+{self.vectors.encoder.model_id}"
        self.sizes = dict(insights=insights, summary=summary, principles=principles, in_practice=in_practice,
                          glossary=glossary)

    # -- insight card (seed 000) -----------------------------------------------------------------

    def insight_card(self, story: StoryInput, persona: str) -> InsightCard:
        pool = Pool(story, self.vectors)
        lede = self._lede(pool)
        # The takeaway is chosen before the rest of the summary, so a persona's can be any sentence
        # but the lede; the summary then tells the story around it.
        takeaway, label, lens = self._takeaway(pool, set(lede), story.persona(persona))
        summary = self._summary(pool, lede, exclude=set(takeaway))
        used = set(summary) | set(takeaway)
        insights = self._insights(pool, used, lens)
        used |= set(insights)
        principles = pool.mmr([n for n in pool.standalone(used) if pool.principle(n)], self.sizes["principles"],
                              shown=sorted(used))
        used |= set(principles)
        practice = pool.mmr([n for n in pool.standalone(used) if pool.advice(n)], self.sizes["in_practice"],
                            shown=sorted(used))
        shown = [*summary, *takeaway, *insights, *principles, *practice]
        card = InsightCard(
            story_id=story.story_id, title=story.title, summary=pool.sentences(summary),
            key_takeaway=pool.sentences(takeaway), persona=label, key_insights=pool.sentences(insights),
            principles=pool.sentences(principles), in_practice=pool.sentences(practice), topics=topics(story),
            best_for=self._best_for(pool), sources=cited_sources(story, pool, shown),
            related=uncited_sources(story, pool, shown), attribution=attribution(story.sources),
            reading_minutes=1, backend=self.name, model=self.model, unverified_claims=post_claims(pool),
        )
        return fit_card(card)

    @staticmethod
    def _lede(pool: Pool) -> list[int]:
        """The summary's first sentence: central, corroborated by other sources, an item's opening."""
        options = pool.standalone()
        if not options:
            return []
        value = (pool.scores[options] + CORROBORATION_WEIGHT * pool.corroboration[options]
                 + LEDE_BONUS * np.array([pool.candidates[n].lede for n in options]))
        return [options[int(np.argmax(value))]]

    def _summary(self, pool: Pool, lede: list[int], exclude: set[int] = frozenset()) -> list[int]:
        """The lede, then what other sources add, as one paragraph."""
        chosen = list(lede)
        while chosen and len(chosen) < self.sizes["summary"]:
            follow = self._follow_on(pool, chosen)
            left = [n for n in [*pool.standalone(set(chosen) | exclude), *follow]
                    if n not in exclude and not pool.redundant(n, chosen)]
            if not left:
                break
            quoted = Counter(pool.candidates[n].item_id for n in chosen)
            value = [MMR_LAMBDA * (pool.scores[n] + NEW_SOURCE_BONUS * (quoted[pool.candidates[n].item_id] == 0))
                     - (1 - MMR_LAMBDA) * float(np.max(pool.vectors[chosen] @ pool.vectors[n])) for n in left]
            best = left[int(np.argmax(value))]
            if len(chosen) >= 2 and pool.words([*chosen, best]) > SUMMARY_WORDS:
                break
            chosen.append(best)
        return chosen

    @staticmethod
    def _follow_on(pool: Pool, chosen: list[int]) -> list[int]:
        """A sentence that leans on its predecessor, right after that predecessor."""
        last = chosen[-1]
        return [n for n, c in enumerate(pool.candidates) if c.needs_previous and c.previous == last and n not in chosen]

    def _takeaway(self, pool: Pool, used: set[int],
                  persona: Persona | None) -> tuple[list[int], str, PersonaLens | None]:
        """One sentence but the lede: the most central, with a push for advice and for implications;
        for a persona, the one closest to its interest, if clearly closer than the general reader's."""
        options = [n for n in pool.standalone(used) if not pool.redundant(n, sorted(used))]  # not the lede again
        if not options:
            return [], GENERAL_READER, None
        value = {n: float(pool.scores[n]) + ADVICE_BONUS * pool.advice(n) + IMPLICATION_BONUS * pool.implication(n)
                 - LEDE_BONUS * pool.candidates[n].lede for n in options}  # what happened is the summary's
        floor = float(np.quantile(pool.scores[options], 0.25))
        advice = [n for n in options if pool.advice(n) and pool.scores[n] >= floor]  # advice the story gives, first
        general = max(advice or options, key=value.get)
        if persona is None:
            return [general], GENERAL_READER, None
        lens = PersonaLens(persona, self.vectors)
        affinity = {n: lens.affinity(pool, n) for n in options}
        best = max(options, key=lambda n: value[n] + PERSONA_WEIGHT * affinity[n])
        distinct = (best != general and affinity[best] >= PERSONA_MIN_AFFINITY
                    and affinity[best] - affinity[general] >= PERSONA_MARGIN)
        if not distinct:
            return [general], GENERAL_READER, None
        return [best], persona.name, lens

    def _insights(self, pool: Pool, used: set[int], lens: PersonaLens | None) -> list[int]:
        """Specific sentences (names, figures) not said above; for a persona, its closest first."""
        specific = [n for n in pool.standalone(used) if pool.specific(n) and not pool.advice(n)]
        picked = pool.mmr(specific, self.sizes["insights"], shown=sorted(used))
        if len(picked) < MIN_INSIGHTS:  # too few specific ones: the most central others make up two
            picked += pool.mmr(pool.standalone(used | set(picked)), MIN_INSIGHTS - len(picked),
                               shown=sorted(used | set(picked)))
        if lens is not None:
            picked.sort(key=lambda n: -lens.affinity(pool, n))
        return picked

    def _best_for(self, pool: Pool) -> list[str]:
        personas = pool.story.personas
        if not personas or not len(pool.vectors):
            return [p.name for p in personas[:3]]
        closeness = [float(np.max(self.vectors.embed(p.texts()) @ pool.centroid)) for p in personas]
        return [personas[n].name for n in np.argsort(closeness)[::-1][:3]]

    # -- story brief (seed 001) ------------------------------------------------------------------

    def story_brief(self, story: StoryInput) -> StoryBrief:
        """The lede paragraph (the card's summary), then what the other sources add in their order."""
        pool = Pool(story, self.vectors)
        lead = self._summary(pool, self._lede(pool))
        rest = self._diverse(pool, [n for n in pool.standalone(set(lead))], lead)
        paragraphs = [p for p in (pool.sentences(lead), pool.sentences(rest)) if p]
        n_words = sum(word_count(s.text) for p in paragraphs for s in p)
        return StoryBrief(
            story_id=story.story_id, title=story.title, paragraphs=paragraphs,
            sources=list(story.sources), glossary=glossary(pool, self.sizes["glossary"]),
            reading_minutes=reading_minutes(n_words), backend=self.name, model=self.model,
            unverified_claims=post_claims(pool),
        )

    @staticmethod
    def _diverse(pool: Pool, statements: list[int], shown: list[int]) -> list[int]:
        """Sentences from sources not yet quoted first, within the brief's words, in reading order."""
        chosen: list[int] = []
        left = [n for n in statements if not pool.redundant(n, shown)]
        while left and pool.words([*shown, *chosen]) < STORY_BRIEF_WORDS:
            quoted = Counter(pool.candidates[n].item_id for n in [*shown, *chosen])
            against = [*shown, *chosen]
            value = [MMR_LAMBDA * (pool.scores[n] - 0.04 * quoted[pool.candidates[n].item_id])
                     - (1 - MMR_LAMBDA) * float(np.max(pool.vectors[against] @ pool.vectors[n])) for n in left]
            best = left[int(np.argmax(value))]
            if pool.words([*shown, *chosen, best]) > STORY_BRIEF_WORDS:
                break
            chosen.append(best)
            left = [n for n in left if n != best and not pool.redundant(n, [best])]
        return sorted(chosen, key=lambda n: pool.candidates[n].order)

    # -- podcast insights (seed 002) -------------------------------------------------------------

    def podcast_insights(self, episode: StoryInput, limit: int = 3) -> list[PodcastInsight]:
        pool = Pool(episode, self.vectors)
        claims = [n for n in pool.standalone() if word_count(pool.candidates[n].text) >= PODCAST_MIN_WORDS]
        bonus = np.array([0.05 * pool.implication(n) for n in range(len(pool.candidates))], dtype=np.float32)
        passages = {p.passage_id: p for p in episode.passages}
        out = []
        for n in pool.mmr(claims, limit, bonus=bonus if len(bonus) else None):
            candidate = pool.candidates[n]
            passage = passages[candidate.passage_id]
            source = episode.source_of(candidate.item_id) or SourceRef(
                item_id=candidate.item_id, title=episode.title, url=None, publisher="", kind="episode")
            source = SourceRef(**{**source.__dict__, "start": passage.start, "end": passage.end})
            out.append(PodcastInsight(insight=candidate.sentence(), episode=source, story_id=episode.story_id))
        return out


def post_claims(pool: Pool, limit: int = 3) -> list[Sentence]:
    """The most central things only posts say, when articles or episodes tell the story too:
    candidates for the brief's "unverified" list (the support check confirms or labels them)."""
    if all(c.kind == "post" for c in pool.candidates):
        return []
    posts = pool.indices(lambda n, c: c.kind == "post" and not c.needs_previous)
    return [dataclasses.replace(s, unverified=True) for s in pool.sentences(pool.mmr(posts, limit))]


# -- fields built from the story, not from sentences ------------------------------------------------

def topics(story: StoryInput, limit: int = 6) -> list[str]:
    """The topic's terms that the story mentions, then its most repeated phrases."""
    kinds = {s.item_id: s.kind for s in story.sources}
    told = [p.text for p in story.passages if kinds.get(p.item_id) != "post"] or [p.text for p in story.passages]
    text = " ".join(told)
    lower = text.lower()
    found: list[str] = []
    candidates_ = [t for t in story.topic_terms if t.lower() in lower] + frequent_phrases(text)
    for term in candidates_:  # "chip" and "chips", "open weights" and "open-weight": one of each
        if len(found) >= limit:
            break
        if not any(_same_topic(term, f) for f in found):
            found.append(term)
    return [_label(t) for t in found]


_TOPIC_SUFFIXES = ("ations", "ation", "ings", "ing", "es", "s")


def _topic_key(term: str) -> str:
    """"Open-weight" and "open weights", "distillation" and "distilling": one key."""
    def stem(word: str) -> str:
        for suffix in _TOPIC_SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                return word[: -len(suffix)]
        return word
    return " ".join(stem(w) for w in re.split(r"[\s-]+", term.lower()) if w)


def _same_topic(a: str, b: str) -> bool:
    ka, kb = _topic_key(a), _topic_key(b)
    return ka in kb or kb in ka


_ACRONYMS = {"ai": "AI", "eu": "EU", "us": "US", "gpu": "GPU", "gpus": "GPUs", "api": "API", "llm": "LLM", "uk": "UK"}


def _label(term: str) -> str:
    """A topic label in title case that keeps acronyms ("AI Act", not "Ai Act")."""
    if any(c.isupper() for c in term):
        return term
    return " ".join(_ACRONYMS.get(w, w[:1].upper() + w[1:]) for w in term.split())


def frequent_phrases(text: str, limit: int = 10) -> list[str]:
    """Two- and three-word phrases without stopwords that recur, longest and most frequent first."""
    from digest.summary.text import split_sentences

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
    by the standalone source sentence that best introduces it."""
    mentions: dict[str, list[int]] = {}
    publishers = {s.publisher.lower() for s in pool.story.sources}
    for n in pool.standalone():
        for name in name_mentions(pool.candidates[n].text):
            if (not set(name.lower().split()) <= COMMON_NAMES and name.lower() not in publishers
                    and not _DESCRIBED.match(name)):
                mentions.setdefault(name, []).append(n)
    best = {t: max(ns, key=lambda n: _definition_value(pool, n, t)) for t, ns in mentions.items()}

    def value(term: str) -> float:  # jargon, introduced by a sentence that defines it, recurring
        return 2 * is_jargon(term) + 2 * _defines(pool.candidates[best[term]].text, term) + min(len(mentions[term]), 3)

    # A term is glossed only by a sentence that defines it: any other sentence that names it is
    # context, and a glossary of context sentences explains nothing.
    ranked = sorted((t for t in mentions if (is_jargon(t) or len(mentions[t]) >= 2)
                     and _defines(pool.candidates[best[t]].text, t)), key=lambda t: (-value(t), t))
    out: list[GlossaryTerm] = []
    for term in ranked:
        if len(out) >= limit:
            break
        if all(best[term] != best[g.term] for g in out):  # one sentence defines one term
            out.append(GlossaryTerm(term=term, definition=pool.candidates[best[term]].sentence()))
    return out


# "Hangzhou-based Lumen AI", "US-made H20": a description run into a name is not a term to gloss.
_DESCRIBED = re.compile(r"^\S+-(?:based|made|born|backed|owned|led)\s")

# What follows a term in a sentence that says what it is: "X (…", "X, a …", "X is a …",
# "X refers to …", "X family"; or "… called X". "If X is served by …" does not define X.
_DEFINING_AFTER = (r"(?:['’]s)?(?:\s*\(|,\s+(?:a|an|the|which|who)\b|\s+(?:is|are|was|were)\s+(?:a|an|the|one)\b"
                   r"|\s+(?:represents|refers to|means|stands for|describes)\b|\s+family\b)")


def _defines(text: str, term: str) -> bool:
    name = re.escape(term)
    return bool(re.search(rf"(?<![\w-]){name}{_DEFINING_AFTER}", text)
                or re.search(rf"(?:called|known as|named)\s+(?:the\s+)?{name}(?![\w-])", text))


def _definition_value(pool: Pool, n: int, term: str) -> tuple[bool, float]:
    """A defining sentence first, however central another one is; then the more central."""
    return _defines(pool.candidates[n].text, term), float(pool.scores[n])


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


def central_sentence(story: StoryInput, vectors: Encoder | SentenceVectors) -> Sentence | None:
    """The story's most central sentence that stands alone, whatever its kind (a posts-only story's line)."""
    pool = Pool(story, as_vectors(vectors))
    options = pool.indices(lambda n, c: not c.needs_previous)
    return pool.sentences([options[int(np.argmax(pool.scores[options]))]])[0] if options else None
