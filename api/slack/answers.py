"""What `/brief` and `/ask` answer, as Slack message payloads (text + blocks), without Slack.

`/brief` shows the brief stored for the day and never builds one: building runs the ranking and
the summariser over the day's stories (minutes with a local model), which the worker does at the
topic's send time; a slash command any workspace member can type must not start that.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.slack import blocks as bk
from digest import slack_blocks as sb
from digest.slack import load_brief
from store.models import Brief
from store.settings import Settings

MAX_QUESTION_CHARS = 1000  # as the search API's q
ASK_RESULTS = 5
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")


def message(text: str, blocks: list[dict] | None = None) -> dict:
    return {"text": text, "blocks": blocks or [sb.section(text)], "response_type": "ephemeral"}


def find_brief(sessions: sessionmaker[Session], topic: str, day: str) -> Brief | None:
    with sessions() as session:
        return session.scalar(select(Brief).where(Brief.topic == topic, Brief.day == day))


def latest_day(sessions: sessionmaker[Session], topic: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(Brief.day).where(Brief.topic == topic).order_by(Brief.day.desc()).limit(1))


def topic_today(settings: Settings, topic: str, now: datetime | None = None) -> tuple[date, str | None]:
    """Today in the topic's time zone, and when its brief is sent ("07:00 UTC"); UTC for a topic
    with no profile (a brief may still be stored for it)."""
    from digest.topics import TopicError, load_topic  # numpy: only when a command needs it

    now = now or datetime.now(UTC)
    try:
        profile = load_topic(settings, topic)
    except TopicError:
        return now.astimezone(UTC).date(), None
    return now.astimezone(profile.zone).date(), f"{profile.send_time} {profile.timezone}"


def parse_brief_args(settings: Settings, text: str) -> tuple[str, str | None]:
    """`/brief [topic] [YYYY-MM-DD]` -> (topic, day or None for today)."""
    words = (text or "").split()
    day = next((w for w in words if _DAY.match(w)), None)
    others = [w for w in words if w != day]
    return (others[0] if others else settings.slack_topic), day


def brief_reply(settings: Settings, sessions: sessionmaker[Session], text: str, now: datetime | None = None) -> dict:
    topic, day = parse_brief_args(settings, text)
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            return message(f"{day} is not a date: use YYYY-MM-DD, e.g. `/brief {topic} 2026-11-30`.")
    today, send_at = topic_today(settings, topic, now)
    day = day or today.isoformat()
    row = find_brief(sessions, topic, day)
    if row is None:
        return message(_no_brief(sessions, topic, day, send_at))
    brief = load_brief(row)
    return {"text": sb.brief_text(brief), "blocks": sb.brief_blocks(brief), "response_type": "ephemeral"}


def _no_brief(sessions: sessionmaker[Session], topic: str, day: str, send_at: str | None) -> str:
    shown = sb.escape(topic)
    text = f"No brief for *{shown}* on {day} yet."
    if send_at:
        text += f" The worker builds it at {send_at} (or run `briefcast digest --topic {shown}`)."
    latest = latest_day(sessions, topic)
    if latest:
        text += f" The latest is from {latest}: `/brief {shown} {latest}`."
    elif send_at is None:
        text += " No brief has ever been stored for this topic: is the name right?"
    return text


def question_problem(text: str) -> str | None:
    """Why a question cannot be asked, or None."""
    if not text.strip():
        return "Usage: `/ask <question>`, e.g. `/ask what did podcasts say about export controls?`"
    if len(text) > MAX_QUESTION_CHARS:
        return f"That question is {len(text)} characters long; ask in at most {MAX_QUESTION_CHARS}."
    return None


def strip_mentions(text: str) -> str:
    return " ".join(_MENTION.sub(" ", text or "").split())


def ask_reply(search_context, question: str) -> dict:
    from embed.search import search

    question = " ".join(question.split())
    hits = search(search_context, question, k=ASK_RESULTS)
    return {"text": bk.answer_text(question, hits), "blocks": bk.answer_blocks(question, hits),
            "response_type": "ephemeral"}
