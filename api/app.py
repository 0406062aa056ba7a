"""The HTTP API: semantic search over passages, items, health. FastAPI, API keys, JSON errors.

`create_app(settings)` builds everything from the settings it is handed; torch and faiss load on
the first search, not at import (the encoder and index are created lazily).

Every answer is bounded: /items/{id} returns its text and transcript in pages (`TEXT_PAGE_CHARS`,
`TRANSCRIPT_PAGE_CHARS`, with offsets for the next page), /search cuts a passage at
`PASSAGE_CHARS`. Input that cannot reach the database intact (an id past INTEGER, a date that
leaves datetime's range in UTC) is a 422; anything unexpected is a 500 that carries a request id
and nothing else, its traceback logged under that id.
"""

import logging
import uuid
from dataclasses import replace

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi import Path as FastPath
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import KeyChecker, key_dependency
from api.limits import RequestSizeLimit
from embed.search import SearchHit  # a plain dataclass: numpy at most, no torch or faiss
from store.settings import Settings

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
MAX_ID = 2**31 - 1  # INTEGER on PostgreSQL; a larger id cannot exist and must not reach the driver
TEXT_PAGE_CHARS = 50_000  # of an item's text per /items response
TRANSCRIPT_PAGE_CHARS = 50_000  # of transcript segment text per /items response
TRANSCRIPT_PAGE_SEGMENTS = 200
SEGMENT_CHARS = 10_000  # one segment's text in a response; the whole words are in the item's text
TITLE_CHARS = 2_000
PASSAGE_CHARS = 10_000  # one search hit's passage text
SOURCE_HELP = "a source id (1-2147483647) or a feed's exact URL"


class KindName(StrEnum):
    article = "article"
    episode = "episode"
    post = "post"


class ModeName(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    keyword = "keyword"


class SearchResponse(BaseModel):
    query: str
    mode: str
    count: int
    results: list[SearchHit]


class SegmentOut(BaseModel):
    start: float | None
    end: float | None
    speaker: str | None
    text: str
    text_truncated: bool = Field(False, description=f"the segment's text was cut at {SEGMENT_CHARS:,} characters")


class ItemOut(BaseModel):
    """An item with one page of its text and one page of its transcript."""

    id: int
    title: str
    url: str | None
    source: str
    source_id: int
    kind: str
    language: str | None
    author: str | None
    published: datetime | None
    text: str = Field(description=f"the item's text from text_offset, at most {TEXT_PAGE_CHARS:,} characters")
    text_offset: int
    text_chars: int = Field(description="the length of the item's whole text, in characters")
    text_truncated: bool = Field(description="more text follows this page")
    next_text_offset: int | None = Field(description="text_offset for the next page, or null")
    transcript: list[SegmentOut] = Field(description="segments from transcript_offset: at most transcript_limit "
                                               f"and {TRANSCRIPT_PAGE_CHARS:,} characters")
    transcript_offset: int
    transcript_segments: int = Field(description="how many segments the whole transcript has")
    next_transcript_offset: int | None = Field(description="transcript_offset for the next page, or null")


class Health(BaseModel):
    status: str
    items: int
    passages: int
    index_count: int
    index_model: str | None
    index_source: str = "files"  # files | database (docs/distributed.md)
    # database: how far this process's in-memory mirror is behind the database (embed/mirror.py lag)
    index_lag: dict | None = None


class ErrorBody(BaseModel):
    error: str
    message: str


def _as_datetime(value: datetime | date | None, end_of_day: bool = False) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time.max if end_of_day else time.min)


def _utc_bound(name: str, value: datetime | date | None, end_of_day: bool = False) -> datetime | None:
    """The filter's instant in UTC (naive means UTC), or a 422 when that leaves datetime's range:
    0001-01-01T00:00:00+23:59 is a day before year 1 in UTC."""
    value = _as_datetime(value, end_of_day)
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise HTTPException(422, f"{name}: {value.isoformat()} is outside 0001-01-01 to 9999-12-31 once "
                                 "converted to UTC") from None


