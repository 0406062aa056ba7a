"""Full article text with trafilatura when a feed only carries a teaser; robots.txt respected."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from ingest.fetch import PAGE_ACCEPT, Fetcher
from ingest.parse import parse_date
from ingest.text import script_numbers, word_count
from store.entry import Entry, Kind

log = logging.getLogger(__name__)
ROBOTS_MAX_BYTES = 512 * 1024


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str | None = None
    author: str | None = None
    published: datetime | None = None
    language: str | None = None


def extract_article(html: bytes | str, url: str | None = None) -> Extracted | None:
    """Main text and metadata of an article page, or None when nothing article-like is found."""
    import trafilatura  # heavy import (lxml, justext, courlan): only when a page is extracted
    from trafilatura.utils import decode_file

    html = decode_file(html)  # what trafilatura does with bytes itself; numbers are read on the text
    document = trafilatura.bare_extraction(
        script_numbers(html), url=url, with_metadata=True, include_comments=False, include_tables=True
    )
    doc = document.as_dict() if document is not None else None
    if not doc or not (doc.get("text") or "").strip():
        return None
    return Extracted(
        text=_nfc(doc["text"]).strip(),
        title=_nfc(doc.get("title")) or None,
        author=_nfc(doc.get("author")) or None,
        published=parse_date(doc.get("date")),
        language=(doc.get("language") or None),
    )


def _nfc(text: str | None) -> str | None:
    """Composed Unicode, as trafilatura's own `extract` returns (its `bare_extraction` does not): a
    decomposed page ("e" + U+0301) then matches a query, the keyword index and a hash typed as "é"."""
    return unicodedata.normalize("NFC", text) if text else text


def needs_full_text(entry: Entry, min_words: int) -> bool:
    if entry.kind != Kind.ARTICLE or not entry.url or not entry.url.startswith(("http://", "https://")):
        return False
    return entry.truncated or word_count(entry.text) < min_words


class RobotsCache:
    """robots.txt per origin, fetched once per run. 4xx means allowed, 5xx or no answer means not."""

    def __init__(self, fetcher: Fetcher, user_agent: str) -> None:
        self._fetcher = fetcher
        self._agent = user_agent
        self._rules: dict[str, RobotFileParser | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin not in self._rules:
                self._rules[origin] = await self._load(origin)
        rules = self._rules[origin]
        return rules is not None and rules.can_fetch(self._agent, url)

    async def _load(self, origin: str) -> RobotFileParser | None:
        result = await self._fetcher.get(origin + "/robots.txt", accept="text/plain", max_bytes=ROBOTS_MAX_BYTES)
        rules = RobotFileParser()
        if result.ok:
            rules.parse(result.body.decode("utf-8", "replace").splitlines())
        elif result.status is not None and 400 <= result.status < 500:
            rules.parse([])  # no robots.txt: everything allowed
        else:
            log.info("robots.txt of %s unavailable (%s): not fetching its pages", origin, result.error)
            return None
        return rules


async def fill_full_text(entry: Entry, fetcher: Fetcher, robots: RobotsCache | None) -> str | None:
    """Replace a teaser with the page's extracted text. Returns a note when it could not."""
    assert entry.url is not None
    if robots is not None and not await robots.allowed(entry.url):
        return f"robots.txt disallows {entry.url}"
    page = await fetcher.get(entry.url, accept=PAGE_ACCEPT)
    if not page.ok:
        return f"article page: {page.error or page.status}"
    extracted = await asyncio.to_thread(extract_article, page.body, page.final_url)
    if extracted is None or word_count(extracted.text) <= word_count(entry.text):
        return "article page had no longer text than the feed"
    entry.text = extracted.text
    entry.truncated = False
    entry.text_source = "extracted"
    entry.author = entry.author or extracted.author
    entry.published = entry.published or extracted.published
    entry.language = entry.language or extracted.language
    return None
