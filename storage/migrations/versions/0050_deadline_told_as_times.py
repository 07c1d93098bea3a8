"""The deadline a case's staff were warned of and escalated for is stored as its kind and its time (four typed
columns) instead of one "<kind>:<ISO time>" text each, so that the database can compare it with the case's
deadlines: two partial indexes hold only the open cases not escalated for their current deadline, and the
deadline round reads those instead of every overdue case (the backlog told long ago among them).

Revision ID: 0050
Revises: 0049
Create Date: 2026-12-06 23:30:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

from storage.models.base import UTCDateTime

revision: str = '0050'
down_revision: str | None = '0049'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status IN ('received', 'routed', 'accepted', 'in_handling', 'answered')"
ACCEPT_UNESCALATED = ("NOT (accepted_at IS NOT NULL OR COALESCE(escalated_kind = 'accept' "
                      "AND escalated_due_at = accept_due_at, FALSE))")
RESOLVE_UNESCALATED = ("NOT ((accepted_at IS NULL AND accept_due_at IS NOT NULL) OR COALESCE(escalated_kind = "
                       "'resolve' AND escalated_due_at = resolve_due_at, FALSE))")
BATCH = 5000

cases = sa.table("cases", sa.column("id", sa.Integer), sa.column("warned_for", sa.String),
                 sa.column("escalated_for", sa.String), sa.column("warned_kind", sa.String),
                 sa.column("warned_due_at", UTCDateTime), sa.column("escalated_kind", sa.String),
                 sa.column("escalated_due_at", UTCDateTime))


def _parsed(marker: str | None) -> tuple[str | None, datetime | None]:
    """("accept" | "resolve", time) of a "<kind>:<ISO time>" marker; (None, None) for none or an unreadable one
    (that deadline is then told once more)."""
    kind, _, due = (marker or "").partition(":")
    try:
        when = datetime.fromisoformat(due)
    except ValueError:
        return None, None
    return (kind, when) if kind in ("accept", "resolve") and when.tzinfo is not None else (None, None)


def upgrade() -> None:
    for name, type_ in (("warned_kind", sa.String(length=8)), ("warned_due_at", UTCDateTime()),
                        ("escalated_kind", sa.String(length=8)), ("escalated_due_at", UTCDateTime())):
        op.add_column("cases", sa.Column(name, type_, nullable=True))

    markers = sa.select(cases.c.id, cases.c.warned_for, cases.c.escalated_for).where(
        sa.or_(cases.c.warned_for.is_not(None), cases.c.escalated_for.is_not(None)))
    connection = op.get_bind()
    after = 0
    while rows := connection.execute(markers.where(cases.c.id > after).order_by(cases.c.id).limit(BATCH)).all():
        typed = []
        for case_id, warned, escalated in rows:
            (warned_kind, warned_due), (escalated_kind, escalated_due) = _parsed(warned), _parsed(escalated)
            typed.append({"case_id": case_id, "wk": warned_kind, "wd": warned_due, "ek": escalated_kind,
                          "ed": escalated_due})
        connection.execute(
            sa.update(cases).where(cases.c.id == sa.bindparam("case_id"))
            .values(warned_kind=sa.bindparam("wk"), warned_due_at=sa.bindparam("wd"),
                    escalated_kind=sa.bindparam("ek"), escalated_due_at=sa.bindparam("ed")), typed)
        after = rows[-1][0]
    op.drop_column("cases", "warned_for")
    op.drop_column("cases", "escalated_for")
    op.create_index("ix_cases_accept_unescalated", "cases", ["accept_due_at"],
                    postgresql_where=sa.text(f"{OPEN} AND {ACCEPT_UNESCALATED}"),
                    sqlite_where=sa.text(f"{OPEN} AND {ACCEPT_UNESCALATED}"))
    op.create_index("ix_cases_resolve_unescalated", "cases", ["resolve_due_at"],
                    postgresql_where=sa.text(f"{OPEN} AND {RESOLVE_UNESCALATED}"),
                    sqlite_where=sa.text(f"{OPEN} AND {RESOLVE_UNESCALATED}"))


def downgrade() -> None:
    op.drop_index("ix_cases_resolve_unescalated", table_name="cases")
    op.drop_index("ix_cases_accept_unescalated", table_name="cases")
    op.add_column("cases", sa.Column("warned_for", sa.String(length=60), nullable=True))
    op.add_column("cases", sa.Column("escalated_for", sa.String(length=60), nullable=True))
    warned = sa.select(cases.c.id, cases.c.warned_kind, cases.c.warned_due_at,
                       cases.c.escalated_kind, cases.c.escalated_due_at)
    connection = op.get_bind()
    after = 0
    while rows := connection.execute(
            warned.where(sa.or_(cases.c.warned_kind.is_not(None), cases.c.escalated_kind.is_not(None)),
                         cases.c.id > after).order_by(cases.c.id).limit(BATCH)).all():
        connection.execute(
            sa.update(cases).where(cases.c.id == sa.bindparam("case_id"))
            .values(warned_for=sa.bindparam("w"), escalated_for=sa.bindparam("e")),
            [{"case_id": case_id, "w": f"{wk}:{wd.isoformat()}" if wk and wd else None,
              "e": f"{ek}:{ed.isoformat()}" if ek and ed else None} for case_id, wk, wd, ek, ed in rows])
        after = rows[-1][0]
    for name in ("escalated_due_at", "escalated_kind", "warned_due_at", "warned_kind"):
        op.drop_column("cases", name)
