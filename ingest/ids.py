"""Stable ids with a fallback chain (guid, else canonical URL, else title + content) and hashes."""

from __future__ import annotations

import hashlib

from ingest.entry import Entry
from ingest.urls import canonical_url


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def entry_canonical_url(entry: Entry) -> str | None:
    return canonical_url(entry.url) if entry.url else None


def stable_key(entry: Entry, url_is_unique: bool = True) -> str:
    """Key unique within a source: the first of guid, enclosure URL, canonical URL, title+content.

    A link that several entries of one document share (a show's home page) identifies none of
    them: the caller says so with `url_is_unique=False`.
    """
    if entry.guid and entry.guid.strip():
        return sha256("guid:" + entry.guid.strip())
    if entry.enclosures:
        return sha256("enclosure:" + entry.enclosures[0].url)
    url = entry_canonical_url(entry)
    if url and url_is_unique:
        return sha256("url:" + url)
    return sha256("content:" + entry.title.strip() + "\n" + (entry.text or entry.content_html or entry.summary_html))


def content_hash(title: str, text: str) -> str:
    return sha256(" ".join(title.split()) + "\n" + " ".join(text.split()))


def entry_hash(entry: Entry) -> str:
    """What the feed said about an entry: unchanged hash means no need to re-extract or re-fetch."""
    parts = [
        entry.title,
        entry.url or "",
        entry.summary_html,
        entry.content_html,
        entry.text,
        " ".join(t.url + "|" + t.type for t in entry.transcripts),
        " ".join(e.url for e in entry.enclosures),
    ]
    return sha256("\x1f".join(parts))
