"""The console at a city's scale: the indexes the query plans at a million cases asked for

Revision ID: 0040
Revises: 0033
Create Date: 2026-12-04 23:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0040'
down_revision: str | None = '0033'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_ACCEPTED = "status IN ('received', 'routed')"
OPEN = "status IN ('received', 'routed', 'accepted', 'in_handling', 'answered')"
FOLLOW_UP = "kind = 'follow_up'"


def upgrade() -> None:
    op.create_index('ix_cases_queue_created', 'cases', ['queue', 'created_at', 'id'])
    op.create_index('ix_cases_queue_status', 'cases', ['queue', 'status'])
    op.create_index('ix_cases_accepted_at', 'cases', ['accepted_at'])
    op.create_index('ix_cases_closed_at', 'cases', ['closed_at'])
    op.create_index('ix_cases_assigned_to', 'cases', ['assigned_to_id'])
    op.create_index('ix_cases_label_review', 'cases', ['label_status', 'label_confidence'])
    op.create_index('ix_cases_open_accept_due', 'cases', ['accept_due_at'],
                    postgresql_where=sa.text(NOT_ACCEPTED), sqlite_where=sa.text(NOT_ACCEPTED))
    op.create_index('ix_cases_open_resolve_due', 'cases', ['resolve_due_at'],
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))
    op.create_index('ix_trace_events_follow_ups', 'trace_events', ['case_id', 'created_at'],
                    postgresql_where=sa.text(FOLLOW_UP), sqlite_where=sa.text(FOLLOW_UP))


def downgrade() -> None:
    op.drop_index('ix_trace_events_follow_ups', table_name='trace_events')
    for name in ('ix_cases_open_resolve_due', 'ix_cases_open_accept_due', 'ix_cases_label_review',
                 'ix_cases_assigned_to', 'ix_cases_closed_at', 'ix_cases_accepted_at', 'ix_cases_queue_status',
                 'ix_cases_queue_created'):
        op.drop_index(name, table_name='cases')
