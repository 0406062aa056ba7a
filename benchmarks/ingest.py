"""Ingest benchmark: refresh throughput over N feed URLs on loopback, and feed-parser speed.

What it measures, in one run, and prints as one table:

1. First refresh of N feed URLs (``refresh(force=True)``: fetch 200, parse, store): wall seconds,
   feeds/minute, new items, failures.
2. Second refresh (``force=True`` again): every feed answers 304 to its ETag. Wall seconds and
   feeds/minute; the target is >= 2,000 feeds/minute on 2 cores.
3. Parse time over the distinct corpus files (not the N copies): feedparser through our
   ``run_feedparser``, our whole ``parse_feed``, and ``fastfeedparser.parse(bytes)`` (which raises
   on some feeds: counted), each timed after one untimed warm-up round. On feeds both parsers
   read, the entry counts and the share of entries whose title and link agree, position by
   position (whitespace normalised).
4. Peak RSS of this process (``resource.getrusage``).

The N URLs are hard links (or copies) of the corpus feeds under ``../shared/corpus/feeds`` that our
``parse_feed`` reads to at least one entry, each under its own path (``/f0001/<name>``), served by
``ingest.localserver.LocalServer`` with the ``Header:`` lines feedparser's test files ask for.
By default the server runs in a child process, so its request handling does not compete with the
refresher for this process's GIL (real feed servers live elsewhere); ``--server thread`` keeps it
in-process. All URLs share one host, so per-host concurrency defaults to the overall concurrency:
a thousand real feeds spread over hundreds of hosts, and a per-host cap of 2 on one loopback host
would become a global cap of 2.

Run from the repository root (``--db postgresql`` creates and drops ``briefcast_bench_<random>``):

    .venv/bin/python -m benchmarks.ingest [--feeds 1000] [--db sqlite|postgresql]
        [--concurrency 16] [--per-host N] [--server process|thread] [--profile-304 FILE.pstats]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fastfeedparser
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.localserver import TYPES, LocalServer
from ingest.parse import NotAFeedError, parse_feed, run_feedparser
from ingest.refresh import RefreshReport, Refresher, refresh
from store import repo
from store.db import open_database, scratch_postgres_database
from store.models import Item
from store.settings import Settings
from tests.conftest import CORPUS, PG_ADMIN_URL, corpus_headers  # one definition of how the corpus is served

FEED_SUFFIXES = {".xml", ".rss", ".atom", ".rdf", ".json"}
EXPECTED_OUTPUT_DIRS = {"output"}  # rss-parser/output/*.json are expected results, not feeds
TARGET_304_PER_MINUTE = 2000

# feedparser 6 warns on every entry about its updated/published fallback; we read both.
warnings.filterwarnings("ignore", "To avoid breaking existing software", DeprecationWarning)


# --- the corpus and the served site ---------------------------------------------------------


@dataclass(frozen=True)
class CorpusFeed:
    path: Path
    name: str  # path relative to the corpus folder
    body: bytes
    headers: dict[str, str]  # lower-case, as LocalServer serves the file


def served_headers(path: Path) -> dict[str, str]:
    headers = {"content-type": TYPES.get(path.suffix.lower(), "application/octet-stream")}
    return headers | {k.lower(): v for k, v in corpus_headers(path).items()}


def is_candidate(path: Path, folder: Path) -> bool:
    relative = path.relative_to(folder)
    return (path.is_file() and path.suffix.lower() in FEED_SUFFIXES and not path.name.endswith(".serde.json")
            and not EXPECTED_OUTPUT_DIRS & set(relative.parts[:-1]))


def yields_entries(feed: CorpusFeed) -> bool:
    try:
        return bool(parse_feed(feed.body, url=f"http://127.0.0.1/{feed.name}", headers=feed.headers).entries)
    except NotAFeedError:
        return False


def corpus_feeds(folder: Path) -> list[CorpusFeed]:
    """The corpus files that parse to at least one entry, in a stable order."""
    found = []
    for path in sorted(folder.rglob("*")):
        if is_candidate(path, folder):
            feed = CorpusFeed(path, str(path.relative_to(folder)), path.read_bytes(), served_headers(path))
            if yields_entries(feed):
                found.append(feed)
    return found


def place(source: Path, target: Path) -> None:
    """Hard link, else copy: LocalServer refuses symlinks that resolve outside its root."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def build_site(feeds: list[CorpusFeed], count: int, root: Path) -> list[str]:
    """`count` distinct URL paths, cycling through the corpus feeds."""
    paths = []
    for i in range(count):
        feed = feeds[i % len(feeds)]
        relative = f"f{i + 1:04d}/{feed.path.name}"
        place(feed.path, root / relative)
        paths.append("/" + relative)
    return paths


