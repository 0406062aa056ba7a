"""A page's server error is an HTML page with a request id (the API keeps its JSON), and failed
sign-ins are limited per client address (429 with Retry-After). Against uvicorn on loopback."""

from __future__ import annotations

import re
import sqlite3
import time

import httpx

from tests.web_world import Visitor, web_server, web_world  # noqa: F401 - fixtures

LEAKS = ("SELECT", "story_scores", "transcript_segments", "OperationalError", "no such table", "[SQL", "Traceback")


def _db_file(world) -> str:
    return world.db_url.removeprefix("sqlite:///")


def _log_after(server, request_id: str) -> str:
    deadline = time.monotonic() + 10
    while request_id not in (log := server.log.read_text(errors="replace")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return log[log.index(request_id):]


def test_a_pages_server_error_is_a_page_with_a_request_id_and_the_api_keeps_json(web_server, web_world):
    """A real fault while the server runs (two tables gone): the page says what to tell the operator,
    never the exception; the API's answer is still JSON; both are logged under their id."""
    reader = Visitor(web_server.base_url)
    assert reader.sign_in(web_world.api_key).status_code == 303
    story = f"/stories/{web_world.story_ids[0]}"
    db = sqlite3.connect(_db_file(web_world))
    db.execute("ALTER TABLE story_scores RENAME TO story_scores_gone")
    db.execute("ALTER TABLE transcript_segments RENAME TO transcript_segments_gone")
    db.commit()
    close = {"Connection": "close"}  # uvicorn closes a connection whose request raised: a new one each
    try:
        page = reader.http.get(story, headers=close)
        as_json = reader.http.get(story, headers=close | {"Accept": "application/json"})  # a page: still HTML
        api = reader.http.get("/items/2", headers=close | {"X-API-Key": web_world.api_key, "Accept": "text/html"})
    finally:
        db.execute("ALTER TABLE story_scores_gone RENAME TO story_scores")
        db.execute("ALTER TABLE transcript_segments_gone RENAME TO transcript_segments")
        db.commit()
        db.close()

    for answer in (page, as_json):
        assert answer.status_code == 500 and answer.headers["content-type"].startswith("text/html"), answer.text[:500]
        request_id = answer.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        assert f'<code class="request-id">{request_id}</code>' in answer.text
        assert "<h1>Something went wrong</h1>" in answer.text and "Sign out" in answer.text  # the site's own page
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        for leak in LEAKS:
            assert leak not in answer.text, leak
        assert "story_scores" in _log_after(web_server, request_id)[:20000]
    assert page.headers["x-request-id"] != as_json.headers["x-request-id"]

    assert api.status_code == 500 and api.headers["content-type"] == "application/json", api.text[:300]
    assert api.json()["error"] == "internal" and api.json()["request_id"] == api.headers["x-request-id"]
    assert reader.http.get(story).status_code == 200  # the tables are back: so is the page
    reader.close()


def test_failed_sign_ins_are_limited_per_address(web_server, web_world):
    """Ten wrong keys in a minute from one address: the next try is 429 with Retry-After, even with
    the right key; another address is not affected. Addresses come through X-Forwarded-For, which
    uvicorn trusts from loopback (a proxy on the same host), so this test blocks no other test."""
    blocked, other = Visitor(web_server.base_url), Visitor(web_server.base_url)
    blocked.http.headers["X-Forwarded-For"] = "203.0.113.7"
    other.http.headers["X-Forwarded-For"] = "203.0.113.8"
    for attempt in range(10):
        answer = blocked.sign_in("bc_not-a-key-" + str(attempt))
        assert answer.status_code == 401, (attempt, answer.status_code)
    refused = blocked.sign_in(web_world.api_key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Too many failed sign-ins" in refused.text and 'role="alert"' in refused.text
    assert not any(c.startswith("briefcast_session=") for c in refused.headers.get_list("set-cookie"))
    assert other.sign_in(web_world.api_key).status_code == 303
    blocked.close()
    other.close()


def test_the_limit_counts_a_sliding_minute_and_forgets_old_addresses():
    from api.web.throttle import FailedSignIns

    now = [1000.0]
    limit = FailedSignIns(allowed=3, window=60, clock=lambda: now[0], max_addresses=2)
    for _ in range(3):
        assert limit.retry_after("a") is None
        limit.failed("a")
        now[0] += 10
    assert limit.retry_after("a") == 30  # the first failure (t=1000) leaves the window at t=1060
    now[0] = 1060.5
    assert limit.retry_after("a") is None  # one slot free again
    limit.failed("a")
    assert limit.retry_after("a") == 10
    limit.failed("b")
    limit.failed("c")  # a third address while two are remembered: the stalest goes
    assert len(limit._failures) == 2 and "c" in limit._failures
