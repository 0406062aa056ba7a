"""Support-check accuracy on SummEdits (news, podcast) and QAGS (CNN/DM, XSum), read in place.

Each (document, summary) pair is scored as the summary's sentences citing all the document's
passages; a summary is consistent when its weakest sentence passes the threshold. Labels:
SummEdits' own 0/1; QAGS' consistency (the share of 3 annotators who judged the summary
consistent) binarised by majority, > 0.5 consistent, as SummaC's benchmark does for QAGS-C/-X.
Dev/report splits: SummEdits' "evaluation" split is dev, its "test" split is reported; QAGS has
no split, so documents with doc_id % 3 == 0 are dev and the other two thirds are reported.

Chance: a checker whose verdicts ignore the label (approve everything, reject everything, flip a
coin) scores 0.5 balanced accuracy in expectation; `significance` says whether a measured figure
is above that by more than its sample size allows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from embed.passages import split_text
from digest.summary import grounding
from digest.summary.grounding import GroundingChecker, Support
from digest.summary.text import split_sentences

SETS = ("summedits_news", "summedits_podcast", "qags_cnndm", "qags_xsum")
GATE_PAIRS = 300  # the quality gate scores at most this many held-out pairs per set (every k-th)
CONFIDENCE = 0.99  # one-sided: a set is pinned when the lower 99% bound of its balanced accuracy is above 0.5
CHANCE = 0.5  # balanced accuracy of approve-all, reject-all and any checker that ignores the label


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
    return verdict_accuracy([s >= threshold for s in scores], labels)


def verdict_accuracy(verdicts: Sequence[bool], labels: Sequence[bool]) -> float:
    """Balanced accuracy of approve (True) / reject (False) verdicts: the mean of the share of
    consistent summaries approved and the share of inconsistent ones rejected."""
    tp = sum(1 for v, y in zip(verdicts, labels) if y and v)
    tn = sum(1 for v, y in zip(verdicts, labels) if not y and not v)
    positives = sum(labels)
    negatives = len(labels) - positives
    return 0.5 * (tp / max(positives, 1) + tn / max(negatives, 1))


@dataclass(frozen=True)
class Significance:
    pairs: int
    consistent: int
    inconsistent: int
    approved_consistent: int
    approved_inconsistent: int
    balanced_accuracy: float
    p_value: float  # one-sided, against balanced accuracy 0.5
    lower: float  # lower end of the one-sided CONFIDENCE interval of the balanced accuracy

    @property
    def significant(self) -> bool:
        return self.lower > CHANCE

    @property
    def pin(self) -> float | None:
        """The lower bound rounded down to two decimals, when that is still above chance."""
        floor = math.floor(self.lower * 100 + 1e-9) / 100
        return floor if floor > CHANCE else None


def significance(verdicts: Sequence[bool], labels: Sequence[bool], confidence: float = CONFIDENCE) -> Significance:
    """Is this balanced accuracy above chance by more than the number of pairs allows?

    Balanced accuracy is 0.5 + (a - b) / 2, where a is the share of consistent summaries the check
    approves and b the share of inconsistent ones it approves: it beats chance exactly when the
    check approves consistent summaries more often than inconsistent ones. The two shares come
    from independent groups of pairs (binomial, given the per-class counts), so the question is
    the classic one of a difference of two proportions, answered with the Agresti-Caffo interval
    (add one approved and one rejected pair to each class, then the normal approximation):

        a~ = (approved consistent + 1) / (consistent + 2),  b~ likewise for the inconsistent,
        se = sqrt(a~(1 - a~) / (consistent + 2) + b~(1 - b~) / (inconsistent + 2)),
        lower = 0.5 + (a~ - b~ - z * se) / 2,  p = 1 - Phi((a~ - b~) / se),  z = Phi^-1(confidence).

    Deterministic (no seed), computed from four counts, and p < 1 - confidence exactly when
    lower > 0.5. The added pairs keep the interval honest at small counts and at the extremes,
    where the plain Wald interval collapses: approve-all (a = b = 1) and reject-all (a = b = 0)
    get a wide interval around 0.5, never a significant one (their z stays below 1.5).
    benchmarks/grounding.py prints a permutation test of the labels beside it: on the four sets
    here both put every set on the same side of p = 0.01; where a class is almost never approved
    (SummEdits podcast) this p is the smaller of the two, so it is not the conservative choice at
    extreme counts.
    """
    labels = [bool(y) for y in labels]
    verdicts = [bool(v) for v in verdicts]
    if len(verdicts) != len(labels):
        raise ValueError(f"{len(verdicts)} verdicts for {len(labels)} labels")
    positives = sum(labels)
    negatives = len(labels) - positives
    tp = sum(1 for v, y in zip(verdicts, labels) if v and y)
    fp = sum(1 for v, y in zip(verdicts, labels) if v and not y)
    a = (tp + 1) / (positives + 2)
    b = (fp + 1) / (negatives + 2)
    se = math.sqrt(a * (1 - a) / (positives + 2) + b * (1 - b) / (negatives + 2))
    z = NormalDist().inv_cdf(confidence)
    return Significance(
        pairs=len(labels), consistent=positives, inconsistent=negatives,
        approved_consistent=tp, approved_inconsistent=fp,
        balanced_accuracy=verdict_accuracy(verdicts, labels),
        p_value=1 - NormalDist().cdf((a - b) / se),
        lower=CHANCE + (a - b - z * se) / 2)


def permutation_p_value(verdicts: Sequence[bool], labels: Sequence[bool], rounds: int = 10_000, seed: int = 0) -> float:
    """One-sided p of the balanced accuracy under shuffled labels (a cross-check of `significance`)."""
    v, y = np.asarray(verdicts, dtype=bool), np.asarray(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    shuffled = np.array([rng.permutation(y) for _ in range(rounds)])
    positives, negatives = y.sum(), (~y).sum()
    if not positives or not negatives:
        return 1.0
    observed = verdict_accuracy(v.tolist(), y.tolist())
    accuracies = 0.5 * ((shuffled & v).sum(1) / positives + (~shuffled & ~v).sum(1) / negatives)
    return float((1 + (accuracies >= observed - 1e-12).sum()) / (rounds + 1))


def trivial_verdicts(pairs: Sequence) -> dict[str, list[bool]]:
    """The checkers the gate must beat, on the same pairs."""
    return {"approve-all": [True] * len(pairs), "reject-all": [False] * len(pairs)}


def best_threshold(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    candidates = sorted(set(round(s, 3) for s in scores))
    best = max(candidates, key=lambda t: balanced_accuracy(scores, labels, t))
    return best, balanced_accuracy(scores, labels, best)


def default_weights() -> dict:
    return dict(grounding.WEIGHTS)
