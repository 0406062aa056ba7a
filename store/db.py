"""Engine and sessions: SQLite (WAL) as the embedded default, PostgreSQL by URL; Alembic on start, once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

try:
    import fcntl
except ImportError:  # not POSIX: SQLite migrations go without the file lock
    fcntl = None

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_MMAP_BYTES = 1 << 30  # PRAGMA mmap_size: a 1M-passage database is ~0.6 GB


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the API read while a fetch writes; foreign keys are off by default in SQLite.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Reads through a memory map instead of a read() per page: a search looks up ~200 passages
    # scattered over the file, and at 1M passages the syscalls were most of that lookup's time
    # (2.1 -> 1.3 ms). Address space only; the pages are the OS's shared file cache.
    cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cur.close()


class SchemaError(RuntimeError):
    """The database's schema is one this code cannot use (a newer briefcast migrated it)."""


# PostgreSQL advisory lock key for migrations: any 64-bit number no other code of ours takes.
MIGRATION_LOCK_KEY = int.from_bytes(b"briefcst", "big") & 0x7FFF_FFFF_FFFF_FFFF


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic, on the given engine's database, once.

    Every process opens the database on first use (the CLI, each API worker, each prefork worker
    child), so many may find a fresh database at the same moment. A database already at head is
    left alone without taking any lock; otherwise Alembic runs under a lock that only one process
    holds at a time (PostgreSQL: an advisory lock held by the migrating transaction; SQLite: an
    exclusive lock on a file beside the database), and whoever gets it next finds the work done.
    """
    if revision == "head" and _stored_revision(engine) == head_revision():
        return  # the common case, answered without importing Alembic (a quarter of a CLI search's start)
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    script = _scripts()
    if revision == "head" and _current_revision(engine, script) == script.get_current_head():
        return
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        _refuse_unknown(MigrationContext.configure(conn).get_current_revision(), script, engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


_REVISION = re.compile(r"""^revision = ["']([^"']+)["']""", re.M)
_DOWN_REVISION = re.compile(r"""^down_revision = ["']([^"']+)["']""", re.M)


@cache
def head_revision() -> str | None:
    """The newest migration's id, read from the version files: the one no other revises."""
    revisions, revised = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        if found := _REVISION.search(source):
            revisions.add(found.group(1))
        if down := _DOWN_REVISION.search(source):
            revised.add(down.group(1))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None  # None: let Alembic sort it out


def _stored_revision(engine: Engine) -> str | None:
    """The database's schema revision, or None when it has none yet (or cannot say)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no alembic_version table: a fresh database
        return None


@cache
def _scripts() -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def _current_revision(engine: Engine, script: ScriptDirectory) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    _refuse_unknown(current, script, engine)
    return current


def _refuse_unknown(current: str | None, script: ScriptDirectory, engine: Engine) -> None:
    if current is not None and current not in {s.revision for s in script.walk_revisions()}:
        raise SchemaError(
            f"the database {engine.url.render_as_string(hide_password=True)} is at schema revision {current!r}, "
            f"which this briefcast does not know (its newest is {script.get_current_head()!r}): a newer briefcast "
            "migrated it. Run that version, or restore a backup taken before the upgrade."
        )


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive flock on `<database>.migrate-lock` for SQLite files; nothing otherwise."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:") or fcntl is None:
        yield
        return
    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks while another process migrates; freed on close
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def open_database(url: str, migrate_schema: bool = True) -> sessionmaker[Session]:
    """Engine + migrations + session factory: what every entry point needs.

    With `migrate_schema` False (BRIEFCAST_AUTO_MIGRATE=false: a fleet whose schema changes only by
    `briefcast db upgrade`), a database that is not at head is refused instead of migrated."""
    engine = make_engine(url)
    if migrate_schema:
        migrate(engine)
    else:
        require_head(engine)
    return session_factory(engine)


def require_head(engine: Engine) -> None:
    """SchemaError unless the database is at this code's newest revision."""
    stored, head = _stored_revision(engine), head_revision()
    if stored != head:
        where = engine.url.render_as_string(hide_password=True)
        raise SchemaError(
            f"the database {where} is at schema revision {stored or 'none (empty)'}, this briefcast needs {head}; "
            "automatic migration is off (BRIEFCAST_AUTO_MIGRATE=false): run `briefcast db upgrade` once")


def schema_state(url: str) -> dict[str, str | None]:
    """The database's revision and this code's newest, without migrating anything."""
    engine = make_engine(url)
    try:
        return {"database": engine.url.render_as_string(hide_password=True),
                "revision": _stored_revision(engine), "head": head_revision()}
    finally:
        engine.dispose()


@contextmanager
def scratch_postgres_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for a test or benchmark run, dropped afterwards."""
    import uuid

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + "/" + name
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
