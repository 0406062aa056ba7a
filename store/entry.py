"""The one normalised model every feed format becomes (RSS, Atom, RDF, JSON Feed, podcasts, threads),
and the stable ids and hashes an entry is stored under.

ingest builds entries, store keeps them: both import this module, and it imports only the standard
library. Whatever needs ingest's rules (the canonical form of a URL) is computed by ingest when
it builds the entry and carried on it (`Entry.canonical_url`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Kind(StrEnum):
    ARTICLE = "article"
    EPISODE = "episode"
    POST = "post"


@dataclass(frozen=True)
class Segment:
    """One timed piece of a transcript; times in seconds, None where the format has none."""

    text: str
    start: float | None = None
    end: float | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class TranscriptRef:
    """A `<podcast:transcript>` tag: where a transcript lives and what it is."""

    url: str
    type: str  # the MIME type as written in the feed
    language: str | None = None
    rel: str | None = None


@dataclass(frozen=True)
class Enclosure:
    url: str
    type: str | None = None
    length: int | None = None

    @property
    def is_audio(self) -> bool:
        kind = (self.type or "").lower()
        if kind.startswith(("audio/", "video/")):
            return True
        return self.url.lower().split("?")[0].endswith((".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wav", ".mp4"))


@dataclass
class Entry:
    """A feed entry, episode or post, before it is stored."""

    title: str
    kind: Kind = Kind.ARTICLE
    guid: str | None = None
    url: str | None = None
    # `url` in canonical form (ingest.urls.canonical_url), set by ingest when it builds the entry;
    # None: no URL, and then the entry is matched by guid, enclosure or content alone.
    canonical_url: str | None = None
    author: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    language: str | None = None
    summary_html: str = ""
    content_html: str = ""
    text: str = ""
    truncated: bool = False
    categories: list[str] = field(default_factory=list)
    enclosures: list[Enclosure] = field(default_factory=list)
    transcripts: list[TranscriptRef] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    transcript: TranscriptRef | None = None  # the one whose segments were read
    text_source: str = "feed"  # feed | extracted | transcript | asr

    @property
    def audio(self) -> Enclosure | None:
        return next((e for e in self.enclosures if e.is_audio), None)


# --- stable ids and hashes: guid, else enclosure, else canonical URL, else title + content ------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def stable_key(entry: Entry, url_is_unique: bool = True) -> str:
    """Key unique within a source: the first of guid, enclosure URL, canonical URL, title+content.

    A link that several entries of one document share (a show's home page) identifies none of
    them: the caller says so with `url_is_unique=False`.
    """
    if entry.guid and entry.guid.strip():
        return sha256("guid:" + entry.guid.strip())
    if entry.enclosures:
        return sha256("enclosure:" + entry.enclosures[0].url)
    if entry.canonical_url and url_is_unique:
        return sha256("url:" + entry.canonical_url)
    return sha256("content:" + entry.title.strip() + "\n" + (entry.text or entry.content_html or entry.summary_html))


def content_hash(title: str, text: str) -> str:
    return sha256(" ".join(title.split()) + "\n" + " ".join(text.split()))


def entry_hash(entry: Entry) -> str:
    """What the feed said about an entry: unchanged hash means no need to re-extract or re-fetch."""
    parts = [
        entry.title,
        entry.url or "",
        entry.summary_html,
        entry.content_html,
        entry.text,
        " ".join(t.url + "|" + t.type for t in entry.transcripts),
        " ".join(e.url for e in entry.enclosures),
    ]
    return sha256("\x1f".join(parts))


def transcript_text(segments: Iterable[Segment]) -> str:
    """An episode's text from its transcript: one line per segment (published or ASR alike)."""
    return "\n".join(s.text for s in segments)
