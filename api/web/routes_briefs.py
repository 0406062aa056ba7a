"""`/`, `/briefs`, `/briefs/{topic}/{day}` and `/podcasts/{topic}/{day}`: the stored briefs."""

from __future__ import annotations

import re
from itertools import groupby
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from api.web.briefs_data import brief_entries, front_brief, load_brief
from digest.render import brief_view, insight_view

PERSONA = Annotated[str | None, Query(description="a persona of the topic: its cards where the story has one")]
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def router(web) -> APIRouter:
    from api.web import PageError

    r = APIRouter(include_in_schema=False, dependencies=[Depends(web.reader)])

    @r.get("/", response_class=HTMLResponse)
    def front(request: Request, persona: PERSONA = None):
        found = front_brief(web.settings, web.sessions)
        if found is None:
            return web.pages.render(request, "empty.html.j2", title="No brief yet")
        return brief_page(request, *found, persona)

    @r.get("/briefs", response_class=HTMLResponse)
    def briefs(request: Request) -> HTMLResponse:
        entries = brief_entries(web.sessions)
        topics = [(topic, list(group)) for topic, group in groupby(sorted(entries, key=lambda e: (e.topic, e.day),
                                                                          reverse=True), key=lambda e: e.topic)]
        return web.pages.render(request, "briefs.html.j2", title="All briefs", topics=sorted(topics))

    @r.get("/briefs/{topic}/{day}", response_class=HTMLResponse)
    def brief(request: Request, topic: str, day: str, persona: PERSONA = None) -> HTMLResponse:
        return brief_page(request, topic, day, persona)

    def brief_page(request: Request, topic: str, day: str, persona: str | None) -> HTMLResponse:
        stored = stored_brief(topic, day)
        view = brief_view(stored, persona=(persona or "")[:128])
        return web.pages.render(request, "brief.html.j2", title=f"{view.topic_title} brief, {view.day_long}", v=view,
                                has_podcasts=bool(stored.podcasts and stored.podcasts.insights), persona=persona or "",
                                personas=_personas(web.settings, topic), title_langs=_title_langs(stored))

    @r.get("/podcasts/{topic}/{day}", response_class=HTMLResponse)
    def podcasts(request: Request, topic: str, day: str) -> HTMLResponse:
        stored = stored_brief(topic, day)
        insights = [insight_view(i) for i in (stored.podcasts.insights if stored.podcasts else [])]
        view = brief_view(stored)
        return web.pages.render(request, "podcasts.html.j2", title=f"Podcast insights, {view.day_long}", v=view,
                                insights=insights)

    def stored_brief(topic: str, day: str):
        found = load_brief(web.sessions, topic, day) if _TOPIC.match(topic) and _DAY.match(day) else None
        if found is None:
            raise PageError(404, "No such brief", f"There is no {topic} brief for {day}.")
        return found

    return r


def _title_langs(brief) -> dict[str, str]:
    """A card's anchor -> its headline's language, for a story covered only in another language."""
    from api.web.languages import other_lang

    return {f"story-{c.story_id}": other_lang(c.covered_only_in) for c in brief.cards if other_lang(c.covered_only_in)}


def _personas(settings, topic: str) -> list[str]:
    """The topic profile's personas, for the brief's "Written for" choice (none for an unknown topic)."""
    from digest.topics import TopicError, load_topic

    try:
        return load_topic(settings, topic).persona_names
    except TopicError:
        return []
