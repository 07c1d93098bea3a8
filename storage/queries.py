"""Reads for the console and the API: ticket lists, a ticket with everything staff may see, counts."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import search
from storage.models import (
    CLOSED_STATUSES,
    Attachment,
    Case,
    CaseStatus,
    InternalNote,
    StaffUser,
    utcnow,
)

OPEN_STATUSES = tuple(s.value for s in CaseStatus if s not in CLOSED_STATUSES)
NOT_ACCEPTED = (CaseStatus.RECEIVED.value, CaseStatus.ROUTED.value)


@dataclass
class CaseFilter:
    queues: Collection[str] | None = None  # None: every queue
    status: str | None = None
    label: str | None = None
    district: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    confidence_below: float | None = None
    confidence_at_least: float | None = None
    overdue: bool = False
    assigned_to_id: int | None = None
    needs_labelling: bool = False
    text: str | None = None
    #: the search terms of `text` (`nlp.search.query_terms`), looked up in the search index
    terms: tuple[str, ...] = ()


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(Case.status.in_(NOT_ACCEPTED), Case.accept_due_at < now),
        and_(Case.status.in_(OPEN_STATUSES), Case.resolve_due_at < now),
    )


def _filtered(query: Select[Any], flt: CaseFilter, threshold: float) -> Select[Any]:
    if flt.queues is not None:
        query = query.where(Case.queue.in_(list(flt.queues)))
    if flt.status:
        query = query.where(Case.status == flt.status)
    if flt.label:
        query = query.where(Case.label == flt.label)
    if flt.district:
        query = query.where(Case.district == (None if flt.district == "unsure" else flt.district))
    if flt.created_from:
        query = query.where(Case.created_at >= flt.created_from)
    if flt.created_to:
        query = query.where(Case.created_at < flt.created_to)
    if flt.confidence_below is not None:
        query = query.where(Case.label_confidence < flt.confidence_below)
    if flt.confidence_at_least is not None:
        query = query.where(Case.label_confidence >= flt.confidence_at_least)
    if flt.overdue:
        query = query.where(overdue_condition(utcnow()))
    if flt.assigned_to_id is not None:
        query = query.where(Case.assigned_to_id == flt.assigned_to_id)
    if flt.needs_labelling:
        query = query.where(or_(
            Case.label_status == "corrected",
            and_(Case.label_status.is_(None), or_(Case.label_confidence.is_(None), Case.label_confidence < threshold)),
        ))
    return query


def _text_condition(session: AsyncSession, flt: CaseFilter) -> ColumnElement[bool]:
    """The case number (in plain text) containing the query, or every search term of the query among the
    case's indexed words (storage/search.py: keyed hashes; the place and description are encrypted)."""
    assert flt.text
    needle = flt.text.replace("%", "").replace("_", "").strip()
    by_number: ColumnElement[bool] = Case.case_number.ilike(f"%{needle}%") if needle else false()
    return or_(by_number, search.matching(session, flt.terms)) if flt.terms else by_number


async def list_cases(session: AsyncSession, flt: CaseFilter, *, page: int, per_page: int,
                     threshold: float = 0.0) -> tuple[list[Case], int]:
    """One page of cases, newest first, and the total that match."""
    base = _filtered(select(Case), flt, threshold)
    if flt.text:
        base = base.where(_text_condition(session, flt))
    total = int(await session.scalar(select(func.count()).select_from(base.subquery())) or 0)
    rows = await session.execute(base.order_by(Case.created_at.desc(), Case.id.desc())
                                 .offset((page - 1) * per_page).limit(per_page))
    return list(rows.scalars()), total


async def case_by_number(session: AsyncSession, case_number: str) -> Case | None:
    query = (select(Case).where(Case.case_number == case_number)
             .options(selectinload(Case.trace), selectinload(Case.attachments)))
    return (await session.execute(query)).scalar_one_or_none()


async def notes_for(session: AsyncSession, case_id: int) -> list[tuple[InternalNote, str | None]]:
    query = (select(InternalNote, StaffUser.display_name)
             .outerjoin(StaffUser, StaffUser.id == InternalNote.author_id)
             .where(InternalNote.case_id == case_id).order_by(InternalNote.id))
    return [(note, name) for note, name in (await session.execute(query)).all()]


async def case_by_id(session: AsyncSession, case_id: int) -> Case | None:
    return await session.get(Case, case_id)


async def case_id_by_number(session: AsyncSession, case_number: str) -> int | None:
    return await session.scalar(select(Case.id).where(Case.case_number == case_number))


async def attachment(session: AsyncSession, attachment_id: int) -> Attachment | None:
    return await session.get(Attachment, attachment_id)


@dataclass
class QueueCounts:
    queue: str
    new: int
    in_handling: int
    overdue: int


async def queue_counts(session: AsyncSession, queues: Collection[str] | None) -> dict[str, QueueCounts]:
    now = utcnow()
    query = select(
        Case.queue,
        func.sum(sql_case((Case.status.in_(NOT_ACCEPTED), 1), else_=0)),
        func.sum(sql_case((Case.status.in_((CaseStatus.ACCEPTED.value, CaseStatus.IN_HANDLING.value,
                                            CaseStatus.ANSWERED.value)), 1), else_=0)),
        func.sum(sql_case((overdue_condition(now), 1), else_=0)),
    ).group_by(Case.queue)
    if queues is not None:
        query = query.where(Case.queue.in_(list(queues)))
    return {queue: QueueCounts(queue, int(new or 0), int(handling or 0), int(overdue or 0))
            for queue, new, handling, overdue in (await session.execute(query)).all()}
