"""A case handled, answered or closed without being accepted first gets the time of the first of those as its
`accepted_at` (the actions set it so from now on): the statistics' time to accept and the loop's on-time
acceptance then read the same moment. Rejected and duplicate cases were not accepted and keep none.

Revision ID: 0048
Revises: 0047
Create Date: 2026-12-06 10:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0048'
down_revision: str | None = '0047'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        UPDATE cases SET accepted_at = (
            SELECT min(trace_events.created_at) FROM trace_events
            WHERE trace_events.case_id = cases.id
              AND trace_events.kind IN ('accepted', 'in_handling', 'answered', 'closed'))
        WHERE accepted_at IS NULL AND status NOT IN ('received', 'routed', 'rejected', 'duplicate')
    """)


def downgrade() -> None:
    pass  # the times set are true ones (the case was accepted by then); nothing tells them from the others
