"""Transcript choice and parsing, on the namespace's examples and real Whisper output."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ingest.transcripts import (
    TranscriptError,
    choose_transcript,
    clock_to_seconds,
    decode_transcript,
    parse_html,
    parse_json,
    parse_srt,
    parse_text,
    parse_transcript,
    parse_vtt,
    split_speaker_prefix,
    transcript_format,
)
from store.caps import MAX_SEGMENT_CHARS
from store.entry import Segment, TranscriptRef

# ---------------------------------------------------------------------------------------------
# Corpus lookup (to move into conftest.py)


def corpus_root() -> Path:
    configured = os.environ.get("BRIEFCAST_CORPUS")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "corpus"


def corpus_path(*parts: str) -> Path:
    """A file or folder of the shared corpus, or skip the test with the reason."""
    path = corpus_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/corpus not found: {path} is missing (set BRIEFCAST_CORPUS to the corpus folder)")
    return path


def corpus_files(*patterns: str) -> list:
    """Parameters for each corpus file matching the globs, or one skipped parameter saying why."""
    root = corpus_root()
    files = sorted({path for pattern in patterns for path in root.glob(pattern)}) if root.is_dir() else []
    if files:
        return [pytest.param(path, id=path.name) for path in files]
    reason = f"../shared/corpus not found: no {', '.join(patterns)} under {root} (set BRIEFCAST_CORPUS)"
    return [pytest.param(None, id="corpus-missing", marks=pytest.mark.skip(reason=reason))]


NAMESPACE_EXAMPLES = ("podcasts", "podcast-namespace", "transcripts")
WHISPER = "podcasts/transcripts-twiml-whisper"


def words(segments: list[Segment]) -> int:
    return sum(len(segment.text.split()) for segment in segments)


def assert_well_timed(segments: list[Segment]) -> None:
    assert all(s.start is not None and s.end is not None and s.start <= s.end for s in segments)
    assert all(a.start <= b.start for a, b in zip(segments, segments[1:])), "starts go backwards"


def cue_count(path: Path) -> int:
    return sum("-->" in line for line in path.read_text(encoding="utf-8-sig").splitlines())


# ---------------------------------------------------------------------------------------------
# The namespace's example transcripts (one Buzzsprout episode in SRT and HTML, another in VTT)


def test_srt_example_names_speakers_from_prefixes():
    path = corpus_path(*NAMESPACE_EXAMPLES, "example.srt")
    segments = parse_transcript(path.read_bytes(), "srt")

    assert len(segments) == cue_count(path) == 222
    assert segments[0] == Segment("When you first get started in podcasting, it's", 0.179, 2.399, "Travis")
    assert {s.speaker for s in segments} == {"Travis", "Sarah", "Gilon"}
    assert not any(re.match(r"(Travis|Sarah|Gilon):", s.text) for s in segments), "prefix left in text"
    assert_well_timed(segments)


def test_vtt_example_takes_speakers_from_voice_spans():
    segments = parse_transcript(corpus_path(*NAMESPACE_EXAMPLES, "example.vtt").read_bytes(), "vtt")

    assert [s.speaker for s in segments] == ["Sarah"] * 5 + ["Gillian"] * 2
    assert segments[2].start == 6.09  # start_in_seconds would say 6
    assert "Podcasting Q&A," in segments[2].text  # &amp; unescaped
    assert segments[-1].end == 25.35
    assert not any("<" in s.text for s in segments)
    assert_well_timed(segments)


def test_json_example_merges_word_segments_into_sentences():
    segments = parse_transcript(corpus_path(*NAMESPACE_EXAMPLES, "example.json").read_bytes(), "json")

    assert segments == [
        Segment("I am your father.", 0.5, 2.5, "Darth Vader"),
        Segment("Nooooo", 2.75, 3.0, "Luke"),
    ]


def test_html_example_reads_cite_time_and_paragraphs():
    path = corpus_path(*NAMESPACE_EXAMPLES, "example.html")
    segments = parse_transcript(path.read_bytes(), "html")

    assert len(segments) == path.read_text().count("<cite>") == 10
    assert [s.start for s in segments[:3]] == [0.0, 53.0, 102.0]
    assert segments[0].speaker == "Travis" and segments[1].speaker == "Sarah"
    assert segments[0].text.startswith("When you first get started in podcasting, it's")  # &#39; unescaped
    assert all(s.end is None for s in segments)  # HTML gives start times only
    assert all(a.start < b.start for a, b in zip(segments, segments[1:]))


def test_html_and_srt_examples_agree_on_who_speaks_when():
    html = parse_transcript(corpus_path(*NAMESPACE_EXAMPLES, "example.html").read_bytes(), "html")
    srt = parse_transcript(corpus_path(*NAMESPACE_EXAMPLES, "example.srt").read_bytes(), "srt")
    # The SRT names a speaker on the cue where a monologue starts, the HTML in a <cite>.
    turns = [s for previous, s in zip([None, *srt], srt) if previous is None or s.speaker != previous.speaker]

    assert [s.speaker for s in turns] == [s.speaker for s in html]
    for cue, paragraph in zip(turns, html):
        assert abs(cue.start - paragraph.start) < 1.0, (cue, paragraph.start)
    assert abs(words(html) - words(srt)) / words(srt) < 0.02


# ---------------------------------------------------------------------------------------------
# Whisper output for the TWIML AI Podcast: VTT with MM:SS.mmm cues, SRT, one-segment-a-line text


@pytest.mark.parametrize("path", corpus_files(f"{WHISPER}/**/*.vtt"))
def test_every_whisper_vtt_parses(path):
    segments = parse_transcript(path.read_bytes(), "vtt")

    assert len(segments) == cue_count(path)
    assert_well_timed(segments)
    assert all(s.speaker is None for s in segments)
    assert segments[-1].end > 30 * 60  # the episodes run 36 min to 2 h


@pytest.mark.parametrize("path", corpus_files(f"{WHISPER}/**/*.srt"))
def test_every_whisper_srt_parses(path):
    segments = parse_transcript(path.read_bytes(), "srt")

    assert len(segments) == cue_count(path)
    assert_well_timed(segments)
    # Whisper's sentences contain colons ("...the thing is: ...") but never name a speaker.
    assert all(s.speaker is None for s in segments)


@pytest.mark.parametrize("srt_path", corpus_files(f"{WHISPER}/**/*.srt"))
def test_whisper_vtt_and_srt_of_an_episode_agree(srt_path):
    vtt = parse_transcript(srt_path.with_suffix(".vtt").read_bytes(), "vtt")
    srt = parse_transcript(srt_path.read_bytes(), "srt")

    assert abs(vtt[-1].end - srt[-1].end) < 1.0  # the no-hours VTT cues are read as minutes
    assert abs(words(vtt) - words(srt)) <= 0.02 * words(srt)
    # Cue by cue too: the hour boundary (MM:SS.mmm turning into H:MM:SS.mmm) must not shift times.
    assert [round(s.start, 3) for s in vtt] == [round(s.start, 3) for s in srt]


@pytest.mark.parametrize("txt_path", corpus_files(f"{WHISPER}/episodes/*.txt", f"{WHISPER}/*/*-whisper-*.txt"))
def test_whisper_text_matches_its_vtt(txt_path):
    text = parse_transcript(txt_path.read_bytes(), "text")
    vtt = parse_transcript(txt_path.with_suffix(".vtt").read_bytes(), "vtt")

    assert all(s.start is None and s.end is None for s in text)
    assert abs(words(text) - words(vtt)) <= 0.02 * words(vtt)


def test_hour_field_is_optional_in_vtt_cues():
    path = corpus_path(WHISPER, "episodes", "twiml-0016.vtt")
    raw = path.read_text(encoding="utf-8")
    assert "\n59:" in raw and "\n01:00:" in raw  # the file itself switches format at one hour
    segments = parse_vtt(raw)

    last_short = max((s for s in segments if s.start < 3600), key=lambda s: s.start)
    assert 3540 < last_short.start < 3600
    assert segments[0].start == 0.0 and segments[0].end == 17.04


# ---------------------------------------------------------------------------------------------
# VTT edge cases


def test_vtt_cue_without_hours_and_minutes_past_59():
    segments = parse_vtt("WEBVTT\n\n01:02.500 --> 01:04.250\nfirst\n\n75:00.000 --> 75:01.5\nsecond\n")
    assert [(s.start, s.end) for s in segments] == [(62.5, 64.25), (4500.0, 4501.5)]


def test_vtt_tolerates_bom_crlf_missing_header_and_comma_decimals():
    data = "\ufeff00:00:01,000 --> 00:00:02,000\r\n<v Ann>Hello\r\n\r\n".encode("utf-8")
    assert parse_transcript(data, "vtt") == [Segment("Hello", 1.0, 2.0, "Ann")]


def test_vtt_voice_spans_classes_notes_and_tags():
    text = (
        "WEBVTT - podcast\n\nNOTE made by hand\n\n"
        "intro\n00:00:00.000 --> 00:00:01.000 align:start\n<v.loud Tom Jones>Hi <i>there</i> &lt;3</v>\n\n"
        "00:00:01.000 --> 00:00:02.000\nstill Tom\n\n"
        "00:00:02.000 --> 00:00:03.000\n<v Ann>Yes\n<v Bob>No\n\n"
        "00:00:03.000 --> 00:00:04.000\n<b> </b>\n"
    )
    assert parse_vtt(text) == [
        Segment("Hi there <3", 0.0, 1.0, "Tom Jones"),
        Segment("still Tom", 1.0, 2.0, "Tom Jones"),  # the spec names a voice only when it changes
        Segment("Yes", 2.0, 3.0, "Ann"),
        Segment("No", 2.0, 3.0, "Bob"),
    ]


# ---------------------------------------------------------------------------------------------
# SRT edge cases


def test_srt_with_bom_stray_blank_lines_and_formatting_tags():
    data = (
        "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Speaker 2:</i> <font color=\"#ff0\">Hello</font>\r\n\r\n\r\n"
        "2\r\n00:00:02,500 --> 00:00:04,000\r\nfirst line\r\n\r\nsecond <b>line</b>\r\n\r\n"
        "3\r\n00:00:04,000 --> 00:00:05,000\r\nWell, here's the thing: no speaker\r\n"
    ).encode("utf-8")
    assert parse_transcript(data, "srt") == [
        Segment("Hello", 1.0, 2.5, "Speaker 2"),
        Segment("first line second line", 2.5, 4.0, "Speaker 2"),
        Segment("Well, here's the thing: no speaker", 4.0, 5.0, "Speaker 2"),
    ]


def test_srt_skips_garbage_and_accepts_missing_hours():
    text = "Exported by SomeTool v2\n\n1\n00:01,000 --> 00:02,000\nOne\n\n2\n00:00:03,000 --> 00:00:04,000\nTwo\n"
    assert [(s.text, s.start) for s in parse_srt(text)] == [("One", 1.0), ("Two", 3.0)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Travis: When you first", ("Travis", "When you first")),
        ("Dr. Jane Smith: hello", ("Dr. Jane Smith", "hello")),
        ("Alban : spaced", ("Alban", "spaced")),
        ("Zoë: accented", ("Zoë", "accented")),
        ("Well, here's the thing: no", (None, "Well, here's the thing: no")),
        ("the answer: lower case", (None, "the answer: lower case")),
        ("One Two Three Four: too long", (None, "One Two Three Four: too long")),
        ("10:30 is the time", (None, "10:30 is the time")),
        ("Name:no space after colon", (None, "Name:no space after colon")),
    ],
)
def test_speaker_prefix(line, expected):
    assert split_speaker_prefix(line) == expected


# ---------------------------------------------------------------------------------------------
# JSON edge cases


def _word(body, start, speaker="A"):
    return {"speaker": speaker, "startTime": start, "endTime": start + 0.2, "body": body}


def test_json_splits_on_gaps_speakers_and_long_runs():
    import json

    segments = [_word("so", 0), _word("then", 0.5), _word("later", 5.0), _word("reply", 5.5, "B")]
    segments += [_word(f"w{i}", 10 + i * 0.3) for i in range(45)]
    merged = parse_json(json.dumps({"version": "1.0.0", "segments": segments}))

    assert [(s.text, s.speaker) for s in merged[:3]] == [("so then", "A"), ("later", "A"), ("reply", "B")]
    assert [len(s.text.split()) for s in merged[3:]] == [40, 5]
    assert merged[3].start == 10 and merged[3].end == pytest.approx(10 + 39 * 0.3 + 0.2)


def test_json_attaches_punctuation_tokens_and_reads_string_times():
    text = (
        '{"segments": [{"startTime": "0.5", "endTime": "1", "body": "Hello"},'
        ' {"startTime": "00:00:01.000", "body": ","},'
        ' {"startTime": 1.2, "body": " world\\n"}, {"startTime": 1.4, "body": "!"},'
        ' {"startTime": 2, "body": "  "}, {"body": 7}, "junk"]}'
    )
    assert parse_json(text) == [Segment("Hello, world!", 0.5, None, None)]


def test_json_accepts_a_bare_list_of_segments():
    assert parse_json('[{"speaker": "A", "startTime": 1, "endTime": 2, "body": "Hi."}]') == [
        Segment("Hi.", 1.0, 2.0, "A")
    ]


# ---------------------------------------------------------------------------------------------
# HTML and text edge cases


def test_html_times_with_hours_and_an_xml_declaration():
    text = (
        '<?xml version="1.0" encoding="utf-8"?><html><body>'
        "<cite>Kevin:</cite><time>1:02:03</time><p>We have an\n update</p>"
        "<p>More from Kevin</p><cite>Alban :</cite><time>1:02:09</time><p>Cool &amp; fine</p></body></html>"
    )
    assert parse_html(text) == [
        Segment("We have an update", 3723.0, None, "Kevin"),
        Segment("More from Kevin", None, None, "Kevin"),
        Segment("Cool & fine", 3729.0, None, "Alban"),
    ]


def test_html_without_cite_or_time_gives_one_segment_per_paragraph():
    html = "<div><p>One.</p><p> </p><p>Two <b>bold</b>.</p></div>"
    assert parse_html(html) == [Segment("One."), Segment("Two bold.")]


def test_html_without_paragraphs_falls_back_to_lines():
    assert parse_html("<body>First line<br>\nSecond line\n</body>") == [Segment("First line"), Segment("Second line")]


def test_text_lines_paragraphs_and_speakers():
    assert parse_text("Host: Welcome back.\n\n  \nGuest: Thanks\nfor having me.\n\nAnd more.") == [
        Segment("Welcome back.", speaker="Host"),
        Segment("Thanks for having me.", speaker="Guest"),
        Segment("And more.", speaker="Guest"),
    ]
    assert parse_text("one\n\t\ntwo") == [Segment("one"), Segment("two")]
    assert parse_text("a\nb\r\nc\rd") == [Segment(t) for t in "abcd"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0:00", 0.0),
        ("1:02", 62.0),
        ("1:02:03", 3723.0),
        ("00:01:02,500", 62.5),
        ("62:03.25", 3723.25),
        ("12.5", 12.5),
    ],
)
def test_clock_to_seconds(value, seconds):
    assert clock_to_seconds(value) == seconds


def test_clock_to_seconds_rejects_non_times():
    assert clock_to_seconds("soon") is None and clock_to_seconds("1:2:3:4") is None


# ---------------------------------------------------------------------------------------------
# Decoding


@pytest.mark.parametrize(
    ("data", "hint", "expected"),
    [
        ("café".encode("utf-8-sig"), "latin-1", "café"),  # the BOM outranks the hint
        ("café".encode("utf-16"), None, "café"),
        ("café".encode("utf-32"), None, "café"),
        ("café".encode("latin-1"), "iso-8859-1", "café"),
        ("привет".encode("koi8-r"), "koi8-r", "привет"),
        ("café".encode("utf-8"), None, "café"),
        ("café “quoted”".encode("cp1252"), None, "café “quoted”"),  # not UTF-8: cp1252
        ("café".encode("utf-8"), "no-such-codec", "café"),
        (b"\x81ok", None, "\ufffdok"),  # undefined in cp1252 too: replaced, never raised
    ],
)
def test_decode_transcript(data, hint, expected):
    assert decode_transcript(data, hint) == expected


def test_parse_transcript_uses_the_encoding_hint():
    data = "00:00:00.000 --> 00:00:01.000\nGrüße\n".encode("latin-1")
    assert parse_transcript(data, "vtt", encoding_hint="latin-1")[0].text == "Grüße"


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"just some words", "vtt", "vtt: no 'WEBVTT' header"),
        (b"WEBVTT\n\nnothing timed here\n", "vtt", "vtt: no cues found"),
        (b"1\nnot a time\nhello\n", "srt", "srt: no cues found"),
        (b"{not json", "json", "json: not valid JSON"),
        (b'{"version": "1.0.0"}', "json", 'json: expected an object with a "segments" list'),
        (b'"a string"', "json", "json: expected"),
        (b" \n\t", "html", "html transcript is empty"),
        (b"", "text", "text transcript is empty"),
        (b"data", "pdf", "unsupported transcript format 'pdf'"),
        (b"data", "unknown", "unsupported transcript format 'unknown'"),
    ],
)
def test_unparseable_input_raises_transcript_error(data, fmt, message):
    with pytest.raises(TranscriptError, match=re.escape(message)) as caught:
        parse_transcript(data, fmt)
    assert isinstance(caught.value, ValueError)


def test_parsers_given_str_raise_transcript_error_too():
    with pytest.raises(TranscriptError, match="html: cannot parse"):
        parse_html("")


# ---------------------------------------------------------------------------------------------
# Format detection and choice


@pytest.mark.parametrize(
    ("mime", "url", "fmt"),
    [
        ("text/vtt", "", "vtt"),
        ("TEXT/VTT; charset=utf-8", "", "vtt"),
        ("application/x-subrip", "", "srt"),
        ("application/srt", "", "srt"),
        ("text/srt", "", "srt"),
        ("application/x-srt", "", "srt"),
        ("application/json", "", "json"),
        ("text/html", "", "html"),
        ("text/plain", "https://x.example/t.txt", "text"),
        ("text/plain", "https://x.example/t.srt", "srt"),  # mislabelled captions: trust the extension
        ("", "https://x.example/ep1/transcript.VTT?token=1", "vtt"),
        ("application/octet-stream", "https://x.example/t.json", "json"),
        ("application/octet-stream", "https://x.example/t.htm", "html"),
        ("application/octet-stream", "https://x.example/transcript", "unknown"),
        ("", "https://x.example.vtt/", "unknown"),  # a dot in the host is not an extension
        ("application/pdf", "https://x.example/t.vtt", "unknown"),
    ],
)
def test_transcript_format(mime, url, fmt):
    assert transcript_format(mime, url) == fmt


def ref(type_: str, language: str | None = None, rel: str | None = None, url: str = "") -> TranscriptRef:
    url = url or f"https://x.example/{type_}/{language}/{rel}"
    return TranscriptRef(url=url, type=type_, language=language, rel=rel)


def test_choose_transcript_ranks_formats():
    text, html, srt = ref("text/plain"), ref("text/html"), ref("application/srt")
    vtt, json_ = ref("text/vtt"), ref("application/json")
    assert choose_transcript([text, html, srt, vtt], "en") is vtt
    assert choose_transcript([text, html, srt], "en") is srt
    assert choose_transcript([text, html], None) is html
    assert choose_transcript([json_, vtt], "en") is json_  # equal rank: the first in the feed
    assert choose_transcript([vtt, json_], "en") is vtt


def test_choose_transcript_prefers_the_language_over_the_format():
    chinese_json, english_vtt = ref("application/json", "zh-CN"), ref("text/vtt", "EN-us")
    assert choose_transcript([chinese_json, english_vtt], "en") is english_vtt
    assert choose_transcript([chinese_json, english_vtt], "zh") is chinese_json
    assert choose_transcript([chinese_json, english_vtt], None) is chinese_json
    # No language on the ref means the channel's language, so it matches.
    untagged_text, spanish_vtt = ref("text/plain"), ref("text/vtt", "es")
    assert choose_transcript([spanish_vtt, untagged_text], "en_GB") is untagged_text
    # Nothing in the wanted language: still the best of the rest.
    assert choose_transcript([ref("text/plain", "fr"), spanish_vtt], "en") is spanish_vtt


def test_choose_transcript_breaks_ties_with_rel_captions():
    plain, captions = ref("text/vtt"), ref("text/vtt", rel="captions")
    assert choose_transcript([plain, captions], "en") is captions
    assert choose_transcript([ref("text/html"), ref("text/plain", rel="captions")], "en").type == "text/html"


def test_choose_transcript_never_picks_unknown_formats():
    assert choose_transcript([ref("application/pdf"), ref("application/octet-stream")], "en") is None
    assert choose_transcript([], "en") is None
    octet = ref("application/octet-stream", url="https://x.example/t.srt")
    assert choose_transcript([ref("application/pdf"), octet], "en") is octet


# ---------------------------------------------------------------------------------------------
# Caps (issue 11): a runaway cue, a transcript on one line, and a real 3-hour episode


RUNAWAY_WORDS = [f"w{n}" for n in range(150_000)]  # about 1 MB in one cue


def test_a_runaway_vtt_cue_is_split_into_segments_that_keep_its_times():
    data = ("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Ana>Hello.\n\n"
            "00:00:04.000 --> 00:00:09.500\n<v Ana>" + " ".join(RUNAWAY_WORDS) + "\n").encode()
    segments = parse_transcript(data, "vtt")
    assert len(segments) > 100
    assert all(len(s.text) <= MAX_SEGMENT_CHARS for s in segments)
    assert all((s.start, s.end, s.speaker) == (4.0, 9.5, "Ana") for s in segments[1:])
    assert " ".join(s.text for s in segments[1:]).split() == RUNAWAY_WORDS


@pytest.mark.parametrize("fmt", ["text", "srt", "json"])
def test_a_transcript_on_one_line_is_split_not_lost(fmt):
    body = " ".join(RUNAWAY_WORDS[:40_000])
    data = {
        "text": body,
        "srt": f"1\n00:00:00,000 --> 01:00:00,000\n{body}\n",
        "json": '{"segments": [{"startTime": 0, "endTime": 3600, "body": "%s"}]}' % body,
    }[fmt].encode()
    segments = parse_transcript(data, fmt)
    assert len(segments) > 40 and all(len(s.text) <= MAX_SEGMENT_CHARS for s in segments)
    assert " ".join(s.text for s in segments).split() == RUNAWAY_WORDS[:40_000]


def test_a_real_three_hour_episode_fits_every_cap():
    """Two real episodes back to back (1 h 57 min + 1 h 7 min of Whisper cues): nothing is cut."""
    from embed.passages import MAX_PASSAGES, split_item
    from store.caps import MAX_ITEM_CHARS, MAX_ITEM_WORDS, MAX_SEGMENTS, cap_item
    from store.entry import transcript_text

    first = parse_transcript(corpus_path(WHISPER, "episodes", "twiml-0544.vtt").read_bytes(), "vtt")
    second = parse_transcript(corpus_path(WHISPER, "episodes", "twiml-0235.vtt").read_bytes(), "vtt")
    offset = first[-1].end
    segments = first + [Segment(s.text, s.start + offset, s.end + offset, s.speaker) for s in second]
    assert segments[-1].end > 3 * 3600
    capped = cap_item(transcript_text(segments), segments)
    assert capped.reason is None and capped.segments == segments and capped.text == transcript_text(segments)
    passages = split_item("Three hours", capped.text, capped.segments)
    # With room to spare: the caps sit at about three times what three hours need.
    assert len(segments) * 3 < MAX_SEGMENTS and len(capped.text) * 2.5 < MAX_ITEM_CHARS
    assert len(capped.text.split()) * 2.5 < MAX_ITEM_WORDS and len(passages) * 3 < MAX_PASSAGES
