"""The statistics' periods read from indexes alone (PostgreSQL): the index on a case's date of receipt carries
(INCLUDE) every column the statistics and the closed loop's figures read of it, and those on the dates of
acceptance and closing the columns their medians and weekly series read. A year's statistics at a million cases
visited the table's row of each case of the period once per figure; now each figure is an index-only scan of the
period. SQLite has no INCLUDE: its indexes stay as they are

Revision ID: 0046
Revises: 0045
Create Date: 2026-12-06 04:40:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0046'
down_revision: str | None = '0045'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERIOD_FIGURES = ['queue', 'label', 'district', 'status', 'accepted_at', 'closed_at', 'accept_due_at',
                  'resolve_due_at', 'rating', 'rehandle_count', 'extension_count', 'notices_delivered',
                  'notices_failed', 'id']


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index('ix_cases_created_at', table_name='cases')
    op.create_index('ix_cases_created_at', 'cases', ['created_at'], postgresql_include=PERIOD_FIGURES)
    op.drop_index('ix_cases_accepted_at', table_name='cases')
    op.create_index('ix_cases_accepted_at', 'cases', ['accepted_at'], postgresql_include=['created_at', 'queue'])
    op.drop_index('ix_cases_closed_at', table_name='cases')
    op.create_index('ix_cases_closed_at', 'cases', ['closed_at'],
                    postgresql_include=['created_at', 'queue', 'rating', 'resolve_due_at'])


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_index('ix_cases_closed_at', table_name='cases')
    op.create_index('ix_cases_closed_at', 'cases', ['closed_at'])
    op.drop_index('ix_cases_accepted_at', table_name='cases')
    op.create_index('ix_cases_accepted_at', 'cases', ['accepted_at'])
    op.drop_index('ix_cases_created_at', table_name='cases')
    op.create_index('ix_cases_created_at', 'cases', ['created_at'])
