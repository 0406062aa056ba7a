"""Audio files -> 16 kHz mono float32, decoded incrementally with PyAV (MP3, AAC/M4A, WAV, Ogg...).

`pcm_blocks` yields the decoded stream a few seconds at a time and holds no more than that, so a
3-hour episode costs the same memory as a 3-minute one; `chunks` groups the blocks into
overlapping windows for the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.asr.base import SAMPLE_RATE


class AudioError(ValueError):
    """The file is not audio we can decode; the message says what was wrong."""


@dataclass(frozen=True)
class Chunk:
    offset: float  # seconds from the start of the file to samples[0]
    samples: np.ndarray
    last: bool

    @property
    def end(self) -> float:
        return self.offset + len(self.samples) / SAMPLE_RATE


def duration_seconds(path: Path) -> float | None:
    """What the container says, without decoding; None when it does not say."""
    av = _av()

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = _audio_stream(container, path)
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return container.duration / 1_000_000 if container.duration else None
    except av.FFmpegError as exc:
        raise AudioError(f"cannot read {path.name} as audio: {exc}") from None


def pcm_blocks(path: Path, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """The audio stream as 16 kHz mono float32 blocks of about `block_seconds`."""
    av = _av()

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    target = int(block_seconds * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    held = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = _audio_stream(container, path)
            for frame in _frames(container, stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    held += out.samples
                if held >= target:
                    yield np.concatenate(pending)
                    pending, held = [], 0
            for out in resampler.resample(None):  # flush what the resampler still holds
                pending.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise AudioError(f"cannot decode {path.name}: {exc}") from None
    if pending:
        yield np.concatenate(pending)


def _av():
    try:
        import av
    except ImportError:
        from ingest.asr.base import TranscriberError

        raise TranscriberError("PyAV is not installed; install the speech extra: pip install -e '.[asr]'") from None
    return av


def _audio_stream(container, path: Path):
    if not container.streams.audio:
        raise AudioError(f"{path.name} has no audio stream")
    return container.streams.audio[0]


def _frames(container, stream):
    av = _av()

    packets = container.demux(stream)
    for packet in packets:
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            continue  # one corrupt MP3 frame costs 26 ms of audio, not the episode
        for frame in frames:
            frame.pts = None  # the resampler checks timestamps, which broken files get wrong
            yield frame


def chunks(blocks: Iterator[np.ndarray], chunk_seconds: float, overlap_seconds: float) -> Iterator[Chunk]:
    """Windows of `chunk_seconds`, each starting `overlap_seconds` before the previous one ended."""
    if overlap_seconds * 2 >= chunk_seconds:
        raise ValueError(f"overlap ({overlap_seconds:g} s) must be under half the chunk ({chunk_seconds:g} s)")
    size, overlap = int(chunk_seconds * SAMPLE_RATE), int(overlap_seconds * SAMPLE_RATE)
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # in samples, of buffer[0]
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if len(buffer) else block
        while len(buffer) > size:  # a full window, and more after it: the next starts `overlap` earlier
            yield Chunk(offset / SAMPLE_RATE, buffer[:size].copy(), last=False)
            step = size - overlap
            buffer, offset = buffer[step:].copy(), offset + step
    if len(buffer):
        yield Chunk(offset / SAMPLE_RATE, buffer, last=True)


def decode_all(path: Path) -> np.ndarray:
    """The whole file in memory: for short clips only (the CLI's --file and tests)."""
    blocks = list(pcm_blocks(path))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
