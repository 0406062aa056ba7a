"""Schema migrations run once however many processes open a fresh database at the same moment
(issue 11: every process, each prefork child included, opens the database and migrates on first use).

Real processes, released together once each has imported everything, on SQLite and the real
PostgreSQL: every one of them opens the database without an error, and the schema is at head.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.config import Config

from store.db import MIGRATIONS, SchemaError, make_engine, open_database

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 6
OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from store.db import open_database
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.005)
sessions = open_database(url)
with sessions() as session:
    session.execute(__import__("sqlalchemy").text("SELECT count(*) FROM items")).scalar_one()
print("opened")
"""


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def stored_revisions(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(tmp_path, db_url):
    go = tmp_path / "go"
    readies = [tmp_path / f"ready{n}" for n in range(PROCESSES)]
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, db_url, str(ready), str(go)], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for ready in readies]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in readies) and time.monotonic() < deadline:
            time.sleep(0.02)
        go.touch()
        outputs = [p.communicate(timeout=180) for p in processes]
    finally:
        for p in processes:
            p.kill()
    failures = [err[-1500:] for p, (_, err) in zip(processes, outputs) if p.returncode != 0]
    assert not failures, f"{len(failures)} of {PROCESSES} processes failed to open the database:\n" + "\n---\n".join(failures)
    assert stored_revisions(db_url) == [head_revision()]


def test_a_database_from_a_newer_briefcast_is_refused_with_a_clear_message(db_url):
    open_database(db_url).kw["bind"].dispose()
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="0099_from_the_future.*newer briefcast"):
        open_database(db_url)


def test_an_up_to_date_database_is_opened_without_running_alembic(db_url, monkeypatch):
    open_database(db_url).kw["bind"].dispose()
    import alembic.command

    def refuse(*args, **kwargs):
        raise AssertionError("alembic ran on a database already at head")

    monkeypatch.setattr(alembic.command, "upgrade", refuse)
    open_database(db_url).kw["bind"].dispose()


def test_the_head_read_from_the_files_is_alembics(tmp_path):
    from store.db import _scripts, head_revision

    assert head_revision() == _scripts().get_current_head()


def test_opening_a_database_at_head_imports_no_alembic(tmp_path):
    """Alembic costs ~0.2 s to import: a CLI search (a database at head) never pays it."""
    import subprocess
    import sys

    from store.db import open_database

    url = f"sqlite:///{tmp_path / 'head.db'}"
    open_database(url).kw["bind"].dispose()  # migrated here
    code = ("import sys; from store.db import open_database; open_database(%r); "
            "print('alembic' in sys.modules)" % url)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-500:]
