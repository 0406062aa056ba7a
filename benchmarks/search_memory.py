"""Where a search server's RSS is, round after round: /proc/<pid>/smaps grouped by what is mapped.

Serves a world that `benchmarks.search --workdir DIR` built (with --encoder minilm), loads it with
the mixed filters of `benchmarks.search --filters` (vector and hybrid, `--requests` each per round,
at `--concurrency`), and after warm-up and each round prints the server's RSS split into
anonymous memory (heap, FAISS's vectors, the model), SQLite's memory map of the database (one
mapping per pooled connection), tantivy's files and the libraries. Anonymous memory that grows
every round is a leak; the memory map counts the same file pages once per mapping.

    .venv/bin/python -m benchmarks.search_memory --workdir DIR --size 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks.search import (MODES, WORLD_FILE, Corpus, bench_settings, filter_mix, load_avg, run_load,
                               running_server, tree_mb, warm_up)

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def kind_of(path: str) -> str:
    if "briefcast.db" in path:
        return "SQLite memory map"
    if path.endswith(".faiss"):
        return "FAISS file"
    if "keywords-" in path:
        return "tantivy"
    if path.startswith("/"):
        return "libraries and other files"
    return "anonymous"  # no path, [heap], [stack], [anon:...]


def rss_by_kind(pid: int) -> tuple[dict[str, float], dict[str, int]]:
    """MB of RSS and the number of mappings per kind of mapping."""
    megabytes: dict[str, float] = defaultdict(float)
    mappings: dict[str, int] = defaultdict(int)
    kind = None
    with open(f"/proc/{pid}/smaps") as handle:
        for line in handle:
            if _MAPPING.match(line):
                parts = line.split()
                kind = kind_of(parts[5] if len(parts) > 5 else "")
                mappings[kind] += 1
            elif line.startswith("Rss:") and kind:
                megabytes[kind] += int(line.split()[1]) / 1024
    return megabytes, mappings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="where benchmarks.search --workdir built N")
    parser.add_argument("--size", type=int, default=1_000_000, help="N of the world to serve")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="per mode per round")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    data_dir = args.workdir / f"n{args.size}"
    world = json.loads((data_dir / WORLD_FILE).read_text())
    settings = bench_settings(argparse.Namespace(encoder=world["encoder"]), data_dir)
    queries = Corpus.make().queries(args.requests)
    wrong = 0
    with running_server(settings, data_dir / "search-memory.log", {}, 1) as (base, pid):
        warm_up(base, world["key"], queries, 1)
        for number in range(args.rounds + 1):
            for mode in MODES if number else ():
                row = asyncio.run(run_load(base, world["key"], queries, mode, args.concurrency, args.requests,
                                           args.size, "memory", filter_mix(args.size)))
                wrong += row.sent - row.ok + row.empty + row.not_empty
            megabytes, mappings = rss_by_kind(pid)
            parts = "; ".join(f"{kind} {mb:.0f} MB ({mappings[kind]} mappings)"
                              for kind, mb in sorted(megabytes.items(), key=lambda item: -item[1]) if mb >= 1)
            threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
            print(f"after round {number}{' (warm-up only)' if not number else ''}: RSS {tree_mb(pid):.0f} MB, "
                  f"{threads} threads, load {load_avg()}: {parts}", flush=True)
    print(f"{wrong} requests failed or answered wrong")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
