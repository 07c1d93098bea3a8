"""How many notices to its reporter a case had delivered or given up before their outbox rows were pruned

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-04 23:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0033'
down_revision: str | None = '0032'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("notices_delivered", "notices_failed"):
        op.add_column('cases', sa.Column(column, sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    for column in ("notices_failed", "notices_delivered"):
        op.execute(f"ALTER TABLE cases DROP COLUMN {column}")  # not batch mode: no table rebuild on SQLite
