"""The one normalised model every feed format becomes (RSS, Atom, RDF, JSON Feed, podcasts, threads)."""

from __future__ import annotations

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
