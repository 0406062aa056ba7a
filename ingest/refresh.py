"""Refresh every due source: fetch, parse, enrich (full text, transcripts), store. One broken
source never stops the others: each outcome is recorded, with a readable reason when it failed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ingest.content import RobotsCache, fill_full_text, needs_full_text
from ingest.fetch import FetchResult, Fetcher
from ingest.parse import NotAFeedError, ParsedFeed, parse_feed
from ingest.threads import ThreadError, parse_thread
from ingest.transcripts import TranscriptError, choose_transcript, parse_transcript, transcript_format
from store import repo
from store.entry import Entry, Kind, entry_hash, transcript_text
from store.models import FetchAttempt, Source
from store.settings import Settings

log = logging.getLogger(__name__)
MAX_PAGES_PER_SOURCE = 50  # full-text fetches per source per run: polite to one publisher
STORE_TRIES = 3  # writes of one source's rows when another writer keeps storing the same items first


@dataclass
class SourceOutcome:
    source_id: int
    url: str
    status: str  # new | not_modified | failed
    new_items: int = 0
    updated_items: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    http_status: int | None = None
    seconds: float = 0.0
    title: str | None = None
    discovered_url: str | None = None  # the feed an HTML page pointed to; the source moves there


@dataclass
class RefreshReport:
    sources: list[SourceOutcome]

    @property
    def new_items(self) -> int:
        return sum(o.new_items for o in self.sources)

    def count(self, status: str) -> int:
        return sum(1 for o in self.sources if o.status == status)

    def as_json(self) -> dict:
        return {
            "sources": [
                {k: v for k, v in asdict(o).items() if k in ("url", "status", "new_items", "error",
                                                              "updated_items", "http_status", "title")}
                for o in self.sources
            ],
            "new_items": self.new_items,
            "not_modified": self.count("not_modified"),
            "failed": self.count("failed"),
        }


@dataclass(frozen=True)
class _Snapshot:
    id: int
    url: str
    kind: str
    etag: str | None
    last_modified: str | None


class Refresher:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._write_lock = asyncio.Lock()  # one writer: SQLite allows no more, PostgreSQL needs no more
        self.schedule = repo.Schedule(
            refresh=timedelta(minutes=settings.refresh_minutes),
            max_backoff=timedelta(minutes=settings.max_backoff_minutes),
        )

    async def run(
        self,
        *,
        force: bool = False,
        source_ids: list[int] | None = None,
        on_done: Callable[[SourceOutcome], None] | None = None,
    ) -> RefreshReport:
        snapshots = await asyncio.to_thread(self._load_due, force, source_ids)
        async with Fetcher(self.settings) as fetcher:
            robots = RobotsCache(fetcher, self.settings.user_agent) if self.settings.respect_robots else None

            async def one(snap: _Snapshot) -> SourceOutcome:
                outcome = await self._refresh_one(snap, fetcher, robots)
                if on_done:
                    on_done(outcome)
                return outcome

            outcomes = await asyncio.gather(*(one(s) for s in snapshots))
        return RefreshReport(list(outcomes))

    def _load_due(self, force: bool, source_ids: list[int] | None) -> list[_Snapshot]:
        with self.sessions() as session:
            sources = repo.due_sources(session, datetime.now(UTC), force=force)
            return [
                _Snapshot(s.id, s.url, s.kind, s.etag, s.last_modified)
                for s in sources
                if source_ids is None or s.id in source_ids
            ]

    async def _refresh_one(self, snap: _Snapshot, fetcher: Fetcher, robots: RobotsCache | None) -> SourceOutcome:
        started = time.perf_counter()
        outcome = SourceOutcome(snap.id, snap.url, status="failed")
        attempt = FetchAttempt(status="failed")
        retry_after, network = None, 0.0
        try:
            result = await fetcher.get(snap.url, etag=snap.etag, last_modified=snap.last_modified)
            network = result.elapsed
            outcome.http_status = attempt.http_status = result.status
            attempt.bytes_read = len(result.body)
            retry_after = result.retry_after
            parsed = await self._handle(snap, result, fetcher, robots, outcome, attempt)
        except Exception as exc:  # a bug or a library surprise must not stop the other sources
            log.exception("refreshing %s failed", snap.url)
            outcome.status, outcome.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
            parsed = None
        attempt.status, attempt.error = outcome.status, outcome.error
        attempt.duration_ms = network * 1000  # the feed request itself, not the wait for a slot
        outcome.seconds = time.perf_counter() - started
        try:
            await self._store(snap, parsed, attempt, outcome, retry_after)
        except Exception as exc:  # the database refused this source's rows: record it, go on
            log.exception("storing %s failed", snap.url)
            outcome.status, outcome.error = "failed", f"storing failed: {_database_reason(exc)}"
            outcome.new_items = outcome.updated_items = 0
            failed = FetchAttempt(status="failed", http_status=attempt.http_status, error=outcome.error,
                                  duration_ms=attempt.duration_ms, bytes_read=attempt.bytes_read)
            await self._store(snap, None, failed, outcome, retry_after)
        return outcome

    async def _handle(self, snap, result: FetchResult, fetcher, robots, outcome, attempt):
        if result.error:
            outcome.error = result.error
            return None
        if result.not_modified:
            outcome.status = "not_modified"
            attempt.etag, attempt.last_modified = snap.etag, snap.last_modified
            return None
        try:
            parsed, served = await self._parse(snap, result, fetcher, outcome)
        except (NotAFeedError, ThreadError) as exc:
            outcome.error = f"{exc}"
            return None
        # Validators of what was parsed: after autodiscovery, the feed's, not the page's.
        attempt.etag, attempt.last_modified = served.etag, served.last_modified
        if parsed.warning:
            outcome.warnings.append(parsed.warning)
        outcome.status, outcome.title = "new", parsed.title
        hashes = await self._enrich(snap, parsed.entries, fetcher, robots, outcome)
        return parsed, hashes

    async def _parse(self, snap: _Snapshot, result: FetchResult, fetcher: Fetcher, outcome
                     ) -> tuple[ParsedFeed, FetchResult]:
        if snap.kind == "thread":
            entries = await asyncio.to_thread(
                parse_thread, result.body, source_url=snap.url, content_type=result.content_type
            )
            return ParsedFeed(format="thread", entries=entries), result
        try:
            return await asyncio.to_thread(parse_feed, result.body, url=result.final_url, headers=result.headers), result
        except NotAFeedError as exc:
            if not exc.feed_links:
                raise
            # Autodiscovery: the URL is a web page that advertises its feed.
            found = await fetcher.get(exc.feed_links[0])
            if not found.ok:
                raise NotAFeedError(f"{exc}; fetching it failed: {found.error or found.status}") from None
            outcome.warnings.append(f"HTML page; read the feed it advertises: {exc.feed_links[0]}")
            outcome.discovered_url = found.final_url
            return await asyncio.to_thread(parse_feed, found.body, url=found.final_url, headers=found.headers), found

    async def _enrich(self, snap, entries: list[Entry], fetcher, robots, outcome) -> dict[int, str]:
        """Full text for teasers and transcripts for episodes, only for entries not stored as they are.

        Returns each entry's hash as the feed gave it, before enrichment changes its text.
        """
        known = await asyncio.to_thread(self._known_hashes, snap.id)
        hashes = {id(e): entry_hash(e) for e in entries}
        fresh = [e for e in entries if hashes[id(e)] not in known]
        teasers = [e for e in fresh if self.settings.fetch_full_text
                   and needs_full_text(e, self.settings.full_text_min_words)][:MAX_PAGES_PER_SOURCE]
        episodes = [e for e in fresh if e.kind == Kind.EPISODE and e.transcripts]
        notes = await asyncio.gather(
            *(fill_full_text(e, fetcher, robots) for e in teasers),
            *(self._fill_transcript(e, fetcher) for e in episodes),
            return_exceptions=True,
        )
        for note in notes:
            if isinstance(note, BaseException):
                outcome.warnings.append(f"enrichment error: {type(note).__name__}: {note}")
            elif note:
                outcome.warnings.append(note)
        return hashes

    def _known_hashes(self, source_id: int) -> set[str]:
        with self.sessions() as session:
            return repo.known_entry_hashes(session, source_id)

    async def _fill_transcript(self, entry: Entry, fetcher: Fetcher) -> str | None:
        """Read the best published transcript; on failure try the next best."""
        candidates = list(entry.transcripts)
        problems = []
        while (ref := choose_transcript(candidates, entry.language or self.settings.transcript_language)) is not None:
            candidates.remove(ref)
            got = await fetcher.get(ref.url, accept=ref.type or "*/*")
            if not got.ok:
                problems.append(f"{ref.url}: {got.error or got.status}")
                continue
            try:
                fmt = transcript_format(ref.type, ref.url)
                segments = await asyncio.to_thread(parse_transcript, got.body, fmt)
            except TranscriptError as exc:
                problems.append(f"{ref.url}: {exc}")
                continue
            if segments:
                entry.segments, entry.transcript = segments, ref
                entry.text = transcript_text(segments)
                entry.text_source = "transcript"
                return None
        return f"no usable transcript for {entry.title!r}: {'; '.join(problems)}" if problems else None

    async def _store(self, snap, parsed: tuple[ParsedFeed, dict[int, str]] | None, attempt, outcome, retry_after) -> None:
        """Write one source's outcome in one transaction. Another process (a second `fetch --all`,
        a worker) may store the same new items between our read of what is stored and our insert:
        the database refuses the duplicate, and the write is done again, now finding those items
        already stored (unchanged, or updated if the two saw different versions)."""
        async with self._write_lock:
            for tries in range(1, STORE_TRIES + 1):
                try:
                    await asyncio.to_thread(self._write, snap, parsed, attempt, outcome, retry_after)
                    return
                except IntegrityError as exc:
                    if tries == STORE_TRIES:
                        raise
                    log.info("%s: another writer stored some of its items first (%s); writing again",
                             snap.url, _database_reason(exc))

    def _write(self, snap, parsed, attempt, outcome, retry_after) -> None:
        with self.sessions() as session, session.begin():
            source = session.get(Source, snap.id)
            if source is None:
                return  # removed while we fetched
            if parsed is not None:
                parsed, hashes = parsed
                stats = repo.upsert_entries(session, source, parsed.entries, hashes)
                outcome.new_items, outcome.updated_items = stats.new, stats.updated
                attempt.new_items, attempt.updated_items = stats.new, stats.updated
                source.title = source.title or parsed.title
                if outcome.discovered_url and not repo.source_exists(session, outcome.discovered_url):
                    source.url = outcome.discovered_url
                source.site_url = parsed.site_url or source.site_url
                source.language = parsed.language or source.language
            # A copy: a rolled-back try must not leave the attempt bound to a dead session.
            repo.record_attempt(session, source, _copy_attempt(attempt), self.schedule, retry_after)
            outcome.title = outcome.title or source.title


def _copy_attempt(attempt: FetchAttempt) -> FetchAttempt:
    columns = set(FetchAttempt.__table__.columns.keys()) - {"id", "source_id"}
    # Only what was set: an unset column keeps its default (started_at, bytes_read) on insert.
    return FetchAttempt(**{name: value for name, value in vars(attempt).items() if name in columns})


def _database_reason(exc: Exception) -> str:
    """What the database said, in one line: never the statement or its parameters (an item's text)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        said = str(exc.orig).strip().splitlines()
        return f"{type(exc.orig).__name__}: {said[0] if said else ''}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def refresh(settings: Settings, sessions: sessionmaker[Session], **kwargs) -> RefreshReport:
    """Blocking entry point for the CLI and Celery tasks."""
    return asyncio.run(Refresher(settings, sessions).run(**kwargs))
