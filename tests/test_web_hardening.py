"""What a review of the web reader found, each as a request against uvicorn on loopback: forged
cookies and form fields are refusals, never 500s; an absurd time zone is a 422; parallel wrong keys
cannot pass the sign-in limit together; the docs and unsubscribe pages carry a CSP and nosniff."""

from __future__ import annotations

import httpx
import pytest

from tests.web_world import Visitor, web_server, web_world  # noqa: F401 - fixtures


@pytest.mark.parametrize("cookie", ["\u00b2.1.x", "1." + "9" * 5000 + ".x", "1.1.\u00e9\u00e9", "1.1." + "\u00e9" * 43])
def test_a_forged_session_cookie_is_a_sign_in_page_not_a_500(web_server, cookie):
    raw = f"briefcast_session={cookie}".encode()  # UTF-8 bytes on the wire, as a forger would send them
    with httpx.Client(base_url=web_server.base_url, timeout=30) as http:
        answer = http.get("/briefs", headers={b"Cookie": raw, b"Accept": b"text/html"})
    assert answer.status_code in (303, 307), (answer.status_code, answer.text[:200])


def test_a_non_ascii_csrf_field_is_a_403_not_a_500(web_server):
    visitor = Visitor(web_server.base_url)
    try:
        visitor.token()  # the browser's CSRF cookie
        answer = visitor.http.post("/signin", content=b"csrf=%C3%A9&key=x&next=/",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 403
    finally:
        visitor.close()


def test_an_absurd_time_zone_on_the_subscription_page_is_a_422(web_server, web_world):
    visitor = Visitor(web_server.base_url)
    try:
        path = f"/subscription/{web_world.manage_link}"
        form = {"active": "yes", "topics": "ai-geopolitics", "persona": "", "send_time": "",
                "timezone": "a/" * 400 + "b", "csrf": visitor.token(path)}
        answer = visitor.http.post(path, data=form)
        assert answer.status_code == 422 and "unknown time zone" in answer.text
    finally:
        visitor.close()


def test_sign_ins_are_counted_before_the_key_is_checked():
    """Requests in flight together each take a place first: the eleventh waits however many are
    still being checked; a right key gives its place back."""
    from api.web.throttle import FailedSignIns

    limit = FailedSignIns(allowed=10, window=60, clock=lambda: 1000.0)
    assert [limit.attempt("a") for _ in range(10)] == [None] * 10  # none answered yet
    assert limit.attempt("a") == 60
    limit.succeeded("a")
    assert limit.attempt("a") is None and limit.attempt("a") == 60


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect", "/unsubscribe/no-such-token"])
def test_docs_and_unsubscribe_pages_carry_a_policy(web_server, path):
    answer = httpx.get(web_server.base_url + path, timeout=30)
    assert answer.status_code in (200, 404)
    policy = answer.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy and answer.headers.get("x-content-type-options") == "nosniff"
