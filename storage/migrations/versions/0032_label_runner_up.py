"""The classifier's close runner-up on a case (issue 16): the label it nearly chose and the report's phrases that
decided against it (encrypted, like the key terms); NULL for cases filed before, or without a close runner-up

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-04 23:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0032'
down_revision: str | None = '0031'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('cases', sa.Column('label_runner_up', sa.String(length=40), nullable=True))
    op.add_column('cases', sa.Column('label_contrast_terms', sa.Text(), nullable=True))


def downgrade() -> None:
    for column in ("label_runner_up", "label_contrast_terms"):
        op.execute(f"ALTER TABLE cases DROP COLUMN {column}")  # not batch mode: no table rebuild on SQLite
