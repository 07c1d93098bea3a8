"""Reads for the console and the API: ticket lists, a ticket with everything staff may see, counts."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, or_, select, tuple_
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased, load_only, selectinload

from storage import search
from storage.models import (
    CLOSED_STATUSES,
    Attachment,
    Case,
    CaseStatus,
    CaseTerm,
    InternalNote,
    StaffUser,
    TraceEvent,
    TraceKind,
    utcnow,
)

OPEN_STATUSES = tuple(s.value for s in CaseStatus if s not in CLOSED_STATUSES)
NOT_ACCEPTED = (CaseStatus.RECEIVED.value, CaseStatus.ROUTED.value)
IN_HANDLING = (CaseStatus.ACCEPTED.value, CaseStatus.IN_HANDLING.value, CaseStatus.ANSWERED.value)


@dataclass
class CaseFilter:
    queues: Collection[str] | None = None  # None: every queue
    status: str | None = None
    label: str | None = None
    district: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    confidence_at_least: float | None = None  # label_confidence ≥ this (0–1)
    confidence_at_most: float | None = None  # label_confidence ≤ this (0–1)
    overdue: bool = False
    assigned_to_id: int | None = None
    needs_labelling: bool = False
    in_handling: bool = False  # accepted and not closed (accepted, in handling, answered): the overview's "办理中"
    open_only: bool = False  # not closed, rejected or a duplicate: work still to do (the overview's "分配给我")
    unread: bool = False  # with information from the reporter its handlers have not seen
    problem_id: int | None = None  # only the cases of this problem (a group of cases about one thing)
    text: str | None = None
    #: the search terms of `text` (`nlp.search.query_terms`), looked up in the search index
    terms: tuple[str, ...] = ()


def status_in(statuses: Collection[str]) -> ColumnElement[bool]:
    """`status IN (...)` with the statuses written into the statement, so that PostgreSQL's plans for prepared
    statements still see the predicates of the partial indexes on open cases."""
    return Case.status.in_([literal(status, literal_execute=True) for status in statuses])


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(status_in(NOT_ACCEPTED), Case.accept_due_at < now),
        and_(status_in(OPEN_STATUSES), Case.resolve_due_at < now),
    )


def late_to_accept(cutoff: datetime) -> ColumnElement[bool]:
    """A case whose acceptance deadline passed before `cutoff` unmet: accepted (or closed unaccepted) after it, or
    still waiting. A case handled or answered without "accept" has the time of that as `accepted_at`
    (`actions.TAKEN_ON`, migration 0048); one with no record of when counts as accepted in time. The statistics
    page's overdue count and the loop's on-time share both count with it, so they agree."""
    first_response = func.coalesce(Case.accepted_at, Case.closed_at)
    return and_(Case.accept_due_at.is_not(None), Case.accept_due_at < cutoff, or_(
        and_(first_response.is_(None), status_in(NOT_ACCEPTED)), first_response > Case.accept_due_at))


def late_to_close(cutoff: datetime) -> ColumnElement[bool]:
    """A case whose resolve-by date (as extended) passed before `cutoff` while it was still open."""
    return and_(Case.resolve_due_at.is_not(None), Case.resolve_due_at < cutoff,
                or_(Case.closed_at.is_(None), Case.closed_at > Case.resolve_due_at))


def _filtered(query: Select[Any], flt: CaseFilter, threshold: float) -> Select[Any]:
    if flt.queues is not None:
        query = query.where(Case.queue.in_(list(flt.queues)))
    if flt.status:
        query = query.where(Case.status == flt.status)
    if flt.in_handling:
        query = query.where(status_in(IN_HANDLING))
    if flt.open_only:
        query = query.where(status_in(OPEN_STATUSES))
    if flt.unread:
        query = query.where(Case.unread_since.is_not(None))
    if flt.label:
        query = query.where(Case.label == flt.label)
    if flt.district:
        query = query.where(Case.district == (None if flt.district == "unsure" else flt.district))
    if flt.created_from:
        query = query.where(Case.created_at >= flt.created_from)
    if flt.created_to:
        query = query.where(Case.created_at < flt.created_to)
    if flt.confidence_at_most is not None:
        query = query.where(Case.label_confidence <= flt.confidence_at_most)
    if flt.confidence_at_least is not None:
        query = query.where(Case.label_confidence >= flt.confidence_at_least)
    if flt.overdue:
        query = query.where(overdue_condition(utcnow()))
    if flt.assigned_to_id is not None:
        query = query.where(Case.assigned_to_id == flt.assigned_to_id)
    if flt.problem_id is not None:
        query = query.where(Case.problem_id == flt.problem_id)
    if flt.needs_labelling:
        query = query.where(or_(
            Case.label_status == "corrected",
            and_(Case.label_status.is_(None), or_(Case.label_confidence.is_(None), Case.label_confidence < threshold)),
        ))
    return query


CASE_NUMBER_PART = re.compile(r"(?:[A-Za-z]{1,8}-?)?[0-9][0-9-]*|[A-Za-z]{1,8}-[0-9-]*")
"""Text that can be part of a case number (`QL-2026-000123`, `2026-000123`, `123`, `QL-`): only such a query is
also looked for in the case numbers, which no index can do for a part (it reads every number)."""


COUNT_CAP = 10_000
"""Counts of a list stop here: beyond it the console says "10,000+" instead of counting every row."""
SEARCH_COUNT_CAP = 1_000
"""Counts of a search by words stop here ("1,000+"): its matches are found through the search index, one case at a
time, and a one-queue reviewer's count of a common word would otherwise read the whole city's cases that have it."""


@dataclass(frozen=True)
class CaseCursor:
    """A place in the newest-first list: the case at (`created_at`, `id`); pages continue after or before it."""

    created_at: datetime
    id: int

    @classmethod
    def of(cls, case: Case) -> CaseCursor:
        return cls(case.created_at, case.id)


@dataclass
class CasePage:
    """One page of a list; `older` / `newer`: where the next / previous page starts (None: there is none)."""

    cases: list[Case]
    older: CaseCursor | None = None
    newer: CaseCursor | None = None


@dataclass(frozen=True)
class CaseCount:
    """How many cases match, counted up to a cap: `capped` means "at least `value`"."""

    value: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"

    def __bool__(self) -> bool:
        return self.value > 0


@dataclass(frozen=True)
class _Matching:
    """A query for the matching cases and the columns that order it newest first: the case's own, or — for a
    search by words — the search index's copy of them, so that the database reads the rarest term's cases
    newest first from its index and stops after the page."""

    query: Select[Any]
    created_at: Any
    id: Any


async def _matching(session: AsyncSession, flt: CaseFilter, threshold: float, *columns: Any) -> _Matching:
    query = _filtered(select(*columns) if columns else select(Case), flt, threshold)
    if not flt.text:
        return _Matching(query, Case.created_at, Case.id)
    needle = flt.text.strip()
    hashes = await search.rarest_first(session, flt.terms) if flt.terms else []
    if CASE_NUMBER_PART.fullmatch(needle):  # the case numbers containing it, or the cases with its words
        by_terms = Case.id.in_(search.cases_with(hashes)) if hashes else false()
        return _Matching(query.where(or_(Case.case_number.ilike(f"%{needle}%"), by_terms)), Case.created_at, Case.id)
    if not hashes:  # no searchable word (punctuation, a wildcard, stop words only)
        return _Matching(query.where(false()), Case.created_at, Case.id)
    first, *others = hashes
    listed = aliased(CaseTerm)
    query = query.join(listed, and_(listed.case_id == Case.id, listed.term == first)).where(
        *search.having(listed.case_id, others))
    return _Matching(query, listed.created_at, listed.case_id)


async def list_cases(session: AsyncSession, flt: CaseFilter, *, per_page: int, after: CaseCursor | None = None,
                     before: CaseCursor | None = None, threshold: float = 0.0,
                     only: Sequence[InstrumentedAttribute[Any]] = ()) -> CasePage:
    """One page of cases, newest first: the first, the one after `after` (older cases) or the one before `before`
    (newer cases). Keyset pagination: a deep page costs what the first does, with the indexes on
    (queue, created_at, id) and created_at. With `only`, the cases carry those attributes alone (reading another
    raises): an encrypted column not read is not decrypted, which is most of the cost of a long list."""
    matching = await _matching(session, flt, threshold)
    if only:
        matching = replace(matching, query=matching.query.options(
            load_only(Case.id, Case.created_at, *only, raiseload=True)))
    created_at, case_id = matching.created_at, matching.id
    key = tuple_(created_at, case_id)
    if before is not None:
        rows = list((await session.execute(
            matching.query.where(key > tuple_(literal(before.created_at, Case.created_at.type), literal(before.id)))
            .order_by(created_at, case_id).limit(per_page + 1))).scalars())
        more_newer = len(rows) > per_page
        cases = rows[:per_page][::-1]
        return CasePage(cases, older=CaseCursor.of(cases[-1]) if cases else None,
                        newer=CaseCursor.of(cases[0]) if cases and more_newer else None)
    base = matching.query
    if after is not None:
        base = base.where(key < tuple_(literal(after.created_at, Case.created_at.type), literal(after.id)))
    rows = list((await session.execute(base.order_by(created_at.desc(), case_id.desc())
                                       .limit(per_page + 1))).scalars())
    cases = rows[:per_page]
    return CasePage(cases, older=CaseCursor.of(cases[-1]) if len(rows) > per_page else None,
                    newer=CaseCursor.of(cases[0]) if cases and after is not None else None)


async def count_cases(session: AsyncSession, flt: CaseFilter, *, threshold: float = 0.0,
                      cap: int = COUNT_CAP, search_cap: int = SEARCH_COUNT_CAP) -> CaseCount:
    """The number of matching cases, counting no further than `cap` (the database stops reading there), or than
    `search_cap` when the filter searches by text."""
    if flt.text:
        cap = min(cap, search_cap)
    limited = (await _matching(session, flt, threshold, Case.id)).query.limit(cap + 1).subquery()
    found = int(await session.scalar(select(func.count()).select_from(limited)) or 0)
    return CaseCount(cap, capped=True) if found > cap else CaseCount(found)


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


async def answered_case_ids(session: AsyncSession, case_ids: Collection[int]) -> set[int]:
    """Those of the cases whose reporter has had an answer."""
    if not case_ids:
        return set()
    return set((await session.execute(select(TraceEvent.case_id).where(
        TraceEvent.case_id.in_(list(case_ids)), TraceEvent.kind == TraceKind.ANSWERED))).scalars())


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
        func.sum(sql_case((Case.status.in_(IN_HANDLING), 1), else_=0)),
        func.sum(sql_case((overdue_condition(now), 1), else_=0)),
    ).where(status_in(OPEN_STATUSES)).group_by(Case.queue)  # every sum is of open cases: closed ones are skipped
    if queues is not None:
        query = query.where(Case.queue.in_(list(queues)))
    return {queue: QueueCounts(queue, int(new or 0), int(handling or 0), int(overdue or 0))
            for queue, new, handling, overdue in (await session.execute(query)).all()}


async def evidence_position(session: AsyncSession, stored: Attachment) -> int:
    """Which of its case's files `stored` is, from 1, in the order they came (the case's `attachments`)."""
    return await session.scalar(select(func.count()).select_from(Attachment).where(
        Attachment.case_id == stored.case_id, Attachment.id <= stored.id)) or 1
