"""Migration 0050 on a deployed database: the deadlines staff were warned of and escalated for, stored until then as
"<kind>:<ISO time>" texts, become a kind and a time each, so the told cases stay told (no second escalation of the
whole backlog after the upgrade) and the deadline round finds only the cases still to tell."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from storage import loop
from storage.db import create_engine, create_sessionmaker
from storage.migrate import alembic_config, upgrade
from storage.models.base import UTCDateTime
from tests.conftest import deployed_at, make_test_keyring

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TIMES = ("created_at", "updated_at", "accepted_at", "accept_due_at", "resolve_due_at")
# the table as it was at 0049, its times written as the service writes them
cases = sa.table("cases", *(sa.column(name, UTCDateTime() if name in TIMES else None) for name in (
    "id", "case_number", "receipt_code_hash", "channel", "reporter_ref", "reporter_key", "locale", "place",
    "occurred", "description", "anonymous", "status", "queue", *TIMES, "warned_for", "escalated_for")))


def _case(case_id: int, *, accept_due: datetime, resolve_due: datetime, accepted: datetime | None = None,
          status: str = "routed", warned: str | None = None, escalated: str | None = None) -> dict[str, Any]:
    return {"id": case_id, "case_number": f"QL-2026-{case_id:06d}", "receipt_code_hash": f"h{case_id}",
            "channel": "web", "reporter_ref": "resident", "reporter_key": f"k{case_id}", "locale": "zh",
            "place": "岳麓区政务服务中心", "occurred": "今天", "description": "窗口推诿", "anonymous": True,
            "status": status, "queue": "clean_hall", "created_at": NOW - 30 * DAY, "updated_at": NOW - 30 * DAY,
            "accepted_at": accepted, "accept_due_at": accept_due, "resolve_due_at": resolve_due,
            "warned_for": warned, "escalated_for": escalated}


OVERDUE, SOON = NOW - 3 * DAY, NOW + DAY / 2
LATER = NOW + 20 * DAY


@pytest.fixture(params=["sqlite", "postgres"])
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """At 0049: 1 overdue to accept and escalated for it (warned before); 2 overdue, never told; 3 due soon and
    warned; 4 accepted, overdue to resolve, escalated for its accept-by date only; 5 escalated with a marker no
    version wrote (unreadable); 6 closed, escalated long ago."""
    with deployed_at(request, tmp_path, "0049") as url:

        async def insert_rows() -> None:
            engine = create_engine(url, make_test_keyring())
            async with engine.begin() as connection:
                await connection.execute(sa.insert(cases), [
                    _case(1, accept_due=OVERDUE, resolve_due=LATER, warned=f"accept:{OVERDUE.isoformat()}",
                          escalated=f"accept:{OVERDUE.isoformat()}"),
                    _case(2, accept_due=OVERDUE, resolve_due=LATER),
                    _case(3, accept_due=SOON, resolve_due=LATER, warned=f"accept:{SOON.isoformat()}"),
                    _case(4, accept_due=NOW - 20 * DAY, resolve_due=OVERDUE, accepted=NOW - 10 * DAY,
                          status="accepted", escalated=f"accept:{(NOW - 20 * DAY).isoformat()}"),
                    _case(5, accept_due=OVERDUE, resolve_due=LATER, escalated="accept:yesterday"),
                    _case(6, accept_due=OVERDUE, resolve_due=OVERDUE, status="closed",
                          escalated=f"resolve:{OVERDUE.isoformat()}")])
            await engine.dispose()

        asyncio.run(insert_rows())
        yield url


async def _told(url: str) -> dict[int, tuple[Any, ...]]:
    engine = create_engine(url, make_test_keyring())
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(sa.text("SELECT id, warned_kind, warned_due_at, escalated_kind, "
                                                     "escalated_due_at FROM cases ORDER BY id"))).all()
    finally:
        await engine.dispose()

    def utc(value: Any) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    return {row[0]: (row[1], utc(row[2]), row[3], utc(row[4])) for row in rows}


async def _untold(url: str) -> list[int]:
    engine = create_engine(url, make_test_keyring())
    try:
        async with create_sessionmaker(engine)() as session:
            return await loop.untold_deadline_case_ids(session, NOW + DAY, NOW)
    finally:
        await engine.dispose()


async def test_told_deadlines_stay_told_and_only_the_untold_cases_are_found(deployed: str) -> None:
    await asyncio.to_thread(upgrade, deployed, make_test_keyring())
    assert await _told(deployed) == {
        1: ("accept", OVERDUE, "accept", OVERDUE), 2: (None, None, None, None), 3: ("accept", SOON, None, None),
        4: (None, None, "accept", NOW - 20 * DAY), 5: (None, None, None, None),
        6: (None, None, "resolve", OVERDUE)}
    # 2 was never told; 4 now works towards its passed resolve-by date; 5's marker could not be read, so it is
    # told once more. Not 1 (escalated), 3 (warned, not due yet) or 6 (closed).
    assert await _untold(deployed) == [2, 4, 5]

    await asyncio.to_thread(command.downgrade, alembic_config(deployed), "0049")
    engine = create_engine(deployed, make_test_keyring())
    try:
        async with engine.connect() as connection:
            markers: dict[int, str] = dict((await connection.execute(sa.text(
                "SELECT id, escalated_for FROM cases WHERE escalated_for IS NOT NULL ORDER BY id"))).all())
    finally:
        await engine.dispose()
    assert markers == {1: f"accept:{OVERDUE.isoformat()}", 4: f"accept:{(NOW - 20 * DAY).isoformat()}",
                       6: f"resolve:{OVERDUE.isoformat()}"}
