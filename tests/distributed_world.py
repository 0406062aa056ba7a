"""Two machines that share no disk (issue 14), as real processes: each has its own data directory,
its own `briefcast serve` and its own Celery embed worker; they share only PostgreSQL and a private
Redis. Every process runs with BRIEFCAST_INDEX_SOURCE=database. Machine A also runs beat and the
CLI (`briefcast fetch --all`) against a loopback site of generated feeds in which every item
carries a word of its own (`code_word`), so a search can name exactly one item."""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, text

from ingest.localserver import LocalServer
from store import repo
from store.db import open_database
from store.models import Item, Passage, PassageVector
from tests.serve_process import briefcast_serve
from tests.workers import (
    WORDS,
    CeleryProcess,
    RedisServer,
    beat_process,
    briefcast_env,
    rss,
    worker_process,
)

BRIEFCAST = Path(sys.executable).parent / "briefcast"
FAKE_MODEL = "fake-hash-384"  # embed.runtime.KNOWN_PASSAGE_MODELS["fake"]

# Every process of the world: the database index, a fast mirror, small embed transactions (so
# killing a worker lands inside one), beat's embed tick every 3 s, a dead worker's task back soon.
DISTRIBUTED = dict(
    index_source="database",
    mirror_sync_seconds=0.5,
    mirror_check_seconds=5,
    embed_batch=4,
    worker_embed_every_seconds=3,
    visibility_timeout=6,
    unacked_restore_seconds=1,
    worker_lease_seconds=5,
    worker_refresh_check_seconds=86400,  # fetching is the CLI's job on machine A here
    worker_briefs_check_seconds=86400,
    worker_asr_every_seconds=86400,
)


# --- feeds whose items each hold a word no other item has ----------------------------------------


def code_word(feed: int, n: int) -> str:
    """'qz' + the feed and item numbers spelled in letters (a-j): one lexeme, one token, unique."""
    spell = lambda number: "".join("abcdefghij"[int(d)] for d in f"{number:03d}")  # noqa: E731
    return f"qz{spell(feed)}x{spell(n)}"


def guid(feed: int, n: int) -> str:
    return f"dist{feed}-item{n}"


def item_body(feed: int, n: int, words: int = 50) -> str:
    """Short enough for one passage and a query of its whole text (MAX_QUERY_CHARS)."""
    picked = [WORDS[(feed * 7 + n * 3 + i * 5) % len(WORDS)] for i in range(words)]
    return f"Dispatch {code_word(feed, n)}. " + " ".join(picked) + "."


def unique_rss(feed: int, items: int, base_url: str) -> bytes:
    return rss(feed, items, base_url, text=item_body, guid=guid, every=timedelta(minutes=1))


# --- one machine: a data directory of its own and the processes that use it --------------------


