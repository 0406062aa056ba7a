"""Parsing real feeds: feedparser's own expectations, JSON Feed, encodings, autodiscovery."""

from __future__ import annotations

import asyncio
import datetime
import time
import json
import re
import warnings

import feedparser
import pytest

from ingest.fetch import Fetcher
from ingest.parse import NotAFeedError, discover_feed_links, parse_feed, run_feedparser, sniff
from store.entry import Kind
from tests.conftest import make_settings

EXPECT = re.compile(rb"Expect:\s*(.+?)\s*(?:-->|\n)")
# chardet 5+ names the superset a legacy charset decodes identically with.
SUPERSETS = {"euc-kr": {"cp949"}, "gb2312": {"gb18030", "gbk"}, "shift_jis": {"cp932"}, "tis-620": {"cp874"}}
# Expectations about the exact mojibake of a charset *guess*, which depends on chardet's version.
CHARSET_GUESSES = {"bozo_linenoise.xml"}
# Expectations about the output of feedparser's HTML sanitiser, which we turn off (we never render
# its HTML); test_entities_are_decoded_without_the_sanitiser checks the text we keep instead.
SANITISER_OUTPUT = {"demoronize-3.xml": "don\u2019t", "charref_uppercase_x.xml": "a"}


def same_charset(found: str, expected: str) -> bool:
    found, expected = (found or "").lower(), expected.lower()
    return found == expected or found in SUPERSETS.get(expected, set())


def with_charset_equivalence(expect: str) -> str:
    return re.sub(r"encoding == '([^']+)'", r"same_charset(encoding, '\1')", expect)


def fetch_all(settings, urls):
    async def go():
        async with Fetcher(settings) as fetcher:
            return await asyncio.gather(*(fetcher.get(u) for u in urls))

    return asyncio.run(go())


def edge_cases(corpus):
    folder = corpus / "feeds" / "feedparser-edge-cases"
    for path in sorted(folder.rglob("*.xml")):
        match = EXPECT.search(path.read_bytes()[:4096].replace(b"\x00", b""))
        if match:
            yield path, match.group(1).decode("utf-8", "replace")


def test_feedparser_expectations_hold_through_our_fetch_path(corpus, corpus_server, tmp_path, sqlite_url):
    """Each edge case states what feedparser must see when served with its header; we fetch it
    over real HTTP (gzip and all) and hand the bytes and headers on exactly as the pipeline does."""
    cases = [(p, e) for p, e in edge_cases(corpus) if p.name not in CHARSET_GUESSES | set(SANITISER_OUTPUT)]
    assert len(cases) >= 40
    settings = make_settings(tmp_path, sqlite_url)
    results = fetch_all(settings, [corpus_server.url(str(p.relative_to(corpus))) for p, _ in cases])
    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for (path, expect), fetched in zip(cases, results, strict=True):
            assert fetched.ok, (path.name, fetched.error)
            result = run_feedparser(fetched.body, url=fetched.final_url, headers=fetched.headers)
            try:
                # feedparser's own test harness evaluates the expectation the same way.
                names = {"feedparser": feedparser, "datetime": datetime, "time": time, "same_charset": same_charset}
                holds = eval(with_charset_equivalence(expect), names, dict(result))
            except Exception as exc:  # an expectation about a field this case lacks
                holds = f"{type(exc).__name__}: {exc}"
            if holds is not True and not (holds and not isinstance(holds, str)):
                failures.append((path.name, expect, result.get("encoding"), result.get("bozo_exception")))
    assert not failures, failures


@pytest.mark.parametrize("name, title, count", [
    ("feeds/netnewswire/feeds/DaringFireball.json", "Daring Fireball", None),
    ("feeds/netnewswire/feeds/inessential.json", "inessential.com", None),
    ("feeds/feedjira/json_feed.json", None, None),
    ("feeds/feed-rs/jsonfeed/jsonfeed_spec_1.json", None, None),
    ("feeds/feed-rs/jsonfeed/jsonfeed_elastic_1.1.json", None, None),
])
def test_json_feeds_parse_to_entries(corpus, name, title, count):
    data = (corpus / name).read_bytes()
    doc = json.loads(data)
    parsed = parse_feed(data, url="http://example.test/feed.json")
    assert parsed.format.startswith("json")
    assert len(parsed.entries) == len(doc["items"])
    if title:
        assert parsed.title == title
    first = parsed.entries[0]
    assert first.guid == (str(doc["items"][0]["id"]) if "id" in doc["items"][0] else None)
    assert first.text.strip()


def test_json_feed_authors_dates_and_attachments():
    doc = {
        "version": "https://jsonfeed.org/version/1.1", "title": "Pod", "language": "en-GB",
        "items": [{"id": "1", "url": "/ep1", "content_text": "Hello there.", "date_published": "2026-11-20T10:00:00+01:00",
                   "authors": [{"name": "Ana"}, {"name": "Bo"}],
                   "attachments": [{"url": "/ep1.mp3", "mime_type": "audio/mpeg", "size_in_bytes": 123}]}],
    }
    entry = parse_feed(json.dumps(doc).encode(), url="https://pod.test/feed.json").entries[0]
    assert entry.url == "https://pod.test/ep1"
    assert entry.author == "Ana, Bo" and entry.language == "en-gb"
    assert entry.published.isoformat() == "2026-11-20T09:00:00+00:00"
    assert entry.kind == Kind.EPISODE and entry.audio.url == "https://pod.test/ep1.mp3"


