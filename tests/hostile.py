"""Hostile HTTP behaviours, as routes for LocalServer: what real servers do to a feed reader."""

from __future__ import annotations

import gzip
import itertools
import time
import zlib
from http.server import BaseHTTPRequestHandler

_counter = itertools.count()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def huge_response(total: int = 2 * 1024**3, declare_length: bool = False):
    """Streams `total` bytes (2 GB by default) lazily; the client must stop at its cap."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        if declare_length:
            h.send_header("Content-Length", str(total))
        h.send_header("Connection", "close")
        h.end_headers()
        chunk = b"<rss>" + b" " * 65531
        sent = 0
        try:
            while sent < total:
                h.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    return route


def gzip_bomb(expanded: int = 1024**3):
    """A small gzip body that expands to `expanded` bytes (1 GB of zeros is about 1 MB gzipped)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1024 * 1024)
    parts = [compressor.compress(block) for _ in range(expanded // len(block))]
    body = b"".join(parts) + compressor.flush()

    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, body, Content_Type="application/rss+xml", Content_Encoding="gzip")

    return route


def redirect_to(location: str):
    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 302, b"", Location=location)

    return route


def slow_loris(interval: float = 0.5, total_seconds: float = 30.0):
    """Headers promptly, then one byte every `interval` s: no single read ever times out."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        deadline = time.monotonic() + total_seconds
        try:
            while time.monotonic() < deadline:
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(interval)
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    return route


def status(code: int, **headers: str):
    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, code, f"status {code}\n".encode(), Content_Type="text/plain", **headers)

    return route


def static(body: bytes, content_type: str):
    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, body, Content_Type=content_type)

    return route


def changing_guids(items: int = 5):
    """The same articles on every fetch, each time under brand-new guids (and no validators)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        n = next(_counter)
        entries = "".join(
            f"<item><title>Story {i}</title><link>http://example.test/story-{i}?utm_source=rss</link>"
            f"<guid isPermaLink=\"false\">run{n}-item{i}</guid><description>Body of story {i}, unchanged.</description></item>"
            for i in range(items)
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Guid churn</title>{entries}</channel></rss>'
        send(h, 200, body.encode(), Content_Type="application/rss+xml")

    return route


def gzip_file(body: bytes):
    """A feed stored gzipped and served as-is, without Content-Encoding (seen in the corpus)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, gzip.compress(body), Content_Type="application/xml")

    return route
