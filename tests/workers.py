"""Real processes for the worker tests and the pipeline benchmark: a private redis-server on a free
port (never the shared 127.0.0.1:6379, which other tests use), Celery workers and beat as
subprocesses with their settings in BRIEFCAST_* variables, and a site of generated feeds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER = "/usr/bin/redis-server"
WORDS = ("export controls chips memory bandwidth open weights distillation sanctions datacentre "
         "policy compute supply chain lithography treaty alliance model release frontier").split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """Poll `check` until it returns something true; fail with `what` after `timeout` seconds.
    A liveness deadline, not a speed assertion: every wait here normally ends in seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class RedisServer:
    """Our own redis-server: no persistence, so a restart forgets every queued task."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError(f"{REDIS_SERVER} not found: these tests start their own Redis (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, 10, f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self):
        import redis

        return redis.Redis(port=self.port)


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}


def briefcast_env(data_dir: Path, db_url: str, broker_url: str, **settings) -> dict[str, str]:
    """The environment of a worker process: every setting as a BRIEFCAST_* variable."""
    values = dict(
        data_dir=data_dir, database_url=db_url, broker_url=broker_url, config=data_dir / "absent.toml",
        allow_private_addresses="true", encoder="fake", fetch_full_text="false", respect_robots="false",
        total_timeout=15, read_timeout=10, connect_timeout=5,
    ) | settings
    return clean_environ() | {f"BRIEFCAST_{k.upper()}": str(v) for k, v in values.items()}


class CeleryProcess:
    """`python -m celery -A worker ...` in its own process group, so kill -9 takes its pool too."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker", *self.args], cwd=ROOT,
                                        env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """kill -9 of the worker and every process of its pool, at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if not self.alive:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def worker_process(name: str, queues: str, env: dict[str, str], logs: Path, concurrency: int = 1) -> CeleryProcess:
    return CeleryProcess(["worker", "--pool=prefork", "-c", str(concurrency), "-Q", queues, "-n", f"{name}@%h",
                          "--without-gossip", "--without-mingle", "-l", "info"], env, logs / f"{name}.log")


def beat_process(name: str, env: dict[str, str], logs: Path) -> CeleryProcess:
    return CeleryProcess(["beat", "-l", "info", "-s", str(logs / f"{name}-schedule")], env, logs / f"{name}.log")


# --- a site of generated feeds ------------------------------------------------------------------


def item_text(feed: int, n: int, words: int = 120) -> str:
    picked = [WORDS[(feed * 7 + n * 3 + i * 5) % len(WORDS)] for i in range(words)]
    return f"Report {feed}-{n}. " + " ".join(picked) + "."


def rss(feed: int, items: int, base_url: str, words: int = 120, *,
        text: Callable[[int, int], str] | None = None, guid: Callable[[int, int], str] | None = None,
        every: timedelta = timedelta(hours=1)) -> bytes:
    """A generated RSS feed; `text` and `guid` (feed, n) -> str replace the default body and guid,
    `every` is the time between two items."""
    text = text or (lambda f, n: item_text(f, n, words))
    guid = guid or (lambda f, n: f"feed{f}-item{n}")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    entries = "".join(
        f"<item><title>Feed {feed} item {n}</title><link>{base_url}/feed{feed}/item{n}.html</link>"
        f"<guid isPermaLink=\"false\">{guid(feed, n)}</guid>"
        f"<pubDate>{format_datetime(now - every * n, usegmt=True)}</pubDate>"
        f"<description>{escape(text(feed, n))}</description></item>"
        for n in range(items))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
            f"<link>{base_url}/</link><description>generated</description>{entries}</channel></rss>").encode()


def write_site(root: Path, feeds: int, items: int, base_url: str) -> list[str]:
    """`feeds` RSS files of `items` items each under root; returns their URL paths."""
    paths = []
    for f in range(feeds):
        path = root / f"feed{f}" / "feed.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rss(f, items, base_url))
        paths.append(f"/feed{f}/feed.xml")
    return paths


class Gate:
    """A route that holds its requests until opened: lets a test kill a worker mid-fetch."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.opened = threading.Event()
        self.waiting = threading.Event()

    def __call__(self, handler) -> None:
        self.waiting.set()
        self.opened.wait(120)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/rss+xml")
            handler.send_header("Content-Length", str(len(self.body)))
            handler.end_headers()
            handler.wfile.write(self.body)
        except OSError:
            pass  # the worker that asked was killed


# --- what the pipeline stored ------------------------------------------------------------------


def pipeline_counts(sessions, index_dir: Path) -> dict[str, int]:
    """Items and passages in the database against the vectors in the committed index."""
    from sqlalchemy import func, select

    from embed.index import IndexStore
    from store.models import Item, Passage

    with sessions() as session:
        items = session.scalar(select(func.count()).select_from(Item))
        keys = session.scalar(select(func.count(func.distinct(Item.guid))))
        passage_ids = set(session.scalars(select(Passage.id)))
        embedded = session.scalar(select(func.count()).where(Passage.embedded_model.is_not(None)))
        unsplit = session.scalar(select(func.count()).where(
            Item.passages_hash.is_(None) | (Item.passages_hash != Item.content_hash)))
        without_passages = session.scalar(select(func.count()).select_from(Item).where(
            ~select(Passage.id).where(Passage.item_id == Item.id).exists()))
    index = IndexStore(index_dir).load() if (index_dir / "current.json").exists() else None
    ids = index.ids() if index is not None else []
    return {
        "items": items, "distinct_items": keys, "unsplit_items": unsplit, "items_without_passages": without_passages,
        "passages": len(passage_ids), "embedded": embedded,
        "index_vectors": len(ids), "index_distinct": len(set(ids)),
        "index_missing": len(passage_ids - set(ids)), "index_extra": len(set(ids) - passage_ids),
    }


def lost_and_duplicated(counts: dict[str, int], expected_items: int) -> tuple[int, int]:
    """Items lost (expected but not stored, or stored but not indexed) and duplicated (stored or
    indexed twice)."""
    lost = (max(0, expected_items - counts["distinct_items"]) + counts["items_without_passages"]
            + counts["index_missing"])
    duplicated = (counts["items"] - counts["distinct_items"]) + (counts["index_vectors"] - counts["index_distinct"])
    return lost, duplicated


def settled(sessions, index_dir: Path, expected_items: int) -> dict[str, int] | None:
    """The counts once every expected item is stored and every passage embedded and indexed."""
    counts = pipeline_counts(sessions, index_dir)
    done = (counts["distinct_items"] >= expected_items and counts["unsplit_items"] == 0
            and counts["embedded"] == counts["passages"] and counts["index_missing"] == 0)
    return counts if done else None


def send(broker_url: str, task: str, *args, queue: str) -> None:
    """Enqueue a task by name, as any producer would (a fresh client: no app state shared)."""
    from celery import Celery

    client = Celery("briefcast-test", broker=broker_url)
    client.conf.update(task_serializer="json", accept_content=["json"])
    try:
        client.send_task(task, args=list(args), queue=queue)
    finally:
        client.close()
