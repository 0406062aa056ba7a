"""Search across languages: a second vector index, beside the passage index, of a multilingual
encoder's vectors (USE-m3 by default: embed/multilingual.py).

The passage encoder (all-MiniLM-L6-v2) is English-only and better than USE-m3 on English, so it
keeps every passage. The second index holds, in two stores under `index/multilingual/`:
  other/   every passage of the items in a language the passage encoder does not cover (Chinese);
  leads/   the first passage (title and lead) of the items it covers, so that a query in another
           language finds English items by what they are about.
A query in the passage encoder's script (Latin) searches `other` (its Chinese hits), a query mostly
in another script searches both; only hits at or above a cosine floor join the fusion, so an
English query gets no Chinese noise. With `other` empty (an English-only world) an English query
is never encoded twice. Fitted and measured: benchmarks/crosslingual_search.py, docs/multilingual.md.

Each store is an IndexStore (one writer, atomic versions, readers that reload); its keyword half
stays empty (keywords are the passage index's). Which passages a store should hold is read from
the database on every embed; the store is touched only when that differs from what it holds,
which `synced.json` (the ids' count and sum at the live version) tells without loading it: passage
ids only grow, so a change that keeps the count raises the sum.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embed.encoder import Encoder
from embed.index import IndexReader, IndexStore
from embed.multilingual import covers
from store.models import Item, Passage

OTHER, LEADS = "other", "leads"
SUBDIR = "multilingual"
SYNCED = "synced.json"
# Fitted on half of tests/data/crosslingual_pairs.json's titles as queries (same story: relevant,
# another topic: noise) and the English retrieval set's queries (noise against every Chinese
# item), reported on the other half: P 0.74 / R 0.96; 7 of 82 held-out English queries let a
# Chinese item in (benchmarks/crosslingual_search.py --fit).
DEFAULT_FLOOR = 0.28
# Above every negative of the fitting half (English retrieval queries 0.322, other-topic titles
# 0.314): a Chinese hit this close also stands in for the keyword vote it cannot get (search.py).
# Held out: no English retrieval query reaches it (max 0.327); 38 of 48 same-story titles do.
STRONG_FLOOR = 0.33
_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def other_script(query: str) -> bool:
    """More letters outside the Latin script than in it: a query the passage encoder cannot read."""
    letters = len(_LETTER.findall(query))
    return letters > 0 and len(_LATIN.findall(query)) * 2 < letters


def stores(index_dir) -> dict[str, IndexStore]:
    return {name: IndexStore(index_dir / SUBDIR / name) for name in (OTHER, LEADS)}


@dataclass
class MultilingualReport:
    embedded: int = 0
    removed: int = 0
    rebuilt: bool = False
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def wanted_ids(sessions: sessionmaker[Session], covered: frozenset[str] | None) -> dict[str, set[int]]:
    """Passage ids each store should hold; `covered`: the passage encoder's languages (None: all,
    and then no second index is needed)."""
    wanted: dict[str, set[int]] = {OTHER: set(), LEADS: set()}
    if covered is None:
        return wanted
    with sessions() as session:
        rows = session.execute(select(Passage.id, Passage.position, Item.language).join(Item, Item.id == Passage.item_id))
        for pid, position, language in rows:
            if not covers(covered, language):
                wanted[OTHER].add(pid)
            elif position == 0:
                wanted[LEADS].add(pid)
    return wanted


def _stamp(ids: Iterable[int]) -> dict[str, int]:
    ids = list(ids)
    return {"count": len(ids), "sum": int(sum(ids))}


def _synced(store: IndexStore, model_id: str, wanted: set[int]) -> bool:
    meta = store.meta()
    if meta is None:
        return not wanted
    try:
        recorded = json.loads((store.dir / SYNCED).read_text())
    except (FileNotFoundError, ValueError):
        return False
    return meta.model_id == model_id and recorded == {"version": meta.version, **_stamp(wanted)}


def _texts(sessions, ids: list[int]) -> list[str]:
    with sessions() as session:
        found = dict(session.execute(select(Passage.id, Passage.text).where(Passage.id.in_(ids))).all())
    return [found.get(i, "") for i in ids]


ROLE_SEPARATOR = "@"  # not "#": the ONNX export's ids carry one ("...#onnx-int8")


def role_model_id(model_id: str, role: str) -> str:
    """What a role's vectors are stored under in the database (`index_source=database`): one
    encoder, two sets of passages, two mirrors."""
    return f"{model_id}{ROLE_SEPARATOR}{role}"


def encoder_of(model_id: str) -> str:
    """The encoder's model id behind a role's stored id (itself for any other id)."""
    return model_id.rsplit(ROLE_SEPARATOR, 1)[0] if model_id.endswith((f"{ROLE_SEPARATOR}{OTHER}",
                                                                       f"{ROLE_SEPARATOR}{LEADS}")) else model_id


class DatabaseMultilingualEmbedding:
    """The second half of the embed stage with `index_source=database`: each role's vectors live in
    `passage_vectors` under `role_model_id`, kept equal to what `wanted_ids` names; every API
    process mirrors them. Two workers may encode the same missing passage at once (no claim here:
    the set is small, and the second write replaces the first's identical vector)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def model_change(self) -> tuple[str, str] | None:
        return None  # another encoder's vectors are other rows: a new encoder simply fills its own

    def sync(self, sessions, covered: frozenset[str] | None, batch: int = 64) -> MultilingualReport:
        started, report = time.perf_counter(), MultilingualReport()
        for name, wanted in wanted_ids(sessions, covered).items():
            self._sync_role(sessions, role_model_id(self.encoder.model_id, name), wanted, batch, report)
            report.counts[name] = len(wanted)
        report.seconds = time.perf_counter() - started
        return report

    def _sync_role(self, sessions, model_id: str, wanted: set[int], batch: int, report: MultilingualReport) -> None:
        from store.vectors import delete_vectors, vector_ids, write_vectors

        with sessions() as session:
            held = set(vector_ids(session, model_id).tolist())
        if held - wanted:
            with sessions() as session, session.begin():
                report.removed += delete_vectors(session, model_id, sorted(held - wanted))
        missing = sorted(wanted - held)
        for start in range(0, len(missing), batch):
            ids = missing[start:start + batch]
            vectors = self.encoder.embed_batch(_texts(sessions, ids))
            with sessions() as session, session.begin():
                report.embedded += write_vectors(session, model_id, ids, vectors, mark=False)


class MultilingualEmbedding:
    """The embed stage's second half: keeps both stores equal to what `wanted_ids` names."""

    def __init__(self, encoder: Encoder, index_dir) -> None:
        self.encoder, self.stores = encoder, stores(index_dir)

    def model_change(self) -> tuple[str, str] | None:
        """(the model the stores were built with, the configured one) when they differ."""
        for store in self.stores.values():
            meta = store.meta()
            if meta is not None and meta.count and meta.model_id != self.encoder.model_id:
                return meta.model_id, self.encoder.model_id
        return None

    def sync(self, sessions, covered: frozenset[str] | None, batch: int = 64) -> MultilingualReport:
        started, report = time.perf_counter(), MultilingualReport()
        for name, wanted in wanted_ids(sessions, covered).items():
            self._sync_one(sessions, self.stores[name], wanted, batch, report)
            report.counts[name] = len(wanted)
        report.seconds = time.perf_counter() - started
        return report

    def _sync_one(self, sessions, store: IndexStore, wanted: set[int], batch: int, report: MultilingualReport) -> None:
        model_id = self.encoder.model_id
        if _synced(store, model_id, wanted):
            return
        meta = store.meta()
        fresh = meta is not None and meta.model_id != model_id  # a new encoder: rebuilt beside the live one
        report.rebuilt |= fresh
        with store.writer(model_id, self.encoder.dim, fresh=fresh) as live:
            held = set(live.ids())
            report.removed += live.remove(held - wanted)
            missing = sorted(wanted - held)
            for start in range(0, len(missing), batch):
                ids = missing[start:start + batch]
                live.add(np.array(ids, dtype=np.int64), self.encoder.embed_batch(_texts(sessions, ids)), [""] * len(ids))
            report.embedded += len(missing)
        meta = store.meta()
        (store.dir / SYNCED).write_text(json.dumps({"version": meta.version, **_stamp(wanted)}))


@dataclass
class MultilingualSearch:
    """What a search needs of the second index; the encoder loads on the first query that uses it."""

    readers: dict[str, IndexReader]
    encoder_factory: object  # () -> Encoder
    floor: float = DEFAULT_FLOOR
    strong: float = STRONG_FLOOR
    _encoder: Encoder | None = field(default=None, repr=False)
    _other: tuple | None = field(default=None, repr=False)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = self.encoder_factory()
        return self._encoder

    def other_ids(self) -> frozenset[int]:
        """The passages in languages the passage encoder does not read (the `other` store's), for
        dropping them from its ranking: its cosine between an English query and a Chinese passage
        is noise (measured: it put sibling stories' Chinese items above the twin). Cached per version."""
        vectors = self.readers[OTHER].snapshot().vectors
        if vectors is None or vectors.count == 0:
            return frozenset()
        # A mirror (index_source=database) stays the same object while it changes: its version counts.
        key = (vectors, getattr(vectors, "version", None))
        if self._other is None or self._other[0] != key:
            self._other = (key, frozenset(vectors.ids()))
        return self._other[1]

    def indexes(self, foreign: bool) -> list:
        """The non-empty stores a query searches: `other` always, `leads` for a foreign query."""
        names = (OTHER, LEADS) if foreign else (OTHER,)
        found = [self.readers[n].snapshot().vectors for n in names]
        return [v for v in found if v is not None and v.count > 0]
