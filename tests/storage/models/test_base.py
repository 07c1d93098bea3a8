"""The shared column type and enums of the models: every time column stores the UTC instant and hands back an aware
UTC datetime, also from SQLite (which keeps no zone); a naive datetime is refused rather than guessed at, in a row
and in a query; `utcnow` is aware; the case statuses split into open and closed ones. On SQLite and the
PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from storage.models import CLOSED_STATUSES, CaseStatus, JobRun, utcnow

CHANGSHA = ZoneInfo("Asia/Shanghai")


def test_utcnow_is_an_aware_time_in_utc() -> None:
    now = utcnow()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)


async def test_a_time_given_in_another_zone_comes_back_as_the_same_instant_in_utc(sessionmaker: Any) -> None:
    half_past_midnight_in_changsha = datetime(2026, 11, 25, 0, 30, tzinfo=CHANGSHA)
    async with sessionmaker.begin() as session:
        session.add(JobRun(name="daily_digest", last_run_at=half_past_midnight_in_changsha))
    async with sessionmaker() as session:
        stored = (await session.execute(select(JobRun.last_run_at))).scalar_one()
        raw = (await session.execute(text("SELECT last_run_at FROM job_runs"))).scalar_one()
    assert stored == datetime(2026, 11, 24, 16, 30, tzinfo=UTC)
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored.isoformat() == "2026-11-24T16:30:00+00:00"
    # the database holds the UTC wall time: SQLite keeps text without a zone, PostgreSQL an instant
    as_written = raw if isinstance(raw, str) else raw.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert as_written.startswith("2026-11-24 16:30:00")


async def test_a_naive_time_is_refused_in_a_row_and_in_a_query(sessionmaker: Any) -> None:
    with pytest.raises(StatementError, match="naive datetime given to a UTC column"):
        async with sessionmaker.begin() as session:
            session.add(JobRun(name="daily_digest", last_run_at=datetime(2026, 11, 25, 0, 30)))
    async with sessionmaker() as session:
        assert (await session.execute(select(JobRun))).first() is None
        with pytest.raises(StatementError, match="naive datetime"):
            await session.execute(select(JobRun).where(JobRun.last_run_at < datetime(2026, 11, 25)))


def test_closed_rejected_and_duplicate_cases_are_the_closed_ones() -> None:
    assert CLOSED_STATUSES == {"closed", "rejected", "duplicate"}
    assert [s.value for s in CaseStatus if s not in CLOSED_STATUSES] == [
        "received", "routed", "accepted", "in_handling", "answered"]
    # a status read back from its plain text column is the enum member the code compares it with
    assert CaseStatus("in_handling") is CaseStatus.IN_HANDLING and CaseStatus.IN_HANDLING == "in_handling"
