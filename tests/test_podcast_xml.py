"""All `<podcast:transcript>` tags per item, on real Podcasting 2.0 feeds and hand-made edge cases."""

from __future__ import annotations

import csv
import time

import feedparser
import pytest

from ingest.podcast_xml import item_key, transcripts_by_item
from ingest.transcripts import choose_transcript, transcript_format
from store.entry import TranscriptRef
from tests.test_transcripts import corpus_path  # moves to conftest.py later

NEW_NS = "https://podcastindex.org/namespace/1.0"
OLD_NS = "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md"


def tag_count(refs_by_item: dict[str, list[TranscriptRef]]) -> int:
    return sum(len(refs) for refs in refs_by_item.values())


# ---------------------------------------------------------------------------------------------
# Real feeds


def test_namespace_example_feed():
    result = transcripts_by_item(corpus_path("podcasts", "podcast-namespace", "example.xml").read_bytes())

    assert list(result) == ["https://example.com/ep0003", "https://example.com/ep0002", "https://example.com/ep0001"]
    assert result["https://example.com/ep0003"] == [
        # No language attribute: the channel's <language>en-US</language>.
        TranscriptRef("https://example.com/ep3/transcript.txt", "text/plain", "en-US", None),
        TranscriptRef("https://example.com/episode1/transcript.vtt", "text/vtt", "es", "captions"),
    ]
    assert tag_count(result) == 4


def manifest_rows() -> list:
    """(path, expected tag count) for each feed in partytime's MANIFEST.tsv ("transcripts=N" note, else 0)."""
    try:
        manifest = corpus_path("podcasts", "partytime", "MANIFEST.tsv")
    except pytest.skip.Exception as skipped:
        return [pytest.param(None, 0, id="corpus-missing", marks=pytest.mark.skip(reason=str(skipped)))]
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [pytest.param(manifest.parent / row["path"], _noted_count(row["notes"]), id=row["path"]) for row in rows]


def _noted_count(notes: str) -> int:
    for note in notes.split():
        if note.startswith("transcripts="):
            return int(note.removeprefix("transcripts="))
    return 0


@pytest.mark.parametrize(("path", "expected"), manifest_rows())
def test_tag_counts_match_the_manifest(path, expected):
    assert tag_count(transcripts_by_item(path.read_bytes())) == expected


def test_pc20_feed_uses_the_old_namespace_and_the_srt_alias():
    data = corpus_path("podcasts", "partytime", "pc20rss.xml").read_bytes()
    assert OLD_NS.encode() in data and NEW_NS.encode() not in data
    result = transcripts_by_item(data)

    assert len(result) == tag_count(result) == 47
    # No language attribute: the channel's <language>en</language>.
    assert result["PC2057"] == [
        TranscriptRef("https://mp3s.nashownotes.com/PC20-57-Captions.srt", "application/srt", "en")
    ]
    assert {transcript_format(r.type, r.url) for refs in result.values() for r in refs} == {"srt"}


def test_themnshow_keeps_both_transcripts_of_an_item():
    result = transcripts_by_item(corpus_path("podcasts", "partytime", "real-world", "themnshow.xml").read_bytes())
    doubles = {key: refs for key, refs in result.items() if len(refs) > 1}

    assert len(result) == 54 and tag_count(result) == 56
    assert set(doubles) == {"fe49b65b-9026-4f0d-9758-8b4b746bbb88", "18ac6989-09f4-4642-a0f3-fb002d40f40c"}
    for refs in doubles.values():
        assert [r.type for r in refs] == ["application/x-subrip", "text/vtt"]  # document order
        assert all(r.language == "EN" and r.rel == "captions" for r in refs)
        assert choose_transcript(refs, "en") is refs[1]  # VTT beats SRT


