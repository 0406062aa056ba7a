"""Hard edges of the HTTP API met where a user meets them: `briefcast serve` (uvicorn, h11) on
loopback, spoken to over a raw socket so that nothing between the test and the server (httpx, the
TestClient) buffers, re-encodes or completes a request on our behalf.

- A chunked body has no Content-Length: the server must stop reading at the limit (413 while we
  are still sending) and /slack/events must refuse an unsigned request before reading its body.
- Malformed Slack headers (a non-ASCII digit, a 5,000-digit timestamp, a non-UTF-8 body) get 401.
- An unexpected failure answers `{"error": "internal", "request_id": ...}`, never SQL; the
  server's log has the traceback under that id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import socket
import sqlite3
import time

import httpx
import pytest

from api.limits import MAX_BODY_BYTES
from tests.conftest import make_settings
from tests.serve_process import briefcast_serve, serve_env
from tests.test_api import build_world

SECRET = "edge-signing-secret"
CHUNK = 16 * 1024
ANSWER_WAIT = 10.0  # seconds we give the server to answer a request it should refuse at once


class RawRequest:
    """One HTTP/1.1 request written by hand: the head at once, the body in chunks we pace."""

    def __init__(self, port: int, method: str, target: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT)
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1"] + [k + b": " + v for k, v in headers]
        self.sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
        self.body_sent = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.body_sent += len(data)

    def send_chunk(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
        self.body_sent += len(data)

    def end_chunks(self) -> None:
        self.sock.sendall(b"0\r\n\r\n")

    def answer(self, wait: float = ANSWER_WAIT) -> tuple[int, dict] | None:
        """(status, JSON body) if the server answers within `wait` seconds, else None."""
        readable, _, _ = select.select([self.sock], [], [], wait)
        if not readable:
            return None
        raw = b""
        while b"\r\n\r\n" not in raw:
            piece = self.sock.recv(65536)
            if not piece:
                return None
            raw += piece
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            piece = self.sock.recv(65536)
            if not piece:
                break
            body += piece
        return int(lines[0].split()[1]), json.loads(body[:length] or b"null")

    def push_until_refused(self, most: int) -> int:
        """Keep sending body chunks as fast as the socket takes them, until the server closes
        the connection or `most` bytes went; returns the bytes the kernel accepted meanwhile."""
        accepted, block = 0, b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
        self.sock.settimeout(5)
        try:
            while accepted < most:
                self.sock.sendall(block)
                accepted += CHUNK
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        return accepted

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`briefcast serve` with Slack configured, one worker, SQLite; its stderr kept to read."""
    tmp = tmp_path_factory.mktemp("edges")
    settings = make_settings(tmp, f"sqlite:///{tmp / 'edges.db'}", encoder="fake")
    key = build_world(settings)
    env = serve_env(settings, tmp, BRIEFCAST_ENCODER="fake", BRIEFCAST_SLACK_BOT_TOKEN="xoxb-edge",
                    BRIEFCAST_SLACK_SIGNING_SECRET=SECRET)
    with briefcast_serve(env, tmp / "server.log") as (base, port):
        yield {"port": port, "base": base, "key": key, "db": tmp / "edges.db", "log": tmp / "server.log"}


def slack_head(timestamp: bytes, signature: bytes, framing: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"Content-Type", b"application/json"), (b"X-Slack-Request-Timestamp", timestamp),
            (b"X-Slack-Signature", signature), framing]


def sign(body: bytes, timestamp: int) -> bytes:
    return b"v0=" + hmac.new(SECRET.encode(), b"v0:%d:" % timestamp + body, hashlib.sha256).hexdigest().encode()


CHUNKED = (b"Transfer-Encoding", b"chunked")


# --- 1. a chunked body stops at the limit ----------------------------------------------------------


