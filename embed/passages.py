"""Items -> passages: sentence windows for articles and posts, timed windows for transcripts.

A passage is what gets embedded and what a brief cites, so it must be small enough for the
encoder (all-MiniLM-L6-v2 reads 256 word pieces, about 200 English words) and big enough to
carry a claim with its context. Windows overlap by a sentence (or a segment) so a claim that
straddles a boundary is whole in at least one passage.

Whatever the text, a passage holds at most MAX_WORDS words and MAX_PASSAGE_CHARS characters: a
sentence or a transcript segment longer than that is cut into passage-sized pieces (a segment's
pieces keep its time range and speaker), and an item yields at most MAX_PASSAGES passages.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from store.entry import Segment
from ingest.text import word_count

log = logging.getLogger(__name__)
TARGET_WORDS = 160
MAX_WORDS = 200
# 200 words of real text are 1,000-1,300 characters (at most 1,092 in the corpus's podcast
# transcripts); the cap binds only on text without spaces or of unusually long "words".
MAX_PASSAGE_CHARS = 2_000
# An item's text is capped when stored (store/caps.py: 600,000 characters, 100,000 words), which
# real speech or prose cuts into at most about 800 passages (a 3-hour episode: about 260). This
# bounds what pathological text (one-letter words, 101-word sentences) could make of it.
MAX_PASSAGES = 1_000
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "inc", "ltd", "co", "corp", "jr", "sr", "vs", "etc",
                  "e.g", "i.e", "u.s", "u.k", "u.n", "no", "fig", "gen", "gov", "sen", "rep", "jan", "feb",
                  "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
# Sentence ends: Latin punctuation followed by space, or CJK full stops (no space follows them).
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9\u00C0-\u024F])|(?<=[。！？；])")


@dataclass(frozen=True)
class Passage:
    position: int
    text: str
    start: float | None = None
    end: float | None = None
    speaker: str | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(" ".join(self.text.split()).encode()).hexdigest()


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            sentences.extend(_rejoin_abbreviations(s.strip() for s in _SENTENCE_END.split(paragraph) if s and s.strip()))
    return sentences


def _rejoin_abbreviations(pieces: Iterable[str]) -> list[str]:
    """"Dr. Smith" is not two sentences: glue a piece ending in a known abbreviation to the next."""
    out: list[str] = []
    for piece in pieces:
        if out and out[-1].rsplit(" ", 1)[-1].rstrip(".").lower() in _ABBREVIATIONS:
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _bounded(sentences: Iterable[str], max_words: int, max_chars: int = MAX_PASSAGE_CHARS) -> list[str]:
    """Sentences longer than a whole passage are cut into passage-sized pieces."""
    out: list[str] = []
    for sentence in sentences:
        out.extend(_passage_sized(sentence, max_words, max_chars))
    return out


def _passage_sized(text: str, max_words: int, max_chars: int = MAX_PASSAGE_CHARS) -> list[str]:
    """`text` whole when it fits one passage; else pieces of at most max_words words and max_chars
    characters, cut between words (inside a "word" only when it alone is longer than max_chars)."""
    if len(text) <= max_chars and word_count(text) <= max_words:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    chars = 0
    for word in text.split():
        for start in range(0, len(word), max_chars):
            part = word[start : start + max_chars]
            if current and (len(current) >= max_words or chars + 1 + len(part) > max_chars):
                pieces.append(" ".join(current))
                current, chars = [], 0
            current.append(part)
            chars += len(part) + (1 if chars else 0)
    if current:
        pieces.append(" ".join(current))
    return pieces


def windows(units: Sequence[str], target_words: int = TARGET_WORDS, max_words: int = MAX_WORDS,
            max_chars: int = MAX_PASSAGE_CHARS) -> list[tuple[int, int]]:
    """[start, end) ranges over units: each grows to target_words without passing max_words or
    max_chars, and starts on the previous window's last unit (overlap), except where that would
    not move on."""
    counts = [word_count(u) for u in units]
    sizes = [len(u) for u in units]
    ranges: list[tuple[int, int]] = []
    start = 0
    while start < len(units):
        end, total, chars = start + 1, counts[start], sizes[start]
        while (end < len(units) and total < target_words and total + counts[end] <= max_words
               and chars + 1 + sizes[end] <= max_chars):
            total += counts[end]
            chars += 1 + sizes[end]
            end += 1
        ranges.append((start, end))
        if end >= len(units):
            break
        start = end - 1 if end - 1 > start else end
    return ranges


def split_text(text: str, target_words: int = TARGET_WORDS, max_words: int = MAX_WORDS) -> list[Passage]:
    sentences = _bounded(split_sentences(text), max_words)
    ranges = windows(sentences, target_words, max_words)
    return [Passage(position=n, text=" ".join(sentences[a:b])) for n, (a, b) in enumerate(ranges)]


def split_segments(segments: Sequence[Segment], target_words: int = TARGET_WORDS, max_words: int = MAX_WORDS) -> list[Passage]:
    """Timed windows over transcript segments: start of the first, end of the last, main speaker.
    A segment longer than a passage becomes passage-sized pieces, each with the segment's times."""
    kept = [Segment(piece, s.start, s.end, s.speaker)
            for s in segments if s.text.strip()
            for piece in _passage_sized(" ".join(s.text.split()), max_words)]
    ranges = windows([s.text for s in kept], target_words, max_words)
    passages = []
    for n, (a, b) in enumerate(ranges):
        part = kept[a:b]
        speakers = Counter(s.speaker for s in part if s.speaker)
        passages.append(Passage(
            position=n,
            text=" ".join(" ".join(s.text.split()) for s in part),
            start=part[0].start,
            end=next((s.end for s in reversed(part) if s.end is not None), None),
            speaker=speakers.most_common(1)[0][0] if speakers else None,
        ))
    return passages


def split_item(title: str, text: str, segments: Sequence[Segment] = ()) -> list[Passage]:
    """Passages of one item (at most MAX_PASSAGES); the title leads the first passage of an
    article so it is searchable."""
    if segments:
        passages = split_segments(segments)
    else:
        passages = split_text(f"{title}.\n\n{text}" if _title_adds_words(title, text) else text)
    if len(passages) > MAX_PASSAGES:
        log.warning("%r: %d passages, keeping the first %d", title[:80], len(passages), MAX_PASSAGES)
        passages = passages[:MAX_PASSAGES]
    return passages


def _title_adds_words(title: str, text: str) -> bool:
    """A post's title is its own first words: prepending it would say them twice."""
    head = " ".join(title.rstrip("…. ").split()).lower()
    return bool(head) and head not in " ".join(text[: len(title) + 80].split()).lower()
