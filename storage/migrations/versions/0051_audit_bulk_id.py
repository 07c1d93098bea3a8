"""The audit log's entries of an action on a selection of cases (the console's bulk assign, set status and move) carry
the bulk action's id in a plain, indexed column as well as in their encrypted detail, so that the audit log can be
filtered by it ("every entry of bulk action X"). The id is random and says nothing of a case or a person.

Entries written before keep their id in the detail only: it is copied into the column, reading the detail with the
application's key ring. Only entries of cases written since the day before the first version that marked bulk
actions (2026-12-07) are read; no entry before carries an id.

Revision ID: 0051
Revises: 0050
Create Date: 2026-12-07 05:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from storage.crypto import EncryptedJSON
from storage.models.base import UTCDateTime

revision: str = '0051'
down_revision: str | None = '0050'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_MARKED = datetime(2026, 12, 6, tzinfo=UTC)
"""No entry before this time carries a bulk action's id (the marks came with a version of 2026-12-07)."""
BATCH = 500

audit_log = sa.table("audit_log", sa.column("id", sa.Integer), sa.column("action", sa.String),
                     sa.column("detail", EncryptedJSON("audit_log.detail")), sa.column("created_at", UTCDateTime),
                     sa.column("bulk_id", sa.String))


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bulk_id', sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_log_bulk_id'), ['bulk_id'], unique=False)
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.execute(
            sa.select(audit_log.c.id, audit_log.c.detail)
            .where(audit_log.c.id > last, audit_log.c.created_at >= FIRST_MARKED, audit_log.c.action.like("case.%"))
            .order_by(audit_log.c.id).limit(BATCH)).all()
        if not rows:
            return
        marked = [{"row_id": row.id, "marked_bulk": str(row.detail["bulk"])[:16]} for row in rows
                  if isinstance(row.detail, dict) and row.detail.get("bulk") is not None]
        if marked:
            connection.execute(sa.update(audit_log).where(audit_log.c.id == sa.bindparam("row_id"))
                               .values(bulk_id=sa.bindparam("marked_bulk")), marked)
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_bulk_id'))
        batch_op.drop_column('bulk_id')
