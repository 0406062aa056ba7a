"""A replica's vectors in memory: a FAISS mirror of `passage_vectors`, synced from the database.

Several machines share no disk, only the database (store/vectors.py holds the rules). Each replica
loads every vector of its model once, then reads only what changed: vector rows past the last
`seq` it holds (new or re-written vectors: `VectorIndex.add` replaces) and tombstones past its
other watermark (deleted passages). Vector seqs become visible in order, so that watermark never
skips one; tombstones may commit out of order, so `check()` compares counts now and then and,
when they differ, diffs the ids.

Searches run on many threads at once (FAISS releases the GIL) while one thread syncs: searches
hold a read lock, a sync reads the database outside any lock and applies what it read under the
write lock, so a search waits at most for one page to be applied.

Flat or IVF as on disk (embed/index.py): past `flat_limit` vectors, once some process stored the
model's IVF centroids (`ensure_quantizer`, run by the embed stage), every replica builds its IVF
over those same centroids, without training, so replicas assign a vector to the same list and
answer alike.

A `companion` (embed/keyword_mirror.py's KeywordMirror: the passages' words) follows the same
ids: after each load, sync or check step changes the vectors, it is handed the ids added (it
reads their texts itself) and removed, then `commit()`, which makes the step visible to its
searches at once. It has its own lock; the two halves may differ by one step for a moment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session, sessionmaker

from embed.index import FLAT_LIMIT, Snapshot, VectorIndex, ivf_lists
from store.models import PassageTombstone, PassageVector
from store.vectors import (
    get_quantizer,
    heads,
    put_quantizer,
    tombstones_after,
    vector_count,
    vector_ids,
    vectors_after,
    vectors_for,
)

log = logging.getLogger(__name__)

PAGE = 20_000  # rows per database read: ~30 MB of 384-d vectors, applied under the lock at once
LAG_COUNT_CAP = 100_000  # lag() counts rows behind up to this many (a lower bound past it)
SAMPLE_PER_LIST = 64  # k-means needs ~64 points per list (embed/index.py _training_sample)


def _faiss():
    import faiss  # heavy: loaded only by code that touches an index

    return faiss


class ReadWriteLock:
    """Many readers or one writer; a waiting writer stops new readers from entering, so a steady
    stream of searches cannot starve a sync. Not re-entrant: never take `read` inside `read`."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@dataclass(frozen=True)
class SyncReport:
    added: int  # vector rows applied (new passages and re-written vectors)
    removed: int  # vectors dropped (tombstones, or ids the database no longer has)
    vector_seq: int
    tombstone_seq: int
    seconds: float


def ivf_over(centroids: np.ndarray, nprobe: int) -> VectorIndex:
    """An empty IVF index whose coarse quantizer holds these centroids: trained by whoever stored
    them, so it needs no training here."""
    faiss = _faiss()
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    nlist, dim = centroids.shape
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.nprobe = nprobe
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return VectorIndex(index, "", dim, "ivf")


