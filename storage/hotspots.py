"""The hot issues' refreshes (`HotIssueRun`): stored by the background job, read by the console and the API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, HotIssueRun

KEEP_RUNS = 5


async def latest_run(session: AsyncSession) -> HotIssueRun | None:
    return (await session.execute(select(HotIssueRun).order_by(HotIssueRun.computed_at.desc(), HotIssueRun.id.desc())
                                  .limit(1))).scalar_one_or_none()


async def store_run(session: AsyncSession, *, computed_at: datetime, since: datetime, until: datetime, cases: int,
                    seconds: float, groups: list[dict[str, Any]]) -> HotIssueRun:
    """Store a refresh and forget all but the newest KEEP_RUNS."""
    run = HotIssueRun(computed_at=computed_at, since=since, until=until, cases=cases, seconds=seconds, groups=groups)
    session.add(run)
    await session.flush()
    keep = select(HotIssueRun.id).order_by(HotIssueRun.computed_at.desc(), HotIssueRun.id.desc()).limit(KEEP_RUNS)
    await session.execute(delete(HotIssueRun).where(HotIssueRun.id.not_in(keep.scalar_subquery())))
    return run


async def cases_of(session: AsyncSession, case_ids: Sequence[int]) -> list[Case]:
    """The cases of hot issues' groups that still exist, by id."""
    if not case_ids:
        return []
    return list((await session.execute(select(Case).where(Case.id.in_(list(case_ids))).order_by(Case.id))).scalars())
