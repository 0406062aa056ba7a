"""The web reader's test world: the bundled sample world (real ingest from a loopback server, a
hostile feed beside it), embedded with the fake encoder, a brief built by the copying fake
summariser, an API key and a subscriber; then `briefcast serve`'s app run by uvicorn on loopback.

The hostile feed's item carries <script>, an <img onerror>, and javascript: links in its link,
title and text; the stored brief gets the same in its fields (as a feed could put them there), so
every page that shows a brief, a story, a card or a search hit is checked against them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.hostile import send
from tests.serve_process import UvicornApp, free_port  # noqa: F401 - free_port: others import it here

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_MARK = "zebrafinch"  # a word only the hostile item has: search finds it
HOSTILE_TITLE = 'Beijing zebrafinch models <script>alert("title")</script> gain ground'
HOSTILE_LINK = "javascript:alert(document.cookie)"
HOSTILE_TEXT = (
    '<p>Chinese open-weight zebrafinch models gain ground as export controls tighten.<script>alert("body")</script> '
    '<a href="javascript:alert(2)">Read the rules</a> and <img src=x onerror="alert(3)"> labs in Beijing and Shenzhen '
    "moved training to domestic chips, Policy analysts said the zebrafinch release matched frontier benchmarks.</p>")
# What must never appear in a page's HTML, whatever the page.
FORBIDDEN = ("<script>alert", "javascript:", "onerror=", "<img src=x")


def hostile_feed(base_url: str) -> bytes:
    from xml.sax.saxutils import escape

    now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Hostile <script>alert(0)</script> Wire</title>
<link>{base_url}/</link><description>a feed that tries everything</description>
<item><title>{escape(HOSTILE_TITLE)}</title><link>{escape(HOSTILE_LINK)}</link>
<guid isPermaLink="false">hostile-1</guid><pubDate>{now}</pubDate>
<description>{escape(HOSTILE_TEXT)}</description></item>
</channel></rss>""".encode()


def hostile_route(server_ref: list):
    def route(h) -> None:
        send(h, 200, hostile_feed(server_ref[0].base_url), Content_Type="application/rss+xml; charset=utf-8")

    return route


@dataclass
class World:
    settings: object
    sessions: object
    api_key: str
    subscriber_id: int
    manage_link: str
    unsubscribe_token: str
    topic: str
    day: str
    story_ids: list[int]
    data_dir: Path
    db_url: str


def build_world(tmp: Path, server) -> World:
    """Ingest, embed, cluster, brief: as `briefcast run` does, with fake models."""
    from digest.compose import build_daily_brief
    from digest.manage_links import manage_token
    from digest.subscribers import add_subscriber
    from embed.encoder import FakeEncoder
    from store import repo
    from store.apikeys import create_key
    from store.db import open_database
    from store.models import Subscriber
    from tests.conftest import make_settings
    from tests.digest_world import FakeSummarizer, embed
    from tests.test_samples import ingest_samples

    db_url = f"sqlite:///{tmp / 'briefcast.db'}"
    settings = make_settings(tmp, db_url, encoder="fake", query_encoder="encoder")
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        repo.add_source(session, server.url("/feeds/hostile.rss"), kind="feed", topic="ai-geopolitics",
                        title='Hostile <b onmouseover="alert(1)">Wire</b>')
    report = ingest_samples(settings, sessions, server)
    assert report.count("failed") == 0, [o.error for o in report.sources if o.error]
    embed(settings, sessions)
    today = datetime.now(UTC).date()
    _, brief = build_daily_brief(settings, sessions, "ai-geopolitics", today, encoder=FakeEncoder(),
                                 summarizer=FakeSummarizer())
    poison_brief(sessions, "ai-geopolitics", today.isoformat())
    with sessions() as session, session.begin():
        _row, key = create_key(session, "web test reader")
    subscriber, _ = add_subscriber(sessions, "reader@example.org", topics=["ai-geopolitics"], timezone="Europe/Paris")
    with sessions() as session:  # the link's key is in the database and the email body only
        secret = session.get(Subscriber, subscriber.id).manage_secret
    return World(settings=settings, sessions=sessions, api_key=key, subscriber_id=subscriber.id,
                 manage_link=manage_token(subscriber.id, secret),
                 unsubscribe_token=subscriber.unsubscribe_token, topic="ai-geopolitics", day=today.isoformat(),
                 story_ids=list(brief.story_ids), data_dir=settings.data_dir, db_url=db_url)


def poison_brief(sessions, topic: str, day: str) -> None:
    """Hostile values in the stored brief's fields, where a feed's title, link and text end up."""
    from store.models import Brief

    with sessions() as session, session.begin():
        row = session.query(Brief).filter_by(topic=topic, day=day).one()
        payload = dict(row.payload)
        cards = [dict(c) for c in payload["cards"]]
        cards[-1]["title"] = HOSTILE_TITLE
        cards[-1]["summary"] = [{"text": HOSTILE_TEXT, "passage_ids": [], "support": 0.9, "unverified": False,
                                 "unsupported": False}] + list(cards[-1]["summary"])
        cards[-1]["sources"] = [dict(s, url=HOSTILE_LINK, publisher='Wire <script>alert("pub")</script>')
                                for s in cards[-1]["sources"]]
        payload["cards"] = cards
        row.payload = payload


class Server(UvicornApp):
    """The web test world's server: the fake encoder, no BRIEFCAST_* setting of this process."""

    def __init__(self, world: World, **env: str) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
        environment.update(BRIEFCAST_CONFIG=str(world.data_dir / "absent.toml"), BRIEFCAST_DATA_DIR=str(world.data_dir),
                           BRIEFCAST_DATABASE_URL=world.db_url, BRIEFCAST_ENCODER="fake",
                           BRIEFCAST_QUERY_ENCODER="encoder", **env)
        super().__init__(environment, world.data_dir)


# --- fixtures (import them into a test module) and an HTTP visitor -----------------------------

import re  # noqa: E402

import pytest  # noqa: E402

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def web_world(tmp_path_factory):
    from ingest.localserver import LocalServer

    ref: list = []
    with LocalServer(ROOT / "samples" / "site", routes={"/feeds/hostile.rss": hostile_route(ref)}) as server:
        ref.append(server)
        yield build_world(tmp_path_factory.mktemp("web"), server)


@pytest.fixture(scope="session")
def web_server(web_world):
    server = Server(web_world)
    yield server
    server.stop()


class Visitor:
    """One browser's worth of cookies, over plain HTTP."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30,
                                 headers={"Accept": "text/html"})

    def token(self, path: str = "/signin") -> str:
        page = self.http.get(path)
        match = _CSRF.search(page.text)
        assert match, f"no CSRF field on {path}: {page.status_code} {page.text[:300]}"
        return match.group(1)

    def sign_in(self, key: str, next_path: str = "/") -> httpx.Response:
        return self.http.post("/signin", data={"csrf": self.token(), "key": key, "next": next_path})

    def close(self) -> None:
        self.http.close()
