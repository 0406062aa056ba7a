"""passages: drop the database full-text search (SQLite FTS5 table and triggers, PostgreSQL
tsvector column and GIN index); keyword search is the tantivy index beside FAISS (embed/keyword.py),
which the next `briefcast embed` fills from the passages table.

Revision ID: 0005_keyword_index
Revises: 0004_digest
"""
from alembic import op

revision = "0005_keyword_index"
down_revision = "0004_digest"
branch_labels = None
depends_on = None

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS passages_ai",
    "DROP TRIGGER IF EXISTS passages_ad",
    "DROP TRIGGER IF EXISTS passages_au",
    "DROP TABLE IF EXISTS passages_fts",
]
POSTGRES_DROP = [
    "DROP INDEX IF EXISTS ix_passages_tsv",
    "ALTER TABLE passages DROP COLUMN IF EXISTS tsv",
]
SQLITE_RESTORE = [
    "CREATE VIRTUAL TABLE passages_fts USING fts5(text, content='passages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER passages_ai AFTER INSERT ON passages BEGIN "
    "INSERT INTO passages_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER passages_ad AFTER DELETE ON passages BEGIN "
    "INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER passages_au AFTER UPDATE OF text ON passages BEGIN "
    "INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO passages_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO passages_fts(passages_fts) VALUES ('rebuild')",
]
POSTGRES_RESTORE = [
    "ALTER TABLE passages ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_passages_tsv ON passages USING GIN (tsv)",
]


def _run(sqlite: list[str], postgres: list[str]) -> None:
    for statement in sqlite if op.get_bind().dialect.name == "sqlite" else postgres:
        op.execute(statement)


def upgrade() -> None:
    _run(SQLITE_DROP, POSTGRES_DROP)


def downgrade() -> None:
    _run(SQLITE_RESTORE, POSTGRES_RESTORE)
