"""Failed console logins per address, shared by every process through the database: counted within the window,
an address's stale failures forgotten when it fails again, every address's pruned by the housekeeping job. On
SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from storage import login_failures

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


async def test_failures_are_counted_per_address_within_the_window(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for minutes in (0, 5, 10):
            at = T0 + timedelta(minutes=minutes)
            await login_failures.record(session, "address-a", at, forget_before=at - WINDOW)
        await login_failures.record(session, "address-b", T0, forget_before=T0 - WINDOW)
    async with sessionmaker() as session:
        assert await login_failures.count_since(session, "address-a", T0) == 3
        assert await login_failures.count_since(session, "address-a", T0 + timedelta(minutes=1)) == 2
        assert await login_failures.count_since(session, "address-b", T0) == 1
        assert await login_failures.count_since(session, "address-c", T0) == 0


async def test_stale_failures_are_forgotten_on_the_next_failure_and_by_the_prune(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await login_failures.record(session, "address-a", T0, forget_before=T0 - WINDOW)
        await login_failures.record(session, "address-b", T0, forget_before=T0 - WINDOW)
        later = T0 + timedelta(hours=1)
        await login_failures.record(session, "address-a", later, forget_before=later - WINDOW)
    async with sessionmaker.begin() as session:
        assert await login_failures.count_since(session, "address-a", T0 - timedelta(days=1)) == 1  # the old one went
        assert await login_failures.prune(session, later - WINDOW) == 1  # address-b's
        assert await login_failures.count_since(session, "address-b", T0 - timedelta(days=1)) == 0
