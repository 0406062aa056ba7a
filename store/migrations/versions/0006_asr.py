"""asr: which model transcribed an episode, and why a transcription failed

Revision ID: 0006_asr
Revises: 0005_keyword_index
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_asr"
down_revision = "0005_keyword_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("transcript_model", sa.String(128), nullable=True))
        batch.add_column(sa.Column("transcript_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("transcript_error")
        batch.drop_column("transcript_model")
