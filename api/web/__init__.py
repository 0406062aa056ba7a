"""The web reader: server-rendered pages beside the JSON API (which keeps its paths).

`install_web(app, settings, sessions, search_context)` mounts the static files, the offline API
docs, and the page routers. Pages need a signed-in reader (an API key entered once in a form)
unless `BRIEFCAST_WEB_PUBLIC=true`; the subscription page opens from its signed link instead.
"""

from __future__ import annotations

import html
import urllib.parse
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.web.csrf import Csrf, CsrfError
from api.web.forms import FormError
from api.web.secret import Signer, load_secret
from api.web.session import Reader, SessionCookies
from api.web.templating import STATIC, Pages, secure_headers
from api.web.throttle import FailedSignIns
from store.settings import Settings


class SignInRequired(Exception):
    def __init__(self, target: str) -> None:
        self.target = target


class PageError(Exception):
    """An HTML error page (the JSON API's errors stay JSON)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        self.status, self.title, self.message = status, title, message


@dataclass
class WebContext:
    settings: Settings
    sessions: object
    search: object  # embed.search.SearchContext, shared with /search
    signer: Signer
    cookies: SessionCookies
    csrf: Csrf
    pages: Pages = None  # type: ignore[assignment]
    failed_signins: FailedSignIns = field(default_factory=FailedSignIns)
    page_routes: list = field(default_factory=list)  # the pages' routes: their server errors are HTML

    def visitor(self, request: Request) -> Reader | None:
        """Whoever the session cookie names (or nobody); kept on request.state for the page."""
        reader = self.cookies.reader(request)
        request.state.reader = reader
        return reader

    def reader(self, request: Request) -> Reader | None:
        """A FastAPI dependency for reading pages: a reader, or a redirect to sign in (public mode: anyone)."""
        reader = self.visitor(request)
        if reader is None and not self.settings.web_public:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target)
        return reader


def local_target(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (no //host, no scheme, no backslash)."""
    value = (value or "").strip()
    if not value.startswith("/") or value.startswith("//") or "\\" in value or any(ord(c) < 32 for c in value):
        return "/"
    return value


def install_web(app: FastAPI, settings: Settings, sessions, search_context) -> None:
    from api.web import docs, routes_auth, routes_briefs, routes_find, routes_stories, routes_subscription

    signer = Signer(load_secret(settings))
    web = WebContext(settings=settings, sessions=sessions, search=search_context, signer=signer,
                     cookies=SessionCookies(signer, sessions, settings.web_session_days * 86400), csrf=Csrf(signer))
    web.pages = Pages(web)
    docs.install(app)  # before /static: its assets live under /static/docs
    app.mount("/static", StaticFiles(directory=STATIC), name="web-static")
    for module in (routes_auth, routes_briefs, routes_stories, routes_find, routes_subscription):
        router = module.router(web)
        web.page_routes += router.routes
        app.include_router(router)
    _install_handlers(app, web)


def _install_handlers(app: FastAPI, web: WebContext) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in(_request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse("/signin?" + urllib.parse.urlencode({"next": exc.target}), status_code=303)

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> HTMLResponse:
        return web.pages.render(request, "error.html.j2", status=exc.status, title=exc.title, message=exc.message)

    @app.exception_handler(CsrfError)
    async def csrf_error(request: Request, exc: CsrfError) -> HTMLResponse:
        return web.pages.render(request, "error.html.j2", status=403, title="Form refused", message=str(exc))

    from starlette.exceptions import HTTPException as StarletteHTTPException

    api_errors = app.exception_handlers.get(StarletteHTTPException)

    @app.exception_handler(StarletteHTTPException)
    async def not_found_page(request: Request, exc: StarletteHTTPException):
        """A browser asking for a page that does not exist gets a page; API clients keep the JSON."""
        if exc.status_code == 404 and request.method == "GET" and _wants_html(request):
            return web.pages.render(request, "error.html.j2", status=404, title="Page not found",
                                    message="There is no page at this address.")
        return await api_errors(request, exc)

    api_unexpected = app.exception_handlers.get(Exception)

    @app.exception_handler(Exception)
    async def server_error_page(request: Request, exc: Exception):
        """A page's server error is a page with the request id (never the exception's text, which can
        hold SQL and parameters); the JSON API's stays JSON. Both log the exception under that id."""
        answer = await api_unexpected(request, exc)
        if not _is_page(request, web.page_routes):
            return answer
        request_id = answer.headers.get("X-Request-ID", "")
        try:
            page = web.pages.render(request, "error.html.j2", status=500, title="Something went wrong",
                                    message="The server could not show this page. The operator can find what "
                                            "happened in the server log under this request id.",
                                    request_id=request_id)
        except Exception:  # the page itself could not be made: a plain one
            page = HTMLResponse(f"<!DOCTYPE html><title>Server error</title><h1>Server error</h1>"
                                f"<p>Request id: {html.escape(request_id)}</p>", status_code=500)
            secure_headers(page)
        page.headers["X-Request-ID"] = request_id
        return page

    @app.exception_handler(FormError)
    async def form_error(request: Request, exc: FormError) -> HTMLResponse:
        return web.pages.render(request, "error.html.j2", status=400, title="Form refused", message=str(exc))


def _is_page(request: Request, routes: list) -> bool:
    from starlette.routing import Match

    return any(route.matches(request.scope)[0] != Match.NONE for route in routes)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept
