"""Reads of the audit log (who saw or did what, when); entries are written by `staff_actions.audit` in the
transaction of what they record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry, Case, StaffUser

AuditRow = tuple[AuditEntry, str | None, str | None]
"""An entry with the username of its actor and the number of its case (None when there is none)."""


async def audit_log(session: AsyncSession, *, page: int, per_page: int, actor_id: int | None = None,
                    case_id: int | None = None) -> tuple[list[AuditRow], int]:
    """One page of entries, newest first, and the total that match."""
    base = select(AuditEntry)
    if actor_id is not None:
        base = base.where(AuditEntry.actor_id == actor_id)
    if case_id is not None:
        base = base.where(AuditEntry.case_id == case_id)
    total = int(await session.scalar(select(func.count()).select_from(base.subquery())) or 0)
    query = (select(AuditEntry, StaffUser.username, Case.case_number)
             .outerjoin(StaffUser, StaffUser.id == AuditEntry.actor_id)
             .outerjoin(Case, Case.id == AuditEntry.case_id)
             .order_by(AuditEntry.id.desc()).offset((page - 1) * per_page).limit(per_page))
    if actor_id is not None:
        query = query.where(AuditEntry.actor_id == actor_id)
    if case_id is not None:
        query = query.where(AuditEntry.case_id == case_id)
    return [(entry, user, number) for entry, user, number in (await session.execute(query)).all()], total


async def last_entry_at(session: AsyncSession, *, actor_id: int, case_id: int, action: str) -> datetime | None:
    """When `actor_id` last did `action` on the case (None: never)."""
    query = (select(AuditEntry.created_at).where(AuditEntry.actor_id == actor_id, AuditEntry.case_id == case_id,
                                                 AuditEntry.action == action)
             .order_by(AuditEntry.id.desc()).limit(1))
    return (await session.execute(query)).scalar_one_or_none()
