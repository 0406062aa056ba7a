"""Enclosures to disk with the project's polite fetcher: SSRF guard, size cap, redirects, and
resumption with `Range` after a dropped connection (a 3-hour MP3 is 100-300 MB).

The bytes go to `<dest>.part`, with the validator of the first response beside it in
`<dest>.part.json`; a later attempt asks for the rest with `If-Range`, so a file that changed on
the server is fetched again from the start instead of being spliced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingest.decode import ChainedDecoder, TooLargeError
from ingest.fetch import Fetcher, FetchFailed, FetchResult

AUDIO_ACCEPT = "audio/*, video/*;q=0.8, application/octet-stream;q=0.5, */*;q=0.1"
CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
UNFINISHED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
TRANSIENT = ("network", "timeout")


@dataclass
class Download:
    path: Path | None
    bytes: int = 0
    resumed_from: int = 0  # bytes already on disk when the last successful attempt began
    attempts: int = 0
    error: str | None = None


async def download(fetcher: Fetcher, url: str, dest: Path, *, max_bytes: int, attempts: int = 3) -> Download:
    """Fetch `url` into `dest`; transient failures resume where they stopped, up to `attempts` times."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, meta = dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")
    outcome = Download(path=None)
    for _ in range(attempts):
        outcome.attempts += 1
        have = part.stat().st_size if part.exists() else 0
        sink = _FileSink(part, meta, have)
        result = await fetcher.stream(url, _headers(have, meta), sink, max_bytes=max_bytes)
        if result.status == 416 and have and _complete(result, have):
            result.error = None  # we already had every byte
        elif result.status == 416:
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            continue
        if result.error is None:
            part.replace(dest)
            meta.unlink(missing_ok=True)
            outcome.path, outcome.bytes, outcome.resumed_from, outcome.error = dest, dest.stat().st_size, sink.start, None
            return outcome
        outcome.error = result.error
        if result.error_kind not in TRANSIENT:
            break
    return outcome


def _headers(have: int, meta: Path) -> dict[str, str]:
    headers = {"Accept": AUDIO_ACCEPT, "Accept-Encoding": "identity"}  # ranges count bytes as stored
    if have:
        validator = _read_validator(meta)
        if validator:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = validator
    return headers


def _read_validator(meta: Path) -> str | None:
    try:
        saved = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None  # without a validator a resumed file could be two versions spliced: start over
    etag = saved.get("etag") or ""
    return etag if etag and not etag.startswith("W/") else saved.get("last_modified")


def _complete(result: FetchResult, have: int) -> bool:
    match = UNFINISHED_RANGE.match(result.headers.get("content-range", ""))
    return bool(match) and int(match.group(1)) == have


class _FileSink:
    """Writes one response body to the part file: appends a 206 that continues it, else starts over."""

    def __init__(self, part: Path, meta: Path, have: int) -> None:
        self.part, self.meta, self.have = part, meta, have
        self.start = 0

    async def __call__(self, resp: httpx.Response, limit: int) -> None:
        self.start = self._resume_offset(resp)
        total = self._declared_total(resp)
        if total is not None and total > limit:
            raise FetchFailed("too_large", f"audio of {total:,} bytes exceeds the {limit:,}-byte cap")
        if self.start == 0:
            self.meta.write_text(json.dumps({"etag": resp.headers.get("etag"),
                                             "last_modified": resp.headers.get("last-modified")}))
        encoding = resp.headers.get("content-encoding", "")
        try:
            decoder = ChainedDecoder(encoding, limit) if encoding and self.start == 0 else None
        except ValueError as exc:
            raise FetchFailed("network", str(exc)) from None
        written = self.start
        with self.part.open("ab" if self.start else "wb") as out:
            async for raw in resp.aiter_raw():
                try:
                    data = decoder.feed(raw) if decoder else raw
                except TooLargeError as exc:
                    raise FetchFailed("too_large", f"{exc} (stopped reading)") from None
                written += len(data)
                if written > limit:
                    raise FetchFailed("too_large", f"audio exceeds the {limit:,}-byte cap (stopped reading)")
                out.write(data)

    def _resume_offset(self, resp: httpx.Response) -> int:
        if resp.status_code != 206:
            return 0  # a whole body (the server ignored Range, or the file changed): start over
        match = CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if not match or int(match.group(1)) != self.have:
            raise FetchFailed("http", f"server sent a range we did not ask for: {resp.headers.get('content-range')!r}")
        return self.have

    def _declared_total(self, resp: httpx.Response) -> int | None:
        if resp.status_code == 206:
            match = CONTENT_RANGE.match(resp.headers.get("content-range", ""))
            return int(match.group(3)) if match and match.group(3) != "*" else None
        declared = resp.headers.get("content-length", "")
        no_encoding = resp.headers.get("content-encoding", "identity") == "identity"
        return int(declared) if declared.isdigit() and no_encoding else None
