"""Vectors live in the database (issue 14), on SQLite and PostgreSQL: the embed stage writes each
vector in the transaction that marks its passage embedded; an index from before copies its
vectors over instead of re-encoding; a lost index directory is restored from them; with
index_source=database embedding workers claim different passages, and a killed one loses and
duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from embed.db_embed import embed_into_database
from embed.encoder import FakeEncoder
from embed.index import IndexStore
from embed.pipeline import EmbedReport, embed_pending, split_pending
from store import repo
from store.entry import Entry
from store.models import Passage, PassageTombstone, PassageVector
from store.vectors import claim_pending, heads, tombstones_after, vector_count, vectors_after, vectors_for
from tests.conftest import _postgres_database

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class CountingEncoder(FakeEncoder):
    """The fake encoder, counting every text it encodes (thread-safe)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.texts.extend(texts)
        if self.delay:
            time.sleep(self.delay)
        return super().embed_batch(texts)


def add_items(sessions, n: int, words: int = 60, start: int = 0) -> None:
    body = " ".join(f"word{k}" for k in range(words))
    with sessions() as session, session.begin():
        source, _ = repo.add_source(session, "https://news.example/feed", topic="ai-geopolitics", title="News")
        repo.upsert_entries(session, source, [
            Entry(title=f"Story {i}", text=f"Story {i} says {body} and {i}.", guid=f"g{i}",
                  url=f"https://news.example/{i}", language="en", published=NOW) for i in range(start, start + n)])


def passage_ids(sessions) -> list[int]:
    with sessions() as session:
        return list(session.scalars(select(Passage.id).order_by(Passage.id)))


def stored_rows(sessions, model_id: str) -> list[int]:
    with sessions() as session:
        return list(session.scalars(select(PassageVector.passage_id).where(PassageVector.model_id == model_id)
                                    .order_by(PassageVector.passage_id)))


def test_embed_writes_every_vector_with_its_mark(sessions, tmp_path):
    add_items(sessions, 6)
    store, encoder = IndexStore(tmp_path / "index"), FakeEncoder()
    embed_pending(sessions, encoder, store)
    ids = passage_ids(sessions)
    assert stored_rows(sessions, encoder.model_id) == ids
    index = store.load()
    with sessions() as session:
        stored = vectors_for(session, encoder.model_id, ids)
        marked = session.scalar(select(func.count()).select_from(Passage).where(Passage.embedded_model == encoder.model_id))
    assert marked == len(ids)
    held = index.vectors_of(ids)
    for pid in ids:
        assert np.array_equal(stored[pid], held[pid])  # the very vector the index holds


def test_a_deleted_passage_leaves_a_tombstone_and_takes_its_vector(sessions, tmp_path):
    add_items(sessions, 3)
    encoder = FakeEncoder()
    embed_pending(sessions, encoder, IndexStore(tmp_path / "index"))
    ids = passage_ids(sessions)
    with sessions() as session, session.begin():
        item_id = session.scalar(select(Passage.item_id).where(Passage.id == ids[0]))
        gone = list(session.scalars(select(Passage.id).where(Passage.item_id == item_id)))
        repo.delete_item(session, item_id)
    with sessions() as session:
        _, tomb_ids = tombstones_after(session, 0, 100)
        assert sorted(tomb_ids.tolist()) == sorted(gone)  # a cascade from the item fires the trigger too
        assert vector_count(session, encoder.model_id) == len(ids) - len(gone)
        assert heads(session, encoder.model_id)[1] >= len(gone)


def test_an_index_from_before_copies_its_vectors_without_encoding(sessions, tmp_path):
    add_items(sessions, 5)
    store = IndexStore(tmp_path / "index")
    embed_pending(sessions, FakeEncoder(), store)
    with sessions() as session, session.begin():
        session.execute(delete(PassageVector))  # as a database migrated from 0013 holds them: none
    meta, encoder = store.meta(), CountingEncoder()
    report = embed_pending(sessions, encoder, store)
    assert encoder.texts == []  # nothing re-encoded
    assert report.vectors_copied == len(passage_ids(sessions))
    assert stored_rows(sessions, encoder.model_id) == passage_ids(sessions)
    assert store.meta() == meta  # and the index itself untouched


