"""Replicas with the index in the database (BRIEFCAST_INDEX_SOURCE=database): start-up, sync lag,
search under load, and what an idle replica writes.

For each N in ``--sizes`` (default 100k and 1M, dim 384), a PostgreSQL world: one source, N/5
items, N passages (benchmarks/search.py's Zipf texts, so passages.text_search and its GIN index
are real) and N vectors in passage_vectors (benchmarks/search.py's clustered unit vectors, as
float32 bytes, model id all-MiniLM-L6-v2 so the real ONNX query encoder searches them), loaded
with COPY; past 200k vectors the shared IVF centroids are trained and stored by
``embed.mirror.ensure_quantizer`` (timed). ``--keep`` keeps the world in a database named
briefcast_replica_<N> and reuses it on the next run (a 1M world is built once); without it a
scratch database is dropped at the end. Files (the files-mode index, server logs) go to
``--workdir``.

1. Start-up (each in a fresh child process, faiss and the database driver already imported):
   seconds and RSS added (and the peak during it) by ``VectorMirror.load()``, by the first
   ``MirrorReader.snapshot()``, and by the files-mode baseline, ``faiss.read_index`` of the same
   vectors written to a local file (Flat at 100k; IVF over the same stored centroids at 1M).
   The mirror child also measures recall@10 of the mirror at the default nprobe against exact
   (every list probed) on synthetic queries drawn like the vectors and on the load's text
   queries through the ONNX encoder.
2. Sync lag: a child process holds a MirrorReader (sync_every 1 s, check_every 60 s) over the
   world; this process writes ``--rate`` vectors/s with ``write_vectors`` in transactions of
   ``--lag-batch`` for ``--seconds`` onto new passages. Lag = time the mirror applied a passage's
   vector - time its commit returned (one monotonic clock); the reader's CPU per second, and its
   PostgreSQL backends' (pg_stat_activity by application_name; /proc/<pid>/stat). The passages
   are deleted afterwards (their tombstones stay) and the tables vacuumed.
3. Search on a replica: ``briefcast serve`` (1 worker, index_source=database, the default query
   encoder: the int8 ONNX MiniLM export ``make install`` put in the venv), start-up until
   /health says the mirror holds N, then ``--requests`` GET /search per mode (hybrid, vector,
   keyword, hybrid again with the keyword term counts cached) at ``--concurrency``: p50/p99,
   server CPU per request, and from pg_stat_database (read 11 s later, once backends flushed
   their counters; nothing else uses the database) the ms PostgreSQL spent executing statements
   per request and the connections opened per request (the pool's overflow connections come and
   go, so their backends' CPU cannot be read from /proc); load average next to each row.
4. Writes when nothing changes, on the same server left idle: a child process runs
   ``embed_into_database`` every ``--embed-every`` s with nothing to do (the real ONNX MiniLM under
   the model id it would write), then for ``--seconds``: /proc/<pid>/io write_bytes of the server,
   that worker and their PostgreSQL backends; WAL growth (pg_current_wal_insert_lsn, the whole
   cluster, shared with whoever else uses it) and the part of it whose records touch this
   database (pg_waldump over a temporary replication slot that keeps the window's WAL); the
   temporary files this database's queries spilled (pg_stat_database); the size change of the
   database's directory and of the server's data directory. Target 0. A backend's write_bytes
   also counts other databases' dirty pages it evicted from the shared buffers to make room.

The machine is shared (2 cores): the load average is printed beside every latency.

Run from the repository root (PostgreSQL at BRIEFCAST_TEST_PG or the tests' default):

    .venv/bin/python -m benchmarks.replica [--sizes 100000,1000000] [--keep] [--workdir DIR]
        [--parts 1,2,3,4] [--seconds 60] [--rate 50] [--lag-batch 5] [--requests 600] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, delete, insert, select, text

from benchmarks.search import (
    PASSAGES_PER_ITEM,
    Clusters,
    Corpus,
    create_api_key,
    load_avg,
    machine_line,
    percentiles_ms,
    process_tree,
    run_load,
    running_server,
    tree_cpu_s,
    warm_up,
)
from embed.encoder import MINILM_MODEL_ID
from embed.index import FLAT_LIMIT
from store.db import make_engine, migrate, scratch_postgres_database, session_factory
from store.models import Source
from store.settings import Settings

ADMIN_URL = os.environ.get("BRIEFCAST_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MODEL_ID, DIM, K = MINILM_MODEL_ID, 384, 10
KEEP_PREFIX = "briefcast_replica"
BATCH = 50_000
VECTOR_SEED, QUERY_SEED, NEW_SEED = 2, 3, 4
RECALL_QUERIES = 200
SERVE_APP, EMBED_APP, LAG_APP = "bc-replica-serve", "bc-replica-embed", "bc-replica-lag"
PG_DATA = Path(os.environ.get("BRIEFCAST_BENCH_PGDATA", "/var/lib/postgresql/15/main"))
PG_WALDUMP = shutil.which("pg_waldump") or "/usr/lib/postgresql/15/bin/pg_waldump"
MODES = ("hybrid", "vector", "keyword", "hybrid")  # hybrid again: keyword term counts now cached
TARGET_P99_MS = 50.0
IDLE_S = 10.0  # part 2: the reader syncing with nothing new, before the writes


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load_avg()})", file=sys.stderr, flush=True)


def with_app(url: str, name: str) -> str:
    """The URL with a libpq application_name, so the benchmark can find its backends."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


