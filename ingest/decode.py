"""Bounded decompression: a response may expand to at most `limit` bytes, whatever its ratio."""

from __future__ import annotations

import zlib

import brotli

GZIP_MAGIC = b"\x1f\x8b"


class TooLargeError(Exception):
    pass


class BoundedDecoder:
    """Decodes a Content-Encoding stream chunk by chunk, refusing output beyond `limit`."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding.strip().lower()
        self.limit = limit
        self.produced = 0
        if self.encoding in ("gzip", "x-gzip", "deflate"):
            # wbits 32+15 auto-detects gzip and zlib headers.
            self._zlib = zlib.decompressobj(47)
        elif self.encoding == "br":
            self._brotli = brotli.Decompressor()
        elif self.encoding not in ("", "identity"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")

    def feed(self, data: bytes) -> bytes:
        room = self.limit - self.produced
        if self.encoding in ("gzip", "x-gzip", "deflate"):
            out = self._inflate(data, room)
        elif self.encoding == "br":
            out = self._brotli.process(data, output_buffer_limit=room + 1)
        else:
            out = data
        self.produced += len(out)
        if self.produced > self.limit:
            raise TooLargeError(f"decoded body exceeds the {self.limit:,}-byte cap")
        return out

    def _inflate(self, data: bytes, room: int) -> bytes:
        try:
            return self._zlib.decompress(data, room + 1)
        except zlib.error:
            if self.encoding != "deflate" or self.produced:
                raise
            # Some servers send raw deflate without the zlib header.
            self._zlib = zlib.decompressobj(-15)
            return self._zlib.decompress(data, room + 1)


class ChainedDecoder:
    """`Content-Encoding: br, gzip` was applied left to right: undo it right to left, every
    stage bounded by the same cap."""

    def __init__(self, encodings: str, limit: int) -> None:
        codings = [c.strip() for c in encodings.split(",") if c.strip()]
        self._stages = [BoundedDecoder(c, limit) for c in reversed(codings)] or [BoundedDecoder("", limit)]

    def feed(self, data: bytes) -> bytes:
        for stage in self._stages:
            data = stage.feed(data)
        return data


def gunzip_bounded(body: bytes, limit: int) -> bytes:
    """A body that is itself a gzip file (served without Content-Encoding): unpack, bounded."""
    decoder = BoundedDecoder("gzip", limit)
    return decoder.feed(body)
