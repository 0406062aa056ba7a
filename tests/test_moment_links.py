"""Podcast hits open the episode at the moment, wherever they are shown: the API's /search results
(`link`), Slack's posted brief and `/ask` answers, the email (tests/test_render.py). Before issue 12
the API and Slack only said "at 1:01" beside a link to the episode's start."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from digest import slack_blocks as sb
from embed.encoder import FakeEncoder
from embed.index import IndexStore
from embed.pipeline import embed_pending
from store import repo
from store.apikeys import create_key
from store.db import open_database
from store.entry import Entry, Kind, Segment
from store.links import moment_url
from tests.conftest import make_settings
from tests.test_slack import all_text, make_brief


def test_moment_urls_use_the_media_fragment_or_youtubes_own_parameter():
    assert moment_url("https://pod.example/ep7", 61.9) == "https://pod.example/ep7#t=61"
    assert moment_url("https://www.youtube.com/watch?v=abc&t=5s", 3725) == "https://www.youtube.com/watch?v=abc&t=3725s"
    assert moment_url("https://pod.example/ep7#chapter-2", 61) == "https://pod.example/ep7#chapter-2"  # the page's own
    assert moment_url("javascript:alert(1)", 61) is None
    assert moment_url("https://pod.example/ep7", None) == "https://pod.example/ep7"


@pytest.fixture
def api(tmp_path, sqlite_url):
    settings = make_settings(tmp_path, sqlite_url, encoder="fake")
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        src, _ = repo.add_source(session, "https://pod.example/feed", kind="podcast", title="Compute Pod")
        episode = Entry(title="Compute Pod 7", kind=Kind.EPISODE, guid="ep7", url="https://pod.example/ep7", language="en",
                        segments=[Segment("Export controls keep tightening on accelerators.", 61.0, 70.5, "Ana")])
        episode.text = episode.segments[0].text
        video = Entry(title="Compute Pod 8", kind=Kind.EPISODE, guid="ep8", url="https://youtube.com/watch?v=xyz",
                      language="en", segments=[Segment("Export controls reach memory bandwidth.", 3725.0, 3790.0, "Bo")])
        video.text = video.segments[0].text
        article = Entry(title="Chip rules", guid="a", url="https://news.example/a", language="en",
                        text="Export controls on accelerators now count memory bandwidth. " * 5)
        repo.upsert_entries(session, src, [episode, video, article])
        _, key = create_key(session, "tests")
    embed_pending(sessions, FakeEncoder(), IndexStore(settings.index_dir))
    with TestClient(create_app(settings)) as client:
        yield client, {"X-API-Key": key}
    sessions.kw["bind"].dispose()


def test_search_results_link_episodes_at_the_passages_moment(api):
    client, headers = api
    body = client.get("/search", params={"q": "export controls", "k": 5}, headers=headers).json()
    links = {r["title"]: r["link"] for r in body["results"]}
    assert links == {"Compute Pod 7": "https://pod.example/ep7#t=61",
                     "Compute Pod 8": "https://youtube.com/watch?v=xyz&t=3725s",
                     "Chip rules": "https://news.example/a"}
    assert {r["url"] for r in body["results"]} >= {"https://pod.example/ep7"}  # the item's own URL is unchanged
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SearchHit"]["properties"]
    assert "link" in schema


def test_the_slack_brief_links_each_podcast_insight_at_its_moment():
    text = all_text(sb.brief_blocks(make_brief()))
    assert "<https://news.example/900#t=3725|Source 900 on export controls>" in text
    assert "<https://news.example/901#t=61|Source 901 on export controls>" in text
    assert "<https://news.example/101|" in text  # articles keep their plain link
