"""The web reader's signing key: made once per data directory, shared by every process on it."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from api.web.secret import SECRET_FILE, Signer, load_secret
from tests.conftest import ROOT, make_settings


def test_the_key_is_made_once_private_and_reused(tmp_path, sqlite_url):
    settings = make_settings(tmp_path, sqlite_url)
    first = load_secret(settings)
    path = settings.data_dir / SECRET_FILE
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(settings) == first


def test_processes_starting_together_agree_on_one_key(tmp_path, sqlite_url):
    settings = make_settings(tmp_path, sqlite_url)
    code = ("import sys; from api.web.secret import load_secret; from store.settings import Settings; "
            f"print(load_secret(Settings(data_dir={str(settings.data_dir)!r})).decode())")
    runs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for _ in range(6)]
    keys = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert len(keys) == 1 and len(keys.pop()) >= 32
    assert not [p for p in settings.data_dir.iterdir() if p.name != SECRET_FILE]  # no temporary file left


def test_a_configured_secret_wins_and_must_be_long(tmp_path, sqlite_url):
    assert load_secret(make_settings(tmp_path, sqlite_url, web_secret="s" * 40)) == b"s" * 40
    assert not (tmp_path / "data" / SECRET_FILE).exists()
    with pytest.raises(ValueError, match="at least 32"):
        load_secret(make_settings(tmp_path, sqlite_url, web_secret="short"))


def test_signatures_depend_on_key_purpose_and_message():
    a, b = Signer(b"k" * 32), Signer(b"j" * 32)
    assert a.verify("session", "1.2", a.sign("session", "1.2"))
    assert not b.verify("session", "1.2", a.sign("session", "1.2"))
    assert not a.verify("csrf", "1.2", a.sign("session", "1.2"))
    assert not a.verify("session", "1.3", a.sign("session", "1.2"))
    assert not a.verify("session", "1.2", "")


def test_a_session_cookie_expires_and_cannot_be_dated_ahead():
    from api.web.session import SessionCookies

    now = [1_000_000.0]
    cookies = SessionCookies(Signer(b"k" * 32), sessions=None, max_age_seconds=3600, clock=lambda: now[0])
    value = cookies.value_for(7)
    assert cookies.key_id_of(value) == 7
    now[0] += 3601
    assert cookies.key_id_of(value) is None  # older than the session's lifetime
    now[0] -= 7200
    assert cookies.key_id_of(value) is None  # issued "in the future": not ours
    for bad in ("", "7", "7.1.x", "a.b.c", "99999999999.1000000." + value.split(".")[2]):
        assert cookies.key_id_of(bad) is None