def test_a_lost_index_directory_is_rebuilt_from_the_database(sessions, tmp_path):
    add_items(sessions, 5)
    embed_pending(sessions, FakeEncoder(), IndexStore(tmp_path / "index"))
    add_items(sessions, 2, start=100)  # split, never embedded
    fresh, encoder = IndexStore(tmp_path / "elsewhere"), CountingEncoder()
    report = embed_pending(sessions, encoder, fresh)
    ids = passage_ids(sessions)
    assert report.rebuilt and fresh.meta().count == len(ids)
    assert len(encoder.texts) == len(ids) - report.vectors_copied > 0  # only the two new items' passages
    assert all("Story 10" in t for t in encoder.texts)


def test_database_mode_embeds_each_passage_once_and_writes_no_file(sessions, tmp_path):
    add_items(sessions, 8)
    encoder = CountingEncoder()
    report = embed_into_database(sessions, encoder, batch=4)
    ids = passage_ids(sessions)
    assert sorted(encoder.texts) == sorted(t for t in _texts(sessions))
    assert report.passages_embedded == report.index_count == len(ids)
    assert stored_rows(sessions, encoder.model_id) == ids
    again = embed_into_database(sessions, encoder, batch=4)
    assert again.passages_embedded == 0 and len(encoder.texts) == len(ids)  # nothing pending, nothing encoded
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.faiss"))


def test_reembedding_in_database_mode_replaces_each_vector_in_place(sessions):
    add_items(sessions, 3)
    encoder = FakeEncoder()
    embed_into_database(sessions, encoder)
    with sessions() as session:
        before = heads(session, encoder.model_id)[0]
    report = embed_into_database(sessions, encoder, rebuild=True)
    ids = passage_ids(sessions)
    assert report.passages_embedded == len(ids)
    with sessions() as session:
        seqs, got, _ = vectors_after(session, encoder.model_id, before, 10_000)
    assert sorted(got.tolist()) == ids and stored_rows(sessions, encoder.model_id) == ids  # new seqs, one row each


def _texts(sessions) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Passage.text)))


@pytest.fixture
def pg_sessions():
    from store.db import open_database

    for url in _postgres_database():
        factory = open_database(url)
        yield factory, url
        factory.kw["bind"].dispose()


@pytest.mark.postgres
def test_two_workers_claim_different_passages(pg_sessions):
    sessions, _ = pg_sessions
    add_items(sessions, 30)
    encoder = CountingEncoder(delay=0.05)
    threads = [threading.Thread(target=embed_into_database, args=(sessions, encoder), kwargs={"batch": 5})
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = passage_ids(sessions)
    assert len(encoder.texts) == len(ids)  # SKIP LOCKED: no passage encoded twice
    assert stored_rows(sessions, encoder.model_id) == ids


@pytest.mark.postgres
def test_claimed_rows_are_skipped_while_held_and_free_once_released(pg_sessions):
    sessions, _ = pg_sessions
    add_items(sessions, 4)
    split_pending(sessions, EmbedReport())
    holder = sessions()
    holder.begin()
    held = claim_pending(holder, "m", 3)
    with sessions() as other, other.begin():
        free = claim_pending(other, "m", 100)
    assert held and not {p for p, _ in held} & {p for p, _ in free}
    holder.rollback()  # as a killed worker's connection does
    holder.close()
    with sessions() as other, other.begin():
        assert {p for p, _ in held} <= {p for p, _ in claim_pending(other, "m", 100)}


KILLED_WORKER = textwrap.dedent("""
    import sys, time
    from embed.db_embed import embed_into_database
    from embed.encoder import FakeEncoder
    from store.db import open_database

    class Slow(FakeEncoder):
        def embed_batch(self, texts):
            print("batch", flush=True)
            time.sleep(0.3)
            return super().embed_batch(texts)

    embed_into_database(open_database(sys.argv[1]), Slow(), batch=5)
""")


@pytest.mark.postgres
def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(pg_sessions):
    sessions, url = pg_sessions
    add_items(sessions, 40)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, url], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    try:
        seen = 0
        while seen < 3:  # two batches committed, the third one open when the worker dies
            assert proc.stdout.readline(), "the worker ended before it was killed"
            seen += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    partial = len(stored_rows(sessions, FakeEncoder().model_id))
    ids = passage_ids(sessions)
    assert 0 < partial < len(ids)
    encoder = CountingEncoder()
    embed_into_database(sessions, encoder, batch=5)  # another worker takes over
    assert len(encoder.texts) == len(ids) - partial  # the killed batch is redone, nothing else
    assert stored_rows(sessions, encoder.model_id) == ids  # one row per passage
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PassageTombstone)) == 0
