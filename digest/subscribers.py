"""Subscribers of the email brief: add, list, remove, unsubscribe by token.

Addresses and time zones are checked when they come in, with a message that says what is wrong;
a bad line never half-creates a subscriber.
"""

from __future__ import annotations

import difflib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store.models import Subscriber

# Deliberately plain: one @, a dot-atom-ish local part, a domain of labels with a dot. Quoted
# local parts and IP-literal domains are legal but not worth a morning brief's support load.
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class SubscriberError(ValueError):
    """A subscriber that cannot be added or found; the message says which and why."""


@dataclass(frozen=True)
class SubscriberView:
    id: int
    email: str
    name: str | None
    persona: str | None
    timezone: str
    topics: list[str]
    active: bool
    unsubscribe_token: str


def normalise_email(value: str) -> str:
    """The address as stored (domain lower-cased), or SubscriberError saying what is wrong with it."""
    address = (value or "").strip()
    if not address:
        raise SubscriberError("an email address is required")
    if any(ch.isspace() for ch in address) or any(ch in address for ch in "<>,;\"()[]\\"):
        raise SubscriberError(f"{value!r} is not an email address: no spaces, brackets, commas or quotes allowed")
    if address.count("@") != 1:
        raise SubscriberError(f"{value!r} is not an email address: it needs exactly one @")
    local, domain = address.split("@")
    if not domain:
        raise SubscriberError(f"{value!r} is not an email address: nothing after the @")
    if not local or len(local) > 64 or not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise SubscriberError(f"{value!r} is not an email address: the part before @ is not valid")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise SubscriberError(f"{value!r} is not an email address: the domain {domain!r} is not valid") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or len(ascii_domain) > 253:
        raise SubscriberError(f"{value!r} is not an email address: the domain {domain!r} needs a dot and valid labels")
    return f"{local}@{ascii_domain}"


def check_timezone(value: str) -> str:
    name = (value or "").strip()
    try:
        if len(name) > 64:  # IANA names are short; "a/"*400 sent ZoneInfo into a RecursionError (a 500)
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, RecursionError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; use an IANA name such as Europe/Paris or UTC"
        raise SubscriberError(f"unknown time zone {value!r}{hint}") from None
    return name


def _view(row: Subscriber) -> SubscriberView:
    return SubscriberView(row.id, row.email, row.name, row.persona, row.timezone, list(row.topics or []), row.active,
                          row.unsubscribe_token)


def add_subscriber(sessions: sessionmaker[Session], email: str, *, name: str | None = None,
                   topics: list[str] | None = None, persona: str | None = None, timezone: str | None = None,
                   known_topics: set[str] | None = None, default_topics: list[str] | None = None,
                   check_persona: Callable[[str, list[str]], str] | None = None) -> tuple[SubscriberView, bool]:
    """Add a subscriber, or update one and make it active again: only the fields given (not None)
    change; a new one gets `default_topics` and UTC where nothing is given. `check_persona(persona,
    topics)` returns the persona as spelt by the topics' profiles or raises SubscriberError."""
    address = normalise_email(email)
    zone = None if timezone is None else check_timezone(timezone)
    wanted = list(dict.fromkeys(t.strip() for t in (topics or []) if t.strip()))
    if known_topics is not None:
        unknown = [t for t in wanted if t not in known_topics]
        if unknown:
            raise SubscriberError(f"unknown topic {', '.join(map(repr, unknown))}; available: "
                                  f"{', '.join(sorted(known_topics)) or 'none'}")
    with sessions() as session, session.begin():
        row = session.scalars(select(Subscriber).where(Subscriber.email == address)).first()
        created = row is None
        if created:
            row = Subscriber(email=address, unsubscribe_token=secrets.token_urlsafe(24), topics=[])
            session.add(row)
        row.name = name if name is not None else row.name
        row.timezone = zone or row.timezone or "UTC"
        row.topics = wanted or list(row.topics or []) or list(default_topics or [])
        if persona is not None:
            row.persona = check_persona(persona, row.topics) if check_persona and persona else (persona or None)
        row.active = True
        session.flush()
        return _view(row), created


def list_subscribers(sessions: sessionmaker[Session], *, topic: str | None = None,
                     active_only: bool = False) -> list[SubscriberView]:
    with sessions() as session:
        query = select(Subscriber).order_by(Subscriber.id)
        if active_only:
            query = query.where(Subscriber.active.is_(True))
        rows = [_view(r) for r in session.scalars(query)]
    return [r for r in rows if topic is None or topic in r.topics]


def remove_subscriber(sessions: sessionmaker[Session], email_or_id: str) -> SubscriberView:
    """Delete a subscriber by address or id (their past deliveries stay, unlinked)."""
    with sessions() as session, session.begin():
        row = _find(session, email_or_id)
        view = _view(row)
        session.delete(row)
        return view


def unsubscribe(sessions: sessionmaker[Session], token: str) -> SubscriberView | None:
    """One-click unsubscribe (RFC 8058): deactivate whoever holds the token; None if nobody does."""
    if not token or len(token) > 64:
        return None
    with sessions() as session, session.begin():
        row = session.scalars(select(Subscriber).where(Subscriber.unsubscribe_token == token)).first()
        if row is None:
            return None
        row.active = False
        return _view(row)


def _find(session: Session, email_or_id: str) -> Subscriber:
    key = email_or_id.strip()
    row = session.get(Subscriber, int(key)) if key.isdigit() else None
    if row is None and "@" in key:
        try:
            row = session.scalars(select(Subscriber).where(Subscriber.email == normalise_email(key))).first()
        except SubscriberError:
            row = None
    if row is None:
        raise SubscriberError(f"no subscriber {email_or_id!r}")
    return row
