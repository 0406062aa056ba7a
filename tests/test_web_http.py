"""The web reader over plain HTTP against uvicorn on loopback: sign-in, sessions, CSRF, cookie
flags, 404s, escaping of hostile feed fields, offline /docs, public mode, the subscription page."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest
from sqlalchemy import select

from tests.web_world import _CSRF, FORBIDDEN, HOSTILE_MARK, Server, Visitor, web_server, web_world  # noqa: F401 - fixtures


@pytest.fixture
def visitor(web_server):
    v = Visitor(web_server.base_url)
    yield v
    v.close()


@pytest.fixture
def reader(visitor, web_world):
    assert visitor.sign_in(web_world.api_key).status_code == 303
    return visitor


def pages(world) -> list[str]:
    first, last = world.story_ids[0], world.story_ids[-1]
    return ["/", "/briefs", f"/briefs/{world.topic}/{world.day}", f"/stories/{first}", f"/stories/{last}",
            f"/insights/{first}", f"/insights/{last}", f"/podcasts/{world.topic}/{world.day}",
            f"/find?q={HOSTILE_MARK}", "/find?q=open+weight+models&kind=episode"]


class Links(HTMLParser):
    """Every URL a page would let the browser follow, load or post to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.urls += [v or "" for k, v in attrs if k in ("href", "src", "action", "formaction")]


def test_pages_need_a_signed_in_reader(visitor, web_world):
    for path in pages(web_world):
        answer = visitor.http.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/signin?next=%2F"), answer.headers["location"]
    assert visitor.http.get("/health").status_code == 200  # the JSON API keeps its own rules
    assert visitor.http.get("/search", params={"q": "chips"}).status_code == 401


def test_sign_in_sets_a_signed_httponly_lax_cookie_and_returns_to_the_page(visitor, web_world):
    answer = visitor.sign_in(web_world.api_key, next_path=f"/briefs/{web_world.topic}/{web_world.day}")
    assert answer.status_code == 303 and answer.headers["location"] == f"/briefs/{web_world.topic}/{web_world.day}"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("briefcast_session="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= flags and "secure" not in flags  # plain http here
    assert "samesite=lax" in cookie.lower()
    assert web_world.api_key not in cookie  # the key itself never goes into the cookie
    page = visitor.http.get("/")
    assert page.status_code == 200 and "Top 5 insights" in page.text and "Sign out" in page.text


def test_the_cookie_is_secure_behind_https(visitor, web_world):
    """uvicorn trusts X-Forwarded-Proto from loopback (a reverse proxy on the same host)."""
    visitor.http.headers["X-Forwarded-Proto"] = "https"
    form = visitor.http.get("/signin")
    csrf_cookie = next(c for c in form.headers.get_list("set-cookie") if c.startswith("briefcast_csrf="))
    assert "secure" in csrf_cookie.lower() and "httponly" in csrf_cookie.lower()
    # httpx keeps a Secure cookie from going over http://, as a browser would: hand it over as the proxy would
    visitor.http.cookies.set("briefcast_csrf", csrf_cookie.split(";")[0].split("=", 1)[1])
    token = _CSRF.search(form.text).group(1)
    answer = visitor.http.post("/signin", data={"csrf": token, "key": web_world.api_key, "next": "/"})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("briefcast_session="))
    assert "secure" in cookie.lower()


def test_a_wrong_key_is_refused_without_a_session(visitor):
    answer = visitor.sign_in("bc_not-a-real-key")
    assert answer.status_code == 401 and "not recognised" in answer.text
    assert not any(c.startswith("briefcast_session=") for c in answer.headers.get_list("set-cookie"))
    assert visitor.http.get("/").status_code == 303


def test_posts_without_the_right_csrf_token_are_refused(visitor, web_world, web_server):
    no_token = visitor.http.post("/signin", data={"key": web_world.api_key, "next": "/"})
    assert no_token.status_code == 403
    other = Visitor(web_server.base_url)  # another browser's token does not fit this browser's cookie
    try:
        stolen = other.token()
    finally:
        other.close()
    visitor.token()  # this browser's own CSRF cookie
    forged = visitor.http.post("/signin", data={"csrf": stolen, "key": web_world.api_key, "next": "/"})
    assert forged.status_code == 403
    assert not any(c.startswith("briefcast_session=") for c in forged.headers.get_list("set-cookie"))


