"""Feed content that once crashed a whole refresh (found in review): each now costs at most its
own entry, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import select

from ingest.localserver import LocalServer
from ingest.refresh import refresh
from store import repo
from store.models import FetchAttempt, Item, Source
from tests import hostile
from tests.test_refresh import LONG, PODCAST, SRT, add, items


def test_episode_with_transcript_can_be_updated(settings, sessions, tmp_path):
    root = tmp_path / "pod"
    root.mkdir()
    (root / "feed.xml").write_text(PODCAST)
    (root / "ep1.srt").write_text(SRT)
    with LocalServer(root) as server:
        add(sessions, server.url("/feed.xml"), kind="podcast")
        refresh(settings, sessions)
        (root / "feed.xml").write_text(PODCAST.replace("<title>Ep 1</title>", "<title>Ep 1 (edited)</title>"))
        second = refresh(settings, sessions, force=True)
    assert second.sources[0].status == "new" and second.sources[0].updated_items == 1, second.sources[0].error
    ep1 = next(i for i in items(sessions) if i.guid == "ep1")
    with sessions() as session:
        assert len(session.get(Item, ep1.id).segments) == 2


def test_nul_characters_and_overlong_values_are_stored_not_refused(settings, sessions):
    long_link = "http://example.test/" + "a" * 3000
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>' + "T" * 600 + "</title>"
        f"<item><title>Nul&#0;title</title><guid>{long_link}</guid><link>{long_link}</link>"
        f"<description>{LONG}</description></item></channel></rss>"
    ).encode()
    jsonfeed = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "J\u0000",
                           "items": [{"id": "1", "content_text": "a\u0000b " + LONG}]}).encode()
    routes = {"/long.rss": hostile.static(feed, "application/rss+xml"),
              "/nul.json": hostile.static(jsonfeed, "application/feed+json"),
              "/etag": lambda h: hostile.send(h, 200, feed, Content_Type="application/rss+xml", ETag='"' + "e" * 600 + '"')}
    with LocalServer(None, routes=routes) as server:
        for path in routes:
            add(sessions, server.url(path))
        report = refresh(settings, sessions)
    assert [o.status for o in report.sources] == ["new"] * 3, [o.error for o in report.sources]
    texts = [i.title + i.text for i in items(sessions)]
    assert len(texts) == 3 and not any("\x00" in t for t in texts)


def test_a_store_failure_is_recorded_and_the_other_sources_still_land(settings, sessions, tmp_path, monkeypatch):
    root = tmp_path / "s"
    root.mkdir()
    (root / "a.rss").write_text(
        '<rss version="2.0"><channel><title>A</title><item><guid>1</guid><title>x</title>'
        f"<description>{LONG}</description></item></channel></rss>")
    (root / "b.rss").write_text((root / "a.rss").read_text().replace("<title>A</title>", "<title>B</title>"))
    real = repo.upsert_entries

    def explode_for_a(session, source, entries, hashes=None):
        if source.url.endswith("/a.rss"):
            raise RuntimeError("disk full")
        return real(session, source, entries, hashes)

    monkeypatch.setattr(repo, "upsert_entries", explode_for_a)
    with LocalServer(root) as server:
        add(sessions, server.url("/a.rss"))
        add(sessions, server.url("/b.rss"))
        report = refresh(settings, sessions)
    by = {o.url.rsplit("/", 1)[-1]: o for o in report.sources}
    assert by["a.rss"].status == "failed" and "disk full" in by["a.rss"].error
    assert by["b.rss"].status == "new" and by["b.rss"].new_items == 1
    with sessions() as session:
        a = session.scalars(select(Source).where(Source.url.endswith("/a.rss"))).one()
        assert a.consecutive_failures == 1 and a.next_due_at is not None
        assert session.scalars(select(FetchAttempt).where(FetchAttempt.source_id == a.id)).one().status == "failed"


def test_deleting_one_episode_does_not_tombstone_its_siblings_sharing_a_link(settings, sessions, tmp_path):
    def feed(n):
        eps = "".join(f"<item><guid>ep{i}</guid><title>Ep {i}</title><link>https://show.example/</link>"
                      f"<description>{LONG} {i}</description></item>" for i in range(n))
        return f'<rss version="2.0"><channel><title>Show</title>{eps}</channel></rss>'

    root = tmp_path / "show"
    root.mkdir()
    (root / "f.rss").write_text(feed(3))
    with LocalServer(root) as server:
        add(sessions, server.url("/f.rss"))
        refresh(settings, sessions)
        with sessions() as session, session.begin():
            repo.delete_item(session, session.scalars(select(Item).where(Item.guid == "ep0")).one().id)
        (root / "f.rss").write_text(feed(5))
        refresh(settings, sessions, force=True)
    assert sorted(i.guid for i in items(sessions)) == ["ep1", "ep2", "ep3", "ep4"]


def test_items_without_guid_sharing_a_link_are_not_merged(settings, sessions):
    body = ('<rss version="2.0"><channel><title>Home links</title>' + "".join(
        f"<item><title>Story {i}</title><link>https://site.example/</link><description>{LONG} {i}</description></item>"
        for i in range(4)) + "</channel></rss>").encode()
    with LocalServer(None, routes={"/f": hostile.static(body, "application/rss+xml")}) as server:
        add(sessions, server.url("/f"))
        refresh(settings, sessions)
        again = refresh(settings, sessions, force=True)
    assert len(items(sessions)) == 4 and again.new_items == 0


def test_one_malformed_json_feed_item_is_skipped_not_the_feed(settings, sessions):
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "J",
           "items": [{"id": "ok", "content_text": LONG}, {"id": "bad", "content_html": 123, "attachments": 5}]}
    with LocalServer(None, routes={"/j": hostile.static(json.dumps(doc).encode(), "application/feed+json")}) as server:
        add(sessions, server.url("/j"))
        report = refresh(settings, sessions)
    assert report.sources[0].status == "new" and report.new_items >= 1


def test_discovered_feed_becomes_the_source_and_keeps_updating(settings, sessions, tmp_path):
    root = tmp_path / "blog"
    root.mkdir()
    (root / "index.html").write_text('<html><head><link rel="alternate" type="application/rss+xml" '
                                      'href="/feed.rss"></head><body>blog</body></html>')
    post = '<item><guid>{0}</guid><title>Post {0}</title><description>' + LONG + '</description></item>'
    (root / "feed.rss").write_text(f'<rss version="2.0"><channel><title>Blog</title>{post.format(1)}</channel></rss>')
    with LocalServer(root) as server:
        add(sessions, server.url("/"))
        refresh(settings, sessions)
        (root / "feed.rss").write_text(
            f'<rss version="2.0"><channel><title>Blog</title>{post.format(1)}{post.format(2)}</channel></rss>')
        second = refresh(settings, sessions, force=True)
    assert second.new_items == 1 and second.sources[0].url.endswith("/feed.rss")
    with sessions() as session:
        assert session.scalars(select(Source)).one().url.endswith("/feed.rss")
