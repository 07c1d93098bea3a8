"""An index for a one-queue reviewer's count of cases to label (queue, label_status, label_confidence): with the
city-wide one alone the count read the whole city's cases to label to find its queue's (146 ms at a million)

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-06 02:55:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0045'
down_revision: str | None = '0044'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_cases_queue_label_review', 'cases', ['queue', 'label_status', 'label_confidence'])


def downgrade() -> None:
    op.drop_index('ix_cases_queue_label_review', table_name='cases')
