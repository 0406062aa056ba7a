"""API keys: created once and shown once, stored hashed, checked per request."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ApiKey

PREFIX = "bc_"
TOUCH_EVERY = timedelta(minutes=5)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """Returns the row and the plaintext key, which is not stored anywhere."""
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def verify_key(session: Session, key: str) -> ApiKey | None:
    if not key or not key.startswith(PREFIX) or len(key) > 200:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked.is_(False)))
    now = datetime.now(UTC)
    if row is not None and (row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY):
        row.last_used_at = now  # rarely: a search should not wait behind a writer for this
    return row


def revoke_key(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked = True
    return True
