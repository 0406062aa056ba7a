"""The tantivy keyword index beside FAISS: it follows every add, delete and change of passages,
both halves of a version are committed together, versions never change once live, readers
reload, a writer killed mid-commit leaves a loadable consistent index, and an index from before
keywords existed is filled on the next embed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy import func, select

from embed.encoder import normalise
from embed.index import POINTER, IndexReader, IndexStore
from embed.keyword import query_terms
from embed.pipeline import embed_pending
from embed.search import SearchFilters, search
from store import repo
from store.entry import Entry
from store.models import Item, Passage
from tests.test_search import DOCS, world  # noqa: F401  (the fixture: 4 items embedded, SQLite and PostgreSQL)

DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32))


def keyword_ids(store: IndexStore, *words: str, limit: int = 1000) -> set[int]:
    return set(store.load_keywords().search(list(words), limit))


def passage_ids(sessions, guid: str) -> set[int]:
    with sessions() as session:
        return set(session.scalars(select(Passage.id).join(Item).where(Item.guid == guid)))


def test_keyword_half_holds_exactly_the_passages_the_vectors_hold(world, sessions):  # noqa: F811
    _, store, _, _ = world
    with sessions() as session:
        all_ids = set(session.scalars(select(Passage.id)))
    assert store.load_keywords().count == store.meta().count == len(all_ids)
    assert keyword_ids(store, "ladle") == passage_ids(sessions, "robot")
    assert keyword_ids(store, "accelerators") >= passage_ids(sessions, "chips")


def test_deleted_item_leaves_the_keyword_index(world, sessions):  # noqa: F811
    ctx, store, encoder, _ = world
    before = passage_ids(sessions, "robot")
    with sessions() as session, session.begin():
        robot = session.scalars(select(Item).where(Item.guid == "robot")).one()
        repo.delete_item(session, robot.id)
    embed_pending(sessions, encoder, store)
    assert before and keyword_ids(store, "ladle") == set()
    assert search(ctx, "ladle soup", k=5, mode="keyword") == []
    with sessions() as session:
        assert store.load_keywords().count == session.scalar(select(func.count()).select_from(Passage))


def test_changed_text_replaces_its_keywords(world, sessions):  # noqa: F811
    ctx, store, encoder, _ = world
    with sessions() as session, session.begin():
        source = repo.list_sources(session)[0]
        repo.upsert_entries(session, source, [Entry(title="A cooking robot that stirs soup",
                                                    text="The spatula robot flips pancakes. " * 4,
                                                    guid="robot", url="https://news.example/robot", language="en-gb")])
    embed_pending(sessions, encoder, store)
    assert keyword_ids(store, "ladle") == set()  # the old text is gone, not just outranked
    assert keyword_ids(store, "pancakes") == passage_ids(sessions, "robot")
    assert [h.title for h in search(ctx, "spatula pancakes", k=3, mode="keyword")] == [DOCS["robot"][0]]
    assert store.load_keywords().count == store.meta().count


def test_keyword_mode_honours_filters(world):  # noqa: F811
    ctx, *_ = world
    q = "export controls accelerators"
    assert {h.kind for h in search(ctx, q, mode="keyword", filters=SearchFilters(kind="episode"))} == {"episode"}
    assert {h.kind for h in search(ctx, q, mode="keyword", filters=SearchFilters(kind="article"))} == {"article"}
    assert search(ctx, q, mode="keyword", filters=SearchFilters(topic="cooking")) == []


def test_an_index_from_before_keywords_is_filled_on_the_next_embed(world, sessions):  # noqa: F811
    ctx, store, encoder, _ = world
    pointer = store.dir / POINTER
    meta = json.loads(pointer.read_text())
    del meta["keywords"]  # what a pointer written by the previous release looks like
    pointer.write_text(json.dumps(meta))
    assert ctx.reader.snapshot().keywords is None
    assert search(ctx, "ladle", k=3, mode="keyword") == []  # vectors still answer hybrid meanwhile
    report = embed_pending(sessions, encoder, store)
    assert report.keywords_rebuilt == meta["count"] and report.passages_embedded == 0
    assert [h.title for h in search(ctx, "ladle", k=1, mode="keyword")] == [DOCS["robot"][0]]


def test_query_terms_use_the_index_analyzer():
    assert query_terms(["Défense", "DeepSeek's", "foo_bar", "controls"]) == ["defens", "deepseek", "s", "foo", "bar", "control"]


def _files(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir() if p.is_file()}


def test_a_live_version_never_changes_and_readers_reload(tmp_path):
    store = IndexStore(tmp_path)
    reader = IndexReader(store)
    with store.writer("m", DIM) as live:
        live.add(np.arange(100), vectors(100), [f"alpha word{i}" for i in range(100)])
    first = reader.snapshot()
    first_dir = store.keyword_dir(store.meta())
    frozen = _files(first_dir)
    assert reader.snapshot() is first and first.keywords.count == 100
    for round_ in range(3):  # adds, deletes and replacements: new segments, delete sets, merges
        with store.writer("m", DIM) as live:
            ids = np.arange(100 + 50 * round_, 150 + 50 * round_)
            live.add(ids, vectors(50, seed=round_ + 1), [f"beta word{i}" for i in ids])
            live.remove(range(10 * round_, 10 * round_ + 10))
            live.add(np.array([99]), vectors(1, seed=9), ["gamma replaced"])
        if round_ == 0:
            assert _files(first_dir) == frozen  # hard links to files tantivy never rewrites
    latest = reader.snapshot()
    assert latest is not first and latest.keywords.count == latest.vectors.count == 100 + 150 - 30
    assert set(latest.keywords.search(["gamma"], 10)) == {99} and 99 not in latest.keywords.search(["alpha"], 500)
    assert not first_dir.exists()  # collected after two newer versions...
    assert len(first.keywords.search(["alpha"], 500)) == 100  # ...yet a reader holding it still searches it


def test_failed_write_leaves_both_halves_as_they_were(tmp_path):
    store = IndexStore(tmp_path)
    with store.writer("m", DIM) as live:
        live.add(np.arange(10), vectors(10), [f"kept {i}" for i in range(10)])
    with pytest.raises(ZeroDivisionError), store.writer("m", DIM) as live:
        live.remove(range(5))
        live.add(np.arange(10, 20), vectors(10, seed=1), [f"lost {i}" for i in range(10, 20)])
        raise ZeroDivisionError("a failure inside the writer")
    assert store.load().count == store.load_keywords().count == 10
    assert keyword_ids(store, "lost") == set() and len(keyword_ids(store, "kept")) == 10
    with store.writer("m", DIM) as live:  # the next session starts from the live version, not the debris
        assert live.keywords.count == 10
        live.add(np.array([50]), vectors(1, seed=3), ["fresh"])
    assert store.load_keywords().count == 11


def test_add_refuses_ids_without_texts(tmp_path):
    store = IndexStore(tmp_path)
    with pytest.raises(ValueError, match="2 ids but 1 texts"), store.writer("m", DIM) as live:
        live.add(np.arange(2), vectors(2), ["only one"])


WRITER = """
import sys, numpy as np
from embed.index import IndexStore
from embed.encoder import normalise
store = IndexStore(sys.argv[1])
rng = np.random.default_rng(0)
words = np.array([f"w{n}" for n in range(5000)])
batch = max(store.load().ids()) // 5000 + 1 if store.meta() else 0
while True:
    with store.writer("m", 16) as live:
        ids = np.arange(batch * 5000, (batch + 1) * 5000)
        texts = [f"batch{batch} " + " ".join(row) for row in words[rng.integers(0, 5000, (5000, 40))].tolist()]
        live.add(ids, normalise(rng.standard_normal((5000, 16)).astype(np.float32)), texts)
        if batch:
            live.remove(range((batch - 1) * 5000, (batch - 1) * 5000 + 100))  # deletes in every commit
    print(batch, flush=True)
    batch += 1
"""


@pytest.mark.slow
def test_writer_killed_mid_commit_leaves_a_consistent_index(tmp_path):
    """SIGKILL a writer whose every commit adds 5,000 texts and deletes 100; after each kill the
    live version opens, its halves agree id for id (per batch), and the next writer takes over."""
    store = IndexStore(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    checked = 0
    for delay in (0.0, 0.1, 0.25, 0.4, 0.6, 0.9):  # after a commit: the kill lands inside the next one
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env, stdout=subprocess.PIPE)
        proc.stdout.readline()  # this writer committed once: waiting on it, not on the clock, copes with load
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        meta = store.meta()
        if meta is None:
            continue
        vectors_ids = set(store.load(meta).ids())
        keywords = store.load_keywords(meta)
        assert keywords.count == len(vectors_ids) == meta.count
        for batch in range(meta.count // 4900 + 2):
            in_keywords = set(keywords.search([f"batch{batch}"], 10_000))
            assert in_keywords == {i for i in vectors_ids if batch * 5000 <= i < (batch + 1) * 5000}, batch
        checked += 1
        with store.writer("m", 16) as live:
            assert live.keywords.count == meta.count
    assert checked == 6
