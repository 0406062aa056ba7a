"""The Slack bot through the real FastAPI app: requests signed exactly as Slack signs them, the
Slack Web API and response_url served by a real HTTP server on loopback that records every call
and answers as Slack does. Shared builders (the fake Slack, signing, a DailyBrief) live here."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from embed.encoder import FakeEncoder
from embed.index import IndexStore
from embed.pipeline import embed_pending
from digest.summary.schema import (
    DailyBrief,
    InsightCard,
    PodcastBrief,
    PodcastInsight,
    Sentence,
    SourceRef,
    to_dict,
)
from store import repo
from store.db import open_database
from store.entry import Entry, Kind, Segment
from store.models import Brief, SlackRequest
from tests.conftest import make_settings

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
CHANNEL = "C0BRIEF01"
TODAY = datetime.now(UTC).date().isoformat()


# --- a Slack that records ----------------------------------------------------------------------


class FakeSlack:
    """Slack's Web API (`/api/<method>`) and response_url webhooks (`/hooks/<id>`) on loopback.

    `failures` queues answers for the next chat.postMessage calls: ("ratelimited", 7) answers
    429 with Retry-After 7; ("server_error", 0) a 500 after storing the message (Slack posted
    it, then failed to say so); any other ("error_name", 0) a 200 `{"ok": false, "error": ...}`.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.messages: list[dict] = []  # what was posted, as conversations.history returns it
        self.failures: list[tuple[str, float]] = []
        self.changed = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.handle(self, {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                json_body = "json" in (self.headers.get("content-type") or "")
                fake.handle(self, json.loads(raw) if json_body else {k: v[0] for k, v in parse_qs(raw).items()})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeSlack:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        path = urlsplit(handler.path).path
        status, headers, answer = self.answer(path, body)
        with self.changed:
            self.calls.append((path, body))
            self.changed.notify_all()
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        for name, value in (headers | {"Content-Type": "application/json; charset=utf-8"}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def answer(self, path: str, body: dict) -> tuple[int, dict, dict]:
        if path.startswith("/hooks/"):
            return 200, {}, {"ok": True}
        if path == "/api/auth.test":
            return 200, {}, {"ok": True, "url": "https://test.slack.com/", "team": "Test", "user": "briefcast",
                             "team_id": "T0TEAM", "user_id": "U0BOT", "bot_id": "B0BOT"}
        if path == "/api/chat.postMessage":
            return self.post_message(body)
        if path == "/api/conversations.history":
            return 200, {}, {"ok": True, "messages": list(reversed(self.messages)), "has_more": False}
        return 404, {}, {"ok": False, "error": "unknown_method"}

    def post_message(self, body: dict) -> tuple[int, dict, dict]:
        failure = self.failures.pop(0) if self.failures else None
        if failure and failure[0] == "ratelimited":
            return 429, {"Retry-After": str(int(failure[1]))}, {"ok": False, "error": "ratelimited"}
        if failure and failure[0] != "server_error":
            return 200, {}, {"ok": False, "error": failure[0]}
        ts = f"{time.time():.6f}"
        self.messages.append({"type": "message", "ts": ts, "text": body.get("text"), "metadata": body.get("metadata")})
        if failure:
            return 500, {}, {"ok": False, "error": "internal_error"}
        return 200, {}, {"ok": True, "channel": body.get("channel"), "ts": ts,
                         "message": {"text": body.get("text"), "ts": ts}}

    def posts(self) -> list[dict]:
        """Every chat.postMessage Slack accepted (a refused or rate-limited one posted nothing)."""
        return [m for m in self.messages]

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body in self.calls if p == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30.0) -> list[dict]:
        """Wait until `count` calls to `path` arrived (lazy listeners answer after the ack)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.bodies(path)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{path}: {len(self.bodies(path))} calls, expected {count}: {self.calls}")
                self.changed.wait(left)
        return self.bodies(path)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


# --- signing like Slack --------------------------------------------------------------------------


def slack_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None,
                  content_type: str = "application/x-www-form-urlencoded") -> dict:
    """X-Slack-Signature: v0= + HMAC-SHA256(signing secret, "v0:{timestamp}:{raw body}")."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}",
            "Content-Type": content_type}


def command_body(command: str, text: str, slack: FakeSlack, trigger: str = "13345224609.738474920.8088930838d88f008e0") -> bytes:
    return urlencode({
        "token": "legacy-unused", "team_id": "T0TEAM", "team_domain": "test", "channel_id": "C0ASK",
        "channel_name": "general", "user_id": "U0ALICE", "user_name": "alice", "command": command, "text": text,
        "api_app_id": "A0APP", "response_url": f"{slack.url}/hooks/T0TEAM/1234/{trigger[:8]}",
        "trigger_id": trigger,
    }).encode()


def event_body(event_id: str, text: str, ts: str) -> bytes:
    return json.dumps({
        "token": "legacy-unused", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": event_id, "event_time": int(time.time()), "authorizations": [{"team_id": "T0TEAM", "user_id": "U0BOT", "is_bot": True}],
        "event": {"type": "app_mention", "user": "U0ALICE", "text": text, "ts": ts, "channel": "C0ASK", "event_ts": ts},
    }).encode()


def post_signed(client: TestClient, body: bytes, content_type: str = "application/x-www-form-urlencoded", **headers):
    return client.post("/slack/events", content=body, headers=slack_headers(body, content_type=content_type) | headers)


# --- a brief and a world to search -----------------------------------------------------------


def ref(n: int, kind: str = "article", publisher: str = "Chip Wire", start: float | None = None) -> SourceRef:
    return SourceRef(item_id=n, title=f"Source {n} on export controls", url=f"https://news.example/{n}",
                     publisher=publisher, kind=kind, published="2026-11-30T08:00:00+00:00", start=start)


def card(n: int, summary: str | None = None) -> InsightCard:
    said = lambda text: [Sentence(text, passage_ids=[n])]  # noqa: E731
    return InsightCard(
        story_id=n, title=f"Insight {n}: memory bandwidth caps reshape chip exports", persona="Policy Maker",
        summary=said(summary or f"Summary {n}: the new rule counts HBM bandwidth, not only FLOPs."),
        key_takeaway=said(f"Takeaway {n}: expect licence demand to shift to older parts."),
        key_insights=said("k"), principles=said("p"), in_practice=said("i"), topics=["export controls"],
        best_for=["Policy Maker"], sources=[ref(100 + n), ref(200 + n, publisher="Beijing Desk")],
        related=[ref(300 + n, publisher="Related Weekly")], attribution="Original article published by Chip Wire",
        reading_minutes=3,
    )


def make_brief(topic: str = "ai-geopolitics", day: str = TODAY, cards: int = 5, summary: str | None = None) -> DailyBrief:
    episode = ref(900, kind="episode", publisher="Compute Pod", start=3725.0)
    other = ref(901, kind="episode", publisher="Sinica", start=61.0)
    podcasts = PodcastBrief(topic=topic, day=day, insights=[PodcastInsight(
        insight=Sentence("Labs are moving training runs to domestic accelerators.", [9]), episode=episode,
        related=[PodcastInsight(insight=Sentence("Huawei parts now train mid-size models.", [10]), episode=other)])])
    return DailyBrief(topic=topic, topic_title="AI geopolitics", day=day, generated_at=f"{day}T07:00:00+00:00",
                      cards=[card(n, summary) for n in range(1, cards + 1)], lead=None, podcasts=podcasts,
                      unverified=[Sentence("A rumoured ban on all GPUs next week.", [11], unverified=True)])


def store_brief(sessions, brief: DailyBrief) -> int:
    with sessions() as session, session.begin():
        row = Brief(topic=brief.topic, day=brief.day, payload=to_dict(brief), content_hash="h" * 64)
        session.add(row)
        session.flush()
        return row.id


ARTICLE = ("Export controls on AI accelerators now include a memory bandwidth threshold. "
           "Chinese labs are moving to domestic chips and open-weight models. ") * 4


def build_world(settings) -> None:
    """An article and an episode (with a timed segment), embedded with the fake encoder."""
    sessions = open_database(settings.db_url)
    with sessions() as session, session.begin():
        src, _ = repo.add_source(session, "https://news.example/feed", topic="ai-geopolitics", title="Chip Wire")
        episode = Entry(title="Compute Pod 42", kind=Kind.EPISODE, guid="ep", url="https://pod.example/42",
                        language="en", published=datetime(2026, 11, 29, 6, tzinfo=UTC),
                        segments=[Segment("Export controls keep tightening on accelerators.", 61.0, 70.5, "Ana")])
        episode.text = episode.segments[0].text
        article = Entry(title="Chip rules count memory bandwidth", text=ARTICLE, guid="a", url="https://news.example/a",
                        language="en", published=datetime(2026, 11, 30, 9, tzinfo=UTC))
        repo.upsert_entries(session, src, [article, episode])
    embed_pending(sessions, FakeEncoder(), IndexStore(settings.index_dir))
    sessions.kw["bind"].dispose()


def slack_settings(tmp_path, db_url, slack: FakeSlack, **overrides):
    values = dict(encoder="fake", slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_channel=CHANNEL,
                  slack_api_url=f"{slack.url}/api/", slack_timeout=5.0)
    return make_settings(tmp_path, db_url, **(values | overrides))


@pytest.fixture
def bot(tmp_path, sqlite_url, slack):
    settings = slack_settings(tmp_path, sqlite_url, slack)
    build_world(settings)
    sessions = open_database(settings.db_url)
    with TestClient(create_app(settings)) as client:
        yield client, sessions
    sessions.kw["bind"].dispose()


# --- Block Kit checks, independent of the renderer ---------------------------------------------


def assert_valid_blocks(blocks: list[dict]) -> None:
    from slack_sdk.models.blocks import Block

    assert 0 < len(blocks) <= 50
    for block in blocks:
        assert block["type"] in {"header", "section", "context", "divider"}, block
        Block.parse(block).validate_json()  # slack_sdk's own model checks (header 150, section 3000, ...)
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and 0 < len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn" and 0 < len(block["text"]["text"]) <= 3000
        if block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
            assert all(e["type"] == "mrkdwn" and 0 < len(e["text"]) <= 3000 for e in block["elements"])


def all_text(blocks: list[dict]) -> str:
    parts = []
    for block in blocks:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [e["text"] for e in block.get("elements", [])]
    return "\n".join(parts)


# --- configuration -----------------------------------------------------------------------------


def test_without_slack_settings_the_routes_say_so_and_the_api_still_serves(tmp_path, sqlite_url):
    settings = make_settings(tmp_path, sqlite_url, encoder="fake")
    build_world(settings)
    with TestClient(create_app(settings)) as client:
        response = client.post("/slack/events", content=b"command=/brief")
        assert response.status_code == 503
        assert response.json()["error"] == "slack_not_configured"
        assert "BRIEFCAST_SLACK_SIGNING_SECRET" in response.json()["message"]
        assert client.get("/health").status_code == 200
        assert "/slack/events" not in client.get("/openapi.json").json()["paths"]


# --- signatures ---------------------------------------------------------------------------------


def test_url_verification_answers_the_challenge(bot):
    client, _ = bot
    body = json.dumps({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"}).encode()
    response = post_signed(client, body, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_wrong_stale_or_missing_signatures_are_401(bot, slack):
    client, sessions = bot
    store_brief(sessions, make_brief())
    body = command_body("/brief", "", slack)
    wrong = client.post("/slack/events", content=body, headers=slack_headers(body, secret="not-the-secret"))
    assert wrong.status_code == 401 and "does not match" in wrong.json()["message"]
    tampered = client.post("/slack/events", content=body + b"&text=x", headers=slack_headers(body))
    assert tampered.status_code == 401
    stale = client.post("/slack/events", content=body, headers=slack_headers(body, timestamp=int(time.time()) - 301))
    assert stale.status_code == 401 and "stale" in stale.json()["message"]
    future = client.post("/slack/events", content=body, headers=slack_headers(body, timestamp=int(time.time()) + 400))
    assert future.status_code == 401
    missing = client.post("/slack/events", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert missing.status_code == 401 and "missing" in missing.json()["message"]
    assert slack.calls == []  # nothing was answered, not even auth.test
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SlackRequest)) == 0


def test_bolt_itself_refuses_a_bad_signature(tmp_path, sqlite_url, slack):
    """Our check runs first for a clear message; bolt's own RequestVerification stays on behind it."""
    from slack_bolt import BoltRequest

    from api.slack.app import build_bolt_app

    settings = slack_settings(tmp_path, sqlite_url, slack)
    sessions = open_database(settings.db_url)
    bolt = build_bolt_app(settings, sessions, search_context=None)
    body = command_body("/brief", "", slack).decode()
    bad = bolt.dispatch(BoltRequest(body=body, headers=slack_headers(body.encode(), secret="nope")))
    assert bad.status == 401
    stale = bolt.dispatch(BoltRequest(body=body, headers=slack_headers(body.encode(), timestamp=int(time.time()) - 600)))
    assert stale.status == 401
    sessions.kw["bind"].dispose()


# --- /brief --------------------------------------------------------------------------------------


def test_brief_answers_with_todays_insights_as_block_kit(bot, slack):
    client, sessions = bot
    store_brief(sessions, make_brief())
    response = post_signed(client, command_body("/brief", "", slack))
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    assert_valid_blocks(answer["blocks"])
    text = all_text(answer["blocks"])
    assert answer["blocks"][0]["type"] == "header" and TODAY in answer["blocks"][0]["text"]["text"]
    for n in range(1, 6):
        assert f"<https://news.example/{100 + n}|Insight {n}: memory bandwidth caps reshape chip exports>" in text
        assert f"Takeaway {n}" in text and f"<https://news.example/{300 + n}|Source {300 + n}" in text
    assert "Original article published by Chip Wire" in text and "Beijing Desk" in text
    assert "at 1:02:05" in text  # the episode's timestamp
    assert "Insight 1" in answer["text"]  # the notification fallback


def test_brief_without_a_stored_brief_says_so(bot, slack):
    client, sessions = bot
    store_brief(sessions, make_brief(day="2026-11-28"))
    answer = post_signed(client, command_body("/brief", "ai-geopolitics", slack)).json()
    assert f"No brief for *ai-geopolitics* on {TODAY} yet" in answer["text"]
    assert "07:00 UTC" in answer["text"] and "`/brief ai-geopolitics 2026-11-28`" in answer["text"]
    older = post_signed(client, command_body("/brief", "ai-geopolitics 2026-11-28", slack, trigger="2.2.2")).json()
    assert "Insight 1" in all_text(older["blocks"])
    unknown = post_signed(client, command_body("/brief", "knitting", slack, trigger="3.3.3")).json()
    assert "No brief has ever been stored" in unknown["text"]
    bad_day = post_signed(client, command_body("/brief", "2026-13-45", slack, trigger="4.4.4")).json()
    assert "is not a date" in bad_day["text"]


def test_a_stored_brief_that_cannot_be_read_is_named(bot, slack):
    client, sessions = bot
    with sessions() as session, session.begin():
        session.add(Brief(topic="ai-geopolitics", day=TODAY, payload={"topic": "ai-geopolitics", "cards": 5},
                          content_hash="h" * 64))
    answer = post_signed(client, command_body("/brief", "", slack)).json()
    assert f"(ai-geopolitics, {TODAY}) cannot be read" in answer["text"]


def test_a_retried_command_is_acknowledged_without_a_second_answer(bot, slack):
    client, sessions = bot
    store_brief(sessions, make_brief())
    body = command_body("/brief", "", slack)
    first = post_signed(client, body)
    assert "blocks" in first.json()
    again = post_signed(client, body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200 and again.content == b""
    with sessions() as session:
        assert session.scalars(select(SlackRequest.key)).all() == [f"command:{'13345224609.738474920.8088930838d88f008e0'}"]


# --- /ask and mentions ---------------------------------------------------------------------------


def test_ask_acknowledges_then_answers_with_sources(bot, slack):
    client, _ = bot
    ack = post_signed(client, command_body("/ask", "export controls on accelerators", slack))
    assert ack.status_code == 200 and "Searching" in ack.json()["text"]
    (answer,) = slack.wait_for("/hooks/T0TEAM/1234/13345224")
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert_valid_blocks(answer["blocks"])
    text = all_text(answer["blocks"])
    assert "<https://news.example/a|Chip rules count memory bandwidth>" in text and "2026-11-30" in text
    assert "<https://pod.example/42#t=61|Compute Pod 42>" in text and "at 1:01–1:10" in text and "Chip Wire" in text


def test_ask_on_an_empty_index_says_nothing_matches(tmp_path, sqlite_url, slack):
    settings = slack_settings(tmp_path, sqlite_url, slack)
    with TestClient(create_app(settings)) as client:
        post_signed(client, command_body("/ask", "export controls", slack))
        (answer,) = slack.wait_for("/hooks/T0TEAM/1234/13345224")
    assert_valid_blocks(answer["blocks"])
    assert "Nothing in the index matches" in all_text(answer["blocks"])


def test_ask_without_a_question_explains_usage(bot, slack):
    client, _ = bot
    answer = post_signed(client, command_body("/ask", "   ", slack)).json()
    assert "Usage: `/ask <question>`" in answer["text"]
    too_long = post_signed(client, command_body("/ask", "why " * 300, slack, trigger="9.9.9")).json()
    assert "at most 1000" in too_long["text"]


def test_a_mention_is_answered_in_its_thread_once_even_when_slack_retries(bot, slack):
    client, sessions = bot
    first = event_body("Ev0001", "<@U0BOT> what about export controls?", "1700000000.000100")
    assert post_signed(client, first, content_type="application/json").status_code == 200
    (posted,) = slack.wait_for("/api/chat.postMessage")
    assert posted["thread_ts"] == "1700000000.000100" and posted["channel"] == "C0ASK"
    assert "Chip rules count memory bandwidth" in all_text(posted["blocks"])
    retried = post_signed(client, first, content_type="application/json",
                          **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert retried.status_code == 200
    # A later, different event is answered; had the retry been redone, its answer (queued first)
    # would be among these two posts in place of the later one.
    later = event_body("Ev0002", "<@U0BOT> and open-weight models?", "1700000001.000200")
    post_signed(client, later, content_type="application/json")
    posts = slack.wait_for("/api/chat.postMessage", count=2)
    assert sorted(p["thread_ts"] for p in posts) == ["1700000000.000100", "1700000001.000200"]
    with sessions() as session:
        assert sorted(session.scalars(select(SlackRequest.key))) == ["event:Ev0001", "event:Ev0002"]


# --- a real server -------------------------------------------------------------------------------


@pytest.mark.slow
def test_briefcast_serve_answers_signed_slack_requests(tmp_path, slack):
    """`briefcast serve` with the BRIEFCAST_SLACK_* variables, two uvicorn workers, real HTTP."""

    import httpx

    from tests.serve_process import briefcast_serve, serve_env

    settings = slack_settings(tmp_path, f"sqlite:///{tmp_path / 'serve.db'}", slack)
    build_world(settings)
    sessions = open_database(settings.db_url)
    store_brief(sessions, make_brief())
    sessions.kw["bind"].dispose()
    env = serve_env(settings, tmp_path, BRIEFCAST_ENCODER="fake", BRIEFCAST_SLACK_BOT_TOKEN=TOKEN,
                    BRIEFCAST_SLACK_SIGNING_SECRET=SECRET, BRIEFCAST_SLACK_API_URL=f"{slack.url}/api/")
    with briefcast_serve(env, tmp_path / "serve.log", workers=2) as (base, _):
        body = command_body("/ask", "export controls", slack, trigger="77.77.77")
        ack = httpx.post(base + "/slack/events", content=body, headers=slack_headers(body), timeout=30)
        assert ack.status_code == 200 and "Searching" in ack.json()["text"]
        (answer,) = slack.wait_for("/hooks/T0TEAM/1234/77.77.77")
        assert "<https://pod.example/42#t=61|Compute Pod 42>" in all_text(answer["blocks"])
        body = command_body("/brief", "", slack, trigger="88.88.88")
        brief = httpx.post(base + "/slack/events", content=body, headers=slack_headers(body), timeout=30)
        assert "Insight 3" in all_text(brief.json()["blocks"])
        bad = httpx.post(base + "/slack/events", content=body, headers=slack_headers(body, secret="x"), timeout=30)
        assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"


def test_racing_claims_of_one_event_have_one_winner(sessions):
    """Two API workers receiving the same retried event at once: the unique key lets one through."""
    from concurrent.futures import ThreadPoolExecutor

    from api.slack.retries import claim, release, request_key

    key, kind = request_key(json.loads(event_body("EvRace", "<@U0BOT> hi", "1.2")))
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda _: claim(sessions, key, kind), range(8)))
    assert won.count(True) == 1
    release(sessions, key)  # a failed handler frees it: Slack's next retry does the work
    assert claim(sessions, key, kind) is True
    assert request_key({"type": "url_verification", "challenge": "x"}) is None
