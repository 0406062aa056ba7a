"""Search benchmark: FAISS index figures in-process, then the HTTP API under bounded loopback load.

What it measures, for each N in ``--sizes``, and prints as labelled tables:

1. Index (in-process, synthetic clustered 384-d vectors: ``--centres`` Gaussian centres on the
   unit sphere, point = centre + noise of norm ``--spread``, L2-normalised; queries drawn the
   same way from a separate seed). Flat and IVF as ``VectorIndex.build`` makes them (IVF lists
   = 4·sqrt(N), trained on all vectors): build seconds, RSS delta after the build and peak RSS
   delta during it, recall@10 against exact Flat on the same queries for nprobe 8/16/32/64, and
   single-query latency p50/p99 (one ``search`` call per query), with FAISS's default OpenMP
   threads (what the API uses) and with one thread.
2. HTTP API. A fresh SQLite database with one source, N/5 items and N passages (short synthetic
   text with a Zipf vocabulary; ids 1..N = the index ids), Core ``executemany`` in batches; each
   batch's texts also go into the tantivy keyword index; the index ``kind="auto"`` would choose
   for N (``--server-index``) is committed with it as one version by ``IndexStore.writer``.
   2a. Keyword ranking in-process: an FTS5 table (the engine before tantivy) is built over the
   same rows as the baseline; ``--keyword-queries`` queries ranked by both, one at a time, at the
   depth search() asks for: p50/p99, the ratio, top-10 agreement, build seconds and sizes.
   Then an API key; ``briefcast serve --workers W`` for each W in ``--workers`` as a child process
   on a free 127.0.0.1 port (BRIEFCAST_* env, ``--encoder``, fake by default), and an httpx async
   load generator, bounded by request count and wall time, loopback only: ``--requests`` GET
   /search at each ``--concurrency``, for ``mode=vector`` and ``mode=hybrid``: latency p50/p99,
   requests/s, errors, the server's CPU per request and its RSS after the row. ``--filters``
   rotates wide, narrow and empty filters (an empty answer where matches exist is counted wrong);
   ``--rounds N`` repeats the rows on the same server (RSS that grows every round is a leak);
   ``--query-baselines fake,torch`` (with ``--encoder minilm``) adds one-worker servers on the
   same index whose queries go through the fake encoder (benchmarks/fake_query_server.py: what
   the real encoder costs) or torch MiniLM. The load test: ``--sizes 100000 --encoder minilm
   --requests 4000 --concurrency 8 --workers 1 --filters --rounds 3``; exit status 1 when a
   request failed or answered wrong.
3. Server memory: VmRSS and VmHWM (peak) summed over the server's processes (/proc/<pid>/status).
4. Where a request's time goes: the same database and index in-process, requests sent one at a
   time through the ASGI app (``TestClient``), with timers wrapped around the encoder, FAISS
   ``search``, the keyword ranking, the grouping SQL and the hydration SQL; "outside search()" is
   auth, FastAPI validation, the response model and JSON. The query encoder is the one the server
   builds (``make_query_encoder``: with ``--encoder minilm``, the int8 ONNX export when found).
5. Real MiniLM (all-MiniLM-L6-v2, torch, CPU) query-embedding latency in-process over 200 short
   queries, one per call, at torch's default threads and at one: add it to the fake-encoder HTTP
   figures for a real deployment.

Targets: p99 <= 50 ms and recall@10 >= 0.95 at 1M on 2 cores. The load generator runs on the same
machine and takes CPU from the server; the machine may be shared (the load average is printed).

Run from the repository root:

    .venv/bin/python -m benchmarks.search [--sizes 100000,1000000] [--queries 1000]
        [--encoder fake|minilm] [--requests 1000] [--concurrency 4,16] [--workers 1,2]
        [--keyword-queries 300] [--server-index auto|flat|ivf] [--filters] [--rounds 1]
        [--query-baselines fake,torch]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import Engine, insert

from embed.index import IndexStore, VectorIndex, choose_kind, ivf_lists
from embed.search import keyword_terms
from store.db import make_engine, migrate, session_factory
from store.models import Item, Passage, Source
from store.settings import Settings

DIM = 384
K = 10
NPROBES = (8, 16, 32, 64)
MODES = ("vector", "hybrid")
TARGET_P99_MS = 50.0
TARGET_RECALL = 0.95
FLAT_LATENCY_QUERIES = 200  # exact search over 1M costs ~0.1 s a query: fewer, timed one by one
LATENCY_BUDGET_S = 60.0  # per single-query latency series
LOAD_DEADLINE_S = 300.0  # per load run: it stops early (and says so) rather than run on
PASSAGES_PER_ITEM = 5
WORDS_PER_PASSAGE = 30
INSERT_BATCH = 20_000
MINILM_QUERIES = 200
LOOPBACK = "127.0.0.1"


# --- process memory and the machine ------------------------------------------------------------


def proc_status_kb(pid: int | str = "self") -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                values[name] = int(parts[0])
    return values


def rss_mb(pid: int | str = "self") -> float:
    return proc_status_kb(pid)["VmRSS"] / 1024


def hwm_mb(pid: int | str = "self") -> float:
    return proc_status_kb(pid)["VmHWM"] / 1024


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: "5" > /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def load_avg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"machine: {cores} cores (nproc), {cpu}, Python {platform.python_version()}, {platform.platform()}, "
            f"load avg {load_avg()} at start")


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 99])
    return float(p50), float(p99)


# --- synthetic vectors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Clusters:
    """Gaussian clusters on the unit sphere: point = centre + noise of expected norm `spread`."""

    centres: np.ndarray
    spread: float

    @classmethod
    def make(cls, count: int, spread: float, seed: int = 1) -> Clusters:
        centres = np.random.default_rng(seed).standard_normal((count, DIM), dtype=np.float32)
        return cls(centres / np.linalg.norm(centres, axis=1, keepdims=True), spread)

    def draw(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            rows = self.centres[rng.integers(0, len(self.centres), stop - start)]
            rows += rng.standard_normal(rows.shape, dtype=np.float32) * np.float32(self.spread / np.sqrt(DIM))
            out[start:stop] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return out


# --- part 1: the index in-process -------------------------------------------------------------


@dataclass
class IndexRow:
    n: int
    label: str
    build_s: float | None  # None: the same index as the row above, another nprobe
    rss_delta_mb: float | None
    peak_delta_mb: float | None
    recall: float
    p50_ms: float
    p99_ms: float
    timed: int
    p50_1t_ms: float = float("nan")  # the same with FAISS limited to one OpenMP thread
    p99_1t_ms: float = float("nan")
    recall_real: float = float("nan")  # recall@10 of the load's text queries, real query encoder (--encoder minilm)


@dataclass
class IndexFigures:
    n: int
    rows: list[IndexRow]
    top1_cos: float
    top10_cos: float
    kept: VectorIndex  # the index kind="auto" chooses for N, nprobe set for the server


def timed_build(build: Callable[[], VectorIndex]) -> tuple[VectorIndex, float, float, float]:
    gc.collect()
    before = rss_mb()
    can_peak = reset_peak_rss()
    started = time.perf_counter()
    index = build()
    seconds = time.perf_counter() - started
    after = rss_mb()
    peak = hwm_mb() - before if can_peak else float("nan")
    return index, seconds, after - before, peak


def single_query_latencies(index: VectorIndex, queries: np.ndarray, limit: int, threads: int) -> list[float]:
    """Seconds per `search` of one query, over up to `limit` queries and LATENCY_BUDGET_S seconds,
    with FAISS using `threads` OpenMP threads (restored after)."""
    import faiss

    default = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        return _time_queries(index, queries, limit)
    finally:
        faiss.omp_set_num_threads(default)


def _time_queries(index: VectorIndex, queries: np.ndarray, limit: int) -> list[float]:
    index.search(queries[:1], K)  # warm
    times: list[float] = []
    stop_at = time.monotonic() + LATENCY_BUDGET_S
    for row in range(min(limit, len(queries))):
        started = time.perf_counter()
        index.search(queries[row:row + 1], K)
        times.append(time.perf_counter() - started)
        if time.monotonic() > stop_at:
            break
    return times


def real_query_vectors(args, texts: list[str], log: Callable[[str], None]) -> np.ndarray | None:
    """The load's text queries as the server's query encoder embeds them (--encoder minilm), for a
    second recall figure: these vectors are not drawn from the synthetic clusters, so IVF's
    recall on them is a harder case than the clusters' own queries, not a forecast for real text."""
    if args.encoder != "minilm":
        return None
    from embed.runtime import make_query_encoder

    settings = bench_settings(args, Path(tempfile.gettempdir()) / "briefcast-search-bench-no-data")
    log(f"encoding {len(texts)} text queries with the server's query encoder ({query_encoder_name(settings)})")
    return make_query_encoder(settings).embed_batch(texts).astype(np.float32)