def _serve_until_told(root: str, conn) -> None:
    with LocalServer(Path(root), render=False, extra_headers=corpus_headers) as server:
        conn.send(server.base_url)
        conn.recv()


@contextmanager
def feed_server(root: Path, mode: str) -> Iterator[str]:
    """Serve `root` on loopback, in a child process or a thread of this one; yields the base URL."""
    if mode == "thread":
        with LocalServer(root, render=False, extra_headers=corpus_headers) as server:
            yield server.base_url
        return
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=_serve_until_told, args=(str(root), theirs), daemon=True)
    process.start()
    theirs.close()  # so that recv() raises EOFError instead of waiting if the server dies
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)


# --- the database -----------------------------------------------------------------------------


@contextmanager
def bench_database(kind: str, workdir: Path, admin_url: str) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in `workdir`, or a new PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    with scratch_postgres_database(admin_url, "briefcast_bench") as url:
        yield url


def register_sources(sessions: sessionmaker[Session], urls: list[str]) -> None:
    with sessions() as session, session.begin():
        for url in urls:
            repo.add_source(session, url, kind="feed")


def stored_items(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Item)) or 0


# --- refresh passes ---------------------------------------------------------------------------


@dataclass
class PassFigures:
    label: str
    seconds: float
    report: RefreshReport

    @property
    def feeds(self) -> int:
        return len(self.report.sources)

    @property
    def per_minute(self) -> float:
        return self.feeds / self.seconds * 60 if self.seconds else 0.0

    @property
    def statuses(self) -> Counter[str]:
        return Counter(o.status for o in self.report.sources)


def timed_refresh(label: str, settings: Settings, sessions: sessionmaker[Session]) -> PassFigures:
    started = time.perf_counter()
    report = refresh(settings, sessions, force=True)
    return PassFigures(label, time.perf_counter() - started, report)


def profiled_refresh(label: str, settings: Settings, sessions: sessionmaker[Session], out: Path) -> PassFigures:
    """`refresh(force=True)` under cProfile on the event-loop thread and on every worker thread.

    cProfile sees one thread only, and the database writes run in `asyncio.to_thread` workers, so
    each worker of the (otherwise default-sized) executor starts its own profiler; all are merged.
    """
    profiles: list[cProfile.Profile] = []

    def start_profiler() -> None:
        profiles.append(profiler := cProfile.Profile())
        profiler.enable()

    async def run() -> RefreshReport:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(initializer=start_profiler))
        start_profiler()
        return await Refresher(settings, sessions).run(force=True)

    started = time.perf_counter()
    report = asyncio.run(run())
    seconds = time.perf_counter() - started
    stats = pstats.Stats(*profiles)
    stats.dump_stats(out)
    return PassFigures(label + " (profiled)", seconds, report)


# --- parser comparison ------------------------------------------------------------------------


@dataclass
class ParserRun:
    name: str
    seconds: float = 0.0
    raised: int = 0
    results: list = field(default_factory=list)  # one per feed; None when the parser raised


def warm_up(parse: Callable[[CorpusFeed], object], feeds: list[CorpusFeed]) -> None:
    """One untimed round: lazy imports (fastfeedparser loads dateparser on first use) and caches."""
    for feed in feeds:
        try:
            parse(feed)
        except Exception:
            pass


def time_parser(name: str, parse: Callable[[CorpusFeed], object], feeds: list[CorpusFeed]) -> ParserRun:
    """Every file once, timed per call, after one warm-up round."""
    warm_up(parse, feeds)
    run = ParserRun(name)
    for feed in feeds:
        started = time.perf_counter()
        try:
            result = parse(feed)
        except Exception:  # fastfeedparser raises on feeds it gives up on: that is what we count
            result = None
            run.raised += 1
        run.seconds += time.perf_counter() - started
        run.results.append(result)
    return run