def test_every_format_hands_store_the_canonical_url_with_the_entry():
    """store matches entries by canonical URL but cannot canonicalise (it imports nothing of
    ingest): the parser sets it, the same way for every format."""
    rss = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>N</title>'
           b"<item><title>A</title><link>/a?utm_source=rss&amp;b=2#comments</link></item>"
           b"<item><title>B</title><description>No link at all.</description></item></channel></rss>")
    linked, unlinked = parse_feed(rss, url="https://News.Example/feed.xml", headers={}).entries
    assert linked.url == "https://News.Example/a?utm_source=rss&b=2#comments"
    assert linked.canonical_url == "https://news.example/a?b=2"
    assert unlinked.url is None and unlinked.canonical_url is None
    doc = {"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "url": "/ep1?fbclid=x", "content_text": "Hi."}]}
    (entry,) = parse_feed(json.dumps(doc).encode(), url="https://pod.test/feed.json").entries
    assert entry.canonical_url == "https://pod.test/ep1"


def test_not_json_feed_says_why(corpus):
    with pytest.raises(NotAFeedError, match="not a JSON Feed"):
        parse_feed((corpus / "feeds/netnewswire/feeds/ScriptingNews.json").read_bytes(), url="http://x/")
    with pytest.raises(NotAFeedError, match="invalid JSON"):
        parse_feed((corpus / "feeds/netnewswire/feeds/allthis-partial.json").read_bytes(), url="http://x/")


@pytest.mark.parametrize("name, expected", [
    ("furbo.html", "http://furbo.org/feed/"),
    ("inessential.html", "http://inessential.com/xml/rss.xml"),
    ("sixcolors.html", "http://feedpress.me/sixcolors"),
])
def test_autodiscovery_finds_the_advertised_feed(corpus, name, expected):
    page = (corpus / "feeds/netnewswire/html-feed-discovery" / name).read_bytes()
    assert sniff(page, "text/html") == "html"
    assert discover_feed_links(page, "https://page.test/")[0] == expected
    with pytest.raises(NotAFeedError) as caught:
        parse_feed(page, url="https://page.test/", headers={"content-type": "text/html"})
    assert caught.value.feed_links[0] == expected


def test_html_without_feed_links_is_a_clear_error(corpus):
    page = (corpus / "feeds/node-feedparser/notafeed.html").read_bytes()
    with pytest.raises(NotAFeedError, match="HTML page, not a feed; it advertises no feed"):
        parse_feed(page, url="http://x/", headers={"content-type": "text/html"})


@pytest.mark.parametrize("name, script", [
    ("feeds/netnewswire/feeds/kc0011.rss", r"[\u4e00-\u9fff]"),  # GB18030/GBK Chinese
    ("feeds/miniflux/encoding_ISO-8859-1.xml", r"[äöüßé]"),
    ("feeds/miniflux/encoding_WINDOWS-1251.xml", r"[а-яА-Я]"),
    ("feeds/miniflux/encoding-koi8r.xml", r"[а-яА-Я]"),
    ("feeds/miniflux/no_encoding_ISO-8859-1.xml", r"[àâçéèêëîïôûùüÿœæ]"),
    ("feeds/node-feedparser/iconv.xml", r"[а-яА-Я]"),
])
def test_legacy_encodings_decode_to_real_text(corpus, name, script):
    path = corpus / name
    if not path.exists():
        pytest.skip(f"{name} not in this corpus snapshot")
    parsed = parse_feed(path.read_bytes(), url="http://x/")
    text = " ".join(e.title + " " + e.text for e in parsed.entries)
    assert re.search(script, text), text[:200]
    assert "\ufffd" not in text[:2000]


def test_feed_rs_expected_titles_match(corpus):
    """feed-rs stores its expected parse beside each fixture; entry titles must agree."""
    checked = 0
    for expected_path in sorted((corpus / "feeds/feed-rs").rglob("*.serde.json")):
        source = expected_path.with_name(expected_path.name.replace(".serde.json", ""))
        candidates = [p for p in source.parent.glob(source.name + "*") if not p.name.endswith(".serde.json")]
        if not candidates:
            continue
        expected = json.loads(expected_path.read_text())
        titles = [(e.get("title") or {}).get("content") for e in expected.get("entries", [])]
        try:
            parsed = parse_feed(candidates[0].read_bytes(), url="http://x/")
        except NotAFeedError:
            continue
        ours = [e.title for e in parsed.entries]
        for theirs, mine in zip(titles, ours, strict=False):
            if theirs:
                assert " ".join(theirs.split())[:40] == mine[:40] or theirs.strip()[:20] in mine, (source.name, theirs, mine)
                checked += 1
    assert checked >= 40


def test_entities_are_decoded_without_the_sanitiser(corpus):
    for name, expected in SANITISER_OUTPUT.items():
        path = next((corpus / "feeds" / "feedparser-edge-cases").rglob(name))
        entry = parse_feed(path.read_bytes(), url="http://x/").entries[0]
        assert entry.text == expected, (name, entry.text)
