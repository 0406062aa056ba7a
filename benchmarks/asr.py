"""ASR benchmark: real-time factor, peak memory and word error rate, tiny.en vs base, 10 and 60 min.

Speech is synthetic: espeak-ng (en-us, 150 words/min) reading the sample world's five English
podcast transcripts (samples/site/transcripts), segment by segment, cycled until the target
length; the words read are the reference for the WER (lowercase, punctuation removed; our own
word-level edit distance, no dependency). Needs the Debian package espeak-ng.

Each run is a child process of its own (`resource.getrusage` peak RSS is then the run's alone):
- `chunked`: briefcast's path (`Transcriber.transcribe(file)`: PyAV decoding in blocks, chunks
  of --chunk-minutes with --overlap-seconds, merged), beam 5, int8, --threads CPU threads;
- `whole`: faster-whisper's own `model.transcribe(path)` on the same file (decodes the whole file
  and computes one log-mel for it): the baseline the chunking is measured against.
RTF = transcription wall seconds / audio seconds (model load excluded, printed apart); CPU-RTF =
CPU seconds (user + system, all threads) / audio seconds, which other work on a shared machine
moves less than the wall time (with 2 threads on 2 idle cores, RTF ~ CPU-RTF / 2).

    .venv/bin/python -m benchmarks.asr [--minutes 10 60] [--models tiny.en base] [--whole tiny.en]
        [--threads 2] [--chunk-minutes 10] [--json results.json]
    .venv/bin/python -m benchmarks.asr --decode-minutes 30 180   # decoding memory only, no model
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = ["ep1.vtt", "ep2.txt", "ep3.srt", "ep4.html", "ep5.json"]
ESPEAK_RATE = 22_050


def script_segments() -> list[str]:
    from ingest.transcripts import parse_transcript, transcript_format

    out = []
    for name in TRANSCRIPTS:
        path = ROOT / "samples" / "site" / "transcripts" / name
        out += [s.text for s in parse_transcript(path.read_bytes(), transcript_format("", str(path))) if s.text.strip()]
    return out


def speak(text: str, tmp: Path) -> np.ndarray:
    wav = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    with wave.open(str(wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768


def build_audio(minutes: float, out: Path, cache: dict[int, np.ndarray]) -> tuple[str, float]:
    """An MP3 of about `minutes` of speech and the words it says."""
    from tests.asr_audio import write_audio

    segments, target = script_segments(), minutes * 60 * ESPEAK_RATE
    pause = np.zeros(int(0.4 * ESPEAK_RATE), dtype=np.float32)
    words, total = [], 0

    def blocks():
        nonlocal total
        i = 0
        with tempfile.TemporaryDirectory() as tmp:
            while total < target:
                k = i % len(segments)
                if k not in cache:
                    cache[k] = speak(segments[k], Path(tmp))
                if total + len(cache[k]) > target and total > 0:
                    return
                words.append(segments[k])
                total += len(cache[k]) + len(pause)
                yield cache[k]
                yield pause
                i += 1

    write_audio(out, blocks(), ESPEAK_RATE, 64_000)
    return " ".join(words), total / ESPEAK_RATE


def normalise(text: str) -> list[str]:
    text = text.lower().replace("%", " percent").replace("-", " ").replace("—", " ")
    return re.sub(r"[^\w\s']", " ", text).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    vocab: dict[str, int] = {}
    r = np.array([vocab.setdefault(w, len(vocab)) for w in ref])
    h = np.array([vocab.setdefault(w, len(vocab)) for w in hyp])
    row = np.arange(len(h) + 1)
    steps = np.arange(len(h) + 1)
    for token in r:
        diag = row[:-1] + (h != token)  # substitution or match
        tmp = np.concatenate([[row[0] + 1], np.minimum(diag, row[1:] + 1)])  # or deletion
        row = np.minimum.accumulate(tmp - steps) + steps  # or insertion: a running minimum
    return float(row[-1]) / max(1, len(ref))


def child(model: str, path: str, mode: str, threads: int, chunk_minutes: float, overlap: float) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from ingest.asr import get_transcriber

    started = time.perf_counter()
    transcriber = get_transcriber(model, threads=threads, beam=5)
    loaded = time.perf_counter()
    at_load = resource.getrusage(resource.RUSAGE_SELF)
    cpu_loaded = at_load.ru_utime + at_load.ru_stime
    if mode == "chunked":
        segments = transcriber.transcribe(path, language="en", chunk_seconds=chunk_minutes * 60, overlap_seconds=overlap)
        text = " ".join(s.text for s in segments)
    else:
        found, _info = transcriber._model.transcribe(path, beam_size=5, language="en")
        segments = list(found)
        text = " ".join(s.text.strip() for s in segments)
    done = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"load_s": loaded - started, "transcribe_s": done - loaded, "segments": len(segments),
                      "cpu_s": usage.ru_utime + usage.ru_stime - cpu_loaded,
                      "peak_rss_mb": own_peak_rss_mb(), "text": text}))


def own_peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM): ru_maxrss survives exec and would report the parent's."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


DECODE_CHILD = """
import json, sys
from benchmarks.asr import own_peak_rss_mb
mode, path = sys.argv[1], sys.argv[2]
if mode == "stream":  # briefcast's decoding and chunking, the fake model on each chunk
    from ingest.asr.fake import FakeTranscriber
    FakeTranscriber().transcribe(path, chunk_seconds=600, overlap_seconds=15)
