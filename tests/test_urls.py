"""canonical_url, unwrap_redirect, URL_RE and is_http_url, on hand-picked cases and real feeds."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from ingest.urls import MAX_UNWRAP_DEPTH, URL_RE, canonical_url, find_urls, is_http_url, unwrap_redirect

CORPUS = Path(os.environ.get("BRIEFCAST_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus")
RSS_FEEDS = CORPUS / "feeds" / "netnewswire" / "feeds"
SEED_003 = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "003_b3f3aefd5886670b.txt"

# Real ids taken from public pages. The old one carries the article URL (and its AMP twin);
# the new one ("AU_yqL…" inside) is an opaque token that only Google can resolve.
OLD_GOOGLE_NEWS_ID = (
    "CBMiWmh0dHBzOi8vd3d3Lm5kdHYuY29tL3dvcmxkLW5ld3MvZWxvbi1tdXNrLXJlY2xhaW1zLXRoZS10aXRsZS1vZi13"
    "b3JsZHMtcmljaGVzdC1tYW4tMzgyMDMyONIBYGh0dHBzOi8vd3d3Lm5kdHYuY29tL3dvcmxkLW5ld3MvZWxvbi1tdXNr"
    "LXJlY2xhaW1zLXRoZS10aXRsZS1vZi13b3JsZHMtcmljaGVzdC1tYW4tMzgyMDMyOC9hbXAvMQ"
)
OLD_GOOGLE_NEWS_TARGET = "https://www.ndtv.com/world-news/elon-musk-reclaims-the-title-of-worlds-richest-man-3820328"
NEW_GOOGLE_NEWS_ID = (
    "CBMipAFBVV95cUxOTHEwU1ZaV1pkRUgzU0MxV3EzaW5EUkVnUnZ1NHVWT2phRlhvMWFjOHlrVkF6ZnhVekVTcjlvU3RC"
    "bVBaNjFhYTQtcFFtOUtJZ1Q4ZkVnSEg1bjFJVEwwbGlmZ1JxWWVZb0xGTmc1cnZwMGlQdWxlN0VVSmYyNjB0ZW1zS3Qx"
    "Y2tCUmZ1Q2YxSDFZUFJrRjg4ZnIwd0k3UVlhc0pMZQ"
)
TARGET = "https://example.org/news/story?id=42&lang=en"


def feed_links_and_guids() -> list[str]:
    if not RSS_FEEDS.is_dir():
        pytest.skip(f"feed corpus not found at {RSS_FEEDS} (set BRIEFCAST_CORPUS)")
    # [^<]* rather than .*? so an unclosed <link …> in embedded HTML cannot make the scan quadratic.
    tag_re = re.compile(r"<(link|guid)\b[^<>/]*>(?:<!\[CDATA\[([^\]]*)\]\]>|([^<]*))</\1>")
    values = []
    for feed in sorted(RSS_FEEDS.glob("*.rss")):
        text = feed.read_text(encoding="utf-8", errors="replace")
        values += [html.unescape(m.group(2) or m.group(3)).strip() for m in tag_re.finditer(text)]
    assert values, f"no <link> or <guid> found under {RSS_FEEDS}"
    return values


# --- canonical_url ------------------------------------------------------------------------------


def test_tracking_parameters_are_dropped_and_the_rest_keep_their_order():
    url = "https://example.com/a?utm_source=rss&b=2&fbclid=x&a=1&UTM_Medium=y&ref=hn&gclid=z&z=0&oc=5"
    assert canonical_url(url) == "https://example.com/a?b=2&a=1&z=0"


def test_query_made_only_of_tracking_parameters_disappears():
    assert canonical_url("https://example.com/a?utm_campaign=x&mc_cid=1&_hsenc=2") == "https://example.com/a"


def test_fragment_is_dropped():
    assert canonical_url("https://example.com/post#comments") == "https://example.com/post"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://[2001:db8::1]:80/a", "http://[2001:db8::1]/a"),
    ],
)
def test_only_the_default_port_is_dropped(url, expected):
    assert canonical_url(url) == expected


def test_scheme_and_host_are_lowercased_path_is_not():
    assert canonical_url("HTTPS://WWW.Example.COM/Path/Page") == "https://www.example.com/Path/Page"


def test_empty_path_becomes_slash():
    assert canonical_url("https://example.com") == "https://example.com/"
    assert canonical_url("https://example.com?a=1") == "https://example.com/?a=1"


def test_percent_encoding_of_unreserved_characters_is_resolved_others_uppercased():
    url = "https://example.com/%7euser/a%2fb?q=%41%e2%82%ac"
    assert canonical_url(url) == "https://example.com/~user/a%2Fb?q=A%E2%82%AC"


def test_idna_host_becomes_punycode():
    assert canonical_url("https://Bücher.example/katalog") == "https://xn--bcher-kva.example/katalog"


@pytest.mark.parametrize(
    "value", ["  mailto:someone@example.com ", "cocoa-dom:tcmportmapper", "ftp://example.com/x", "not a url", ""]
)
def test_non_http_input_comes_back_stripped(value):
    assert canonical_url(value) == value.strip()


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://Example.COM:80?utm_source=x&b=2#frag",
        "https://bücher.example/%7e/ä ö?x=%2f&y=a+b",
        "https://example.com/?a=1&&b=2&",
        "http://user:pw@Example.com:8080/a",
        "http://[::1]:443/",
    ],
)
def test_canonical_url_is_idempotent(url):
    once = canonical_url(url)
    assert canonical_url(once) == once


def test_real_feed_links_never_raise_and_are_idempotent():
    values = feed_links_and_guids()
    for value in values:
        once = canonical_url(value)
        assert canonical_url(once) == once, value
        if is_http_url(value.strip()):
            assert is_http_url(once), (value, once)
        else:
            assert once == value.strip()


def test_fragment_permalinks_in_a_real_feed_collapse_so_guid_must_win():
    # Scripting News gives each item a "#a080605"-style permalink on a day page. Dropping the
    # fragment (as asked) folds those items onto one URL: ids must come from the guid first.
    feed = RSS_FEEDS / "scriptingNews.rss"
    if not feed.is_file():
        pytest.skip(f"{feed} not found (set BRIEFCAST_CORPUS)")
    links = set(re.findall(r"<link>\s*(.*?)\s*</link>", feed.read_text(encoding="utf-8")))
    canonical = {canonical_url(link) for link in links}
    assert len(canonical) < len(links)
    assert all("#" not in url for url in canonical)


# --- unwrap_redirect ----------------------------------------------------------------------------

ENCODED = quote(TARGET, safe="")


@pytest.mark.parametrize(
    "wrapped",
    [
        f"https://www.google.com/url?q={ENCODED}&sa=D&source=editors",
        f"https://www.google.com/url?sa=t&url={ENCODED}&usg=AOvVaw",
        f"https://google.com/url?q={ENCODED}",
        f"https://l.facebook.com/l.php?u={ENCODED}&h=AT0x",
        f"https://lm.facebook.com/l.php?u={ENCODED}",
        f"https://out.reddit.com/t3_1abcde?url={ENCODED}&token=AQAA&app_name=web",
        f"https://t.umblr.com/redirect?z={ENCODED}&t=YTI3",
        f"https://href.li/?{TARGET}",
        f"https://l.instagram.com/?u={ENCODED}&e=ATM",
        f"https://www.youtube.com/redirect?event=video_description&q={ENCODED}",
        f"https://slack-redir.net/link?url={ENCODED}",
        f"https://www.linkedin.com/safety/go?url={ENCODED}&trk=flagship",
        f"https://linkedin.com/safety/go?url={ENCODED}",
    ],
)
def test_each_redirector_is_unwrapped(wrapped):
    assert unwrap_redirect(wrapped) == TARGET


@pytest.mark.parametrize("path", ["rss/articles", "articles", "__i/rss/rd/articles"])
def test_old_google_news_id_is_decoded(path):
    assert unwrap_redirect(f"https://news.google.com/{path}/{OLD_GOOGLE_NEWS_ID}?oc=5") == OLD_GOOGLE_NEWS_TARGET


def test_google_consent_wall_around_google_news_unwraps_to_the_article():
    # As found in a public scrape: consent.google.com → news.google.com → the publisher.
    wrapped = (
        f"https://consent.google.com/ml?continue=https://news.google.com/rss/articles/{OLD_GOOGLE_NEWS_ID}"
        "?oc%3D5&gl=FR&hl=en-US&pc=n&src=1"
    )
    assert unwrap_redirect(wrapped) == OLD_GOOGLE_NEWS_TARGET


@pytest.mark.parametrize(
    "article_id",
    [NEW_GOOGLE_NEWS_ID, "CBMiZZZZnot-really-an-id", "CBMia", "CBMi" + "A" * 40, "%%%"],
)
def test_opaque_or_garbage_google_news_id_is_returned_unchanged(article_id):
    link = f"https://news.google.com/rss/articles/{article_id}?oc=5"
    assert unwrap_redirect(link) == link


def test_nested_wrapping_is_unwrapped_to_the_end():
    tumblr = f"https://t.umblr.com/redirect?z={ENCODED}"
    facebook = f"https://l.facebook.com/l.php?u={quote(tumblr, safe='')}"
    google = f"https://www.google.com/url?q={quote(facebook, safe='')}"
    assert unwrap_redirect(google) == TARGET


def test_unwrapping_stops_after_max_depth():
    levels = [TARGET]
    for _ in range(MAX_UNWRAP_DEPTH + 2):
        levels.append(f"https://www.google.com/url?q={quote(levels[-1], safe='')}")
    assert unwrap_redirect(levels[-1]) == levels[2]


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>x</script>",
        "//evil.example/",
        "ftp://x/",
    ],
)
def test_non_http_targets_are_refused(target):
    for wrapped in (
        f"https://www.google.com/url?q={quote(target, safe='')}",
        f"https://l.facebook.com/l.php?u={quote(target, safe='')}",
        f"https://href.li/?{target}",
    ):
        assert unwrap_redirect(wrapped) == wrapped


def test_ordinary_links_and_lookalikes_are_left_alone():
    for link in (
        TARGET,
        f"https://www.google.com/search?q={ENCODED}",
        f"https://notgoogle.com/url?q={ENCODED}",
        f"https://l.facebook.com.evil.example/l.php?u={ENCODED}",
        "not a url at all",
    ):
        assert unwrap_redirect(link) == link


# --- URL_RE, find_urls, is_http_url --------------------------------------------------------------


def test_url_inside_an_anchor_stops_at_the_quote():
    fragment = '<a href="https://example.com/a?b=1">the story</a> and <a href=\'http://x.org/\'>x</a>'
    assert find_urls(fragment) == ["https://example.com/a?b=1", "http://x.org/"]


def test_bracketed_remnants_produce_no_urls():
    assert find_urls('calling it <a href="[news.google.com]') == []
    assert find_urls("closed APIs [news.google.com] and https://[news.google.com] too") == []


def test_seed_thread_contains_no_url_only_remnants():
    if not SEED_003.is_file():
        pytest.skip(f"seed thread not found at {SEED_003}")
    text = SEED_003.read_text(encoding="utf-8")
    assert "[news.google.com]" in text
    assert URL_RE.findall(text) == []


def test_trailing_punctuation_and_unbalanced_parens_stay_with_the_text():
    text = "See https://example.com/a. Also (https://example.com/b), and https://en.wikipedia.org/wiki/Foo_(bar)!"
    expected = ["https://example.com/a", "https://example.com/b", "https://en.wikipedia.org/wiki/Foo_(bar)"]
    assert find_urls(text) == expected


@pytest.mark.parametrize(
    "value",
    ["https://example.com", "http://localhost:8080/x", "https://bücher.example/", "http://[::1]/", "https://a.b/c?d=e#f"],
)
def test_is_http_url_accepts(value):
    assert is_http_url(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "example.com",
        "ftp://example.com",
        "javascript:alert(1)",
        "https://",
        "http://news.google.com]",
        "http://[news.google.com]/",
        "https://exa mple.com",
        " https://example.com",
        "https://-bad-.example/",
        "https://example.com:99999/",
        None,
        42,
    ],
)
def test_is_http_url_rejects(value):
    assert not is_http_url(value)
