"""Every real feed and podcast file in the corpus, served from loopback, through the whole refresh.

Each must either yield stored items or be recorded as failed with a readable reason; nothing
raises out of the loop and one failure never stops the others.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from ingest.refresh import refresh
from store import repo
from store.models import FetchAttempt, Item, Source
from tests.conftest import make_settings

FEED_SUFFIXES = {".xml", ".rss", ".atom", ".rdf", ".json", ".html", ".opml", ".txt", ""}
NOT_FEEDS = {"MANIFEST.tsv", "SOURCES.md"}


def corpus_feed_files(corpus):
    for folder in ("feeds", "podcasts/partytime", "podcasts/podcast-namespace"):
        for path in sorted((corpus / folder).rglob("*")):
            if path.is_file() and path.name not in NOT_FEEDS and not path.name.startswith("LICENSE") \
                    and not path.name.startswith("COPYING") and path.suffix.lower() in FEED_SUFFIXES | {".gz"} \
                    and not path.name.endswith(".serde.json"):
                yield path


@pytest.mark.slow
def test_every_corpus_feed_is_stored_or_failed_with_a_reason(corpus, corpus_server, tmp_path, sqlite_url):
    settings = make_settings(tmp_path, sqlite_url, fetch_full_text=False, concurrency=8,
                             per_host_concurrency=8)  # every corpus file is on one loopback host
    from store.db import open_database

    sessions = open_database(settings.db_url)
    files = list(corpus_feed_files(corpus))
    assert len(files) > 250
    with sessions() as session, session.begin():
        for path in files:
            repo.add_source(session, corpus_server.url(str(path.relative_to(corpus))))

    report = refresh(settings, sessions)

    assert len(report.sources) == len(files)
    outcomes = Counter(o.status for o in report.sources)
    failed = [o for o in report.sources if o.status == "failed"]
    for o in failed:
        assert o.error and len(o.error) > 10 and "internal error" not in o.error, (o.url, o.error)
    with sessions() as session:
        per_source = dict(session.execute(select(Item.source_id, func.count()).group_by(Item.source_id)).all())
        attempts = session.scalar(select(func.count()).select_from(FetchAttempt))
        sources = {s.id: s for s in session.scalars(select(Source))}
    assert attempts == len(files)
    ok = [o for o in report.sources if o.status == "new"]
    with_items = sum(1 for o in ok if per_source.get(o.source_id, 0) > 0)
    # The corpus holds a few empty and item-less feeds by design; nearly all real ones yield items.
    assert with_items >= 0.85 * len(ok), outcomes
    assert all(sources[o.source_id].last_status == o.status for o in report.sources)
    print(f"\n{len(files)} corpus files: {dict(outcomes)}; {with_items} with items")
    for o in failed:
        print(f"  failed {o.url.split('/', 3)[-1]}: {o.error[:120]}")
