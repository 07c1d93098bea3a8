"""The outbox forgets: dialog replies belong to their conversation (deleted with it), delivered payloads
are emptied, delivered rows pruned; conversations are found by their last activity for retention

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('conversation_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_foreign_key('fk_outbox_conversation_id', 'conversations', ['conversation_id'], ['id'],
                                    ondelete='CASCADE')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index('ix_conversations_updated_at', ['updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_updated_at')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint('fk_outbox_conversation_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_outbox_conversation_id'))
        batch_op.drop_column('conversation_id')
