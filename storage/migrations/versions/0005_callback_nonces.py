"""Signed callbacks seen: a (timestamp, nonce) pair is accepted once, by every process

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('callback_nonces',
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('nonce_key', sa.String(length=64), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'nonce_key')
    )
    with op.batch_alter_table('callback_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_nonces_seen_at'), ['seen_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('callback_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_nonces_seen_at'))
    op.drop_table('callback_nonces')
