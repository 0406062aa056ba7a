"""passage_vectors, passage_tombstones, vector_quantizers: vectors live in the database

Every replica keeps an in-memory FAISS mirror synced from these tables instead of reading an index
directory on a shared disk (embed/mirror.py): rows of `passage_vectors` past the last `seq` it
holds are new, rows of `passage_tombstones` past its other watermark are deletions. A trigger
writes the tombstone on every delete from `passages`, whichever code (or cascade) deletes it.

Vectors of passages embedded before this revision are copied from the local index by the next
`briefcast embed` (embed/pipeline.py), not re-encoded.

Revision ID: 0014_passage_vectors
Revises: 0013_subscriber_manage_secret
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_passage_vectors"
down_revision = "0013_subscriber_manage_secret"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")

SQLITE_TRIGGER = """
CREATE TRIGGER passages_tombstone AFTER DELETE ON passages
BEGIN
    INSERT INTO passage_tombstones (passage_id) VALUES (OLD.id);
END
"""
PG_FUNCTION = """
CREATE FUNCTION passages_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO passage_tombstones (passage_id) VALUES (OLD.id);
    RETURN NULL;
END
$$
"""
PG_TRIGGER = """
CREATE TRIGGER passages_tombstone AFTER DELETE ON passages
FOR EACH ROW EXECUTE FUNCTION passages_tombstone()
"""


def upgrade() -> None:
    op.create_table(
        "passage_vectors",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("passage_id", sa.Integer, sa.ForeignKey("passages.id", ondelete="CASCADE",
                                                          name="fk_passage_vectors_passage_id_passages"),
                  nullable=False),
        sa.Column("model_id", sa.String(256), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("passage_id", "model_id", name="uq_passage_vectors_passage_model"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_passage_vectors_model_seq", "passage_vectors", ["model_id", "seq"])
    op.create_table(
        "passage_tombstones",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("passage_id", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "vector_quantizers",
        sa.Column("model_id", sa.String(256), primary_key=True),
        sa.Column("nlist", sa.Integer, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(SQLITE_TRIGGER)
    else:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS passages_tombstone" + ("" if op.get_bind().dialect.name == "sqlite"
                                                               else " ON passages"))
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS passages_tombstone()")
    op.drop_table("vector_quantizers")
    op.drop_table("passage_tombstones")
    op.drop_index("ix_passage_vectors_model_seq", table_name="passage_vectors")
    op.drop_table("passage_vectors")
