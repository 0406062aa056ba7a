"""Requests refused before anything parses them: an over-long URL (a 10 MB query string) or a
large body. A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and a memory
stream per request, which showed in the search API's latency."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_URL_BYTES = 8192
MAX_BODY_BYTES = 64 * 1024


class RequestSizeLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)


def _refusal(scope: Scope) -> JSONResponse | None:
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    if target > MAX_URL_BYTES:
        return JSONResponse({"error": "uri_too_long", "message": f"request URL over {MAX_URL_BYTES} bytes"}, 414)
    declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return JSONResponse({"error": "too_large", "message": f"request body over {MAX_BODY_BYTES // 1024} KB"}, 413)
    return None
