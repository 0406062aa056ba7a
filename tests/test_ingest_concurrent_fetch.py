"""Two `briefcast fetch --all` processes at once, on SQLite and the real PostgreSQL (issue 11, item 9).

The loopback server holds each feed until both processes have asked for it, so both parse the same
items at the same moment and race to store them. An item the other process stored first is
"already stored": no source is marked failed, no IntegrityError (nor its SQL) reaches `last_error`,
and every item is stored once and counted new by exactly one of the two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ingest.localserver import LocalServer
from store import repo
from store.models import FetchAttempt, Item, Source

ROOT = Path(__file__).resolve().parents[1]
FEEDS = 4
ITEMS_PER_FEED = 150
BARRIER_SECONDS = 90.0  # both processes must ask for a feed within this (start-up on a busy machine)


def feed_xml(feed: int) -> bytes:
    items = "".join(
        f"<item><title>Feed {feed} story {n}</title><link>http://example.com/{feed}/{n}</link>"
        f"<guid isPermaLink=\"false\">f{feed}-{n}</guid>"
        f"<description>Story {n} of feed {feed}: export controls on accelerators reshape how labs plan "
        f"their training runs, and the budget for compute moves with them.</description></item>"
        for n in range(ITEMS_PER_FEED)
    )
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
            f"{items}</channel></rss>").encode()


def held_until_both_asked(body: bytes):
    """A route that answers the second request and the first together."""
    barrier = threading.Barrier(2)

    def route(handler) -> None:
        try:
            barrier.wait(timeout=BARRIER_SECONDS)
        except threading.BrokenBarrierError:
            pass  # the other process never came: answer anyway, the test's assertions will say so
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def fetch_process(tmp_path: Path, db_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")} | {
        "BRIEFCAST_CONFIG": str(tmp_path / "absent.toml"),
        "BRIEFCAST_DATA_DIR": str(tmp_path / "data"),
        "BRIEFCAST_DATABASE_URL": db_url,
        "BRIEFCAST_ALLOW_PRIVATE_ADDRESSES": "true",
        "BRIEFCAST_FETCH_FULL_TEXT": "false",
        "BRIEFCAST_TOTAL_TIMEOUT": str(BARRIER_SECONDS + 30),
        "BRIEFCAST_READ_TIMEOUT": str(BARRIER_SECONDS + 30),
    }
    return subprocess.Popen([str(Path(sys.executable).with_name("briefcast")), "fetch", "--all", "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_fetches_at_once_store_each_item_once_and_fail_nothing(tmp_path, db_url, sessions):
    routes = {f"/feed{n}.rss": held_until_both_asked(feed_xml(n)) for n in range(FEEDS)}
    with LocalServer(None, routes=routes) as server:
        with sessions() as session, session.begin():
            for path in routes:
                repo.add_source(session, server.url(path))
        processes = [fetch_process(tmp_path, db_url) for _ in range(2)]
        outputs = [p.communicate(timeout=BARRIER_SECONDS * 2) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    reports = [json.loads(out) for out, _ in outputs]
    for report in reports:
        assert report["failed"] == 0, report
        assert all(s["status"] == "new" and s["error"] is None for s in report["sources"]), report
    # Each item was new to exactly one of the two processes; the other found it already stored.
    assert sum(r["new_items"] for r in reports) == FEEDS * ITEMS_PER_FEED
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == FEEDS * ITEMS_PER_FEED
        for source in session.scalars(select(Source)):
            assert source.last_error is None and source.consecutive_failures == 0 and source.last_status == "new"
        attempts = session.scalars(select(FetchAttempt)).all()
        assert len(attempts) == 2 * FEEDS and {a.status for a in attempts} == {"new"}
        assert all(a.error is None for a in attempts)
