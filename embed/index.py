"""The passage index: FAISS vectors (IndexIDMap2 / IVF over inner product on normalised vectors)
and the tantivy keyword index over the same passage ids, versioned together.

On disk, in the index directory:
  current.json          names the live version: its FAISS file, its keyword directory, model id,
                        dimension, kind, count, version
  passages-<v>.faiss    the vectors of version v
  keywords-<v>/         the keyword index of version v (hard links, see embed/keyword.py)
  writer-keywords/      the writer's tantivy working copy, rebuilt from the live version each session

A writer (one at a time, under a file lock) writes a new FAISS file and a new keyword directory,
fsyncs both, then atomically replaces `current.json`: that rename is the one commit point for
both. A writer killed at any moment leaves the previous version live, complete and consistent.
A rebuild (`writer(fresh=True)`: a new model, `briefcast reindex`) starts from an empty index
beside the live version, which stays live and searchable until the rebuilt one is committed.
A writer session that changed nothing writes nothing: the version, and every byte, stay.
Readers compare `current.json` with what they hold and reload both halves when it changed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from embed.durable import fsync_dir as _fsync_dir
from embed.durable import fsync_file as _fsync
from embed.keyword import KEYWORD_SCHEMA, KeywordSearcher, KeywordWriter

FLAT_LIMIT = 200_000  # beyond this many vectors an IVF index pays for its training time
POINTER = "current.json"
KEYWORD_WORK = "writer-keywords"


class IndexMismatchError(RuntimeError):
    """The index on disk was built with another model than the one asked for."""


@dataclass(frozen=True)
class IndexMeta:
    file: str
    model_id: str
    dim: int
    kind: str  # flat | ivf
    count: int
    version: str
    keywords: str | None = None  # the keyword directory of this version; None: written before it existed
    keyword_schema: int = 1  # its fields (embed/keyword.py KEYWORD_SCHEMA); 1: written before the CJK field

    @property
    def keywords_current(self) -> bool:
        """A keyword half of today's schema (else the next writer rebuilds it beside the live one)."""
        return self.keywords is not None and self.keyword_schema == KEYWORD_SCHEMA


def _faiss():
    import faiss  # heavy: loaded only by code that touches an index

    return faiss


def choose_kind(count: int, setting: str = "auto") -> str:
    if setting in ("flat", "ivf"):
        return setting
    return "ivf" if count > FLAT_LIMIT else "flat"


def ivf_lists(count: int) -> int:
    return max(1, int(4 * math.sqrt(count)))


def _training_sample(vectors: np.ndarray, lists: int) -> np.ndarray:
    """k-means needs ~64 points per list, not all of them: at 1M vectors this is ~4x faster."""
    wanted = 64 * lists
    if len(vectors) <= wanted:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size=wanted, replace=False)
    return vectors[np.sort(rows)]


