"""`/find`: the hybrid search of /search as a page, its filters as form fields (GET, so a search
is a link that can be shared)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from api.web.languages import other_lang
from digest.render import clean_text, clip, clock, safe_url, timestamp_url

MAX_QUERY_CHARS = 1000
PASSAGE_CHARS = 600  # of a hit's passage on the page
KINDS = ("article", "episode", "post")
MODES = ("hybrid", "vector", "keyword")


@dataclass
class Hit:
    title: str
    url: str | None  # the original; for an episode, at the passage's moment
    source: str
    published: str
    kind: str
    passage: str
    at: str  # m:ss of an episode's passage
    story_id: int | None
    more: int
    lang: str = ""  # the item's language when it is not the page's: lang="zh" on its title and passage


class BadQuery(ValueError):
    pass


def router(web) -> APIRouter:
    r = APIRouter(include_in_schema=False, dependencies=[Depends(web.reader)])

    @r.get("/find", response_class=HTMLResponse)
    async def find(request: Request) -> HTMLResponse:
        params = {k: v.strip() for k, v in request.query_params.items()}
        topics = await run_in_threadpool(_topic_names, web.settings)
        hits, error = [], None
        if params.get("q"):
            try:
                query, k, filters, mode = _parse(params, web.settings.max_k)
                hits = await run_in_threadpool(_search, web, query, k, filters, mode)
            except BadQuery as exc:
                error = str(exc)
        return web.pages.render(request, "find.html.j2", status=422 if error else 200, title="Find", f=params,
                                hits=hits, error=error, kinds=KINDS, modes=MODES, topics=topics,
                                filters_set=filters_set(params),
                                searched=bool(params.get("q")) and not error)

    return r


def _parse(params: dict[str, str], max_k: int):
    from embed.search import SearchFilters

    query = params["q"]
    if len(query) > MAX_QUERY_CHARS:
        raise BadQuery(f"The question is too long: {MAX_QUERY_CHARS} characters at most.")
    kind, mode = params.get("kind") or None, params.get("mode") or "hybrid"
    if kind is not None and kind not in KINDS:
        raise BadQuery(f"Kind must be one of {', '.join(KINDS)}.")
    if mode not in MODES:
        raise BadQuery(f"Mode must be one of {', '.join(MODES)}.")
    k = params.get("k") or "10"
    if not k.isascii() or not k.isdigit() or not 1 <= int(k) <= max_k:
        raise BadQuery(f"Results must be a number from 1 to {max_k}.")
    source = params.get("source") or None
    if source and (len(source) > 2048 or (source.isdigit() and not (source.isascii() and 0 < int(source) < 2**31))):
        raise BadQuery("Source is a source id or a feed's exact URL.")
    lang = params.get("lang") or None
    if lang and (len(lang) > 32 or not lang.replace("-", "").isalnum() or not lang.isascii()):
        raise BadQuery("Language is a code such as en or en-GB.")
    filters = SearchFilters(since=_day(params, "since"), until=_day(params, "until", end=True), source=source,
                            kind=kind, language=lang, topic=(params.get("topic") or None))
    return query, int(k), filters, mode


def _day(params: dict[str, str], name: str, end: bool = False) -> datetime | None:
    value = params.get(name)
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{name.capitalize()} must be a date, YYYY-MM-DD.") from None
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


def _search(web, query: str, k: int, filters, mode: str) -> list[Hit]:
    from embed.search import search
    from store.models import StoryItem

    found = search(web.search, query, k=k, filters=filters, mode=mode)
    ids = [h.item_id for h in found]
    with web.sessions() as session:
        stories = dict(session.execute(select(StoryItem.item_id, StoryItem.story_id)
                                       .where(StoryItem.item_id.in_(ids))).all()) if ids else {}
    hits = []
    for h in found:
        title = clean_text(h.title) or "untitled"
        hits.append(Hit(title=title, url=timestamp_url(h.url, h.start) if h.kind == "episode" else safe_url(h.url),
                        source=clean_text(h.source), published=h.published.date().isoformat() if h.published else "",
                        kind=h.kind, passage=clip(without_title(clean_text(h.text), title), PASSAGE_CHARS),
                        at=clock(h.start) if h.kind == "episode" and h.start is not None else "",
                        story_id=stories.get(h.item_id), more=h.more_passages, lang=other_lang(h.language)))
    return hits


def without_title(passage: str, title: str) -> str:
    """An article's first passage starts with its headline, which the hit already shows above it:
    "Commerce Department tightens … test. WASHINGTON — The US …" reads from "WASHINGTON". A title
    cut short from the text itself (a post's, ending in "…") is left alone, as is a passage that
    would then start mid-sentence."""
    head = title.strip()
    if not head or head.endswith("…") or not passage[: len(head)].casefold() == head.casefold():
        return passage
    rest = passage[len(head):].lstrip(" .:;—–-\n\t")
    if not rest or rest[0].islower():
        return passage
    return rest


def filters_set(params: dict[str, str]) -> int:
    """How many filters differ from their defaults: the filter box opens when any does."""
    set_ = [name for name in ("kind", "topic", "since", "until", "source", "lang") if params.get(name)]
    set_ += ["mode"] if params.get("mode", "hybrid") not in ("", "hybrid") else []
    set_ += ["k"] if params.get("k", "10") not in ("", "10") else []
    return len(set_)


def _topic_names(settings) -> list[str]:
    from digest.topics import TopicError, list_topics

    try:
        return sorted(list_topics(settings))
    except TopicError:
        return []
