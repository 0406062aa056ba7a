"""Fit and measure the support check on SummEdits and QAGS (see tests/grounding_eval.py).

    .venv/bin/python -m benchmarks.grounding [--encoder minilm] [--fit]

Embeds every set once with the real encoder, then (with --fit) grid-searches the combination
weights and the threshold on the dev splits pooled (mean balanced accuracy over the four sets),
and prints balanced accuracy per set on the held-out splits: with the module's current
constants, and with a threshold tuned per set on its own dev split (for comparison only). Beside
each figure: approve-all and reject-all on the same pairs (0.5 by construction), the one-sided
p against 0.5 and the lower 99% bound (tests/grounding_eval.significance), a permutation test of
the labels as a cross-check, and whether the gate may pin the set (its lower bound, rounded down,
above 0.5) or must report it as a figure only.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import time
from pathlib import Path

import numpy as np

from embed.encoder import get_encoder
from digest.summary.grounding import DEFAULT_THRESHOLD, GroundingChecker
from digest.summary.vectors import SentenceVectors
from tests.conftest import CORPUS
from tests.grounding_eval import (
    SETS,
    balanced_accuracy,
    best_threshold,
    default_weights,
    gate_subset,
    load,
    permutation_p_value,
    sentence_supports,
    significance,
    summary_score,
    trivial_verdicts,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--cache", type=Path, help="directory of per-set sentence scores: embed once, fit many times")
    parser.add_argument("--sets", nargs="*", default=list(SETS), help="score only these (e.g. in parallel runs)")
    parser.add_argument("--threads", type=int, default=None, help="encoder threads")
    args = parser.parse_args()
    data = {}
    checker = None
    for name in args.sets:
        cached = args.cache / f"{name}.pkl" if args.cache else None
        if cached and cached.exists():
            data[name] = pickle.loads(cached.read_bytes())
            continue
        options = {"threads": args.threads} if args.threads and args.encoder != "fake" else {}
        checker = checker or GroundingChecker(SentenceVectors(get_encoder(args.encoder, **options)))
        data[name] = score_set(checker, name)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(pickle.dumps(data[name]))
    if set(data) != set(SETS):
        print(f"scored {sorted(data)}; fit and report need all of {SETS}")
        return
    weights, threshold = default_weights(), DEFAULT_THRESHOLD
    if args.fit:
        weights, threshold = fit(data)
        print(f"fitted on dev: {weights}, threshold {threshold}")
    report(data, weights, threshold)


def score_set(checker: GroundingChecker, name: str):
    pairs = load(CORPUS, name)
    started = time.perf_counter()
    supports = sentence_supports(checker, pairs)
    print(f"{name}: {len(pairs)} pairs ({sum(p.dev for p in pairs)} dev), "
          f"{sum(p.consistent for p in pairs)} consistent, scored in {time.perf_counter() - started:.1f} s",
          flush=True)
    return pairs, supports


def split(data, name, dev: bool, weights):
    pairs, supports = data[name]
    rows = [(summary_score(s, weights), p.consistent) for p, s in zip(pairs, supports) if p.dev == dev]
    return [r[0] for r in rows], [r[1] for r in rows]


FEATURES = ("similarity", "coverage", "local_coverage", "number", "entity", "local_number", "local_entity")


def _features(supports) -> np.ndarray:
    """Per sentence: the terms combine() weighs (penalties as negative counts, capped at 2)."""
    return np.array([[s.similarity, s.coverage, s.local_coverage, -min(len(s.missing_numbers), 2),
                      -min(len(s.missing_entities), 2), -min(s.local_missing_numbers, 2),
                      -min(s.local_missing_entities, 2)] for s in supports], dtype=np.float64).reshape(-1, 7)


def _dev_matrices(data):
    out = {}
    for name, (pairs, supports) in data.items():
        rows = [(p, s) for p, s in zip(pairs, supports) if p.dev and s]
        owner = np.repeat(np.arange(len(rows)), [len(s) for _, s in rows])
        feats = _features([x for _, s in rows for x in s])
        out[name] = (feats, owner, np.array([p.consistent for p, _ in rows]))
    return out


def _balanced(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    passed = scores[None, :] >= thresholds[:, None]
    tpr = (passed & labels).sum(1) / max(labels.sum(), 1)
    tnr = (~passed & ~labels).sum(1) / max((~labels).sum(), 1)
    return 0.5 * (tpr + tnr)


def fit(data) -> tuple[dict, float]:
    """Grid search on the dev splits pooled: the weights and one threshold that maximise the
    mean balanced accuracy over the four sets."""
    dev = _dev_matrices(data)
    thresholds = np.arange(0.30, 0.96, 0.01)
    best = (-1.0, None, None)
    for sim, local_share, num, ent, lnum, lent in itertools.product(
            [0.3, 0.5, 0.7], [0.0, 0.5, 1.0], [0.0, 0.15, 0.3], [0.0, 0.1, 0.2], [0.0, 0.05, 0.1], [0.0, 0.05, 0.1]):
        w = np.array([sim, (1 - sim) * (1 - local_share), (1 - sim) * local_share, num, ent, lnum, lent])
        mean = np.zeros(len(thresholds))
        for feats, owner, labels in dev.values():
            sentence = np.clip(feats @ w, 0.0, 1.0)
            summary = np.full(labels.shape, np.inf)
            np.minimum.at(summary, owner, sentence)
            mean += _balanced(summary, labels, thresholds) / len(dev)
        if mean.max() > best[0]:
            best = (float(mean.max()), w, float(thresholds[int(mean.argmax())]))
    print(f"dev mean balanced accuracy {best[0]:.3f}")
    return {k: round(float(v), 3) for k, v in zip(FEATURES, best[1])}, round(best[2], 2)


def report(data, weights, threshold) -> None:
    print(f"{'set':20} {'held-out n':>10} {'BA (shared threshold)':>22} {'BA (own dev threshold)':>23}")
    for name in data:
        scores, labels = split(data, name, False, weights)
        own, _ = best_threshold(*split(data, name, True, weights))
        print(f"{name:20} {len(scores):>10} {balanced_accuracy(scores, labels, threshold):>22.3f} "
              f"{balanced_accuracy(scores, labels, own):>17.3f} @{own:.2f}")
    print(f"\nagainst chance at threshold {threshold} "
          "(one-sided; pinned when the lower 99% bound rounded down is > 0.5)")
    print(f"{'set':20} {'pairs':>9} {'n (+ / -)':>14} {'BA':>6} {'approve-all':>11} {'reject-all':>10} "
          f"{'p':>8} {'p (perm.)':>9} {'lower 99%':>9}  verdict")
    for name in data:
        pairs, supports = data[name]
        by_pair = dict(zip(map(id, pairs), supports))
        for label, chosen in (("held-out", [p for p in pairs if not p.dev]), ("gate", gate_subset(pairs))):
            labels = [p.consistent for p in chosen]
            verdicts = [summary_score(by_pair[id(p)], weights) >= threshold for p in chosen]
            result = significance(verdicts, labels)
            trivial = [significance(v, labels).balanced_accuracy for v in trivial_verdicts(chosen).values()]
            verdict = f"pin {result.pin:.2f}" if result.pin is not None else "figure only"
            shown_p = f"{result.p_value:.4f}" if result.p_value >= 1e-4 else f"{result.p_value:.0e}"
            counts = f"{result.pairs} ({result.consistent}/{result.inconsistent})"
            print(f"{name:20} {label:>9} {counts:>14} {result.balanced_accuracy:>6.3f} "
                  f"{trivial[0]:>11.3f} {trivial[1]:>10.3f} {shown_p:>8} "
                  f"{permutation_p_value(verdicts, labels):>9.4f} {result.lower:>9.3f}  {verdict}")


if __name__ == "__main__":
    main()
