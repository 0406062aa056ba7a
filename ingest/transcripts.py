"""Podcast transcripts (`<podcast:transcript>`): pick the best one, parse it into `Segment`s.

Formats are the four the Podcasting 2.0 namespace names (VTT, SRT, JSON, HTML) plus plain text.
Every parser returns `Segment`s with collapsed whitespace, no empty text and no text longer than
`store.caps.MAX_SEGMENT_CHARS`; a speaker, once named, carries over to the following cues, because
the spec names the speaker only when it changes (a `<v>` span, a "Name:" prefix, a `<cite>`).
"""

from __future__ import annotations

import codecs
import html
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import lxml.etree
import lxml.html
import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

from store.caps import split_long_segment
from store.entry import Segment, TranscriptRef

__all__ = [
    "TranscriptError",
    "choose_transcript",
    "clock_to_seconds",
    "decode_transcript",
    "parse_html",
    "parse_json",
    "parse_srt",
    "parse_text",
    "parse_transcript",
    "parse_vtt",
    "split_speaker_prefix",
    "transcript_format",
]


class TranscriptError(ValueError):
    """A transcript could not be parsed; the message says which format and what went wrong."""


# ---------------------------------------------------------------------------------------------
# Format detection and choice

_FORMAT_BY_MIME = {
    "text/vtt": "vtt",
    "text/webvtt": "vtt",
    "application/x-subrip": "srt",
    "application/srt": "srt",  # Buzzsprout's older documentation
    "application/x-srt": "srt",
    "text/srt": "srt",
    "text/x-srt": "srt",
    "text/x-subrip": "srt",
    "application/json": "json",
    "text/json": "json",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
}
_FORMAT_BY_EXTENSION = {
    ".vtt": "vtt",
    ".webvtt": "vtt",
    ".srt": "srt",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
}
_GENERIC_MIMES = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
_TIMED_FORMATS = {"vtt", "srt", "json"}
# JSON and VTT carry times and speakers; SRT times and maybe speakers; HTML coarse times; text none.
_FORMAT_RANK = {"json": 4, "vtt": 4, "srt": 3, "html": 2, "text": 1}


def transcript_format(mime: str, url: str = "") -> str:
    """Map a transcript's MIME type (or, when that says nothing, its URL) to a parser name."""
    kind = (mime or "").split(";", 1)[0].strip().lower()
    by_url = _format_from_url(url)
    if kind in _GENERIC_MIMES:
        return by_url or "unknown"
    fmt = _FORMAT_BY_MIME.get(kind, "unknown")
    # Timed files are often declared text/plain; parsing a VTT as text would keep the timing lines.
    if fmt == "text" and by_url in _TIMED_FORMATS:
        return by_url
    return fmt


def _format_from_url(url: str) -> str | None:
    path = urlsplit(url or "").path.lower()
    dot = path.rfind(".")
    return _FORMAT_BY_EXTENSION.get(path[dot:]) if dot > path.rfind("/") else None


def choose_transcript(refs: Sequence[TranscriptRef], language: str | None) -> TranscriptRef | None:
    """The best transcript to read: language match, then format, then rel="captions", then order."""
    usable = [ref for ref in refs if transcript_format(ref.type, ref.url) in _FORMAT_RANK]
    if not usable:
        return None
    # max() keeps the first of equal keys, so document order breaks the last ties.
    return max(usable, key=lambda ref: _preference(ref, language))


def _preference(ref: TranscriptRef, language: str | None) -> tuple[bool, int, bool]:
    fmt = transcript_format(ref.type, ref.url)
    is_captions = (ref.rel or "").strip().lower() == "captions"
    return _language_matches(ref.language, language), _FORMAT_RANK[fmt], is_captions


def _language_matches(ref_language: str | None, wanted: str | None) -> bool:
    # A ref without a language is in the channel's language (spec), so it matches.
    if not ref_language or not wanted:
        return True
    return _primary_subtag(ref_language) == _primary_subtag(wanted)


def _primary_subtag(language: str) -> str:
    return re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower()