def _source_filter(source: str | None) -> str | None:
    """A source id as its canonical digits, or a URL as given. What str.isdigit() calls a digit
    but int() or the database would not take ('²', 23 digits, 2147483648) is a 422."""
    if source is None or not source.isdigit():
        return source
    if not source.isascii():
        raise HTTPException(422, f"source: {source!r} has non-ASCII digits; expected {SOURCE_HELP}")
    digits = source.lstrip("0")
    if not digits or len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
        raise HTTPException(422, f"source: {source[:40]} is out of range; expected {SOURCE_HELP}")
    return digits


def _warm_mirror(reader) -> None:
    """A replica loads its mirror from the database as it starts, not on the first query (which
    would wait for it); /health reports the load and then the lag."""
    import threading

    def load() -> None:
        try:
            reader.snapshot()
        except Exception:  # the database away at start: the first query tries again
            log.exception("vector mirror: first load failed")

    threading.Thread(target=load, name="mirror-load", daemon=True).start()


def create_app(settings: Settings) -> FastAPI:
    from embed.runtime import search_context
    from store.db import open_database

    sessions = open_database(settings.db_url, settings.auto_migrate)
    context = search_context(settings, sessions, serving=True)
    if settings.index_source == "database":
        _warm_mirror(context.reader)
    app = FastAPI(title="briefcast", version="0.1.0",
                  description="Semantic search over the news, podcasts and threads briefcast has read.",
                  responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}},
                  docs_url=None, redoc_url=None)  # api.web serves /docs and /redoc from local files
    _install_error_handlers(app)
    app.add_middleware(RequestSizeLimit)
    from api.slack.app import slack_router  # POST /slack/events; 503 while Slack is not configured

    app.include_router(slack_router(settings, sessions, context))
    from api.unsubscribe import unsubscribe_router  # the email's unsubscribe link (GET asks, POST acts)

    app.include_router(unsubscribe_router(sessions))
    from api.web import install_web  # the reader's pages, /static, offline /docs

    install_web(app, settings, sessions, context)

    require_key = key_dependency(KeyChecker(sessions))

    @app.get("/health", response_model=Health)
    def health() -> Health:
        from store.models import Item, Passage

        with sessions() as session:
            items = session.scalar(select(func.count()).select_from(Item))
            passages = session.scalar(select(func.count()).select_from(Passage))
        if settings.index_source == "database":
            lag = context.reader.lag()
            return Health(status="ok", items=items, passages=passages, index_count=lag["count"],
                          index_model=context.reader.mirror.model_id, index_source="database", index_lag=lag)
        meta = context.reader.store.meta()
        return Health(status="ok", items=items, passages=passages, index_count=meta.count if meta else 0,
                      index_model=meta.model_id if meta else None)

    @app.get("/search", response_model=SearchResponse, dependencies=[Depends(require_key)])
    async def search_endpoint(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for")],
        k: Annotated[int, Query(ge=1, le=settings.max_k)] = 10,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        kind: KindName | None = None,
        source: Annotated[str | None, Query(max_length=2048, description=SOURCE_HELP)] = None,
        lang: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")] = None,
        topic: Annotated[str | None, Query(max_length=128)] = None,
        mode: ModeName = ModeName.hybrid,
    ) -> Response:
        from embed.search import SearchFilters

        if not q.strip():
            raise HTTPException(422, "q must contain more than white space")
        filters = SearchFilters(since=_utc_bound("since", since), until=_utc_bound("until", until, end_of_day=True),
                                source=_source_filter(source), kind=kind.value if kind else None, language=lang,
                                topic=topic)
        return await run_in_threadpool(answer_search, q, k, filters, mode.value)

    def answer_search(q: str, k: int, filters, mode: str) -> Response:
        """The whole search and its JSON in one thread-pool hop. The response is serialised
        here, once, from the model declared for the schema: FastAPI would validate it again."""
        from embed.search import search  # looked up per call: the benchmark's stage timers wrap it

        hits = [hit if len(hit.text) <= PASSAGE_CHARS else replace(hit, text=hit.text[:PASSAGE_CHARS])
                for hit in search(context, q, k=k, filters=filters, mode=mode)]
        body = SearchResponse.model_construct(query=q, mode=mode, count=len(hits), results=hits)
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get("/items/{item_id}", response_model=ItemOut, dependencies=[Depends(require_key)])
    async def item_endpoint(
        item_id: Annotated[int, FastPath(ge=1, le=MAX_ID)],
        text_offset: Annotated[int, Query(ge=0, le=MAX_ID - 1, description="first character of the text page")] = 0,
        text_limit: Annotated[int, Query(ge=1, le=TEXT_PAGE_CHARS, description="characters of text")] = TEXT_PAGE_CHARS,
        transcript_offset: Annotated[int, Query(ge=0, le=MAX_ID - 1, description="first segment of the page")] = 0,
        transcript_limit: Annotated[int, Query(ge=1, le=TRANSCRIPT_PAGE_SEGMENTS,
                                               description="segments at most")] = TRANSCRIPT_PAGE_SEGMENTS,
    ) -> ItemOut:
        return await run_in_threadpool(read_item, item_id, text_offset, text_limit, transcript_offset, transcript_limit)

    def read_item(item_id: int, text_offset: int, text_limit: int, transcript_offset: int,
                  transcript_limit: int) -> ItemOut:
        """One page of an item, cut in SQL: a 32 MB text or 10,000 segments never leave the database."""
        from store.models import Item, Source, TranscriptSegment as Seg

        with sessions() as session:
            row = session.execute(
                select(Item.id, func.substr(Item.title, 1, TITLE_CHARS), Item.url,
                       func.substr(Source.title, 1, TITLE_CHARS), Source.url, Item.source_id, Item.kind,
                       Item.language, Item.author, Item.published,
                       func.length(Item.text), func.substr(Item.text, text_offset + 1, text_limit))
                .join(Source, Source.id == Item.source_id).where(Item.id == item_id)).one_or_none()
            if row is None:
                raise HTTPException(404, f"no item {item_id}")
            segments = session.scalar(select(func.count()).select_from(Seg).where(Seg.item_id == item_id))
            rows = session.execute(
                select(Seg.start, Seg.end, Seg.speaker, func.substr(Seg.text, 1, SEGMENT_CHARS + 1))
                .where(Seg.item_id == item_id).order_by(Seg.position)
                .offset(transcript_offset).limit(transcript_limit)).all() if transcript_offset < segments else []
        _id, title, url, source_title, source_url, source_id, kind, language, author, published, chars, text = row
        transcript = _transcript_page(rows)
        text_end = text_offset + len(text or "")
        next_segment = transcript_offset + len(transcript)
        return ItemOut(
            id=item_id, title=title or "", url=url, source=source_title or source_url, source_id=source_id, kind=kind,
            language=language, author=author, published=published, text=text or "", text_offset=text_offset,
            text_chars=chars or 0, text_truncated=text_end < (chars or 0),
            next_text_offset=text_end if text_end < (chars or 0) else None,
            transcript=transcript, transcript_offset=transcript_offset, transcript_segments=segments,
            next_transcript_offset=next_segment if next_segment < segments else None,
        )

    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory: each server process reads its settings once, here, at its edge."""
    return create_app(Settings())


def _transcript_page(rows) -> list[SegmentOut]:
    """Segments in order until TRANSCRIPT_PAGE_CHARS (always at least one), each cut at SEGMENT_CHARS."""
    page, used = [], 0
    for start, end, speaker, text in rows:
        text = text or ""
        cut = len(text) > SEGMENT_CHARS
        text = text[:SEGMENT_CHARS]
        if page and used + len(text) > TRANSCRIPT_PAGE_CHARS:
            break
        page.append(SegmentOut(start=start, end=end, speaker=speaker, text=text, text_truncated=cut))
        used += len(text)
    return page


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException) -> JSONResponse:
        names = {401: "unauthorized", 404: "not_found", 413: "too_large", 414: "uri_too_long", 422: "invalid_request"}
        return JSONResponse({"error": names.get(exc.status_code, "error"), "message": str(exc.detail)},
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "invalid_request", "message": problems[:2000]}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception) -> JSONResponse:
        """The client gets an id; the log gets the exception (its text can hold SQL and parameters)."""
        request_id = uuid.uuid4().hex
        log.error("internal error, request id %s: %s %s", request_id, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal", "message": "internal error: the server log has the details under "
                             "this request id", "request_id": request_id},
                            status_code=500, headers={"X-Request-ID": request_id})
