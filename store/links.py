"""Links a reader may follow: only absolute http(s) URLs, and an episode's URL at a moment.

Plain standard library, so that search (which must not load ingest or digest), the email, Slack
and the API all build the same `#t=` link from one place.
"""

from __future__ import annotations

import urllib.parse

# Hosts whose player reads `?t=754s` rather than a media fragment.
YOUTUBE_HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be")


def safe_url(value: str | None) -> str | None:
    """Only absolute http(s) links reach a reader; `javascript:` and friends are dropped."""
    if not value:
        return None
    url = "".join(ch for ch in value.strip() if ch.isprintable() and not ch.isspace())
    parts = urllib.parse.urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def moment_url(url: str | None, seconds: float | None) -> str | None:
    """A link that opens the episode at `seconds` where the URL allows it: `?t=754s` on YouTube,
    else the W3C media fragment `#t=754` (browsers' audio and video players and most podcast web
    players seek to it). A URL that already has a fragment keeps it: the page gave it a meaning."""
    url = safe_url(url)
    if url is None or seconds is None:
        return url
    at = max(0, int(seconds))
    parts = urllib.parse.urlsplit(url)
    if parts.hostname in YOUTUBE_HOSTS:
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "t"] + [("t", f"{at}s")]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    if parts.fragment:
        return url
    return urllib.parse.urlunsplit(parts._replace(fragment=f"t={at}"))