def parse_with_feedparser(feed: CorpusFeed):
    return run_feedparser(feed.body, url=f"http://127.0.0.1/{feed.name}", headers=feed.headers)


def parse_with_ours(feed: CorpusFeed):
    return parse_feed(feed.body, url=f"http://127.0.0.1/{feed.name}", headers=feed.headers)


def parse_with_fastfeedparser(feed: CorpusFeed):
    return fastfeedparser.parse(feed.body)


def norm(value) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def feedparser_pairs(parsed) -> list[tuple[str, str]] | None:
    """(title, link) per entry, or None when feedparser found no feed (it never raises)."""
    if parsed is None or (not parsed.get("version") and not parsed.entries):
        return None
    return [(norm(e.get("title")), norm(e.get("link"))) for e in parsed.entries]


def ours_pairs(parsed) -> list[tuple[str, str]] | None:
    return None if parsed is None else [(norm(e.title), norm(e.url)) for e in parsed.entries]


def fastfeedparser_pairs(parsed) -> list[tuple[str, str]] | None:
    return None if parsed is None else [(norm(e.get("title")), norm(e.get("link"))) for e in parsed.get("entries", [])]


@dataclass
class Agreement:
    label: str
    feeds: int = 0  # feeds both parsers read
    same_count: int = 0  # ...with the same number of entries
    entries_left: int = 0
    entries_right: int = 0
    paired: int = 0  # entries compared position by position
    titles: int = 0
    links: int = 0
    both: int = 0

    def add(self, left: list[tuple[str, str]], right: list[tuple[str, str]]) -> None:
        self.feeds += 1
        self.same_count += len(left) == len(right)
        self.entries_left += len(left)
        self.entries_right += len(right)
        for (title_l, link_l), (title_r, link_r) in zip(left, right):
            self.paired += 1
            self.titles += title_l == title_r
            self.links += link_l == link_r
            self.both += title_l == title_r and link_l == link_r


def agreement(label: str, left: list, right: list) -> Agreement:
    result = Agreement(label)
    for a, b in zip(left, right):
        if a is not None and b is not None:
            result.add(a, b)
    return result


@dataclass
class ParseComparison:
    files: int
    megabytes: float
    runs: list[ParserRun]
    agreements: list[Agreement]


def compare_parsers(feeds: list[CorpusFeed]) -> ParseComparison:
    feedparser_run = time_parser("feedparser 6 (run_feedparser)", parse_with_feedparser, feeds)
    ours_run = time_parser("feedparser 6 (our parse_feed)", parse_with_ours, feeds)
    fast_run = time_parser(f"fastfeedparser {fastfeedparser.__version__}", parse_with_fastfeedparser, feeds)
    fast = [fastfeedparser_pairs(r) for r in fast_run.results]
    agreements = [
        agreement("A run_feedparser, B fastfeedparser", [feedparser_pairs(r) for r in feedparser_run.results],
                  fast),
        agreement("A parse_feed, B fastfeedparser", [ours_pairs(r) for r in ours_run.results], fast),
    ]
    size = sum(len(f.body) for f in feeds) / 1e6
    return ParseComparison(len(feeds), size, [feedparser_run, ours_run, fast_run], agreements)


# --- output -----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {cores} cores (nproc), Python {platform.python_version()}, {platform.platform()}, "
            f"load avg {load} at start")


def print_passes(passes: list[PassFigures], items: int) -> None:
    print(f"{'refresh pass':<34}{'feeds':>7}{'seconds':>9}{'feeds/min':>11}  outcomes")
    for p in passes:
        outcomes = ", ".join(f"{status} {p.statuses[status]}" for status in ("new", "not_modified", "failed"))
        print(f"{p.label:<34}{p.feeds:>7}{p.seconds:>9.2f}{p.per_minute:>11,.0f}  {outcomes}; "
              f"new items {p.report.new_items:,}")
    print(f"items stored after both passes: {items:,}")
    last = passes[-1]
    verdict = "met" if last.per_minute >= TARGET_304_PER_MINUTE else "MISSED"
    all_304 = "" if last.statuses["not_modified"] == last.feeds else " (but not every feed answered 304)"
    print(f"304-pass target >= {TARGET_304_PER_MINUTE:,} feeds/min: {verdict}{all_304}")
    for p in passes:
        for o in [o for o in p.report.sources if o.status == "failed"][:5]:
            print(f"  failed in {p.label}: {o.url.rsplit('/', 2)[-2:]} {o.error}")


