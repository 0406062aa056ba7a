"""Stored briefs for the pages: which exist, which one `/` opens, and one by topic and day.

Pages read the same `briefs` row the email and Slack were rendered from; nothing is rebuilt here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from api.web.languages import other_lang
from digest.render import clean_text
from digest.summary.schema import DailyBrief
from store.models import Brief, BriefStory

LIST_LIMIT = 400  # briefs listed on /briefs (about a year of one topic)


@dataclass(frozen=True)
class BriefEntry:
    topic: str
    day: str
    title: str  # the topic's title
    lead: str  # the first card's title
    lead_lang: str = ""  # its language, when the story was covered only in another one


def brief_entries(sessions) -> list[BriefEntry]:
    """Newest first. Reads each payload once for its titles (the list is capped)."""
    with sessions() as session:
        rows = session.scalars(select(Brief).order_by(Brief.day.desc(), Brief.topic).limit(LIST_LIMIT)).all()
        return [_entry(r) for r in rows]


def _entry(row: Brief) -> BriefEntry:
    payload = row.payload or {}
    cards = payload.get("cards") or []
    first = cards[0] if cards and isinstance(cards[0], dict) else {}
    return BriefEntry(row.topic, row.day, clean_text(payload.get("topic_title")) or row.topic,
                      clean_text(first.get("title")), other_lang(first.get("covered_only_in")))


def load_brief(sessions, topic: str, day: str) -> DailyBrief | None:
    from digest.slack import BriefUnreadable, load_brief as parse

    with sessions() as session:
        row = session.scalar(select(Brief).where(Brief.topic == topic, Brief.day == day))
        if row is None:
            return None
        try:
            return parse(row)
        except BriefUnreadable:
            return None


def front_brief(settings, sessions) -> tuple[str, str] | None:
    """(topic, day) `/` opens: today's brief of the web topic (its own time zone), else that
    topic's latest, else the latest of any topic."""
    from api.slack.answers import topic_today

    topic = settings.web_topic
    today, _ = topic_today(settings, topic)
    with sessions() as session:
        for query in (select(Brief).where(Brief.topic == topic, Brief.day == today.isoformat()),
                      select(Brief).where(Brief.topic == topic).order_by(Brief.day.desc()),
                      select(Brief).order_by(Brief.day.desc(), Brief.created_at.desc())):
            row = session.scalars(query.limit(1)).first()
            if row is not None:
                return row.topic, row.day
    return None


def briefs_with_story(sessions, story_id: int) -> list[DailyBrief]:
    """Every stored brief that carried the story, newest first."""
    from digest.slack import BriefUnreadable, load_brief as parse

    with sessions() as session:
        rows = session.scalars(select(Brief).join(BriefStory, BriefStory.brief_id == Brief.id)
                               .where(BriefStory.story_id == story_id).order_by(Brief.day.desc())).all()
        briefs = []
        for row in rows:
            try:
                briefs.append(parse(row))
            except BriefUnreadable:
                continue
        return briefs
