"""items.text_capped: why an item's stored text or transcript is shorter than what was fetched

Items are capped when stored (store/caps.py: 600,000 characters, 100,000 words, 20,000 transcript
segments); the reason is kept on the row so `briefcast items list` can say what was left out.

Revision ID: 0011_item_text_caps
Revises: 0010_never_reused_ids
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_item_text_caps"
down_revision = "0010_never_reused_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("text_capped", sa.Text(), nullable=True))  # in place, SQLite too


def downgrade() -> None:
    # In place: a batch rebuild of `items` would cascade into its passages and segments (foreign
    # keys are on) and drop the table's AUTOINCREMENT (0010). SQLite has DROP COLUMN since 3.35.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE items DROP COLUMN text_capped")
    else:
        op.drop_column("items", "text_capped")
