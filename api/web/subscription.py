"""A subscriber's own settings, changed from their signed link: topics, persona, time zone, send time."""

from __future__ import annotations

import re
from dataclasses import dataclass

from digest.manage_links import parse_manage_token, signature_matches
from digest.subscribers import SubscriberError, check_timezone
from store.models import Subscriber

_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


@dataclass(frozen=True)
class Choices:
    topics: dict[str, str]  # name -> title
    personas: list[str]  # of every topic, in order, once


@dataclass
class SubscriptionValues:
    email: str
    topics: list[str]
    persona: str
    timezone: str
    send_time: str
    active: bool
    unsubscribe_token: str


def subscriber_for_link(session, link: str) -> Subscriber | None:
    parsed = parse_manage_token(link)
    if parsed is None:
        return None
    row = session.get(Subscriber, parsed[0])
    if row is None or not signature_matches(row.id, row.manage_secret, parsed[1]):
        return None
    return row


def current(row: Subscriber) -> SubscriptionValues:
    return SubscriptionValues(email=row.email, topics=list(row.topics or []), persona=row.persona or "",
                     timezone=row.timezone or "UTC", send_time=row.send_time or "", active=bool(row.active),
                     unsubscribe_token=row.unsubscribe_token)


def choices(settings) -> Choices:
    from digest.topics import TopicError, list_topics

    try:
        profiles = list_topics(settings)
    except TopicError:
        profiles = {}
    personas = list(dict.fromkeys(p for profile in profiles.values() for p in profile.persona_names))
    return Choices(topics={name: getattr(p, "title", "") or name for name, p in sorted(profiles.items())},
                   personas=personas)


def apply(row: Subscriber, form: dict[str, list[str]], known: Choices) -> None:
    """Checks everything before changing anything: a bad field leaves the row as it was."""
    topics = list(dict.fromkeys(t for t in form.get("topics", []) if t))
    unknown = [t for t in topics if t not in known.topics]
    if unknown:
        raise SubscriberError(f"unknown topic {', '.join(unknown)}")
    persona = (form.get("persona") or [""])[0].strip()
    if persona and persona not in known.personas:
        raise SubscriberError(f"unknown persona {persona!r}")
    zone = check_timezone((form.get("timezone") or ["UTC"])[0])
    send_time = (form.get("send_time") or [""])[0].strip()
    if send_time and not _TIME.match(send_time):
        raise SubscriberError(f"send time {send_time!r} is not HH:MM (24-hour)")
    active = (form.get("active") or [""])[0] == "yes"
    if active and not topics:
        raise SubscriberError("choose at least one topic, or untick “Send me the brief”")
    row.topics, row.persona, row.timezone = topics, persona or None, zone
    row.send_time, row.active = send_time or None, active
