"""Keyword ranking latency: PostgreSQL full text (embed/keyword_pg.py) against tantivy (embed/keyword.py).

For each N in ``--sizes``: a scratch PostgreSQL database (``store.db.scratch_postgres_database``,
migrated to head, so passages.text_search and its GIN index are the migration's), one source,
N/5 items and N synthetic passages (benchmarks/search.py's Zipf world: 30 words a passage over a
30,000-word vocabulary, function words most frequent), inserted with COPY; then ``VACUUM
ANALYZE`` (what autovacuum does after a bulk load; the searcher reads ANALYZE's common lexemes).
The same texts under the same ids go into a tantivy index in a temporary directory.

``--queries`` queries of 2-6 content words (Zipf over the non-function words; a function word in
half of them), through ``embed.search.keyword_terms`` as search() does, at the depth search() asks
of a ranking (100). Each engine answers every query unfiltered and ``within`` 1,000 random passage
ids (``--within``); p50/p99 of single calls, one at a time, in-process (tantivy memory-mapped,
PostgreSQL on loopback through SQLAlchemy + psycopg). PostgreSQL twice: the first pass counts each
new word's passages (its cache is cold), the second finds them cached. Top-10 agreement: the
share of tantivy's top 10 ids that PostgreSQL also puts in its top 10, and the same up to ties
(synthetic passages tie often; the engines break ties differently).

Run from the repository root:

    .venv/bin/python -m benchmarks.keyword_pg [--sizes 100000,1000000] [--queries 300] [--within 1000]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, insert, text

from benchmarks.search import PASSAGES_PER_ITEM, Corpus, machine_line, percentiles_ms
from embed.keyword import KeywordSearcher, KeywordWriter
from embed.keyword_pg import PgKeywordSearcher
from embed.search import keyword_terms
from store.db import make_engine, migrate, scratch_postgres_database
from store.models import Item, Source

ADMIN_URL = os.environ.get("BRIEFCAST_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DEPTH = 100  # what search() asks of each ranking for k=10
BATCH = 50_000
COPY_PASSAGES = "COPY passages (id, item_id, position, text, content_hash) FROM STDIN"


@dataclass
class Figures:
    n: int
    load_s: float
    analyze_s: float
    tantivy_build_s: float
    table_mb: float
    gin_mb: float
    tantivy_mb: float
    latencies: dict[str, tuple[float, float]]  # row label -> (p50 ms, p99 ms)
    agreement: float
    within_agreement: float
    tie_agreement: float


def populate(engine: Engine, n: int, corpus: Corpus, tantivy: KeywordWriter) -> tuple[float, float]:
    """Items by executemany, passages by COPY (the database fills text_search), the same texts
    into tantivy; seconds for the database and for tantivy."""
    rng = np.random.default_rng(5)
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    started, tantivy_s = time.perf_counter(), 0.0
    with engine.begin() as conn:
        conn.execute(insert(Source), [{"id": 1, "url": "http://127.0.0.1/bench.xml", "title": "bench"}])
        items = -(-n // PASSAGES_PER_ITEM)
        for start in range(0, items, BATCH):
            conn.execute(insert(Item), [
                {"id": i, "source_id": 1, "stable_key": f"{i:064x}", "content_hash": f"{i:064x}",
                 "entry_hash": f"{i:064x}", "kind": "article", "title": f"Item {i}", "language": "en",
                 "published": epoch + timedelta(minutes=i), "text": ""}
                for i in range(start + 1, min(items, start + BATCH) + 1)])
    raw = engine.raw_connection()
    try:
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            texts = corpus.passages(rng, stop - start)
            ids = list(range(start + 1, stop + 1))
            buffer = io.StringIO("".join(f"{pid}\t{(pid - 1) // PASSAGES_PER_ITEM + 1}\t{(pid - 1) % PASSAGES_PER_ITEM}"
                                         f"\t{t}\t{pid:064x}\n" for pid, t in zip(ids, texts, strict=True)))
            with raw.cursor() as cur, cur.copy(COPY_PASSAGES) as copy:
                copy.write(buffer.getvalue())
            raw.commit()
            kw_started = time.perf_counter()
            tantivy.add(ids, texts, replace=False)
            tantivy_s += time.perf_counter() - kw_started
    finally:
        raw.close()
    kw_started = time.perf_counter()
    tantivy.commit()
    tantivy_s += time.perf_counter() - kw_started
    return time.perf_counter() - started - tantivy_s, tantivy_s


def timed(search, terms: list[list[str]], within: list[list[int]] | None) -> tuple[list[float], list[list[int]]]:
    seconds, answers = [], []
    for n, words in enumerate(terms):
        started = time.perf_counter()
        answers.append(search(words, DEPTH, within=None if within is None else within[n]))
        seconds.append(time.perf_counter() - started)
    return seconds, answers


def top10_agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    shares = [len(set(a[:10]) & set(b[:10])) / len(a[:10]) for a, b in zip(reference, other, strict=True) if a]
    return float(np.mean(shares)) if shares else float("nan")


def top10_agreement_up_to_ties(pg: PgKeywordSearcher, terms: list[list[str]], tantivy: list[list[int]],
                               ours: list[list[int]]) -> float:
    """Share of tantivy's top 10 that PostgreSQL scores at least as high as its own 10th: the same
    answer but for ties broken another way (synthetic passages tie often)."""
    shares = []
    for words, theirs, mine in zip(terms, tantivy, ours, strict=True):
        if not theirs or not mine:
            continue
        scores = pg.scores(words, theirs[:10] + mine[:10])
        tenth = scores[mine[:10][-1]]
        shares.append(sum(scores.get(i, 0.0) >= tenth - 1e-9 for i in theirs[:10]) / len(theirs[:10]))
    return float(np.mean(shares)) if shares else float("nan")


def measure(n: int, corpus: Corpus, qs: list[str], within_size: int, log) -> Figures:
    terms = [keyword_terms(q) for q in qs]
    rng = np.random.default_rng(3)
    within = [np.sort(rng.choice(n, size=min(within_size, n), replace=False) + 1).tolist() for _ in qs]
    with scratch_postgres_database(ADMIN_URL, "briefcast_kwbench") as url, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(url)
        migrate(engine)
        writer = KeywordWriter(Path(tmp) / "work", None, threads=1)
        load_s, tantivy_build_s = populate(engine, n, corpus, writer)
        log(f"N={n}: loaded in {load_s:.1f} s (tantivy {tantivy_build_s:.1f} s)")
        writer.snapshot(Path(tmp) / "version")
        writer.close()
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE passages"))
            table_mb = conn.scalar(text("SELECT pg_table_size('passages')")) / 2**20
            gin_mb = conn.scalar(text("SELECT pg_relation_size('ix_passages_text_search')")) / 2**20
        analyze_s = time.perf_counter() - started
        tantivy = KeywordSearcher(Path(tmp) / "version")
        tantivy_mb = sum(f.stat().st_size for f in (Path(tmp) / "version").iterdir()) / 2**20
        pg = PgKeywordSearcher(engine, cache_seconds=3600)
        rows: dict[str, tuple[float, float]] = {}
        cold, _ = timed(pg.search, terms, None)
        rows["postgresql, unfiltered, first pass (word counts not cached)"] = percentiles_ms(cold)
        pg_all, pg_answers = timed(pg.search, terms, None)
        rows["postgresql, unfiltered"] = percentiles_ms(pg_all)
        pg_in, pg_within = timed(pg.search, terms, within)
        rows[f"postgresql, within {within_size} ids"] = percentiles_ms(pg_in)
        tv_all, tv_answers = timed(tantivy.search, terms, None)
        rows["tantivy, unfiltered"] = percentiles_ms(tv_all)
        tv_in, tv_within = timed(tantivy.search, terms, within)
        rows[f"tantivy, within {within_size} ids"] = percentiles_ms(tv_in)
        figures = Figures(n, load_s, analyze_s, tantivy_build_s, table_mb, gin_mb, tantivy_mb, rows,
                       top10_agreement(tv_answers, pg_answers), top10_agreement(tv_within, pg_within),
                       top10_agreement_up_to_ties(pg, terms, tv_answers, pg_answers))
        engine.dispose()
        return figures


def report(f: Figures, queries_count: int) -> None:
    print(f"\n## N = {f.n:,} passages, {queries_count} queries, top {DEPTH}")
    print(f"load: PostgreSQL COPY {f.load_s:.1f} s + VACUUM ANALYZE {f.analyze_s:.1f} s; "
          f"tantivy {f.tantivy_build_s:.1f} s")
    print(f"size: passages table {f.table_mb:.0f} MB (with text_search), GIN index {f.gin_mb:.0f} MB; "
          f"tantivy {f.tantivy_mb:.0f} MB")
    print("| ranking | p50 ms | p99 ms |")
    print("|---|---|---|")
    for label, (p50, p99) in f.latencies.items():
        print(f"| {label} | {p50:.2f} | {p99:.2f} |")
    print(f"top-10 agreement with tantivy: unfiltered {f.agreement:.3f}, within {f.within_agreement:.3f}; "
          f"unfiltered up to ties (PostgreSQL's score of tantivy's top 10 >= its own 10th) {f.tie_agreement:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--within", type=int, default=1000)
    args = parser.parse_args(argv)
    print(machine_line())
    corpus = Corpus.make()
    qs = corpus.queries(args.queries, most_words=6)  # 2-6 words
    for n in (int(s) for s in args.sizes.split(",")):
        report(measure(n, corpus, qs, args.within, lambda m: print(m, flush=True)), len(qs))


if __name__ == "__main__":
    main()
