"""model calls keep their prompt and reply text, so a bad summary can be audited

Revision ID: 0009_model_call_text
Revises: 0008_slack_requests
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_model_call_text"
down_revision = "0008_slack_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_calls") as batch:
        batch.add_column(sa.Column("prompt", sa.Text(), nullable=True))
        batch.add_column(sa.Column("response", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_calls") as batch:
        batch.drop_column("response")
        batch.drop_column("prompt")
