"""The unsubscribe link of the email brief: GET shows a confirmation, POST unsubscribes.

POST is also RFC 8058's one-click unsubscribe: mail providers send `List-Unsubscribe=One-Click`
to the https URL of the List-Unsubscribe header. GET never unsubscribes, because link scanners
and previewers fetch every link in a message.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as FastPath
from fastapi.responses import HTMLResponse

from digest.subscribers import unsubscribe

TOKEN = Annotated[str, FastPath(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


# Its one inline style attribute and its own form; nothing else, and no other site may frame it.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    response = HTMLResponse(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"color-scheme\" content=\"light dark\">"
        f"<title>{html.escape(title)}</title></head><body style=\"font: 16px/1.5 sans-serif; max-width: 36em; "
        f"margin: 2em auto; padding: 0 1em\"><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response


def unsubscribe_router(sessions) -> APIRouter:
    router = APIRouter(tags=["email"])

    @router.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def confirm(token: TOKEN) -> HTMLResponse:
        """A button that unsubscribes (a plain GET must not: scanners follow links)."""
        action = f"/unsubscribe/{html.escape(token)}"
        return _page("Unsubscribe from the brief?",
                     f"<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
                     "value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>")

    @router.post("/unsubscribe/{token}", response_class=HTMLResponse,
                 responses={404: {"description": "no subscriber has this token", "content": {"text/html": {}}}})
    def one_click(token: TOKEN) -> HTMLResponse:
        """RFC 8058 one-click unsubscribe (and the confirmation form's button)."""
        view = unsubscribe(sessions, token)
        if view is None:
            return _page("Link not recognised", "<p>This unsubscribe link does not belong to any subscriber; "
                         "it may have been removed already.</p>", status=404)
        return _page("Unsubscribed", f"<p>{html.escape(view.email)} will get no more briefs.</p>")

    return router
