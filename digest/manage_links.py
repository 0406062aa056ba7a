"""The signed link in each email that opens the subscriber's own settings page.

`/subscription/{id}.{signature}`: the signature is an HMAC of the subscriber id keyed by their own
`manage_secret`, which only the database and the body of their emails hold. No server secret is
involved, so a worker on another machine signs the same link the API checks. It is not keyed by the
unsubscribe token: List-Unsubscribe shows that to mail providers, and with it anyone could rebuild
the link for a guessed id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

SIGNATURE_CHARS = 32
_LINK = re.compile(r"^([1-9][0-9]{0,9})\.([A-Za-z0-9_-]{%d})$" % SIGNATURE_CHARS)


def manage_signature(subscriber_id: int, secret: str) -> str:
    mac = hmac.new(secret.encode(), f"manage:{subscriber_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii")[:SIGNATURE_CHARS]


def manage_token(subscriber_id: int, secret: str) -> str:
    return f"{subscriber_id}.{manage_signature(subscriber_id, secret)}"


def manage_url(base_url: str, subscriber_id: int, secret: str) -> str:
    return f"{base_url.rstrip('/')}/subscription/{manage_token(subscriber_id, secret)}"


def parse_manage_token(value: str) -> tuple[int, str] | None:
    """(subscriber id, signature) of a well-formed link, else None; the caller checks the signature."""
    match = _LINK.match(value or "")
    return (int(match.group(1)), match.group(2)) if match else None


def signature_matches(subscriber_id: int, secret: str | None, signature: str) -> bool:
    if not secret:  # a row from before migration 0013 that it could not fill: no link opens it
        return False
    return hmac.compare_digest(manage_signature(subscriber_id, secret), signature)