def recall_at_k(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / K for t, f in zip(truth.tolist(), found.tolist(), strict=True)]))


def latency_pair(index: VectorIndex, queries: np.ndarray, limit: int,
                 threads: int) -> tuple[float, float, int, float, float]:
    """p50, p99 and count at `threads` OpenMP threads, then p50, p99 at one thread."""
    default = single_query_latencies(index, queries, limit, threads)
    single = single_query_latencies(index, queries, limit, 1)
    return *percentiles_ms(default), len(default), *percentiles_ms(single)


def measure_index(n: int, clusters: Clusters, queries: np.ndarray, model_id: str, server_kind: str,
                  server_nprobe: int, threads: int, log: Callable[[str], None],
                  real_queries: np.ndarray | None = None) -> IndexFigures:
    vectors = clusters.draw(n, seed=1000 + n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rows = []

    log(f"N={n:,}: building Flat")
    flat, seconds, delta, peak = timed_build(lambda: VectorIndex.build(model_id, ids, vectors, kind="flat"))
    scores, truth = flat.search(queries, K)
    real_truth = flat.search(real_queries, K)[1] if real_queries is not None else None
    rows.append(IndexRow(n, "Flat (exact)", seconds, delta, peak, 1.0,
                         *latency_pair(flat, queries, FLAT_LATENCY_QUERIES, threads)))
    kept = flat if server_kind == "flat" else None
    del flat

    log(f"N={n:,}: building IVF{ivf_lists(n)} (k-means over all {n:,} vectors)")
    ivf, seconds, delta, peak = timed_build(
        lambda: VectorIndex.build(model_id, ids, vectors, kind="ivf", nprobe=server_nprobe))
    for number, nprobe in enumerate(NPROBES):
        ivf.set_nprobe(nprobe)
        _, found = ivf.search(queries, K)
        rows.append(IndexRow(n, f"IVF{ivf_lists(n)} nprobe {nprobe}", seconds if number == 0 else None,
                             delta if number == 0 else None, peak if number == 0 else None,
                             recall_at_k(truth, found), *latency_pair(ivf, queries, len(queries), threads)))
        if real_truth is not None:
            rows[-1].recall_real = recall_at_k(real_truth, ivf.search(real_queries, K)[1])
    ivf.set_nprobe(server_nprobe)
    if server_kind == "ivf":
        kept = ivf
    assert kept is not None
    return IndexFigures(n, rows, float(scores[:, 0].mean()), float(scores[:, K - 1].mean()), kept)


# --- part 2: the database ----------------------------------------------------------------------

_FUNCTION_WORDS = ("the of and to a in is that for it on was with as at by be this from are or an have not "
                   "but they his which we has their you will were said its been more than who about").split()
_SYLLABLES = ([c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
              + ["ch" + v for v in "aeiou"] + ["st" + v for v in "aeio"])


def vocabulary(size: int, seed: int = 7) -> list[str]:
    """English function words first (the most frequent ranks), then distinct 2-4 syllable words."""
    rng = np.random.default_rng(seed)
    words, seen = list(_FUNCTION_WORDS), set(_FUNCTION_WORDS)
    while len(words) < size:
        word = "".join(rng.choice(_SYLLABLES, rng.integers(2, 5)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


@dataclass(frozen=True)
class Corpus:
    """Zipf(1) word frequencies over a vocabulary: a news-like mix of very common and rare words."""

    words: list[str]
    cdf: np.ndarray

    @classmethod
    def make(cls, size: int = 30_000) -> Corpus:
        weights = 1.0 / np.arange(1, size + 1)
        return cls(vocabulary(size), np.cumsum(weights) / weights.sum())

    def ranks(self, rng: np.random.Generator, shape, lowest: int = 0) -> np.ndarray:
        low = self.cdf[lowest - 1] if lowest else 0.0
        return np.searchsorted(self.cdf, rng.uniform(low, 1.0, shape)).clip(max=len(self.words) - 1)

    def passages(self, rng: np.random.Generator, count: int) -> list[str]:
        words = self.words
        return [" ".join(words[r] for r in row) for row in self.ranks(rng, (count, WORDS_PER_PASSAGE)).tolist()]

    def queries(self, count: int, seed: int = 11, most_words: int = 4) -> list[str]:
        """2 to `most_words` content words each (Zipf over the non-function words), a function word
        in half of them."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(count):
            terms = [self.words[r] for r in self.ranks(rng, rng.integers(2, most_words + 1), lowest=len(_FUNCTION_WORDS))]
            if rng.random() < 0.5:
                terms.insert(1, _FUNCTION_WORDS[rng.integers(0, len(_FUNCTION_WORDS))])
            out.append(" ".join(terms))
        return out


@dataclass
class BuildTimes:
    rows_s: float = 0.0  # inserting items and passages into SQLite
    tantivy_s: float = 0.0  # adding the texts to the keyword index and committing it
    fts5_s: float = 0.0  # the baseline: building an FTS5 table over the same passages


def populate(engine: Engine, n: int, corpus: Corpus, model_id: str, keywords) -> BuildTimes:
    """One source, n/5 items, n passages with ids 1..n; each batch's texts also go to `keywords`
    (the writer's KeywordWriter); then the FTS5 baseline table is built over the same rows."""
    rng = np.random.default_rng(5)
    times = BuildTimes()
    started = time.perf_counter()
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Source), [{"id": 1, "url": f"http://{LOOPBACK}/bench.xml", "title": "bench",
                                       "topic": "news"}])
    items = -(-n // PASSAGES_PER_ITEM)
    for start in range(0, items, INSERT_BATCH):
        rows = [{"id": i, "source_id": 1, "stable_key": f"{i:064x}", "url": f"http://127.0.0.1/item/{i}",
                 "content_hash": f"{i:064x}", "entry_hash": f"{i:064x}", "kind": "article", "title": f"Item {i}",
                 "language": "en", "published": epoch + timedelta(minutes=i), "text": ""}
                for i in range(start + 1, min(items, start + INSERT_BATCH) + 1)]
        with engine.begin() as conn:
            conn.execute(insert(Item), rows)
    for start in range(0, n, INSERT_BATCH):
        stop = min(n, start + INSERT_BATCH)
        texts = corpus.passages(rng, stop - start)
        ids = list(range(start + 1, stop + 1))
        rows = [{"id": pid, "item_id": (pid - 1) // PASSAGES_PER_ITEM + 1, "position": (pid - 1) % PASSAGES_PER_ITEM,
                 "text": text, "content_hash": f"{pid:064x}", "embedded_model": model_id}
                for pid, text in zip(ids, texts, strict=True)]
        with engine.begin() as conn:
            conn.execute(insert(Passage), rows)
        kw_started = time.perf_counter()
        keywords.add(ids, texts, replace=False)
        times.tantivy_s += time.perf_counter() - kw_started
    kw_started = time.perf_counter()
    keywords.commit()
    times.tantivy_s += time.perf_counter() - kw_started
    times.rows_s = time.perf_counter() - started - times.tantivy_s
    fts_started = time.perf_counter()
    with engine.begin() as conn:
        for statement in FTS5_BASELINE:
            conn.exec_driver_sql(statement)
    times.fts5_s = time.perf_counter() - fts_started
    return times


# The keyword engine before tantivy (migration 0002, dropped by 0005), rebuilt here as the baseline.
FTS5_BASELINE = (
    "CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='passages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO passages_fts(passages_fts) VALUES ('rebuild')",
)
FTS5_QUERY = "SELECT rowid FROM passages_fts WHERE passages_fts MATCH :q ORDER BY bm25(passages_fts) LIMIT :n"
# FTS5's own score of given rows: to tell a different top 10 from the same scores in another order
FTS5_SCORES = ("SELECT rowid, bm25(passages_fts) FROM passages_fts WHERE passages_fts MATCH :q "
               "AND rowid IN (SELECT value FROM json_each(:ids))")
def create_api_key(engine: Engine) -> str:
    from store.apikeys import create_key

    with session_factory(engine)() as session, session.begin():
        return create_key(session, "bench")[1]


# --- the server and the load generator ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(settings: Settings, log_path: Path, extra_env: dict[str, str],
                   workers: int = 1, command: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """`briefcast serve` (or `command`, taking the same options) on a free loopback port; yields
    (base URL, pid) once /health answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")} | extra_env | {
        "BRIEFCAST_DATA_DIR": str(settings.data_dir), "BRIEFCAST_DATABASE_URL": settings.db_url,
        "BRIEFCAST_ENCODER": settings.encoder, "BRIEFCAST_NPROBE": str(settings.nprobe),
        "BRIEFCAST_INDEX_KIND": settings.index_kind, "BRIEFCAST_API_HOST": LOOPBACK,
        "BRIEFCAST_CONFIG": str(settings.data_dir / "no-such.toml")}
    command = (command or [str(Path(sys.executable).parent / "briefcast"), "serve"]) + [
        "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"briefcast serve exited with {server.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("briefcast serve did not answer /health within 120 s: "
                                   + log_path.read_text()[-2000:])
            time.sleep(0.2)
        yield base, server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@dataclass
class LoadRow:
    n: int
    server: str  # how the server ran, e.g. "workers=2"
    load_avg: float  # the 1-minute load average when the run started
    mode: str
    concurrency: int
    sent: int
    ok: int
    wall_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: Counter = field(default_factory=Counter)
    empty: int = 0  # 200 answers with no results where the filter matches passages: wrong
    expected_empty: int = 0  # 200 answers with no results for the filter no passage passes: right
    not_empty: int = 0  # results for the filter no passage passes: wrong
    round_: int = 1
    server_cpu_ms: float = float("nan")  # the server's CPU per answered request: what load does not inflate
    rss_after_mb: float = float("nan")  # the server's RSS when the run ended: flat across rounds, or growing
    anon_after_mb: float = float("nan")  # of which anonymous (heap: a leak shows here; the rest is mapped files)

    @property
    def per_second(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


def filter_mix(n: int) -> list[dict[str, str]]:
    """Filters a load run rotates through (--filters): none, ones every item passes (source, kind,
    lang), ones that keep half or 1% of the items (since / until: each item is a minute younger than
    the last), and one no item passes (episodes): the wide, the narrow and the empty filter paths."""
    items = -(-n // PASSAGES_PER_ITEM)
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    return [{}, {"source": "1"}, {"kind": "article"}, {"lang": "en"},
            {"since": (epoch + timedelta(minutes=items // 2)).isoformat()},
            {"until": (epoch + timedelta(minutes=max(1, items // 100))).isoformat()},
            EMPTY_FILTER]


EMPTY_FILTER = {"kind": "episode"}  # no passage passes it: an answer with results is wrong


async def run_load(base: str, key: str, queries: list[str], mode: str, concurrency: int, total: int, n: int,
                   server: str, filters: list[dict[str, str]] | None = None) -> LoadRow:
    """`total` GET /search over `concurrency` connections, at most LOAD_DEADLINE_S seconds; with
    `filters`, request i carries filters[i % len(filters)]."""
    assert httpx.URL(base).host == LOOPBACK, "the load generator talks to loopback only"
    latencies: list[float] = []
    errors: Counter = Counter()
    empty = expected_empty = not_empty = 0
    numbers = itertools.count()
    load = os.getloadavg()[0]
    stop_at = time.monotonic() + LOAD_DEADLINE_S
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal empty, expected_empty, not_empty
            while time.monotonic() < stop_at and (number := next(numbers)) < total:
                params = {"q": queries[number % len(queries)], "k": K, "mode": mode}
                chosen = filters[number % len(filters)] if filters else {}
                params |= chosen
                started = time.perf_counter()
                try:
                    response = await client.get("/search", params=params)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}"] += 1
                    continue
                latencies.append(elapsed)
                answered = response.json()["count"] > 0
                if chosen == EMPTY_FILTER:
                    expected_empty += not answered
                    not_empty += answered
                else:
                    empty += not answered

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    p50, p99 = percentiles_ms(latencies)
    return LoadRow(n, server, load, mode, concurrency, len(latencies) + sum(errors.values()), len(latencies), wall,
                   p50, p99, max(latencies, default=0.0) * 1000, errors, empty, expected_empty, not_empty)


def warm_up(base: str, key: str, queries: list[str], workers: int = 1) -> float:
    """The first search in each worker loads FAISS and the index files: untimed requests in every
    mode, over as many connections as workers (so each worker gets some); seconds."""
    started = time.perf_counter()

    async def warm() -> None:
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=600) as client:
            async def one(number: int, mode: str) -> None:
                response = await client.get("/search", params={"q": queries[-1 - number], "k": K, "mode": mode})
                response.raise_for_status()
            for round_ in range(10):
                await asyncio.gather(*(one(round_ * 8 + w * 2 + m, mode) for w in range(max(2, 2 * workers))
                                       for m, mode in enumerate(MODES)))

    asyncio.run(warm())
    return time.perf_counter() - started


@dataclass
class ServerFigures:
    n: int
    index_kind: str
    index_file_mb: float
    populate_s: float
    db_mb: float
    memory: dict[str, tuple[float, float, float, float, float]]  # label -> RSS idle, warm, end, VmHWM, warm-up s
    loads: list[LoadRow]


# --- part 4: where a request's time goes ---------------------------------------------------------


@contextmanager
def stage_timers() -> Iterator[list[dict[str, float]]]:
    """Wrap the stages search() goes through with timers; yields one dict of seconds per search().

    Module attributes are looked up at call time (api.app imports `search` inside the endpoint,
    search() calls its helpers by global name, the context calls runtime.make_query_encoder lazily), so
    the app built inside this block is timed without changing project code.
    """
    import embed.runtime as runtime
    import embed.search as search_module

    requests: list[dict[str, float]] = []

    def timed(name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                if requests:
                    requests[-1][name] = requests[-1].get(name, 0.0) + time.perf_counter() - started
                    requests[-1][name + " CPU"] = requests[-1].get(name + " CPU", 0.0) + time.thread_time() - cpu
        return wrapper

    def timed_search(*args, **kwargs):
        requests.append({})
        return timed("search()", original_search)(*args, **kwargs)

    def timed_encoder(settings: Settings):
        encoder = original_make_encoder(settings)  # the query encoder (the int8 export when it exists)
        encoder.embed_batch = timed("query embedding", encoder.embed_batch)
        return encoder

    original_search, original_make_encoder = search_module.search, runtime.make_query_encoder
    patched = {(search_module, "vector_ranking"): "vector ranking",
               (search_module, "keyword_ranking"): "keyword ranking (tantivy)",
               (search_module, "_owners"): "passage owners (memory, else SQL)",
               (search_module, "_group_by_item"): "group by item",
               (search_module, "_hydrate"): "hydrate SQL + hits",
               (VectorIndex, "search"): "FAISS search"}
    originals = {target: getattr(*target) for target in patched}
    try:
        for (owner, name), label in patched.items():
            setattr(owner, name, timed(label, originals[(owner, name)]))
        search_module.search, runtime.make_query_encoder = timed_search, timed_encoder
        yield requests
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
        search_module.search, runtime.make_query_encoder = original_search, original_make_encoder


@dataclass
class StageFigures:
    n: int
    mode: str
    requests: int
    stages: dict[str, tuple[float, float, float, float]]  # name -> wall mean, p50, p99, CPU mean in ms
    load: tuple[float, float] = (float("nan"), float("nan"))  # 1-minute load average before and after


async def _sequential_requests(app, key: str, queries: list[str], mode: str) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds per GET /search sent one at a time straight into the ASGI app
    (no sockets; the CPU includes the client's share of the in-process transport)."""
    totals = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers={"X-API-Key": key}) as client:
        for q in queries:
            started, cpu = time.perf_counter(), time.process_time()
            response = await client.get("/search", params={"q": q, "k": K, "mode": mode})
            totals.append((time.perf_counter() - started, time.process_time() - cpu))
            response.raise_for_status()
    return totals


def auth_seconds(settings: Settings, key: str, count: int) -> list[float]:
    """What the API's key check costs alone: verify_key and the commit of last_used_at."""
    from store.apikeys import verify_key

    engine = make_engine(settings.db_url)
    sessions = session_factory(engine)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with sessions() as session, session.begin():
            verify_key(session, key)
        times.append(time.perf_counter() - started)
    engine.dispose()
    return times


def summarise(seconds: list[float]) -> tuple[float, float, float]:
    return float(np.mean(seconds)) * 1000, *percentiles_ms(seconds)


def measure_stages(settings: Settings, key: str, queries: list[str], count: int, n: int) -> list[StageFigures]:
    from api.app import create_app

    figures = []
    load_before = os.getloadavg()[0]
    with stage_timers() as per_search:
        app = create_app(settings)
        for mode in MODES:  # load the encoder and the index, untimed
            asyncio.run(_sequential_requests(app, key, queries[-5:], mode))
        for mode in MODES:
            per_search.clear()
            totals = asyncio.run(_sequential_requests(app, key, queries[:count], mode))
            stages: dict[str, list[float]] = defaultdict(list)
            for (total, total_cpu), timings in zip(totals, per_search, strict=True):
                stages["whole request (in-process ASGI)"].append(total)
                stages["whole request (in-process ASGI) CPU"].append(total_cpu)
                for name, seconds in timings.items():
                    stages[name].append(seconds)
                for suffix in ("", " CPU"):
                    if "vector ranking" + suffix in timings:
                        inner = timings.get("query embedding" + suffix, 0.0) + timings.get("FAISS search" + suffix, 0.0)
                        stages["  rest of vector ranking" + suffix].append(timings["vector ranking" + suffix] - inner)
                    outside = (total if not suffix else total_cpu) - timings["search()" + suffix]
                    stages["outside search(): auth, FastAPI, JSON" + suffix].append(outside)
            figures.append(StageFigures(n, mode, len(totals), {
                name: (*summarise(v), float(np.mean(stages.get(name + " CPU", [float("nan")]))) * 1000)
                for name, v in stages.items() if not name.endswith(" CPU")}))
    auth = summarise(auth_seconds(settings, key, count))
    for figure in figures:
        figure.load = (load_before, os.getloadavg()[0])
        figure.stages["  of which auth (verify_key + commit)"] = (*auth, float("nan"))
    return figures


# --- part 5: the real encoder --------------------------------------------------------------------


def minilm_latency(encoder, queries: list[str]) -> list[tuple[int, float, float]] | str:
    """(torch threads, p50 ms, p99 ms) of embedding one short query per call, at torch's default
    thread count and at one thread."""
    try:
        import torch

        if encoder is None:
            from embed.encoder import get_encoder

            encoder = get_encoder("minilm")
    except Exception as exc:  # a missing package or model is a line in the report, not a crash
        return f"not measured: {type(exc).__name__}: {exc}"
    default = torch.get_num_threads()
    results = []
    for threads in dict.fromkeys((default, 1)):
        torch.set_num_threads(threads)
        for q in queries[:5]:
            encoder.embed_batch([q])
        times = []
        for q in queries[:MINILM_QUERIES]:
            started = time.perf_counter()
            encoder.embed_batch([q])
            times.append(time.perf_counter() - started)
        results.append((threads, *percentiles_ms(times)))
    torch.set_num_threads(default)
    return results


# --- output ----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_index(figures: list[IndexFigures], clusters: Clusters, queries: int) -> None:
    print(f"\n1. index in-process: {len(clusters.centres):,} clusters, noise norm {clusters.spread}, {queries:,} queries, "
          f"recall@{K} vs exact Flat, latency = one query per search() call")
    for f in figures:
        print(f"   N={f.n:,}: mean cosine of the true 1st / {K}th neighbour {f.top1_cos:.3f} / {f.top10_cos:.3f}")
    print(f"{'':>54}{'default OpenMP threads':>27}{'1 OpenMP thread':>18}")
    print(f"{'N':>10}  {'index':<22}{'build s':>9}{'RSS +MB':>9}{'peak +MB':>10}{'recall@10':>11}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'queries':>9}{'p50 ms':>9}{'p99 ms':>9}{'recall, real q':>16}")
    for f in figures:
        for r in f.rows:
            print(f"{r.n:>10,}  {r.label:<22}{fmt(r.build_s):>9}{fmt(r.rss_delta_mb, '.0f'):>9}"
                  f"{fmt(r.peak_delta_mb, '.0f'):>10}{r.recall:>11.4f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.timed:>9}"
                  f"{r.p50_1t_ms:>9.2f}{r.p99_1t_ms:>9.2f}{r.recall_real:>16.4f}")
    if any(r.recall_real == r.recall_real for f in figures for r in f.rows):
        print("   recall, real q: the load's text queries embedded by the server's query encoder, searched in"
              "\n   the same synthetic vectors; they fall between the clusters, a harder case than real text")


def print_server(figures: list[ServerFigures], settings_line: str) -> None:
    print(f"\n2. HTTP API, briefcast serve --workers N on loopback, {settings_line}")
    print(f"{'N':>10}  {'index':<8}{'file MB':>8}{'db MB':>8}{'populate s':>11}")
    for s in figures:
        print(f"{s.n:>10,}  {s.index_kind:<8}{s.index_file_mb:>8.0f}{s.db_mb:>8.0f}{s.populate_s:>11.1f}")
    print("   RSS MB = the server's RSS when the row ended, anon = its anonymous part (the heap; the rest is"
          "\n   mapped files: SQLite's memory map, tantivy); round = --rounds; with --filters, 'empty' counts"
          "\n   answers without results where the filter matches passages (wrong), 'right-empty' the filter none passes")
    print(f"{'N':>10}  {'server':<40}{'round':>6} {'mode':<8}{'conc':>5}{'ok/sent':>11}{'req/s':>8}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'max ms':>9}{'CPU ms/req':>11}{'RSS MB':>8}{'anon':>7}{'wall s':>8}{'load':>6}  p99<={TARGET_P99_MS:.0f}ms"
          "  errors")
    for s in figures:
        for r in s.loads:
            verdict = "met" if r.p99_ms <= TARGET_P99_MS else "MISSED"
            errors = ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "-"
            errors += f"; {r.empty} empty" + (f", {r.expected_empty} right-empty" if r.expected_empty else "")
            if r.not_empty:
                errors += f", {r.not_empty} with results for a filter no passage passes"
            print(f"{r.n:>10,}  {r.server:<40}{r.round_:>6} {r.mode:<8}{r.concurrency:>5}{f'{r.ok}/{r.sent}':>11}"
                  f"{r.per_second:>8.1f}"
                  f"{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.max_ms:>9.1f}{r.server_cpu_ms:>11.2f}{r.rss_after_mb:>8.0f}{r.anon_after_mb:>7.0f}"
                  f"{r.wall_s:>8.1f}"
                  f"{r.load_avg:>6.1f}  {verdict:<12}{errors}")
    print("\n3. server memory (/proc/<pid>/status summed over the supervisor and its workers; pages of the"
          "\n   memory-mapped keyword index count once per process that touched them); idle = before the first search")
    print(f"{'N':>10}  {'server':<40}{'RSS idle MB':>12}{'RSS warm MB':>12}{'RSS end MB':>11}{'VmHWM MB':>10}{'warm-up s':>10}")
    for s in figures:
        for label, (idle, warm, end, hwm, warm_s) in s.memory.items():
            print(f"{s.n:>10,}  {label:<40}{idle:>12.0f}{warm:>12.0f}{end:>11.0f}{hwm:>10.0f}{warm_s:>10.1f}")


def print_keywords(figures: list[KeywordFigures]) -> None:
    print("\n2a. keyword ranking in-process, the same passages and queries: SQLite FTS5 bm25 (the baseline,"
          "\n    the engine before this one) vs tantivy (what search uses); top-depth ids, one query at a time")
    print(f"{'N':>10}  {'queries':>8}{'depth':>6}{'FTS5 p50':>10}{'p99 ms':>8}{'tantivy p50':>13}{'p99 ms':>8}"
          f"{'p50 ratio':>10}{'p99 ratio':>10}{'top-10 agree':>13}{'up to ties':>11}")
    for f in figures:
        print(f"{f.n:>10,}  {f.queries:>8}{f.depth:>6}{f.fts5_p50_ms:>10.2f}{f.fts5_p99_ms:>8.2f}{f.tantivy_p50_ms:>13.2f}"
              f"{f.tantivy_p99_ms:>8.2f}{f.fts5_p50_ms / f.tantivy_p50_ms:>9.1f}x{f.fts5_p99_ms / f.tantivy_p99_ms:>9.1f}x"
              f"{f.top10_agreement:>13.3f}{f.top10_tie_agreement:>11.3f}")
    print(f"{'N':>10}  {'rows insert s':>14}{'tantivy build s':>16}{'FTS5 build s':>13}{'tantivy MB':>11}{'FTS5 MB':>9}")
    for f in figures:
        print(f"{f.n:>10,}  {f.build.rows_s:>14.1f}{f.build.tantivy_s:>16.1f}{f.build.fts5_s:>13.1f}"
              f"{f.tantivy_mb:>11.0f}{f.fts5_mb:>9.0f}")


def print_stages(figures: list[StageFigures]) -> None:
    print("\n4. where one request's time goes: in-process, sequential, the same database and index; wall clock"
          "\n   (inflated by other load on the machine) and CPU (thread CPU per stage, process CPU per request)")
    print(f"{'N':>10}  {'mode':<8}{'stage':<40}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms':>9}")
    for f in figures:
        print(f"{f.n:>10,}  {f.mode:<8}(load average {f.load[0]:.1f} before, {f.load[1]:.1f} after; {f.requests} requests)")
        for name, (mean, p50, p99, cpu) in f.stages.items():
            print(f"{f.n:>10,}  {f.mode:<8}{name:<40}{mean:>9.2f}{p50:>9.2f}{p99:>9.2f}{cpu:>9.2f}")


def load_test_verdicts(server: list[ServerFigures]) -> bool:
    """Per server: errors and wrong answers over every row, and the RSS from the end of round 1
    (caches filled) to the end of the last round; True when no request failed or answered wrong."""
    clean = True
    print("\nload test (every row of each server; RSS growth = end of the last round minus end of round 1):")
    for s in server:
        by_label: dict[str, list[LoadRow]] = defaultdict(list)
        for r in s.loads:
            by_label[r.server].append(r)
        for label, rows in by_label.items():
            failed = sum(sum(r.errors.values()) for r in rows)
            wrong = sum(r.empty + r.not_empty for r in rows)
            ends = {r.round_: r.rss_after_mb for r in rows}  # the last row of each round
            anon = {r.round_: r.anon_after_mb for r in rows}
            growth = ends[max(ends)] - ends[min(ends)] if len(ends) > 1 else float("nan")
            anon_growth = anon[max(anon)] - anon[min(anon)] if len(anon) > 1 else float("nan")
            clean &= failed == 0 and wrong == 0
            print(f"   N={s.n:,} {label}: {sum(r.ok for r in rows)}/{sum(r.sent for r in rows)} answered, {failed} failed, "
                  f"{wrong} wrong (empty where matches exist, or results where none can); RSS per round "
                  f"{', '.join(f'{v:.0f}' for v in ends.values())} MB, growth after round 1 {growth:+.0f} MB "
                  f"(anonymous {anon_growth:+.0f} MB)")
    return clean


def print_verdicts(index: list[IndexFigures], server: list[ServerFigures], nprobe: int) -> None:
    largest = max([f.n for f in index] + [s.n for s in server])
    print(f"\ntargets at N={largest:,} (p99 <= {TARGET_P99_MS:.0f} ms, recall@10 >= {TARGET_RECALL}):")
    for f in index:
        if f.n == largest:
            for r in f.rows:
                if r.label.endswith(f"nprobe {nprobe}") or r.label.startswith("Flat"):
                    verdict = "met" if r.recall >= TARGET_RECALL else "MISSED"
                    print(f"   recall@10 {r.label}: {r.recall:.4f} {verdict}; in-process p99 {r.p99_ms:.2f} ms "
                          f"({r.p99_1t_ms:.2f} ms at 1 thread)")
    for s in server:
        if s.n == largest:
            for r in s.loads:
                verdict = "met" if r.p99_ms <= TARGET_P99_MS else "MISSED"
                print(f"   HTTP p99 {r.mode} at concurrency {r.concurrency} ({r.server}): {r.p99_ms:.1f} ms {verdict}")


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.split("\n\n")[0])
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[100_000, 1_000_000], help="comma-separated N")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and in-process latency")
    parser.add_argument("--encoder", choices=("fake", "minilm"), default="fake", help="the server's query encoder")
    parser.add_argument("--requests", type=int, default=1000, help="HTTP requests per load run")
    parser.add_argument("--concurrency", type=ints, default=[4, 16], help="comma-separated connection counts")
    parser.add_argument("--centres", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm relative to the unit centres")
    parser.add_argument("--stage-queries", type=int, default=200, help="sequential requests per mode in part 4")
    parser.add_argument("--server-index", choices=("auto", "flat", "ivf"), default="auto",
                        help="which of the two indexes the server gets")
    parser.add_argument("--no-http", action="store_true", help="part 1 only")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the load runs: a server whose RSS keeps growing round after round leaks")
    parser.add_argument("--filters", action="store_true",
                        help="each load request carries one of a rotation of filters (wide, narrow, empty)")
    parser.add_argument("--workers", type=ints, default=[1, 2], help="comma-separated uvicorn worker counts")
    parser.add_argument("--query-baselines", type=lambda text: [x for x in text.split(",") if x], default=[],
                        help="comma-separated, of fake,torch: also load one-worker servers whose queries go through "
                             "the fake encoder (what the real one costs) or torch MiniLM, same index, same run")
    parser.add_argument("--no-minilm", dest="minilm", action="store_false", help="skip part 5 (real encoder latency)")
    parser.add_argument("--keyword-queries", type=int, default=300, help="queries for FTS5 vs tantivy in-process")
    parser.add_argument("--workdir", type=Path, default=None, help="keep databases and indexes here (default: a temp dir)")
    parser.add_argument("--nprobe", type=int, default=None, help="the server's IVF nprobe (default: the setting's default)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --workdir: serve the world an earlier run built there for N (same --encoder and "
                             "--server-index) instead of building it again; parts 1 and 2a are then skipped")
    args = parser.parse_args(argv)
    if args.reuse and args.workdir is None:
        parser.error("--reuse needs --workdir")
    unknown = set(args.query_baselines) - {"fake", "torch"}
    if unknown or (args.query_baselines and args.encoder != "minilm"):
        parser.error(f"--query-baselines takes fake and torch, with --encoder minilm (not {sorted(unknown)})")
    return args


def bench_settings(args: argparse.Namespace, data_dir: Path) -> Settings:
    defaults = Settings.model_fields
    return Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'briefcast.db'}", encoder=args.encoder,
                    nprobe=args.nprobe or defaults["nprobe"].default, index_kind="auto", encoder_threads=None,
                    max_k=defaults["max_k"].default)


