"""A replica's keyword index in memory: tantivy over the passages the vector mirror holds.

The database index mode (issue 14) shares no disk between machines. PostgreSQL full text
(embed/keyword_pg.py) answers from the database but costs tens of ms a query at 1M passages;
this is the other way: each replica keeps its own tantivy index, in RAM, fed by its
`VectorMirror` (embed/mirror.py) as the mirror's `companion`. Whenever the mirror adds passage
ids (load, sync, check) this reads their texts from `passages.text` (one query per chunk of
ids) and indexes them; whenever it drops ids, they are deleted here. So both halves follow the
same watermarks, and a replica needs no file from anyone.

Same schema, analyzers and ranking as the files mode's index (embed/keyword.py: `_schema`,
`document_fields`, `top_ids`), so a query finds the same ids in the same order as a
`KeywordSearcher` over the same texts.

In RAM (`tantivy.Index(schema)`, the default) rather than in a private temp directory: the same
search latency, no files left behind by a killed process, and no fsync on every sync's commit
(1,000 re-written passages: sync 70 ms in RAM, 206 ms in a temp dir at 1M). Measured with 300
synthetic queries, top 100, on a loaded 2-core machine (load 4), against PostgreSQL full text on
the same passages: at 100k, p50/p99 0.10/1.3 ms (PostgreSQL 3.2/11.8), within 1,000 ids 3.9/8.1
ms (4.2/10.6); at 1M, 0.52/1.2 ms (17.6/82.4), within 1,000 ids 8.4/10-16 ms (9.5/19.7). Cost:
load() takes +1.7 s at 100k and +17 s at 1M (5.6 s -> 23 s: texts read, documents built, one
writer thread), and the process holds ~140 MB more at 1M (a 50 MB index, the rest the load
writer's heap that the allocator keeps).

Threads: one thread mutates (the mirror's, under its mutation lock); searches read whichever
tantivy searcher was current when they started. `commit()` commits the writer, reloads, and
replaces the searcher reference in one assignment: a search never sees half of a step.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import ARRAY, BigInteger, Connection, any_, bindparam, select

from embed.keyword import ID, WRITER_HEAP, _open, _schema, _tantivy, document_fields, top_ids
from store.models import Passage

log = logging.getLogger(__name__)

TEXT_CHUNK = 5_000  # ids per `IN (...)` read of passage texts (SQLite allows 32,766 variables)
SYNC_HEAP = 16_000_000  # a sync's writer: steps are small (tantivy's floor is 15 MB a thread)


def passage_texts(conn: Connection, ids: Sequence[int]) -> tuple[list[int], list[str]]:
    """(ids, texts) of those of `ids` whose passage still exists; a deleted one's tombstone follows.

    PostgreSQL gets the ids as one array parameter (`= ANY`): psycopg spent half the read
    splitting a 5,000-placeholder IN list."""
    ids = [int(i) for i in ids]
    found_ids: list[int] = []
    texts: list[str] = []
    postgres = conn.dialect.name == "postgresql"
    for start in range(0, len(ids), TEXT_CHUNK):
        chunk = ids[start:start + TEXT_CHUNK]
        wanted = Passage.id == any_(bindparam("ids", chunk, type_=ARRAY(BigInteger))) if postgres \
            else Passage.id.in_(chunk)
        rows = conn.execute(select(Passage.id, Passage.text).where(wanted))
        for pid, body in rows:
            found_ids.append(int(pid))
            texts.append(body)
    return found_ids, texts


class _Generation:
    """One tantivy index (in RAM, or in a private temp directory) with its writer."""

    def __init__(self, in_ram: bool, heap: int, threads: int) -> None:
        self.directory = None if in_ram else Path(tempfile.mkdtemp(prefix="briefcast-keywords-"))
        self.index = _open(self.directory, create=True)
        self.index.config_reader("Manual")  # reloaded by commit(), no watcher thread
        self.heap, self.threads = heap, threads
        self._writer = None

    def writer(self):
        if self._writer is None:
            self._writer = self.index.writer(heap_size=self.heap, num_threads=self.threads)
        return self._writer

    def commit(self):
        """Commit what is pending and return a searcher that sees it."""
        if self._writer is not None:
            self._writer.commit()
        self.index.reload()
        return self.index.searcher()

    def settle(self, heap: int, threads: int) -> None:
        """Drop the (committed) writer; the next change opens one of this size."""
        if self._writer is not None:
            self._writer.wait_merging_threads()
            self._writer = None
        self.heap, self.threads = heap, threads

    def close(self) -> None:
        if self._writer is not None:
            self._writer.rollback()
            self._writer.wait_merging_threads()
            self._writer = None
        if self.directory is not None:  # a search still holding its files keeps them mapped
            shutil.rmtree(self.directory, ignore_errors=True)


class KeywordMirror:
    """KeywordSearcher's read interface (`search`, `count`, `has_cjk`) over passages the vector
    mirror feeds in, and the mirror's companion interface (`restart`, `abandon`, `add`, `remove`,
    `commit`, `ids`), which only the mirror's mutating thread calls."""

    has_cjk = True

    def __init__(self, in_ram: bool = True, load_threads: int = 1) -> None:
        self.in_ram, self.load_threads = in_ram, load_threads
        self._current = _Generation(in_ram, SYNC_HEAP, 1)
        self._searcher = self._current.commit()
        self._next: _Generation | None = None  # being loaded; replaces _current at commit()

    # -- reading ------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._searcher.num_docs

    def search(self, words: Iterable[str], limit: int, within: Sequence[int] | None = None) -> list[int]:
        """Passage ids, best first, as KeywordSearcher.search ranks them."""
        return top_ids(self._searcher, words, limit, within, self.has_cjk)

    def ids(self) -> np.ndarray:
        """Every indexed passage id, sorted (for the mirror's check: only when counts differ)."""
        searcher, tv = self._searcher, _tantivy()
        if not searcher.num_docs:
            return np.zeros(0, dtype=np.int64)
        hits = searcher.search(tv.Query.all_query(), searcher.num_docs).hits
        ids = searcher.fast_field_values(ID, [address for _, address in hits])
        return np.sort(np.asarray(ids, dtype=np.int64))

    # -- fed by the vector mirror ----------------------------------------------------------------

    def restart(self) -> None:
        """A load begins: what is added until the next commit() builds a new index that then
        replaces this one whole; searches meanwhile answer from the current one."""
        if self._next is not None:
            self._next.close()
        self._next = _Generation(self.in_ram, WRITER_HEAP, self.load_threads)

    def abandon(self) -> None:
        """The load failed: drop what it added; searches go on with the current index."""
        if self._next is not None:
            self._next.close()
            self._next = None

    def add(self, conn: Connection, ids: Sequence[int]) -> int:
        """Index the texts of these passages (replacing any already held: a re-written vector);
        how many were found."""
        if len(ids) == 0:
            return 0
        found, texts = passage_texts(conn, ids)
        target = self._target()
        writer = target.writer()
        if target is self._current:
            self._delete(writer, found)
        tv = _tantivy()
        for pid, body in zip(found, texts, strict=True):
            writer.add_document(tv.Document(**{ID: pid}, **document_fields(body)))
        return len(found)

    def remove(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
        if ids:
            self._delete(self._target().writer(), ids)

    def commit(self) -> None:
        """Make every change since the last commit visible at once (the new index, after a load)."""
        if self._next is not None:
            searcher = self._next.commit()
            old, self._current, self._next = self._current, self._next, None
            old.close()
            self._current.settle(SYNC_HEAP, 1)  # the load's big writer is spent; syncs get a small one
        else:
            searcher = self._current.commit()
        self._searcher = searcher  # one assignment: a search holds the old searcher or the new one

    def close(self) -> None:
        for generation in (self._next, self._current):
            if generation is not None:
                generation.close()

    # -- internals ----------------------------------------------------------------------------

    def _target(self) -> _Generation:
        return self._next if self._next is not None else self._current

    @staticmethod
    def _delete(writer, ids: Sequence[int]) -> None:
        if ids:
            tv = _tantivy()
            writer.delete_documents_by_query(tv.Query.term_set_query(_schema(), ID, [int(i) for i in ids]))
