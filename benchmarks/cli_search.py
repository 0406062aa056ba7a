"""What a user pays for one `briefcast search` from the command line, and what the query encoder
costs in retrieval quality.

    .venv/bin/python -m benchmarks.cli_search [--runs 5] [--data-dir data] [--onnx DIR] [--code DIR]
    .venv/bin/python -m benchmarks.cli_search --retrieval [--corpus ../shared/corpus] [--onnx DIR]
    .venv/bin/python -m benchmarks.cli_search --encode [--busy N] [--onnx DIR]

Process-to-answer: each run starts a new `briefcast search` process (cold: nothing of it is
loaded; the page cache is warm after the first run, as for a user's second query) and times it
until it exits, for keyword-only and hybrid queries with the torch query encoder
(BRIEFCAST_QUERY_ENCODER=encoder, the passage encoder itself) and with the int8 ONNX export
(BRIEFCAST_QUERY_ENCODER=onnx), at query_threads 1 (the default) and at the libraries' default
(torch: one per core), and `briefcast --help`. Prints the median and the range of `--runs` runs, the median CPU seconds,
and the 1-minute load average before and after each row (a row waits for it to fall below
--max-load, default 1.0): timings on a busy machine are not comparable. `--code DIR` runs another checkout's code (e.g. a `git worktree` of the commit
before) with this venv, on the same data: the "before" rows (settings it does not know are ignored).

`--retrieval`: the pinned retrieval set (tests/data/retrieval.json, tests/retrieval_eval.py) is
indexed once with torch MiniLM passages, then searched with torch queries and with ONNX queries
on that same index: recall@10, MRR and the timestamp hit per mode, and how many queries' top-10
items changed.

`--encode`: milliseconds to encode one query (p50, p90 of 200, after a warm-up), torch and ONNX,
at 1 thread and at the library's default, each in its own process (torch's thread count is per
process); `--busy N` keeps N other processes spinning on the CPU meanwhile, as on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What .venv/bin/briefcast runs, importing the code of the working directory (see --code).
LAUNCH = "import sys; from api.cli import main; sys.argv[0] = 'briefcast'; sys.exit(main())"
QUERIES = ("export controls on memory bandwidth", "open-weight models from Chinese labs",
           "what did podcasts say about distillation", "data centre power and chips", "Nvidia H20 sales")


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def quiet(max_load: float, patience: float = 300) -> float:
    """Wait (up to `patience` s) until the 1-minute load is below `max_load`: a row is not started
    on a machine still busy with the previous one (loading torch keeps both cores busy)."""
    deadline = time.monotonic() + patience
    while load() >= max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load()


def timed(args: list[str], env: dict[str, str], code: Path) -> tuple[float, float]:
    """Wall seconds from start to exit, and the CPU seconds (user + system) the process used: the
    steadier figure on a shared machine."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCH, *args], env=env, cwd=code, capture_output=True, text=True,
                          timeout=300)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"briefcast {' '.join(args)} failed ({env.get('BRIEFCAST_QUERY_ENCODER')}):\n{done.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli_rows(data_dir: Path, onnx: Path | None, runs: int, code: Path, max_load: float) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    base |= {"BRIEFCAST_DATA_DIR": str(data_dir.resolve()), "BRIEFCAST_CONFIG": os.devnull}
    if onnx:
        base["BRIEFCAST_QUERY_ENCODER_PATH"] = str(onnx.resolve())
    rows = [
        ("briefcast --help", None, {}),
        ("keyword only", "keyword", {}),
        ("hybrid, torch query encoder, 1 thread", "hybrid", {"BRIEFCAST_QUERY_ENCODER": "encoder"}),
        ("hybrid, torch query encoder, torch's default threads", "hybrid",
         {"BRIEFCAST_QUERY_ENCODER": "encoder", "BRIEFCAST_QUERY_THREADS": "0"}),
        ("hybrid, ONNX int8 query encoder, 1 thread", "hybrid", {"BRIEFCAST_QUERY_ENCODER": "onnx"}),
        ("hybrid, ONNX int8 query encoder, onnxruntime's default threads", "hybrid",
         {"BRIEFCAST_QUERY_ENCODER": "onnx", "BRIEFCAST_QUERY_THREADS": "0"}),
        ("hybrid, default settings", "hybrid", {}),
    ]
    if code != ROOT:  # another checkout: its settings know none of the query encoder's
        rows = [row for row in rows if not row[2]]
    timed(["search", QUERIES[0], "--mode", "keyword"], base, code)  # warm the page cache once, as a second query finds it
    print(f"code: {code}; data: {data_dir}; onnx export: {onnx or 'found by the settings'}")
    print(f"{'process-to-answer, s':64} {'median':>7} {'min':>6} {'max':>6} {'CPU s':>6}  load before/after")
    for label, mode, extra in rows:
        before = quiet(max_load)
        measured = [timed(["--help"] if mode is None else
                          ["search", QUERIES[i % len(QUERIES)], "--k", "3", "--mode", mode, "--json"], base | extra, code)
                    for i in range(runs)]
        times = [wall for wall, _ in measured]
        cpu = statistics.median(c for _, c in measured)
        print(f"{label:64} {statistics.median(times):7.2f} {min(times):6.2f} {max(times):6.2f} {cpu:6.2f}  "
              f"{before:.2f} / {load():.2f}", flush=True)


