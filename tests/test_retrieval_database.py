"""The retrieval gate again with `index_source=database` on PostgreSQL: the same 165 queries and
the same pins (tests/test_retrieval.py PINS) for hybrid, vector and keyword search, read from a
replica's in-memory mirror of the database's vectors, with either keyword half (a tantivy index
the replica builds in RAM, or PostgreSQL's full text), instead of the FAISS file and tantivy. The vectors are the real torch MiniLM ones of the files-mode world,
passage by passage (identical texts), so only the engines differ."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sqlalchemy import select

from embed.db_embed import embed_into_database
from embed.encoder import Encoder
from embed.keyword_mirror import KeywordMirror
from embed.keyword_pg import PgKeywordSearcher
from embed.mirror import MirrorReader, VectorMirror
from embed.search import SearchContext
from store.db import open_database
from store.models import Passage
from store.vectors import vectors_for
from tests.conftest import _postgres_database
from tests.retrieval_eval import score_all
from tests.retrieval_set import store_documents
from tests.test_retrieval import PINS, hybrid_at_least_as_good, meets_pins


class SameVectors(Encoder):
    """The files-mode world's vector for each passage text (the real MiniLM's); a text it has
    never seen is an error, so nothing here is a stand-in."""

    def __init__(self, by_text: dict[str, np.ndarray], model_id: str, query_encoder: Encoder) -> None:
        self.by_text, self.model_id, self.dim = by_text, model_id, query_encoder.dim

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.by_text[t] for t in texts])


def _vectors_by_text(sessions, model_id: str) -> dict[str, np.ndarray]:
    with sessions() as session:
        rows = session.execute(select(Passage.id, Passage.text)).all()
        vectors = vectors_for(session, model_id, [pid for pid, _ in rows])
    return {text: vectors[pid] for pid, text in rows}


def _keyword_half(engine: str, sessions):
    """(the searcher, the mirror's companion) as embed/runtime.py database_reader makes them."""
    if engine == "tantivy":
        mirror = KeywordMirror()
        return mirror, mirror
    return PgKeywordSearcher(sessions.kw["bind"]), None


@pytest.fixture(scope="module", params=["tantivy", "postgres"])
def database_scores(request, retrieval_world):
    files_ctx, rset, _ = retrieval_world
    query_encoder = files_ctx.encoder
    by_text = _vectors_by_text(files_ctx.sessions, query_encoder.model_id)
    for url in _postgres_database():
        sessions = open_database(url)
        ids = store_documents(sessions, rset)
        embed_into_database(sessions, SameVectors(by_text, query_encoder.model_id, query_encoder))
        keywords, companion = _keyword_half(request.param, sessions)
        reader = MirrorReader(VectorMirror(sessions, query_encoder.model_id, query_encoder.dim, companion=companion),
                              lambda: keywords)
        ctx = SearchContext(sessions=sessions, reader=reader, encoder_factory=lambda: query_encoder)
        try:
            yield {s.mode: s for s in score_all(ctx, rset, ids)}
        finally:
            reader.close()
            sessions.kw["bind"].dispose()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("mode", list(PINS))
def test_database_mode_meets_the_same_pins(database_scores, mode):
    assert meets_pins(database_scores[mode], mode), database_scores[mode]


@pytest.mark.slow
@pytest.mark.postgres
def test_database_mode_hybrid_is_at_least_as_good_as_either_alone(database_scores):
    assert hybrid_at_least_as_good(database_scores)
