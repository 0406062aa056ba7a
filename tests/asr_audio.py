"""Audio for the ASR tests and benchmark: encode PCM to WAV/MP3/M4A with PyAV, build long files.

`python -m tests.asr_audio encode IN OUT [BITRATE]` re-encodes a file (make_clips.sh uses it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

ASR_DATA = Path(__file__).resolve().parent / "data" / "asr"
CODECS = {".wav": ("pcm_s16le", "s16"), ".mp3": ("libmp3lame", "s16p"), ".m4a": ("aac", "fltp")}


def write_audio(path: Path, blocks: Iterable[np.ndarray], rate: int, bitrate: int = 64_000) -> Path:
    """Mono float32 blocks (any number, any sizes) to a file whose codec follows its suffix."""
    import av

    codec, sample_format = CODECS[path.suffix.lower()]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        if codec != "pcm_s16le":
            stream.bit_rate = bitrate
        fifo = av.AudioFifo()
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        frame_size = stream.codec_context.frame_size or 1024
        for block in blocks:
            frame = av.AudioFrame.from_ndarray(np.asarray(block, dtype=np.float32).reshape(1, -1), format="flt",
                                               layout="mono")
            frame.sample_rate = rate
            for out in resampler.resample(frame):
                out.pts = None
                fifo.write(out)
            while fifo.samples >= frame_size:
                container.mux(stream.encode(fifo.read(frame_size)))
        if fifo.samples:
            container.mux(stream.encode(fifo.read()))
        container.mux(stream.encode(None))
    return path


def read_clip(name: str) -> np.ndarray:
    """A committed clip as 16 kHz mono float32."""
    from ingest.asr.audio import decode_all

    return decode_all(ASR_DATA / name)


def repeated(samples: np.ndarray, seconds: float, pause: float = 0.7, rate: int = 16_000):
    """Blocks that repeat `samples` (with a pause between) for `seconds`: long files, little memory."""
    silence = np.zeros(int(pause * rate), dtype=np.float32)
    left = int(seconds * rate)
    while left > 0:
        for piece in (samples, silence):
            take = piece[: min(len(piece), left)]
            if len(take):
                yield take
                left -= len(take)


def tones(pitches: Iterable[int], rate: int = 16_000, beep: float = 0.25, gap: float = 0.15,
          pause_every: int = 4, pause: float = 0.8) -> np.ndarray:
    """Beeps at the given pitches, a short gap between and a longer pause every few: words for the fake."""
    t = np.arange(int(beep * rate)) / rate
    pieces = []
    for i, pitch in enumerate(pitches):
        pieces.append((0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32))
        pieces.append(np.zeros(int((pause if (i + 1) % pause_every == 0 else gap) * rate), dtype=np.float32))
    return np.concatenate(pieces)


def _main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "encode":
        raise SystemExit("usage: python -m tests.asr_audio encode IN OUT [BITRATE]")
    from ingest.asr.audio import pcm_blocks  # 16 kHz mono: what the model hears anyway

    source, target = Path(argv[1]), Path(argv[2])
    write_audio(target, pcm_blocks(source), 16_000, int(argv[3]) if len(argv) > 3 else 64_000)
    print(f"{target}: {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    _main(sys.argv[1:])
