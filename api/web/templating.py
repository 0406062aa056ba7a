"""Jinja2 for the pages: autoescape always on, a misspelt field fails loudly, and every page gets
the reader, the CSRF token and the security headers.

Values from feeds reach templates only through digest.render's views (plain text by nh3, links
http(s) only) or through `text` / `link` below, which do the same.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from digest.render import clean_text, clock, safe_url, timestamp_url

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Pages load only what the app serves: no inline script, no CDN, no framing.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(text=clean_text, link=safe_url, clock=clock, at=timestamp_url)
    env.globals["static"] = static_url
    return env


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
