"""Requests refused before anything parses them: an over-long URL (a 10 MB query string) or a
large body. A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and a memory
stream per request, which showed in the search API's latency.

A declared Content-Length over the limit is refused before the app runs. A body without one
(`Transfer-Encoding: chunked`) is counted as the app reads it: the read that passes the limit
raises `BodyTooLarge` (a 413), so no route ever holds more than the limit plus one read (h11
hands the app at most 64 KB at a time). Any answer sent before the body ended (that 413, or
/slack/events' 401 on its headers alone) carries `Connection: close`: uvicorn would otherwise
read and discard the rest of the body to keep the connection alive.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_URL_BYTES = 8192
MAX_BODY_BYTES = 64 * 1024
TOO_LARGE = f"request body over {MAX_BODY_BYTES // 1024} KB"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit. An HTTPException, so FastAPI's own
    body parsing lets it through as a 413 rather than turning it into a 400."""

    def __init__(self) -> None:
        super().__init__(413, TOO_LARGE)


class RequestSizeLimit:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = _refusal(scope, self.max_body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received, started, unread = 0, False, _has_body(scope)

        async def counted_receive() -> Message:
            nonlocal received, unread
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge()
                unread = unread and message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if unread:  # answered before the body ended: close rather than read (drain) the rest
                    message = message | {"headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:  # a route that answers while it reads: too late for a 413
                raise
            await _too_large()(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0")):
            return True
    return False


def _too_large() -> JSONResponse:
    return JSONResponse({"error": "too_large", "message": TOO_LARGE}, 413)


def _refusal(scope: Scope, max_body: int) -> JSONResponse | None:
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    if target > MAX_URL_BYTES:
        return JSONResponse({"error": "uri_too_long", "message": f"request URL over {MAX_URL_BYTES} bytes"}, 414)
    declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
    # h11 has already refused a Content-Length that is not ASCII digits; 20 digits cap the int().
    if declared.isdigit() and (len(declared) > 20 or int(declared) > max_body):
        return _too_large()
    return None
