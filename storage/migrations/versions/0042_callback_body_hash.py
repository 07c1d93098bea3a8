"""A keyed hash of the first body of each accepted callback (`callback_nonces.body_hash`), so that the platform
resending the same request with the same (timestamp, nonce) is told from a replay carrying another body

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-05 23:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0042'
down_revision: str | None = '0041'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('callback_nonces', sa.Column('body_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE callback_nonces DROP COLUMN body_hash")  # not batch mode: no table rebuild on SQLite
