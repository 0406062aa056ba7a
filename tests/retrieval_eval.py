"""Run the retrieval set through briefcast search in each mode and score it (used by the pinned
test and by benchmarks/retrieval.py, so both print the same figures)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from embed.encoder import Encoder
from embed.index import IndexReader, IndexStore
from embed.pipeline import embed_pending
from embed.search import MODES, SearchContext, search
from store.db import open_database
from tests.retrieval_set import RetrievalSet, load_set, mrr, recall_at_k, store_documents

AT_TOLERANCE = 60.0  # seconds: a passage "covers" a detail when it starts or ends within a minute of it


@dataclass
class ModeScores:
    mode: str
    recall_at_10: float
    mrr: float
    detail_mrr: float
    timestamp_hit: float  # detail queries whose best passage of the right episode covers the moment


def build(corpus: Path, workdir: Path, encoder: Encoder) -> tuple[SearchContext, RetrievalSet, dict[str, int]]:
    rset = load_set(corpus)
    sessions = open_database(f"sqlite:///{workdir / 'retrieval.db'}")
    ids = store_documents(sessions, rset)
    store = IndexStore(workdir / "index")
    embed_pending(sessions, encoder, store)
    return SearchContext(sessions=sessions, reader=IndexReader(store), encoder_factory=lambda: encoder), rset, ids


def score_mode(ctx: SearchContext, rset: RetrievalSet, ids: dict[str, int], mode: str) -> ModeScores:
    return score_hits(rset, ids, lambda q: search(ctx, q, k=10, mode=mode), mode)


def score_hits(rset: RetrievalSet, ids: dict[str, int], hits_for, mode: str) -> ModeScores:
    """The set's figures for a ranking: `hits_for(query text)` gives its top hits, one per item,
    best first, each with `item_id`, `start` and `end` (a SearchHit, or anything shaped like one)."""
    results, relevant, detail_results, detail_relevant, covered = [], [], [], [], []
    for query in rset.queries:
        hits = hits_for(query.q)
        ranked = [h.item_id for h in hits]
        wanted = {ids[key] for key in query.relevant}
        results.append(ranked)
        relevant.append(wanted)
        if query.style == "detail":
            detail_results.append(ranked)
            detail_relevant.append(wanted)
        if query.at is not None:
            best = next((h for h in hits if h.item_id in wanted), None)
            covered.append(best is not None and best.start is not None
                           and best.start - AT_TOLERANCE <= query.at <= (best.end or best.start) + AT_TOLERANCE)
    return ModeScores(
        mode=mode,
        recall_at_10=round(recall_at_k(results, relevant, 10), 4),
        mrr=round(mrr(results, relevant), 4),
        detail_mrr=round(mrr(detail_results, detail_relevant), 4),
        timestamp_hit=round(sum(covered) / len(covered), 4) if covered else 0.0,
    )


def score_all(ctx: SearchContext, rset: RetrievalSet, ids: dict[str, int]) -> list[ModeScores]:
    return [score_mode(ctx, rset, ids, mode) for mode in MODES]


def as_json(scores: list[ModeScores]) -> str:
    return json.dumps([asdict(s) for s in scores], indent=2)
