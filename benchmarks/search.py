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
   text with a Zipf vocabulary; ids 1..N = the index ids), Core ``executemany`` in batches; the
   index ``kind="auto"`` would choose for N (``--server-index``), committed with
   ``IndexStore(settings.index_dir)``;
   an API key; ``briefcast serve`` as a child process on a free 127.0.0.1 port (BRIEFCAST_* env,
   ``--encoder``, fake by default). Then an httpx async load generator, bounded by request count
   and wall time, loopback only: ``--requests`` GET /search at each ``--concurrency``, for
   ``mode=vector`` and ``mode=hybrid``: latency p50/p99, requests/s, errors. Then the same with
   the server started under OMP_NUM_THREADS=1 (a what-if; ``--no-omp-what-if`` skips it).
3. Server memory: VmHWM (peak RSS) and VmRSS of the server process from /proc/<pid>/status.
4. Where a request's time goes: the same database and index in-process, requests sent one at a
   time through the ASGI app (``TestClient``), with timers wrapped around the encoder, FAISS
   ``search``, the keyword SQL, the grouping SQL and the hydration SQL; "outside search()" is
   auth (one write transaction per request), FastAPI validation, the response model and JSON.
5. Real MiniLM (all-MiniLM-L6-v2, torch, CPU) query-embedding latency in-process over 200 short
   queries, one per call, at torch's default threads and at one: add it to the fake-encoder HTTP
   figures for a real deployment.

Targets: p99 <= 50 ms and recall@10 >= 0.95 at 1M on 2 cores. The load generator runs on the same
machine and takes CPU from the server; the machine may be shared (the load average is printed).

Run from the repository root:

    .venv/bin/python -m benchmarks.search [--sizes 100000,1000000] [--queries 1000]
        [--encoder fake|minilm] [--requests 1000] [--concurrency 4,16] [--server-index auto|flat|ivf]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
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


def recall_at_k(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / K for t, f in zip(truth.tolist(), found.tolist(), strict=True)]))


def latency_pair(index: VectorIndex, queries: np.ndarray, limit: int,
                 threads: int) -> tuple[float, float, int, float, float]:
    """p50, p99 and count at `threads` OpenMP threads, then p50, p99 at one thread."""
    default = single_query_latencies(index, queries, limit, threads)
    single = single_query_latencies(index, queries, limit, 1)
    return *percentiles_ms(default), len(default), *percentiles_ms(single)


