"""passages.text_search: PostgreSQL full-text search over passages, kept by the database itself

On PostgreSQL a STORED generated column holds each passage's `to_tsvector('english', text)`
(English Snowball stems, stopwords dropped, with positions) and a GIN index covers it, so keyword
search (embed/keyword_pg.py) needs no index files on a local disk: every replica asks the one
database. Stored rather than computed at query time: ranking reads the lexemes and their
positions from the row instead of parsing every matching passage's text again for each query.
The ORM model does not declare the column; the database fills it on every insert and update.

Adding a stored generated column rewrites `passages` under an exclusive lock (all texts are
parsed once): plan for it on a large table. SQLite: nothing (it keeps the tantivy index).

Revision ID: 0015_passage_fulltext
Revises: 0014_passage_vectors
"""
from alembic import op

revision = "0015_passage_fulltext"
down_revision = "0014_passage_vectors"
branch_labels = None
depends_on = None

COLUMN = "text_search"
INDEX = "ix_passages_text_search"
CONFIG = "english"  # embed/keyword_pg.py analyses queries with the same configuration


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # The two-argument to_tsvector with a constant regconfig is immutable, as a generated column needs.
    op.execute(f"ALTER TABLE passages ADD COLUMN {COLUMN} tsvector "
               f"GENERATED ALWAYS AS (to_tsvector('{CONFIG}'::regconfig, text)) STORED")
    op.execute(f"CREATE INDEX {INDEX} ON passages USING gin ({COLUMN})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    op.execute(f"ALTER TABLE passages DROP COLUMN IF EXISTS {COLUMN}")