def retrieval_rows(corpus: Path, onnx: Path | None) -> None:
    from embed.encoder import get_encoder
    from embed.onnx_encoder import find_model
    from embed.search import search
    from tests.retrieval_eval import build, score_all

    onnx = onnx or find_model(ROOT / "data")
    if onnx is None:
        raise SystemExit("no ONNX export: run `make onnx` or pass --onnx DIR")
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        ctx, rset, ids = build(corpus, Path(work), get_encoder("minilm", threads=1))
        print(f"indexed the retrieval set with torch MiniLM in {time.perf_counter() - started:.0f} s "
              f"(load {load():.2f})", flush=True)
        by_encoder, vectors = {}, {}
        for name, encoder in (("torch", ctx.encoder), ("onnx", get_encoder("onnx", path=str(onnx), threads=1))):
            vectors[name] = encoder.embed_batch([q.q for q in rset.queries])
            ctx._encoder = encoder
            by_encoder[name] = {s.mode: s for s in score_all(ctx, rset, ids)}
            tops = [[h.item_id for h in search(ctx, q.q, k=10, mode="hybrid")] for q in rset.queries]
            by_encoder[name]["tops"] = tops
    print(f"\n{len(rset.queries)} queries; index: torch MiniLM passages ({ids and len(ids)} documents)")
    print(f"{'queries by':8} {'mode':8} {'recall@10':>9} {'MRR':>7} {'detail MRR':>10} {'timestamp':>9}")
    for name, scores in by_encoder.items():
        for mode in ("hybrid", "vector", "keyword"):
            s = scores[mode]
            print(f"{name:8} {mode:8} {s.recall_at_10:9.4f} {s.mrr:7.4f} {s.detail_mrr:10.4f} {s.timestamp_hit:9.4f}")
    torch_tops, onnx_tops = by_encoder["torch"]["tops"], by_encoder["onnx"]["tops"]
    same_order = sum(a == b for a, b in zip(torch_tops, onnx_tops))
    same_set = sum(set(a) == set(b) for a, b in zip(torch_tops, onnx_tops))
    same_first = sum(a[:1] == b[:1] for a, b in zip(torch_tops, onnx_tops))
    print(f"hybrid top-10 items: identical order for {same_order}/{len(torch_tops)} queries, "
          f"same set for {same_set}/{len(torch_tops)}, same first item for {same_first}/{len(torch_tops)}")
    cosine = (vectors["torch"] * vectors["onnx"]).sum(axis=1)
    print(f"query vectors, ONNX vs torch: cosine mean {cosine.mean():.4f}, min {cosine.min():.4f}")


ENCODE = """
import json, statistics, sys, time
from embed.runtime import make_query_encoder
from store.settings import Settings
settings = Settings(query_encoder=sys.argv[1], query_threads=int(sys.argv[2]), query_encoder_path=sys.argv[3] or None)
encoder = make_query_encoder(settings)
queries = json.loads(sys.argv[4])
for q in queries:
    encoder.embed_batch([q])
times = []
for n in range(200):
    started = time.perf_counter()
    encoder.embed_batch([queries[n % len(queries)]])
    times.append((time.perf_counter() - started) * 1000)
times.sort()
print(json.dumps([type(encoder).__name__, statistics.median(times), times[int(0.9 * len(times))]]))
"""


def encode_rows(onnx: Path | None, busy: int) -> None:
    import json

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(2 if busy else 0)
        print(f"per-query encoding, ms ({busy} CPU-bound processes beside it; {os.cpu_count()} cores)")
        print(f"{'encoder':40} {'p50':>7} {'p90':>7}  load")
        for name, kind, threads in (("torch MiniLM, 1 thread", "encoder", 1),
                                    ("torch MiniLM, torch's default threads", "encoder", 0),
                                    ("ONNX int8, 1 thread", "onnx", 1),
                                    ("ONNX int8, onnxruntime's default threads", "onnx", 0)):
            done = subprocess.run([sys.executable, "-c", ENCODE, kind, str(threads), str(onnx or ""),
                                   json.dumps(list(QUERIES))], cwd=ROOT, capture_output=True, text=True, timeout=600,
                                  env={k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")})
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            _, p50, p90 = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name:40} {p50:7.1f} {p90:7.1f}  {load():.2f}", flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="an ingested and embedded data dir")
    parser.add_argument("--onnx", type=Path, default=None, help="the ONNX export (default: data dir's, else installed)")
    parser.add_argument("--retrieval", action="store_true", help="retrieval figures, torch vs ONNX queries")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--encode", action="store_true", help="per-query encoding latency by encoder and threads")
    parser.add_argument("--busy", type=int, default=0, help="with --encode: CPU-bound processes running beside")
    parser.add_argument("--max-load", type=float, default=1.0, help="wait for a 1-minute load below this before each row")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    args = parser.parse_args(argv)
    if args.retrieval:
        retrieval_rows(args.corpus, args.onnx)
    elif args.encode:
        encode_rows(args.onnx, args.busy)
    else:
        cli_rows(args.data_dir, args.onnx, args.runs, args.code.resolve(), args.max_load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
