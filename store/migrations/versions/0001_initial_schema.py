"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 13:35:57.143405
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('topic', sa.String(length=128), nullable=True),
    sa.Column('title', sa.String(length=512), nullable=True),
    sa.Column('site_url', sa.String(length=2048), nullable=True),
    sa.Column('language', sa.String(length=32), nullable=True),
    sa.Column('etag', sa.String(length=512), nullable=True),
    sa.Column('last_modified', sa.String(length=128), nullable=True),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('last_status', sa.String(length=16), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sources')),
    sa.UniqueConstraint('url', name=op.f('uq_sources_url'))
    )
    op.create_table('fetch_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('etag', sa.String(length=512), nullable=True),
    sa.Column('last_modified', sa.String(length=128), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('bytes_read', sa.Integer(), nullable=False),
    sa.Column('new_items', sa.Integer(), nullable=False),
    sa.Column('updated_items', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_fetch_attempts_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fetch_attempts'))
    )
    with op.batch_alter_table('fetch_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fetch_attempts_source_id'), ['source_id'], unique=False)

    op.create_table('items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('stable_key', sa.String(length=64), nullable=False),
    sa.Column('guid', sa.String(length=2048), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('canonical_url', sa.String(length=2048), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('author', sa.String(length=512), nullable=True),
    sa.Column('language', sa.String(length=32), nullable=True),
    sa.Column('published', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated', sa.DateTime(timezone=True), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.Column('text_source', sa.String(length=16), nullable=False),
    sa.Column('audio_url', sa.String(length=2048), nullable=True),
    sa.Column('transcript_status', sa.String(length=16), nullable=True),
    sa.Column('transcript_url', sa.String(length=2048), nullable=True),
    sa.Column('transcript_type', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_items_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_items')),
    sa.UniqueConstraint('source_id', 'stable_key', name='uq_items_source_stable_key')
    )
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_items_content_hash'), ['content_hash'], unique=False)
        batch_op.create_index('ix_items_published', ['published'], unique=False)
        batch_op.create_index('ix_items_source_canonical_url', ['source_id', 'canonical_url'], unique=False)
        batch_op.create_index(batch_op.f('ix_items_source_id'), ['source_id'], unique=False)

    op.create_table('tombstones',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('stable_key', sa.String(length=64), nullable=False),
    sa.Column('canonical_url', sa.String(length=2048), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_tombstones_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tombstones')),
    sa.UniqueConstraint('source_id', 'stable_key', name='uq_tombstones_source_stable_key')
    )
    with op.batch_alter_table('tombstones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tombstones_source_id'), ['source_id'], unique=False)

    op.create_table('transcript_segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('start', sa.Float(), nullable=True),
    sa.Column('end', sa.Float(), nullable=True),
    sa.Column('speaker', sa.String(length=256), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_transcript_segments_item_id_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcript_segments')),
    sa.UniqueConstraint('item_id', 'position', name='uq_segments_item_position')
    )
    with op.batch_alter_table('transcript_segments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcript_segments_item_id'), ['item_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('transcript_segments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transcript_segments_item_id'))

    op.drop_table('transcript_segments')
    with op.batch_alter_table('tombstones', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tombstones_source_id'))

    op.drop_table('tombstones')
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_items_source_id'))
        batch_op.drop_index('ix_items_source_canonical_url')
        batch_op.drop_index('ix_items_published')
        batch_op.drop_index(batch_op.f('ix_items_content_hash'))

    op.drop_table('items')
    with op.batch_alter_table('fetch_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fetch_attempts_source_id'))

    op.drop_table('fetch_attempts')
    op.drop_table('sources')

