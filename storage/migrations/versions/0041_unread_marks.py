"""The unread mark kept on the case (`cases.unread_since`), so that the overview counts unread cases through a
partial index instead of checking every case's follow-ups

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-05 23:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0041'
down_revision: str | None = '0040'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNREAD = "unread_since IS NOT NULL"
# `storage.staff_notices.unread_condition` as of this revision: the newest follow-up of a case, when no view by
# its assignee (by anyone while it has none) is as new as one of its follow-ups
BACKFILL = """
UPDATE cases SET unread_since = (
    SELECT max(f.created_at) FROM trace_events f WHERE f.case_id = cases.id AND f.kind = 'follow_up')
WHERE EXISTS (
    SELECT 1 FROM trace_events f WHERE f.case_id = cases.id AND f.kind = 'follow_up' AND NOT EXISTS (
        SELECT 1 FROM case_views v WHERE v.case_id = cases.id
        AND (cases.assigned_to_id IS NULL OR v.user_id = cases.assigned_to_id) AND v.seen_at >= f.created_at))
"""


def upgrade() -> None:
    op.add_column('cases', sa.Column('unread_since', sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)
    op.create_index('ix_cases_unread', 'cases', ['queue'], postgresql_where=sa.text(UNREAD),
                    sqlite_where=sa.text(UNREAD))


def downgrade() -> None:
    op.drop_index('ix_cases_unread', table_name='cases')
    op.drop_column('cases', 'unread_since')
