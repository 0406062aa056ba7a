"""The keyword index: BM25 over passage texts with tantivy, beside the FAISS index.

Why tantivy and not the database's full text: SQLite FTS5 (`ORDER BY bm25 LIMIT k`) and
PostgreSQL (`ORDER BY ts_rank_cd LIMIT k`) both score every row that matches any query word
before the LIMIT; at 1M passages that was 92 ms a query. tantivy stops at the top k (block-max
WAND) and is one engine for both databases, versioned in the same commit as the vectors.

Versioning (see embed/index.py): tantivy never rewrites a file it has written (segments and
delete sets are new files; meta.json is replaced by rename), so a version is a directory of hard
links to the working copy's files, taken after a tantivy commit. The writer works in
`writer-keywords/`, which it rebuilds from the live version's links at the start of every
writer session; whatever a killed writer left there is thrown away, and the live version's
files are never touched.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from embed.cjk import cjk_grams, has_cjk, without_cjk
from embed.durable import fsync_dir as _fsync_dir
from embed.durable import fsync_file as _fsync

ID, TEXT, CJK = "id", "text", "cjk"
ANALYZER = "briefcast"
CJK_ANALYZER = "briefcast-cjk"  # the CJK field holds grams cut in Python (embed/cjk.py), space-separated
# The fields a version's keyword index has. 1: id, text (English stems over all text). 2: + cjk,
# and CJK runs leave the text field. A version of another schema is rebuilt beside the live one.
KEYWORD_SCHEMA = 2
WRITER_HEAP = 64_000_000  # bytes of indexing buffer; tantivy flushes a segment when it is full
_LOCK_FILES = (".tantivy-writer.lock", ".tantivy-meta.lock")  # flock targets, never shared


def _tantivy():
    import tantivy  # a compiled extension, light, but only search and embed need it

    return tantivy


@functools.cache
def _schema():
    tv = _tantivy()
    builder = tv.SchemaBuilder()
    builder.add_integer_field(ID, indexed=True, fast=True)  # indexed: delete by id; fast: id of a hit
    builder.add_text_field(TEXT, tokenizer_name=ANALYZER, index_option="freq")  # BM25 needs no positions
    builder.add_text_field(CJK, tokenizer_name=CJK_ANALYZER, index_option="freq")
    return builder.build()


@functools.cache
def _analyzer():
    """Words split at non-alphanumerics, lowercased, accents folded (like FTS5's unicode61
    remove_diacritics), English Snowball stems; the same analyzer cuts queries, so query terms
    match indexed terms. Stemming measured on the retrieval set: keyword MRR 0.961 -> 0.972,
    hybrid 0.966 -> 0.973 (docs/benchmarks.md)."""
    tv = _tantivy()
    return (tv.TextAnalyzerBuilder(tv.Tokenizer.simple()).filter(tv.Filter.remove_long(40))
            .filter(tv.Filter.lowercase()).filter(tv.Filter.ascii_fold()).filter(tv.Filter.stemmer("english"))
            .build())


def rsj_boost(docs: int, with_term: int) -> float:
    """Scale tantivy's BM25 idf, log(1 + (N-n+.5)/(n+.5)), to the classic Robertson-Sparck Jones
    idf that SQLite FTS5 uses, log((N-n+.5)/(n+.5)) floored near 0: a word in half the passages
    or more then weighs next to nothing, so common words cannot outvote the rare ones."""
    odds = (docs - with_term + 0.5) / (with_term + 0.5)
    return max(1e-6, math.log(odds)) / math.log1p(odds)


def _open(path: Path | None, create: bool = False):
    """The index at `path` (created if asked), or a new one in RAM when `path` is None."""
    tv = _tantivy()
    if path is None:
        index = tv.Index(_schema())
    else:
        index = tv.Index(_schema(), path=str(path), reuse=True) if create else tv.Index.open(str(path))
    index.register_tokenizer(ANALYZER, _analyzer())
    index.register_tokenizer(CJK_ANALYZER, tv.TextAnalyzerBuilder(tv.Tokenizer.whitespace()).build())
    return index


def query_terms(words: Iterable[str]) -> list[str]:
    """The analyzer's terms for the query's words (their Latin-script parts), each once, in order."""
    analyzer = _analyzer()
    return list(dict.fromkeys(t for w in words for t in analyzer.analyze(without_cjk(w))))


def query_grams(words: Iterable[str]) -> list[str]:
    """The CJK field's terms for the query's words, each once, in order."""
    return list(dict.fromkeys(g for w in words for g in cjk_grams(w)))


def document_fields(text: str) -> dict[str, str]:
    """A passage's text as the two fields index it; English text is indexed exactly as before."""
    if not has_cjk(text):
        return {TEXT: text}
    return {TEXT: without_cjk(text), CJK: " ".join(cjk_grams(text))}


