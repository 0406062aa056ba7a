"""Long audio in overlapping chunks, merged back into one transcript without repeated words.

Each chunk (at most `chunk_seconds`) starts `overlap_seconds` before the previous one ended.
Both chunks hear the overlap; the merge cuts it once, at the longest pause the earlier chunk
heard there (away from both chunks' ragged edges, where a word may be cut in half), and keeps
the earlier chunk's words before the cut and the later chunk's words after it. Word timings
are asked for only when there is more than one chunk; all times are absolute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ingest.asr.audio import Chunk, chunks, duration_seconds, pcm_blocks
from ingest.asr.base import TimedSegment, Transcriber, Word
from store.entry import Segment

EDGE_SECONDS = 2.0  # near a chunk's edge a word may be cut: never cut the overlap there
Progress = Callable[[float, float | None], None]  # (seconds done, seconds in all or None)


def transcribe_file(transcriber: Transcriber, path: Path, *, language: str | None, chunk_seconds: float,
                    overlap_seconds: float, progress: Progress | None = None) -> list[Segment]:
    total = duration_seconds(path)
    pieces = chunks(pcm_blocks(path), chunk_seconds, overlap_seconds)
    return _transcribe_chunks(transcriber, pieces, language, total, progress)


def transcribe_array(transcriber: Transcriber, samples: np.ndarray, *, language: str | None, chunk_seconds: float,
                     overlap_seconds: float, progress: Progress | None = None) -> list[Segment]:
    from ingest.asr.base import SAMPLE_RATE

    pieces = chunks(iter([np.asarray(samples, dtype=np.float32)]), chunk_seconds, overlap_seconds)
    return _transcribe_chunks(transcriber, pieces, language, len(samples) / SAMPLE_RATE, progress)


def _transcribe_chunks(transcriber: Transcriber, pieces: Iterator[Chunk], language: str | None,
                       total: float | None, progress: Progress | None) -> list[Segment]:
    merged: list[TimedSegment] = []
    held: list[TimedSegment] = []  # the previous chunk's segments, until the next chunk decides the cut
    previous: Chunk | None = None
    for chunk in pieces:
        only_one = previous is None and chunk.last
        found = [s.shifted(chunk.offset) for s in
                 transcriber.transcribe_samples(chunk.samples, words=not only_one, language=language)]
        if previous is None:
            held = found
        else:
            cut = choose_cut(held, chunk.offset + EDGE_SECONDS, previous.end - EDGE_SECONDS)
            merged.extend(keep_words(held, lambda w: w.middle < cut))
            held = keep_words(found, lambda w: w.middle >= cut)
        previous = chunk
        if progress:
            progress(chunk.end, total)
    merged.extend(held)
    return [s.as_segment() for s in merged if s.text.strip()]


def choose_cut(segments: list[TimedSegment], low: float, high: float) -> float:
    """The middle of the longest pause between words inside [low, high]; its middle if none."""
    words = sorted((w for s in segments for w in s.words if w.start >= low and w.end <= high),
                   key=lambda w: w.start)
    best, cut = -1.0, (low + high) / 2
    for before, after in zip(words, words[1:]):
        gap = after.start - before.end
        if gap > best:
            best, cut = gap, (before.end + after.start) / 2
    return cut


def keep_words(segments: list[TimedSegment], keep: Callable[[Word], bool]) -> list[TimedSegment]:
    """Segments cut down to the words `keep` accepts; a segment without word timings is judged whole."""
    out = []
    for seg in segments:
        if not seg.words:
            if keep(Word(seg.text, seg.start, seg.end)):
                out.append(seg)
            continue
        kept = tuple(w for w in seg.words if keep(w))
        if len(kept) == len(seg.words):
            out.append(seg)
        elif kept:
            out.append(TimedSegment("".join(w.text for w in kept), kept[0].start, kept[-1].end, kept))
    return out
