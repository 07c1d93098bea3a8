"""Evidence files remember when they were made free of their metadata: a file taken from now on is cleaned as it is
stored; every file stored before (images before they were re-encoded, every PDF so far) is marked as not cleaned,
for `qinglian evidence clean` to rewrite

Revision ID: 0049
Revises: 0048
Create Date: 2026-12-06 23:15:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0049'
down_revision: str | None = '0048'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cleaned_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_column('cleaned_at')
