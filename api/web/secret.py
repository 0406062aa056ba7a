"""The web reader's signing key: session cookies and CSRF tokens are HMACs under it.

`BRIEFCAST_WEB_SECRET` when set (every server of a deployment must share it); otherwise a random
key made once in data_dir/web-secret (mode 0600) and read by every process on that disk.
Changing it signs every reader out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from store.settings import Settings

SECRET_FILE = "web-secret"
MIN_SECRET_CHARS = 32


def load_secret(settings: Settings) -> bytes:
    if settings.web_secret is not None:
        value = settings.web_secret.get_secret_value()
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"BRIEFCAST_WEB_SECRET must be at least {MIN_SECRET_CHARS} characters")
        return value.encode()
    return _file_secret(settings.data_dir / SECRET_FILE)


def _file_secret(path: Path) -> bytes:
    """Written whole to a temporary file, then linked into place: of several processes starting
    together (serve --workers N) one link wins and every process reads the same complete key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".web-secret-")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            os.unlink(temporary)
    value = path.read_text(encoding="ascii").strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"{path} holds no usable key (delete it to make a new one)")
    return value.encode()


class Signer:
    """HMAC-SHA256 under the web secret, each use under its own purpose label."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, purpose: str, message: str) -> str:
        mac = hmac.new(self._key, f"{purpose}\x00{message}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def verify(self, purpose: str, message: str, signature: str) -> bool:
        return same_text(self.sign(purpose, message), signature or "")


def same_text(expected: str, given: str) -> bool:
    """Constant-time equality that is simply False for text compare_digest refuses (non-ASCII
    str raises TypeError): a forged cookie or form field is a refusal, never a 500."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogateescape"))