def test_a_token_from_before_sign_in_does_not_sign_out(reader):
    """Tokens are bound to the session: the sign-in page's token is stale once signed in."""
    stale = reader.http.cookies.get("briefcast_session")
    assert stale
    refused = reader.http.post("/signout", data={"csrf": "x" * 43})
    assert refused.status_code == 403
    assert reader.http.get("/").status_code == 200


def test_sign_out_ends_the_session(reader):
    token = reader.token("/briefs")
    answer = reader.http.post("/signout", data={"csrf": token})
    assert answer.status_code == 303
    assert reader.http.get("/").status_code == 303


def test_a_tampered_or_revoked_session_is_signed_out(reader, web_world):
    from store.apikeys import create_key, revoke_key

    good = reader.http.cookies.get("briefcast_session")
    key_id, issued, signature = good.split(".")
    reader.http.cookies.set("briefcast_session", f"{int(key_id) + 1}.{issued}.{signature}")
    assert reader.http.get("/").status_code == 303

    with web_world.sessions() as session, session.begin():
        row, key = create_key(session, "to be revoked")
    reader.http.cookies.clear()
    assert reader.sign_in(key).status_code == 303 and reader.http.get("/").status_code == 200
    with web_world.sessions() as session, session.begin():
        revoke_key(session, row.id)
    assert reader.http.get("/").status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"])
def test_sign_in_never_redirects_off_site(visitor, web_world, target):
    answer = visitor.sign_in(web_world.api_key, next_path=target)
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_every_page_escapes_hostile_feed_fields_and_links_only_http(reader, web_world):
    seen_mark = 0
    for path in pages(web_world):
        page = reader.http.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        for bad in FORBIDDEN:
            assert bad not in page.text, (path, bad)
        links = Links()
        links.feed(page.text)
        assert links.scripts == 0, path  # no script at all on the reader's pages
        for url in links.urls:
            assert url.startswith(("/", "#", "http://", "https://")) and not url.startswith("//"), (path, url)
        seen_mark += HOSTILE_MARK in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    assert seen_mark >= 3  # the hostile item did reach the brief, a story and the search, as text


def test_the_brief_page_is_the_stored_brief_with_five_lines_first(reader, web_world):
    from digest.render import brief_view
    from digest.slack import load_brief
    from store.models import Brief

    with web_world.sessions() as session:
        view = brief_view(load_brief(session.scalars(select(Brief)).one()))
    page = reader.http.get(f"/briefs/{web_world.topic}/{web_world.day}").text
    assert page.index("Today in 5 lines") < page.index('id="story-')
    for card in view.cards:
        assert card.title.replace("'", "&#39;") in page and f'href="/stories/{card.anchor[6:]}"' in page
    front = reader.http.get("/").text  # today's brief of the default topic
    assert f'<time datetime="{web_world.day}">' in front and view.cards[0].anchor in front


def test_story_page_has_citations_sources_with_times_and_why_it_ranked(reader, web_world):
    page = reader.http.get(f"/stories/{web_world.story_ids[0]}").text
    assert 'class="cite" href="#source-' in page and 'id="source-1"' in page
    assert "Why it ranked" in page and "Rank 1" in page and "corroboration" in page
    assert '<ol class="sources">' in page and " UTC</time>" in page  # every item once: tests/test_web_reading.py
    assert "Related stories" in page and "synthesised analysis" in page


def test_podcast_page_links_open_the_episode_at_the_moment(reader, web_world):
    page = reader.http.get(f"/podcasts/{web_world.topic}/{web_world.day}").text
    assert page.count("#t=") >= 3 and "Top " in page and "from the podcasts" in page


def test_find_shows_passage_source_date_and_story(reader):
    page = reader.http.get("/find", params={"q": HOSTILE_MARK, "kind": "article"}).text
    assert "result" in page and HOSTILE_MARK in page and "<blockquote>" in page and "the story" in page
    episodes = reader.http.get("/find", params={"q": "export rules chips", "kind": "episode"}).text
    assert "listen at" in episodes and "#t=" in episodes
    bad = reader.http.get("/find", params={"q": "chips", "kind": "video", "since": "yesterday"})
    assert bad.status_code == 422 and "Kind must be one of" in bad.text


