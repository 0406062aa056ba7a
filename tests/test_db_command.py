"""`briefcast db status | upgrade` and BRIEFCAST_AUTO_MIGRATE=false: on a fleet the schema changes
once, by one command, and every other process refuses a database that is not at head (SQLite and
the real PostgreSQL)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from store.db import SchemaError, head_revision, make_engine
from tests.cli_inprocess import briefcast


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_with_auto_migration_off_only_the_command_migrates(tmp_path, db_url):
    env = {"BRIEFCAST_DATABASE_URL": db_url, "BRIEFCAST_AUTO_MIGRATE": "false"}
    status = briefcast(tmp_path, "db", "status", "--json", **env)
    assert status.returncode == 1 and json.loads(status.stdout)["revision"] is None

    refused = briefcast(tmp_path, "sources", "list", **env)
    assert refused.returncode == 2 and "briefcast db upgrade" in refused.stderr, refused.stderr
    assert "items" not in tables(db_url)  # refused, and nothing was created

    upgraded = briefcast(tmp_path, "db", "upgrade", **env)
    assert upgraded.returncode == 0 and upgraded.stdout.strip() == f"schema none -> {head_revision()}"
    assert briefcast(tmp_path, "db", "upgrade", **env).stdout.strip() == f"schema already at {head_revision()}"
    assert briefcast(tmp_path, "db", "status", **env).returncode == 0
    assert briefcast(tmp_path, "sources", "list", **env).returncode == 0


def test_by_default_any_process_migrates_on_first_use(tmp_path, sqlite_url):
    assert briefcast(tmp_path, "sources", "list", BRIEFCAST_DATABASE_URL=sqlite_url).returncode == 0
    assert "items" in tables(sqlite_url)


def test_the_api_refuses_an_old_schema_when_auto_migration_is_off(tmp_path, sqlite_url):
    from api.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, sqlite_url, encoder="fake", auto_migrate=False)
    with pytest.raises(SchemaError, match="briefcast db upgrade"):
        create_app(settings)


def test_migration_0013_gives_existing_subscribers_their_own_link_secret(db_url):
    """Subscribers stored before 0013 get a random manage_secret each (their links were keyed by the
    unsubscribe token, which mail providers see); new ones get one when they are added."""
    from digest.subscribers import add_subscriber
    from store.db import migrate, session_factory
    from store.models import Subscriber

    engine = make_engine(db_url)
    try:
        migrate(engine, "0012_subscriber_send_time")
        with engine.begin() as conn:
            for n in (1, 2):
                conn.execute(sa.text("INSERT INTO subscribers (email, timezone, topics, unsubscribe_token, active, "
                                     "created_at) VALUES (:e, 'UTC', '[]', :t, :a, CURRENT_TIMESTAMP)"),
                             {"e": f"old{n}@example.org", "t": f"token-{n}", "a": True})
        migrate(engine)
        sessions = session_factory(engine)
        add_subscriber(sessions, "new@example.org")
        with sessions() as session:
            secrets_ = [s.manage_secret for s in session.scalars(sa.select(Subscriber))]
        assert len(secrets_) == 3 and all(s and len(s) >= 40 for s in secrets_) and len(set(secrets_)) == 3
    finally:
        engine.dispose()
