"""Fit and measure the support check on SummEdits and QAGS (see tests/grounding_eval.py).

    .venv/bin/python -m benchmarks.grounding [--encoder minilm] [--fit]

Embeds every set once with the real encoder, then (with --fit) grid-searches the combination
weights and the threshold on the dev splits pooled (mean balanced accuracy over the four sets),
and prints balanced accuracy per set on the held-out splits: with the module's current
constants, and with a threshold tuned per set on its own dev split (for comparison only).
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import time
from pathlib import Path

from embed.encoder import get_encoder
from embed.summarise.grounding import DEFAULT_THRESHOLD, GroundingChecker
from embed.summarise.vectors import SentenceVectors
from tests.conftest import CORPUS
from tests.grounding_eval import (
    SETS,
    balanced_accuracy,
    best_threshold,
    default_weights,
    load,
    sentence_supports,
    summary_score,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--cache", type=Path, help="pickle of the sentence scores: embed once, fit many times")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        data = pickle.loads(args.cache.read_bytes())
    else:
        data = score_sets(GroundingChecker(SentenceVectors(get_encoder(args.encoder))))
        if args.cache:
            args.cache.write_bytes(pickle.dumps(data))
    weights, threshold = default_weights(), DEFAULT_THRESHOLD
    if args.fit:
        weights, threshold = fit(data)
        print(f"fitted on dev: {weights}, threshold {threshold}")
    report(data, weights, threshold)


def score_sets(checker: GroundingChecker) -> dict:
    data = {}
    for name in SETS:
        pairs = load(CORPUS, name)
        started = time.perf_counter()
        supports = sentence_supports(checker, pairs)
        print(f"{name}: {len(pairs)} pairs ({sum(p.dev for p in pairs)} dev), "
              f"{sum(p.consistent for p in pairs)} consistent, scored in {time.perf_counter() - started:.1f} s",
              flush=True)
        data[name] = (pairs, supports)
    return data


def split(data, name, dev: bool, weights):
    pairs, supports = data[name]
    rows = [(summary_score(s, weights), p.consistent) for p, s in zip(pairs, supports) if p.dev == dev]
    return [r[0] for r in rows], [r[1] for r in rows]


def fit(data) -> tuple[dict, float]:
    best = (-1.0, None, None)
    grid = itertools.product([0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.0, 0.1, 0.2, 0.3], [0.0, 0.05, 0.1, 0.15, 0.2])
    for sim, num, ent in grid:
        weights = dict(similarity_weight=sim, number_penalty=num, entity_penalty=ent)
        dev = {name: split(data, name, True, weights) for name in data}
        for threshold in [x / 100 for x in range(30, 96)]:
            mean = sum(balanced_accuracy(*dev[name], threshold) for name in data) / len(data)
            if mean > best[0]:
                best = (mean, weights, threshold)
    print(f"dev mean balanced accuracy {best[0]:.3f}")
    return best[1], best[2]


def report(data, weights, threshold) -> None:
    print(f"{'set':20} {'held-out n':>10} {'BA (shared threshold)':>22} {'BA (own dev threshold)':>23}")
    for name in data:
        scores, labels = split(data, name, False, weights)
        own, _ = best_threshold(*split(data, name, True, weights))
        print(f"{name:20} {len(scores):>10} {balanced_accuracy(scores, labels, threshold):>22.3f} "
              f"{balanced_accuracy(scores, labels, own):>17.3f} @{own:.2f}")


if __name__ == "__main__":
    main()