def measure_index(n: int, clusters: Clusters, queries: np.ndarray, model_id: str, server_kind: str,
                  server_nprobe: int, threads: int, log: Callable[[str], None]) -> IndexFigures:
    vectors = clusters.draw(n, seed=1000 + n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rows = []

    log(f"N={n:,}: building Flat")
    flat, seconds, delta, peak = timed_build(lambda: VectorIndex.build(model_id, ids, vectors, kind="flat"))
    scores, truth = flat.search(queries, K)
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

    def queries(self, count: int, seed: int = 11) -> list[str]:
        """2-4 content words each (Zipf over the non-function words), a function word in half of them."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(count):
            terms = [self.words[r] for r in self.ranks(rng, rng.integers(2, 5), lowest=len(_FUNCTION_WORDS))]
            if rng.random() < 0.5:
                terms.insert(1, _FUNCTION_WORDS[rng.integers(0, len(_FUNCTION_WORDS))])
            out.append(" ".join(terms))
        return out


def populate(engine: Engine, n: int, corpus: Corpus, model_id: str) -> float:
    """One source, n/5 items, n passages with ids 1..n (the FTS5 trigger indexes each); seconds."""
    rng = np.random.default_rng(5)
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
        rows = [{"id": pid, "item_id": (pid - 1) // PASSAGES_PER_ITEM + 1, "position": (pid - 1) % PASSAGES_PER_ITEM,
                 "text": text, "content_hash": f"{pid:064x}", "embedded_model": model_id}
                for pid, text in zip(range(start + 1, stop + 1), texts, strict=True)]
        with engine.begin() as conn:
            conn.execute(insert(Passage), rows)
    return time.perf_counter() - started


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
def running_server(settings: Settings, log_path: Path, extra_env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """`briefcast serve` on a free loopback port; yields (base URL, pid) once /health answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")} | extra_env | {
        "BRIEFCAST_DATA_DIR": str(settings.data_dir), "BRIEFCAST_DATABASE_URL": settings.db_url,
        "BRIEFCAST_ENCODER": settings.encoder, "BRIEFCAST_NPROBE": str(settings.nprobe),
        "BRIEFCAST_INDEX_KIND": settings.index_kind, "BRIEFCAST_API_HOST": LOOPBACK,
        "BRIEFCAST_CONFIG": str(settings.data_dir / "no-such.toml")}
    command = [str(Path(sys.executable).parent / "briefcast"), "serve", "--host", LOOPBACK, "--port", str(port)]
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
    server: str  # the server's environment beyond BRIEFCAST_*: "default" or e.g. OMP_NUM_THREADS=1
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
    empty: int = 0  # 200 answers with no results

    @property
    def per_second(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


async def run_load(base: str, key: str, queries: list[str], mode: str, concurrency: int, total: int, n: int,
                   server: str) -> LoadRow:
    """`total` GET /search over `concurrency` connections, at most LOAD_DEADLINE_S seconds."""
    assert httpx.URL(base).host == LOOPBACK, "the load generator talks to loopback only"
    latencies: list[float] = []
    errors: Counter = Counter()
    empty = 0
    numbers = itertools.count()
    load = os.getloadavg()[0]
    stop_at = time.monotonic() + LOAD_DEADLINE_S
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal empty
            while time.monotonic() < stop_at and (number := next(numbers)) < total:
                params = {"q": queries[number % len(queries)], "k": K, "mode": mode}
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
                empty += response.json()["count"] == 0

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    p50, p99 = percentiles_ms(latencies)
    return LoadRow(n, server, load, mode, concurrency, len(latencies) + sum(errors.values()), len(latencies), wall,
                   p50, p99, max(latencies, default=0.0) * 1000, errors, empty)


def warm_up(base: str, key: str, queries: list[str]) -> float:
    """The first search loads FAISS and the index file: untimed requests in every mode; seconds."""
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=300) as client:
        for number, mode in enumerate(MODES * 10):
            response = client.get("/search", params={"q": queries[-1 - number], "k": K, "mode": mode})
            response.raise_for_status()
    return time.perf_counter() - started


@dataclass
class ServerFigures:
    n: int
    index_kind: str
    index_file_mb: float
    populate_s: float
    db_mb: float
    rss_idle_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    hwm_mb: float
    warm_up_s: float
    loads: list[LoadRow]


# --- part 4: where a request's time goes ---------------------------------------------------------


