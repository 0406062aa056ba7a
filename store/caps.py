"""How much one item may store, whatever its feed, page or transcript holds.

Fetching is bounded by bytes (`max_response_bytes`), but what a parser makes of those bytes was
not: one 15.7 MB VTT cue became one 15.7 MB passage, and a 19 MB SRT 244,602 segment rows and
13,068 passages (half an hour of embedding). These caps hold what is stored to what a real item
needs, and say what was left out (`Item.text_capped`, shown by `briefcast items list`).

Measured on the corpus's Whisper transcripts of real podcast episodes (55 files of 0.5-2 hours):
per hour of speech, 56,000 characters (67,000 at most), 9,900 words (12,500), 700 segments (1,240)
and 68 passages (86). A 3-hour episode is so about 200,000 characters, 37,500 words, 3,700 segments
and 260 passages; a very long article (30,000 words) about 180,000 characters.

Standard library only: ingest splits long segments with the same rule as it parses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from store.entry import Segment, transcript_text

# 3x a 3-hour episode at the fastest measured speech (about 9 hours), 3x the longest article.
MAX_ITEM_CHARS = 600_000
MAX_ITEM_WORDS = 100_000
# 5x the densest measured transcript's 3 hours (1,240 cues an hour); 3 hours of 0.5 s cues.
MAX_SEGMENTS = 20_000
# A cue or a paragraph: measured at most 107 characters (Whisper), a long speaker turn in an HTML
# transcript a few thousand. Longer text (a whole transcript on one line, one runaway cue) is
# split into pieces of this size that keep the segment's time range and speaker.
MAX_SEGMENT_CHARS = 5_000

_WORD = re.compile(r"\S+")
_PARAGRAPH = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?…。！？][\"'”’)\]]*(?=\s)|[。！？]")
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Capped:
    """What may be stored of an item: its text, its transcript segments, and why anything was cut."""

    text: str
    segments: list[Segment]
    reason: str | None = None


def cap_item(text: str, segments: Sequence[Segment] = ()) -> Capped:
    """The item as it may be stored. An episode's text is its transcript's, so cutting segments
    cuts the text with them."""
    reason = None
    if segments:
        kept, reason = cap_segments(segments)
        if reason or len(kept) != len(segments):
            text = transcript_text(kept)
        segments = kept
    text, text_reason = cap_text(text)
    return Capped(text, list(segments), reason or text_reason)


def split_long_segment(segment: Segment, max_chars: int = MAX_SEGMENT_CHARS) -> list[Segment]:
    """A segment over `max_chars` as consecutive pieces, each with the segment's times and speaker."""
    if len(segment.text) <= max_chars:
        return [segment]
    return [Segment(piece, segment.start, segment.end, segment.speaker) for piece in _pieces(segment.text, max_chars)]


def cap_segments(segments: Sequence[Segment]) -> tuple[list[Segment], str | None]:
    """Long segments split, then the first ones that fit the segment, character and word caps."""
    kept: list[Segment] = []
    chars = words = 0
    limit = None
    for segment in (piece for s in segments for piece in split_long_segment(s)):
        size, count = len(segment.text) + 1, len(segment.text.split())
        if len(kept) >= MAX_SEGMENTS:
            limit = f"{MAX_SEGMENTS:,} segments"
        elif chars + size > MAX_ITEM_CHARS + 1:
            limit = f"{MAX_ITEM_CHARS:,} characters"
        elif words + count > MAX_ITEM_WORDS:
            limit = f"{MAX_ITEM_WORDS:,} words"
        if limit:
            break
        kept.append(segment)
        chars, words = chars + size, words + count
    if limit is None:
        return kept, None
    return kept, (f"transcript cut at {limit} per item: kept {len(kept):,} of {len(segments):,} segments"
                  f"{_time_span(kept, segments)}")


def cap_text(text: str) -> tuple[str, str | None]:
    """The text's first MAX_ITEM_CHARS characters and MAX_ITEM_WORDS words, cut between words."""
    end, limit = len(text), None
    if len(text) > MAX_ITEM_CHARS:
        end, limit = _cut_point(text, MAX_ITEM_CHARS), f"{MAX_ITEM_CHARS:,} characters"
    word_end = _end_of_words(text, MAX_ITEM_WORDS, end)
    if word_end is not None:
        end, limit = word_end, f"{MAX_ITEM_WORDS:,} words"
    if limit is None:
        return text, None
    cut = text[:end].rstrip()
    return cut, f"text cut at {limit} per item: kept {len(cut):,} of {len(text):,} characters"


def _end_of_words(text: str, n: int, within: int) -> int | None:
    """Where the n-th whitespace-separated word ends, when text[:within] holds more than n words."""
    for count, match in enumerate(_WORD.finditer(text, 0, within), start=1):
        if count == n:
            return match.end() if _WORD.search(text, match.end(), within) else None
    return None


def _cut_point(text: str, end: int, start: int = 0) -> int:
    """Where to cut text[start:] to at most `end`: the last paragraph break, else sentence end, else
    whitespace in the 2,000 characters before `end`; `end` itself when there is none."""
    if end >= len(text):
        return len(text)
    floor = max(start, end - 2_000)
    window = text[floor:end + 1]
    for boundary in (_PARAGRAPH, _SENTENCE, _SPACE):
        found = [m.end() for m in boundary.finditer(window) if 0 < m.end() <= end - floor]
        if found:
            return floor + found[-1]
    return end


def _pieces(text: str, max_chars: int) -> Iterator[str]:
    """Consecutive pieces of at most max_chars, cut between words where there is whitespace."""
    start = 0
    while start < len(text):
        end = _cut_point(text, start + max_chars, start) if len(text) - start > max_chars else len(text)
        piece = text[start:end].strip()
        if piece:
            yield piece
        start = end


def _time_span(kept: Sequence[Segment], segments: Sequence[Segment]) -> str:
    last_kept = next((s.end or s.start for s in reversed(kept) if (s.end or s.start) is not None), None)
    last = next((s.end or s.start for s in reversed(segments) if (s.end or s.start) is not None), None)
    if last_kept is None or last is None:
        return ""
    return f", up to {_clock(last_kept)} of {_clock(last)}"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
