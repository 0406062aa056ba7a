"""Polite HTTP: conditional GET, bounded concurrency, size caps, SSRF guard, Retry-After.

Our code fetches; parsers only ever see bytes and headers. `Fetcher.get` never raises for
anything a server can do: every outcome is a `FetchResult`, failures carry a readable reason.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import brotli
import httpx

from ingest.decode import GZIP_MAGIC, ChainedDecoder, TooLargeError, gunzip_bounded
from ingest.ssrf import BlockedAddressError, guarded_transport, parse_networks
from store.settings import Settings

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, text/html;q=0.5, */*;q=0.1"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
REDIRECTS = {301, 302, 303, 307, 308}
MAX_RETRY_AFTER = 30 * 24 * 3600.0  # a server asking for more is asking for a month


@dataclass
class FetchResult:
    url: str
    final_url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None
    error_kind: str | None = None  # blocked | timeout | too_large | http | network | redirect
    retry_after: float | None = None
    elapsed: float = 0.0  # seconds on the network, not waiting for a free connection slot

    @property
    def not_modified(self) -> bool:
        return self.status == 304 and self.error is None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


# Receives a 2xx response to stream its body somewhere (a file); raises FetchFailed to refuse it.
BodySink = Callable[[httpx.Response, int], Awaitable[None]]


class FetchFailed(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.status, self.retry_after = kind, status, retry_after


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(MAX_RETRY_AFTER, max(0.0, (when - (now or datetime.now(UTC))).total_seconds()))


class Fetcher:
    """One shared async client; use as `async with Fetcher(settings) as f: await f.get(url)`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._overall = asyncio.Semaphore(settings.concurrency)
        self._per_host: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.per_host_concurrency)
        )
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Fetcher:
        s = self.settings
        timeout = httpx.Timeout(connect=s.connect_timeout, read=s.read_timeout, write=s.read_timeout, pool=None)
        self._client = httpx.AsyncClient(
            transport=guarded_transport(
                s.allow_private_addresses, max_connections=s.concurrency, allowed=parse_networks(s.allowed_networks)
            ),
            timeout=timeout,
            follow_redirects=False,  # each hop is checked and counted here
            headers={"User-Agent": s.user_agent, "Accept-Encoding": "gzip, deflate, br"},
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = FEED_ACCEPT,
        max_bytes: int | None = None,
    ) -> FetchResult:
        result = FetchResult(url=url, final_url=url)
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return await self._get_into(result, headers, max_bytes or self.settings.max_response_bytes, None)

    async def stream(self, url: str, headers: dict[str, str], sink: BodySink, *, max_bytes: int) -> FetchResult:
        """GET with the same guard, redirects and deadline, handing the body to `sink` instead of memory
        (large files: podcast audio). `headers` may carry Range / If-Range; the sink sees the status."""
        return await self._get_into(FetchResult(url=url, final_url=url), headers, max_bytes, sink)

    async def _get_into(self, result: FetchResult, headers: dict[str, str], limit: int, sink: BodySink | None
                        ) -> FetchResult:
        try:
            await self._follow(result, headers, limit, sink)
        except FetchFailed as exc:
            result.error, result.error_kind = str(exc), exc.kind
            result.status = exc.status or result.status
            result.retry_after = exc.retry_after
        return result

    async def _follow(self, result: FetchResult, headers: dict[str, str], limit: int, sink: BodySink | None) -> None:
        seen = [result.url]
        url = result.url
        for _hop in range(self.settings.max_redirects + 1):
            location = await self._one_hop(url, headers, limit, result, sink)
            if location is None:
                return
            nxt = urljoin(url, location)
            if urlsplit(nxt).scheme not in ("http", "https"):
                raise FetchFailed("redirect", f"redirect to a non-HTTP URL refused: {nxt}")
            if nxt in seen:
                raise FetchFailed("redirect", "redirect loop: " + " -> ".join([*seen, nxt]))
            seen.append(nxt)
            url = result.final_url = nxt
        raise FetchFailed("redirect", f"more than {self.settings.max_redirects} redirects (last: {url})")

    async def _one_hop(self, url: str, headers: dict[str, str], limit: int, result: FetchResult,
                       sink: BodySink | None) -> str | None:
        """GET one URL into `result`; returns the Location to follow, or None when done."""
        host = urlsplit(url).hostname or ""
        async with self._per_host[host], self._overall:
            hop_started = time.perf_counter()
            try:
                async with asyncio.timeout(self.settings.total_timeout):
                    return await self._request(url, headers, limit, result, sink)
            except TimeoutError:
                raise FetchFailed("timeout", f"no complete response within {self.settings.total_timeout:g} s") from None
            except BlockedAddressError as exc:
                raise FetchFailed("blocked", str(exc)) from None
            except httpx.TimeoutException as exc:
                raise FetchFailed("timeout", f"{type(exc).__name__.lower()}: server too slow") from None
            except httpx.TransportError as exc:
                raise FetchFailed("network", f"network error: {exc or type(exc).__name__}") from None
            except httpx.InvalidURL as exc:
                raise FetchFailed("network", f"invalid URL: {exc}") from None
            finally:
                result.elapsed += time.perf_counter() - hop_started

    async def _request(self, url: str, headers: dict[str, str], limit: int, result: FetchResult,
                       sink: BodySink | None) -> str | None:
        assert self._client is not None, "use Fetcher as an async context manager"
        async with self._client.stream("GET", url, headers=headers) as resp:
            result.status = resp.status_code
            result.headers = {k.lower(): v for k, v in resp.headers.items()}
            if resp.status_code in REDIRECTS and "location" in resp.headers:
                await _drain(resp)
                return resp.headers["location"]
            if resp.status_code == 304:
                await _drain(resp)
                return None
            if resp.status_code >= 400:
                raise FetchFailed(
                    "http",
                    f"HTTP {resp.status_code} {resp.reason_phrase}".strip(),
                    status=resp.status_code,
                    retry_after=parse_retry_after(resp.headers.get("retry-after")),
                )
            if sink is not None:
                await sink(resp, limit)
            else:
                result.body = await _read_capped(resp, limit)
            return None


async def _drain(resp: httpx.Response, limit: int = 64 * 1024) -> None:
    """Read a small body to its end so the connection goes back to the pool instead of closing."""
    read = 0
    async for chunk in resp.aiter_raw():
        read += len(chunk)
        if read > limit:
            return


async def _read_capped(resp: httpx.Response, limit: int) -> bytes:
    declared = resp.headers.get("content-length")
    encoding = resp.headers.get("content-encoding", "")
    if declared and declared.isdigit() and not encoding and int(declared) > limit:
        raise FetchFailed("too_large", f"response of {int(declared):,} bytes exceeds the {limit:,}-byte cap")
    try:
        decoder = ChainedDecoder(encoding, limit)
    except ValueError as exc:
        raise FetchFailed("network", str(exc)) from None
    chunks: list[bytes] = []
    raw_total = 0
    try:
        async for raw in resp.aiter_raw():
            raw_total += len(raw)
            if raw_total > limit:
                raise TooLargeError(f"response exceeds the {limit:,}-byte cap")
            chunks.append(decoder.feed(raw))
        body = b"".join(chunks)
        if body[:2] == GZIP_MAGIC:
            body = gunzip_bounded(body, limit)  # a .gz file served without Content-Encoding
    except TooLargeError as exc:
        raise FetchFailed("too_large", f"{exc} (stopped reading)") from None
    except (zlib.error, brotli.error, EOFError) as exc:
        raise FetchFailed("network", f"cannot decode {encoding or 'gzip'} body: {exc}") from None
    return body
