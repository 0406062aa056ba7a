"""The sample world's audio-only episode (ep6) has real audio: `briefcast transcribe` hears it.

Before issue 12 its enclosure was a 404, so the README's transcribe example could only fail."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from ingest.refresh import refresh
from store import repo
from store.db import open_database
from store.models import Item
from tests.conftest import make_settings

EP6_TITLE = "Mailbag: why AI data centres are queuing for the grid"


def test_the_sample_podcast_serves_episode_6s_audio(sample_server):
    import httpx

    response = httpx.get(sample_server.url("/audio/ep6.mp3"))
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    assert 10_000 < len(response.content) < 200_000  # a short clip, committed small


def test_the_sample_worlds_audio_episode_transcribes_to_its_spoken_words(tmp_path, sqlite_url, sample_server):
    pytest.importorskip("faster_whisper")
    from ingest.asr.stage import transcribe_pending

    settings = make_settings(tmp_path, sqlite_url, asr_model="tiny.en", asr_threads=2)
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        repo.add_source(session, sample_server.url("/podcasts/geopolitics-of-compute.xml"), kind="podcast")
    assert refresh(settings, sessions, force=True).sources[0].status == "new"
    with sessions() as session:
        queued = session.scalars(select(Item.title).where(Item.transcript_status == "queued")).all()
    assert queued == [EP6_TITLE]

    report = transcribe_pending(settings, sessions)
    assert [e.status for e in report.episodes] == ["asr"], [e.error for e in report.episodes]
    with sessions() as session:
        episode = session.scalars(select(Item).where(Item.title == EP6_TITLE)).one()
        words = set(re.findall(r"[a-z]+", episode.text.lower()))
        assert episode.transcript_status == "asr" and len(episode.segments) >= 3
    assert {"grid", "chips", "bottleneck", "reactors", "turbines"} <= words, words
    sessions.kw["bind"].dispose()
