"""What one item may store, on SQLite and the real PostgreSQL, fetched from a loopback server
(issue 11, item 5): a runaway transcript cue, a transcript of too many cues, an article too long,
an ASR transcript too long. Each is stored capped, with the reason on the item's row and in
`briefcast items list`, and cut into passages of passage size."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.cli import app as cli
from embed.passages import MAX_PASSAGE_CHARS, MAX_WORDS, split_item
from ingest.localserver import LocalServer
from ingest.refresh import refresh
from ingest.text import word_count
from store import repo
from store.caps import MAX_ITEM_CHARS, MAX_SEGMENT_CHARS, MAX_SEGMENTS
from store.entry import Segment, content_hash
from store.models import Item, Source, TranscriptSegment

PODCAST_NS = "https://podcastindex.org/namespace/1.0"


def podcast_feed(transcript: str, mime: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:podcast="{PODCAST_NS}"><channel>'
            "<title>Long talks</title><item><title>The long one</title><guid>ep1</guid>"
            '<enclosure url="{{BASE_URL}}/ep1.mp3" type="audio/mpeg" length="1000"/>'
            f'<podcast:transcript url="{{{{BASE_URL}}}}/{transcript}" type="{mime}"/></item></channel></rss>')


def srt(cues: int) -> str:
    return "".join(f"{n + 1}\n{_clock(n * 2)} --> {_clock(n * 2 + 2)}\nCue number {n} says hello.\n\n" for n in range(cues))


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d},000"


def fetch_one(tmp_path, settings, sessions, files: dict[str, str], feed: str, kind: str = "podcast") -> Item:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for name, body in files.items():
        (site / name).write_text(body, encoding="utf-8")
    with LocalServer(site) as server:
        with sessions() as session, session.begin():
            repo.add_source(session, server.url(feed), kind=kind)
        report = refresh(settings, sessions)
    assert report.count("failed") == 0 and report.new_items == 1, report.as_json()
    with sessions() as session:
        item = session.scalars(select(Item)).one()
        item.segments  # loaded while the session is open
        return item


def listed(settings) -> dict:
    """The item as `briefcast items list --json` shows it."""
    env = {"BRIEFCAST_DATABASE_URL": settings.db_url, "BRIEFCAST_DATA_DIR": str(settings.data_dir)}
    result = CliRunner().invoke(cli, ["items", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    table = CliRunner().invoke(cli, ["items", "list"], env=env, terminal_width=200)
    assert table.exit_code == 0 and "capped" in table.output, table.output
    return row


def test_a_runaway_cue_is_stored_in_pieces_up_to_the_text_cap(tmp_path, settings, sessions):
    cue = " ".join(f"word{n}" for n in range(100_000))  # 690,000 characters in one cue
    vtt = f"WEBVTT\n\n00:00:00.000 --> 00:00:03.000\nHello.\n\n00:00:03.000 --> 00:00:08.000\n{cue}\n"
    item = fetch_one(tmp_path, settings, sessions, {"t.vtt": vtt, "feed.rss": podcast_feed("t.vtt", "text/vtt")},
                     "/feed.rss")
    assert item.transcript_status == "published" and item.text_source == "transcript"
    assert len(item.text) <= MAX_ITEM_CHARS < len(cue)
    assert all(len(s.text) <= MAX_SEGMENT_CHARS for s in item.segments)
    assert all((s.start, s.end) == (3.0, 8.0) for s in item.segments[1:])
    assert item.text == "\n".join(s.text for s in item.segments)
    assert item.content_hash == content_hash(item.title, item.text)
    assert item.text_capped.startswith(f"transcript cut at {MAX_ITEM_CHARS:,} characters per item")
    assert listed(settings)["capped"] == item.text_capped

    segments = [Segment(s.text, s.start, s.end, s.speaker) for s in item.segments]
    passages = split_item(item.title, item.text, segments)
    assert all(len(p.text) <= MAX_PASSAGE_CHARS and word_count(p.text) <= MAX_WORDS for p in passages)
    assert all((p.start, p.end) in ((0.0, 3.0), (0.0, 8.0), (3.0, 8.0)) for p in passages)
    assert sum((p.start, p.end) == (3.0, 8.0) for p in passages) > 100


def test_a_transcript_of_too_many_cues_keeps_the_first_ones(tmp_path, settings, sessions):
    cues = MAX_SEGMENTS + 5_000
    item = fetch_one(tmp_path, settings, sessions,
                     {"t.srt": srt(cues), "feed.rss": podcast_feed("t.srt", "application/x-subrip")}, "/feed.rss")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(TranscriptSegment)) == MAX_SEGMENTS
    assert item.segments[-1].text == f"Cue number {MAX_SEGMENTS - 1} says hello."
    assert item.text_capped == (f"transcript cut at {MAX_SEGMENTS:,} segments per item: kept {MAX_SEGMENTS:,} "
                                f"of {cues:,} segments, up to 11:06:40 of 13:53:20")


def test_an_article_too_long_is_stored_cut_with_the_reason(tmp_path, settings, sessions):
    paragraph = "Export controls on accelerators reshape how labs plan their training runs. " * 20
    body = "\n".join(f"<p>{paragraph}</p>" for _ in range(600))  # about 900,000 characters
    feed = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Long reads</title>'
            f"<item><title>The longest read</title><guid>a1</guid><description><![CDATA[{body}]]></description>"
            "</item></channel></rss>")
    item = fetch_one(tmp_path, settings, sessions, {"feed.rss": feed}, "/feed.rss", kind="feed")
    assert MAX_ITEM_CHARS - 2_000 < len(item.text) <= MAX_ITEM_CHARS
    assert item.text.endswith("runs.")  # cut between words
    assert item.content_hash == content_hash(item.title, item.text)
    assert item.text_capped.startswith(f"text cut at {MAX_ITEM_CHARS:,} characters per item: kept {len(item.text):,} of ")
    assert listed(settings)["capped"] == item.text_capped
    # The same feed again: the item is unchanged, not rewritten every fetch.
    with sessions() as session, session.begin():
        session.execute(Source.__table__.update().values(etag=None, last_modified=None))
    assert refresh(settings, sessions, force=True).sources[0].updated_items == 0


def test_an_asr_transcript_too_long_is_stored_capped(sessions):
    with sessions() as session, session.begin():
        source, _ = repo.add_source(session, "http://example.com/feed", kind="podcast")
        item = Item(source_id=source.id, stable_key="k", content_hash="", entry_hash="", kind="episode",
                    title="Hours", audio_url="http://example.com/a.mp3", transcript_status="queued")
        session.add(item)
        session.flush()
        heard = [Segment(f"Said {n}.", n * 2.0, n * 2.0 + 2) for n in range(MAX_SEGMENTS + 1)]
        repo.store_asr_transcript(session, item, heard, "fake")
    with sessions() as session:
        item = session.scalars(select(Item)).one()
        assert len(item.segments) == MAX_SEGMENTS and item.text_source == "asr"
        assert item.text_capped.startswith(f"transcript cut at {MAX_SEGMENTS:,} segments per item")


@pytest.mark.parametrize("size", [10, 5_000])
def test_an_item_within_the_caps_records_no_reason(tmp_path, settings, sessions, size):
    item = fetch_one(tmp_path, settings, sessions,
                     {"t.srt": srt(size), "feed.rss": podcast_feed("t.srt", "application/x-subrip")}, "/feed.rss")
    assert item.text_capped is None and len(item.segments) == size
    assert "capped" not in CliRunner().invoke(cli, ["items", "list"], env={"BRIEFCAST_DATABASE_URL": settings.db_url}).output
