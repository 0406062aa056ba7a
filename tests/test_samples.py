"""The bundled sample world end to end, as `make run` ingests it offline (SQLite and PostgreSQL)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ingest.refresh import refresh
from ingest.sources import bundled, load_sources_toml
from store import repo
from store.models import Item, Source


def ingest_samples(settings, sessions, server):
    specs = load_sources_toml(bundled("samples/sources.toml"), base_url=server.base_url)
    with sessions() as session, session.begin():
        for spec in specs:
            repo.add_source(session, spec.url, kind=spec.kind, topic=spec.topic, title=spec.title)
    return refresh(settings, sessions)


def stored(sessions):
    with sessions() as session:
        query = select(Item).join(Source).options(selectinload(Item.segments)).order_by(Item.id)
        return session.scalars(query).all(), {
            s.id: s for s in session.scalars(select(Source))
        }


def test_sample_world_is_stored_completely(settings, sessions, sample_server):
    report = ingest_samples(settings, sessions, sample_server)
    assert report.count("failed") == 0, [o.error for o in report.sources]
    items, sources = stored(sessions)
    kinds = {k: sum(1 for i in items if i.kind == k) for k in ("article", "episode", "post")}
    assert len(items) >= 45 and all(kinds.values()), kinds

    chinese = [i for i in items if sources[i.source_id].url.endswith("zhineng-guancha.rss")]
    assert len(chinese) == 6 and all(re.search(r"[\u4e00-\u9fff]{10}", i.text) for i in chinese)
    assert all((i.language or "").startswith("zh") for i in chinese)

    extracted = [i for i in items if i.text_source == "extracted"]
    assert len(extracted) == 8 and all(len(i.text.split()) > 300 for i in extracted)


def test_sample_podcast_picks_the_best_transcript_of_each_episode(settings, sessions, sample_server):
    ingest_samples(settings, sessions, sample_server)
    items, _ = stored(sessions)
    episodes = {re.search(r"ep(\d)", i.audio_url).group(1): i for i in items if i.kind == "episode"}
    assert len(episodes) == 6
    chosen = {n: (e.transcript_url or "").rsplit("/", 1)[-1] for n, e in episodes.items()}
    assert chosen["1"] in ("ep1.json", "ep1.vtt")  # JSON or VTT beat HTML
    assert chosen["2"] == "ep2.srt"  # English SRT beats English text and the Chinese text
    assert chosen["3"] == "ep3.vtt"  # the VTT under the old namespace URL beats the application/srt alias
    assert chosen["4"] == "ep4.html" and chosen["5"] == "ep5.json"
    assert episodes["6"].transcript_status == "queued" and episodes["6"].transcript_url is None
    for n in "12345":
        segments = episodes[n].segments
        assert len(segments) > 10 and segments[0].start is not None, n
        assert any(s.speaker for s in segments), n
        assert all(a.start <= b.start for a, b in zip(segments, segments[1:], strict=False)), n


def test_sample_threads_lose_repeats_keep_truncation_and_the_rumour(settings, sessions, sample_server):
    ingest_samples(settings, sessions, sample_server)
    items, _ = stored(sessions)
    posts = [i for i in items if i.kind == "post"]
    texts = [" ".join(p.text.lower().split()) for p in posts]
    assert len(texts) == len(set(texts)), "exact repeats must be dropped"
    assert any(p.truncated for p in posts)
    assert sum("shenzhen" in t for t in texts) >= 2  # the posts-only rumour is stored, as posts
    assert not any("shenzhen" in i.text.lower() for i in items if i.kind != "post")
    assert not any("google.com/url" in t or "l.facebook.com" in t for t in texts)


def test_second_run_gets_304s_and_stores_nothing_twice(settings, sessions, sample_server):
    ingest_samples(settings, sessions, sample_server)
    first, _ = stored(sessions)
    again = refresh(settings, sessions, force=True)
    assert again.count("not_modified") == len(again.sources) and again.new_items == 0
    assert len(stored(sessions)[0]) == len(first)
