"""Draft evidence quotas: a draft's file remembers the keyed hash of the address it came from

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_key', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_attachments_draft_client', ['client_key'], unique=False,
                              postgresql_where=sa.text('case_id IS NULL'), sqlite_where=sa.text('case_id IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_attachments_draft_client')
        batch_op.drop_column('client_key')
