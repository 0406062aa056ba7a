"""CSRF protection for every form POST: a random per-browser cookie, and in each form an HMAC of
that cookie and the session cookie under the web secret.

A cross-site page can make the browser send the cookies but can read neither them nor our pages,
so it cannot produce the form's token; binding the token to the session as well means a token
from before sign-in (or from another reader's session) does not work after it.
"""

from __future__ import annotations

import secrets

from fastapi import Request, Response

from api.web.secret import Signer, same_text
from api.web.session import COOKIE as SESSION_COOKIE, is_https

COOKIE = "briefcast_csrf"
FIELD = "csrf"
PURPOSE = "csrf"


class CsrfError(Exception):
    """A POST without a valid token: answered 403."""


class Csrf:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def browser_id(self, request: Request) -> str:
        """The request's CSRF cookie, or a new one remembered on request.state for the response."""
        value = request.cookies.get(COOKIE) or getattr(request.state, "new_csrf", None)
        if not value or len(value) > 100:
            value = secrets.token_urlsafe(32)
            request.state.new_csrf = value
        return value

    def token(self, request: Request, session_value: str | None = None) -> str:
        if session_value is None:
            session_value = request.cookies.get(SESSION_COOKIE, "")
        return self.signer.sign(PURPOSE, f"{self.browser_id(request)}|{session_value}")

    def check(self, request: Request, form: dict[str, list[str]]) -> None:
        cookie = request.cookies.get(COOKIE)
        sent = (form.get(FIELD) or [""])[0]
        if not cookie or not sent:
            raise CsrfError("this form has expired or did not come from this site: reload the page and try again")
        expected = self.signer.sign(PURPOSE, f"{cookie}|{request.cookies.get(SESSION_COOKIE, '')}")
        if not same_text(expected, sent):
            raise CsrfError("this form has expired or did not come from this site: reload the page and try again")

    @staticmethod
    def remember(request: Request, response: Response) -> None:
        """Set the cookie a page's token was made from, when the request did not carry one."""
        value = getattr(request.state, "new_csrf", None)
        if value:
            response.set_cookie(COOKIE, value, path="/", httponly=True, samesite="lax", secure=is_https(request))
