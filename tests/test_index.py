"""The FAISS index store: ids, deletes, atomic commits, one writer, readers that reload, and a
writer killed with SIGKILL mid-write that never leaves a corrupt index behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from embed.encoder import FakeEncoder, normalise
from embed.index import IndexMismatchError, IndexReader, IndexStore, VectorIndex, choose_kind, ivf_lists

DIM = 32


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32))


def texts(ids) -> list[str]:
    return [f"passage number {i}" for i in ids]


def test_search_finds_each_vector_by_its_id(tmp_path):
    data = vectors(100)
    index = VectorIndex.build("m", np.arange(1000, 1100), data)
    scores, ids = index.search(data[:5], k=3)
    assert list(ids[:, 0]) == [1000, 1001, 1002, 1003, 1004]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_adding_an_existing_id_replaces_it_and_remove_deletes(tmp_path):
    index = VectorIndex.build("m", np.arange(10), vectors(10))
    index.add(np.array([3]), vectors(1, seed=9))
    assert index.count == 10
    assert index.remove([3, 4, 999]) == 2 and index.count == 8
    _, ids = index.search(vectors(10)[3:5], k=8)
    assert 3 not in ids and 4 not in ids


def test_ivf_is_chosen_beyond_the_flat_limit_and_still_finds_neighbours():
    assert choose_kind(199_999) == "flat" and choose_kind(200_001) == "ivf" and choose_kind(10, "ivf") == "ivf"
    assert ivf_lists(1_000_000) == 4000
    data = vectors(2000, seed=1)
    index = VectorIndex.build("m", np.arange(2000), data, kind="ivf", nprobe=64)
    assert index.kind == "ivf"
    _, ids = index.search(data[:20], k=1)
    assert (ids[:, 0] == np.arange(20)).mean() >= 0.95
    index.remove([0])
    assert index.count == 1999


def test_commit_is_atomic_and_readers_reload(tmp_path):
    store = IndexStore(tmp_path)
    reader = IndexReader(store)
    assert reader.current() is None
    with store.writer("m", DIM) as index:
        index.add(np.arange(5), vectors(5), texts(range(5)))
    first = reader.current()
    assert first.count == 5 and reader.snapshot().keywords.count == 5
    assert reader.current() is first  # unchanged version: no reload
    with store.writer("m", DIM) as index:
        index.add(np.arange(5, 8), vectors(3, seed=2), texts(range(5, 8)))
    assert reader.current().count == 8 and reader.snapshot().keywords.count == 8
    assert len(list(tmp_path.glob("passages-*.faiss"))) <= 2 and len(list(tmp_path.glob("keywords-*"))) <= 2


def test_failed_write_changes_nothing(tmp_path):
    store = IndexStore(tmp_path)
    with store.writer("m", DIM) as index:
        index.add(np.arange(5), vectors(5), texts(range(5)))
    with pytest.raises(ZeroDivisionError), store.writer("m", DIM) as index:
        index.add(np.arange(5, 50), vectors(45), texts(range(5, 50)))
        raise ZeroDivisionError("a failure inside the writer")
    assert store.load().count == 5 and store.load_keywords().count == 5


def test_another_model_refuses_to_write_into_the_index(tmp_path):
    store = IndexStore(tmp_path)
    with store.writer("model-a", DIM) as index:
        index.add(np.arange(3), vectors(3), texts(range(3)))
    with pytest.raises(IndexMismatchError, match="briefcast reindex"), store.writer("model-b", DIM):
        pass


def test_fake_encoder_is_deterministic_and_normalised():
    enc = FakeEncoder(64)
    a, b = enc.embed_batch(["chips and export controls", ""]), enc.embed_batch(["chips and export controls", ""])
    assert np.array_equal(a, b) and np.allclose(np.linalg.norm(a, axis=1), 1.0)


WRITER = """
import sys, numpy as np
from embed.index import IndexStore
from embed.encoder import normalise
store = IndexStore(sys.argv[1])
rng = np.random.default_rng(0)
batch = 0
while True:
    with store.writer("m", 64) as index:
        ids = np.arange(batch * 20000, (batch + 1) * 20000)
        index.add(ids, normalise(rng.standard_normal((20000, 64)).astype(np.float32)),
                  [f"passage {i} of batch {batch}" for i in ids])
    print(batch, flush=True)
    batch += 1