class VectorIndex:
    """An in-memory FAISS index with the ids and model it was built for."""

    def __init__(self, faiss_index, model_id: str, dim: int, kind: str) -> None:
        self.index, self.model_id, self.dim, self.kind = faiss_index, model_id, dim, kind
        self.threads: int | None = None  # OpenMP threads per search; None: FAISS's default

    @classmethod
    def empty(cls, model_id: str, dim: int) -> VectorIndex:
        faiss = _faiss()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), model_id, dim, "flat")

    @classmethod
    def build(cls, model_id: str, ids: np.ndarray, vectors: np.ndarray, kind: str = "auto",
              nprobe: int = 16) -> VectorIndex:
        """A fresh index over all vectors; IVF lists ≈ 4·√N, trained on the vectors themselves.

        IVF keeps its own ids (wrapping it in IndexIDMap2 would break removal, which only
        compacts flat storage); a hash-table direct map lets it reconstruct vectors by id.
        """
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        kind = choose_kind(len(vectors), kind)
        if kind == "ivf":
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, ivf_lists(len(vectors)), faiss.METRIC_INNER_PRODUCT)
            index.train(_training_sample(vectors, index.nlist))
            index.nprobe = nprobe
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        built = cls(index, model_id, dim, kind)
        built.add(ids, vectors)
        return built

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.asarray(ids, dtype=np.int64)
        # IndexIDMap2 accepts duplicate ids silently and returns them twice: replace instead.
        self.remove(ids)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids) -> int:
        ids = np.asarray(list(ids), dtype=np.int64)
        if len(ids) == 0 or self.count == 0:
            return 0
        return int(self.index.remove_ids(ids))

    def search(self, queries: np.ndarray, k: int, within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest ids per query (-1 pads); `within`: only among these ids (a filter's).

        Inside FAISS an id selector skips every other vector, so the answer is the filter's own
        top k however many better vectors lie outside it. IVF probes lists in proportion to how
        few vectors the filter keeps (nprobe x count / len(within), so about as many distances
        are computed as unfiltered; a skipped vector costs only an id check), and four times as
        many again while fewer than k turn up. Probing every list is exact, like a flat search.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.count == 0 or (within is not None and len(within) == 0):
            n = len(queries)
            return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int64)
        faiss = _faiss()
        if self.threads:
            # The OpenMP thread count belongs to the calling thread: a server answers on many
            # threads, so it is set on each, not once at load (where it limited only the loader).
            faiss.omp_set_num_threads(self.threads)
        if within is None:
            return self.index.search(queries, min(k, self.count))
        k = min(k, self.count, len(within))
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(within, dtype=np.int64))  # held while FAISS reads it
        if self.kind != "ivf":
            return self.index.search(queries, k, params=faiss.SearchParameters(sel=selector))
        nprobe = min(self.index.nlist, math.ceil(self.index.nprobe * self.count / len(within)))
        while True:
            found = self.index.search(queries, k, params=faiss.SearchParametersIVF(sel=selector, nprobe=nprobe))
            if nprobe >= self.index.nlist or (found[1] >= 0).sum(axis=1).min() >= k:
                return found
            nprobe = min(self.index.nlist, nprobe * 4)

    def ids(self) -> list[int]:
        faiss = _faiss()
        if self.kind == "flat":
            return faiss.vector_to_array(self.index.id_map).tolist()
        lists = self.index.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy()
                 for n in range(self.index.nlist) if lists.list_size(n)]
        return np.concatenate(parts).tolist() if parts else []

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors), reconstructed from the index itself."""
        ids = np.asarray(self.ids(), dtype=np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, self.dim), dtype=np.float32)
        if self.kind == "ivf":
            return ids, self.index.reconstruct_batch(ids)
        inner = _faiss().downcast_index(self.index.index)
        return ids, inner.reconstruct_n(0, inner.ntotal)

    def vectors_of(self, ids) -> dict[int, np.ndarray]:
        """id -> vector for the ids this index holds; the others are simply absent."""
        ids = np.asarray(list(ids), dtype=np.int64)
        if len(ids) == 0 or self.count == 0:
            return {}
        try:
            rows = self.index.reconstruct_batch(ids)
            return {int(i): rows[n] for n, i in enumerate(ids)}
        except RuntimeError:  # one id is missing (deleted since): one at a time
            found = {}
            for i in ids.tolist():
                try:
                    found[i] = self.index.reconstruct(i)
                except RuntimeError:
                    continue
            return found

    def rebuilt_as(self, kind: str, nprobe: int = 16) -> VectorIndex:
        ids, vectors = self.vectors()
        return VectorIndex.build(self.model_id, ids, vectors, kind=kind, nprobe=nprobe)

    def set_nprobe(self, nprobe: int) -> None:
        if self.kind == "ivf":
            self.index.nprobe = nprobe


class PassageIndex:
    """The version a writer is building: vectors and keywords for the same passage ids.

    `add` and `remove` change both halves together, so they cannot drift apart; `vectors` may be
    replaced whole (a Flat index grown into IVF) since it holds the same ids.
    """

    def __init__(self, vectors: VectorIndex, keywords: KeywordWriter, changed: bool = False) -> None:
        self._vectors, self.keywords = vectors, keywords
        self._vectors_changed = changed

    @property
    def vectors(self) -> VectorIndex:
        return self._vectors

    @vectors.setter
    def vectors(self, rebuilt: VectorIndex) -> None:
        self._vectors, self._vectors_changed = rebuilt, True

    @property
    def changed(self) -> bool:
        """Anything not yet committed, in either half."""
        return self._vectors_changed or self.keywords.pending

    def committed(self) -> None:
        self._vectors_changed = False

    @property
    def model_id(self) -> str:
        return self.vectors.model_id

    @property
    def count(self) -> int:
        return self.vectors.count

    def ids(self) -> list[int]:
        return self.vectors.ids()

    def add(self, ids: np.ndarray, vectors: np.ndarray, texts: list[str]) -> None:
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        if len(ids) == 0:
            return
        self.vectors.add(ids, vectors)
        self.keywords.add([int(i) for i in ids], texts)
        self._vectors_changed = True

    def remove(self, ids) -> int:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        self.keywords.remove(ids)
        self._vectors_changed = True
        return self.vectors.remove(ids)

    def keywords_in_sync(self) -> bool:
        """False when the keyword half does not hold what the vector half holds (an index written
        before keywords were versioned with it): the caller re-adds the texts."""
        return self.keywords.count == self.vectors.count


class IndexStore:
    """The index directory: one writer at a time, atomic commits, readers that reload."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / "writer.lock"))
        self._last: IndexMeta | None = None

    def meta(self) -> IndexMeta | None:
        try:
            return IndexMeta(**json.loads((self.dir / POINTER).read_text()))
        except FileNotFoundError:
            return None

    def load(self, meta: IndexMeta | None = None) -> VectorIndex | None:
        meta = meta or self.meta()
        if meta is None:
            return None
        faiss = _faiss()
        index = faiss.read_index(str(self.dir / meta.file))
        return VectorIndex(index, meta.model_id, meta.dim, meta.kind)

    def keyword_dir(self, meta: IndexMeta | None) -> Path | None:
        return self.dir / meta.keywords if meta is not None and meta.keywords else None

    def load_keywords(self, meta: IndexMeta | None = None) -> KeywordSearcher | None:
        meta = meta or self.meta()
        path = self.keyword_dir(meta)
        return KeywordSearcher(path, meta.keyword_schema) if path is not None else None

    @contextmanager
    def writer(self, model_id: str, dim: int, timeout: float = 600, fresh: bool = False) -> Iterator[PassageIndex]:
        """Yields the live version (or an empty one for this model) and commits it on success,
        if anything changed.

        fresh: yields an empty index for this model whatever the live one holds (a rebuild); the
        live version stays live until this one is committed, which success always does.
        Only one writer holds the lock; an exception inside discards every change, in both halves.
        """
        with self._lock.acquire(timeout=timeout):
            self._last = self.meta()
            current = None if fresh else self.load(self._last)
            if current is not None and current.model_id != model_id:
                raise IndexMismatchError(f"index was built with {current.model_id}, not {model_id}: run `briefcast reindex`")
            # A keyword half of an older schema is not carried over: it starts empty, the caller
            # sees it out of sync with the vectors and re-adds every text (embed/pipeline.py).
            carried = None if fresh or self._last is None or not self._last.keywords_current else self._last
            keywords = KeywordWriter(self.dir / KEYWORD_WORK, self.keyword_dir(carried))
            # A fresh index is a change in itself, empty or not: it replaces whatever is live; so is a
            # keyword half of today's schema replacing an older one.
            live = PassageIndex(current or VectorIndex.empty(model_id, dim), keywords,
                                changed=fresh or carried is None and self._last is not None)
            try:
                yield live
                if live.changed or self._last is None:
                    self.commit(live)
            finally:
                keywords.close()

    def commit(self, live: PassageIndex) -> IndexMeta:
        """Write a new version of both halves and flip the pointer; only inside `writer()`."""
        if not self._lock.is_locked:
            raise RuntimeError("IndexStore.commit outside a writer session")
        faiss = _faiss()
        index = live.vectors
        version = f"{time.time_ns():x}-{uuid.uuid4().hex[:6]}"
        name, keywords = f"passages-{version}.faiss", f"keywords-{version}"
        live.keywords.snapshot(self.dir / keywords)
        tmp = self.dir / (name + ".tmp")
        faiss.write_index(index.index, str(tmp))
        _fsync(tmp)
        os.replace(tmp, self.dir / name)
        _fsync_dir(self.dir)  # both new names are durable before the pointer names them
        meta = IndexMeta(file=name, model_id=index.model_id, dim=index.dim, kind=index.kind,
                         count=index.count, version=version, keywords=keywords, keyword_schema=KEYWORD_SCHEMA)
        pointer_tmp = self.dir / (POINTER + ".tmp")
        pointer_tmp.write_text(json.dumps(asdict(meta)))
        _fsync(pointer_tmp)
        os.replace(pointer_tmp, self.dir / POINTER)  # the commit point
        _fsync_dir(self.dir)
        previous = self._last
        self._collect_garbage(keep={name, keywords} | ({previous.file, previous.keywords} if previous else set()))
        self._last = meta
        live.committed()
        return meta

    def _collect_garbage(self, keep: set[str | None]) -> None:
        # The previous version stays one more round: a reader may have just read its name.
        for path in [*self.dir.glob("passages-*.faiss*"), *self.dir.glob("keywords-*")]:
            if path.name in keep:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Snapshot:
    """One committed version as a reader holds it: both halves from the same `current.json`."""

    vectors: VectorIndex | None
    keywords: KeywordSearcher | None