@contextmanager
def stage_timers() -> Iterator[list[dict[str, float]]]:
    """Wrap the stages search() goes through with timers; yields one dict of seconds per search().

    Module attributes are looked up at call time (api.app imports `search` inside the endpoint,
    search() calls its helpers by global name, the context calls runtime.make_encoder lazily), so
    the app built inside this block is timed without changing project code.
    """
    import embed.runtime as runtime
    import embed.search as search_module

    requests: list[dict[str, float]] = []

    def timed(name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if requests:
                    requests[-1][name] = requests[-1].get(name, 0.0) + time.perf_counter() - started
        return wrapper

    def timed_search(*args, **kwargs):
        requests.append({})
        return timed("search()", original_search)(*args, **kwargs)

    def timed_encoder(settings: Settings):
        encoder = original_make_encoder(settings)
        encoder.embed_batch = timed("query embedding", encoder.embed_batch)
        return encoder

    original_search, original_make_encoder = search_module.search, runtime.make_encoder
    patched = {(search_module, "vector_ranking"): "vector ranking",
               (search_module, "keyword_ranking"): "keyword SQL (FTS5 bm25)",
               (search_module, "_group_by_item"): "group-by-item SQL",
               (search_module, "_hydrate"): "hydrate SQL + objects",
               (VectorIndex, "search"): "FAISS search"}
    originals = {target: getattr(*target) for target in patched}
    try:
        for (owner, name), label in patched.items():
            setattr(owner, name, timed(label, originals[(owner, name)]))
        search_module.search, runtime.make_encoder = timed_search, timed_encoder
        yield requests
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
        search_module.search, runtime.make_encoder = original_search, original_make_encoder


@dataclass
class StageFigures:
    n: int
    mode: str
    requests: int
    stages: dict[str, tuple[float, float, float]]  # name -> mean, p50, p99 in ms


async def _sequential_requests(app, key: str, queries: list[str], mode: str) -> list[float]:
    """Seconds per GET /search sent one at a time straight into the ASGI app (no sockets)."""
    totals = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers={"X-API-Key": key}) as client:
        for q in queries:
            started = time.perf_counter()
            response = await client.get("/search", params={"q": q, "k": K, "mode": mode})
            totals.append(time.perf_counter() - started)
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
    with stage_timers() as per_search:
        app = create_app(settings)
        for mode in MODES:  # load the encoder and the index, untimed
            asyncio.run(_sequential_requests(app, key, queries[-5:], mode))
        for mode in MODES:
            per_search.clear()
            totals = asyncio.run(_sequential_requests(app, key, queries[:count], mode))
            stages: dict[str, list[float]] = defaultdict(list)
            for total, timings in zip(totals, per_search, strict=True):
                stages["whole request (in-process ASGI)"].append(total)
                for name, seconds in timings.items():
                    stages[name].append(seconds)
                if "vector ranking" in timings:
                    inner = timings.get("query embedding", 0.0) + timings.get("FAISS search", 0.0)
                    stages["  rest of vector ranking"].append(timings["vector ranking"] - inner)
                stages["outside search(): auth, FastAPI, JSON"].append(total - timings["search()"])
            figures.append(StageFigures(n, mode, len(totals), {name: summarise(v) for name, v in stages.items()}))
    auth = summarise(auth_seconds(settings, key, count))
    for figure in figures:
        figure.stages["  of which auth (verify_key + commit)"] = auth
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
          f"{'p50 ms':>9}{'p99 ms':>9}{'queries':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for f in figures:
        for r in f.rows:
            print(f"{r.n:>10,}  {r.label:<22}{fmt(r.build_s):>9}{fmt(r.rss_delta_mb, '.0f'):>9}"
                  f"{fmt(r.peak_delta_mb, '.0f'):>10}{r.recall:>11.4f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.timed:>9}"
                  f"{r.p50_1t_ms:>9.2f}{r.p99_1t_ms:>9.2f}")


def print_server(figures: list[ServerFigures], settings_line: str) -> None:
    print(f"\n2. HTTP API, briefcast serve (1 uvicorn worker) on loopback, {settings_line}")
    print(f"{'N':>10}  {'index':<8}{'file MB':>8}{'db MB':>8}{'populate s':>11}{'warm-up s':>10}")
    for s in figures:
        print(f"{s.n:>10,}  {s.index_kind:<8}{s.index_file_mb:>8.0f}{s.db_mb:>8.0f}{s.populate_s:>11.1f}{s.warm_up_s:>10.1f}")
    print(f"{'N':>10}  {'server env':<18}{'mode':<8}{'conc':>5}{'ok/sent':>11}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}{'wall s':>8}{'load':>6}  p99<={TARGET_P99_MS:.0f}ms  errors")
    for s in figures:
        for r in s.loads:
            verdict = "met" if r.p99_ms <= TARGET_P99_MS else "MISSED"
            errors = ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "-"
            if r.empty:
                errors += f"; {r.empty} empty answers"
            print(f"{r.n:>10,}  {r.server:<18}{r.mode:<8}{r.concurrency:>5}{f'{r.ok}/{r.sent}':>11}{r.per_second:>8.1f}"
                  f"{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.max_ms:>9.1f}{r.wall_s:>8.1f}{r.load_avg:>6.1f}  {verdict:<12}{errors}")
    print("\n3. server process memory (/proc/<pid>/status), default server; idle = before the first search")
    print(f"{'N':>10}  {'RSS idle MB':>12}{'RSS warm MB':>12}{'RSS end MB':>11}{'VmHWM MB':>10}")
    for s in figures:
        print(f"{s.n:>10,}  {s.rss_idle_mb:>12.0f}{s.rss_warm_mb:>12.0f}{s.rss_end_mb:>11.0f}{s.hwm_mb:>10.0f}")


