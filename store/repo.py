"""Repositories: the only place that turns domain objects into rows and back."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from store import caps
from store.entry import Entry, Segment, content_hash, entry_hash, stable_key, transcript_text
from store.models import FetchAttempt, Item, Passage, Source, Tombstone, TranscriptSegment

# --- sources ---------------------------------------------------------------------------------


def add_source(
    session: Session, url: str, *, kind: str = "feed", topic: str | None = None, title: str | None = None,
    weight: float | None = None,
) -> tuple[Source, bool]:
    """Returns (source, created). Adding an existing URL is not an error and changes only its
    weight, when one is given: a source list re-imported with a new weight is what the user meant."""
    existing = session.scalar(select(Source).where(Source.url == url))
    if existing is not None:
        if weight is not None:
            existing.weight = weight
        existing.active = True  # a removed source added again is fetched again (its tombstones still hold)
        return existing, False
    source = Source(url=url, kind=kind, topic=topic, title=title, weight=1.0 if weight is None else weight)
    session.add(source)
    session.flush()
    return source, True


def find_source(session: Session, id_or_url: str) -> Source | None:
    """A source by its id (digits) or its exact feed URL."""
    key = id_or_url.strip()
    if key.isdigit():
        return session.get(Source, int(key))
    return session.scalar(select(Source).where(Source.url == key))


def purge_source_items(session: Session, source_id: int, reason: str | None = None) -> tuple[int, int]:
    """Delete every item of a source, each leaving a tombstone (a later fetch of the feed does not
    bring them back); their passages go with them, and the next embed drops their vectors and
    keyword entries. Returns (items, passages) deleted."""
    passages = session.scalar(select(func.count()).select_from(Passage).join(Item, Passage.item_id == Item.id)
                              .where(Item.source_id == source_id))
    ids = list(session.scalars(select(Item.id).where(Item.source_id == source_id).order_by(Item.id)))
    for item_id in ids:
        delete_item(session, item_id, reason)
    session.flush()
    return len(ids), int(passages or 0)


def source_exists(session: Session, url: str) -> bool:
    return session.scalar(select(func.count()).where(Source.url == url)) > 0


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.id)))


def due_sources(session: Session, now: datetime, *, force: bool = False) -> list[Source]:
    query = select(Source).where(Source.active.is_(True)).order_by(Source.id)
    if not force:
        query = query.where((Source.next_due_at.is_(None)) | (Source.next_due_at <= now))
    return list(session.scalars(query))


@dataclass(frozen=True)
class Schedule:
    refresh: timedelta
    max_backoff: timedelta


def next_due(now: datetime, schedule: Schedule, failures: int, retry_after: float | None) -> datetime:
    """Success: the refresh interval. Failure: exponential backoff with jitter, never before Retry-After."""
    if failures == 0:
        return now + schedule.refresh
    backoff = min(schedule.max_backoff, schedule.refresh * 2 ** (failures - 1))
    delay = backoff * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return now + delay


def record_attempt(session: Session, source: Source, attempt: FetchAttempt, schedule: Schedule,
                   retry_after: float | None = None) -> None:
    """Store the attempt and move the source's validators and due time along."""
    now = datetime.now(UTC)
    attempt.source_id = source.id
    session.add(attempt)
    if attempt.status == "failed":
        source.consecutive_failures += 1
        source.last_error = attempt.error
    else:
        source.consecutive_failures = 0
        source.last_error = None
        if attempt.etag or attempt.last_modified or attempt.status == "new":
            source.etag, source.last_modified = attempt.etag, attempt.last_modified
    source.last_status = attempt.status
    source.next_due_at = next_due(now, schedule, source.consecutive_failures, retry_after)


# --- items -----------------------------------------------------------------------------------


@dataclass
class UpsertStats:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    tombstoned: int = 0


@dataclass
class _Known:
    id: int
    content_hash: str
    entry_hash: str


