"""The whole refresh on SQLite and the real PostgreSQL: what ends up stored, and what does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from ingest.localserver import LocalServer
from ingest.refresh import refresh
from store import repo
from store.models import FetchAttempt, Item, Source, Tombstone, TranscriptSegment
from tests import hostile

LONG = " ".join(["Export controls on accelerators reshape how labs plan training runs."] * 30)


def rss(items: list[tuple[str, str, str]], extra: str = "") -> str:
    body = "".join(
        f"<item><title>{title}</title><link>{{{{BASE_URL}}}}/a/{guid}.html?utm_source=rss</link>"
        f"<guid isPermaLink=\"false\">{guid}</guid><description>{text}</description>{extra}</item>"
        for guid, title, text in items
    )
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>World</title>{body}</channel></rss>'


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "site"
    (root / "a").mkdir(parents=True)
    (root / "feed.rss").write_text(rss([("g1", "One", LONG), ("g2", "Two", LONG + " two"), ("g3", "Three", LONG + " three")]))
    with LocalServer(root) as server:
        yield root, server


def add(sessions, url, kind="feed"):
    with sessions() as session, session.begin():
        return repo.add_source(session, url, kind=kind)[0].id


def items(sessions):
    with sessions() as session:
        return session.scalars(select(Item).order_by(Item.id)).all()


def test_first_fetch_stores_items_and_validators(settings, sessions, world):
    _, server = world
    sid = add(sessions, server.url("/feed.rss"))
    report = refresh(settings, sessions)
    assert [o.status for o in report.sources] == ["new"] and report.new_items == 3
    stored = items(sessions)
    assert [i.title for i in stored] == ["One", "Two", "Three"]
    assert stored[0].canonical_url == server.url("/a/g1.html")  # tracking parameter dropped
    assert stored[0].published is None or stored[0].published.tzinfo is not None
    with sessions() as session:
        source = session.get(Source, sid)
        assert source.etag and source.last_modified and source.title == "World"
        assert source.next_due_at > datetime.now(UTC) + timedelta(minutes=50)
        attempt = session.scalars(select(FetchAttempt)).one()
        assert attempt.status == "new" and attempt.new_items == 3 and attempt.http_status == 200


def test_second_fetch_is_a_304_and_creates_nothing(settings, sessions, world):
    _, server = world
    add(sessions, server.url("/feed.rss"))
    refresh(settings, sessions)
    report = refresh(settings, sessions, force=True)
    assert report.as_json()["not_modified"] == 1 and report.new_items == 0
    assert len(items(sessions)) == 3
    assert server.hits["/feed.rss"] == 2


def test_changed_article_updates_its_row(settings, sessions, world):
    root, server = world
    add(sessions, server.url("/feed.rss"))
    refresh(settings, sessions)
    before = {i.guid: i.content_hash for i in items(sessions)}
    (root / "feed.rss").write_text(rss([("g1", "One (corrected)", LONG), ("g2", "Two", LONG + " two"), ("g3", "Three", LONG + " three")]))
    report = refresh(settings, sessions, force=True)
    assert report.sources[0].updated_items == 1 and report.new_items == 0
    after = {i.guid: i for i in items(sessions)}
    assert len(after) == 3 and after["g1"].title == "One (corrected)"
    assert after["g1"].content_hash != before["g1"] and after["g2"].content_hash == before["g2"]


def test_deleted_item_stays_deleted(settings, sessions, world):
    root, server = world
    add(sessions, server.url("/feed.rss"))
    refresh(settings, sessions)
    with sessions() as session, session.begin():
        victim = session.scalars(select(Item).where(Item.guid == "g2")).one()
        assert repo.delete_item(session, victim.id, reason="test")
    (root / "feed.rss").write_text(rss([("g1", "One", LONG), ("g2", "Two", LONG + " two"), ("g3", "Three", LONG + " three"),
                                        ("g4", "Four", LONG + " four")]))
    report = refresh(settings, sessions, force=True)
    assert report.new_items == 1
    assert sorted(i.guid for i in items(sessions)) == ["g1", "g3", "g4"]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Tombstone)) == 1


def test_feed_that_changes_every_guid_makes_no_duplicates(settings, sessions):
    with LocalServer(None, routes={"/churn": hostile.changing_guids(5)}) as server:
        add(sessions, server.url("/churn"))
        first = refresh(settings, sessions)
        second = refresh(settings, sessions, force=True)
        third = refresh(settings, sessions, force=True)
    assert first.new_items == 5 and second.new_items == 0 and third.new_items == 0
    assert len(items(sessions)) == 5


def test_one_broken_source_never_stops_the_others(settings, sessions, world):
    _, server = world
    server.routes.update({
        "/gone": hostile.status(404),
        "/page": hostile.static(b"<!doctype html><html><body>hello</body></html>", "text/html"),
        "/junk": hostile.static(b"\x00\x01\x02garbage", "application/octet-stream"),
        "/busy": hostile.status(429, Retry_After="7200"),
    })
    for path in ("/gone", "/page", "/feed.rss", "/junk", "/busy"):
        add(sessions, server.url(path))
    report = refresh(settings, sessions)
    by_path = {o.url.rsplit("/", 1)[-1]: o for o in report.sources}
    assert by_path["feed.rss"].status == "new" and by_path["feed.rss"].new_items == 3
    assert by_path["gone"].error == "HTTP 404 Not Found"
    assert "HTML page, not a feed" in by_path["page"].error
    assert by_path["junk"].status == "failed" and "not a feed" in by_path["junk"].error
    assert by_path["busy"].error == "HTTP 429 Too Many Requests"
    with sessions() as session:
        busy = session.scalars(select(Source).where(Source.url.endswith("/busy"))).one()
        assert busy.consecutive_failures == 1 and busy.last_status == "failed"
        assert busy.next_due_at >= datetime.now(UTC) + timedelta(seconds=7000)  # Retry-After honoured
    as_json = report.as_json()
    assert as_json["failed"] == 4 and as_json["new_items"] == 3
    assert set(as_json["sources"][0]) >= {"url", "status", "new_items", "error"}


def test_failed_source_is_not_due_again_until_its_backoff(settings, sessions):
    with LocalServer(None, routes={"/gone": hostile.status(500)}) as server:
        add(sessions, server.url("/gone"))
        refresh(settings, sessions)
        again = refresh(settings, sessions)  # not forced: nothing is due
    assert again.sources == []


TEASER = "Lumen AI shipped a model today. Read more"
ARTICLE = """<html><head><title>Lumen-3 ships</title><meta name="author" content="Ada Writer"></head><body>
<nav><a href="/">Home</a> | <a href="/world">World</a></nav><article><h1>Lumen-3 ships</h1>
{paras}</article><footer>Copyright Sample Wire. All rights reserved. Privacy policy. Terms.</footer></body></html>"""


def test_teasers_get_full_text_and_robots_is_respected(settings, sessions, tmp_path):
    root = tmp_path / "site"
    (root / "articles").mkdir(parents=True)
    (root / "private").mkdir()
    paras = "".join(f"<p>Paragraph {i}: the open-weight model was trained on export-compliant chips "
                    f"and matches closed models on reasoning benchmarks, analysts said.</p>" for i in range(12))
    (root / "articles" / "lumen.html").write_text(ARTICLE.format(paras=paras))
    (root / "private" / "secret.html").write_text(ARTICLE.format(paras=paras))
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    feed = rss([("t1", "Lumen-3 ships", TEASER)]).replace("/a/t1.html?utm_source=rss", "/articles/lumen.html")
    feed = feed.replace("</channel>", "<item><title>Secret</title><link>{{BASE_URL}}/private/secret.html</link>"
                                      "<guid>t2</guid><description>Short teaser…</description></item></channel>")
    (root / "feed.rss").write_text(feed)
    server = LocalServer(root).start()
    add(sessions, server.url("/feed.rss"))
    report = refresh(settings, sessions)
    stored = {i.guid: i for i in items(sessions)}
    assert stored["t1"].text_source == "extracted" and "Paragraph 11" in stored["t1"].text
    assert "Privacy policy" not in stored["t1"].text and not stored["t1"].truncated
    assert stored["t2"].text_source == "feed" and stored["t2"].truncated
    assert any("robots.txt disallows" in w for w in report.sources[0].warnings)
    assert server.hits["/private/secret.html"] == 0 and server.hits["/robots.txt"] == 1

    # The feed changes elsewhere (new ETag) but not this entry: its full text must survive.
    (root / "feed.rss").write_text(feed.replace("<title>World</title>", "<title>World, renamed</title>"))
    again = refresh(settings, sessions, force=True)
    server.stop()
    assert server.hits["/articles/lumen.html"] == 1  # not extracted again either
    assert again.sources[0].status == "new" and again.sources[0].updated_items == 0
    assert {i.guid: i for i in items(sessions)}["t1"].text == stored["t1"].text


PODCAST = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:podcast="https://podcastindex.org/namespace/1.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">
<channel><title>Compute Pod</title><language>en</language>
<item><title>Ep 1</title><guid>ep1</guid><enclosure url="{{BASE_URL}}/ep1.mp3" type="audio/mpeg" length="100"/>
<podcast:transcript url="{{BASE_URL}}/ep1.txt" type="text/plain"/>
<podcast:transcript url="{{BASE_URL}}/missing.vtt" type="text/vtt"/>
<podcast:transcript url="{{BASE_URL}}/ep1.srt" type="application/srt"/></item>
<item><title>Ep 2</title><guid>ep2</guid><enclosure url="{{BASE_URL}}/ep2.mp3" type="audio/mpeg" length="100"/></item>
</channel></rss>"""
SRT = "1\n00:00:01,000 --> 00:00:04,500\nAna: Chips are the bottleneck.\n\n2\n00:00:04,500 --> 00:00:09,000\nBo: Open weights change that.\n"