def print_stages(figures: list[StageFigures]) -> None:
    print("\n4. where one request's time goes: in-process, sequential, the same database and index")
    print(f"{'N':>10}  {'mode':<8}{'stage':<40}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for f in figures:
        for name, (mean, p50, p99) in f.stages.items():
            print(f"{f.n:>10,}  {f.mode:<8}{name:<40}{mean:>9.2f}{p50:>9.2f}{p99:>9.2f}")


def print_verdicts(index: list[IndexFigures], server: list[ServerFigures], nprobe: int) -> None:
    largest = max(f.n for f in index)
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
    parser.add_argument("--no-omp-what-if", dest="omp_what_if", action="store_false",
                        help="skip the second server run with OMP_NUM_THREADS=1")
    parser.add_argument("--workdir", type=Path, default=None, help="keep databases and indexes here (default: a temp dir)")
    return parser.parse_args(argv)


def bench_settings(args: argparse.Namespace, data_dir: Path) -> Settings:
    defaults = Settings.model_fields
    return Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'briefcast.db'}", encoder=args.encoder,
                    nprobe=defaults["nprobe"].default, index_kind="auto", encoder_threads=None,
                    max_k=defaults["max_k"].default)


def run_http(args, n: int, figures: IndexFigures, corpus: Corpus, queries: list[str], model_id: str,
             root: Path, log: Callable[[str], None]) -> tuple[ServerFigures, list[StageFigures]]:
    data_dir = root / f"n{n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = bench_settings(args, data_dir)
    engine = make_engine(settings.db_url)
    migrate(engine)
    log(f"N={n:,}: inserting {n:,} passages")
    populate_s = populate(engine, n, corpus, model_id)
    key = create_api_key(engine)
    engine.dispose()
    meta = IndexStore(settings.index_dir).commit(figures.kept)
    kind = figures.kept.kind
    figures.kept = None  # the server loads its own copy: free ours
    gc.collect()
    index_mb = (settings.index_dir / meta.file).stat().st_size / 2**20
    db_mb = sum(p.stat().st_size for p in data_dir.glob("briefcast.db*")) / 2**20
    loads = []
    variants = {"default": {}} | ({"OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"}} if args.omp_what_if else {})
    for label, extra_env in variants.items():
        log(f"N={n:,}: starting briefcast serve ({label})")
        with running_server(settings, data_dir / f"server-{len(loads)}.log", extra_env) as (base, pid):
            idle = rss_mb(pid)
            warm_s = warm_up(base, key, queries)
            warm = rss_mb(pid)
            for mode in MODES:
                for concurrency in args.concurrency:
                    log(f"N={n:,}: load {mode} x{concurrency} ({label})")
                    loads.append(asyncio.run(run_load(base, key, queries, mode, concurrency, args.requests, n, label)))
            if label == "default":  # the memory figures are the default server's
                memory = idle, warm, rss_mb(pid), hwm_mb(pid), warm_s
    log(f"N={n:,}: stage breakdown in-process")
    stages = measure_stages(settings, key, queries, args.stage_queries, n)
    gc.collect()
    idle, warm, end, hwm, warm_s = memory
    return ServerFigures(n, kind, index_mb, populate_s, db_mb, idle, warm, end, hwm, warm_s, loads), stages


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
    encoder = None
    if args.encoder == "fake":
        from embed.encoder import FakeEncoder

        model_id = FakeEncoder().model_id
    else:
        from embed.encoder import get_encoder

        encoder = get_encoder("minilm")
        model_id = encoder.model_id
    nprobe = Settings.model_fields["nprobe"].default

    index_figures, server_figures, stage_figures = [], [], []
    root = args.workdir or Path(tempfile.mkdtemp(prefix="briefcast-search-bench-"))
    try:
        for n in sorted(args.sizes):
            server_kind = choose_kind(n, args.server_index)
            figures = measure_index(n, clusters, query_vectors, model_id, server_kind, nprobe,
                                    faiss.omp_get_max_threads(), log)
            index_figures.append(figures)
            if args.no_http:
                figures.kept = None
                continue
            server, stages = run_http(args, n, figures, corpus, text_queries, model_id, root, log)
            server_figures.append(server)
            stage_figures.extend(stages)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    log("MiniLM query embedding")
    minilm = minilm_latency(encoder, text_queries)

    print_index(index_figures, clusters, args.queries)
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
    print(f"\nwall {time.perf_counter() - started:.0f} s; load avg {load_avg()} at the end; "
          f"peak RSS of this process {hwm_mb():.0f} MB (since the last reset)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