class VectorMirror:
    """One model's vectors from the database, in memory, and the search facade over them
    (`count`, `model_id`, `dim`, `kind`, `threads`, `version`, `search`, `ids`: what
    embed/search.py asks of `Snapshot.vectors`).

    One thread at a time mutates (`load`, `sync`, `check`); any number search meanwhile.

    companion: kept to the same passage ids (`restart()` before a load, `abandon()` if it fails,
    `add(conn, ids)`, `remove(ids)`, `commit()` after each step, `count` and `ids()` for check)."""

    def __init__(self, sessions: sessionmaker[Session], model_id: str, dim: int, *, nprobe: int = 16,
                 threads: int | None = None, page: int = PAGE, flat_limit: int = FLAT_LIMIT,
                 companion=None) -> None:
        self.sessions, self.model_id, self.dim = sessions, model_id, dim
        self.companion = companion
        self.nprobe, self.page, self.flat_limit = nprobe, page, flat_limit
        self._threads = threads
        self._index = self._new_flat()
        self._lock = ReadWriteLock()
        self._mutating = threading.Lock()  # load, sync and check, one at a time
        self.vector_seq = 0  # the highest vector seq of this model applied
        self.tombstone_seq = 0  # the highest tombstone seq applied
        self.loaded = False
        self.version = 0  # grows with every change: a cache keyed on the facade also keys on this
        self._synced_at: float | None = None  # time.monotonic() of the last load or sync that caught up

    # -- the search facade ------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._index.count

    @property
    def kind(self) -> str:
        return self._index.kind

    @property
    def threads(self) -> int | None:
        return self._threads

    @threads.setter
    def threads(self, value: int | None) -> None:
        self._threads = self._index.threads = value

    def search(self, queries: np.ndarray, k: int, within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock.read():
            return self._index.search(queries, k, within)

    def ids(self) -> list[int]:
        with self._lock.read():
            return self._index.ids()

    # -- loading and syncing ------------------------------------------------------------------

    def load(self) -> SyncReport:
        """Every vector of the model, read in pages of seq (keyset), into a new index that then
        replaces the current one. Tombstones older than the load need nothing (their vectors
        went with their passages): the tombstone watermark is the head read *before* the vectors,
        so a delete committed during the load is applied by the next sync."""
        started = time.perf_counter()
        with self._mutating, self.sessions() as session:
            conn = session.connection()
            _, tombstone_seq = heads(conn, self.model_id)
            centroids = get_quantizer(conn, self.model_id)
            big = centroids is not None and vector_count(conn, self.model_id) > self.flat_limit
            index = self._new_ivf(centroids) if big else self._new_flat()
            vector_seq = 0
            if self.companion is not None:
                self.companion.restart()
            try:
                while True:
                    seqs, ids, vectors = self._page_of_vectors(conn, vector_seq)
                    index.add(ids, vectors)
                    if self.companion is not None:
                        self.companion.add(conn, ids)
                    vector_seq = int(seqs[-1]) if len(seqs) else vector_seq
                    if len(seqs) < self.page:
                        break
            except BaseException:
                if self.companion is not None:  # a half-read load must not reach its searches
                    self.companion.abandon()
                raise
            with self._lock.write():
                self._index, self.vector_seq, self.tombstone_seq = index, vector_seq, tombstone_seq
                self.version += 1
            if self.companion is not None:
                self.companion.commit()
            self.loaded, self._synced_at = True, time.monotonic()
            self._grow_into_ivf(conn)
        return SyncReport(index.count, 0, vector_seq, tombstone_seq, time.perf_counter() - started)

    def sync(self) -> SyncReport:
        """Apply what changed since the watermarks, a page of vectors and a page of tombstones at
        a time, until a read finds less than a page of either. Vectors are applied before the
        tombstones read after them: a passage id is never reused, so a tombstone is final."""
        started = time.perf_counter()
        added = removed = 0
        with self._mutating:
            if not self.loaded:
                raise RuntimeError("VectorMirror.sync before load()")
            with self.sessions() as session:
                conn = session.connection()
                while True:
                    seqs, ids, vectors = self._page_of_vectors(conn, self.vector_seq)
                    tomb_seqs, dead = tombstones_after(conn, self.tombstone_seq, self.page)
                    removed += self._apply(seqs, ids, vectors, tomb_seqs, dead)
                    self._follow(conn, ids, dead)
                    added += len(ids)
                    if len(seqs) < self.page and len(tomb_seqs) < self.page:
                        break
                self._synced_at = time.monotonic()
                self._grow_into_ivf(conn)
        return SyncReport(added, removed, self.vector_seq, self.tombstone_seq, time.perf_counter() - started)

    def check(self) -> SyncReport:
        """The safety net for a tombstone committed below the watermark (out of order): when the
        count differs from the database's, drop the ids it no longer has and fetch the ones missing.

        The mirror does not change during the diff (we hold the mutation lock), so an id it holds
        that the database lacks was deleted. Only rows at or below the watermark count as missed:
        a row committed since the last sync is the next sync's, not a fault (counting it made
        every check under a steady embed load warn of vectors "missed")."""
        started = time.perf_counter()
        added = removed = 0
        with self._mutating, self.sessions() as session:
            conn = session.connection()
            if self.loaded and self.companion is not None and self.companion.count != self.count:
                self._check_companion(conn)  # the keyword half first: repairs below follow it
            # Rows committed since the last sync are the next sync's: comparing them too sent every
            # check under a steady embed load down the id diff (4.4 s at 1M, holding off syncs).
            if self.loaded and vector_count(conn, self.model_id, upto_seq=self.vector_seq) != self.count:
                stored = vector_ids(conn, self.model_id)
                synced = vector_ids(conn, self.model_id, upto_seq=self.vector_seq)
                with self._lock.read():
                    held = np.asarray(self._index.ids(), dtype=np.int64)
                extra = np.setdiff1d(held, stored)
                found = vectors_for(conn, self.model_id, np.setdiff1d(synced, held).tolist())
                missing = np.fromiter(found, dtype=np.int64, count=len(found))
                vectors = np.stack([found[int(i)] for i in missing]) if len(missing) else np.zeros((0, self.dim))
                self._check_dim(vectors)
                with self._lock.write():
                    self._index.add(missing, vectors)
                    removed = self._index.remove(extra)
                    self.version += 1
                self._follow(conn, missing, extra)
                added = len(missing)
                if added or removed:
                    log.warning("vector mirror %s: check added %d and removed %d vectors the sync had missed",
                                self.model_id, added, removed)
        return SyncReport(added, removed, self.vector_seq, self.tombstone_seq, time.perf_counter() - started)

    def lag(self, conn: Connection) -> dict:
        """How far behind the database this replica is, for /health. `vectors_behind` and
        `tombstones_behind` count the rows past the watermarks (exact up to LAG_COUNT_CAP, a lower
        bound beyond), not seq differences: vector seqs are shared by all models."""
        vectors = select(PassageVector.seq).where(PassageVector.model_id == self.model_id,
                                                  PassageVector.seq > self.vector_seq).limit(LAG_COUNT_CAP)
        tombstones = select(PassageTombstone.seq).where(PassageTombstone.seq > self.tombstone_seq).limit(LAG_COUNT_CAP)
        return {
            "vectors_behind": conn.execute(select(func.count()).select_from(vectors.subquery())).scalar_one(),
            "tombstones_behind": conn.execute(select(func.count()).select_from(tombstones.subquery())).scalar_one(),
            "synced_seconds_ago": None if self._synced_at is None else round(time.monotonic() - self._synced_at, 3),
            "vector_seq": self.vector_seq,
            "count": self.count,
            "kind": self.kind,
        }

    # -- internals ----------------------------------------------------------------------------

    def _page_of_vectors(self, conn: Connection, after: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        seqs, ids, vectors = vectors_after(conn, self.model_id, after, self.page)
        self._check_dim(vectors)
        return seqs, ids, vectors

    def _check_dim(self, vectors: np.ndarray) -> None:
        if len(vectors) and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of {self.model_id} in the database have {vectors.shape[1]} dimensions, "
                             f"this mirror {self.dim}")

    def _apply(self, seqs, ids, vectors, tomb_seqs, dead) -> int:
        if not len(seqs) and not len(tomb_seqs):
            return 0
        with self._lock.write():
            self._index.add(ids, vectors)
            removed = self._index.remove(dead)
            if len(seqs):
                self.vector_seq = int(seqs[-1])
            if len(tomb_seqs):
                self.tombstone_seq = int(tomb_seqs[-1])
            self.version += 1
        return removed

    def _follow(self, conn: Connection, added: np.ndarray, removed: np.ndarray) -> None:
        """The companion takes the step the vectors just took."""
        if self.companion is None or (not len(added) and not len(removed)):
            return
        self.companion.add(conn, added)
        self.companion.remove(removed)
        self.companion.commit()

    def _check_companion(self, conn: Connection) -> None:
        """The companion holds other ids than the vectors (a step that failed half way): give it
        the vectors' ids."""
        held = np.asarray(self.ids(), dtype=np.int64)
        theirs = self.companion.ids()
        missing, extra = np.setdiff1d(held, theirs), np.setdiff1d(theirs, held)
        self._follow(conn, missing, extra)
        if len(missing) or len(extra):
            log.warning("vector mirror %s: check added %d and removed %d passages of its companion",
                        self.model_id, len(missing), len(extra))

    def _new_flat(self) -> VectorIndex:
        index = VectorIndex.empty(self.model_id, self.dim)
        index.threads = self._threads
        return index

    def _new_ivf(self, centroids: np.ndarray) -> VectorIndex:
        if centroids.shape[1] != self.dim:
            raise ValueError(f"stored centroids of {self.model_id} have {centroids.shape[1]} dimensions, not {self.dim}")
        index = ivf_over(centroids, self.nprobe)
        index.model_id, index.threads = self.model_id, self._threads
        return index

    def _grow_into_ivf(self, conn: Connection) -> None:
        """Flat past flat_limit and centroids now stored: build the IVF from our own vectors
        (searches go on meanwhile: only this thread changes the index) and swap it in."""
        if self.kind != "flat" or self.count <= self.flat_limit:
            return
        centroids = get_quantizer(conn, self.model_id)
        if centroids is None:
            return
        ivf = self._new_ivf(centroids)
        ivf.add(*self._index.vectors())
        with self._lock.write():
            self._index = ivf
            self.version += 1
        log.info("vector mirror %s: %d vectors, now IVF over %d stored lists", self.model_id, ivf.count,
                 ivf.index.nlist)


def ensure_quantizer(sessions: sessionmaker[Session], model_id: str, flat_limit: int = FLAT_LIMIT,
                     seed: int = 0) -> np.ndarray | None:
    """The model's shared IVF centroids, trained now if it has more than `flat_limit` vectors and
    none are stored; None while it is small enough for Flat. Training reads a random sample of
    ~64 vectors per list; two processes may train at once, the first to store wins and both
    return its centroids."""
    with sessions() as session:
        conn = session.connection()
        stored = get_quantizer(conn, model_id)
        if stored is not None:
            return stored
        if vector_count(conn, model_id) <= flat_limit:  # every embed run asks: a count, not every id
            return None
        ids = vector_ids(conn, model_id)
        nlist = min(ivf_lists(len(ids)), len(ids))  # k-means needs a point per list (a flat_limit below 16)
        wanted = min(len(ids), SAMPLE_PER_LIST * nlist)
        sample_ids = np.sort(np.random.default_rng(seed).choice(ids, size=wanted, replace=False))
        found = vectors_for(conn, model_id, sample_ids.tolist())
    centroids = train_centroids(np.stack(list(found.values())), nlist)
    with sessions() as session, session.begin():
        return put_quantizer(session, model_id, centroids)


def train_centroids(sample: np.ndarray, nlist: int) -> np.ndarray:
    """k-means centroids as IndexIVFFlat trains them for inner product (spherical), read back
    from its coarse quantizer."""
    faiss = _faiss()
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    dim = sample.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(sample)
    return faiss.downcast_index(index.quantizer).reconstruct_n(0, nlist)


class MirrorReader:
    """IndexReader's reading interface (`snapshot()`, `current()`) over a VectorMirror.

    The first snapshot() loads (other threads wait for it rather than answer empty) and starts a
    daemon thread that syncs every `sync_every` seconds and checks every `check_every`; a CLI that
    never searches starts no thread. A failed sync is logged and retried; searches meanwhile answer
    from what the mirror holds. `keywords_factory` is called per snapshot (keep it cheap)."""

    def __init__(self, mirror: VectorMirror, keywords_factory: Callable[[], object | None],
                 sync_every: float = 1.0, check_every: float = 60.0) -> None:
        self.mirror, self.keywords_factory = mirror, keywords_factory
        self.sync_every, self.check_every = sync_every, check_every
        self._loading = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> Snapshot:
        if not self.mirror.loaded:
            self._first_load()
        vectors = self.mirror if self.mirror.count else None
        return Snapshot(vectors=vectors, keywords=self.keywords_factory())

    def current(self) -> VectorMirror | None:
        return self.snapshot().vectors

    def sync_now(self) -> SyncReport:
        if not self.mirror.loaded:
            self._first_load()
        return self.mirror.sync()

    def lag(self) -> dict:
        with self.mirror.sessions() as session:
            return self.mirror.lag(session.connection())

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def syncing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _first_load(self) -> None:
        with self._loading:
            if self.mirror.loaded:  # another thread loaded while we waited
                return
            self.mirror.load()  # a failure propagates; the next snapshot() tries again
            if not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=f"mirror-sync-{self.mirror.model_id}",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        checked = time.monotonic()
        while not self._stop.wait(self.sync_every):
            try:
                self.mirror.sync()
                if time.monotonic() - checked >= self.check_every:
                    self.mirror.check()
                    checked = time.monotonic()
            except Exception:  # the database away, a deadlock victim: answer with what we have, retry
                log.exception("vector mirror %s: sync failed, retrying in %.1f s", self.mirror.model_id,
                              self.sync_every)