@dataclass
class Machine:
    name: str
    data_dir: Path
    env: dict[str, str]
    api: str = ""  # base URL of its `briefcast serve`, once started

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """`briefcast <args>` as this machine's operator runs it; fails with its output."""
        done = subprocess.run([str(BRIEFCAST), *args], cwd=self.data_dir, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"{self.name}: briefcast {' '.join(args)} -> {done.returncode}\n" \
                                     f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def index_files(self) -> list[Path]:
        """What a files-mode index would have left here: FAISS files, keyword directories,
        current.json. In database mode there must be none."""
        patterns = ("*.faiss", "*.faiss.*", "keywords-*", "current.json", "meta.json")
        return sorted({p for pattern in patterns for p in self.data_dir.rglob(pattern)})


@dataclass
class Site:
    """Generated feeds on a loopback server; `items[guid] = (feed, n)`."""

    root: Path
    server: LocalServer
    feeds: int = 0
    items: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add_feeds(self, count: int, items: int) -> list[str]:
        urls = []
        for feed in range(self.feeds, self.feeds + count):
            path = self.root / f"feed{feed}" / "feed.xml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(unique_rss(feed, items, self.server.base_url))
            urls.append(self.server.url(f"/feed{feed}/feed.xml"))
            self.items.update({guid(feed, n): (feed, n) for n in range(items)})
        self.feeds += count
        return urls


class DistributedWorld:
    """Redis, the feed site, machines A and B (API + embed worker each; beat on A). `close()` stops
    every process it started (and only those), whatever state they are in."""

    def __init__(self, workdir: Path, db_url: str) -> None:
        self.workdir, self.db_url = workdir, db_url
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._stack = ExitStack()
        self.workers: dict[str, CeleryProcess] = {}
        self.redis = RedisServer(workdir / "redis")
        self.site: Site | None = None
        self.machines: dict[str, Machine] = {}
        self.sessions = None
        self.key = ""

    # -- start and stop ---------------------------------------------------------------------------

    def start(self) -> DistributedWorld:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.redis.start()
        self._stack.callback(self.redis.stop)
        server = LocalServer(self.workdir / "site", render=False).start()
        self._stack.callback(server.stop)
        self.site = Site(self.workdir / "site", server)
        for name in ("a", "b"):
            data = self.workdir / f"machine-{name}"
            data.mkdir(parents=True)
            self.machines[name] = Machine(name, data, briefcast_env(data, self.db_url, self.redis.url, **DISTRIBUTED))
        a, b = self.machines["a"], self.machines["b"]
        a.cli("db", "upgrade")  # the schema changes once, by one command, before anything else starts
        self.sessions = open_database(self.db_url)
        self._stack.callback(lambda: self.sessions.kw["bind"].dispose())
        self.key = b.cli("apikey", "create", "--name", "distributed test").stdout.strip().splitlines()[-1]
        for machine in (a, b):
            machine.api, _ = self._stack.enter_context(
                briefcast_serve(machine.env, self.logs / f"serve-{machine.name}.log"))
        for machine in (a, b):
            self.start_worker(machine.name)
        beat = beat_process("beat-a", a.env, self.logs).start()
        self._stack.callback(beat.stop)

    def start_worker(self, machine: str) -> CeleryProcess:
        """The embed worker of this machine (again, after a kill: a new process, same log). Its
        database connections carry application_name embed-<machine> (see `in_transaction`)."""
        env = self.machines[machine].env | {
            "BRIEFCAST_DATABASE_URL": f"{self.db_url}?application_name=embed-{machine}"}
        process = worker_process(f"embed-{machine}", "embed", env, self.logs)
        process.start()
        self._stack.callback(process.stop)  # stop() does nothing to a process already dead
        self.workers[machine] = process
        return process

    def close(self) -> None:
        self._stack.close()

    # -- feeding items in ---------------------------------------------------------------------------

    def add_and_fetch(self, feeds: int, items: int) -> None:
        """New feeds on the site, registered as sources and fetched by machine A's CLI."""
        urls = self.site.add_feeds(feeds, items)
        with self.sessions() as session, session.begin():
            for url in urls:
                repo.add_source(session, url)
        self.machines["a"].cli("fetch", "--all")

    # -- what the database holds ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """One statement, so one snapshot: separate counts taken while workers commit disagree."""
        with self.sessions() as session:
            row = session.execute(COUNTS, {"m": FAKE_MODEL}).mappings().one()
        return {k: int(v) for k, v in row.items()}

    def settled(self) -> dict[str, int] | None:
        """The counts once every fetched item is split and every passage has its vector."""
        counts = self.counts()
        done = (counts["distinct_guids"] >= len(self.site.items) and counts["unsplit_items"] == 0
                and counts["passages"] > 0 and counts["passages_without_vector"] == 0)
        return counts if done else None

    def in_transaction(self, machine: str) -> int:
        """How many of this machine's embed worker's connections are inside a transaction now."""
        with self.sessions() as session:
            return int(session.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND xact_start IS NOT NULL "
                "AND state IN ('active', 'idle in transaction')"), {"name": f"embed-{machine}"}))

    def vector_seqs(self) -> dict[int, int]:
        """passage id -> seq of its vector row (the fake model's)."""
        with self.sessions() as session:
            return {int(p): int(s) for p, s in session.execute(
                select(PassageVector.passage_id, PassageVector.seq).where(PassageVector.model_id == FAKE_MODEL))}

    def passages_of(self, guids: list[str]) -> dict[str, tuple[int, int, str]]:
        """guid -> (item id, passage id, passage text) of the first passage of each item."""
        with self.sessions() as session:
            rows = session.execute(select(Item.guid, Item.id, Passage.id, Passage.text)
                                   .join(Passage, Passage.item_id == Item.id)
                                   .where(Item.guid.in_(guids), Passage.position == 0)).all()
        return {g: (int(i), int(p), t) for g, i, p, t in rows}

    # -- the APIs -------------------------------------------------------------------------------------

    def search(self, machine: str, q: str, mode: str = "hybrid", k: int = 10) -> httpx.Response:
        return httpx.get(self.machines[machine].api + "/search", params={"q": q, "mode": mode, "k": k},
                         headers={"X-API-Key": self.key}, timeout=60)

    def health(self, machine: str) -> dict:
        response = httpx.get(self.machines[machine].api + "/health", timeout=30)
        response.raise_for_status()
        return response.json()

    def caught_up(self, machine: str) -> dict | None:
        """/health once this API's mirror holds a vector for every passage and is behind by none."""
        health = self.health(machine)
        lag = health.get("index_lag") or {}
        done = (lag.get("vectors_behind") == 0 and lag.get("tombstones_behind") == 0
                and health["index_count"] == health["passages"] > 0)
        return health if done else None

    def item_ids(self) -> dict[str, int]:
        """guid -> item id of every item stored."""
        with self.sessions() as session:
            return {g: int(i) for g, i in session.execute(select(Item.guid, Item.id))}

    def top_vector_hit(self, machine: str, passage_id: int, body: str) -> bool:
        """A vector query with the passage's own text has that passage first: the fake encoder gives
        it cosine 1, so this says the API's mirror holds its vector (keywords play no part)."""
        response = self.search(machine, body, mode="vector", k=1)
        assert response.status_code == 200, response.text
        top = response.json()["results"]
        return bool(top) and top[0]["passage_id"] == passage_id

    def finds(self, machine: str, guid_: str, item_id: int) -> bool:
        """The item is among the hits for its own word (hybrid: vectors and PostgreSQL full text)."""
        response = self.search(machine, code_word(*self.site.items[guid_]))
        return response.status_code == 200 and item_id in {h["item_id"] for h in response.json()["results"]}

    # -- embed tasks seen in a worker's log -------------------------------------------------------------

    def logs_tail(self) -> str:
        parts = [f"--- {p.log.name}\n{p.tail(25)}" for p in self.workers.values()]
        parts += [f"--- {log.name}\n{_tail(log)}" for log in sorted(self.logs.glob("serve-*.log"))]
        return "\n\n".join(parts)


