"""Feed bytes -> `ParsedFeed` of normalised `Entry` objects, whatever the format.

feedparser reads RSS 0.9x/1.0/2.0, Atom and RDF with every charset trick in the corpus; JSON
Feed (which feedparser 6 cannot read) is parsed here with `json`; `<podcast:transcript>` tags come
from our own XML pass because feedparser keeps only the last one of an item.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin

import feedparser
import feedparser.datetimes
import lxml.html

from ingest.podcast_xml import item_key, transcripts_by_item
from ingest.text import html_to_text, looks_truncated
from ingest.urls import canonical_url
from store.entry import Enclosure, Entry, Kind

FEED_LINK_TYPES = {
    "application/rss+xml",
    "application/atom+xml",
    "application/rdf+xml",
    "application/feed+json",
    "application/json",
    "application/x.atom+xml",
    "text/xml",
}
# Headers that tell feedparser about the document; encoding headers were already undone by us.
_PARSER_HEADERS = ("content-type", "content-language")


class NotAFeedError(ValueError):
    """The bytes are not a feed; `feed_links` holds any feeds an HTML page advertises."""

    def __init__(self, reason: str, feed_links: list[str] | None = None) -> None:
        super().__init__(reason)
        self.feed_links = feed_links or []


@dataclass
class ParsedFeed:
    format: str
    title: str | None = None
    site_url: str | None = None
    language: str | None = None
    entries: list[Entry] = field(default_factory=list)
    warning: str | None = None


def parse_feed(body: bytes, *, url: str, headers: dict[str, str] | None = None) -> ParsedFeed:
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    kind = sniff(body, headers.get("content-type", ""))
    if kind == "empty":
        raise NotAFeedError("empty response body")
    if kind == "json":
        return parse_json_feed(body, url=url)
    if kind == "opml":
        raise NotAFeedError("an OPML subscription list, not a feed: add its feeds with `briefcast sources import FILE`")
    if kind == "html":
        links = discover_feed_links(body, url)
        hint = f"; it links to {len(links)} feed(s), first {links[0]}" if links else "; it advertises no feed"
        raise NotAFeedError("an HTML page, not a feed" + hint, links)
    return parse_xml_feed(body, url=url, headers=headers)


def sniff(body: bytes, content_type: str) -> str:
    """Rough document type from the first bytes: empty | json | opml | html | xml.

    A feed root anywhere in the head wins over HTML markers: real feeds carry XHTML doctypes.
    """
    head = _decoded_head(body)
    if not head.strip():
        return "empty"
    start = head.lstrip()
    if start[:1] in ("{", "["):
        return "json"
    lowered = start.lower()
    if any(tag in lowered for tag in ("<rss", "<feed", "<rdf:rdf", "<channel", "<rdf")):
        return "xml"
    if "<opml" in lowered:
        return "opml"
    if "<!doctype html" in lowered or "<html" in lowered:
        return "html"
    if "html" in content_type.lower() and "xml" not in content_type.lower():
        return "html"
    return "xml"


def _decoded_head(body: bytes) -> str:
    head = body[:4096]
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
                       (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom):].decode(codec, "ignore")
    if b"\x00" in head[:8]:
        # UTF-16/32 without a BOM: dropping the zero bytes leaves the ASCII markup readable.
        return head.replace(b"\x00", b"").decode("latin-1")
    return head.decode("latin-1")


def discover_feed_links(body: bytes, base_url: str) -> list[str]:
    """Feeds an HTML page advertises with <link rel="alternate" type="...">, in page order."""
    try:
        doc = lxml.html.document_fromstring(body)
    except (ValueError, lxml.etree.ParserError):
        return []
    base = next(iter(doc.xpath("//base/@href")), None) or base_url
    found: list[str] = []
    for link in doc.xpath("//link[@href]"):
        rels = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").lower().split(";")[0].strip()
        if "alternate" in rels and kind in FEED_LINK_TYPES:
            href = urljoin(urljoin(base_url, base), link.get("href").strip())
            if href not in found:
                found.append(href)
    return found


# --- RSS / Atom / RDF through feedparser ---------------------------------------------------


def run_feedparser(body: bytes, *, url: str, headers: dict[str, str]) -> feedparser.FeedParserDict:
    """feedparser on bytes we fetched, told the charset and location the server gave us."""
    # No Content-Location: feedparser would "resolve" opaque guids against it. Links are
    # resolved against the feed URL in _entry_from_feedparser instead.
    passed = {k: v for k, v in headers.items() if k in _PARSER_HEADERS}
    # Sanitising and URI resolution are half of feedparser's time, and we never render its HTML:
    # html_to_text reads it (scripts dropped) and nh3 cleans anything that is shown.
    return feedparser.parse(body, response_headers=passed or None, sanitize_html=False, resolve_relative_uris=False)


def parse_xml_feed(body: bytes, *, url: str, headers: dict[str, str]) -> ParsedFeed:
    parsed = run_feedparser(body, url=url, headers=headers)
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise NotAFeedError(f"not a feed: {_describe(problem) if problem else 'no RSS, Atom or RDF root element'}")
    feed = parsed.feed
    language = _lang(feed.get("language")) or _lang(headers.get("content-language"))
    transcripts = transcripts_by_item(body)
    entries = [_entry_from_feedparser(e, i, language, transcripts, url) for i, e in enumerate(parsed.entries)]
    warning = _describe(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    return ParsedFeed(
        format=parsed.get("version") or "unknown",
        title=_clean(feed.get("title")),
        site_url=feed.get("link"),
        language=language,
        entries=entries,
        warning=warning,
    )


def _entry_from_feedparser(e, index: int, feed_language: str | None, transcripts, feed_url: str) -> Entry:
    enclosures = [
        Enclosure(url=urljoin(feed_url, enc.get("href") or enc.get("url")), type=enc.get("type"),
                  length=_int(enc.get("length")))
        for enc in e.get("enclosures", [])
        if enc.get("href") or enc.get("url")
    ]
    content_html = max((c.get("value", "") for c in e.get("content", [])), key=len, default="")
    summary_html = e.get("summary", "") or ""
    guid = e.get("id") or None
    link = e.get("link") or None
    raw_enclosure = next((enc.get("href") or enc.get("url") for enc in e.get("enclosures", [])
                          if enc.get("href") or enc.get("url")), None)
    key = item_key(guid, raw_enclosure, link, index)  # the same fallback chain as our XML pass
    link = urljoin(feed_url, link) if link else None
    entry = Entry(
        title=_clean(e.get("title")) or "",
        guid=guid,
        url=link,
        author=_clean(e.get("author")),
        published=_from_struct(e.get("published_parsed") or e.get("updated_parsed")),
        updated=_from_struct(e.get("updated_parsed")),
        language=_lang(e.get("language")) or feed_language,
        summary_html=summary_html,
        content_html=content_html,
        categories=[t.get("term") for t in e.get("tags", []) if t.get("term")],
        enclosures=enclosures,
        transcripts=list(transcripts.get(key, [])),
    )
    return finish_entry(entry)


def finish_entry(entry: Entry) -> Entry:
    """Derive text, kind, the teaser flag and the canonical URL once, the same way for every format."""
    entry.canonical_url = canonical_url(entry.url) if entry.url else None
    body = entry.content_html if len(entry.content_html) >= len(entry.summary_html) else entry.summary_html
    entry.text = entry.text or html_to_text(body)
    entry.truncated = entry.truncated or looks_truncated(entry.text)
    if entry.audio is not None or entry.transcripts:
        entry.kind = Kind.EPISODE
    if not entry.title:
        entry.title = _first_words(entry.text) or (entry.url or "")
    return entry


# --- JSON Feed 1.0 / 1.1 -------------------------------------------------------------------


def parse_json_feed(body: bytes, *, url: str) -> ParsedFeed:
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAFeedError(f"invalid JSON: {exc}") from None
    version = doc.get("version", "") if isinstance(doc, dict) else ""
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise NotAFeedError("JSON, but not a JSON Feed (no https://jsonfeed.org/version/ marker)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise NotAFeedError("JSON Feed without an items list")
    language = _lang(doc.get("language"))
    entries, skipped = [], 0
    for item in items:
        try:
            entries.append(_entry_from_json(item, language, url))
        except (TypeError, ValueError, AttributeError, KeyError):
            skipped += 1  # one malformed item must not cost the feed its other items
    return ParsedFeed(
        warning=f"skipped {skipped} malformed JSON Feed item(s)" if skipped else None,
        format="json" + version.rsplit("/", 1)[-1].replace(".", ""),
        title=_clean(doc.get("title")),
        site_url=doc.get("home_page_url"),
        language=language,
        entries=entries,
    )


_JSON_STRINGS = {"url", "external_url", "title", "content_html", "content_text", "summary", "date_published",
                 "date_modified", "language"}


def _entry_from_json(item: dict, feed_language: str | None, feed_url: str) -> Entry:
    if not isinstance(item, dict):
        raise TypeError("item is not an object")
    item = {k: v for k, v in item.items() if k not in _JSON_STRINGS or isinstance(v, str)}
    authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
    link = item.get("url") or item.get("external_url")
    enclosures = [
        Enclosure(url=urljoin(feed_url, a["url"]), type=a.get("mime_type"), length=_int(a.get("size_in_bytes")))
        for a in item.get("attachments") or []
        if isinstance(a, dict) and a.get("url")
    ]
    entry = Entry(
        title=_clean(item.get("title")) or "",
        guid=str(item["id"]) if item.get("id") not in (None, "") else None,
        url=urljoin(feed_url, link) if isinstance(link, str) else None,
        author=", ".join(a["name"] for a in authors if isinstance(a, dict) and a.get("name")) or None,
        published=parse_date(item.get("date_published")),
        updated=parse_date(item.get("date_modified")),
        language=_lang(item.get("language")) or feed_language,
        summary_html=item.get("summary") or "",
        content_html=item.get("content_html") or "",
        text="" if item.get("content_html") else (item.get("content_text") or ""),
        categories=[t for t in item.get("tags") or [] if isinstance(t, str)],
        enclosures=enclosures,
    )
    return finish_entry(entry)


# --- helpers ------------------------------------------------------------------------------------


def parse_date(value) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        return _from_struct(feedparser.datetimes._parse_date(value))


def _from_struct(value: time.struct_time | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _lang(value) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().replace("_", "-").lower()[:32]


def _clean(value) -> str | None:
    if not isinstance(value, str):
        return None
    text = html_to_text(value) if "<" in value or "&" in value else " ".join(value.split())
    return text.replace("\n", " ").strip() or None


def _int(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _first_words(text: str, n: int = 12) -> str:
    words = text.split()
    return " ".join(words[:n]) + ("…" if len(words) > n else "")


def _describe(exc) -> str:
    return f"{type(exc).__name__}: {exc}" if exc is not None else ""
