"""The transcription stage end to end: a podcast feed on a loopback server, refresh, then queued
episodes downloaded with the polite fetcher (resumable) and transcribed; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import shutil

import pytest
from sqlalchemy import select

from ingest.asr.download import download
from ingest.asr.fake import FakeTranscriber
from ingest.asr.stage import transcribe_ids, transcribe_pending
from ingest.fetch import Fetcher
from ingest.localserver import LocalServer
from ingest.refresh import refresh
from store import repo
from store.models import Item, TranscriptSegment
from tests.asr_audio import ASR_DATA
from tests.conftest import make_settings

VTT = "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Host>Published words about lithography.\n"


def podcast(notes: str = "Show notes.") -> str:
    def item(guid, title, audio, transcript=""):
        return (f"<item><title>{title}</title><guid>{guid}</guid><description>{notes} {title}</description>"
                f'<enclosure url="{{{{BASE_URL}}}}/audio/{audio}" type="audio/mpeg" length="1000"/>{transcript}</item>')

    published = '<podcast:transcript url="{{BASE_URL}}/t/b.vtt" type="text/vtt"/>'
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:podcast="https://podcastindex.org/namespace/1.0"><channel><title>Cast</title><language>en</language>'
            + item("a", "Audio only", "a.mp3") + item("b", "Has transcript", "b.mp3", published)
            + item("c", "Audio missing", "missing.mp3") + "</channel></rss>")


@pytest.fixture
def cast(tmp_path):
    root = tmp_path / "site"
    (root / "audio").mkdir(parents=True)
    (root / "t").mkdir()
    shutil.copy(ASR_DATA / "short.mp3", root / "audio" / "a.mp3")
    (root / "t" / "b.vtt").write_text(VTT)
    (root / "feed.xml").write_text(podcast())
    with LocalServer(root) as server:
        yield root, server


def by_guid(sessions) -> dict[str, Item]:
    with sessions() as session:
        rows = session.scalars(select(Item)).all()
        for row in rows:
            row.segments  # load before the session closes
        return {i.guid: i for i in rows}


def fetch_feed(settings, sessions, server) -> None:
    with sessions() as session, session.begin():
        repo.add_source(session, server.url("/feed.xml"), kind="podcast")
    report = refresh(settings, sessions, force=True)
    assert report.sources[0].status in ("new", "not_modified"), report.sources[0].error


def test_only_audio_only_episodes_are_transcribed_and_stored_like_a_published_transcript(settings, sessions, cast):
    _, server = cast
    fetch_feed(settings, sessions, server)
    before = by_guid(sessions)
    assert {g: i.transcript_status for g, i in before.items()} == {"a": "queued", "b": "published", "c": "queued"}
    seen = []
    report = transcribe_pending(settings, sessions, transcriber=FakeTranscriber(),
                                progress=lambda *event: seen.append(event))
    assert report.model == "fake-bursts" and report.count("asr") == 1 and report.count("failed") == 1
    after = by_guid(sessions)
    a = after["a"]
    assert (a.transcript_status, a.text_source, a.transcript_model, a.transcript_error) == ("asr", "asr", "fake-bursts", None)
    assert len(a.segments) >= 1 and [s.position for s in a.segments] == list(range(len(a.segments)))
    assert a.segments[0].start == pytest.approx(0.0, abs=0.2) and 3.5 < a.segments[-1].end <= 4.8  # seconds of the 4.7 s clip
    assert a.text == "\n".join(s.text for s in a.segments)  # as a published transcript sets it
    assert a.content_hash != before["a"].content_hash  # so the embed stage cuts new passages
    b = after["b"]
    assert (b.transcript_status, b.text_source, b.text) == ("published", "transcript", "Published words about lithography.")
    c = after["c"]
    assert c.transcript_status == "failed" and "404" in c.transcript_error and c.title == "Audio missing"
    assert not list((settings.data_dir / "audio").glob("item-*.audio"))  # transcribed audio is not kept
    assert ("download" in {e[1] for e in seen}) and any(e[1] == "transcribe" and e[3] for e in seen)


def test_nothing_queued_loads_no_model_and_a_refetch_keeps_the_asr_text(settings, sessions, cast):
    root, server = cast
    fetch_feed(settings, sessions, server)
    transcribe_pending(settings, sessions, transcriber=FakeTranscriber())
    asr_text = by_guid(sessions)["a"].text
    unbuildable = settings.model_copy(update={"asr_model": "no-such-model"})
    assert transcribe_pending(unbuildable, sessions).episodes == []  # nothing queued: no model built
    (root / "feed.xml").write_text(podcast("Reworded show notes."))  # the feed changes every entry
    fetch_feed(settings, sessions, server)
    a = by_guid(sessions)["a"]
    assert (a.transcript_status, a.text_source, a.text) == ("asr", "asr", asr_text)
    assert "Reworded" in by_guid(sessions)["c"].text  # ordinary entries do update


def test_a_failed_episode_is_retried_when_asked_and_published_ones_are_refused(settings, sessions, cast):
    root, server = cast
    fetch_feed(settings, sessions, server)
    transcribe_pending(settings, sessions, transcriber=FakeTranscriber())
    ids = {g: i.id for g, i in by_guid(sessions).items()}
    shutil.copy(ASR_DATA / "short.wav", root / "audio" / "missing.mp3")  # the publisher fixed it
    assert transcribe_pending(settings, sessions, transcriber=FakeTranscriber()).episodes == []  # failed stay failed
    again = transcribe_pending(settings, sessions, episode_id=ids["c"], transcriber=FakeTranscriber())
    assert [e.status for e in again.episodes] == ["asr"]
    refused = transcribe_pending(settings, sessions, episode_id=ids["b"], transcriber=FakeTranscriber())
    assert [(e.status, e.error) for e in refused.episodes] == [("skipped", "has a published transcript")]
    assert by_guid(sessions)["b"].text == "Published words about lithography."
    gone = transcribe_pending(settings, sessions, episode_id=99999, transcriber=FakeTranscriber())
    assert [(e.status, e.error) for e in gone.episodes] == [("skipped", "no such item")]


def test_a_failed_episode_is_queued_again_when_its_enclosure_moves(settings, sessions, cast):
    root, server = cast
    fetch_feed(settings, sessions, server)
    transcribe_pending(settings, sessions, transcriber=FakeTranscriber())
    (root / "feed.xml").write_text(podcast("Reworded.").replace("missing.mp3", "c-fixed.mp3"))
    shutil.copy(ASR_DATA / "short.wav", root / "audio" / "c-fixed.mp3")
    fetch_feed(settings, sessions, server)
    assert by_guid(sessions)["c"].transcript_status == "queued"
    report = transcribe_pending(settings, sessions, transcriber=FakeTranscriber())
    assert [(e.title, e.status) for e in report.episodes] == [("Audio missing", "asr")]


def test_audio_that_is_not_audio_fails_with_the_reason_and_loses_nothing(settings, sessions, cast):
    root, server = cast
    (root / "audio" / "a.mp3").write_text("<html>moved</html>")
    fetch_feed(settings, sessions, server)
    transcribe_pending(settings, sessions, transcriber=FakeTranscriber())
    a = by_guid(sessions)["a"]
    assert a.transcript_status == "failed" and "cannot" in a.transcript_error
    assert a.text.startswith("Show notes.") and a.audio_url.endswith("/audio/a.mp3")
    with sessions() as session:
        assert session.scalars(select(TranscriptSegment).where(TranscriptSegment.item_id == a.id)).all() == []


@pytest.mark.slow
def test_the_real_model_through_the_stage_and_the_task_entry_point(tmp_path, sqlite_url, cast):
    pytest.importorskip("faster_whisper")
    from store.db import open_database

    _, server = cast
    settings = make_settings(tmp_path, sqlite_url, asr_model="tiny.en", asr_threads=2)
    sessions = open_database(settings.db_url)
    fetch_feed(settings, sessions, server)
    a_id = by_guid(sessions)["a"].id
    assert transcribe_ids(settings, sessions, [a_id]) == [a_id]
    a = by_guid(sessions)["a"]
    assert a.transcript_model == "faster-whisper/whisper-tiny.en/int8"
    assert "brussels" in a.text.lower() and "summit" in a.text.lower()


# --- resumable download ------------------------------------------------------------------------

AUDIO = bytes(range(256)) * 4000  # 1 MB
ETAG = '"v1"'


def ranged_route(log: list[dict], drop_first_at: int | None = None, etag: str = ETAG):
    def handle(h) -> None:
        log.append({"range": h.headers.get("Range"), "if_range": h.headers.get("If-Range"),
                    "accept_encoding": h.headers.get("Accept-Encoding")})
        start = 0
        rng = h.headers.get("Range")
        if rng and h.headers.get("If-Range") == etag:
            start = int(rng.split("=")[1].split("-")[0])
        body = AUDIO[start:]
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "audio/mpeg")
        h.send_header("ETag", etag)
        h.send_header("Content-Length", str(len(body)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(AUDIO) - 1}/{len(AUDIO)}")
        h.end_headers()
        if drop_first_at is not None and len(log) == 1:
            h.wfile.write(body[:drop_first_at])  # then the connection drops mid-body
            h.close_connection = True
            return
        h.wfile.write(body)

    return handle


def fetch_to(settings, url, dest, **kw):
    async def go():
        async with Fetcher(settings) as fetcher:
            return await download(fetcher, url, dest, max_bytes=kw.pop("max_bytes", 10_000_000), **kw)

    return asyncio.run(go())


def test_a_dropped_download_resumes_with_range_and_if_range(tmp_path, sqlite_url):
    log: list[dict] = []
    with LocalServer(None, routes={"/ep.mp3": ranged_route(log, drop_first_at=300_000)}) as server:
        got = fetch_to(make_settings(tmp_path, sqlite_url), server.url("/ep.mp3"), tmp_path / "ep.audio")
    assert got.error is None and got.attempts == 2 and got.resumed_from == 300_000
    assert hashlib.sha256((tmp_path / "ep.audio").read_bytes()).digest() == hashlib.sha256(AUDIO).digest()
    assert log[0]["range"] is None and log[0]["accept_encoding"] == "identity"
    assert log[1] == {"range": "bytes=300000-", "if_range": ETAG, "accept_encoding": "identity"}
    assert not list(tmp_path.glob("*.part*"))


def test_a_file_changed_on_the_server_is_fetched_again_not_spliced(tmp_path, sqlite_url):
    dest = tmp_path / "ep.audio"
    (tmp_path / "ep.audio.part").write_bytes(b"old version " * 1000)
    (tmp_path / "ep.audio.part.json").write_text('{"etag": "\\"v0\\"", "last_modified": null}')
    log: list[dict] = []
    with LocalServer(None, routes={"/ep.mp3": ranged_route(log)}) as server:
        got = fetch_to(make_settings(tmp_path, sqlite_url), server.url("/ep.mp3"), dest)
    assert got.error is None and got.resumed_from == 0 and log[0]["if_range"] == '"v0"'
    assert dest.read_bytes() == AUDIO


def test_an_enclosure_over_the_cap_is_refused_and_nothing_is_kept(tmp_path, sqlite_url):
    with LocalServer(None, routes={"/ep.mp3": ranged_route([])}) as server:
        got = fetch_to(make_settings(tmp_path, sqlite_url), server.url("/ep.mp3"), tmp_path / "ep.audio",
                       max_bytes=100_000)
    assert got.path is None and "cap" in got.error and got.attempts == 1
    assert not (tmp_path / "ep.audio").exists()


def test_the_ssrf_guard_applies_to_enclosures(tmp_path, sqlite_url):
    with LocalServer(None, routes={"/ep.mp3": ranged_route([])}) as server:
        settings = make_settings(tmp_path, sqlite_url, allow_private_addresses=False)
        got = fetch_to(settings, server.url("/ep.mp3"), tmp_path / "ep.audio")
    assert got.path is None and got.attempts == 1 and got.error.startswith("refused 127.0.0.1")


# --- the command -------------------------------------------------------------------------------


def test_briefcast_transcribe_file_prints_timestamps_and_text(tmp_path):
    pytest.importorskip("faster_whisper")
    from tests.test_cli import briefcast

    done = briefcast(tmp_path, "transcribe", "--file", str(ASR_DATA / "short.m4a"), "--model", "tiny.en",
                     HF_HUB_OFFLINE="1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("[00:00:00.0 -> 00:00:0") and "Brussels" in done.stdout
    missing = briefcast(tmp_path, "transcribe", "--file", str(tmp_path / "nope.mp3"), "--model", "tiny.en")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_briefcast_transcribe_queued_episodes_reports_each(tmp_path, cast):
    from tests.test_cli import briefcast

    _, server = cast
    env = {"BRIEFCAST_ALLOW_PRIVATE_ADDRESSES": "1", "BRIEFCAST_ASR_MODEL": "fake"}
    assert briefcast(tmp_path, "sources", "add", server.url("/feed.xml"), "--kind", "podcast", **env).returncode == 0
    assert briefcast(tmp_path, "fetch", **env).returncode == 0
    done = briefcast(tmp_path, "transcribe", **env)
    assert done.returncode == 1  # one episode failed: scripts can tell
    assert "1 transcribed, 1 failed, 0 skipped (fake-bursts)" in done.stdout
    assert "HTTP 404" in done.stdout and "Audio only" in done.stdout
