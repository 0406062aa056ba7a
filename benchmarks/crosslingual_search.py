"""Search across languages (docs/multilingual.md, "Search across languages"), in one run on the
same passages: the retrieval set's documents (TWIML, SummEdits, QAGS) plus the 48 English and
Chinese items of tests/data/crosslingual_pairs.json, all through the real embed stage.

1. The embed stage before (all-MiniLM-L6-v2 only) and after (+ USE-m3 for the Chinese items'
   passages and every item's lead passage), each on a fresh database holding the same items:
   passages, seconds, passages/s; the encoders are loaded and warmed before either run.
2. The cosine floor a hit of the second index needs (--fit: only this): each labelled item's
   title is a query; a candidate of the other language is relevant when it is the same story's,
   noise when it is another topic's (a sibling story of the same topic is neither); the English
   retrieval set's queries are noise against every Chinese item (none is about them). The floor
   with the best F1 on the fitting half (split_halves of tests/test_cluster_quality.py; retrieval
   queries by parity), reported on the other half.
3. Twins through search(): each English item's title searched (hybrid, k=20): is the first
   Chinese hit an item of the same story? (EN->ZH); each Chinese title, the first of the 24
   labelled English items among the hits (ZH->EN; the retrieval set's documents are distractors
   too). Without and with the second index.
4. The English retrieval set's recall@10 and MRR per mode, without and with the second index,
   in the same world (Chinese items present in both).
5. Query cost: CPU ms per query (process time, 1 thread) of USE-m3 encoding one query, and of a
   whole hybrid search without and with the second index, over the retrieval set's queries.

    .venv/bin/python -m benchmarks.crosslingual_search [--fit] [--floor F]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from embed.encoder import get_encoder
from embed.index import IndexReader, IndexStore
from embed.multilingual_index import DEFAULT_FLOOR, MultilingualEmbedding, MultilingualSearch, stores
from embed.passages import split_item
from embed.pipeline import embed_pending
from embed.search import SearchContext, search
from store.db import open_database
from tests.crosslingual_world import add_items, load_crosslingual
from tests.conftest import CORPUS  # BRIEFCAST_CORPUS, else ../shared/corpus
from tests.retrieval_eval import score_mode
from tests.retrieval_set import load_set, store_documents
from tests.test_cluster_quality import split_halves


def build_world(workdir: Path, rset, data):
    workdir.mkdir(parents=True, exist_ok=True)
    sessions = open_database(f"sqlite:///{workdir / 'world.db'}")
    ids = store_documents(sessions, rset)
    labelled = add_items(sessions, data)
    return sessions, ids, labelled


def embed_world(workdir: Path, sessions, minilm, usem3) -> dict:
    multilingual = MultilingualEmbedding(usem3, workdir / "index") if usem3 is not None else None
    started, cpu = time.perf_counter(), time.process_time()
    report = embed_pending(sessions, minilm, IndexStore(workdir / "index"), multilingual=multilingual)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    ml = report.multilingual
    return {"passages": report.passages_embedded, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "passages_per_s": round(report.passages_embedded / seconds, 1),
            "second_index": None if ml is None else {"embedded": ml.embedded, "seconds": round(ml.seconds, 1),
                                                     "counts": ml.counts}}


def contexts(workdir: Path, sessions, minilm, usem3, floor: float) -> tuple[SearchContext, SearchContext]:
    reader = IndexReader(IndexStore(workdir / "index"))
    plain = SearchContext(sessions=sessions, reader=reader, encoder_factory=lambda: minilm)
    readers = {name: IndexReader(store) for name, store in stores(workdir / "index").items()}
    across = SearchContext(sessions=sessions, reader=reader, encoder_factory=lambda: minilm,
                           multilingual=MultilingualSearch(readers, lambda: usem3, floor))
    return plain, across


def labelled_rows(usem3, data) -> list[tuple[str, str, float]]:
    """(query item, candidate item of the other language, cosine of the query to the candidate's
    best passage). Candidates are cut by the real splitter and kept as the second index keeps
    them: a Chinese item's every passage, an English item's lead."""
    passages = {k: split_item(spec["title"], spec["text"]) for k, spec in data["items"].items()}
    vectors = {k: usem3.embed_batch([p.text for p in (ps if data["items"][k]["lang"] != "en" else ps[:1])])
               for k, ps in passages.items()}
    keys = list(data["items"])
    queries = usem3.embed_batch([data["items"][k]["title"] for k in keys])
    rows = []
    for key, query in zip(keys, queries):
        for other, vecs in vectors.items():
            if data["items"][other]["lang"] != data["items"][key]["lang"]:
                rows.append((key, other, float(np.max(vecs @ query))))
    return rows


def labelled_pairs(rows, data) -> list[tuple[str, float, bool]]:
    """(query key, cosine, relevant): a same-story candidate is relevant, one of another topic is
    noise; a sibling story of the same topic is neither (showing it is no error: it ranks below)."""
    items, stories = data["items"], data["stories"]
    out = []
    for query, other, cosine in rows:
        same = items[query]["story"] == items[other]["story"]
        if same or stories[items[query]["story"]]["topic"] != stories[items[other]["story"]]["topic"]:
            out.append((query, cosine, same))
    return out


def noise_pairs(rset, usem3, data) -> list[tuple[int, float]]:
    """(query number, best cosine over the Chinese items' passages) for the English retrieval set's
    queries: none is about any of them, so each one above the floor lets noise in."""
    chinese = [p.text for spec in data["items"].values() if spec["lang"] == "zh"
               for p in split_item(spec["title"], spec["text"])]
    vectors = usem3.embed_batch(chinese)
    queries = usem3.embed_batch([q.q for q in rset.queries])
    return list(enumerate((queries @ vectors.T).max(axis=1).tolist()))


def prf(pairs, floor) -> dict:
    tp = sum(1 for c, rel in pairs if c >= floor and rel)
    fp = sum(1 for c, rel in pairs if c >= floor and not rel)
    fn = sum(1 for c, rel in pairs if c < floor and rel)
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(2 * p * r / max(p + r, 1e-9), 3),
            "pairs": len(pairs)}


def fit_floor(usem3, rset, data) -> dict:
    """The floor with the best F1 on the fitting half (the middle of the best plateau), reported on
    the other half. Halves: labelled queries by split_halves, retrieval-set queries by parity."""
    halves = split_halves(data)
    labelled, noise = labelled_pairs(labelled_rows(usem3, data), data), noise_pairs(rset, usem3, data)
    side = {h: [(c, rel) for q, c, rel in labelled if halves[q] == h] + [(c, False) for n, c in noise if n % 2 == h]
            for h in (0, 1)}
    grid = [round(x, 2) for x in np.arange(0.10, 0.70, 0.01)]
    scores = [(prf(side[0], f)["f1"], f) for f in grid]
    best = max(s for s, _ in scores)
    plateau = [f for s, f in scores if s == best]
    floor = plateau[len(plateau) // 2]
    held_noise = [c for n, c in noise if n % 2 == 1]
    negatives = [c for c, rel in side[0] if not rel]
    strong = float(np.ceil(max(negatives) * 100) / 100)  # above every negative of the fitting half
    held_same = [c for c, rel in side[1] if rel]
    return {"floor": floor, "fitting_half": prf(side[0], floor), "held_out_half": prf(side[1], floor),
            "held_out_english_queries_letting_a_chinese_item_in": f"{sum(c >= floor for c in held_noise)}/{len(held_noise)}",
            "english_noise_best_cosine_max": round(max(c for _, c in noise), 3),
            "strong_floor": strong,
            "held_out_negatives_above_strong": f"{sum(c >= strong for c, rel in side[1] if not rel)}/{len(side[1]) - len(held_same)}",
            "held_out_english_queries_above_strong": f"{sum(c >= strong for c in held_noise)}/{len(held_noise)}",
            "held_out_same_story_above_strong": f"{sum(c >= strong for c in held_same)}/{len(held_same)}",
            "same_story_cosine_min": round(min(c for _, c, rel in labelled if rel), 3),
            "same_story_cosine_median": round(float(np.median([c for _, c, rel in labelled if rel])), 3)}


def twins(ctx: SearchContext, data, labelled, k: int = 50) -> dict:
    """Per direction: the share of titles whose first hit in the other language is the same story's,
    and the mean position (1-based, among all k hits) of that first same-story hit."""
    item_key = {v: k for k, v in labelled.items()}
    found: dict[str, list[bool]] = {"en->zh": [], "zh->en": []}
    places: dict[str, list[int]] = {"en->zh": [], "zh->en": []}
    for key, spec in data["items"].items():
        want = "zh" if spec["lang"] == "en" else "en"
        direction = f"{spec['lang']}->{want}"
        hits = [item_key.get(h.item_id) for h in search(ctx, spec["title"], k=k)]
        other = [h for h in hits if h is not None and data["items"][h]["lang"] == want]
        found[direction].append(bool(other) and data["items"][other[0]]["story"] == spec["story"])
        place = next((n for n, h in enumerate(hits, 1) if h is not None and data["items"][h]["lang"] == want
                      and data["items"][h]["story"] == spec["story"]), k + 1)
        places[direction].append(place)
    return {d: {"first_other_language_hit_is_twin": round(sum(v) / len(v), 3),
                "twin_mean_position": round(sum(places[d]) / len(places[d]), 1),
                "twin_in_top_10": round(sum(p <= 10 for p in places[d]) / len(places[d]), 3)} for d, v in found.items()}


def query_cost(ctx_plain, ctx_across, rset, usem3, rounds: int = 3) -> dict:
    """CPU ms per query (process time): USE-m3 encoding one query (1 thread), and a whole hybrid
    search without and with the second index, the two alternating query by query so that the
    machine's load falls on both alike; the median of `rounds` rounds."""
    queries = [q.q for q in rset.queries]
    usem3.embed_batch(["warm up"])
    search(ctx_plain, queries[0]), search(ctx_across, queries[0])
    encode, costs = [], {"without": [], "with": []}
    for _ in range(rounds):
        cpu = time.process_time()
        for q in queries:
            usem3.embed_batch([q])
        encode.append((time.process_time() - cpu) / len(queries) * 1000)
        spent = {"without": 0.0, "with": 0.0}
        for q in queries:
            for name, ctx in (("without", ctx_plain), ("with", ctx_across)):
                cpu = time.process_time()
                search(ctx, q)
                spent[name] += time.process_time() - cpu
        for name in spent:
            costs[name].append(spent[name] / len(queries) * 1000)
    return {"usem3_encode_ms": round(float(np.median(encode)), 1),
            "hybrid_search_ms": {name: round(float(np.median(v)), 1) for name, v in costs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--floor", type=float, default=None, help="search with this floor, not DEFAULT_FLOOR")
    parser.add_argument("--fit", action="store_true", help="only fit the floor (USE-m3 only, ~1 min)")
    args = parser.parse_args()
    rset, data = load_set(CORPUS), load_crosslingual()
    usem3 = get_encoder("usem3", threads=2)
    out: dict = {"floor": fit_floor(usem3, rset, data)}
    if not args.fit:
        out["floor"]["used"] = floor = args.floor if args.floor is not None else DEFAULT_FLOOR
        out |= search_figures(rset, data, usem3, floor)
    print(json.dumps(out, indent=1))


def search_figures(rset, data, usem3, floor: float) -> dict:
    minilm = get_encoder("minilm", threads=2)
    minilm.embed_batch(["warm up"]), usem3.embed_batch(["warm up"])
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        before_dir, after_dir = Path(tmp) / "before", Path(tmp) / "after"
        sessions_b, _, _ = build_world(before_dir, rset, data)
        sessions, ids, labelled = build_world(after_dir, rset, data)
        out["embed_before"] = embed_world(before_dir, sessions_b, minilm, None)
        out["embed_after"] = embed_world(after_dir, sessions, minilm, usem3)
        query_encoder = get_encoder("usem3", threads=1)
        plain, across = contexts(after_dir, sessions, minilm, query_encoder, floor)
        out["twins"] = {"without": twins(plain, data, labelled), "with": twins(across, data, labelled)}
        out["retrieval"] = {name: {m: vars(score_mode(ctx, rset, ids, m)) for m in ("hybrid", "vector")}
                            for name, ctx in (("without", plain), ("with", across))}
        out["query_cost"] = query_cost(plain, across, rset, query_encoder)
    return out


if __name__ == "__main__":
    main()
