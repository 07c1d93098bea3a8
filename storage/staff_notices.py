"""What is new for staff: information a reporter added after staff last opened the case (the unread mark
of lists and the overview), and notices to the colleague a case is assigned to.

A case is *unread* while it has a follow-up from the reporter that nobody handling it has seen: newer than
its assignee's last opening of it, or, while it is assigned to nobody, newer than anyone's. Openings are
`case_views` rows that `staff_actions.record_view` writes; the follow-ups are the case's trace.
`unread_condition` is that rule; `cases.unread_since` keeps its answer for each case, so that the overview
counts the few unread cases through a partial index instead of testing every case: `refresh_unread` stores it
again in the transaction of each action that can change it — a follow-up (`follow_up_arrived`), an opening
(`case_seen`) and a new assignee or none (`staff_actions.assign_case`, `loop.transfer`). The notice to the
assignee is a `staff_notices` row that `follow_up_arrived` writes in the follow-up's transaction; opening the
case reads it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, literal, or_, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, CaseView, StaffNotice, TraceEvent, TraceKind

FOLLOW_UP_NOTICE = "follow_up"


async def case_seen(session: AsyncSession, case_id: int, user_id: int, at: datetime) -> None:
    """`user_id` opened the case at `at`: its follow-ups so far are read, and so are their notices to them."""
    view = await session.get(CaseView, (case_id, user_id))
    if view is None:
        session.add(CaseView(case_id=case_id, user_id=user_id, seen_at=at))
    elif view.seen_at < at:
        view.seen_at = at
    await session.execute(update(StaffNotice).where(StaffNotice.case_id == case_id, StaffNotice.user_id == user_id,
                                                    StaffNotice.read_at.is_(None)).values(read_at=at))
    await session.flush()
    await refresh_unread(session, case_id)


async def follow_up_arrived(session: AsyncSession, case: Case, *, notify: bool = True) -> StaffNotice | None:
    """The reporter added information to `case` (its follow-up flushed): the case is unread, and the colleague
    it is assigned to gets a notice (None when it is assigned to nobody: the queue sees the case's unread mark, or
    without `notify`: a part of what a notice already told). Call it in the follow-up's transaction."""
    await refresh_unread(session, case.id)
    if case.assigned_to_id is None or not notify:
        return None
    notice = StaffNotice(user_id=case.assigned_to_id, case_id=case.id, kind=FOLLOW_UP_NOTICE)
    session.add(notice)
    await session.flush()
    return notice


async def follow_up_withdrawn(session: AsyncSession, case_id: int, added_at: datetime) -> None:
    """The reporter's follow-up added at `added_at` was taken back, to be added again whole
    (`actions.withdraw_follow_up`): the case's unread mark is set anew, and the notice it gave, still unread, goes
    with it — the follow-up that replaces it gives its own, so the assignee is told once of what stands. A notice
    already read stays (it was seen)."""
    await session.execute(delete(StaffNotice).where(
        StaffNotice.case_id == case_id, StaffNotice.kind == FOLLOW_UP_NOTICE, StaffNotice.read_at.is_(None),
        StaffNotice.created_at >= added_at).execution_options(synchronize_session=False))
    await refresh_unread(session, case_id)


async def refresh_unread(session: AsyncSession, case_id: int) -> None:
    """Store the case's unread mark as `unread_condition` says now: the time of its newest follow-up while its
    handlers have not seen one, else None. Pending changes (a new assignee, a view) are flushed first."""
    await session.flush()
    newest_follow_up = (select(func.max(TraceEvent.created_at))
                        .where(TraceEvent.case_id == Case.id, _is_follow_up()).scalar_subquery())
    await session.execute(update(Case).where(Case.id == case_id)
                          .values(unread_since=sql_case((unread_condition(), newest_follow_up), else_=None))
                          .execution_options(synchronize_session=False))


def unread_condition() -> ColumnElement[bool]:
    """True for a case (of the enclosing query on `Case`) with a follow-up its handlers have not seen."""
    seen_after = exists().where(
        CaseView.case_id == Case.id,
        or_(Case.assigned_to_id.is_(None), CaseView.user_id == Case.assigned_to_id),
        CaseView.seen_at >= TraceEvent.created_at,
    ).correlate_except(CaseView)  # the case and the follow-up are the enclosing queries', two levels up and one
    return exists().where(TraceEvent.case_id == Case.id, _is_follow_up(), ~seen_after)


def _is_follow_up() -> ColumnElement[bool]:
    return TraceEvent.kind == literal(TraceKind.FOLLOW_UP.value, literal_execute=True)  # the partial index's


def is_unread() -> ColumnElement[bool]:
    """True for an unread case, as stored by the actions (`cases.unread_since`, partially indexed)."""
    return Case.unread_since.is_not(None)


async def unread_case_ids(session: AsyncSession, case_ids: Collection[int]) -> set[int]:
    """Which of these cases are unread."""
    if not case_ids:
        return set()
    query = select(Case.id).where(Case.id.in_(list(case_ids)), is_unread())
    return set((await session.execute(query)).scalars())


async def unread_by_queue(session: AsyncSession, queues: Collection[str] | None) -> dict[str, int]:
    """How many unread cases each queue has (None: every queue)."""
    query = select(Case.queue, func.count()).where(is_unread()).group_by(Case.queue)
    if queues is not None:
        query = query.where(Case.queue.in_(list(queues)))
    return {queue: int(count) for queue, count in (await session.execute(query)).all()}


@dataclass(frozen=True)
class Notice:
    id: int
    case_number: str
    kind: str
    created_at: datetime
    read: bool


async def notices_for(session: AsyncSession, user_id: int, *, unread_only: bool = False,
                      limit: int = 100, queues: Collection[str] | None = None) -> list[Notice]:
    """A staff member's notices, newest first; with `queues`, only those of cases in them (a case moved out of
    the member's queues cannot be opened by them, which is what reads its notice)."""
    query = (select(StaffNotice, Case.case_number).join(Case, Case.id == StaffNotice.case_id)
             .where(StaffNotice.user_id == user_id).order_by(StaffNotice.id.desc()).limit(limit))
    if unread_only:
        query = query.where(StaffNotice.read_at.is_(None))
    if queues is not None:
        query = query.where(Case.queue.in_(list(queues)))
    return [Notice(notice.id, number or "", notice.kind, notice.created_at, notice.read_at is not None)
            for notice, number in (await session.execute(query)).all()]


async def unread_notice_count(session: AsyncSession, user_id: int, queues: Collection[str] | None = None) -> int:
    """How many of the member's notices are unread; with `queues`, of cases in them (as `notices_for`)."""
    query = select(func.count()).select_from(StaffNotice).where(
        and_(StaffNotice.user_id == user_id, StaffNotice.read_at.is_(None)))
    if queues is not None:
        query = query.join(Case, Case.id == StaffNotice.case_id).where(Case.queue.in_(list(queues)))
    return int(await session.scalar(query) or 0)
