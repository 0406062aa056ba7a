"""Web reader pages: server time per page as a signed-in reader sees it, over loopback HTTP
against `briefcast serve`'s app under uvicorn (one worker), on the test world (the sample sources
plus a hostile feed, fake encoder, a brief from the copying summariser).

    .venv/bin/python -m benchmarks.web_pages [--rounds 50]

Prints, per page: median and p95 milliseconds, and the HTML size. The search page includes the
search itself (fake encoder: no model time). Prints the 1-minute load average beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ingest.localserver import LocalServer
from tests.web_world import ROOT, Server, Visitor, build_world, hostile_route


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    ref: list = []
    with tempfile.TemporaryDirectory() as tmp, \
            LocalServer(ROOT / "samples" / "site", routes={"/feeds/hostile.rss": hostile_route(ref)}) as site:
        ref.append(site)
        world = build_world(Path(tmp), site)
        server = Server(world)
        try:
            visitor = Visitor(server.base_url)
            assert visitor.sign_in(world.api_key).status_code == 303
            paths = {"/": "/", "/briefs": "/briefs", "/briefs/{topic}/{day}": f"/briefs/{world.topic}/{world.day}",
                     "/stories/{id}": f"/stories/{world.story_ids[0]}", "/insights/{id}": f"/insights/{world.story_ids[0]}",
                     "/podcasts/{topic}/{day}": f"/podcasts/{world.topic}/{world.day}",
                     "/find?q=open weight models": "/find?q=open+weight+models",
                     "/subscription/{link}": f"/subscription/{world.manage_link}", "/docs": "/docs"}
            print(f"load average (1 min): {os.getloadavg()[0]:.2f}; {args.rounds} rounds per page")
            print(f"{'page':28} {'median ms':>10} {'p95 ms':>8} {'KB':>6}")
            for name, path in paths.items():
                times, size = [], 0
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    answer = visitor.http.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code)
                    size = len(answer.content)
                times.sort()
                p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
                print(f"{name:28} {statistics.median(times):10.1f} {p95:8.1f} {size / 1024:6.1f}")
            visitor.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
