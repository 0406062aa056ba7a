"""The scrapinghub article-extraction-benchmark metric (upstream evaluate.py, re-implemented).

Tokens = regex \\w+; each text becomes a multiset of 4-token shingles; per document TP/FP/FN
are normalised to sum to 1; precision and recall are macro-averaged; F1 = 2PR/(P+R).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_TOKEN = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, n: int = 4) -> Counter:
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1)))


def document_scores(predicted: str, expected: str) -> tuple[float, float, float]:
    pred, true = shingles(predicted), shingles(expected)
    tp = sum((pred & true).values())
    fp = sum((pred - true).values())
    fn = sum((true - pred).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (1.0, 0.0, 0.0)


def evaluate(folder: Path, extract: Callable[[str, str], str]) -> dict[str, float]:
    truth = json.loads((folder / "ground-truth.json").read_text())
    precisions, recalls = [], []
    for item_id, expected in sorted(truth.items()):
        html = gzip.decompress((folder / "html" / f"{item_id}.html.gz").read_bytes()).decode("utf-8", "replace")
        tp, fp, fn = document_scores(extract(html, expected["url"]) or "", expected["articleBody"])
        precisions.append(tp / (tp + fp) if tp + fp else 0.0)
        recalls.append(tp / (tp + fn) if tp + fn else 0.0)
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return {"documents": len(precisions), "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