@pytest.mark.parametrize(
    "name", ["pc20rss.xml", "example.xml", "unlocked.xml", "real-world/themnshow.xml", "real-world/no-agenda.xml"]
)
def test_keys_join_to_feedparser_entries(name):
    """The feed parser looks items up with item_key on feedparser's fields; every key must be found."""
    data = corpus_path("podcasts", "partytime", *name.split("/")).read_bytes()
    parsed = feedparser.parse(data)
    result = transcripts_by_item(data)
    entries_by_key = {
        item_key(entry.get("id"), _first_enclosure(entry), entry.get("link"), index): entry
        for index, entry in enumerate(parsed.entries)
    }

    assert result and set(result) <= set(entries_by_key)
    for key, refs in result.items():
        kept_by_feedparser = entries_by_key[key].get("podcast_transcript", {}).get("url")
        assert kept_by_feedparser in [r.url for r in refs]


def _first_enclosure(entry) -> str | None:
    enclosures = entry.get("enclosures") or []
    return enclosures[0].get("href") if enclosures else None


# ---------------------------------------------------------------------------------------------
# Hand-made feeds

THREE_TAGS = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:podcast="{NEW_NS}" xmlns:pi="{OLD_NS}">
  <channel>
    <language>de</language>
    <item>
      <guid isPermaLink="false"> ep-1 </guid>
      <podcast:transcript url="https://x.example/1.vtt" type="text/vtt" rel="captions"/>
      <pi:transcript url="https://x.example/1.srt" type="application/srt" language="en"/>
      <podcast:transcript type="text/plain"/>
      <podcast:transcript url=" https://x.example/1.json " type="application/json" language="fr"/>
    </item>
  </channel>