def test_an_unsigned_chunked_post_is_refused_before_its_body_is_read(server):
    """The red-team request: no signature headers, no Content-Length, a body that never ends.
    Today's server read it all (512 MB: +1 GB of memory) before answering 401."""
    request = RawRequest(server["port"], "POST", "/slack/events",
                         [(b"Content-Type", b"application/json"), CHUNKED])
    try:
        request.send_chunk(b"x" * 1024)
        answer = request.answer()
        assert answer is not None, f"no answer after {ANSWER_WAIT:g} s: the server is waiting for the whole body"
        status, body = answer
        assert status == 401 and "missing" in body["message"], answer
        assert request.body_sent == 1024  # answered with the body still open
        after = request.push_until_refused(64 * 1024 * 1024)
        assert after < 16 * 1024 * 1024, f"the server went on taking the body after answering: {after} bytes"
    finally:
        request.close()


def test_a_chunked_body_over_the_limit_gets_413_while_it_is_still_being_sent(server):
    """Well-formed, fresh Slack headers, so the route does read the body: the count stops it."""
    now = int(time.time())
    request = RawRequest(server["port"], "POST", "/slack/events",
                         slack_head(str(now).encode(), b"v0=" + b"0" * 64, CHUNKED))
    try:
        while request.body_sent <= MAX_BODY_BYTES:
            request.send_chunk(b"x" * CHUNK)
        answer = request.answer()
        assert answer is not None, f"no answer after {ANSWER_WAIT:g} s with {request.body_sent} bytes sent: buffering"
        assert answer[0] == 413 and answer[1]["error"] == "too_large", answer
        after = request.push_until_refused(64 * 1024 * 1024)
        assert after < 16 * 1024 * 1024, f"the server went on taking the body after 413: {after} bytes"
    finally:
        request.close()


def test_a_signed_chunked_body_under_the_limit_is_still_answered(server):
    body = json.dumps({"type": "url_verification", "challenge": "chunked-ok"}).encode()
    now = int(time.time())
    head = slack_head(str(now).encode(), sign(body, now), CHUNKED)
    request = RawRequest(server["port"], "POST", "/slack/events", head)
    try:
        request.send_chunk(body[:10])
        request.send_chunk(body[10:])
        request.end_chunks()
        assert request.answer() == (200, {"challenge": "chunked-ok"})
    finally:
        request.close()


