"""The `Transcriber` interface and its registry.

A backend implements one method, `transcribe_samples`: 16 kHz mono float32 in, timed segments
(with word timings when asked) out, times relative to the array's first sample. Everything
else — decoding files, chunking long episodes, merging the chunks — is shared and lives in
`ingest.asr.chunks`, so every backend (the fake included) goes through the same path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store.entry import Segment
from store.registry import Registry

SAMPLE_RATE = 16_000


class TranscriberError(RuntimeError):
    """A backend cannot be built or cannot run: the message says why and what to do."""


@dataclass(frozen=True)
class Word:
    text: str  # as the model wrote it, leading space included
    start: float
    end: float

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2


@dataclass(frozen=True)
class TimedSegment:
    text: str
    start: float
    end: float
    words: tuple[Word, ...] = field(default=())

    def shifted(self, offset: float) -> TimedSegment:
        return TimedSegment(self.text, self.start + offset, self.end + offset,
                            tuple(Word(w.text, w.start + offset, w.end + offset) for w in self.words))

    def as_segment(self) -> Segment:
        return Segment(text=self.text.strip(), start=round(float(self.start), 3), end=round(float(self.end), 3))


class Transcriber(ABC):
    model_name: str  # recorded with every transcript it makes

    @abstractmethod
    def transcribe_samples(self, samples: np.ndarray, *, words: bool = False,
                           language: str | None = None) -> list[TimedSegment]:
        """Segments of 16 kHz mono float32 audio, times in seconds from its first sample."""

    def transcribe(self, audio: str | Path | np.ndarray, *, language: str | None = None,
                   chunk_seconds: float = 600.0, overlap_seconds: float = 15.0, progress=None) -> list[Segment]:
        """A file (decoded in chunks, memory flat in its length) or an array; absolute times."""
        from ingest.asr.chunks import transcribe_array, transcribe_file

        if isinstance(audio, np.ndarray):
            return transcribe_array(self, audio, language=language, chunk_seconds=chunk_seconds,
                                    overlap_seconds=overlap_seconds, progress=progress)
        return transcribe_file(self, Path(audio), language=language, chunk_seconds=chunk_seconds,
                               overlap_seconds=overlap_seconds, progress=progress)


def _load_builtin_backends() -> None:
    # Importing registers them; neither imports faster_whisper until a model is built.
    from ingest.asr import fake, whisper  # noqa: F401


TRANSCRIBERS: Registry[Transcriber] = Registry("transcriber", TranscriberError, _load_builtin_backends)
register = TRANSCRIBERS.register


def get_transcriber(name: str, **options) -> Transcriber:
    """`base`, `tiny.en` (faster-whisper), `fake`, or any backend registered since."""
    return TRANSCRIBERS.create(name, **options)
