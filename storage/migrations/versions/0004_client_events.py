"""Per-client-address limits: reports and wrong receipt codes by a keyed hash of the IP address

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 17:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('client_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('client_events', schema=None) as batch_op:
        batch_op.create_index('ix_client_events_key_time', ['kind', 'client_key', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_client_events_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('client_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_client_events_created_at'))
        batch_op.drop_index('ix_client_events_key_time')

    op.drop_table('client_events')
