"""source weight: how much a source's stories count in the daily ranking (default 1)

Revision ID: 0007_source_weight
Revises: 0006_asr
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_source_weight"
down_revision = "0006_asr"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("weight", sa.Float(), nullable=False, server_default="1.0"))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("weight")