class _Existing:
    """The source's stored items, indexed by every key an entry may match on."""

    def __init__(self, session: Session, source_id: int) -> None:
        rows = session.execute(
            select(Item.id, Item.stable_key, Item.canonical_url, Item.content_hash, Item.entry_hash)
            .where(Item.source_id == source_id)
        ).all()
        known = {r.id: _Known(r.id, r.content_hash, r.entry_hash) for r in rows}
        self.by_key = {r.stable_key: known[r.id] for r in rows}
        url_counts: dict[str, int] = {}
        for r in rows:
            if r.canonical_url:
                url_counts[r.canonical_url] = url_counts.get(r.canonical_url, 0) + 1
        # A URL shared by several items (a feed linking everything to its home page) identifies none.
        self.by_url = {r.canonical_url: known[r.id] for r in rows if r.canonical_url and url_counts[r.canonical_url] == 1}
        self.by_entry_hash = {r.entry_hash: known[r.id] for r in rows}
        tombs = session.execute(
            select(Tombstone.stable_key, Tombstone.canonical_url).where(Tombstone.source_id == source_id)
        ).all()
        self.dead_keys = {t.stable_key for t in tombs}
        self.dead_urls = {t.canonical_url for t in tombs if t.canonical_url}

    def match(self, key: str, url: str | None, ehash: str):
        # guid first; then URL and the feed's own text, which survive a feed that rewrites its guids.
        return self.by_key.get(key) or (self.by_url.get(url) if url else None) or self.by_entry_hash.get(ehash)


def known_entry_hashes(session: Session, source_id: int) -> set[str]:
    """Entries whose feed text is already stored: no need to fetch their pages or transcripts again."""
    return set(session.scalars(select(Item.entry_hash).where(Item.source_id == source_id)))


def upsert_entries(session: Session, source: Source, entries: list[Entry],
                   hashes: dict[int, str] | None = None) -> UpsertStats:
    """Insert new entries, update changed ones, skip tombstoned ones; idempotent.

    `hashes` maps id(entry) to the entry hash computed before enrichment (full text, transcripts),
    so a re-fetch compares like with like. An entry is matched by its `canonical_url`, which ingest
    set when it built the entry: store does not know how URLs are canonicalised.
    """
    stats = UpsertStats()
    existing = _Existing(session, source.id)
    seen_keys: set[str] = set()
    urls = Counter(e.canonical_url for e in entries)
    for entry in entries:
        url = entry.canonical_url
        key = stable_key(entry, url_is_unique=urls[url] == 1)
        if urls[url] > 1:
            url = None  # not an identity for matching either
        ehash = (hashes or {}).get(id(entry)) or entry_hash(entry)
        if key in seen_keys:
            continue  # the same guid twice in one document: the first wins
        seen_keys.add(key)
        if key in existing.dead_keys or (url and url in existing.dead_urls):
            stats.tombstoned += 1
            continue
        row = existing.match(key, url, ehash)
        capped = caps.cap_item(entry.text, entry.segments)
        chash = content_hash(entry.title, capped.text)
        if row is None:
            item = Item(source_id=source.id, stable_key=key)
            _fill(item, entry, capped, url, chash, ehash)
            session.add(item)
            session.flush()
            existing.by_key[key] = existing.by_entry_hash[ehash] = _Known(item.id, chash, ehash)
            stats.new += 1
        elif row.entry_hash != ehash:
            # Only a change in what the feed says updates a row: an unchanged entry was not
            # enriched this time, and its teaser must not overwrite the stored full text.
            item = session.get(Item, row.id)
            _fill(item, entry, capped, url, chash, ehash)
            row.content_hash, row.entry_hash = chash, ehash
            stats.updated += 1
        else:
            stats.unchanged += 1
    return stats