class KeywordWriter:
    """The writer's working copy; lives for one writer session, under the index store's lock."""

    def __init__(self, work: Path, live: Path | None, threads: int = 1) -> None:
        self.work = work
        _replace_with_links(live, work)
        self.index = _open(work, create=True)
        self.threads = threads
        self._writer = None

    def _w(self):
        if self._writer is None:
            self._writer = self.index.writer(heap_size=WRITER_HEAP, num_threads=self.threads)
        return self._writer

    @property
    def pending(self) -> bool:
        """Changes not yet committed."""
        return self._writer is not None

    @property
    def count(self) -> int:
        """Documents in the last tantivy commit of the working copy."""
        self.index.reload()
        return self.index.searcher().num_docs

    def add(self, ids: Sequence[int], texts: Sequence[str], replace: bool = True) -> None:
        """Index each text under its passage id; an id already there is replaced (like the vectors)."""
        if len(ids) == 0:
            return
        if replace:
            self.remove(ids)
        tv, writer = _tantivy(), self._w()
        for pid, text in zip(ids, texts, strict=True):
            writer.add_document(tv.Document(**{ID: int(pid)}, **document_fields(text)))

    def remove(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
        if ids:
            tv = _tantivy()
            self._w().delete_documents_by_query(tv.Query.term_set_query(_schema(), ID, ids))

    def clear(self) -> None:
        self._w().delete_all_documents()

    def commit(self) -> None:
        """Make the working copy durable and quiet: no merge thread may move files under a snapshot."""
        if self._writer is None:
            return
        self._writer.commit()
        self._writer.wait_merging_threads()  # the writer object is spent after this
        self._writer = None

    def snapshot(self, dest: Path) -> None:
        """Hard-link the committed working copy into `dest` (a new version's directory), durably."""
        self.commit()
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _link_tree(self.work, tmp)
        _fsync_dir(tmp)
        os.replace(tmp, dest)

    def close(self) -> None:
        """End the session without committing what is pending (a failed write discards it)."""
        if self._writer is not None:
            self._writer.rollback()
            self._writer.wait_merging_threads()
            self._writer = None


class KeywordSearcher:
    """One committed version, read-only: BM25 top-k over any of the query's terms."""

    def __init__(self, path: Path, schema: int = KEYWORD_SCHEMA) -> None:
        self.path = path
        self.has_cjk = schema >= 2  # a version written before the CJK field: Latin terms only
        self.index = _open(path)
        self.index.config_reader("Manual")  # a version never changes: no watcher thread
        self.searcher = self.index.searcher()

    @property
    def count(self) -> int:
        return self.searcher.num_docs

    def search(self, words: Iterable[str], limit: int, within: Sequence[int] | None = None) -> list[int]:
        """Passage ids, best first. `count=False` lets tantivy skip what cannot reach the top.

        within: only among these ids (a filter's), a required clause that adds nothing to the
        score, so the answer is the filter's own top `limit` wherever its passages rank overall.
        """
        return top_ids(self.searcher, words, limit, within, self.has_cjk)


def top_ids(searcher, words: Iterable[str], limit: int, within: Sequence[int] | None = None,
            has_cjk: bool = True) -> list[int]:
    """KeywordSearcher.search over any tantivy searcher of this schema (embed/keyword_mirror.py
    searches an index in RAM with it)."""
    tv, schema = _tantivy(), _schema()
    words = list(words)
    docs, clauses = searcher.num_docs, []
    terms = [(TEXT, t) for t in query_terms(words)] + ([(CJK, g) for g in query_grams(words)] if has_cjk else [])
    for field, term in terms:
        with_term = searcher.doc_freq(field, term)
        if with_term:  # boosts keep block-max WAND: tantivy multiplies them into each term's scorer
            clause = tv.Query.term_query(schema, field, term, index_option="freq")
            clauses.append((tv.Occur.Should, tv.Query.boost_query(clause, rsj_boost(docs, with_term))))
    if not clauses or limit <= 0 or (within is not None and len(within) == 0):
        return []
    query = tv.Query.boolean_query(clauses)
    if within is not None:
        allowed = tv.Query.const_score_query(tv.Query.term_set_query(schema, ID, [int(i) for i in within]), 0.0)
        query = tv.Query.boolean_query([(tv.Occur.Must, query), (tv.Occur.Must, allowed)])
    hits = searcher.search(query, limit, count=False).hits
    if not hits:
        return []
    return [int(i) for i in searcher.fast_field_values(ID, [address for _, address in hits])]


def _link_tree(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for path in source.iterdir():
        if path.name in _LOCK_FILES or not path.is_file():
            continue
        try:
            os.link(path, dest / path.name)
        except OSError:  # a file system without hard links: a copy keeps the same guarantees
            shutil.copy2(path, dest / path.name)
            _fsync(dest / path.name)


def _replace_with_links(live: Path | None, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    if live is not None and live.is_dir():
        _link_tree(live, work)
    else:
        work.mkdir(parents=True)
