"""Jinja2 for the pages: autoescape always on, a misspelt field fails loudly, and every page gets
the reader, the CSRF token and the security headers.

Values from feeds reach templates only through digest.render's views (plain text by nh3, links
http(s) only) or through `text` / `link` below, which do the same.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from api.web.languages import lang_attr, long_date, short_date, with_langs
from digest.render import clean_text, clock, safe_url, timestamp_url

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

MAX_NUMBERED = 3  # a publisher's items numbered (2) (3) on a card; more are counted ("9 posts")

# Pages load only what the app serves: no inline script, no CDN, no framing.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(text=clean_text, link=safe_url, clock=clock, at=timestamp_url, lang=lang_attr,
                       with_langs=with_langs, long_date=long_date, short_date=short_date, when=when)
    env.globals.update(static=static_url, MAX_NUMBERED=MAX_NUMBERED)
    return env


def when(moment: datetime) -> str:
    """'5 Dec 2026, 10:12 UTC': an item's time as the pages show it."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


@lru_cache(maxsize=64)
def static_url(name: str) -> str:
    """/static/NAME?v=HASH: cached for a year by the browser, new with every change."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


class Pages:
    """Renders a template into a response, with what every page shows (reader, CSRF token)."""

    def __init__(self, web) -> None:
        self.web = web  # api.web.WebContext

    def render(self, request: Request, template: str, *, status: int = 200, referrer: str = "same-origin",
               **values) -> HTMLResponse:
        reader = getattr(request.state, "reader", None)
        context = dict(request=request, reader=reader, public=self.web.settings.web_public,
                       csrf_field=self.web.csrf.token(request), path=request.url.path, **values)
        body = environment().get_template(template).render(**context)
        response = HTMLResponse(body, status_code=status)
        secure_headers(response, referrer)
        self.web.csrf.remember(request, response)
        return response


def secure_headers(response, referrer: str = "same-origin") -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = referrer
    response.headers["Cache-Control"] = "private, no-cache"
