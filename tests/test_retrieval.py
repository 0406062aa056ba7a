"""Retrieval quality gate: the 165-query set over TWIML transcripts, SummEdits and QAGS documents,
searched with the real all-MiniLM-L6-v2 model. The pins sit a little under the measured figures
(docs/benchmarks.md); lowering one needs a reason in the commit that lowers it."""

from __future__ import annotations

import pytest

from tests.retrieval_eval import score_all

PINS = {  # mode: (recall@10, MRR, timestamp hit on detail queries)
    "hybrid": (0.97, 0.93, 0.80),
    "vector": (0.95, 0.90, 0.70),
    "keyword": (0.95, 0.90, 0.70),
}


@pytest.fixture(scope="module")
def scores(retrieval_world):
    return {s.mode: s for s in score_all(*retrieval_world)}


def meets_pins(s, mode: str) -> bool:
    recall, reciprocal, timestamp = PINS[mode]
    print(f"\n{mode}: {s}")
    return s.recall_at_10 >= recall and s.mrr >= reciprocal and s.timestamp_hit >= timestamp


def hybrid_at_least_as_good(scores) -> bool:
    return scores["hybrid"].mrr >= max(scores["vector"].mrr, scores["keyword"].mrr) - 0.01


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(PINS))
def test_retrieval_meets_its_pins(scores, mode):
    assert meets_pins(scores[mode], mode), scores[mode]


@pytest.mark.slow
def test_hybrid_is_at_least_as_good_as_either_alone(scores):
    assert hybrid_at_least_as_good(scores)