# ---------------------------------------------------------------------------------------------
# Decoding and dispatch

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_transcript(data: bytes, encoding_hint: str | None = None) -> str:
    """Bytes to text: a BOM wins, then the server's charset, then UTF-8, then cp1252 (never fails)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    for encoding in (encoding_hint, "utf-8"):
        text = _try_decode(data, encoding)
        if text is not None:
            return text
    return data.decode("cp1252", errors="replace")


def _try_decode(data: bytes, encoding: str | None) -> str | None:
    if not encoding:
        return None
    try:
        return data.decode(encoding)
    except (LookupError, UnicodeDecodeError):  # unknown codec name, or the bytes are not in it
        return None


def parse_transcript(data: bytes, fmt: str, *, encoding_hint: str | None = None) -> list[Segment]:
    """Parse a fetched transcript of a format named by `transcript_format`."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise TranscriptError(f"unsupported transcript format {fmt!r} (expected one of {sorted(_PARSERS)})")
    text = decode_transcript(data, encoding_hint)
    if not text.strip():
        raise TranscriptError(f"{fmt} transcript is empty ({len(data)} bytes)")
    return parser(text)


def _normalise_newlines(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _collapse(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# Timestamps and speakers shared by the parsers

_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d+)(?:[.,](\d+))?|(\d+(?:\.\d+)?)")
_TIMING_LINE = re.compile(r"^\s*(\S+?)\s*-->\s*(\S+)(.*)$")


def clock_to_seconds(value: str) -> float | None:
    """'1:02:03', '62:03.5', '00:01:02,500' or '12.5' as seconds; None when it is not a time."""
    match = _CLOCK.fullmatch(value.strip())
    if not match:
        return None
    hours, minutes, seconds, fraction, plain = match.groups()
    if plain is not None:
        return float(plain)
    whole = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    return whole + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _format_clock(seconds: float, decimal_mark: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{decimal_mark}{millis % 1000:03d}"


def _normalise_timing_lines(text: str, decimal_mark: str) -> str:
    """Rewrite cue timings as HH:MM:SS.mmm, since caption libraries reject Whisper's MM:SS.mmm
    (and minutes past 59, or a comma in VTT)."""
    return "\n".join(_normalise_timing_line(line, decimal_mark) for line in text.split("\n"))


def _normalise_timing_line(line: str, decimal_mark: str) -> str:
    match = _TIMING_LINE.match(line) if "-->" in line else None
    if not match:
        return line
    start, end = clock_to_seconds(match[1]), clock_to_seconds(match[2])
    if start is None or end is None:
        return line
    return f"{_format_clock(start, decimal_mark)} --> {_format_clock(end, decimal_mark)}{match[3]}"


# "Travis: ...", "Dr. Jane Smith: ...", "Speaker 2: ..." -- but not "Well, here's the thing: ...".
_SPEAKER_PREFIX = re.compile(r"^\s*([^\W\d_][\w.'’-]*(?: [\w.'’-]+){0,2})\s?:\s+(\S.*)$", re.DOTALL)
_MAX_SPEAKER_CHARS = 40


def split_speaker_prefix(text: str) -> tuple[str | None, str]:
    """('Name', rest) when the text starts with a short capitalised name and a colon."""
    match = _SPEAKER_PREFIX.match(text)
    if not match or len(match[1]) > _MAX_SPEAKER_CHARS:
        return None, text
    words = match[1].split(" ")
    if not all(word[0].isupper() or word.isdigit() for word in words):
        return None, text
    return match[1], match[2]


def _segments(pieces: Iterable[tuple[str, float | None, float | None, str | None]]) -> list[Segment]:
    """Segments from (text, start, end, speaker), whitespace collapsed, empty text dropped, and text
    over MAX_SEGMENT_CHARS (a runaway cue, a whole transcript on one line) split into pieces that
    keep the segment's time range and speaker."""
    result = []
    for text, start, end, speaker in pieces:
        text = _collapse(text)
        if text:
            result.extend(split_long_segment(Segment(text=text, start=start, end=end, speaker=speaker or None)))
    return result


# ---------------------------------------------------------------------------------------------
# WebVTT

_VOICE_LINE = re.compile(r"^<v(?:\.[\w-]+)*\s+([^>]+)>")
_CUE_TAG = re.compile(r"<[^>]*>")


def parse_vtt(text: str) -> list[Segment]:
    """WebVTT: speaker from `<v Name>`, tags stripped, entities unescaped, millisecond times."""
    text = _normalise_timing_lines(_normalise_newlines(text).lstrip(), ".")
    if not text.startswith("WEBVTT"):
        if "-->" not in text:
            raise TranscriptError("vtt: no 'WEBVTT' header and no cue timings ('-->') found")
        text = "WEBVTT\n\n" + text  # a headerless VTT is common enough to accept
    try:
        captions = webvtt.WebVTT.from_string(text).captions
    except (MalformedFileError, MalformedCaptionError) as error:
        raise TranscriptError(f"vtt: {error}") from error
    if not captions:
        raise TranscriptError("vtt: no cues found (expected 'HH:MM:SS.mmm --> HH:MM:SS.mmm' lines)")
    return _segments(_vtt_pieces(captions))


def _vtt_pieces(captions: Iterable[Any]) -> Iterator[tuple[str, float, float, str | None]]:
    speaker = None
    for caption in captions:
        start = caption.start_time.in_milliseconds() / 1000  # start_in_seconds truncates
        end = caption.end_time.in_milliseconds() / 1000
        for voice, cue_text in _vtt_voice_runs(caption):
            speaker = voice or speaker
            yield html.unescape(cue_text), start, end, speaker


def _vtt_voice_runs(caption: Any) -> list[tuple[str | None, str]]:
    """The cue's text split where a line opens a new `<v>` span (most cues have one voice)."""
    voiced_lines = [i for i, line in enumerate(caption.lines) if i and _VOICE_LINE.match(line)]
    if not voiced_lines:
        return [(caption.voice, caption.text)]
    runs, bounds = [], [0, *voiced_lines, len(caption.lines)]
    for first, stop in zip(bounds, bounds[1:]):
        lines = caption.lines[first:stop]
        voice = _VOICE_LINE.match(lines[0])
        runs.append((voice[1].strip() if voice else None, _CUE_TAG.sub("", "\n".join(lines))))
    return runs


# ---------------------------------------------------------------------------------------------
# SubRip

_SRT_FORMATTING = re.compile(r"</?(?:i|b|u|s|font)\b[^>]*>|\{\\[^}]*\}", re.IGNORECASE)


def parse_srt(text: str) -> list[Segment]:
    """SubRip: times from the cues, formatting tags stripped, a "Name:" prefix as the speaker."""
    text = _normalise_timing_lines(_normalise_newlines(text), ",")
    subtitles = _srt_subtitles(text)
    if not subtitles:
        raise TranscriptError("srt: no cues found (expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm' lines)")
    return _segments(_srt_pieces(subtitles))


def _srt_subtitles(text: str) -> list[srt.Subtitle]:
    try:
        return list(srt.parse(text))
    except srt.SRTParseError:
        pass  # garbage between cues: keep the cues we can read
    except ValueError as error:  # a timestamp the regex accepted but timedelta did not
        raise TranscriptError(f"srt: bad timestamp: {error}") from error
    try:
        return list(srt.parse(text, ignore_errors=True))
    except ValueError as error:
        raise TranscriptError(f"srt: {error}") from error


def _srt_pieces(subtitles: Iterable[srt.Subtitle]) -> Iterator[tuple[str, float, float, str | None]]:
    speaker = None
    for subtitle in subtitles:
        named, body = split_speaker_prefix(_SRT_FORMATTING.sub("", subtitle.content).strip())
        speaker = named or speaker
        yield body, subtitle.start.total_seconds(), subtitle.end.total_seconds(), speaker


# ---------------------------------------------------------------------------------------------
# Podcast namespace JSON

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
_MAX_MERGED_WORDS = 40
_MAX_GAP_SECONDS = 2.0


def parse_json(text: str) -> list[Segment]:
    """The namespace's JSON; word-level segments are merged into sentence-sized ones."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise TranscriptError(f"json: not valid JSON: {error}") from error
    raw_segments = document.get("segments") if isinstance(document, dict) else document
    if not isinstance(raw_segments, list):
        raise TranscriptError('json: expected an object with a "segments" list')
    return [piece for merged in _merge_words(_segments(_json_pieces(raw_segments))) for piece in split_long_segment(merged)]


def _json_pieces(raw_segments: list[Any]) -> Iterator[tuple[str, float | None, float | None, str | None]]:
    for raw in raw_segments:
        if isinstance(raw, dict) and isinstance(raw.get("body"), str):
            speaker = raw.get("speaker")
            speaker = _collapse(speaker) if isinstance(speaker, str) else None
            yield raw["body"], _json_time(raw.get("startTime")), _json_time(raw.get("endTime")), speaker


def _json_time(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return clock_to_seconds(value) if isinstance(value, str) else None


def _merge_words(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    group: list[Segment] = []
    for segment in segments:
        if group and _starts_new_group(group, segment):
            merged.append(_join(group))
            group = []
        group.append(segment)
    if group:
        merged.append(_join(group))
    return merged


def _starts_new_group(group: list[Segment], segment: Segment) -> bool:
    last = group[-1]
    return (
        segment.speaker != last.speaker
        or bool(_SENTENCE_END.search(last.text))
        or sum(len(s.text.split()) for s in group) >= _MAX_MERGED_WORDS
        or _gap(last, segment) > _MAX_GAP_SECONDS
    )


def _gap(previous: Segment, following: Segment) -> float:
    previous_end = previous.end if previous.end is not None else previous.start
    if previous_end is None or following.start is None:
        return 0.0
    return following.start - previous_end


def _join(group: list[Segment]) -> Segment:
    text = group[0].text
    for segment in group[1:]:
        # Punctuation sent as its own "word" attaches to the word before it.
        text += segment.text if segment.text[0] in ",.;:!?…)" else " " + segment.text
    return Segment(text=text, start=group[0].start, end=group[-1].end, speaker=group[0].speaker)


# ---------------------------------------------------------------------------------------------
# HTML

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def parse_html(text: str) -> list[Segment]:
    """The namespace's HTML: `<cite>Speaker:</cite> <time>0:00</time> <p>text</p>`."""
    # lxml refuses str input that carries an encoding declaration (XHTML files).
    text = _XML_DECLARATION.sub("", _normalise_newlines(text))
    try:
        document = lxml.html.document_fromstring(text)
    except (lxml.etree.ParserError, ValueError) as error:
        raise TranscriptError(f"html: cannot parse: {error}") from error
    if document.find(".//p") is None:
        return parse_text(document.text_content())  # no paragraphs: fall back to lines
    return _segments(_html_pieces(document))


def _html_pieces(document: Any) -> Iterator[tuple[str, float | None, None, str | None]]:
    speaker, start = None, None
    for element in document.iter("cite", "time", "p"):
        content = _collapse(element.text_content())
        if element.tag == "cite":
            speaker = content.rstrip(":").strip() or None
        elif element.tag == "time":
            start = clock_to_seconds(content) if content else None
        else:
            yield content, start, None, speaker
            start = None  # a <time> belongs to the one paragraph after it


# ---------------------------------------------------------------------------------------------
# Plain text

_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def parse_text(text: str) -> list[Segment]:
    """One segment per paragraph (or per line when there are no blank lines); no times."""
    text = _normalise_newlines(text)
    chunks = _BLANK_LINE.split(text) if _BLANK_LINE.search(text) else text.split("\n")
    return _segments(_text_pieces(chunks))


def _text_pieces(chunks: Iterable[str]) -> Iterator[tuple[str, None, None, str | None]]:
    speaker = None
    for chunk in chunks:
        named, body = split_speaker_prefix(chunk.strip())
        speaker = named or speaker
        yield body, None, None, speaker


_PARSERS = {
    "vtt": parse_vtt,
    "srt": parse_srt,
    "json": parse_json,
    "html": parse_html,
    "text": parse_text,
}
