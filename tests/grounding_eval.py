"""Support-check accuracy on SummEdits (news, podcast) and QAGS (CNN/DM, XSum), read in place.

Each (document, summary) pair is scored as the summary's sentences citing all the document's
passages; a summary is consistent when its weakest sentence passes the threshold. Labels:
SummEdits' own 0/1; QAGS' consistency (the share of 3 annotators who judged the summary
consistent) binarised by majority, > 0.5 consistent, as SummaC's benchmark does for QAGS-C/-X.
Dev/report splits: SummEdits' "evaluation" split is dev, its "test" split is reported; QAGS has
no split, so documents with doc_id % 3 == 0 are dev and the other two thirds are reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embed.passages import split_text
from digest.summary import grounding
from digest.summary.grounding import GroundingChecker, Support
from digest.summary.text import split_sentences

SETS = ("summedits_news", "summedits_podcast", "qags_cnndm", "qags_xsum")
GATE_PAIRS = 300  # the quality gate scores at most this many held-out pairs per set (every k-th)


@dataclass(frozen=True)
class Pair:
    document: str
    summary: str
    consistent: bool
    dev: bool


def load(corpus: Path, name: str) -> list[Pair]:
    base = corpus / "summarization"
    if name.startswith("summedits"):
        rows = json.loads((base / "summedits" / f"{name}.json").read_text())
        return [Pair(r["doc"], r["summary"], str(r["label"]) == "1", r["split"] == "evaluation") for r in rows]
    rows = json.loads((base / "qags-unieval" / f"{name}.json").read_text())
    return [Pair(r["source"], r["system_output"], float(r["scores"]["consistency"]) > 0.5, int(r["doc_id"]) % 3 == 0)
            for r in rows]


def gate_subset(pairs: Sequence[Pair]) -> list[Pair]:
    held_out = [p for p in pairs if not p.dev]
    return held_out[:: max(1, -(-len(held_out) // GATE_PAIRS))]


def sentence_supports(checker: GroundingChecker, pairs: Sequence[Pair]) -> list[list[Support]]:
    """Per pair, one Support per summary sentence against the whole document's passages."""
    passages: dict[str, list[str]] = {}
    claims, evidence, owner = [], [], []
    for n, pair in enumerate(pairs):
        texts = passages.setdefault(pair.document, [p.text for p in split_text(pair.document)])
        for sentence in split_sentences(pair.summary) or [pair.summary]:
            claims.append(sentence)
            evidence.append(texts)
            owner.append(n)
    out: list[list[Support]] = [[] for _ in pairs]
    for n, support in zip(owner, checker.score_many(claims, evidence)):
        out[n].append(support)
    return out


def summary_score(supports: Sequence[Support], weights: dict | None = None) -> float:
    """The weakest sentence decides; weights override the module's fitted ones (for fitting)."""
    if not supports:
        return 0.0
    return min(s.score if weights is None else grounding.combine(s, weights) for s in supports)


def balanced_accuracy(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> float:
    tp = sum(1 for s, y in zip(scores, labels) if y and s >= threshold)
    tn = sum(1 for s, y in zip(scores, labels) if not y and s < threshold)
    positives = sum(labels)
    negatives = len(labels) - positives
    return 0.5 * (tp / max(positives, 1) + tn / max(negatives, 1))


def best_threshold(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    candidates = sorted(set(round(s, 3) for s in scores))
    best = max(candidates, key=lambda t: balanced_accuracy(scores, labels, t))
    return best, balanced_accuracy(scores, labels, best)


def default_weights() -> dict:
    return dict(grounding.WEIGHTS)