def share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def print_parsers(cmp: ParseComparison) -> None:
    print(f"\nparsers over {cmp.files} distinct corpus files ({cmp.megabytes:.1f} MB)")
    print(f"{'parser':<34}{'total s':>9}{'ms/feed':>9}{'feeds/s':>9}{'raised':>8}{'vs fast':>9}")
    fast = cmp.runs[-1].seconds
    for run in cmp.runs:
        print(f"{run.name:<34}{run.seconds:>9.3f}{run.seconds / cmp.files * 1000:>9.2f}"
              f"{cmp.files / run.seconds:>9.0f}{run.raised:>8}{run.seconds / fast:>8.1f}x")
    print(f"{'entry agreement, feeds both read':<34}{'feeds':>6}{'same n':>8}{'entries A/B':>13}"
          f"{'title':>8}{'link':>8}{'both':>8}")
    for a in cmp.agreements:
        print(f"{a.label:<34}{a.feeds:>6}{a.same_count:>8}{f'{a.entries_left}/{a.entries_right}':>13}"
              f"{share(a.titles, a.paired):>8}{share(a.links, a.paired):>8}{share(a.both, a.paired):>8}")


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000, help="distinct feed URLs to refresh")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="PostgreSQL admin URL (a database to connect to)")
    parser.add_argument("--concurrency", type=int, default=Settings.model_fields["concurrency"].default)
    parser.add_argument("--per-host", type=int, default=None, help="per-host concurrency (default: --concurrency)")
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--corpus", type=Path, default=CORPUS / "feeds")
    parser.add_argument("--profile-304", type=Path, default=None, metavar="FILE",
                        help="run the 304 pass under cProfile (all threads) and write pstats to FILE")
    return parser.parse_args(argv)


def bench_settings(args: argparse.Namespace, workdir: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=workdir, database_url=db_url, allow_private_addresses=True, fetch_full_text=False,
        concurrency=args.concurrency, per_host_concurrency=args.per_host or args.concurrency,
    )


def run_refresh_passes(args, feeds: list[CorpusFeed], workdir: Path, db_url: str) -> tuple[list[PassFigures], int]:
    paths = build_site(feeds, args.feeds, workdir / "site")
    settings = bench_settings(args, workdir, db_url)
    sessions = open_database(db_url)
    try:
        with feed_server(workdir / "site", args.server) as base_url:
            register_sources(sessions, [base_url + p for p in paths])
            first = timed_refresh("1st pass (200, parse, store)", settings, sessions)
            if args.profile_304:
                second = profiled_refresh("2nd pass (304)", settings, sessions, args.profile_304)
            else:
                second = timed_refresh("2nd pass (304)", settings, sessions)
        return [first, second], stored_items(sessions)
    finally:
        sessions.kw["bind"].dispose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(machine_line())
    started = time.perf_counter()
    feeds = corpus_feeds(args.corpus)
    print(f"corpus: {len(feeds)} feed files with entries under {args.corpus} "
          f"(selected in {time.perf_counter() - started:.1f} s); {args.feeds} URLs, db {args.db}, "
          f"server in a {args.server}, concurrency {args.concurrency}, per host {args.per_host or args.concurrency}\n")
    with tempfile.TemporaryDirectory(prefix="briefcast-bench-") as tmp, \
            bench_database(args.db, Path(tmp), args.pg_url) as db_url:
        passes, items = run_refresh_passes(args, feeds, Path(tmp), db_url)
    print_passes(passes, items)
    rss_after_refresh = peak_rss_mb()
    print_parsers(compare_parsers(feeds))
    print(f"\npeak RSS: {rss_after_refresh:.0f} MB after the refresh passes, {peak_rss_mb():.0f} MB at the end; "
          f"load avg {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    if args.profile_304:
        print(f"profile of the 304 pass: {args.profile_304} (python -m pstats {args.profile_304})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
