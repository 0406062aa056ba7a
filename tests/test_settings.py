"""Settings: defaults, BRIEFCAST_* variables, briefcast.toml, and their precedence."""

from __future__ import annotations

from pathlib import Path

from store.settings import Settings


def test_defaults_keep_everything_local_and_guarded():
    s = Settings()
    assert s.data_dir == Path("./data") and s.allow_private_addresses is False
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("data/briefcast.db")
    assert s.max_response_bytes == 20 * 1024 * 1024


def test_environment_overrides_toml_which_overrides_defaults(tmp_path, monkeypatch):
    config = tmp_path / "briefcast.toml"
    config.write_text('data_dir = "/srv/bc"\nconcurrency = 4\nallowed_networks = ["10.0.0.0/8"]\n')
    monkeypatch.setenv("BRIEFCAST_CONFIG", str(config))
    monkeypatch.setenv("BRIEFCAST_CONCURRENCY", "9")
    monkeypatch.setenv("BRIEFCAST_ALLOW_PRIVATE_ADDRESSES", "1")
    s = Settings()
    assert s.data_dir == Path("/srv/bc") and s.concurrency == 9 and s.allow_private_addresses is True
    assert s.allowed_networks == ["10.0.0.0/8"]


def test_database_url_overrides_the_sqlite_default(monkeypatch):
    monkeypatch.setenv("BRIEFCAST_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert Settings().db_url == "postgresql+psycopg://u@h/db"
