"""A covering partial index for the overview's per-queue counts of open cases (queue, status and both due dates),
so that PostgreSQL and SQLite count them from the index without reading the table

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-05 23:45:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0043'
down_revision: str | None = '0042'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('received', 'routed', 'accepted', 'in_handling', 'answered')"


def upgrade() -> None:
    op.create_index('ix_cases_open_counts', 'cases', ['queue', 'status', 'accept_due_at', 'resolve_due_at'],
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))


def downgrade() -> None:
    op.drop_index('ix_cases_open_counts', table_name='cases')
