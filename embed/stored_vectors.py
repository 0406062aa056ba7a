"""Passage vectors read from the database by id: what the digest (clustering, composing) uses
instead of the local index file when `index_source = "database"`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from store.vectors import vector_count, vectors_for


class StoredVectors:
    def __init__(self, sessions: sessionmaker[Session], model_id: str, dim: int) -> None:
        self.sessions, self.model_id, self.dim = sessions, model_id, dim

    @property
    def count(self) -> int:
        with self.sessions() as session:
            return vector_count(session, self.model_id)

    def vectors_of(self, ids: Iterable[int]) -> dict[int, np.ndarray]:
        with self.sessions() as session:
            return vectors_for(session, self.model_id, list(ids))