# --- processes: CPU, writes, PostgreSQL backends --------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_write_bytes(pid: int) -> int:
    """write_bytes of /proc/<pid>/io: bytes this process caused to be sent to storage."""
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_write_bytes(pid: int) -> int:
    return sum(proc_write_bytes(p) for p in process_tree(pid))


def backends(admin, app: str) -> list[int]:
    with admin.connect() as conn:
        return [int(p) for p in conn.scalars(text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
                                             {"a": app})]


def backend_cpu(admin, app: str) -> dict[int, float]:
    return {pid: proc_cpu_s(pid) for pid in backends(admin, app)}


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the backends in `after` used since `before` (a new backend: all of its CPU)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --- the world --------------------------------------------------------------------------------------


@dataclass
class World:
    n: int
    url: str
    built: dict  # build seconds by step, or {} when reused
    files_dir: Path


def keep_name(n: int) -> str:
    return f"{KEEP_PREFIX}_{n}"


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@contextmanager
def world_database(n: int, keep: bool) -> Iterator[tuple[str, dict | None]]:
    """(URL, what a complete earlier build recorded or None). --keep: briefcast_replica_<N>,
    reused when its comment says it is complete, else made again; otherwise a scratch database."""
    if not keep:
        with scratch_postgres_database(ADMIN_URL, f"{KEEP_PREFIX}_tmp") as url:
            try:
                yield url, None
            except BaseException:  # scratch_postgres_database drops it only on a clean exit
                drop_database(url.rsplit("/", 1)[1])
                raise
        return
    name = keep_name(n)
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            comment = conn.scalar(text("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                       "WHERE datname = :n"), {"n": name})
            recorded = json.loads(comment) if comment else None
            if recorded is None or not recorded.get("complete"):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                recorded = None
    finally:
        admin.dispose()
    yield database_url(name), recorded


def _admin_execute(statement: str) -> None:
    """One statement on the server's admin database, outside a transaction (CREATE/DROP DATABASE)."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


def drop_database(name: str) -> None:
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mark_complete(url: str, built: dict) -> None:
    name = url.rsplit("/", 1)[1]
    _admin_execute(f"COMMENT ON DATABASE \"{name}\" IS '{json.dumps(built | {'complete': True})}'")


def draw_vectors(n: int) -> np.ndarray:
    return Clusters.make(2000, 1.0).draw(n, seed=VECTOR_SEED)


def build_world(url: str, n: int) -> dict:
    """Rows by COPY (the GIN index dropped meanwhile and made after), the quantizer past FLAT_LIMIT,
    VACUUM ANALYZE (hint bits set and statistics taken, as autovacuum would, before part 4 watches writes)."""
    built: dict[str, float] = {}
    engine = make_engine(url)
    started = time.perf_counter()
    migrate(engine)
    built["migrate_s"] = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_passages_text_search"))
        conn.execute(insert(Source), [{"id": 1, "url": "http://127.0.0.1/bench.xml", "title": "bench", "topic": "news"}])
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        copy_items_and_passages(raw, n)
        built["passages_copy_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with raw.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '1GB'")
            cur.execute("CREATE INDEX ix_passages_text_search ON passages USING gin (text_search)")
        raw.commit()
        built["gin_s"] = time.perf_counter() - started
        started = time.perf_counter()
        vectors = draw_vectors(n)
        built["draw_s"] = time.perf_counter() - started
        started = time.perf_counter()
        copy_vectors(raw, vectors)
        built["vectors_copy_s"] = time.perf_counter() - started
        with raw.cursor() as cur:
            for table in ("sources", "items", "passages"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
    finally:
        raw.close()
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE, FREEZE)"))
    built["vacuum_s"] = time.perf_counter() - started
    if n > FLAT_LIMIT:
        from embed.mirror import ensure_quantizer

        started = time.perf_counter()
        ensure_quantizer(session_factory(engine), MODEL_ID)
        built["quantizer_s"] = time.perf_counter() - started
    engine.dispose()
    return built


def copy_items_and_passages(raw, n: int) -> None:
    corpus, rng = Corpus.make(), np.random.default_rng(5)
    epoch, now = datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC).isoformat()
    items = -(-n // PASSAGES_PER_ITEM)
    with raw.cursor() as cur:
        with cur.copy("COPY items (id, source_id, stable_key, content_hash, entry_hash, passages_hash, kind, title, "
                      "language, published, text, truncated, text_source, created_at, updated_at) FROM STDIN") as copy:
            for start in range(0, items, BATCH):
                copy.write("".join(
                    f"{i}\t1\t{i:064x}\t{i:064x}\t{i:064x}\t{i:064x}\tarticle\tItem {i}\ten\t"
                    f"{(epoch + timedelta(minutes=i)).isoformat()}\t\tf\tfeed\t{now}\t{now}\n"
                    for i in range(start + 1, min(items, start + BATCH) + 1)))
        raw.commit()
        with cur.copy("COPY passages (id, item_id, position, text, content_hash, embedded_model) FROM STDIN") as copy:
            for start in range(0, n, BATCH):
                stop = min(n, start + BATCH)
                texts = corpus.passages(rng, stop - start)
                buffer = io.StringIO()
                for pid, body in zip(range(start + 1, stop + 1), texts, strict=True):
                    buffer.write(f"{pid}\t{(pid - 1) // PASSAGES_PER_ITEM + 1}\t{(pid - 1) % PASSAGES_PER_ITEM}\t"
                                 f"{body}\t{pid:064x}\t{MODEL_ID}\n")
                copy.write(buffer.getvalue())
        raw.commit()


def copy_vectors(raw, vectors: np.ndarray) -> None:
    """passage_vectors in id order (seq follows id), binary COPY of float32 bytes."""
    with raw.cursor() as cur, cur.copy("COPY passage_vectors (passage_id, model_id, dim, data) "
                                       "FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "text", "int4", "bytea"])
        for pid, vector in enumerate(vectors, start=1):
            copy.write_row((pid, MODEL_ID, DIM, vector.tobytes()))
    raw.commit()


def files_baseline(url: str, n: int, files_dir: Path) -> tuple[Path, float]:
    """The same vectors as a files-mode index file (Flat, or IVF over the stored centroids past
    FLAT_LIMIT, as the mirror builds it); (path, seconds to make it) - 0 when already there."""
    import faiss

    from embed.index import VectorIndex
    from embed.mirror import ivf_over
    from store.vectors import get_quantizer

    path = files_dir / f"passages-{n}.faiss"
    if path.is_file():
        return path, 0.0
    started = time.perf_counter()
    vectors = draw_vectors(n)
    engine = make_engine(url)
    with engine.connect() as conn:
        centroids = get_quantizer(conn, MODEL_ID)
    engine.dispose()
    index = ivf_over(centroids, 16) if centroids is not None else VectorIndex.empty(MODEL_ID, DIM)
    index.add(np.arange(1, n + 1, dtype=np.int64), vectors)
    files_dir.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index.index, str(path) + ".tmp")
    os.replace(str(path) + ".tmp", path)
    return path, time.perf_counter() - started


# --- child processes (``python -m benchmarks.replica probe ...``) ---------------------------------------


def _status_mb(field_name: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _timed_rss(work: Callable[[], object]) -> dict:
    import gc

    gc.collect()
    _reset_peak()
    before = _status_mb("VmRSS")
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    return {"s": seconds, "rss_mb": _status_mb("VmRSS") - before, "peak_mb": _status_mb("VmHWM") - before,
            "result": result}


def probe_files(path: str) -> dict:
    import faiss

    found = _timed_rss(lambda: faiss.read_index(path))
    index = found.pop("result")
    return found | {"count": int(index.ntotal)}


def _mirror(url: str, app: str):
    import faiss  # noqa: F401  (imported before the baseline, as the files probe does)

    from embed.mirror import MirrorReader, VectorMirror

    sessions = session_factory(make_engine(with_app(url, app)))
    with sessions() as session:
        session.execute(text("SELECT 1"))  # the pool's first connection, outside the timing
    return sessions, VectorMirror(sessions, MODEL_ID, DIM, nprobe=Settings.model_fields["nprobe"].default,
                                  threads=1), MirrorReader


def probe_mirror(url: str, queries_path: str | None) -> dict:
    _, mirror, _ = _mirror(url, LAG_APP + "-load")
    found = _timed_rss(mirror.load)
    found.pop("result")
    found |= {"count": mirror.count, "kind": mirror.kind}
    if queries_path:
        found["recall"] = mirror_recall(mirror, np.load(queries_path))
    return found


def mirror_recall(mirror, sets: np.lib.npyio.NpzFile) -> dict:
    """recall@10 at the mirror's nprobe (and others) against every list probed (exact)."""
    index = mirror._index  # noqa: SLF001  (the benchmark reads the mirror's own FAISS index)
    if index.kind != "ivf":
        return {"kind": index.kind}
    out = {"kind": "ivf", "nlist": int(index.index.nlist), "nprobe": int(index.index.nprobe)}
    default = index.index.nprobe
    for name in sets.files:
        queries = sets[name]
        index.index.nprobe = index.index.nlist
        _, exact = index.search(queries, K)
        for nprobe in sorted({default, 32, 64}):
            index.index.nprobe = nprobe
            started = time.perf_counter()
            _, found = index.search(queries, K)
            per_query = (time.perf_counter() - started) / len(queries) * 1000
            hits = [len(set(a) & set(b)) / K for a, b in zip(exact.tolist(), found.tolist(), strict=True)]
            out[f"{name}@{nprobe}"] = (float(np.mean(hits)), per_query)
        index.index.nprobe = default
    return out


def probe_reader(url: str) -> dict:
    _, mirror, reader_class = _mirror(url, LAG_APP + "-load")
    reader = reader_class(mirror, lambda: None, sync_every=1.0)
    found = _timed_rss(reader.snapshot)
    found.pop("result")
    reader.close()
    return found | {"count": mirror.count}


def probe_lag(url: str, seconds: float, out: str) -> None:
    """A MirrorReader syncing every second; records when each passage's vector was applied,
    every sync's duration and every check's; prints READY once loaded, dumps JSON to `out`."""
    _, mirror, reader_class = _mirror(url, LAG_APP)
    seen: list[tuple[float, list[int]]] = []
    syncs: list[tuple[float, float, int]] = []
    checks: list[tuple[float, int, int]] = []
    apply, sync, check = mirror._apply, mirror.sync, mirror.check  # noqa: SLF001

    def timed_apply(seqs, ids, vectors, tomb_seqs, dead):
        removed = apply(seqs, ids, vectors, tomb_seqs, dead)
        if len(ids):
            seen.append((time.monotonic(), ids.tolist()))
        return removed

    def timed_sync():
        started = time.perf_counter()
        report = sync()
        syncs.append((time.perf_counter() - started, time.process_time(), report.added))
        return report

    def timed_check():
        started = time.perf_counter()
        report = check()
        checks.append((time.perf_counter() - started, report.added, report.removed))
        return report

    mirror._apply, mirror.sync, mirror.check = timed_apply, timed_sync, timed_check  # noqa: SLF001
    reader = reader_class(mirror, lambda: None, sync_every=1.0, check_every=60.0)
    reader.snapshot()
    cpu0, wall0 = time.process_time(), time.monotonic()
    print("READY", flush=True)
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    reader.close()
    Path(out).write_text(json.dumps({"seen": seen, "syncs": syncs, "checks": checks, "cpu_s": cpu, "wall_s": wall}))


def probe_embed_idle(url: str, every: float) -> None:
    """An embed worker with nothing to do: embed_into_database every `every` seconds, forever,
    with the real ONNX MiniLM under the id the torch encoder writes (the vectors' model)."""
    from embed.db_embed import embed_into_database
    from embed.onnx_encoder import OnnxEncoder, find_model

    sessions = session_factory(make_engine(with_app(url, EMBED_APP)))
    encoder = OnnxEncoder(find_model(tempfile.gettempdir()), model_id=MODEL_ID, threads=1)
    while True:
        started = time.perf_counter()
        report = embed_into_database(sessions, encoder)
        print(json.dumps({"s": time.perf_counter() - started, "embedded": report.passages_embedded,
                          "split": report.items_split}), flush=True)
        time.sleep(every)


def run_probe(argv: list[str]) -> int:
    kind, url, *rest = argv
    if kind == "files":
        print(json.dumps(probe_files(url)))
    elif kind == "mirror":
        print(json.dumps(probe_mirror(url, rest[0] if rest else None)))
    elif kind == "reader":
        print(json.dumps(probe_reader(url)))
    elif kind == "lag":
        probe_lag(url, float(rest[0]), rest[1])
    elif kind == "embed-idle":
        probe_embed_idle(url, float(rest[0]))
    return 0


def child(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.replica", "probe", *args], text=True, **popen)


def child_json(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.replica", "probe", *args], text=True,
                          capture_output=True, check=False)
    if done.returncode:
        raise RuntimeError(f"probe {args[0]} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- part 1: start-up -----------------------------------------------------------------------------


@dataclass
class Startup:
    n: int
    files: dict
    mirror: dict
    reader: dict
    file_mb: float
    load: str


def query_sets(workdir: Path, queries: list[str]) -> Path:
    """Synthetic queries drawn like the vectors, and the load's text queries through the ONNX encoder."""
    from embed.encoder import get_encoder
    from embed.onnx_encoder import find_model

    encoder = get_encoder("onnx", path=str(find_model(workdir)), threads=1)
    path = workdir / "recall-queries.npz"
    np.savez(path, synthetic=Clusters.make(2000, 1.0).draw(RECALL_QUERIES, seed=QUERY_SEED),
             text_onnx=encoder.embed_batch(queries[:RECALL_QUERIES]))
    return path


def part_startup(world: World, queries_path: Path) -> Startup:
    path, _ = files_baseline(world.url, world.n, world.files_dir)
    load = load_avg()
    log(f"N={world.n:,}: start-up probes (files, mirror, reader)")
    files = child_json("files", str(path))
    mirror = child_json("mirror", world.url, str(queries_path))
    reader = child_json("reader", world.url)
    return Startup(world.n, files, mirror, reader, path.stat().st_size / 2**20, load)


# --- part 2: sync lag -----------------------------------------------------------------------------------


@dataclass
class Lag:
    n: int
    written: int
    seen: int
    lags_s: list[float]
    reader_cpu_per_s: float
    backend_cpu_per_s: float
    syncs: int
    sync_p50_ms: float
    sync_max_ms: float
    checks: list
    rate: float
    load: str
    idle_cpu_per_s: float = float("nan")


def add_pending_passages(engine, count: int) -> tuple[list[int], list[int]]:
    """`count` passages with no vector in new items of source 1 (ids after the highest); (item ids, passage ids)."""
    from store.models import Item, Passage

    with engine.begin() as conn:
        first_item = int(conn.scalar(select(Item.id).order_by(Item.id.desc()).limit(1))) + 1
        first_passage = int(conn.scalar(select(Passage.id).order_by(Passage.id.desc()).limit(1))) + 1
        items = list(range(first_item, first_item + -(-count // PASSAGES_PER_ITEM)))
        now = datetime.now(UTC)
        conn.execute(Item.__table__.insert(), [
            {"id": i, "source_id": 1, "stable_key": f"lag{i}", "content_hash": f"lag{i}", "entry_hash": f"lag{i}",
             "passages_hash": f"lag{i}", "kind": "article", "title": f"Lag {i}", "text": "", "truncated": False,
             "text_source": "feed", "created_at": now, "updated_at": now} for i in items])
        ids = list(range(first_passage, first_passage + count))
        conn.execute(Passage.__table__.insert(), [
            {"id": pid, "item_id": items[n // PASSAGES_PER_ITEM], "position": n % PASSAGES_PER_ITEM,
             "text": f"lag passage {pid}", "content_hash": f"lag{pid}"} for n, pid in enumerate(ids)])
    return items, ids


def part_lag(world: World, seconds: float, rate: float, batch: int, workdir: Path) -> Lag:
    from store.models import Item
    from store.vectors import write_vectors

    engine, admin = make_engine(world.url), create_engine(ADMIN_URL)
    sessions = session_factory(engine)
    items, ids = add_pending_passages(engine, int(rate * (seconds + 10)))
    vectors = Clusters.make(2000, 1.0).draw(len(ids), seed=NEW_SEED)
    out = workdir / f"lag-{world.n}.json"
    reader = child("lag", world.url, str(seconds + IDLE_S + 3), str(out), stdout=subprocess.PIPE)
    try:
        assert reader.stdout.readline().strip() == "READY", "the lag reader did not load"
        idle_cpu0, idle_pg0 = proc_cpu_s(reader.pid), backend_cpu(admin, LAG_APP)
        time.sleep(IDLE_S)  # idle syncs first: what a replica costs with nothing to follow
        idle = (proc_cpu_s(reader.pid) - idle_cpu0 + cpu_since(idle_pg0, backend_cpu(admin, LAG_APP))) / IDLE_S
        load = load_avg()
        log(f"N={world.n:,}: writing {rate:.0f} vectors/s in transactions of {batch} for {seconds:.0f} s")
        pg0, reader_cpu0 = backend_cpu(admin, LAG_APP), proc_cpu_s(reader.pid)
        committed: dict[int, float] = {}
        interval, position = batch / rate, 0
        started = next_at = time.monotonic()
        while time.monotonic() - started < seconds and position < len(ids):
            chunk = ids[position:position + batch]
            with sessions() as session, session.begin():
                write_vectors(session, MODEL_ID, chunk, vectors[position:position + batch])
            done = time.monotonic()
            committed.update(dict.fromkeys(chunk, done))
            position += batch
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        writing_s = time.monotonic() - started
        backend_s = cpu_since(pg0, backend_cpu(admin, LAG_APP))
        reader_s = proc_cpu_s(reader.pid) - reader_cpu0
        reader.wait(timeout=seconds + 120)
    finally:
        if reader.poll() is None:
            reader.kill()
        with engine.begin() as conn:  # the world as it was (tombstones stay), for the next run
            conn.execute(delete(Item).where(Item.id.in_(items)))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) passages, passage_vectors, items, passage_tombstones"))
    found = json.loads(out.read_text())
    visible = {pid: at for at, batch_ids in found["seen"] for pid in batch_ids}
    lags = [visible[pid] - at for pid, at in committed.items() if pid in visible]
    durations = [s for s, _, added in found["syncs"]]
    p50, _ = percentiles_ms(durations)
    engine.dispose()
    admin.dispose()
    return Lag(world.n, len(committed), len(lags), lags, reader_s / writing_s, backend_s / writing_s,
               len(durations), p50, max(durations, default=0) * 1000, found["checks"], rate, load, idle)


# --- parts 3 and 4: a served replica ---------------------------------------------------------------


@dataclass
class LoadFigures:
    mode: str
    p50_ms: float
    p99_ms: float
    max_ms: float
    ok: int
    errors: dict
    per_s: float
    server_cpu_ms: float
    pg_active_ms: float  # pg_stat_database.active_time per request: statements executing (wall, not CPU)
    load: str
    sessions_per_request: float  # PostgreSQL connections opened per request (pool overflow churn)


@dataclass
class Served:
    n: int
    ready_s: float  # from spawn to /health reporting the whole mirror loaded
    rss_mb: float
    loads: list[LoadFigures] = field(default_factory=list)
    idle: dict | None = None


def serve_settings(world: World, data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url=with_app(world.url, SERVE_APP), encoder="minilm",
                    index_source="database", encoder_threads=None)


def wait_loaded(base: str, n: int, started: float, timeout: float = 900) -> float:
    import httpx

    while time.monotonic() - started < timeout:
        lag = httpx.get(base + "/health", timeout=30).json().get("index_lag") or {}
        if lag.get("count", 0) >= n:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"the replica did not load {n} vectors in {timeout:.0f} s")


def part_serve(world: World, args, queries: list[str], idle_writes: bool, search: bool) -> Served:
    engine, admin = make_engine(world.url), create_engine(ADMIN_URL)
    key, oid = create_api_key(engine), database_oid(world.url)
    data_dir = world.files_dir / f"serve-{world.n}"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = serve_settings(world, data_dir)
    log(f"N={world.n:,}: starting briefcast serve, index_source=database")
    spawned = time.monotonic()
    with running_server(settings, data_dir / "server.log", {"BRIEFCAST_INDEX_SOURCE": "database"}) as (base, pid):
        ready = wait_loaded(base, world.n, spawned)
        served = Served(world.n, ready, sum(proc_status_rss(p) for p in process_tree(pid)))
        log(f"N={world.n:,}: replica ready in {ready:.1f} s, {served.rss_mb:.0f} MB")
        if search:
            warm_up(base, key, queries)
            for number, mode in enumerate(MODES):
                load = load_avg()
                log(f"N={world.n:,}: load {mode} x{args.concurrency}")
                cpu0, stats0 = tree_cpu_s(pid), db_stats(admin, oid)
                row = asyncio.run(run_load(base, key, queries, mode, args.concurrency, args.requests, world.n,
                                           "replica"))
                server_ms = (tree_cpu_s(pid) - cpu0) * 1000 / max(1, row.ok)
                stats = stats_since(admin, oid, stats0)  # nothing else uses this database meanwhile
                pg_ms, sessions = stats["active_time"] / max(1, row.ok), stats["sessions"] / max(1, row.ok)
                label = mode + (" (again)" if mode in MODES[:number] else "")
                served.loads.append(LoadFigures(label, row.p50_ms, row.p99_ms, row.max_ms, row.ok, dict(row.errors),
                                                row.per_second, server_ms, pg_ms, load, sessions))
        if idle_writes:
            served.idle = idle_writes_figures(world, args, pid, data_dir, admin)
    engine.dispose()
    admin.dispose()
    return served


def proc_status_rss(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def database_oid(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        oid = int(conn.scalar(text("SELECT oid FROM pg_database WHERE datname = current_database()")))
    engine.dispose()
    return oid


def dir_bytes(path: Path) -> int | None:
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return None


def wal_lsn(admin) -> str:
    with admin.connect() as conn:
        return conn.scalar(text("SELECT pg_current_wal_insert_lsn()::text"))


def wal_bytes(admin, start: str, end: str) -> int:
    with admin.connect() as conn:
        return int(conn.scalar(text("SELECT pg_wal_lsn_diff(CAST(:e AS pg_lsn), CAST(:s AS pg_lsn))"),
                               {"s": start, "e": end}))


_WAL_RECORD = re.compile(r"rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+).*?desc: (\S+)(.*)")


def wal_of_database(start: str, end: str, oid: int) -> dict:
    """Bytes and record kinds of the WAL between two LSNs whose block references name this
    database, or belong to a transaction that wrote such a record (its commit) (pg_waldump,
    streamed: the range may hold other users' gigabytes)."""
    ours, kinds, total, records, xids = 0, {}, 0, 0, set()
    if start == end:  # no WAL at all in the window (pg_waldump would find no record)
        return {"bytes": 0, "dumped_bytes": 0, "records": 0, "kinds": {}, "error": None}
    dump = subprocess.Popen([PG_WALDUMP, "-p", str(PG_DATA / "pg_wal"), "-s", start, "-e", end],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in dump.stdout:
        found = _WAL_RECORD.search(line)
        if not found:
            continue
        size, records = int(found.group(2)), records + 1
        total += size
        xid = int(found.group(3))
        if f"/{oid}/" in found.group(5) or (xid and xid in xids):
            if xid:
                xids.add(xid)
            ours += size
            label = f"{found.group(1)} {found.group(4)}"
            kinds[label] = kinds.get(label, 0) + 1
    error = dump.stderr.read().strip()
    dump.wait()
    return {"bytes": ours, "dumped_bytes": total, "records": records, "kinds": kinds,
            "error": error[-300:] if dump.returncode else None}


def idle_writes_figures(world: World, args, server_pid: int, data_dir: Path, admin) -> dict:
    """Part 4: the server idle-syncing and an embed worker with nothing to do, for args.seconds."""
    oid = database_oid(world.url)
    worker = child("embed-idle", world.url, str(args.embed_every), stdout=subprocess.PIPE)
    runs = collected_lines(worker)
    try:
        while not runs:
            if worker.poll() is not None:
                raise RuntimeError("the idle embed worker exited")
            time.sleep(0.1)
        first = runs[0][1]  # the worker's first run, before the window
        if first["embedded"] or first["split"]:
            raise RuntimeError(f"part 4 needs a world with nothing to embed; the worker did {first}")
        pids = {"server": process_tree(server_pid), "worker": [worker.pid]}
        apps = {"server's PostgreSQL backends": SERVE_APP, "worker's PostgreSQL backends": EMBED_APP}
        log(f"N={world.n:,}: watching writes for {args.seconds:.0f} s (idle replica + idle embed worker)")
        load = load_avg()
        writes0 = {name: sum(proc_write_bytes(p) for p in group) for name, group in pids.items()}
        cpu0 = {name: sum(proc_cpu_s(p) for p in group) for name, group in pids.items()}
        backend0 = {name: {p: (proc_write_bytes(p), proc_cpu_s(p)) for p in backends(admin, app)}
                    for name, app in apps.items()}
        with wal_kept(admin):
            window_start = time.monotonic()
            lsn0, base0, data0 = wal_lsn(admin), dir_bytes(PG_DATA / "base" / str(oid)), dir_bytes(data_dir)
            stats0 = db_stats(admin, oid)
            time.sleep(args.seconds)
            lsn1, base1, data1 = wal_lsn(admin), dir_bytes(PG_DATA / "base" / str(oid)), dir_bytes(data_dir)
            figures = {"seconds": args.seconds, "load": load, "processes": {}}
            figures["wal_database"] = wal_of_database(lsn0, lsn1, oid)
        figures["stats"] = stats_since(admin, oid, stats0)  # includes the flush wait: an upper bound
        for name, group in pids.items():
            figures["processes"][name] = (sum(proc_write_bytes(p) for p in group) - writes0[name],
                                          (sum(proc_cpu_s(p) for p in group) - cpu0[name]) / args.seconds)
        for name, app in apps.items():
            now = {p: (proc_write_bytes(p), proc_cpu_s(p)) for p in backends(admin, app)}
            figures["processes"][name] = (
                sum(w - backend0[name].get(p, (0, 0))[0] for p, (w, _) in now.items()),
                sum(c - backend0[name].get(p, (0, 0))[1] for p, (_, c) in now.items()) / args.seconds)
        figures["wal_cluster_bytes"] = wal_bytes(admin, lsn0, lsn1)
        figures["database_dir_change"] = None if base0 is None or base1 is None else base1 - base0
        figures["data_dir_change"] = None if data0 is None or data1 is None else data1 - data0
        figures["embed_runs"] = [run for at, run in runs if at >= window_start]
        return figures
    finally:
        worker.kill()
        worker.wait(timeout=10)


@contextmanager
def wal_kept(admin) -> Iterator[None]:
    """A temporary physical replication slot, so checkpoints keep the window's WAL for pg_waldump
    (other users of the cluster may write gigabytes meanwhile); dropped with its session."""
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_create_physical_replication_slot(:n, true, true)"),
                     {"n": f"bc_replica_bench_{os.getpid()}"})
        yield


DB_STATS = ("sessions", "active_time", "temp_files", "temp_bytes", "xact_commit")
STATS_FLUSH_S = 11.0  # PostgreSQL 15 backends flush their counters when idle, at least every 10 s


def db_stats(admin, oid: int) -> dict[str, float]:
    """This database's cumulative counters (pg_stat_database): sessions opened, ms its backends
    spent executing statements, temporary files and bytes spilled, commits."""
    with admin.connect() as conn:
        row = conn.execute(text(f"SELECT {', '.join(DB_STATS)} FROM pg_stat_database WHERE datid = :o"),
                           {"o": oid}).one()
    return dict(zip(DB_STATS, map(float, row), strict=True))


def stats_since(admin, oid: int, before: dict[str, float]) -> dict[str, float]:
    time.sleep(STATS_FLUSH_S)
    return {name: value - before[name] for name, value in db_stats(admin, oid).items()}


def collected_lines(process: subprocess.Popen) -> list[tuple[float, dict]]:
    """(time read, JSON) of each line the process prints, gathered by a daemon thread."""
    import threading

    lines: list[tuple[float, dict]] = []

    def read() -> None:
        for line in process.stdout:
            lines.append((time.monotonic(), json.loads(line)))

    threading.Thread(target=read, daemon=True).start()
    return lines


# --- printing -------------------------------------------------------------------------------------------


def print_build(worlds: list[World]) -> None:
    print("\n## World build (PostgreSQL, COPY)")
    for world in worlds:
        steps = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in world.built.items()
                          if k.endswith("_s") and k != "total_s")
        how = "reused (--keep), built earlier" if world.built.get("reused") else "built now"
        print(f"N={world.n:,} ({how}): {steps}; total {world.built.get('total_s', float('nan')):.0f} s")


def print_startup(rows: list[Startup]) -> None:
    print("\n## 1. Replica start-up (child process, faiss and the driver imported first)")
    print("| N | what | seconds | RSS added MB | peak added MB | vectors | load avg |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.n:,} | files: faiss.read_index ({r.file_mb:.0f} MB file) | {r.files['s']:.2f} | "
              f"{r.files['rss_mb']:.0f} | {r.files['peak_mb']:.0f} | {r.files['count']:,} | {r.load} |")
        for label, found in (("database: VectorMirror.load()", r.mirror),
                             ("database: MirrorReader first snapshot()", r.reader)):
            ratio = found["s"] / r.files["s"] if r.files["s"] else float("nan")
            print(f"| {r.n:,} | {label} ({ratio:.1f}x the file's time, "
                  f"{found['rss_mb'] / max(r.files['rss_mb'], 1e-9):.2f}x its RSS) | {found['s']:.2f} | "
                  f"{found['rss_mb']:.0f} | {found['peak_mb']:.0f} | {found['count']:,} | {r.load} |")
    print("\nrecall@10 of the mirror against exact (every list probed); ms per query, one thread, batch of queries")
    for r in rows:
        recall = r.mirror.get("recall", {})
        if recall.get("kind") != "ivf":
            print(f"N={r.n:,}: the mirror is {recall.get('kind', '?')} (exact)")
            continue
        parts = [f"{name}: {value[0]:.3f} ({value[1]:.2f} ms)" for name, value in recall.items() if "@" in name]
        print(f"N={r.n:,}: IVF nlist {recall['nlist']}, default nprobe {recall['nprobe']}; " + "; ".join(parts))


def print_lag(rows: list[Lag]) -> None:
    print("\n## 2. Sync lag: time visible in a MirrorReader (sync_every 1 s) - commit time")
    print("| N | written/s | vectors | seen | p50 ms | p99 ms | max ms | syncs | sync p50 / max ms | "
          "reader CPU s/s | its PG backends CPU s/s | idle reader+PG CPU s/s | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p50, p99 = percentiles_ms(r.lags_s)
        print(f"| {r.n:,} | {r.rate:.0f} | {r.written} | {r.seen} | {p50:.0f} | {p99:.0f} | "
              f"{max(r.lags_s, default=0) * 1000:.0f} | {r.syncs} | {r.sync_p50_ms:.1f} / {r.sync_max_ms:.0f} | "
              f"{r.reader_cpu_per_s:.4f} | {r.backend_cpu_per_s:.4f} | {r.idle_cpu_per_s:.4f} | {r.load} |")
        for seconds, added, removed in r.checks:
            print(f"   N={r.n:,}: a check() ran during the window: {seconds * 1000:.0f} ms, added {added}, "
                  f"removed {removed}")


def print_served(rows: list[Served], args) -> None:
    print(f"\n## 3. Search on a replica: briefcast serve, 1 worker, index_source=database, ONNX int8 MiniLM "
          f"queries, concurrency {args.concurrency}, {args.requests} requests per mode")
    print("| N | mode | p50 ms | p99 ms | max ms | ok | errors | req/s | server CPU ms/req | PG active ms/req | "
          "PG connections opened/req | load avg | p99 target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in rows:
        for r in s.loads:
            verdict = "" if not r.mode.startswith("hybrid") else ("met" if r.p99_ms <= TARGET_P99_MS else "MISSED")
            print(f"| {s.n:,} | {r.mode} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:.0f} | {r.ok} | "
                  f"{r.errors or '-'} | {r.per_s:.1f} | {r.server_cpu_ms:.1f} | {r.pg_active_ms:.1f} | "
                  f"{r.sessions_per_request:.2f} | {r.load} | "
                  f"{verdict} |")
    for s in rows:
        print(f"N={s.n:,}: server spawn to mirror loaded (/health count = N) {s.ready_s:.1f} s, RSS then {s.rss_mb:.0f} MB")


def print_idle(rows: list[Served]) -> None:
    print("\n## 4. Writes while nothing changes (idle replica syncing every 1 s + embed worker every "
          "few s with nothing to do). Target 0")
    for s in rows:
        f = s.idle
        if not f:
            continue
        print(f"N={s.n:,}, {f['seconds']:.0f} s, load avg {f['load']}:")
        print("| process | write_bytes | per minute | CPU s/s |")
        print("|---|---|---|---|")
        for name, (written, cpu) in f["processes"].items():
            print(f"| {name} | {written:,} | {written * 60 / f['seconds']:,.0f} | {cpu:.4f} |")
        ours = f["wal_database"]
        print(f"WAL, whole cluster (shared with other users): {f['wal_cluster_bytes']:,} bytes "
              f"({f['wal_cluster_bytes'] * 60 / f['seconds']:,.0f}/min)")
        print(f"WAL records touching this database: {ours['bytes']:,} bytes of {ours['dumped_bytes']:,} dumped "
              f"({ours['records']} records); kinds {ours['kinds'] or '-'}"
              + (f"; pg_waldump: {ours['error']}" if ours["error"] else ""))
        stats = f["stats"]
        print(f"temporary files spilled by this database's queries (pg_stat_database, window + {STATS_FLUSH_S:.0f} s "
              f"flush wait): {stats['temp_files']:.0f} files, {stats['temp_bytes']:,.0f} bytes; "
              f"sessions opened {stats['sessions']:.0f}, commits {stats['xact_commit']:.0f}")
        print(f"size change: database directory {f['database_dir_change']} bytes, server data dir "
              f"{f['data_dir_change']} bytes")
        runs = f["embed_runs"]
        if runs:
            print(f"idle embed runs in the window: {len(runs)}, each {np.mean([r['s'] for r in runs]) * 1000:.0f} ms "
                  f"(max {max(r['s'] for r in runs) * 1000:.0f}), embedded {sum(r['embedded'] for r in runs)}")


# --- main ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replica", description=__doc__.split("\n\n")[0])
    ints = lambda value: [int(x) for x in value.split(",") if x]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[100_000, 1_000_000])
    parser.add_argument("--parts", type=ints, default=[1, 2, 3, 4])
    parser.add_argument("--keep", action="store_true", help="keep each world in briefcast_replica_<N> and reuse it")
    parser.add_argument("--workdir", type=Path, default=None, help="index files and logs (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=60.0, help="part 2's writing and part 4's watching")
    parser.add_argument("--rate", type=float, default=50.0, help="part 2: vectors written per second")
    parser.add_argument("--lag-batch", type=int, default=5, help="part 2: vectors per transaction")
    parser.add_argument("--requests", type=int, default=600, help="part 3: requests per mode")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--embed-every", type=float, default=10.0, help="part 4: seconds between idle embed runs")
    parser.add_argument("--build-only", action="store_true", help="build (or check) the worlds and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        return run_probe(argv[1:])
    args = parse_args(argv)
    started = time.perf_counter()
    print(machine_line())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="briefcast-replica-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    queries = Corpus.make().queries(max(args.requests, RECALL_QUERIES, 100))
    worlds, startups, lags, served = [], [], [], []
    try:
        queries_path = query_sets(workdir, queries) if 1 in args.parts else None
        for n in sorted(args.sizes):
            with world_database(n, args.keep) as (url, recorded):
                if recorded is None:
                    log(f"N={n:,}: building the world")
                    t0 = time.perf_counter()
                    built = build_world(url, n)
                    built["total_s"] = time.perf_counter() - t0
                    if args.keep:
                        mark_complete(url, built)
                else:
                    built = recorded | {"reused": True}
                world = World(n, url, built, workdir)
                worlds.append(world)
                log(f"N={n:,}: world ready")
                if args.build_only:
                    files_baseline(url, n, workdir)
                    continue
                if 1 in args.parts:
                    startups.append(part_startup(world, queries_path))
                if 3 in args.parts or 4 in args.parts:
                    served.append(part_serve(world, args, queries, 4 in args.parts, 3 in args.parts))
                if 2 in args.parts:  # last: it adds and deletes rows (vacuumed after)
                    lags.append(part_lag(world, args.seconds, args.rate, args.lag_batch, workdir))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_build(worlds)
    if startups:
        print_startup(startups)
    if lags:
        print_lag(lags)
    if any(s.loads for s in served):
        print_served(served, args)
    if any(s.idle for s in served):
        print_idle(served)
    print(f"\nwall {time.perf_counter() - started:.0f} s; load avg {load_avg()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