</rss>""".encode()


def test_all_tags_of_an_item_come_back_in_order_from_both_namespaces():
    assert transcripts_by_item(THREE_TAGS) == {
        "ep-1": [
            TranscriptRef("https://x.example/1.vtt", "text/vtt", "de", "captions"),
            TranscriptRef("https://x.example/1.srt", "application/srt", "en", None),
            # the tag without a url is skipped
            TranscriptRef("https://x.example/1.json", "application/json", "fr", None),
        ]
    }


def test_feedparser_alone_would_lose_tags():
    """Why this module exists; if feedparser ever keeps every tag, revisit it."""
    entry = feedparser.parse(THREE_TAGS).entries[0]
    transcripts = [value for key, value in entry.items() if key.endswith("_transcript")]
    assert len(transcripts) < 3


def test_key_fallbacks_guid_enclosure_link_index():
    feed = f"""<rss xmlns:podcast="{NEW_NS}"><channel>
      <item><enclosure url="https://x.example/a.mp3" type="audio/mpeg"/><link>https://x.example/a</link>
            <podcast:transcript url="https://x.example/a.vtt"/></item>
      <item><guid>   </guid><link> https://x.example/b </link>
            <podcast:transcript url="https://x.example/b.vtt"/></item>
      <item><title>no ids</title></item>
      <item><podcast:transcript url="https://x.example/d.vtt"/></item>
    </channel></rss>""".encode()
    assert list(transcripts_by_item(feed)) == ["https://x.example/a.mp3", "https://x.example/b", "#3"]


def test_items_sharing_a_guid_pool_their_tags():
    feed = f"""<rss xmlns:podcast="{NEW_NS}"><channel>
      <item><guid>same</guid><podcast:transcript url="https://x.example/1.vtt"/></item>
      <item><guid>same</guid><podcast:transcript url="https://x.example/2.vtt"/></item>
    </channel></rss>""".encode()
    urls = [r.url for r in transcripts_by_item(feed)["same"]]
    assert urls == ["https://x.example/1.vtt", "https://x.example/2.vtt"]


def test_atom_entries_are_keyed_by_id_and_inherit_xml_lang():
    feed = f"""<?xml version="1.0"?>
    <feed xmlns="http://www.w3.org/2005/Atom" xmlns:podcast="{NEW_NS}" xml:lang="en-GB">
      <entry><id>urn:uuid:1</id><link rel="enclosure" href="https://x.example/1.mp3"/>
        <podcast:transcript url="https://x.example/1.vtt" type="text/vtt"/></entry>
      <entry xml:lang="nl"><link href="https://x.example/2"/>
        <podcast:transcript url="https://x.example/2.vtt" type="text/vtt"/></entry>
    </feed>""".encode()
    assert transcripts_by_item(feed) == {
        "urn:uuid:1": [TranscriptRef("https://x.example/1.vtt", "text/vtt", "en-GB")],
        "https://x.example/2": [TranscriptRef("https://x.example/2.vtt", "text/vtt", "nl")],
    }


def test_rss_1_items_are_keyed_by_rdf_about():
    feed = f"""<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
        xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:podcast="{NEW_NS}">
      <channel rdf:about="https://x.example/"><dc:language>sv</dc:language></channel>
      <item rdf:about="https://x.example/1"><link>https://x.example/1</link>
        <podcast:transcript url="https://x.example/1.txt" type="text/plain"/></item>
    </rdf:RDF>""".encode()
    assert transcripts_by_item(feed) == {
        "https://x.example/1": [TranscriptRef("https://x.example/1.txt", "text/plain", "sv")]
    }


def test_broken_feeds_still_yield_their_tags():
    truncated = THREE_TAGS[: THREE_TAGS.index(b"<podcast:transcript type")]
    urls = [r.url for r in transcripts_by_item(truncated)["ep-1"]]
    assert urls == ["https://x.example/1.vtt", "https://x.example/1.srt"]

    undeclared_prefix = (
        b'<rss><channel><item><guid>g</guid><podcast:transcript url="u.vtt" type="text/vtt"/></item></channel></rss>'
    )
    assert transcripts_by_item(undeclared_prefix) == {"g": [TranscriptRef("u.vtt", "text/vtt")]}

    blank_line_first = b"\n\n  " + THREE_TAGS
    assert tag_count(transcripts_by_item(blank_line_first)) == 3


def test_other_namespaces_transcript_tags_are_ignored():
    feed = b"""<rss xmlns:other="https://other.example/ns"><channel><item><guid>g</guid>
      <other:transcript url="https://x.example/1.vtt"/>
      <transcript url="https://x.example/2.vtt"/>
    </item></channel></rss>"""
    assert transcripts_by_item(feed) == {}


def test_external_entities_are_not_resolved():
    feed = f"""<?xml version="1.0"?>
    <!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
    <rss xmlns:podcast="{NEW_NS}"><channel><item><guid>&xxe;</guid><link>https://x.example/1</link>
      <podcast:transcript url="https://x.example/1.vtt"/></item></channel></rss>""".encode()
    result = transcripts_by_item(feed)
    assert list(result) == ["&xxe;"]  # the reference stays as written; /etc/passwd is never read
    assert [r.url for r in result["&xxe;"]] == ["https://x.example/1.vtt"]


def test_entity_expansion_bombs_are_inert():
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    feed = f"""<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol0 "lol">{lol}]>
    <rss xmlns:podcast="{NEW_NS}"><channel><item><guid>&lol9;</guid><link>https://x.example/1</link>
      <podcast:transcript url="https://x.example/1.vtt"/></item></channel></rss>""".encode()
    started = time.monotonic()
    result = transcripts_by_item(feed)
    assert time.monotonic() - started < 2
    assert all(len(key) < 100 for key in result)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml at all",
        b"\x00\xff\xfe\x00garbage",
        b'{"version": "https://jsonfeed.org/version/1.1", "items": []}',
        b"<html><body><p>Not a feed</p></body></html>",
        "<rss/>",  # str instead of bytes: still no exception
    ],
    ids=["empty", "text", "binary", "json-feed", "html", "str"],
)
def test_non_feeds_give_an_empty_dict(data):
    assert transcripts_by_item(data) == {}


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("guid-1", "https://x.example/a.mp3", "https://x.example/a", 0), "guid-1"),
        ((" guid-1\n", None, None, 0), "guid-1"),
        ((None, "https://x.example/a.mp3", "https://x.example/a", 0), "https://x.example/a.mp3"),
        (("", "", "https://x.example/a", 0), "https://x.example/a"),
        ((None, None, None, 7), "#7"),
        (("  ", " ", None, 2), "#2"),
    ],
)
def test_item_key(args, key):
    assert item_key(*args) == key