@dataclass
class KeywordFigures:
    """tantivy (what search uses) against the FTS5 baseline, in-process, same texts and queries."""

    n: int
    queries: int
    depth: int
    fts5_p50_ms: float
    fts5_p99_ms: float
    tantivy_p50_ms: float
    tantivy_p99_ms: float
    top10_agreement: float  # mean |FTS5 top 10 ∩ tantivy top 10| / 10 (tantivy stems and uses FTS5's idf)
    top10_tie_agreement: float  # share of tantivy's top 10 that FTS5 scores at least as high as its own 10th
    build: BuildTimes
    tantivy_mb: float
    fts5_mb: float


def compare_keyword_engines(engine: Engine, store: IndexStore, queries: list[str], count: int, n: int,
                            build: BuildTimes) -> KeywordFigures:
    from sqlalchemy import text

    searcher = store.load_keywords()
    depth = max(100, 10 * K)  # what search() asks of each ranking for k=10
    fts_times, tantivy_times, agreement, tie_agreement = [], [], [], []
    statement, scores = text(FTS5_QUERY), text(FTS5_SCORES)
    with engine.connect() as conn:
        for q in queries[:count]:
            terms = keyword_terms(q)
            started = time.perf_counter()
            fts = list(conn.scalars(statement, {"q": " OR ".join(f'"{t}"' for t in terms), "n": depth}))
            fts_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            ours = searcher.search(terms, depth)
            tantivy_times.append(time.perf_counter() - started)
            agreement.append(len(set(fts[:K]) & set(ours[:K])) / K if fts else 1.0)
            if fts and ours:  # many passages tie on synthetic text: which of them come first is arbitrary
                ranked = dict(conn.execute(scores, {"q": " OR ".join(f'"{t}"' for t in terms),
                                                    "ids": json.dumps(fts[:K] + ours[:K])}).all())
                tenth = ranked[fts[min(K, len(fts)) - 1]]
                tie_agreement.append(sum(ranked.get(i, 0.0) <= tenth + 1e-9 for i in ours[:K]) / len(ours[:K]))
        fts_pages = conn.exec_driver_sql("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'passages_fts%'").scalar() \
            if _has_dbstat(conn) else None
    tantivy_mb = sum(f.stat().st_size for f in searcher.path.iterdir() if f.is_file()) / 2**20
    return KeywordFigures(n, len(fts_times), depth, *percentiles_ms(fts_times), *percentiles_ms(tantivy_times),
                          float(np.mean(agreement)), float(np.mean(tie_agreement)) if tie_agreement else float("nan"),
                          build, tantivy_mb,
                          (fts_pages or float("nan")) / 2**20)


