"""Clustering quality gate: pairwise F1 of stories against tests/data/story_pairs.json, with the real
all-MiniLM-L6-v2 encoder, the real ingest of the sample world and the real embed stage.

The pairs come from three places: the bundled sample world (the same stories told by several
sources and kinds, plus singletons, thread noise and a rumour), SummEdits' 2023 news documents
(two reports of the EU Commission's TikTok ban; two JWST stories and a Canadian TikTok ban as
near misses) and TWIML transcripts (one episode transcribed by several Whisper sizes is one
story; different episodes are not). Measured figures are in docs/benchmarks.md; the pins sit a
little below them and may only be raised.
"""

from __future__ import annotations

import json
import re
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

# Measured (see docs/benchmarks.md); pinned a little below.
PINNED_F1_ALL = 0.40  # measured 0.439 (P 0.587, R 0.351)
PINNED_F1_SAMPLE_EN = 0.38  # measured 0.407
PINNED_F1_CORPUS = 0.85  # measured 0.919


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


def evaluate(sessions, data: dict, ids: dict[str, int]) -> dict[str, dict]:
    with sessions() as session:
        story = dict(session.execute(select(StoryItem.item_id, StoryItem.story_id)).all())
    story_of = {key: story.get(item_id) for key, item_id in ids.items()}
    items = data["items"]
    subsets = {
        "all": data["pairs"],
        "sample": [p for p in data["pairs"] if items[p["a"]]["corpus"] == "sample"],
        "sample_en": [p for p in data["pairs"] if items[p["a"]]["corpus"] == "sample"
                      and items[p["a"]]["lang"] == items[p["b"]]["lang"] == "en"],
        "corpus": [p for p in data["pairs"] if items[p["a"]]["corpus"] != "sample"],
    }
    return {name: pairwise_scores(pairs, story_of) for name, pairs in subsets.items()}


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


@pytest.mark.slow
def test_story_clustering_f1_with_minilm(tmp_path, corpus, sample_server):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'eval.db'}")
    from store.db import open_database

    sessions = open_database(settings.db_url)
    encoder = get_encoder("minilm")
    ids = build_eval_world(settings, sessions, sample_server, corpus, encoder)
    report = cluster_pending(settings, sessions, encoder=encoder)
    assert report.skipped == 0 and report.items >= len(ids)
    scores = evaluate(sessions, load_pairs(), ids)
    print(json.dumps(scores, indent=1))
    assert scores["all"]["f1"] >= PINNED_F1_ALL, scores
    assert scores["corpus"]["f1"] >= PINNED_F1_CORPUS, scores
    assert scores["sample_en"]["f1"] >= PINNED_F1_SAMPLE_EN, scores