"""


@pytest.mark.slow
def test_writer_killed_mid_write_never_corrupts_the_index(tmp_path):
    """SIGKILL the writer at varied moments; every time, the live index loads and holds a whole
    number of committed batches, in the vectors and in the keyword index alike."""
    store = IndexStore(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    kills = 0
    for delay in (0.6, 0.9, 1.3, 1.7, 2.2):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env, stdout=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        meta = store.meta()
        if meta is None:
            continue  # killed before the first commit: nothing live, nothing corrupt
        index = store.load()
        assert index.count == meta.count and index.count % 20000 == 0
        assert store.load_keywords(meta).count == meta.count
        # The next writer must be able to take over after a kill (the lock died with the process).
        with store.writer("m", 64) as live:
            assert live.count == meta.count
    assert kills == 5 and store.meta() is not None


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_ids_and_vectors_survive_removal_and_a_rebuild(kind, tmp_path):
    data = vectors(3000, seed=4)
    index = VectorIndex.build("m", np.arange(10, 3010), data, kind=kind, nprobe=128)
    index.remove([10, 11, 500])
    ids, vecs = index.vectors()
    assert len(ids) == 2997 and 10 not in set(ids.tolist())
    by_id = dict(zip(ids.tolist(), vecs, strict=True))
    assert np.allclose(by_id[12], data[2], atol=1e-6)
    store = IndexStore(tmp_path)
    with store.writer("m", DIM) as live:
        live.vectors = index
    loaded = store.load()
    assert loaded.kind == kind and sorted(loaded.ids()) == sorted(ids.tolist())
    _, found = loaded.search(data[100:101], k=1)
    assert found[0, 0] == 110
    grown = index.rebuilt_as("ivf" if kind == "flat" else "flat")
    assert sorted(grown.ids()) == sorted(ids.tolist())


def test_reader_applies_nprobe_on_every_load(tmp_path):
    store = IndexStore(tmp_path)
    with store.writer("m", DIM) as live:
        live.vectors = VectorIndex.build("m", np.arange(3000), vectors(3000, seed=5), kind="ivf", nprobe=16)
    assert IndexReader(store, nprobe=64).current().index.nprobe == 64


def test_reader_limits_faiss_threads_on_the_thread_that_searches(tmp_path):
    """OpenMP's thread count is per calling thread: a limit set only where the index was loaded
    would not hold on the server's other threads."""
    import threading

    import faiss

    store = IndexStore(tmp_path)
    with store.writer("m", DIM) as live:
        live.add(np.arange(50), vectors(50), texts(range(50)))
    index = IndexReader(store, threads=1).current()
    seen = []

    def search_elsewhere():
        index.search(vectors(1), k=3)
        seen.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=search_elsewhere)
    worker.start()
    worker.join()
    assert seen == [1]


def test_queries_arriving_during_the_first_load_wait_for_it(tmp_path, monkeypatch):
    """A server's threads all ask at once after start-up; none may answer from an empty index."""
    import threading

    store = IndexStore(tmp_path)
    with store.writer("m", DIM) as live:
        live.add(np.arange(20), vectors(20), texts(range(20)))
    slow_load = store.load

    def load(meta=None):
        time.sleep(0.3)  # a 1.5 GB index takes seconds to read
        return slow_load(meta)

    monkeypatch.setattr(store, "load", load)
    reader = IndexReader(store)
    counts = []
    threads = [threading.Thread(target=lambda: counts.append(reader.current().count)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == [20, 20, 20, 20]
