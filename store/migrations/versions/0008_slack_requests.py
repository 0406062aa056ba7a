"""slack requests: one row per Slack event / command handled, so Slack's retries are not handled twice

Revision ID: 0008_slack_requests
Revises: 0007_source_weight
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_slack_requests"
down_revision = "0007_source_weight"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_slack_requests"),
        sa.UniqueConstraint("key", name="uq_slack_requests_key"),
    )
    op.create_index("ix_slack_requests_received_at", "slack_requests", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_requests_received_at", table_name="slack_requests")
    op.drop_table("slack_requests")
