"""The hot issues' refreshes (`storage.hotspots`), on SQLite and the PostgreSQL on 127.0.0.1: a refresh is stored
as it was computed and read back as the latest by when it was computed (not when it was stored); only the newest
`KEEP_RUNS` are kept; a group's cases are read back in id order, each once, those no longer there left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from storage import hotspots
from storage.models import HotIssueRun
from tests.factories import file_case

T0 = datetime(2026, 3, 2, 16, tzinfo=UTC)
HOUR = timedelta(hours=1)
GROUPS = [{"cases": [3, 1, 2], "heat": 7.25, "residents": 3, "weekly": [["2026-W10", 2], ["2026-W11", 1]]},
          {"cases": [5, 4], "heat": 2.5, "residents": 2, "weekly": [["2026-W10", 2]]}]


async def _store(session: Any, computed_at: datetime, cases: int = 8) -> HotIssueRun:
    return await hotspots.store_run(session, computed_at=computed_at, since=computed_at - timedelta(days=30),
                                    until=computed_at, cases=cases, seconds=0.25, groups=GROUPS)


async def test_the_latest_run_is_the_one_computed_last_and_none_before_any(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        assert await hotspots.latest_run(session) is None
    async with sessionmaker.begin() as session:
        newer = await _store(session, T0 + HOUR, cases=8)
        await _store(session, T0, cases=6)  # stored later, computed earlier (a slow refresh finishing late)
    async with sessionmaker() as session:
        latest = await hotspots.latest_run(session)
    assert latest is not None and latest.id == newer.id
    assert (latest.computed_at, latest.since, latest.until, latest.cases, latest.seconds, latest.groups) == (
        T0 + HOUR, T0 + HOUR - timedelta(days=30), T0 + HOUR, 8, 0.25, GROUPS)
    async with sessionmaker.begin() as session:
        same_time = await _store(session, T0 + HOUR, cases=9)
    async with sessionmaker() as session:
        latest = await hotspots.latest_run(session)
    assert latest is not None and (latest.id, latest.cases) == (same_time.id, 9)  # a tie: the one stored last


async def test_storing_a_run_forgets_all_but_the_newest_five(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for hours in (3, 0, 6, 1, 5, 2, 4):
            await _store(session, T0 + hours * HOUR, cases=hours)
    async with sessionmaker() as session:
        kept = sorted((await session.execute(select(HotIssueRun.cases))).scalars())
    assert hotspots.KEEP_RUNS == 5 and kept == [2, 3, 4, 5, 6]
    async with sessionmaker.begin() as session:
        await _store(session, T0 - HOUR, cases=-1)  # older than every run kept: not kept either
        await _store(session, T0 + 7 * HOUR, cases=7)
    async with sessionmaker() as session:
        kept = sorted((await session.execute(select(HotIssueRun.cases))).scalars())
    assert kept == [3, 4, 5, 6, 7]


async def test_a_groups_cases_are_read_in_id_order_without_those_no_longer_there(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        ids = [(await file_case(session, reporter_ref=str(number), description=f"第{number}号举报：窗口无人。"))[0].id
               for number in range(3)]
    missing = ids[-1] + 100  # a case the run names that is not there any more
    async with sessionmaker() as session:
        cases = await hotspots.cases_of(session, [ids[2], missing, ids[0], ids[2]])
        assert await hotspots.cases_of(session, []) == []
    assert [(case.id, case.description) for case in cases] == [(ids[0], "第0号举报：窗口无人。"),
                                                               (ids[2], "第2号举报：窗口无人。")]
