"""The HTTP API: semantic search over passages, items, health. FastAPI, API keys, JSON errors.

`create_app(settings)` builds everything from the settings it is handed; torch and faiss load on
the first search, not at import (the encoder and index are created lazily).
"""


from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi import Path as FastPath
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import KeyChecker, key_dependency
from api.limits import RequestSizeLimit
from embed.search import SearchHit  # a plain dataclass: numpy at most, no torch or faiss
from store.settings import Settings

MAX_QUERY_CHARS = 1000
MAX_ID = 2**31 - 1  # INTEGER on PostgreSQL; a larger id cannot exist and must not reach the driver


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


class ItemOut(BaseModel):
    id: int
    title: str
    url: str | None
    source: str
    source_id: int
    kind: str
    language: str | None
    author: str | None
    published: datetime | None
    text: str
    transcript: list[SegmentOut]


class Health(BaseModel):
    status: str
    items: int
    passages: int
    index_count: int
    index_model: str | None


class ErrorBody(BaseModel):
    error: str
    message: str


def _as_datetime(value: datetime | date | None, end_of_day: bool = False) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time.max if end_of_day else time.min)


def create_app(settings: Settings) -> FastAPI:
    from embed.runtime import search_context
    from store.db import open_database

    sessions = open_database(settings.db_url)
    context = search_context(settings, sessions, serving=True)
    app = FastAPI(title="briefcast", version="0.1.0",
                  description="Semantic search over the news, podcasts and threads briefcast has read.",
                  responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}})
    _install_error_handlers(app)
    app.add_middleware(RequestSizeLimit)
    from api.slack.app import slack_router  # POST /slack/events; 503 while Slack is not configured

    app.include_router(slack_router(settings, sessions, context))
    from api.unsubscribe import unsubscribe_router  # the email's unsubscribe link (GET asks, POST acts)

    app.include_router(unsubscribe_router(sessions))

    require_key = key_dependency(KeyChecker(sessions))

    @app.get("/health", response_model=Health)
    def health() -> Health:
        from store.models import Item, Passage

        meta = context.reader.store.meta()
        with sessions() as session:
            items = session.scalar(select(func.count()).select_from(Item))
            passages = session.scalar(select(func.count()).select_from(Passage))
        return Health(status="ok", items=items, passages=passages, index_count=meta.count if meta else 0,
                      index_model=meta.model_id if meta else None)

    @app.get("/search", response_model=SearchResponse, dependencies=[Depends(require_key)])
    async def search_endpoint(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for")],
        k: Annotated[int, Query(ge=1, le=settings.max_k)] = 10,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        kind: KindName | None = None,
        source: Annotated[str | None, Query(max_length=2048, description="source id or exact feed URL")] = None,
        lang: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")] = None,
        topic: Annotated[str | None, Query(max_length=128)] = None,
        mode: ModeName = ModeName.hybrid,
    ) -> Response:
        from embed.search import SearchFilters

        if not q.strip():
            raise HTTPException(422, "q must contain more than white space")
        filters = SearchFilters(since=_as_datetime(since), until=_as_datetime(until, end_of_day=True),
                                source=source, kind=kind.value if kind else None, language=lang, topic=topic)
        return await run_in_threadpool(answer_search, q, k, filters, mode.value)

    def answer_search(q: str, k: int, filters, mode: str) -> Response:
        """The whole search and its JSON in one thread-pool hop. The response is serialised
        here, once, from the model declared for the schema: FastAPI would validate it again."""
        from embed.search import search  # looked up per call: the benchmark's stage timers wrap it

        hits = search(context, q, k=k, filters=filters, mode=mode)
        body = SearchResponse.model_construct(query=q, mode=mode, count=len(hits), results=hits)
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get("/items/{item_id}", response_model=ItemOut, dependencies=[Depends(require_key)])
    async def item_endpoint(item_id: Annotated[int, FastPath(ge=1, le=MAX_ID)]) -> ItemOut:
        return await run_in_threadpool(read_item, item_id)

    def read_item(item_id: int) -> ItemOut:
        from store.models import Item

        with sessions() as session:
            item = session.scalar(select(Item).where(Item.id == item_id)
                                  .options(selectinload(Item.segments), selectinload(Item.source)))
            if item is None:
                raise HTTPException(404, f"no item {item_id}")
            return ItemOut(
                id=item.id, title=item.title, url=item.url, source=item.source.title or item.source.url,
                source_id=item.source_id, kind=item.kind, language=item.language, author=item.author,
                published=item.published, text=item.text,
                transcript=[SegmentOut(start=s.start, end=s.end, speaker=s.speaker, text=s.text) for s in item.segments],
            )

    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory: each server process reads its settings once, here, at its edge."""
    return create_app(Settings())


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
    async def unexpected(_request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "internal", "message": f"{type(exc).__name__}: {str(exc)[:500]}"}, status_code=500)
