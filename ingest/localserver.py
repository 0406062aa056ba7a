"""A small real HTTP server on loopback: serves the sample world for `make run` and the corpus in tests.

Supports ETag / Last-Modified with 304s, gzip, HEAD, and placeholders that keep the sample world
fresh: `{{BASE_URL}}`, `{{RFC822_DAYS_AGO:N}}`, `{{ISO_DAYS_AGO:N}}` (N days before start-up).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".rdf": "application/rdf+xml",
    ".xml": "application/xml",
    ".json": "application/json",
    ".opml": "text/x-opml",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
}
TEXT_SUFFIXES = set(TYPES) - {".gz"}
PLACEHOLDER = re.compile(rb"\{\{(BASE_URL|RFC822_DAYS_AGO:([0-9.]+)|ISO_DAYS_AGO:([0-9.]+))\}\}")

# A route gets the request handler and may write any response, however hostile.
Route = Callable[[BaseHTTPRequestHandler], None]


class LocalServer:
    def __init__(
        self,
        root: Path | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        render: bool = True,
        gzip_responses: bool = True,
        extra_headers: Callable[[Path], dict[str, str]] | None = None,
        routes: dict[str, Route] | None = None,
    ) -> None:
        self.root = root.resolve() if root else None
        self.render = render
        self.gzip_responses = gzip_responses
        self.extra_headers = extra_headers
        self.routes = routes or {}
        # Dates are anchored to the hour, so a restarted server within the hour serves the same
        # bytes and a second `make run` gets its 304s.
        self.started = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.hits: Counter[str] = Counter()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def start(self) -> LocalServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="localserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def body_for(self, path: Path) -> bytes:
        data = path.read_bytes()
        if self.render and path.suffix in TEXT_SUFFIXES:
            data = PLACEHOLDER.sub(self._substitute, data)
        return data

    def _substitute(self, match: re.Match[bytes]) -> bytes:
        if match.group(1) == b"BASE_URL":
            return self.base_url.encode()
        days = float(match.group(2) or match.group(3))
        when = self.started - timedelta(days=days)
        if match.group(2):
            return format_datetime(when, usegmt=True).encode()
        return when.strftime("%Y-%m-%dT%H:%M:%SZ").encode()

    def resolve(self, url_path: str) -> Path | None:
        if self.root is None:
            return None
        candidate = (self.root / unquote(url_path).lstrip("/")).resolve()
        if self.root not in candidate.parents and candidate != self.root:
            return None
        if candidate.is_dir():
            candidate = candidate / "index.html"
        return candidate if candidate.is_file() else None


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: tests and `make run` print their own
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            path = urlsplit(self.path).path
            server.hits[path] += 1
            if path in server.routes:
                server.routes[path](self)
                return
            file = server.resolve(path)
            if file is None:
                self._send(404, b"not found\n", {"Content-Type": "text/plain"}, head)
                return
            body = server.body_for(file)
            mtime = datetime.fromtimestamp(file.stat().st_mtime, UTC).replace(microsecond=0)
            modified = max(mtime, server.started) if server.render else mtime
            etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
            headers = {
                "Content-Type": TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0] or "application/octet-stream",
                "ETag": etag,
                "Last-Modified": format_datetime(modified, usegmt=True),
            }
            if server.extra_headers:
                for key, value in server.extra_headers(file).items():
                    headers = {k: v for k, v in headers.items() if k.lower() != key.lower()} | {key: value}
            if self._fresh(etag, modified):
                self._send(304, b"", {"ETag": etag, "Last-Modified": headers["Last-Modified"]}, head)
                return
            if server.gzip_responses and "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024:
                body = gzip.compress(body, 6)
                headers["Content-Encoding"] = "gzip"
            self._send(200, body, headers, head)

        def _fresh(self, etag: str, modified: datetime) -> bool:
            inm = self.headers.get("If-None-Match")
            if inm is not None:
                return etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
            ims = self.headers.get("If-Modified-Since")
            if ims:
                try:
                    return parsedate_to_datetime(ims) >= modified
                except (TypeError, ValueError):
                    return False
            return False

        def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and status != 304:
                self.wfile.write(body)

    return Handler
