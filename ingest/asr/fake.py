"""A deterministic stand-in for unit tests: every burst of sound is a word, named by its pitch.

It behaves like a model where it matters to the shared code: the same audio gives the same
words whichever chunk hears it, a burst cut by a chunk edge gives a partial word, and silence
gives nothing. A 440 Hz beep is the word "a440".
"""

from __future__ import annotations

import numpy as np

from ingest.asr.base import SAMPLE_RATE, TimedSegment, Transcriber, Word, register

FRAME = SAMPLE_RATE // 50  # 20 ms
THRESHOLD = 0.02  # RMS: above it, a frame is sound
SEGMENT_PAUSE = 0.5  # seconds of silence that end a segment


@register("fake")
class FakeTranscriber(Transcriber):
    model_name = "fake-bursts"

    def __init__(self, **_options) -> None:
        self.calls = 0  # chunks seen: tests check long audio was split

    def transcribe_samples(self, samples: np.ndarray, *, words: bool = False,
                           language: str | None = None) -> list[TimedSegment]:
        self.calls += 1
        found = [Word(" " + _name(samples[a:b]), a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in _bursts(samples)]
        return _segments(found, words)


def _bursts(samples: np.ndarray) -> list[tuple[int, int]]:
    n = len(samples) // FRAME
    if n == 0:
        return []
    rms = np.sqrt(np.mean(samples[: n * FRAME].reshape(n, FRAME) ** 2, axis=1))
    loud = np.concatenate([[False], rms > THRESHOLD, [False]])
    edges = np.flatnonzero(np.diff(loud.astype(np.int8)))
    return [(int(a) * FRAME, int(b) * FRAME) for a, b in zip(edges[::2], edges[1::2])]


def _name(burst: np.ndarray) -> str:
    spectrum = np.abs(np.fft.rfft(burst * np.hanning(len(burst))))
    pitch = np.argmax(spectrum) * SAMPLE_RATE / len(burst)
    return f"a{int(round(pitch / 50) * 50)}"


def _segments(found: list[Word], with_words: bool) -> list[TimedSegment]:
    groups: list[list[Word]] = []
    for word in found:
        if groups and word.start - groups[-1][-1].end < SEGMENT_PAUSE:
            groups[-1].append(word)
        else:
            groups.append([word])
    return [TimedSegment("".join(w.text for w in g), g[0].start, g[-1].end, tuple(g) if with_words else ())
            for g in groups]