else:  # faster-whisper's own whole-file decode
    from faster_whisper.audio import decode_audio
    decode_audio(path)
print(own_peak_rss_mb())
"""


def decode_memory(minutes_list: list[float]) -> None:
    """Peak RSS of decoding alone, streamed in chunks vs whole-file, for long synthetic files."""
    from tests.asr_audio import repeated, tones, write_audio

    clip = tones([300 + 50 * ((i * 7) % 19) for i in range(40)])
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in minutes_list:
            path = write_audio(Path(tmp) / f"{minutes:g}.mp3", repeated(clip, minutes * 60), 16_000, 32_000)
            peaks = {}
            for mode in ("stream", "whole"):
                out = subprocess.run([sys.executable, "-c", DECODE_CHILD, mode, str(path)], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout
                peaks[mode] = float(out.strip().splitlines()[-1])
            print(f"  decode {minutes:g} min MP3: streamed {peaks['stream']:,.0f} MB, whole file {peaks['whole']:,.0f} MB "
                  "peak RSS", flush=True)
            path.unlink()


def run_child(args, model: str, path: Path, mode: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.asr", "--child", model, str(path), mode, "--threads", str(args.threads),
           "--chunk-minutes", str(args.chunk_minutes), "--overlap-seconds", str(args.overlap_seconds)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--whole", nargs="*", default=["tiny.en"], help="models also run unchunked (baseline)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-minutes", type=float, default=10.0)
    parser.add_argument("--overlap-seconds", type=float, default=15.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--decode-minutes", type=float, nargs="*", default=[],
                        help="only measure decoding memory (no model) for these lengths, e.g. 30 180")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "FILE", "MODE"))
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.threads, args.chunk_minutes, args.overlap_seconds)
        return
    if args.decode_minutes:
        decode_memory(args.decode_minutes)
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; threads={args.threads}; "
          f"chunks {args.chunk_minutes:g} min, overlap {args.overlap_seconds:g} s", flush=True)
    rows, cache = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"speech-{minutes:g}min.mp3"
            reference, seconds = build_audio(minutes, path, cache)
            print(f"\n{seconds / 60:.1f} min of espeak-ng speech, {len(normalise(reference)):,} words, "
                  f"{path.stat().st_size / 1e6:.1f} MB MP3", flush=True)
            runs = [(m, "chunked") for m in args.models] + [(m, "whole") for m in args.whole]
            for model, mode in runs:
                got = run_child(args, model, path, mode)
                row = {"minutes": round(seconds / 60, 1), "model": model, "mode": mode, "rtf": got["transcribe_s"] / seconds,
                       "wer": wer(reference, got["text"]), "peak_rss_mb": got["peak_rss_mb"], "load_s": got["load_s"],
                       "transcribe_s": got["transcribe_s"], "segments": got["segments"],
                       "cpu_rtf": got["cpu_s"] / seconds, "load_avg": os.getloadavg()[0]}
                rows.append(row)
                print(f"  {model:8} {mode:8} RTF {row['rtf']:.3f}  CPU-RTF {row['cpu_rtf']:.3f}  WER {row['wer']:.1%}  peak RSS {row['peak_rss_mb']:,.0f} MB"
                      f"  load {row['load_s']:.1f} s  {row['transcribe_s']:.0f} s  {row['segments']} segments"
                      f"  (load avg {row['load_avg']:.1f})", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
