"""Faults with real worker processes, a real (private) Redis and the real PostgreSQL: kill -9 a
worker mid-fetch and mid-embed, restart Redis mid-run. After the pipeline settles, every item
is stored once and indexed once: the lost and duplicated counts (printed; docs/benchmarks.md,
"Faults") must both be 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.localserver import LocalServer
from store import repo
from store.db import open_database, scratch_postgres_database
from tests.conftest import PG_ADMIN_URL
from tests.workers import (
    Gate,
    RedisServer,
    beat_process,
    briefcast_env,
    lost_and_duplicated,
    pipeline_counts,
    rss,
    send,
    settled,
    wait_until,
    worker_process,
    write_site,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FAST_RECOVERY = dict(
    visibility_timeout=6,  # a dead worker's task comes back after 6 s (production: an hour)
    unacked_restore_seconds=1,
    worker_lease_seconds=5,
    worker_briefs_check_seconds=86400,  # no briefs in these runs
    worker_asr_every_seconds=86400,
)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def pg_url():
    with scratch_postgres_database(PG_ADMIN_URL, "briefcast_fault") as url:
        yield url


class World:
    """Generated feeds on loopback, one of them behind a gate; the sources registered in the
    database (gated one first, so a worker takes it first)."""

    def __init__(self, tmp_path: Path, db_url: str, feeds: int, items: int) -> None:
        self.server = LocalServer(tmp_path / "site", render=False).start()
        paths = write_site(tmp_path / "site", feeds - 1, items, self.server.base_url)
        self.gate = Gate(rss(feeds - 1, items, self.server.base_url))
        self.server.routes["/slow/feed.xml"] = self.gate
        self.expected = feeds * items
        self.sessions = open_database(db_url)  # migrated here, before any worker starts
        with self.sessions() as session, session.begin():
            for path in ["/slow/feed.xml", *paths]:
                repo.add_source(session, self.server.url(path), topic="ai-geopolitics")

    def close(self) -> None:
        self.gate.opened.set()
        self.server.stop()
        self.sessions.kw["bind"].dispose()


@pytest.fixture
def farm(tmp_path):
    """Every process a test starts, stopped at the end whatever happened."""
    started = []

    def track(process):
        started.append(process)
        return process.start()

    yield track
    for process in started:
        process.stop()


def report(name: str, counts: dict, expected: int, **extra) -> tuple[int, int]:
    lost, duplicated = lost_and_duplicated(counts, expected)
    print(f"\nFAULT {name}: " + json.dumps({"expected_items": expected, **counts, "lost": lost,
                                              "duplicated": duplicated, **extra}))
    return lost, duplicated


def _settle(world: World, data: Path, processes, timeout: float = 120) -> dict:
    try:
        return wait_until(lambda: settled(world.sessions, data / "index", world.expected), timeout,
                          "every item stored and indexed")
    except AssertionError:
        logs = "\n\n".join(f"--- {p.log.name}\n{p.tail()}" for p in processes)
        raise AssertionError(f"not settled: {pipeline_counts(world.sessions, data / 'index')}\n{logs}") from None


def test_worker_killed_mid_fetch_loses_and_duplicates_nothing(tmp_path, redis_server, pg_url, farm):
    world = World(tmp_path, pg_url, feeds=6, items=25)
    data = tmp_path / "data"
    env = briefcast_env(data, pg_url, redis_server.url, **FAST_RECOVERY)
    try:
        first = farm(worker_process("first", "fetch,embed", env, tmp_path / "logs"))
        send(redis_server.url, "briefcast.refresh_due", queue="fetch")
        assert world.gate.waiting.wait(60), f"the gated feed was never asked for\n{first.tail()}"
        first.kill9()  # the worker and its pool, mid-request
        world.gate.opened.set()
        second = farm(worker_process("second", "fetch,embed", env, tmp_path / "logs"))
        counts = _settle(world, data, [first, second])
        lost, duplicated = report("kill -9 mid-fetch", counts, world.expected,
                                  gated_feed_requests=world.server.hits["/slow/feed.xml"])
        assert world.server.hits["/slow/feed.xml"] >= 2, "the killed fetch was not redelivered"
        assert (lost, duplicated) == (0, 0)
    finally:
        world.close()


def test_worker_killed_mid_embed_loses_and_duplicates_nothing(tmp_path, redis_server, pg_url, farm):
    world = World(tmp_path, pg_url, feeds=8, items=40)
    world.gate.opened.set()
    data = tmp_path / "data"
    env = briefcast_env(data, pg_url, redis_server.url, **FAST_RECOVERY)
    try:
        fetcher = farm(worker_process("fetcher", "fetch", env, tmp_path / "logs"))
        send(redis_server.url, "briefcast.refresh_due", queue="fetch")
        wait_until(lambda: pipeline_counts(world.sessions, data / "index")["distinct_items"] >= world.expected,
                   90, f"every item fetched\n{fetcher.tail()}")
        embedder = farm(worker_process("embedder", "embed", env, tmp_path / "logs"))
        lease = redis_server.client()
        wait_until(lambda: lease.exists("briefcast:slot:embed:0")
                   and pipeline_counts(world.sessions, data / "index")["passages"] > 0,
                   60, f"the embed run to have cut its first passages\n{embedder.tail()}", every=0.01)
        embedder.kill9()  # the index writer, mid-run
        at_kill = pipeline_counts(world.sessions, data / "index")
        second = farm(worker_process("embedder2", "embed", env, tmp_path / "logs"))
        counts = _settle(world, data, [fetcher, embedder, second])
        lost, duplicated = report("kill -9 mid-embed", counts, world.expected,
                                  passages_at_kill=at_kill["passages"], embedded_at_kill=at_kill["embedded"],
                                  index_vectors_at_kill=at_kill["index_vectors"])
        assert at_kill["embedded"] < counts["passages"], "the kill came after the embed run had finished"
        assert (lost, duplicated) == (0, 0)
    finally:
        world.close()


def test_redis_restarted_mid_run_pipeline_resumes(tmp_path, redis_server, pg_url, farm):
    world = World(tmp_path, pg_url, feeds=6, items=25)
    data = tmp_path / "data"
    env = briefcast_env(data, pg_url, redis_server.url, **FAST_RECOVERY,
                        worker_refresh_check_seconds=2, worker_embed_every_seconds=2)
    try:
        worker = farm(worker_process("worker", "fetch,embed", env, tmp_path / "logs"))
        beat = farm(beat_process("beat", env, tmp_path / "logs"))
        assert world.gate.waiting.wait(60), f"the gated feed was never asked for\n{worker.tail()}\n{beat.tail()}"
        redis_server.restart()  # no persistence: every queued task and lease is gone
        world.gate.opened.set()
        counts = _settle(world, data, [worker, beat])
        lost, duplicated = report("Redis restarted mid-fetch", counts, world.expected,
                                  gated_feed_requests=world.server.hits["/slow/feed.xml"])
        assert worker.alive and beat.alive, "a process died instead of reconnecting"
        assert (lost, duplicated) == (0, 0)
    finally:
        world.close()


# --- the brief: SMTP down then up, two beat schedulers ----------------------------------------

TOPIC = """name = "faults"
title = "Faults"
description = "export controls on chips and memory bandwidth, open weights and distillation"
timezone = "UTC"
send_time = "00:00"
"""


def brief_world(tmp_path: Path, db_url: str) -> World:
    """Feeds, a topic whose send time (00:00 UTC) has always passed, and one subscriber."""
    from digest.subscribers import add_subscriber

    world = World(tmp_path, db_url, feeds=3, items=10)
    world.gate.opened.set()
    (tmp_path / "topics").mkdir()
    (tmp_path / "topics" / "faults.toml").write_text(TOPIC)
    add_subscriber(world.sessions, "reader@example.org", topics=["faults"], timezone="Europe/Berlin")
    return world


def brief_env(tmp_path, pg_url, redis_url, smtp_port: int) -> dict:
    return briefcast_env(tmp_path / "data", pg_url, redis_url, **(FAST_RECOVERY | dict(
        worker_briefs_check_seconds=2, worker_refresh_check_seconds=2, worker_embed_every_seconds=2,
        topics_dir=tmp_path / "topics", smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_timeout=5,
        smtp_from="briefcast <brief@briefs.example>", summarizer="extractive")))


def _deliveries(world: World):
    from digest.delivery import deliveries_for
    from datetime import UTC, datetime

    return deliveries_for(world.sessions, topic="faults", day=datetime.now(UTC).date().isoformat())


def _briefs(world: World) -> int:
    import sqlalchemy as sa

    from store.models import Brief

    with world.sessions() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Brief).where(Brief.topic == "faults"))


def test_smtp_down_then_up_the_brief_is_sent_once_late(tmp_path, redis_server, pg_url, farm):
    from tests.email_helpers import SmtpServer

    import time

    world = brief_world(tmp_path, pg_url)
    smtp = SmtpServer()  # its port is chosen, but nothing listens there yet: connection refused
    env = brief_env(tmp_path, pg_url, redis_server.url, smtp.port)
    try:
        worker = farm(worker_process("worker", "fetch,embed,summarise,deliver", env, tmp_path / "logs"))
        beat = farm(beat_process("beat", env, tmp_path / "logs"))
        refused = wait_until(lambda: [d for d in _deliveries(world) if d.error], 120,
                             f"a delivery attempt against the closed port\n{worker.tail()}\n{beat.tail()}")
        down_at = time.monotonic()
        time.sleep(3)  # a few more refused attempts
        smtp.start()
        sent = wait_until(lambda: [d for d in _deliveries(world) if d.status == "sent"], 120,
                          f"the brief sent once the server is up\n{worker.tail()}")
        late = time.monotonic() - down_at
        time.sleep(6)  # three more beat ticks: nothing more may be sent
        rows = _deliveries(world)
        print("\nFAULT SMTP down then up: " + json.dumps({
            "messages_received": len(smtp.received), "delivery_rows": len(rows), "attempts": sent[0].attempts,
            "first_error": refused[0].error, "seconds_from_first_refusal_to_sent": round(late, 1),
            "briefs": _briefs(world)}))
        assert len(smtp.received) == 1 and len(rows) == 1 and rows[0].status == "sent"
        assert sent[0].attempts >= 2, "the first attempt cannot have succeeded: the server was down"
        assert smtp.received[0].message["Message-ID"] == rows[0].message_id
        assert _briefs(world) == 1
    finally:
        smtp.stop()
        world.close()


def test_two_beat_schedulers_send_one_brief(tmp_path, redis_server, pg_url, farm):
    from tests.email_helpers import SmtpServer

    import time

    world = brief_world(tmp_path, pg_url)
    smtp = SmtpServer().start()
    env = brief_env(tmp_path, pg_url, redis_server.url, smtp.port)
    try:
        worker = farm(worker_process("worker", "fetch,embed,summarise,deliver", env, tmp_path / "logs", concurrency=2))
        beats = [farm(beat_process(f"beat{n}", env, tmp_path / "logs")) for n in (1, 2)]
        wait_until(lambda: smtp.received, 120, f"the brief\n{worker.tail()}")
        time.sleep(8)  # four more ticks of each beat
        ticks = [p.log.read_text().count("briefcast.briefs_due") for p in beats]
        rows = _deliveries(world)
        print("\nFAULT two beat schedulers: " + json.dumps({
            "briefs_due_sent_by_each_beat": ticks, "messages_received": len(smtp.received),
            "delivery_rows": len(rows), "briefs": _briefs(world)}))
        assert all(t >= 2 for t in ticks), "both beats must have been ticking"
        assert len(smtp.received) == 1 and len(rows) == 1 and _briefs(world) == 1
    finally:
        smtp.stop()
        world.close()
