"""The polite fetcher against a real loopback server behaving badly."""

from __future__ import annotations

import asyncio
import time

import pytest

from ingest.fetch import Fetcher, parse_retry_after
from ingest.localserver import LocalServer
from tests import hostile
from tests.conftest import make_settings

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item><title>A</title></item></channel></rss>'


def fetch(settings, url, **kwargs):
    async def go():
        async with Fetcher(settings) as fetcher:
            return await fetcher.get(url, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def cfg(tmp_path, sqlite_url):
    return make_settings(tmp_path, sqlite_url, max_response_bytes=1024 * 1024, total_timeout=3.0, read_timeout=2.0)


def test_conditional_get_returns_304_with_the_stored_validators(cfg, sample_server):
    url = sample_server.url("/feeds/policy-wire.rss")
    first = fetch(cfg, url)
    assert first.ok and first.etag and first.last_modified
    again = fetch(cfg, url, etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified and again.body == b""


def test_gzip_responses_are_decoded(cfg, sample_server):
    result = fetch(cfg, sample_server.url("/feeds/policy-wire.rss"))
    assert result.headers.get("content-encoding") == "gzip"
    assert result.body.lstrip().startswith(b"<?xml")


def test_two_gigabyte_response_is_cut_at_the_cap(cfg):
    routes = {"/huge": hostile.huge_response(), "/huge-declared": hostile.huge_response(declare_length=True)}
    with LocalServer(None, routes=routes) as server:
        started = time.monotonic()
        streamed = fetch(cfg, server.url("/huge"))
        declared = fetch(cfg, server.url("/huge-declared"))
    assert streamed.error_kind == "too_large" and "cap" in streamed.error
    assert declared.error_kind == "too_large" and "2,147,483,648" in declared.error
    assert time.monotonic() - started < 60  # stopped early, did not read 2 GB


def test_gzip_bomb_is_refused_without_inflating_it(cfg):
    with LocalServer(None, routes={"/bomb": hostile.gzip_bomb(256 * 1024 * 1024)}) as server:
        result = fetch(cfg, server.url("/bomb"))
    assert result.error_kind == "too_large"
    assert "decoded body exceeds" in result.error


def test_gzip_file_served_without_content_encoding_is_unpacked(cfg):
    with LocalServer(None, routes={"/feed.xml": hostile.gzip_file(FEED)}) as server:
        result = fetch(cfg, server.url("/feed.xml"))
    assert result.ok and result.body == FEED


def test_redirect_loop_is_named(cfg):
    with LocalServer(None) as server:
        server.routes.update({"/a": hostile.redirect_to("/b"), "/b": hostile.redirect_to("/a")})
        result = fetch(cfg, server.url("/a"))
    assert result.error_kind == "redirect" and result.error.startswith("redirect loop")


def test_redirect_chain_longer_than_the_limit_fails(cfg):
    with LocalServer(None) as server:
        server.routes.update({f"/r{i}": hostile.redirect_to(f"/r{i + 1}") for i in range(10)})
        result = fetch(cfg, server.url("/r0"))
    assert result.error_kind == "redirect" and "more than 5 redirects" in result.error


def test_redirects_are_followed(cfg, sample_server):
    sample_server.routes["/moved"] = hostile.redirect_to("/feeds/policy-wire.rss")
    result = fetch(cfg, sample_server.url("/moved"))
    assert result.ok and result.final_url.endswith("/feeds/policy-wire.rss")


def test_redirect_to_a_non_http_scheme_is_refused(cfg):
    with LocalServer(None, routes={"/x": hostile.redirect_to("file:///etc/passwd")}) as server:
        result = fetch(cfg, server.url("/x"))
    assert result.error_kind == "redirect" and "non-HTTP" in result.error


def test_slow_loris_hits_the_total_deadline(cfg):
    with LocalServer(None, routes={"/slow": hostile.slow_loris(interval=0.3)}) as server:
        started = time.monotonic()
        result = fetch(cfg, server.url("/slow"))
    assert result.error_kind == "timeout"
    assert time.monotonic() - started < 10


def test_retry_after_is_read_from_429_and_503(cfg):
    routes = {
        "/busy": hostile.status(429, Retry_After="120"),
        "/down": hostile.status(503, Retry_After="Wed, 21 Oct 2099 07:28:00 GMT"),
    }
    with LocalServer(None, routes=routes) as server:
        busy, down = fetch(cfg, server.url("/busy")), fetch(cfg, server.url("/down"))
    assert busy.status == 429 and busy.retry_after == 120 and busy.error == "HTTP 429 Too Many Requests"
    assert down.status == 503 and down.retry_after == 30 * 24 * 3600  # a 2099 date is capped at 30 days


def test_parse_retry_after_forms():
    assert parse_retry_after("30") == 30
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("²") is None  # str.isdigit() says yes; float() would raise
    assert parse_retry_after("999999999999") == 30 * 24 * 3600
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.1.2.3", "[::ffff:127.0.0.1]"])
def test_ssrf_guard_refuses_private_addresses_and_names_the_setting(tmp_path, sqlite_url, host):
    cfg = make_settings(tmp_path, sqlite_url, allow_private_addresses=False, total_timeout=3.0)
    result = fetch(cfg, f"http://{host}:9/feed")
    assert result.error_kind == "blocked", result.error
    assert "BRIEFCAST_ALLOW_PRIVATE_ADDRESSES" in result.error


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:9/x"])
def test_ssrf_guard_checks_every_redirect_hop(tmp_path, sqlite_url, target):
    # Only the test server's own address is allowed: a redirect elsewhere private must be refused.
    cfg = make_settings(tmp_path, sqlite_url, allow_private_addresses=False, allowed_networks=["127.0.0.1/32"])
    with LocalServer(None) as server:
        server.routes["/hop"] = hostile.redirect_to(target)
        server.routes["/ok"] = hostile.static(FEED, "application/rss+xml")
        assert fetch(cfg, server.url("/ok")).ok
        result = fetch(cfg, server.url("/hop"))
    assert result.error_kind == "blocked", result.error
    assert target.split("/")[2].split(":")[0] in result.error


def test_bounded_concurrency_per_host(tmp_path, sqlite_url):
    cfg = make_settings(tmp_path, sqlite_url, per_host_concurrency=2, concurrency=16)
    active = {"now": 0, "max": 0}

    def slow(h):
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        time.sleep(0.2)
        active["now"] -= 1
        hostile.send(h, 200, FEED, Content_Type="application/rss+xml")

    async def go(server):
        async with Fetcher(cfg) as fetcher:
            return await asyncio.gather(*(fetcher.get(server.url("/slow")) for _ in range(8)))

    with LocalServer(None, routes={"/slow": slow}) as server:
        results = asyncio.run(go(server))
    assert all(r.ok for r in results)
    assert active["max"] == 2


def test_user_agent_is_honest(cfg):
    seen = {}

    def echo(h):
        seen["ua"] = h.headers.get("User-Agent")
        hostile.send(h, 200, FEED, Content_Type="application/rss+xml")

    with LocalServer(None, routes={"/ua": echo}) as server:
        fetch(cfg, server.url("/ua"))
    assert seen["ua"].startswith("briefcast/")


def test_stacked_content_encodings_are_undone_in_reverse(cfg):
    import brotli

    body = hostile.gzip.compress(brotli.compress(FEED))
    route = lambda h: hostile.send(h, 200, body, Content_Type="application/rss+xml", Content_Encoding="br, gzip")  # noqa: E731
    with LocalServer(None, routes={"/two": route}) as server:
        result = fetch(cfg, server.url("/two"))
    assert result.ok and result.body == FEED
