"""The replica's in-memory FAISS mirror of `passage_vectors` (embed/mirror.py), on SQLite and
PostgreSQL: it loads what the database holds, follows new, re-written and deleted vectors, repairs
a tombstone it missed, shares the stored IVF centroids with every other replica, stays right while
threads search during syncs, and its reader syncs in the background until closed."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from sqlalchemy import delete, select, text

from embed.mirror import MirrorReader, ReadWriteLock, VectorMirror, ensure_quantizer, train_centroids
from store.models import Item, Passage, PassageTombstone, Source
from store.vectors import get_quantizer, put_quantizer, vector_ids, vectors_for, write_vectors

MODEL, DIM = "fake-8", 8
PER_ITEM = 5  # passages per item: deleting an item deletes these by cascade


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_passages(sessions, n: int, tag: str = "") -> list[int]:
    """n passages in n / PER_ITEM new items of one new source; their ids."""
    with sessions() as session, session.begin():
        source = Source(url=f"https://mirror.example/{tag}{time.time_ns()}")
        session.add(source)
        passages = []
        for i in range(0, n, PER_ITEM):
            item = Item(source=source, stable_key=f"{tag}{i}", content_hash="c", entry_hash="e", title=f"item {i}")
            session.add(item)
            session.flush()
            for position in range(min(PER_ITEM, n - i)):
                passage = Passage(item_id=item.id, position=position, text=f"passage {i + position}", content_hash="p")
                session.add(passage)
                passages.append(passage)
        session.flush()
        return [p.id for p in passages]


def write(sessions, ids, vectors) -> None:
    with sessions() as session, session.begin():
        assert write_vectors(session, MODEL, ids, vectors) == len(ids)


def embedded(sessions, rng, n: int, tag: str = "") -> list[int]:
    ids = add_passages(sessions, n, tag)
    write(sessions, ids, unit(rng, n))
    return ids


def stored(sessions) -> dict[int, np.ndarray]:
    with sessions() as session:
        conn = session.connection()
        return vectors_for(conn, MODEL, vector_ids(conn, MODEL).tolist())


def nearest(truth: dict[int, np.ndarray], queries: np.ndarray, k: int) -> list[list[int]]:
    ids = np.array(sorted(truth))
    scores = queries @ np.stack([truth[i] for i in ids]).T
    return [ids[np.argsort(-row, kind="stable")[:k]].tolist() for row in scores]


def found(mirror, queries: np.ndarray, k: int) -> list[list[int]]:
    _, ids = mirror.search(queries, k)
    return [[int(i) for i in row if i >= 0] for row in ids]


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_load_holds_what_the_database_holds_and_finds_the_true_nearest(sessions, rng):
    embedded(sessions, rng, 40)
    mirror = VectorMirror(sessions, MODEL, DIM, page=7)  # several pages: the keyset walk must not skip or repeat
    report = mirror.load()
    truth = stored(sessions)
    assert report.added == mirror.count == len(truth) == 40
    assert sorted(mirror.ids()) == sorted(truth) and mirror.kind == "flat"
    queries = unit(rng, 6)
    assert found(mirror, queries, 5) == nearest(truth, queries, 5)
    with sessions() as session:
        assert mirror.vector_seq == session.scalar(text("SELECT max(seq) FROM passage_vectors"))


def test_an_empty_database_loads_an_empty_mirror(sessions, rng):
    mirror = VectorMirror(sessions, MODEL, DIM)
    assert mirror.load().added == 0 and mirror.count == 0
    embedded(sessions, rng, 3)
    assert mirror.sync().added == 3 and mirror.count == 3


def test_sync_adds_new_replaces_rewritten_and_drops_deleted(sessions, rng):
    first = embedded(sessions, rng, 30, "a")
    mirror = VectorMirror(sessions, MODEL, DIM, page=4)
    mirror.load()
    new = embedded(sessions, rng, 10, "b")
    rewritten = first[:3]
    fresh = unit(rng, 3)
    write(sessions, rewritten, fresh)
    gone_passage = first[10]
    with sessions() as session, session.begin():
        gone_item = session.get(Passage, first[20]).item_id
        gone_by_cascade = set(session.scalars(select(Passage.id).where(Passage.item_id == gone_item)))
        session.execute(delete(Passage).where(Passage.id == gone_passage))
        session.execute(delete(Item).where(Item.id == gone_item))
    with sessions() as session:  # the trigger fired for the direct delete and for every cascaded one
        tombstoned = set(session.scalars(select(PassageTombstone.passage_id)))
    assert tombstoned == gone_by_cascade | {gone_passage} and len(gone_by_cascade) == PER_ITEM
    assert not set(new) & set(mirror.ids())  # not before the sync

    report = mirror.sync()
    truth = stored(sessions)
    assert sorted(mirror.ids()) == sorted(truth) and mirror.count == len(truth) == 30 + 10 - 1 - PER_ITEM
    assert report.added == 10 + 3 and report.removed == 1 + PER_ITEM
    _, hits = mirror.search(fresh, mirror.count)  # everything, ranked: each id once
    assert all(len(set(row)) == len(row) == mirror.count for row in hits.tolist())
    assert [row[0] for row in hits.tolist()] == rewritten  # the new vector, not the old, answers
    queries = unit(rng, 5)
    assert found(mirror, queries, 8) == nearest(truth, queries, 8)
    assert mirror.sync().added == 0  # caught up: nothing read twice


class DeletingDuringLoad(VectorMirror):
    """Deletes a passage of the first page right after reading it, as another process might."""

    victim: int

    def _page_of_vectors(self, conn, after):
        page = super()._page_of_vectors(conn, after)
        if after == 0:
            with self.sessions() as session, session.begin():
                session.execute(delete(Passage).where(Passage.id == self.victim))
        return page


def test_a_delete_committed_during_the_load_is_applied_by_the_next_sync(sessions, rng):
    ids = embedded(sessions, rng, 12)
    mirror = DeletingDuringLoad(sessions, MODEL, DIM, page=4)
    mirror.victim = ids[1]
    mirror.load()
    assert ids[1] in mirror.ids()  # read before it was deleted
    assert mirror.sync().removed == 1  # its tombstone lies past the watermark taken before the vectors
    assert sorted(mirror.ids()) == sorted(stored(sessions)) == sorted(ids[:1] + ids[2:])


def test_a_search_waits_while_a_change_is_applied(sessions, rng):
    embedded(sessions, rng, 5)
    mirror = VectorMirror(sessions, MODEL, DIM)
    mirror.load()
    done = threading.Event()
    searcher = threading.Thread(target=lambda: (mirror.search(unit(rng, 1), 3), done.set()))
    with mirror._lock.write():  # what sync() holds while it changes the index
        searcher.start()
        assert not done.wait(0.2)
    assert done.wait(5)
    searcher.join()

def test_a_missed_tombstone_and_a_missed_vector_are_repaired_by_check(sessions, rng):
    ids = embedded(sessions, rng, 20)
    mirror = VectorMirror(sessions, MODEL, DIM)
    mirror.load()
    with sessions() as session, session.begin():
        session.execute(delete(Passage).where(Passage.id == ids[4]))
        # As if the tombstone had committed below the watermark: the sync never sees it.
        session.execute(delete(PassageTombstone).where(PassageTombstone.passage_id == ids[4]))
    mirror.sync()
    assert ids[4] in mirror.ids()
    assert mirror.check().removed == 1
    assert sorted(mirror.ids()) == sorted(stored(sessions))

    mirror._index.remove([ids[7]])  # a vector the mirror lost: check fetches it back
    report = mirror.check()
    assert report.added == 1 and sorted(mirror.ids()) == sorted(stored(sessions))
    assert mirror.check().added == mirror.check().removed == 0


def test_rows_committed_since_the_last_sync_are_not_reported_as_missed(sessions, rng, caplog):
    """A check between a commit and the sync that reaches it is not a fault: it adds nothing (the
    sync takes those rows) and warns of nothing (it warned under every steady embed load)."""
    embedded(sessions, rng, 5)
    mirror = VectorMirror(sessions, MODEL, DIM)
    mirror.load()
    embedded(sessions, rng, 4, tag="later")
    with caplog.at_level("WARNING", logger="embed.mirror"):
        report = mirror.check()
    assert report.added == report.removed == 0
    assert "missed" not in caplog.text
    assert mirror.sync().added == 4 and sorted(mirror.ids()) == sorted(stored(sessions))


def test_vectors_committed_by_concurrent_writers_are_never_skipped(sessions, rng):
    """store/vectors.py promises seqs become visible in order (an advisory lock on PostgreSQL), so
    the vector watermark never passes a row still to commit: without check(), nothing is missed."""
    mirror = VectorMirror(sessions, MODEL, DIM)
    mirror.load()
    batches = [add_passages(sessions, 3, f"w{n}") for n in range(40)]
    done = threading.Event()

    def writer(mine) -> None:
        for ids in mine:
            with sessions() as session, session.begin():
                write_vectors(session, MODEL, ids, unit(np.random.default_rng(ids[0]), 3))
                time.sleep(0.02)  # the transaction stays open after its seqs were drawn
    writers = [threading.Thread(target=writer, args=(batches[n::2],)) for n in range(2)]
    for thread in writers:
        thread.start()

    def syncing() -> None:
        while not done.is_set():
            mirror.sync()
    syncer = threading.Thread(target=syncing)
    syncer.start()
    for thread in writers:
        thread.join()
    done.set()
    syncer.join()
    mirror.sync()
    assert sorted(mirror.ids()) == sorted(stored(sessions)) and mirror.count == 120

def test_lag_is_behind_before_a_sync_and_zero_after(sessions, rng):
    ids = embedded(sessions, rng, 10)
    mirror = VectorMirror(sessions, MODEL, DIM)
    mirror.load()
    embedded(sessions, rng, 4, "more")
    with sessions() as session, session.begin():
        session.execute(delete(Passage).where(Passage.id.in_(ids[:2])))
    with sessions() as session:
        lag = mirror.lag(session.connection())
    assert lag["vectors_behind"] == 4 and lag["tombstones_behind"] == 2 and lag["count"] == 10
    mirror.sync()
    with sessions() as session:
        lag = mirror.lag(session.connection())
    assert lag["vectors_behind"] == lag["tombstones_behind"] == 0 and lag["count"] == 12
    assert lag["kind"] == "flat" and 0 <= lag["synced_seconds_ago"] < 5 and lag["vector_seq"] == mirror.vector_seq


def test_replicas_share_the_stored_centroids_and_the_first_stored_wins(sessions, rng):
    embedded(sessions, rng, 120)
    assert ensure_quantizer(sessions, MODEL, flat_limit=200) is None  # small enough for Flat: nothing trained
    centroids = ensure_quantizer(sessions, MODEL, flat_limit=50)
    assert centroids is not None and centroids.shape == (int(4 * np.sqrt(120)), DIM)
    with sessions() as session:
        np.testing.assert_array_equal(get_quantizer(session.connection(), MODEL), centroids)
    np.testing.assert_array_equal(ensure_quantizer(sessions, MODEL, flat_limit=50, seed=99), centroids)
    other = train_centroids(unit(rng, 400), len(centroids))  # a second trainer, later: it loses
    with sessions() as session, session.begin():
        np.testing.assert_array_equal(put_quantizer(session, MODEL, other), centroids)

    replicas = [VectorMirror(sessions, MODEL, DIM, nprobe=2, flat_limit=50) for _ in range(2)]
    for replica in replicas:
        replica.load()
        assert replica.kind == "ivf" and replica.count == 120
        np.testing.assert_array_equal(replica._index.index.quantizer.reconstruct_n(0, len(centroids)), centroids)
    queries = unit(rng, 20)
    first, second = (replica.search(queries, 10) for replica in replicas)
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[0], second[0])
    # nprobe 2 of ~43 lists: an approximate answer, yet the right one for the top hit of most queries
    truth = nearest(stored(sessions), queries, 1)
    assert sum(row[0] == t[0] for row, t in zip(first[1].tolist(), truth, strict=True)) >= 10


def test_a_flat_mirror_grows_into_ivf_once_centroids_are_stored(sessions, rng):
    embedded(sessions, rng, 40)
    mirror = VectorMirror(sessions, MODEL, DIM, flat_limit=50)
    mirror.load()
    embedded(sessions, rng, 40, "more")
    mirror.sync()
    assert mirror.kind == "flat" and mirror.count == 80  # over the limit, but no centroids yet
    centroids = ensure_quantizer(sessions, MODEL, flat_limit=50)
    mirror.sync()
    assert mirror.kind == "ivf" and sorted(mirror.ids()) == sorted(stored(sessions))
    np.testing.assert_array_equal(mirror._index.index.quantizer.reconstruct_n(0, len(centroids)), centroids)
    mirror.nprobe = len(centroids)
    mirror._index.set_nprobe(len(centroids))  # every list probed: exact
    queries = unit(rng, 5)
    assert found(mirror, queries, 5) == nearest(stored(sessions), queries, 5)


def test_searches_during_syncs_see_only_ids_the_database_had(sessions, rng):
    embedded(sessions, rng, 40)
    mirror = VectorMirror(sessions, MODEL, DIM, flat_limit=100, page=8)
    mirror.load()
    seen: set[int] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher(seed: int) -> None:
        local = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                _, ids = mirror.search(unit(local, 3), 10, within=None if local.random() < 0.5
                                       else np.arange(0, 10_000, 2, dtype=np.int64))
                seen.update(int(i) for i in ids.ravel() if i >= 0)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deleted: set[int] = set()
    try:
        for round_ in range(20):
            ids = embedded(sessions, rng, 6, f"r{round_}")
            write(sessions, ids[:2], unit(rng, 2))  # re-written at once
            with sessions() as session, session.begin():
                victim = int(rng.choice(sorted(stored(sessions))))
                deleted.add(victim)
                session.execute(delete(Passage).where(Passage.id == victim))
            # As the embed stage does after writing: past 100 vectors (round 12) the mirror turns IVF while searched.
            ensure_quantizer(sessions, MODEL, flat_limit=100)
            mirror.sync()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    final = set(stored(sessions))
    assert seen and seen <= final | deleted
    assert mirror.kind == "ivf" and sorted(mirror.ids()) == sorted(final)
    assert len(final) == 40 + 20 * 6 - 20


def test_the_reader_loads_on_first_snapshot_then_syncs_in_the_background_until_closed(sessions, rng):
    embedded(sessions, rng, 10)
    mirror = VectorMirror(sessions, MODEL, DIM)
    reader = MirrorReader(mirror, keywords_factory=lambda: "keywords", sync_every=0.05, check_every=0.2)
    assert not reader.syncing and not mirror.loaded  # a CLI that never searches starts nothing
    try:
        snap = reader.snapshot()
        assert snap.vectors is mirror and snap.vectors.count == 10 and snap.keywords == "keywords"
        assert reader.syncing
        new = embedded(sessions, rng, 1, "late")[0]
        assert _eventually(lambda: new in reader.current().ids())
        with sessions() as session, session.begin():  # a tombstone lost: the periodic check repairs it
            session.execute(delete(Passage).where(Passage.id == new))
            session.execute(delete(PassageTombstone))
        assert _eventually(lambda: new not in reader.current().ids())
        assert reader.lag()["vectors_behind"] == 0
    finally:
        reader.close()
    assert not reader.syncing
    later = embedded(sessions, rng, 1, "after-close")[0]
    time.sleep(0.3)  # six sync intervals: a running thread would have taken it
    assert later not in mirror.ids()


def test_a_failed_sync_is_logged_and_retried(sessions, rng, caplog):
    embedded(sessions, rng, 5)
    reader = MirrorReader(VectorMirror(sessions, MODEL, DIM), keywords_factory=lambda: None, sync_every=0.05)
    try:
        assert reader.snapshot().vectors.count == 5
        with sessions() as session, session.begin():
            session.execute(text("ALTER TABLE passage_tombstones RENAME TO passage_tombstones_away"))
        with caplog.at_level(logging.ERROR, logger="embed.mirror"):
            assert _eventually(lambda: "sync failed" in caplog.text)
        assert reader.snapshot().vectors.count == 5  # still answering
        with sessions() as session, session.begin():
            session.execute(text("ALTER TABLE passage_tombstones_away RENAME TO passage_tombstones"))
        new = embedded(sessions, rng, 1, "back")[0]
        assert _eventually(lambda: new in reader.current().ids())
    finally:
        reader.close()


def test_an_empty_mirror_reads_as_no_vectors(sessions):
    reader = MirrorReader(VectorMirror(sessions, MODEL, DIM), keywords_factory=lambda: None)
    try:
        assert reader.snapshot().vectors is None and reader.current() is None
    finally:
        reader.close()


def test_a_waiting_writer_holds_off_new_readers():
    lock, order = ReadWriteLock(), []
    reading = threading.Event()

    def first_reader():
        with lock.read():
            reading.set()
            time.sleep(0.2)
            order.append("reader 1 done")

    def writer():
        with lock.write():
            order.append("writer")

    def late_reader():
        with lock.read():
            order.append("reader 2")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    reading.wait()
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    time.sleep(0.05)  # the writer is waiting for reader 1
    threads.append(threading.Thread(target=late_reader))
    threads[2].start()
    for thread in threads:
        thread.join(5)
    assert order == ["reader 1 done", "writer", "reader 2"]


def _eventually(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False



def test_a_mirror_of_another_dimension_refuses_to_load(sessions, rng):
    embedded(sessions, rng, 3)
    with pytest.raises(ValueError, match="8 dimensions"):
        VectorMirror(sessions, MODEL, 16).load()
