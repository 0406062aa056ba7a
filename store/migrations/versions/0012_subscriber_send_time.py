"""subscribers.send_time: the local time a subscriber wants the brief (None: the topic's send time)

Set from the subscription page (the signed link in every email); the worker sends at the later
of this and the brief being built.

Revision ID: 0012_subscriber_send_time
Revises: 0011_item_text_caps
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_subscriber_send_time"
down_revision = "0011_item_text_caps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("send_time", sa.String(5), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE subscribers DROP COLUMN send_time")
    else:
        op.drop_column("subscribers", "send_time")