def _fill(item: Item, entry: Entry, capped: caps.Capped, url: str | None, chash: str, ehash: str) -> None:
    item.guid = entry.guid
    item.url = entry.url
    item.canonical_url = url
    item.content_hash = chash
    item.entry_hash = ehash
    item.kind = str(entry.kind)
    item.title = entry.title
    item.author = entry.author
    item.language = entry.language
    item.published = entry.published
    item.updated = entry.updated
    item.text = capped.text
    item.truncated = entry.truncated
    item.text_source = entry.text_source
    audio = entry.audio
    audio_moved = item.audio_url != (audio.url if audio else None)
    item.audio_url = audio.url if audio else None
    _fill_transcript(item, entry, capped, audio_moved)


def _fill_transcript(item: Item, entry: Entry, capped: caps.Capped, audio_moved: bool = False) -> None:
    chosen = entry.transcript
    if not capped.segments and item.transcript_status == "asr" and item.segments:
        _keep_asr_text(item)
        return
    item.text_capped = capped.reason
    if capped.segments:
        _set_segments(item, capped.segments)
        item.transcript_status = "published"
        item.transcript_url = chosen.url if chosen else None
        item.transcript_type = chosen.type if chosen else None
        item.transcript_model = item.transcript_error = None
    elif item.audio_url and (item.transcript_status not in ("asr", "published", "failed") or
                             (item.transcript_status == "failed" and audio_moved)):
        # Audio only: speech recognition picks it up later. A failed episode is tried again
        # when its enclosure moves (the publisher fixed it), not on every reworded description.
        item.transcript_status = "queued"


def _keep_asr_text(item: Item) -> None:
    """The feed reworded its show notes: the episode's words are still what ASR heard (stored
    capped, with its reason, by store_asr_transcript)."""
    item.text, item.text_source = transcript_text(item.segments), "asr"
    item.content_hash = content_hash(item.title, item.text)


def _set_segments(item: Item, segments: list[Segment]) -> None:
    if item.id is not None and item.segments:
        # New rows would reuse (item_id, position) before the old ones are deleted: flush first.
        item.segments.clear()
        object_session(item).flush()
    item.segments = [
        TranscriptSegment(position=i, start=s.start, end=s.end, speaker=s.speaker, text=s.text)
        for i, s in enumerate(segments)
    ]


# --- speech recognition ----------------------------------------------------------------------


def queued_episode_ids(session: Session) -> list[int]:
    """Episodes with audio and no usable published transcript, oldest first."""
    return list(session.scalars(select(Item.id).where(Item.transcript_status == "queued").order_by(Item.id)))


def store_asr_transcript(session: Session, item: Item, segments: list[Segment], model: str) -> None:
    """The ASR transcript stored as a published one is: segment rows, and the episode's text from them."""
    capped = caps.cap_item(transcript_text(segments), segments)
    _set_segments(item, capped.segments)
    item.text, item.text_source, item.text_capped = capped.text, "asr", capped.reason
    item.content_hash = content_hash(item.title, item.text)
    item.transcript_status, item.transcript_model, item.transcript_error = "asr", model, None
    item.transcript_url = item.transcript_type = None


def mark_transcription_failed(session: Session, item: Item, reason: str) -> None:
    """The episode stays as it was (its show notes, its audio URL); the reason is kept for a retry."""
    item.transcript_status, item.transcript_error = "failed", reason[:4000]


def delete_item(session: Session, item_id: int, reason: str | None = None) -> bool:
    """Delete an item and leave a tombstone so the next fetch does not bring it back."""
    item = session.get(Item, item_id)
    if item is None:
        return False
    shared = item.canonical_url and session.scalar(
        select(func.count()).where(Item.source_id == item.source_id, Item.canonical_url == item.canonical_url)
    ) > 1
    # A URL many items share (a podcast's home page) must not tombstone its siblings.
    session.add(Tombstone(source_id=item.source_id, stable_key=item.stable_key,
                          canonical_url=None if shared else item.canonical_url, reason=reason))
    session.delete(item)
    return True


def count_items(session: Session) -> dict[str, int]:
    rows = session.execute(select(Item.kind, func.count()).group_by(Item.kind)).all()
    return {kind: n for kind, n in rows}
