"""`/stories/{id}` (the editorial, seed 001) and `/insights/{id}` (the card, seed 000); ids are story ids."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from api.web.stories_data import insight_card, story_page

MAX_ID = 2**31 - 1

# What each part of the score means, in the reader's words (digest/rank.py multiplies them).
PART_NOTES = {
    "relevance": "how closely the story matches the topic profile",
    "corroboration": "independent publishers carrying it",
    "novelty": "not already in an earlier brief",
    "recency": "how fresh its latest item is",
    "source_weight": "the weight the operator gave its sources",
    "total": "the product of the parts",
}


def router(web) -> APIRouter:
    from api.web import PageError

    r = APIRouter(include_in_schema=False, dependencies=[Depends(web.reader)])

    def story_id_of(value: str) -> int:
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
            raise PageError(404, "No such story", f"{value[:40]!r} is not a story id.")
        return int(value)

    @r.get("/stories/{story_id}", response_class=HTMLResponse)
    def story(request: Request, story_id: str, persona: str | None = None) -> HTMLResponse:
        page = story_page(web.settings, web.sessions, story_id_of(story_id), (persona or "")[:128])
        if page is None:
            raise PageError(404, "No such story", f"There is no story #{story_id}.")
        return web.pages.render(request, "story.html.j2", title=page.title or f"Story #{page.story_id}", s=page,
                                parts=PART_NOTES)

    @r.get("/insights/{story_id}", response_class=HTMLResponse)
    def insight(request: Request, story_id: str, persona: str | None = None) -> HTMLResponse:
        found = insight_card(web.sessions, story_id_of(story_id), (persona or "")[:128])
        if found is None:
            raise PageError(404, "No such insight", f"No brief carries an insight card for story #{story_id}.")
        return web.pages.render(request, "insight.html.j2", title=found.card.title, c=found.card,
                                title_lang=found.title_lang, story_id=int(story_id), topic=found.brief.topic,
                                topic_title=found.brief.topic_title or found.brief.topic, day=found.brief.day,
                                related=found.related)

    return r
