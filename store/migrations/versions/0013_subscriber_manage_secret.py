"""subscribers.manage_secret: the key of each subscriber's settings-page link

The link was keyed by the unsubscribe token, which List-Unsubscribe shows to mail providers and the
unsubscribe mailbox: with it and a guessed id anyone could rebuild the link. Existing subscribers
get a random secret here (their old links stop working; the next email carries the new one).

Revision ID: 0013_subscriber_manage_secret
Revises: 0012_subscriber_send_time
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0013_subscriber_manage_secret"
down_revision = "0012_subscriber_send_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("manage_secret", sa.String(64), nullable=True))
    bind = op.get_bind()
    for (subscriber_id,) in bind.execute(sa.text("SELECT id FROM subscribers")).all():
        bind.execute(sa.text("UPDATE subscribers SET manage_secret = :s WHERE id = :i"),
                     {"s": secrets.token_urlsafe(32), "i": subscriber_id})


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE subscribers DROP COLUMN manage_secret")
    else:
        op.drop_column("subscribers", "manage_secret")
