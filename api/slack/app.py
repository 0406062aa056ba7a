"""The Slack app (slack-bolt) behind `POST /slack/events`: slash commands and events.

- `/brief [topic] [YYYY-MM-DD]`: the stored brief, answered in the acknowledgement itself (a
  database read, well inside Slack's 3 seconds).
- `/ask <question>` and @-mentions: acknowledged at once, answered by a lazy listener (the first
  search may load the encoder) through the command's response_url / chat.postMessage in the thread.

Request signatures are checked before bolt sees the request, for a clear 401 (bolt's own check
then runs as well): the headers (present, well-formed, fresh) before the body is read, then the
HMAC over the body's bytes. The bolt app is synchronous, like search and the database: the FastAPI route
runs its dispatch in the thread pool so a slow listener never blocks the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from store.settings import Settings

log = logging.getLogger(__name__)
STALE_SECONDS = 60 * 5  # Slack's own rule: older requests may be replays
NOT_CONFIGURED = ("Slack is not configured: set BRIEFCAST_SLACK_BOT_TOKEN and BRIEFCAST_SLACK_SIGNING_SECRET "
                  "(and BRIEFCAST_SLACK_CHANNEL for the daily post)")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() takes '²', int() 4,300 digits at most
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def slack_configured(settings: Settings) -> bool:
    return bool(settings.slack_bot_token and settings.slack_signing_secret
                and settings.slack_bot_token.get_secret_value() and settings.slack_signing_secret.get_secret_value())


def header_problem(headers, now: float | None = None) -> str | None:
    """Why the signature headers cannot be from Slack, or None. Checked before the body is read:
    an unsigned request costs the server nothing but its headers."""
    timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature: requests must come from Slack"
    if not _TIMESTAMP.fullmatch(timestamp):
        return "malformed X-Slack-Request-Timestamp: expected Unix time in seconds (ASCII digits)"
    if not _SIGNATURE.fullmatch(signature):
        return "malformed X-Slack-Signature: expected v0= and 64 lowercase hex digits"
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > STALE_SECONDS:
        return "stale request: X-Slack-Request-Timestamp is more than 5 minutes from now (a replay?)"
    return None


def signature_problem(secret: str, headers, body: bytes, now: float | None = None) -> str | None:
    """Why a request is not from Slack, or None: v0 HMAC-SHA256 of `v0:timestamp:body`, over the
    body's bytes as sent (whatever their encoding)."""
    problem = header_problem(headers, now)
    if problem:
        return problem
    timestamp = headers["x-slack-request-timestamp"].encode()
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, headers["x-slack-signature"]):
        return "X-Slack-Signature does not match the body (wrong signing secret?)"
    return None


def slack_router(settings: Settings, sessions: sessionmaker[Session], search_context) -> APIRouter:
    router = APIRouter()
    bolt = build_bolt_app(settings, sessions, search_context) if slack_configured(settings) else None

    @router.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        if bolt is None:
            return JSONResponse({"error": "slack_not_configured", "message": NOT_CONFIGURED}, status_code=503)
        problem = header_problem(request.headers)
        if problem:  # before the body is read: an unsigned request is not worth 64 KB
            return JSONResponse({"error": "unauthorized", "message": problem}, status_code=401)
        body = await request.body()  # api.limits stops it at 64 KB, chunked or not
        problem = signature_problem(settings.slack_signing_secret.get_secret_value(), request.headers, body)
        if problem:
            return JSONResponse({"error": "unauthorized", "message": problem}, status_code=401)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"error": "invalid_request", "message": "body is not UTF-8"}, status_code=400)
        from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response

        bolt_response = await run_in_threadpool(bolt.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    return router


def build_bolt_app(settings: Settings, sessions: sessionmaker[Session], search_context):
    from slack_bolt import App

    from digest.slack import web_client

    app = App(client=web_client(settings), signing_secret=settings.slack_signing_secret.get_secret_value(),
              process_before_response=False, token_verification_enabled=False, logger=log)
    app.middleware(_skip_retries(sessions))
    _register_brief(app, settings, sessions)
    _register_ask(app, sessions, search_context)
    return app


def _skip_retries(sessions: sessionmaker[Session]):
    from slack_bolt import BoltResponse

    from api.slack.retries import claim, request_key

    def skip_retries(req, next):
        found = request_key(req.body)
        if found is None:
            return next()
        key, kind = found
        if not claim(sessions, key, kind):
            retry = req.headers.get("x-slack-retry-num", ["-"])[0]
            log.info("slack %s %s already handled (retry %s): acknowledged, not redone", kind, key, retry)
            return BoltResponse(status=200, body="")
        req.context["claim_key"] = key
        return next()

    return skip_retries


def _register_brief(app, settings: Settings, sessions: sessionmaker[Session]) -> None:
    from api.slack.answers import brief_reply, message
    from digest.slack import BriefUnreadable
    from api.slack.retries import release

    @app.command("/brief")
    def brief_command(ack, command, context):
        try:
            reply = brief_reply(settings, sessions, command.get("text", ""))
        except BriefUnreadable as exc:
            reply = message(str(exc))
        except Exception:
            release(sessions, context.get("claim_key"))
            raise
        ack(**reply)


def _register_ask(app, sessions: sessionmaker[Session], search_context) -> None:
    from api.slack.answers import ask_reply, message, question_problem, strip_mentions
    from api.slack.retries import release

    def acknowledge_question(ack, command):
        problem = question_problem(command.get("text", ""))
        ack(**message(problem or f"Searching for “{command['text'].strip()[:200]}”…"))

    def answer_question(command, respond, context):
        question = command.get("text", "")
        if question_problem(question):
            return  # already answered in the acknowledgement
        try:
            reply = ask_reply(search_context, question)
        except Exception:
            release(sessions, context.get("claim_key"))
            reply = message(_logged_failure("/ask"))
        respond(**reply, replace_original=False)

    def acknowledge_event(ack):
        ack()

    def answer_mention(event, say, context):
        question = strip_mentions(event.get("text", ""))
        thread = event.get("thread_ts") or event.get("ts")
        problem = question_problem(question)
        try:
            reply = message(problem) if problem else ask_reply(search_context, question)
        except Exception:
            release(sessions, context.get("claim_key"))
            reply = message(_logged_failure("a mention"))
        reply.pop("response_type", None)
        say(**reply, thread_ts=thread)

    app.command("/ask")(ack=acknowledge_question, lazy=[answer_question])
    app.event("app_mention")(ack=acknowledge_event, lazy=[answer_mention])


def _logged_failure(what: str) -> str:
    """Called in an `except` block: the traceback goes to the log under a new request id, and the
    channel reads only that id (an exception's text can carry SQL and its parameters)."""
    request_id = uuid.uuid4().hex
    log.exception("%s failed (request id %s)", what, request_id)
    return f"Search failed (request id {request_id}); the server log has the details."