class IndexReader:
    """For API workers: the live version, reloaded when a writer committed a new one."""

    def __init__(self, store: IndexStore, nprobe: int = 16, threads: int | None = None) -> None:
        self.store = store
        self.nprobe = nprobe
        self.threads = threads  # a server answers many small queries: 1 thread each is fastest
        self._meta: IndexMeta | None = None
        self._snapshot = Snapshot(None, None)
        self._stamp: tuple[int, int] | None = None
        self._loading = threading.Lock()
        self._loaded_once = False

    def _pointer_stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.store.dir / POINTER).stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns  # a commit renames a new file into place: both change

    def current(self) -> VectorIndex | None:
        return self.snapshot().vectors

    def snapshot(self) -> Snapshot:
        """Per query on the hot path: a stat() when nothing changed, a reload when a writer committed.

        One thread loads; the others meanwhile answer from the version they had, or, before the
        first load (nothing to answer from), wait for it rather than answer empty.
        """
        stamp = self._pointer_stamp()
        if stamp is not None and stamp == self._stamp:
            return self._snapshot
        if not self._loading.acquire(blocking=not self._loaded_once):
            return self._snapshot
        try:
            if stamp is not None and stamp == self._stamp:  # another thread loaded it while we waited
                return self._snapshot
            self._reload(stamp)
            return self._snapshot
        finally:
            self._loading.release()

    def _reload(self, stamp: tuple[int, int] | None) -> None:
        for _attempt in range(3):
            meta = self.store.meta()
            if meta != self._meta:
                try:
                    self._snapshot = self._load(meta)
                except (RuntimeError, OSError, ValueError):  # a later commit removed this version: re-read
                    continue
                self._meta = meta
            self._stamp, self._loaded_once = stamp, True  # only now: a failed load is retried next query
            return

    def _load(self, meta: IndexMeta | None) -> Snapshot:
        if meta is None:
            return Snapshot(None, None)
        index = self.store.load(meta)
        index.set_nprobe(self.nprobe)
        index.threads = self.threads
        return Snapshot(index, self.store.load_keywords(meta))
