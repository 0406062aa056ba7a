"""API-key checks for the HTTP API, cheap enough to run on the event loop.

A key that passed the database check is trusted for `TRUST_SECONDS` in this process, so a busy
client costs one database read every few seconds instead of one per request (measured: the read
and its commit were 0.75 ms of a 7 ms request). The price is that `briefcast apikey revoke`
takes up to that long to reach a running server. Failures are never cached: a new key works at
once, and a wrong one is checked against the database every time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

TRUST_SECONDS = 10.0
MAX_TRUSTED = 1024  # distinct keys remembered; beyond that the memory starts again
UNAUTHORIZED = "missing or invalid API key: send it as X-API-Key or Authorization: Bearer"

_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key from `briefcast apikey create`")
_BEARER = HTTPBearer(auto_error=False, description="the same key as a bearer token")


class KeyChecker:
    """Checks keys against the database, remembering the good ones for a few seconds."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions, self.clock = sessions, clock
        self._trusted: dict[str, float] = {}  # key hash -> monotonic time until which it is trusted

    def trusted(self, key: str) -> bool:
        from store.apikeys import hash_key

        until = self._trusted.get(hash_key(key))
        return until is not None and until > self.clock()

    def check_in_database(self, key: str) -> bool:
        from store.apikeys import hash_key, verify_key

        with self.sessions() as session, session.begin():
            valid = verify_key(session, key) is not None
        if valid:
            if len(self._trusted) >= MAX_TRUSTED:
                self._trusted.clear()
            self._trusted[hash_key(key)] = self.clock() + TRUST_SECONDS
        return valid


def key_dependency(checker: KeyChecker) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency: 401 unless the request carries a valid key. It is async so that a
    trusted key costs no hop to the thread pool; only a database check goes there."""

    async def require_key(
        header: str | None = Security(_HEADER), bearer: HTTPAuthorizationCredentials | None = Security(_BEARER),
    ) -> None:
        key = (header or (bearer.credentials if bearer else "")).strip()
        if not key:
            raise HTTPException(401, UNAUTHORIZED)
        if not checker.trusted(key) and not await run_in_threadpool(checker.check_in_database, key):
            raise HTTPException(401, UNAUTHORIZED)

    return require_key
