"""Housekeeping actions against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from storage import housekeeping
from storage.models import utcnow
from tests.factories import file_case


async def test_a_scheduled_job_runs_once_per_period(sessionmaker: Any) -> None:
    period = utcnow() - timedelta(hours=1)
    results = []
    for _ in range(3):
        async with sessionmaker.begin() as session:
            results.append(await housekeeping.claim_scheduled_run(session, "daily_digest", period))
    async with sessionmaker.begin() as session:
        next_period = await housekeeping.claim_scheduled_run(session, "daily_digest", utcnow() + timedelta(seconds=1))
    assert results == [True, False, False] and next_period is True


async def test_sqlite_gets_planner_statistics_from_housekeeping_and_postgresql_keeps_its_own(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for reporter in range(3):
            await file_case(session, reporter_ref=str(reporter))
        sqlite = session.get_bind().dialect.name == "sqlite"
        first = await housekeeping.optimize(session)
    async with sessionmaker.begin() as session:
        again = await housekeeping.optimize(session)
        indexes = set((await session.execute(text(
            "SELECT idx FROM sqlite_stat1 WHERE tbl = 'cases'"))).scalars()) if sqlite else set()
    assert (first, again) == (sqlite, sqlite)
    if sqlite:
        assert {"ix_cases_queue_created", "ix_cases_accepted_at"} <= indexes


async def test_one_process_holds_a_lease_until_it_stops_renewing_it(sessionmaker: Any) -> None:
    now = utcnow()
    stale = now - timedelta(seconds=30)
    async with sessionmaker.begin() as session:
        first = await housekeeping.hold_lease(session, "gauges", held_at=None, expired_before=stale)
        other = await housekeeping.hold_lease(session, "gauges", held_at=None, expired_before=stale)
        renewed = await housekeeping.hold_lease(session, "gauges", held_at=first,
                                                expired_before=now - timedelta(seconds=30))
        taken_over = await housekeeping.hold_lease(session, "gauges", held_at=None,
                                                   expired_before=utcnow() + timedelta(seconds=1))
        lost = await housekeeping.hold_lease(session, "gauges", held_at=renewed,
                                             expired_before=now - timedelta(seconds=30))
    assert first is not None and renewed is not None and taken_over is not None
    assert (other, lost) == (None, None)
