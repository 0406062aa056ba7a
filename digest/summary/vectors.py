"""Sentence vectors with a bounded memo: the extractive backend and the support check embed the
same source sentences (a summary's sentences are source sentences), so each is embedded once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from embed.encoder import Encoder


class SentenceVectors:
    def __init__(self, encoder: Encoder, max_entries: int = 50_000) -> None:
        self.encoder = encoder
        self.max_entries = max_entries
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of L2-normalised float32, one per text; only unseen texts reach the encoder."""
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            fresh = self.encoder.embed_batch(missing)
            with self._lock:
                for text, row in zip(missing, fresh):
                    self._memo[text] = row
                while len(self._memo) > self.max_entries:
                    self._memo.popitem(last=False)
        with self._lock:
            rows = [self._memo.get(t) for t in texts]
        if any(r is None for r in rows):  # evicted meanwhile by another thread: embed those again
            again = [t for t, r in zip(texts, rows) if r is None]
            redo = iter(self.encoder.embed_batch(again))
            rows = [r if r is not None else next(redo) for r in rows]
        return np.vstack(rows).astype(np.float32, copy=False)


def as_vectors(encoder_or_vectors: Encoder | SentenceVectors) -> SentenceVectors:
    return encoder_or_vectors if isinstance(encoder_or_vectors, SentenceVectors) else SentenceVectors(encoder_or_vectors)
