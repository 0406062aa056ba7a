"""What `briefcast status` reports: is the pipeline moving, and when does the next brief go out.

Read-only, from the database, the topic profiles and the index's metadata file: nothing here
fetches, embeds or loads a model, so it answers in well under a second beside a running worker.
A distributed install that waits for a topic's 07:00 says so here instead of waiting silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from store.models import Brief, BriefStory, Delivery, FetchAttempt, Item, Passage, Source, Story, StoryScore, Subscriber
from store.settings import Settings

FAILING_SHOWN = 20  # failing sources listed by name; the rest are counted
PENDING = ("claimed", "sending")


@dataclass(frozen=True)
class TopicClock:
    """A topic's schedule: its profile's time zone and local send time."""

    name: str
    title: str
    zone: ZoneInfo
    send_at: time


def collect_status(settings: Settings, sessions: sessionmaker[Session], now: datetime | None = None) -> dict:
    """The whole report as plain JSON-ready values."""
    from digest.topics import list_topics

    now = (now or datetime.now(UTC)).astimezone(UTC)
    clocks = [TopicClock(p.name, p.title, p.zone, p.send_at) for p in list_topics(settings).values()]
    with sessions() as session:
        return {
            "now": now.isoformat(timespec="seconds"),
            "sources": source_status(session, now),
            "items": item_status(session),
            "index": index_status(settings, sessions),
            "topics": [topic_status(session, clock, now) for clock in clocks],
        }


# --- sources --------------------------------------------------------------------------------------


def source_status(session: Session, now: datetime) -> dict:
    active = Source.active.is_(True)
    total, live = session.execute(select(func.count(), func.count().filter(active)).select_from(Source)).one()
    due = session.scalar(select(func.count()).select_from(Source)
                         .where(active, or_(Source.next_due_at.is_(None), Source.next_due_at <= now)))
    next_due = session.scalar(select(func.min(Source.next_due_at)).where(active, Source.next_due_at > now))
    failing = list(session.scalars(select(Source).where(active, Source.consecutive_failures > 0)
                                   .order_by(Source.consecutive_failures.desc(), Source.id)))
    last_fetch = session.scalar(select(func.max(FetchAttempt.started_at)))
    return {
        "total": total, "active": live, "removed": total - live, "due_now": due,
        "next_due_at": _iso(next_due), "last_fetch_at": _iso(last_fetch),
        "failing": len(failing),
        "failures": [{"id": s.id, "source": s.title or s.url, "url": s.url, "failures": s.consecutive_failures,
                      "reason": s.last_error, "retry_at": _iso(s.next_due_at)} for s in failing[:FAILING_SHOWN]],
    }


# --- items, passages, the index -------------------------------------------------------------------


def item_status(session: Session) -> dict:
    by_kind = dict(session.execute(select(Item.kind, func.count()).group_by(Item.kind)).all())
    unsplit = session.scalar(select(func.count()).select_from(Item).where(
        or_(Item.passages_hash.is_(None), Item.passages_hash != Item.content_hash)))
    passages, unembedded = session.execute(select(
        func.count(), func.count().filter(Passage.embedded_model.is_(None))).select_from(Passage)).one()
    transcripts = dict(session.execute(select(Item.transcript_status, func.count())
                                       .where(Item.transcript_status.in_(("queued", "failed")))
                                       .group_by(Item.transcript_status)).all())
    return {
        "total": sum(by_kind.values()), "by_kind": by_kind,
        "waiting_to_embed": unsplit,  # items whose text changed since their passages were cut
        "passages": passages, "passages_waiting_to_embed": unembedded or 0,
        "transcription_queued": transcripts.get("queued", 0), "transcription_failed": transcripts.get("failed", 0),
    }


def index_status(settings: Settings, sessions=None) -> dict | None:
    """The live index version's model and size, from its metadata file (None: nothing embedded yet);
    with index_source=database, the vectors the database holds for the passage encoder."""
    if settings.index_source == "database" and sessions is not None:
        from embed.runtime import passage_model
        from store.vectors import vector_count

        model_id, _ = passage_model(settings)
        with sessions() as session:
            count = vector_count(session, model_id)
        return {"vectors": count, "model": model_id, "kind": "database"} if count else None
    from embed.index import IndexStore

    meta = IndexStore(settings.index_dir).meta()
    return None if meta is None else {"vectors": meta.count, "model": meta.model_id, "kind": meta.kind}


# --- topics: stories, the brief, deliveries -------------------------------------------------------


def next_send(clock: TopicClock, now: datetime, built_today: bool) -> tuple[datetime, str]:
    """When the topic's next brief goes out, and in what state today's is: 'scheduled' (today's
    send time is still ahead), 'due' (passed, not built yet: the worker builds it on its next
    tick), or 'sent' (built; the next is tomorrow's)."""
    local = now.astimezone(clock.zone)
    today_at = datetime.combine(local.date(), clock.send_at, tzinfo=clock.zone)
    if local < today_at:
        return today_at, "scheduled"
    if not built_today:
        return today_at, "due"
    return datetime.combine(local.date() + timedelta(days=1), clock.send_at, tzinfo=clock.zone), "built"


def topic_status(session: Session, clock: TopicClock, now: datetime) -> dict:
    local_day = now.astimezone(clock.zone).date()
    day = local_day.isoformat()
    brief = session.scalar(select(Brief).where(Brief.topic == clock.name, Brief.day == day))
    at, state = next_send(clock, now, brief is not None)
    start, end = _day_bounds(local_day, clock.zone)
    seen_today = session.scalar(select(func.count()).select_from(Story)
                                .where(Story.last_seen >= start, Story.last_seen < end))
    ranked, selected = session.execute(select(func.count(), func.count(StoryScore.rank))
                                       .where(StoryScore.topic == clock.name, StoryScore.day == day)).one()
    in_brief = session.scalar(select(func.count()).select_from(BriefStory).where(BriefStory.brief_id == brief.id)) \
        if brief is not None else 0
    return {
        "topic": clock.name, "title": clock.title, "timezone": str(clock.zone.key), "send_time": clock.send_at.strftime("%H:%M"),
        "today": day, "local_time": now.astimezone(clock.zone).isoformat(timespec="minutes"),
        "brief_today": None if brief is None else {"id": brief.id, "built_at": _iso(brief.created_at), "stories": in_brief},
        "next_brief_at": at.isoformat(timespec="minutes"), "next_brief_state": state,
        "next_brief_in_minutes": max(0, int((at - now).total_seconds() // 60)),
        "stories_today": {"seen": seen_today, "ranked": ranked, "selected": selected},
        "deliveries_today": delivery_status(session, clock.name, day),
    }


def delivery_status(session: Session, topic: str, day: str) -> dict:
    """This topic's deliveries of `day`: sent, failed (with the reason), in progress, and the
    active subscribers not yet reached (they get it at the send time in their own time zone)."""
    rows = list(session.scalars(select(Delivery).where(Delivery.topic == topic, Delivery.day == day)
                                .order_by(Delivery.id)))
    counts = Counter(r.status for r in rows)
    reached = {r.target for r in rows if r.channel == "email"}
    subscribers = [s for s in session.scalars(select(Subscriber).where(Subscriber.active.is_(True)))
                   if topic in (s.topics or [])]
    waiting = sum(1 for s in subscribers if s.email not in reached)
    return {
        "sent": counts["sent"], "failed": counts["failed"],
        "pending": waiting + sum(counts[s] for s in PENDING),
        "in_progress": sum(counts[s] for s in PENDING), "not_started": waiting,
        "failures": [{"channel": r.channel, "target": r.target, "reason": r.error, "attempts": r.attempts}
                     for r in rows if r.status == "failed"],
    }


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=zone)
    return start.astimezone(UTC), datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None