COUNTS = text("""
SELECT
  (SELECT count(*) FROM items) AS items,
  (SELECT count(DISTINCT guid) FROM items) AS distinct_guids,
  (SELECT count(*) FROM items WHERE passages_hash IS NULL OR passages_hash <> content_hash) AS unsplit_items,
  (SELECT count(*) FROM passages) AS passages,
  (SELECT count(*) FROM passage_vectors WHERE model_id = :m) AS vector_rows,
  (SELECT count(DISTINCT passage_id) FROM passage_vectors WHERE model_id = :m) AS passages_with_vector,
  (SELECT count(*) FROM passages p WHERE NOT EXISTS
     (SELECT 1 FROM passage_vectors v WHERE v.passage_id = p.id AND v.model_id = :m)) AS passages_without_vector,
  (SELECT count(*) FROM passages WHERE embedded_model IS DISTINCT FROM :m) AS passages_unmarked
""")

_TASK_LINE = re.compile(r"Task briefcast\.embed\[([0-9a-f-]+)\] (received|succeeded|failed|raised|retry)")


def embeds_running(process: CeleryProcess, since: int) -> set[str]:
    """Ids of embed tasks this worker logged as received after byte `since` of its log and has not
    logged as finished."""
    try:
        with process.log.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace")
    except FileNotFoundError:
        return set()
    running: set[str] = set()
    for task_id, what in _TASK_LINE.findall(lines):
        (running.add if what == "received" else running.discard)(task_id)
    return running


def log_size(process: CeleryProcess) -> int:
    return process.log.stat().st_size if process.log.exists() else 0


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