def test_a_chunked_body_over_the_limit_is_413_on_a_route_fastapi_parses_itself():
    """FastAPI turns an exception raised while it reads a JSON body into a 400; the limit's is a
    413 whatever route reads. In process (the TestClient hands the body over in one piece): the
    tests above time the refusal on a real server."""
    from fastapi import Body, FastAPI
    from fastapi.testclient import TestClient

    from api.limits import RequestSizeLimit

    app = FastAPI()
    app.add_middleware(RequestSizeLimit)

    @app.post("/echo")
    def echo(payload: dict = Body()) -> dict:
        return {"keys": len(payload)}

    def chunks(total: int):
        yield b'{"a": "'
        for _ in range(total // 1024):
            yield b"x" * 1024
        yield b'"}'

    with TestClient(app) as client:
        small = client.post("/echo", content=chunks(1024), headers={"Content-Type": "application/json"})
        large = client.post("/echo", content=chunks(MAX_BODY_BYTES), headers={"Content-Type": "application/json"})
    assert small.status_code == 200 and small.request.headers.get("transfer-encoding") == "chunked"
    assert large.status_code == 413 and large.headers["connection"] == "close", large.text


# --- 8. malformed Slack headers are 401 --------------------------------------------------------------


def post_once(server, head: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, dict]:
    request = RawRequest(server["port"], "POST", "/slack/events", head + [(b"Content-Length", b"%d" % len(body))])
    try:
        request.send(body)
        answer = request.answer()
        assert answer is not None
        return answer
    finally:
        request.close()


@pytest.mark.parametrize("timestamp, signature, body, fragment", [
    (b"\xb2", None, b"{}", "X-Slack-Request-Timestamp"),              # superscript two: str.isdigit() says yes
    (b"9" * 5000, None, b"{}", "X-Slack-Request-Timestamp"),          # int() refuses over 4,300 digits
    (b"0017" + b"\xd9\xa3", None, b"{}", "X-Slack-Request-Timestamp"),  # Arabic-Indic digit after ASCII ones
    (None, b"v0=" + b"0" * 64, b"\xff\xfe not UTF-8", "does not match"),  # non-UTF-8 body, wrong signature
    (None, b"v0=\xff" + b"0" * 63, b"{}", "X-Slack-Signature"),     # a signature that is not hex
    (None, b"v0=" + b"0" * 5000, b"{}", "X-Slack-Signature"),       # nor 64 digits long
])
def test_malformed_slack_headers_are_401_not_500(server, timestamp, signature, body, fragment):
    now = str(int(time.time())).encode()
    status, answer = post_once(server, slack_head(timestamp or now, signature or b"v0=" + b"0" * 64,
                                                  (b"X-Padding", b"-")), body)
    assert status == 401 and answer["error"] == "unauthorized" and fragment in answer["message"], (status, answer)


def test_a_correctly_signed_body_that_is_not_utf8_is_a_bad_request(server):
    """Slack never sends one: the signature is right, so this is not 401 but a malformed body."""
    body = b'{"type": "url_verification", "challenge": "\xff"}'
    now = int(time.time())
    status, answer = post_once(server, slack_head(str(now).encode(), sign(body, now), (b"X-Padding", b"-")), body)
    assert status == 400 and "UTF-8" in answer["message"], (status, answer)


# --- 7. out-of-range input is 422; a failure is an id, not SQL ------------------------------------------


@pytest.mark.parametrize("params, fragment", [
    ({"source": "99999999999999999999999"}, "source"),
    ({"source": "2147483648"}, "source"),
    ({"source": "²"}, "source"),
    ({"since": "0001-01-01T00:00:00+23:59"}, "since"),
    ({"until": "9999-12-31T23:59:59-01:00"}, "until"),
])
def test_out_of_range_filters_are_422_on_the_served_api(server, params, fragment):
    response = httpx.get(server["base"] + "/search", params={"q": "export"} | params,
                         headers={"X-API-Key": server["key"]}, timeout=30)
    assert response.status_code == 422 and response.json()["error"] == "invalid_request", response.text
    assert fragment in response.json()["message"] and "SQL" not in response.text


def test_a_failure_answers_a_request_id_and_logs_the_sql_under_it(server):
    """A real fault (the segments table gone) while the server runs: the client learns an id,
    the log holds the exception and its SQL under that id."""
    db = sqlite3.connect(server["db"])
    db.execute("ALTER TABLE transcript_segments RENAME TO transcript_segments_gone")
    db.commit()
    try:
        response = httpx.get(server["base"] + "/items/2", headers={"X-API-Key": server["key"]}, timeout=30)
    finally:
        db.execute("ALTER TABLE transcript_segments_gone RENAME TO transcript_segments")
        db.commit()
        db.close()
    assert response.status_code == 500, response.text
    body = response.json()
    assert body["error"] == "internal" and len(body["request_id"]) >= 16
    assert response.headers["x-request-id"] == body["request_id"]
    for leak in ("SELECT", "transcript_segments", "OperationalError", "no such table", "[SQL"):
        assert leak not in response.text
    deadline = time.monotonic() + 10
    while body["request_id"] not in (log := server["log"].read_text(errors="replace")) and time.monotonic() < deadline:
        time.sleep(0.1)
    at = log.index(body["request_id"])
    assert "transcript_segments" in log[at:], log[at:at + 2000]
    healthy = httpx.get(server["base"] + "/items/2", headers={"X-API-Key": server["key"]}, timeout=30)
    assert healthy.status_code == 200
