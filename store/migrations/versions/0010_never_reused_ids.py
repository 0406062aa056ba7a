"""never reused ids: sources, items and passages get SQLite AUTOINCREMENT

Without it SQLite hands the highest rowid out again once its row is deleted, and the index
(FAISS + tantivy) and the API's in-memory passage -> item map hold those ids: a new passage could
take a deleted one's id while a running reader still knew the old one. With AUTOINCREMENT SQLite
keeps the largest id ever used in sqlite_sequence and never goes below it. PostgreSQL's SERIAL
columns draw from sequences, which never hand a number out twice: nothing to do there.

SQLite cannot add AUTOINCREMENT to a table in place, so each table is rebuilt (alembic batch,
recreate="always"). Dropping `items` while foreign keys are enforced would run its ON DELETE
actions (passages, segments, stories...), so enforcement is switched off around the rebuild and
the result checked with PRAGMA foreign_key_check. PRAGMA foreign_keys is ignored inside a
transaction: whatever earlier migrations of this run did is committed first (on SQLite their DDL
was never transactional anyway), and a rerun of this one is harmless.

Revision ID: 0010_never_reused_ids
Revises: 0009_model_call_text
"""
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op
from sqlalchemy import Connection

revision = "0010_never_reused_ids"
down_revision = "0009_model_call_text"
branch_labels = None
depends_on = None

TABLES = ("sources", "items", "passages")  # the ids the index, the owner map and API clients hold


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    with _foreign_keys_off(bind):
        for table in TABLES:
            with op.batch_alter_table(table, recreate="always",
                                      table_kwargs={"sqlite_autoincrement": autoincrement}):
                pass


@contextmanager
def _foreign_keys_off(bind: Connection) -> Iterator[None]:
    dbapi = bind.connection.dbapi_connection
    enforced = bool(bind.exec_driver_sql("PRAGMA foreign_keys").scalar())
    if enforced:
        if dbapi.in_transaction:
            dbapi.commit()
        bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"rebuilding {', '.join(TABLES)} broke {len(broken)} foreign keys: {broken[:5]}")
    except BaseException:
        if dbapi.in_transaction:
            dbapi.rollback()
        raise
    finally:
        if enforced:
            if dbapi.in_transaction:
                dbapi.commit()  # the rebuild is complete here (an error rolled it back above)
            bind.exec_driver_sql("PRAGMA foreign_keys=ON")