def _has_dbstat(conn) -> bool:
    try:
        conn.exec_driver_sql("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except Exception:  # SQLite built without the dbstat table: the size is left out
        return False


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (uvicorn --workers N: a supervisor and N worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                todo.extend(int(c) for c in handle.read().split())
        except OSError:
            pass
    return found


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of pid and its descendants so far (/proc/<pid>/stat)."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def tree_mb(pid: int, field: str = "VmRSS") -> float:
    return sum(proc_status_kb(p).get(field, 0) for p in process_tree(pid)) / 1024


# Servers to compare on the same index in the same run: (command, extra environment); None = briefcast serve.
VARIANTS: dict[str, tuple[list[str] | None, dict[str, str]]] = {
    "default": (None, {}),  # the query encoder search builds (make_query_encoder)
    "fake": ([sys.executable, "-m", "benchmarks.fake_query_server"], {}),  # ~free queries: the baseline
    "torch": (None, {"BRIEFCAST_QUERY_ENCODER": "encoder"}),  # the passage encoder, torch MiniLM
}


def server_variants(args) -> list[tuple[int, str]]:
    """(workers, variant) in run order: each worker count with the default query encoder, the
    baselines (--query-baselines) with one worker right after the default one-worker server."""
    runs = []
    for workers in args.workers:
        runs.append((workers, "default"))
        if workers == 1:
            runs.extend((1, variant) for variant in args.query_baselines)
    return runs


def query_encoder_name(settings: Settings) -> str:
    """What make_query_encoder gives the server: the int8 export for MiniLM when one is found."""
    from embed.runtime import onnx_query_model

    if settings.encoder == "minilm" and settings.query_encoder == "auto" and onnx_query_model(settings):
        return "onnx-int8"
    return settings.encoder


WORLD_FILE = "bench-world.json"  # written once a world is complete: what --reuse needs of it


def reusable_world(args, data_dir: Path) -> dict | None:
    """The world an earlier run left in data_dir (--workdir with --reuse), if built the same way."""
    path = data_dir / WORLD_FILE
    if not (args.reuse and path.is_file()):
        return None
    world = json.loads(path.read_text())
    same = world.get("encoder") == args.encoder and world.get("server_index") == args.server_index
    return world if same else None


def build_world(args, n: int, figures: IndexFigures, corpus: Corpus, queries: list[str], model_id: str,
                data_dir: Path, log: Callable[[str], None]) -> tuple[dict, KeywordFigures]:
    """The database, the index version and an API key in data_dir; part 2a on them."""
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = bench_settings(args, data_dir)
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = IndexStore(settings.index_dir)
    log(f"N={n:,}: inserting {n:,} passages, indexing their texts with tantivy, then FTS5")
    with store.writer(model_id, DIM) as live:  # one version: the vectors built above + the keyword half
        build = populate(engine, n, corpus, model_id, live.keywords)
        live.vectors = figures.kept
    key = create_api_key(engine)
    log(f"N={n:,}: keyword engines in-process (FTS5 baseline vs tantivy)")
    keywords = compare_keyword_engines(engine, store, queries, args.keyword_queries, n, build)
    engine.dispose()
    world = {"key": key, "kind": figures.kept.kind, "populate_s": build.rows_s, "encoder": args.encoder,
             "server_index": args.server_index}
    figures.kept = None  # the server loads its own copy: free ours
    live = None
    gc.collect()
    (data_dir / WORLD_FILE).write_text(json.dumps(world))
    return world, keywords


def run_http(args, n: int, figures: IndexFigures | None, corpus: Corpus, queries: list[str], model_id: str,
             root: Path, log: Callable[[str], None]) -> tuple[ServerFigures, list[StageFigures], KeywordFigures | None]:
    data_dir = root / f"n{n}"
    world, keywords = reusable_world(args, data_dir), None
    if world is None:
        world, keywords = build_world(args, n, figures, corpus, queries, model_id, data_dir, log)
    settings = bench_settings(args, data_dir)
    key, kind = world["key"], world["kind"]
    meta = IndexStore(settings.index_dir).meta()
    index_mb = (settings.index_dir / meta.file).stat().st_size / 2**20
    db_mb = sum(p.stat().st_size for p in data_dir.glob("briefcast.db*")) / 2**20
    loads, memory = [], {}
    for workers, variant in server_variants(args):
        label = f"workers={workers}, queries {query_encoder_name(settings) if variant == 'default' else variant}"
        command, env = VARIANTS[variant]
        log(f"N={n:,}: starting briefcast serve ({label}), load avg {load_avg()}")
        with running_server(settings, data_dir / f"server-{workers}-{variant}.log", env, workers,
                            command) as (base, pid):
            idle = tree_mb(pid)
            warm_s = warm_up(base, key, queries, workers)
            warm = tree_mb(pid)
            for number in range(1, args.rounds + 1):
                for mode in MODES:
                    for concurrency in args.concurrency:
                        log(f"N={n:,}: load {mode} x{concurrency} ({label}, round {number}), load avg {load_avg()}")
                        cpu_before = tree_cpu_s(pid)
                        mix = filter_mix(n) if args.filters else None
                        row = asyncio.run(run_load(base, key, queries, mode, concurrency, args.requests, n,
                                                   label + (", filters" if mix else ""), mix))
                        row.server_cpu_ms = (tree_cpu_s(pid) - cpu_before) * 1000 / max(1, row.ok)
                        row.rss_after_mb, row.anon_after_mb = tree_mb(pid), tree_mb(pid, "RssAnon")
                        row.round_ = number
                        loads.append(row)
            memory[label] = (idle, warm, tree_mb(pid), tree_mb(pid, "VmHWM"), warm_s)
    log(f"N={n:,}: stage breakdown in-process")
    stages = measure_stages(settings, key, queries, args.stage_queries, n)
    gc.collect()
    return ServerFigures(n, kind, index_mb, world["populate_s"], db_mb, memory, loads), stages, keywords


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", file=sys.stderr, flush=True)

    print(machine_line())
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads; sizes {args.sizes}; "
          f"server encoder {args.encoder}")
    clusters = Clusters.make(args.centres, args.spread)
    query_vectors = clusters.draw(args.queries, seed=3)
    corpus = Corpus.make()
    text_queries = corpus.queries(max(args.requests, args.stage_queries, 100))
    encoder = None  # torch MiniLM, loaded by part 5 only: the server and part 4 build their own query encoder
    if args.encoder == "fake":
        from embed.encoder import FakeEncoder

        model_id = FakeEncoder().model_id
    else:
        from embed.encoder import MINILM_MODEL_ID

        model_id = MINILM_MODEL_ID
    real_queries = real_query_vectors(args, text_queries[:args.queries], log)
    nprobe = args.nprobe or Settings.model_fields["nprobe"].default

    index_figures, server_figures, stage_figures, keyword_figures = [], [], [], []
    root = args.workdir or Path(tempfile.mkdtemp(prefix="briefcast-search-bench-"))
    try:
        for n in sorted(args.sizes):
            figures = None
            if args.no_http or reusable_world(args, root / f"n{n}") is None:
                server_kind = choose_kind(n, args.server_index)
                figures = measure_index(n, clusters, query_vectors, model_id, server_kind, nprobe,
                                        faiss.omp_get_max_threads(), log, real_queries)
                index_figures.append(figures)
            else:
                log(f"N={n:,}: reusing the world in {root / f'n{n}'}: no part 1 (index) nor 2a (keywords)")
            if args.no_http:
                figures.kept = None
                continue
            server, stages, keywords = run_http(args, n, figures, corpus, text_queries, model_id, root, log)
            server_figures.append(server)
            stage_figures.extend(stages)
            if keywords is not None:
                keyword_figures.append(keywords)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    log("MiniLM query embedding")
    minilm = minilm_latency(encoder, text_queries) if args.minilm else "not measured in this run (--no-minilm)"

    if index_figures:
        print_index(index_figures, clusters, args.queries)
    if keyword_figures:
        print_keywords(keyword_figures)
    if server_figures:
        print_server(server_figures, f"encoder {args.encoder}, nprobe {nprobe}, k={K}, {args.requests} requests "
                                     f"per run (at most {LOAD_DEADLINE_S:.0f} s), httpx async client on this machine")
        print_stages(stage_figures)
    if isinstance(minilm, str):
        print(f"\n5. MiniLM query embedding: {minilm}")
    else:
        print(f"\n5. MiniLM (all-MiniLM-L6-v2, torch CPU) query embedding in-process, one short query per call, "
              f"{MINILM_QUERIES} queries (add to the fake-encoder HTTP figures):")
        for threads, p50, p99 in minilm:
            print(f"   torch {threads} thread(s): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print_verdicts(index_figures, server_figures, nprobe)
    clean = load_test_verdicts(server_figures) if server_figures else True
    print(f"\nwall {time.perf_counter() - started:.0f} s; load avg {load_avg()} at the end; "
          f"peak RSS of this process {hwm_mb():.0f} MB (since the last reset)")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
