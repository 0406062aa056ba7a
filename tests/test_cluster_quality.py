"""Clustering quality gate: stories against tests/data/story_pairs.json, with the real
all-MiniLM-L6-v2 encoder, the real ingest of the sample world and the real embed stage.

The pairs come from three places: the bundled sample world (the same stories told by several
sources and kinds, plus singletons, thread noise and a rumour), SummEdits' 2023 news documents
(two reports of the EU Commission's TikTok ban; two JWST stories and a Canadian TikTok ban as
near misses) and TWIML transcripts (one episode transcribed by several Whisper sizes is one
story; different episodes are not).

The link's weights and threshold were fitted on one half of the items (benchmarks/cluster_fit.py);
the figures pinned here are the other half's: pairwise precision/recall/F1 over the pairs whose two
items are both in that half, and B-cubed over its items. Measured figures are in
docs/benchmarks.md; the pins sit a little below them and may only be raised.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.cluster import cluster_pending
from embed.encoder import get_encoder
from embed.index import IndexStore
from embed.pipeline import embed_pending
from store.models import Item, Source, StoryItem
from tests.conftest import make_settings
from tests.test_samples import ingest_samples

PAIRS = Path(__file__).parent / "data" / "story_pairs.json"
CORPUS_WORDS = 400  # only an item's lead passage makes its vector: embedding the rest would be time wasted

# Measured on the held-out half (see docs/benchmarks.md); pinned a little below.
PINNED = {  # subset: (pairwise F1, B-cubed F1)
    "sample_en": (0.85, 0.88),  # measured 0.895 (P 1.000, R 0.810), B-cubed 0.913 (P 1.000, R 0.840)
    # measured 0.870, B-cubed 0.902 with the Chinese items joined by USE-m3 (docs/multilingual.md);
    # 0.791 / 0.849 when they stayed stories of their own
    "sample": (0.85, 0.88),
    "corpus": (0.95, 0.97),  # measured 1.000, B-cubed 1.000 (5 same-story pairs in this half)
}
# Over both halves (the fitting half's pairs and the pairs across the halves count too).
PINNED_WHOLE = {"sample_en": 0.78, "corpus": 0.90, "sample": 0.80}  # measured 0.802, 0.941, 0.807 (0.701 with Chinese fenced)


def load_pairs() -> dict:
    return json.loads(PAIRS.read_text(encoding="utf-8"))


def _corpus_text(corpus: Path, spec: dict) -> tuple[str, str]:
    if spec["corpus"] == "summedits":
        records = json.loads((corpus / spec["file"]).read_text(encoding="utf-8"))
        doc = next(r["doc"] for r in records if r["id"] == spec["id"])
        first, _, rest = doc.strip().partition("\n")
        return first[:200], " ".join(doc.split()[:CORPUS_WORDS])
    text = (corpus / spec["path"]).read_text(encoding="utf-8")
    return Path(spec["path"]).stem, " ".join(text.split()[:CORPUS_WORDS])


def corpus_date(spec: dict) -> datetime:
    """When the item was published, roughly: SummEdits' news documents are from the last week of
    February 2023; TWIML publishes weekly, so an episode's number places it (its re-transcriptions
    share its date)."""
    if spec["corpus"] == "summedits":
        return datetime(2023, 2, 27, 12, tzinfo=UTC)
    number = int(re.search(r"(\d{3,4})", Path(spec["path"]).stem).group(1))
    return datetime(2012, 1, 2, tzinfo=UTC) + timedelta(days=7 * number)


def add_corpus_items(session, corpus: Path, data: dict) -> dict[str, int]:
    sources: dict[str, Source] = {}
    found: dict[str, int] = {}
    for key, spec in data["items"].items():
        if spec["corpus"] == "sample":
            continue
        name = spec.get("file") or spec["path"]
        if name not in sources:
            sources[name] = Source(url=f"corpus://{name}", kind="podcast" if spec["kind"] == "episode" else "feed",
                                   title=name)
            session.add(sources[name])
            session.flush()
        title, text = _corpus_text(corpus, spec)
        item = Item(source_id=sources[name].id, stable_key=key[:64], content_hash=f"c-{len(found)}", entry_hash="e",
                    kind=spec["kind"], title=title, text=text, published=corpus_date(spec))
        session.add(item)
        session.flush()
        found[key] = item.id
    return found


def sample_item_ids(session, data: dict) -> dict[str, int]:
    rows = session.execute(select(Item.id, Item.title, Source.url).join(Source, Source.id == Item.source_id)).all()
    by_title = {(url.split("/", 3)[3], title): item_id for item_id, title, url in rows}
    found = {}
    for key, spec in data["items"].items():
        if spec["corpus"] == "sample":
            found[key] = by_title[(spec["source"].lstrip("/"), spec["title"])]
    return found


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def split_halves(data: dict) -> dict[str, int]:
    """Item key -> 0 (the half the link is fitted on) or 1 (the half it is reported on).

    By item, so that no item is in both halves: a pair belongs to a half only when both its items
    do (pairs across the halves are used by neither), and the held-out half's texts were never
    seen in fitting, not even as the other end of a pair. Stratified by (story label, language)
    so that both halves hold part of every story told more than once; within a stratum the items
    alternate in the order of a hash of their key, starting on a side the stratum's hash picks.
    """
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, spec in data["items"].items():
        strata[(spec["story"], spec["lang"])].append(key)
    half = {}
    for (story, lang), keys in sorted(strata.items()):
        for n, key in enumerate(sorted(keys, key=_hash)):
            half[key] = (n + _hash(story + lang)) % 2
    return half


def pairs_in_half(data: dict, halves: dict[str, int], side: int) -> list[dict]:
    return [p for p in data["pairs"] if halves[p["a"]] == halves[p["b"]] == side]


def pairwise_scores(pairs: list[dict], story_of: dict[str, int | None]) -> dict:
    tp = fp = fn = tn = 0
    for pair in pairs:
        a, b = story_of.get(pair["a"]), story_of.get(pair["b"])
        predicted = a is not None and a == b
        if predicted and pair["same"]:
            tp += 1
        elif predicted:
            fp += 1
        elif pair["same"]:
            fn += 1
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"pairs": len(pairs), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


def bcubed_scores(keys: list[str], label: dict[str, str], story_of: dict[str, int | None]) -> dict:
    """B-cubed over the given items: per item, the share of its story that carries its label
    (precision) and the share of its label's items in its story (recall), averaged; F1 of the two.
    Only the given items count on both sides (the story is cut down to them)."""
    clusters: dict[object, set[str]] = defaultdict(set)
    labelled: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        clusters[story_of.get(key) or ("alone", key)].add(key)
        labelled[label[key]].add(key)
    precision = recall = 0.0
    for key in keys:
        mine, same = clusters[story_of.get(key) or ("alone", key)], labelled[label[key]]
        precision += len(mine & same) / len(mine)
        recall += len(mine & same) / len(same)
    precision, recall = precision / len(keys), recall / len(keys)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"items": len(keys), "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


def _pair_subsets(data: dict, pairs: list[dict]) -> dict[str, list[dict]]:
    items = data["items"]
    return {
        "all": pairs,
        "sample": [p for p in pairs if items[p["a"]]["corpus"] == "sample"],
        "sample_en": [p for p in pairs if items[p["a"]]["corpus"] == "sample"
                      and items[p["a"]]["lang"] == items[p["b"]]["lang"] == "en"],
        "corpus": [p for p in pairs if items[p["a"]]["corpus"] != "sample"],
    }


def _item_subsets(data: dict, keys: list[str]) -> dict[str, list[str]]:
    """Items for B-cubed: those that tell two stories ("S1+S7") have no label to score and are left out."""
    items = data["items"]
    single = [k for k in keys if "+" not in items[k]["story"]]
    return {
        "all": single,
        "sample": [k for k in single if items[k]["corpus"] == "sample"],
        "sample_en": [k for k in single if items[k]["corpus"] == "sample" and items[k]["lang"] == "en"],
        "corpus": [k for k in single if items[k]["corpus"] != "sample"],
    }


def score_stories(data: dict, story_of: dict[str, int | None], side: int | None = None) -> dict[str, dict]:
    """Pairwise and B-cubed scores per subset, over one half (0 or 1) or over everything (None)."""
    halves = split_halves(data)
    keys = [k for k in data["items"] if side is None or halves[k] == side]
    pairs = data["pairs"] if side is None else pairs_in_half(data, halves, side)
    label = {k: spec["story"] for k, spec in data["items"].items()}
    item_sets = _item_subsets(data, keys)
    return {name: {"pairwise": pairwise_scores(subset, story_of),
                   "bcubed": bcubed_scores(item_sets[name], label, story_of)}
            for name, subset in _pair_subsets(data, pairs).items()}


def baselines(data: dict, side: int | None = None) -> dict[str, dict[str, dict]]:
    """The trivial clusterings: everything one story, every item a story of its own."""
    keys = list(data["items"])
    return {"one story": score_stories(data, dict.fromkeys(keys, 1), side),
            "singletons": score_stories(data, {k: n for n, k in enumerate(keys)}, side)}


def mixed_stories(data: dict, story_of: dict[str, int | None]) -> dict[int, set[str]]:
    """Stories whose article/episode members carry two labelled stories (items that tell two,
    labelled "S1+S7", are exempt; posts are not checked): story id -> the labels it mixes."""
    labels: dict[int, set[str]] = defaultdict(set)
    for key, spec in data["items"].items():
        story = story_of.get(key)
        if spec["corpus"] == "sample" and spec["kind"] in ("article", "episode") and "+" not in spec["story"] \
                and story is not None:
            labels[story].add(spec["story"])
    return {story: found for story, found in labels.items() if len(found) > 1}


def stories_by_key(sessions, ids: dict[str, int]) -> dict[str, int | None]:
    with sessions() as session:
        story = dict(session.execute(select(StoryItem.item_id, StoryItem.story_id)).all())
    return {key: story.get(item_id) for key, item_id in ids.items()}


def build_eval_world(settings, sessions, server, corpus: Path, encoder) -> dict[str, int]:
    """Sample world ingested for real, corpus items added, everything embedded: item ids by pair key."""
    data = load_pairs()
    report = ingest_samples(settings, sessions, server)
    assert report.count("failed") == 0
    with sessions() as session, session.begin():
        ids = add_corpus_items(session, corpus, data)
        ids |= sample_item_ids(session, data)
    embed_pending(sessions, encoder, IndexStore(settings.index_dir))
    return ids


def test_pairs_file_is_well_formed():
    data = load_pairs()
    assert len(data["pairs"]) >= 100
    assert sum(p["same"] for p in data["pairs"]) >= 50
    for pair in data["pairs"]:
        assert pair["a"] in data["items"] and pair["b"] in data["items"] and pair["reason"]
        same_label = data["items"][pair["a"]]["story"] == data["items"][pair["b"]]["story"]
        assert pair["same"] == same_label, pair


def test_the_halves_split_items_and_share_every_story():
    data = load_pairs()
    halves = split_halves(data)
    assert set(halves) == set(data["items"]) and set(halves.values()) == {0, 1}
    fit, held = pairs_in_half(data, halves, 0), pairs_in_half(data, halves, 1)
    assert not {(p["a"], p["b"]) for p in fit} & {(p["a"], p["b"]) for p in held}
    assert {p["a"] for p in held} | {p["b"] for p in held} <= {k for k, side in halves.items() if side == 1}
    for side in (fit, held):  # each half has same-story pairs to fit or to report
        assert sum(p["same"] for p in side) >= 15
    strata = defaultdict(set)
    for key, spec in data["items"].items():
        strata[(spec["story"], spec["lang"])].add(halves[key])
    sizes = defaultdict(int)
    for spec in data["items"].values():
        sizes[(spec["story"], spec["lang"])] += 1
    assert all(strata[s] == {0, 1} for s, size in sizes.items() if size > 1)


def test_scores_and_the_mixing_check_can_fail():
    data = load_pairs()
    keys = list(data["items"])
    everything = dict.fromkeys(keys, 1)
    assert mixed_stories(data, everything)  # one story mixes them all
    assert not mixed_stories(data, {k: n for n, k in enumerate(keys)})
    trivial = baselines(data, side=1)
    assert trivial["singletons"]["sample_en"]["pairwise"]["f1"] == 0.0
    assert trivial["singletons"]["sample_en"]["bcubed"]["precision"] == 1.0
    assert trivial["one story"]["sample_en"]["bcubed"]["recall"] == 1.0
    assert trivial["one story"]["sample_en"]["pairwise"]["f1"] < 0.3


@pytest.mark.slow
def test_story_clustering_quality_with_minilm(tmp_path, corpus, sample_server):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'eval.db'}")
    from store.db import open_database

    sessions = open_database(settings.db_url)
    encoder = get_encoder("minilm")
    ids = build_eval_world(settings, sessions, sample_server, corpus, encoder)
    report = cluster_pending(settings, sessions, encoder=encoder)
    assert report.skipped == 0 and report.items >= len(ids)
    data = load_pairs()
    story_of = stories_by_key(sessions, ids)
    held, whole = score_stories(data, story_of, side=1), score_stories(data, story_of)
    print(json.dumps({"held-out": held, "whole": whole}))
    for subset, (pairwise_f1, bcubed_f1) in PINNED.items():
        assert held[subset]["pairwise"]["f1"] >= pairwise_f1, (subset, held[subset])
        assert held[subset]["bcubed"]["f1"] >= bcubed_f1, (subset, held[subset])
    for subset, pairwise_f1 in PINNED_WHOLE.items():
        assert whole[subset]["pairwise"]["f1"] >= pairwise_f1, (subset, whole[subset])
    trivial = baselines(data, side=1)
    for subset in ("sample_en", "corpus"):
        assert held[subset]["bcubed"]["f1"] > max(t[subset]["bcubed"]["f1"] for t in trivial.values()), subset
    assert mixed_stories(data, story_of) == {}, "a story tells two labelled stories in its articles/episodes"
