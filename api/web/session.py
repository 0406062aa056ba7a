"""Who is reading: a signed session cookie naming the API key the reader signed in with.

The cookie holds `key_id.issued.signature` (no key, nothing secret): HttpOnly, SameSite=Lax,
Secure when the request came over https (directly or through a proxy uvicorn trusts). Each
request checks that the key still exists and is not revoked, so `briefcast apikey revoke` signs
its readers out at once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from fastapi import Request, Response

from api.web.secret import Signer

COOKIE = "briefcast_session"
PURPOSE = "session"
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class Reader:
    key_id: int
    name: str


_DIGITS = re.compile(r"[0-9]{1,12}")


class SessionCookies:
    def __init__(self, signer: Signer, sessions, max_age_seconds: int, clock=time.time) -> None:
        self.signer, self.sessions, self.max_age, self.clock = signer, sessions, max_age_seconds, clock

    def value_for(self, key_id: int) -> str:
        body = f"{key_id}.{int(self.clock())}"
        return f"{body}.{self.signer.sign(PURPOSE, body)}"

    def key_id_of(self, value: str | None) -> int | None:
        """The key id a well-signed, unexpired cookie names, else None."""
        parts = (value or "").split(".")
        # ASCII digits of a sane length only: str.isdigit() also accepts '²', which int() refuses,
        # and a 5,000-digit time would be int()-ed before the signature says it is forged.
        if len(parts) != 3 or not all(_DIGITS.fullmatch(p) for p in parts[:2]):
            return None
        key_id, issued, signature = int(parts[0]), int(parts[1]), parts[2]
        if not self.signer.verify(PURPOSE, f"{parts[0]}.{parts[1]}", signature):
            return None
        now = self.clock()
        if issued > now + CLOCK_SKEW_SECONDS or now - issued > self.max_age:
            return None
        return key_id

    def reader(self, request: Request) -> Reader | None:
        key_id = self.key_id_of(request.cookies.get(COOKIE))
        if key_id is None:
            return None
        from store.models import ApiKey

        with self.sessions() as session:
            row = session.get(ApiKey, key_id)
            return None if row is None or row.revoked else Reader(row.id, row.name)

    def set(self, request: Request, response: Response, key_id: int) -> None:
        response.set_cookie(COOKIE, self.value_for(key_id), max_age=self.max_age, path="/", httponly=True,
                            samesite="lax", secure=is_https(request))

    def clear(self, request: Request, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request))


def is_https(request: Request) -> bool:
    """uvicorn sets the scheme from X-Forwarded-Proto when the proxy is trusted (--forwarded-allow-ips)."""
    return request.url.scheme == "https"
