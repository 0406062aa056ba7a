"""Topic and persona names given on the command line, checked against the topic profiles.

A misspelt topic used to be stored as given and then matched nothing (`--topic ai-geopolitcs`,
an OPML folder "AI Geopolitics"): every name is refused here, with exit code 2, the closest
name and the known ones listed.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from digest.topics import TopicProfile
    from store.settings import Settings


class UnknownName(ValueError):
    """A topic or persona no topic profile defines; the message lists the known ones."""


def topic_profiles(settings: Settings) -> dict[str, TopicProfile]:
    from digest.topics import list_topics

    return list_topics(settings)


def unknown(kind: str, name: str, known: list[str], hint: str = "") -> UnknownName:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(known) if known else "none"
    return UnknownName(f"unknown {kind} {name!r}{guess}; known {kind}s: {listed}{hint}")


TOPICS_HINT = " (profiles: digest/topics/*.toml, and yours in BRIEFCAST_TOPICS_DIR)"


def checked_topic(settings: Settings, name: str) -> str:
    known = sorted(topic_profiles(settings))
    if name not in known:
        raise unknown("topic", name, known, TOPICS_HINT)
    return name


def topic_for_folder(folder: str, known: list[str]) -> str | None:
    """An OPML folder title that names a topic ("AI Geopolitics" -> ai-geopolitics), else None."""
    slug = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")
    return slug if slug in known else None


def checked_persona(settings: Settings, persona: str, topics: list[str]) -> str:
    """The persona as its profile spells it (matched without regard to case), if one of `topics` has it."""
    profiles = topic_profiles(settings)
    names = list(dict.fromkeys(n for t in topics if t in profiles for n in profiles[t].persona_names))
    for name in names:
        if name.casefold() == persona.strip().casefold():
            return name
    raise unknown("persona", persona, names, f" (the personas of {', '.join(topics) or 'no topic'})")


def fail(app_ctx, exc: Exception | str, code: int = 2) -> None:
    from rich.markup import escape

    app_ctx.err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(code)


def topic_or_exit(app_ctx, name: str | None) -> str | None:
    """None passes (no topic given); a known name is returned; anything else exits 2."""
    if name is None:
        return None
    try:
        return checked_topic(app_ctx.settings, name)
    except UnknownName as exc:
        fail(app_ctx, exc)
