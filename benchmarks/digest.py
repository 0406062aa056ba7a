"""Digest benchmark: N items -> stories -> ranked top K -> grounded summaries (extractive backend).

The items are real text replicated with light variation until there are N of them: the sample
world (ingested for real from a loopback server), SummEdits' news and podcast documents and the
corpus feeds' entries with 60+ words. Copy j of a base item gets a publisher of its own (one of
40), a time spread over the last ten days, a title prefix and a sentence order shuffled after the
lede, with one later sentence dropped: close enough to stay one story, not a byte-identical copy.

Printed per stage, in seconds: embed (the embed stage, for scale), cluster, rank, compose (the
summariser and the support check), for N = --small and --items. Then the summariser call count,
counted by a wrapper around the extractive backend, for K = 5 and K = 10 at both sizes: it is K
cards + 1 story brief + at most K podcast calls, whatever N is. The summary cache is emptied
before each build so every output is made (a warm cache makes fewer calls still).

    .venv/bin/python -m benchmarks.digest [--items 5000] [--small 1000] [--encoder minilm|fake] [--cluster-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select

from digest.cluster import cluster_pending
from digest.compose import compose
from digest.rank import rank_stories
from digest.topics import load_topic
from embed.encoder import get_encoder
from embed.index import IndexStore
from embed.passages import split_sentences
from embed.pipeline import embed_pending
from digest.summary.base import Summarizer
from digest.summary.runtime import Summaries, make_summaries
from ingest.localserver import LocalServer
from ingest.parse import parse_feed
from store.db import open_database
from store.models import Brief, Item, Source, Story, StoryScore, Summary
from store.settings import Settings
from tests.conftest import CORPUS, ROOT, make_settings
from tests.test_samples import ingest_samples

TOPIC = "ai-geopolitics"
PUBLISHERS = 40
DAYS = 10
MAX_WORDS = 170  # one passage per item: the benchmark is about the digest, not the encoder
PREFIXES = ("", "Analysis: ", "Report: ", "Update: ", "Explainer: ", "Briefing: ")


class CountingSummarizer(Summarizer):
    """Counts every call into the backend it wraps (the LLM calls, were it a generative one)."""

    def __init__(self, inner: Summarizer) -> None:
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.calls: Counter[str] = Counter()

    def insight_card(self, story, persona):
        self.calls["card"] += 1
        return self.inner.insight_card(story, persona)

    def story_brief(self, story):
        self.calls["story_brief"] += 1
        return self.inner.story_brief(story)

    def podcast_insights(self, episode, limit=3):
        self.calls["podcast_insights"] += 1
        return self.inner.podcast_insights(episode, limit)


# --- the items --------------------------------------------------------------------------------


def base_items() -> list[dict]:
    """Real texts, each {title, text, kind}: the sample world, SummEdits, corpus feed entries."""
    out = _sample_world_items()
    for name in ("summedits_news.json", "summedits_podcast.json"):
        docs = {r["doc"] for r in json.loads((CORPUS / "summarization/summedits" / name).read_text())}
        kind = "episode" if "podcast" in name else "article"
        out += [{"title": d.strip().split("\n", 1)[0][:120], "text": d, "kind": kind} for d in sorted(docs)]
    for path in sorted((CORPUS / "feeds").glob("*/input/*")) + sorted((CORPUS / "feeds/netnewswire").rglob("*.xml")):
        try:
            feed = parse_feed(path.read_bytes(), url=f"https://corpus.example/{path.name}")
        except Exception:  # noqa: BLE001  some corpus feeds are broken on purpose
            continue
        out += [{"title": e.title or "", "text": e.text, "kind": "article"} for e in feed.entries
                if len((e.text or "").split()) > 60]
    return out


def _sample_world_items() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), f"sqlite:///{tmp}/samples.db")
        sessions = open_database(settings.db_url)
        with LocalServer(ROOT / "samples" / "site") as server:
            ingest_samples(settings, sessions, server)
        with sessions() as session:
            rows = session.execute(select(Item.title, Item.text, Item.kind)).all()
        sessions.kw["bind"].dispose()
    return [{"title": t, "text": x, "kind": k} for t, x, k in rows]


def varied(base: dict, copy: int, rng: random.Random) -> tuple[str, str]:
    if copy == 0:
        return base["title"], " ".join(base["text"].split()[:MAX_WORDS])
    sentences = split_sentences(base["text"])
    lede, rest = sentences[:2], sentences[2:]
    rng.shuffle(rest)
    if len(rest) > 2:
        rest.pop(rng.randrange(len(rest)))
    text = " ".join(" ".join(lede + rest).split()[:MAX_WORDS])
    return PREFIXES[copy % len(PREFIXES)] + base["title"], text


def make_world(settings: Settings, sessions, pool: list[dict], n: int, now: datetime, seed: int = 7) -> None:
    rng = random.Random(seed)
    with sessions() as session, session.begin():
        sources = []
        for p in range(PUBLISHERS):
            sources.append(Source(url=f"https://publisher{p}.example/feed", title=f"Publisher {p}", topic=TOPIC,
                                  kind="podcast" if p % 10 == 9 else "feed"))
        session.add_all(sources)
        session.flush()
        for i in range(n):
            base, copy = pool[i % len(pool)], i // len(pool)
            title, text = varied(base, copy, rng)
            source = sources[(i * 7 + copy) % PUBLISHERS]
            session.add(Item(source_id=source.id, stable_key=f"b{i}", content_hash=f"h{i}", entry_hash="e", kind=base["kind"],
                             title=title, text=text, published=now - timedelta(hours=rng.uniform(0, 24 * DAYS))))


# --- the run ----------------------------------------------------------------------------------


def run_size(n: int, pool: list[dict], encoder, now: datetime, ks=(5, 10), cluster_only: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), f"sqlite:///{tmp}/digest.db")
        sessions = open_database(settings.db_url)
        make_world(settings, sessions, pool, n, now)
        figures: dict = {"items": n}
        started = time.perf_counter()
        embed_pending(sessions, encoder, IndexStore(settings.index_dir))
        figures["embed_s"] = time.perf_counter() - started
        index = IndexStore(settings.index_dir).load()

        started = time.perf_counter()
        report = cluster_pending(settings, sessions, encoder=encoder, index=index)
        figures["cluster_s"] = time.perf_counter() - started
        with sessions() as session:
            figures["stories"] = session.query(Story).count()
        figures["duplicates"] = report.duplicates
        if cluster_only:
            sessions.kw["bind"].dispose()
            return figures
        profile = load_topic(settings, TOPIC)
        made = make_summaries(settings, encoder, sessions)
        for k in ks:
            with sessions() as session, session.begin():
                session.execute(delete(Summary))
                session.execute(delete(Brief))
                session.execute(delete(StoryScore))
            started = time.perf_counter()
            ranking = rank_stories(settings.model_copy(update={"brief_k": k}), sessions, TOPIC, now.date(),
                                   encoder=encoder, now=now)
            figures[f"rank_s_k{k}"] = time.perf_counter() - started
            figures[f"candidates_k{k}"] = len(ranking.scored)
            counting = CountingSummarizer(made.summarizer)
            calls = Summaries(counting, made.checker, made.calls, sessions)
            started = time.perf_counter()
            composed = compose(settings.model_copy(update={"brief_k": k}), sessions, profile, now.date().isoformat(),
                               ranking, calls, encoder, index)
            figures[f"compose_s_k{k}"] = time.perf_counter() - started
            figures[f"calls_k{k}"] = dict(counting.calls)
            figures[f"cards_k{k}"] = len(composed.cards)
        sessions.kw["bind"].dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--encoder", default="minilm", choices=("minilm", "fake"))
    parser.add_argument("--cluster-only", action="store_true", help="stop after the cluster stage")
    args = parser.parse_args()
    encoder = get_encoder(args.encoder)
    pool = base_items()
    now = datetime.now(UTC)
    print(f"base items: {len(pool)} real texts; encoder {encoder.model_id}; load {os.getloadavg()[0]:.1f}")
    results = []
    for n in (args.small, args.items):
        results.append(run_size(n, pool, encoder, now, cluster_only=args.cluster_only))
        print(json.dumps(results[-1], default=str), flush=True)  # each size as it ends: a long run shows progress
    if args.cluster_only:
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        return
    print(f"{'items':>6} {'embed s':>8} {'cluster s':>9} {'stories':>7} {'dups':>5} {'rank s':>7} {'compose s':>9} "
          f"{'calls K=5':>24} {'calls K=10':>24}")
    for r in results:
        print(f"{r['items']:>6} {r['embed_s']:>8.1f} {r['cluster_s']:>9.1f} {r['stories']:>7} {r['duplicates']:>5} "
              f"{r['rank_s_k5']:>7.1f} {r['compose_s_k5']:>9.1f} {json.dumps(r['calls_k5']):>24} {json.dumps(r['calls_k10']):>24}")
    for r in results:
        for k in (5, 10):
            total = sum(r[f"calls_k{k}"].values())
            print(f"N={r['items']} K={k}: {total} summariser calls for {r[f'cards_k{k}']} cards "
                  f"({r[f'candidates_k{k}']} candidate stories ranked), bound 2K+1 = {2 * k + 1}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
