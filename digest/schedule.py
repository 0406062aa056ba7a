"""When the distributed pipeline does what: Celery beat's schedule, built from settings and the
topic profiles.

Beat only ticks; the tasks decide. `refresh_due` enqueues each source whose own due time
(`refresh_minutes`, backoff after failures) has come; `embed` runs every tick and skips while the
previous run goes on; `briefs_due` looks at each topic's local clock (its profile's time zone and
send time) and builds the topic's brief once that time has passed on the topic's local day; each
subscriber gets it at the same send time in their own time zone (never before it is built). A
tick that a stopped beat missed is caught up by the next one, and a second beat started by
mistake changes nothing: the run of a topic's day is claimed once in Redis, the brief is built
once per topic and day, and each delivery is claimed once in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from store.settings import Settings


def beat_schedule(settings: Settings) -> dict:
    """Celery's `beat_schedule`: intervals in seconds; each tick expires when the next is due, so a
    backlog of ticks never piles up behind a slow worker."""

    def every(seconds: int, task: str) -> dict:
        return {"task": task, "schedule": float(seconds), "options": {"expires": float(seconds)}}

    return {
        "refresh-due-sources": every(settings.worker_refresh_check_seconds, "briefcast.refresh_due"),
        "embed-and-cluster": every(settings.worker_embed_every_seconds, "briefcast.embed"),
        "briefs-due": every(settings.worker_briefs_check_seconds, "briefcast.briefs_due"),
        "transcribe-queued": every(settings.worker_asr_every_seconds, "briefcast.transcribe"),
    }


@dataclass(frozen=True)
class SendTime:
    topic: str
    zone: ZoneInfo
    at: time  # local wall-clock time


def send_times(profiles: Iterable) -> list[SendTime]:
    """From topic profiles (digest.topics.TopicProfile: name, zone, send_at)."""
    return [SendTime(p.name, p.zone, p.send_at) for p in profiles]


def due_briefs(times: Iterable[SendTime], now: datetime | None = None) -> list[tuple[str, str]]:
    """(topic, day) of every topic whose send time has passed today in its own time zone.

    `day` is the topic's local date (YYYY-MM-DD): the brief of that day. Before the send time
    nothing is due (yesterday's brief was due yesterday and is done or being retried)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    due = []
    for entry in times:
        local = now.astimezone(entry.zone)
        if local.time().replace(tzinfo=None) >= entry.at:
            due.append((entry.topic, local.date().isoformat()))
    return due


def subscriber_due(day: str, at: time, zone: ZoneInfo, now: datetime | None = None) -> bool:
    """A subscriber gets the (topic, day) brief at the topic's send time in their own time zone:
    a reader in Tokyo of a UTC topic gets it as soon as it is built, one in New York at 07:00
    New York time."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now >= datetime.combine(date.fromisoformat(day), at, tzinfo=zone)
