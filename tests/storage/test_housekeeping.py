"""Housekeeping actions against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from storage import housekeeping
from storage.models import utcnow


async def test_a_scheduled_job_runs_once_per_period(sessionmaker: Any) -> None:
    period = utcnow() - timedelta(hours=1)
    results = []
    for _ in range(3):
        async with sessionmaker.begin() as session:
            results.append(await housekeeping.claim_scheduled_run(session, "daily_digest", period))
    async with sessionmaker.begin() as session:
        next_period = await housekeeping.claim_scheduled_run(session, "daily_digest", utcnow() + timedelta(seconds=1))
    assert results == [True, False, False] and next_period is True