def test_podcast_best_transcript_is_stored_as_segments_and_audio_only_is_queued(settings, sessions, tmp_path):
    root = tmp_path / "pod"
    root.mkdir()
    (root / "feed.xml").write_text(PODCAST)
    (root / "ep1.srt").write_text(SRT)
    (root / "ep1.txt").write_text("Chips are the bottleneck. Open weights change that.")
    with LocalServer(root) as server:
        add(sessions, server.url("/feed.xml"), kind="podcast")
        report = refresh(settings, sessions)
    stored = {i.guid: i for i in items(sessions)}
    ep1, ep2 = stored["ep1"], stored["ep2"]
    assert ep1.kind == "episode" and ep1.transcript_status == "published"
    assert ep1.transcript_url.endswith("/ep1.srt")  # the VTT was better but missing: next best
    assert any("missing.vtt" in w for w in report.sources[0].warnings) or server.hits["/missing.vtt"] == 1
    with sessions() as session:
        segs = session.scalars(select(TranscriptSegment).where(TranscriptSegment.item_id == ep1.id)
                               .order_by(TranscriptSegment.position)).all()
    assert [(s.start, s.end, s.speaker) for s in segs] == [(1.0, 4.5, "Ana"), (4.5, 9.0, "Bo")]
    assert ep2.transcript_status == "queued" and ep2.audio_url.endswith("/ep2.mp3")


def test_thread_export_becomes_posts_without_repeats(settings, sessions, tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    posts = [
        "The Shenzhen lab's distillation paper proves you can match frontier benchmarks cheaply.",
        "The Shenzhen lab's distillation paper proves you can match frontier benchmarks cheaply.",
        "Export controls are pushing labs toward efficiency, see https://www.google.com/url?q=https%3A%2F%2Fnews.example.test%2Fchips&sa=D",
        "This thread is getting long and the real story is about inference costs which nobody has",
    ]
    (root / "thread.txt").write_text("\n\n".join(posts))
    with LocalServer(root) as server:
        add(sessions, server.url("/thread.txt"), kind="thread")
        refresh(settings, sessions)
    stored = items(sessions)
    assert len(stored) == 3 and all(i.kind == "post" for i in stored)
    assert any(i.url == "https://news.example.test/chips" for i in stored)
    assert [i.truncated for i in stored] == [False, False, True]