def test_missing_pages_are_404_pages_and_the_api_keeps_json(reader):
    for path in ("/stories/999999", "/stories/abc", "/stories/99999999999", "/insights/999999",
                 "/briefs/ai-geopolitics/1999-01-01", "/briefs/ai-geopolitics/not-a-day", "/podcasts/x/2020-01-01",
                 "/subscription/1.notavalidsignature", "/no-such-page"):
        answer = reader.http.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html") and "<h1>" in answer.text, path
    api = reader.http.get("/no-such-page", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.json()["error"] == "not_found"


def test_docs_load_nothing_from_a_cdn(web_server):
    for path in ("/docs", "/redoc"):
        page = httpx.get(web_server.base_url + path)
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "https://" not in page.text.replace("https://fastapi.tiangolo.com", "")
        links = Links()
        links.feed(page.text)
        assert links.urls and all(u.startswith("/") for u in links.urls), links.urls
        for url in links.urls:
            asset = httpx.get(web_server.base_url + url)
            assert asset.status_code == 200 and len(asset.content) > 500, url


def test_public_mode_opens_pages_without_sign_in_but_still_checks_csrf(web_world):
    server = Server(web_world, BRIEFCAST_WEB_PUBLIC="true")
    try:
        visitor = Visitor(server.base_url)
        assert visitor.http.get("/").status_code == 200
        assert visitor.http.get(f"/stories/{web_world.story_ids[0]}").status_code == 200
        assert visitor.http.post("/signout", data={"next": "/"}).status_code == 403
        visitor.close()
    finally:
        server.stop()


def test_subscription_page_from_the_signed_link(visitor, web_world):
    from store.models import Subscriber

    path = f"/subscription/{web_world.manage_link}"
    page = visitor.http.get(path)
    assert page.status_code == 200 and "reader@example.org" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    sid, signature = web_world.manage_link.split(".")
    forged = f"/subscription/{sid}.{signature[::-1]}"
    assert visitor.http.get(forged).status_code == 404
    assert visitor.http.get(f"/subscription/{web_world.unsubscribe_token}").status_code == 404
    # The unsubscribe token is in List-Unsubscribe, which mail providers see: it must not rebuild the link.
    from digest.manage_links import manage_token

    assert visitor.http.get(f"/subscription/{manage_token(int(sid), web_world.unsubscribe_token)}").status_code == 404

    form = {"active": "yes", "topics": "ai-geopolitics", "persona": "Policy Maker", "timezone": "Asia/Tokyo",
            "send_time": "06:30"}
    assert visitor.http.post(path, data=form).status_code == 403  # no CSRF token
    bad = visitor.http.post(path, data=form | {"csrf": visitor.token(path), "timezone": "Mars/Olympus"})
    assert bad.status_code == 422 and "unknown time zone" in bad.text
    saved = visitor.http.post(path, data=form | {"csrf": visitor.token(path)})
    assert saved.status_code == 200 and "Saved" in saved.text
    with web_world.sessions() as session:
        row = session.get(Subscriber, web_world.subscriber_id)
        assert (row.timezone, row.send_time, row.persona, row.topics, row.active) == (
            "Asia/Tokyo", "06:30", "Policy Maker", ["ai-geopolitics"], True)


def test_the_brief_offers_the_topics_personas(reader, web_world):
    from digest.topics import load_topic

    personas = load_topic(web_world.settings, web_world.topic).persona_names
    assert personas
    page = reader.http.get(f"/briefs/{web_world.topic}/{web_world.day}", params={"persona": personas[0]}).text
    assert f'<option value="{personas[0]}" selected>' in page
    assert reader.http.get(f"/briefs/{web_world.topic}/{web_world.day}", params={"persona": "x" * 5000}).status_code == 200


def test_a_story_no_brief_carried_still_has_a_page(reader, web_world):
    """Search hits link to any story; one no brief summarised shows its items and its score."""
    from store.models import BriefStory, Story

    with web_world.sessions() as session:
        carried = set(session.scalars(select(BriefStory.story_id)))
        other = next(s for s in session.scalars(select(Story.id).order_by(Story.id)) if s not in carried)
    page = reader.http.get(f"/stories/{other}")
    assert page.status_code == 200 and "has not been summarised in a brief yet" in page.text
    assert "Every item in this story" in page.text
    assert reader.http.get(f"/insights/{other}").status_code == 404
