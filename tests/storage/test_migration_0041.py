"""Migration 0041 on a deployed database: the unread marks the overview showed before (a follow-up its handlers
have not seen) are the marks it shows after, now stored on the case."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert

from storage import staff_notices
from storage.db import Database, create_engine
from storage.migrate import upgrade
from storage.models import Case, CaseView, StaffUser, TraceEvent
from tests.conftest import deployed_at, make_test_keyring

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _case(case_id: int, queue: str, assigned_to: int | None) -> dict[str, Any]:
    return {"id": case_id, "case_number": f"QL-2026-{case_id:06d}", "receipt_code_hash": f"h{case_id}",
            "channel": "web", "reporter_ref": "resident", "reporter_key": f"k{case_id}", "locale": "zh",
            "place": "岳麓区政务服务中心", "occurred": "今天", "description": "窗口推诿", "anonymous": True,
            "status": "in_handling", "queue": queue, "assigned_to_id": assigned_to, "created_at": NOW,
            "updated_at": NOW}


@pytest.fixture(params=["sqlite", "postgres"])
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at 0040: case 1 has a follow-up nobody opened; case 2's follow-up was opened by its assignee;
    case 3's only by a colleague it is not assigned to; case 4 is unassigned and was opened by someone after its
    follow-up; case 5 has no follow-up."""
    ring = make_test_keyring()
    with deployed_at(request, tmp_path, "0040") as url:

        async def insert_rows() -> None:
            engine = create_engine(url, ring)
            tables = {model: cast(Table, model.__table__) for model in (StaffUser, Case, TraceEvent, CaseView)}
            async with engine.begin() as connection:
                await connection.execute(insert(tables[StaffUser]), [
                    {"id": user, "username": f"u{user}", "display_name": f"U{user}", "role": "reviewer",
                     "password_hash": "x", "created_at": NOW} for user in (1, 2)])
                await connection.execute(insert(tables[Case]), [
                    _case(1, "clean_hall", None), _case(2, "clean_hall", 1), _case(3, "triage", 1),
                    _case(4, "triage", None), _case(5, "triage", None)])
                await connection.execute(insert(tables[TraceEvent]), [
                    {"case_id": case_id, "kind": "follow_up", "actor": "reporter", "detail": {},
                     "created_at": NOW + timedelta(hours=case_id)} for case_id in (1, 2, 3, 4)])
                seen = NOW + timedelta(days=1)
                await connection.execute(insert(tables[CaseView]), [
                    {"case_id": 2, "user_id": 1, "seen_at": seen}, {"case_id": 3, "user_id": 2, "seen_at": seen},
                    {"case_id": 4, "user_id": 2, "seen_at": seen}, {"case_id": 1, "user_id": 2,
                                                                     "seen_at": NOW - timedelta(days=1)}])
            await engine.dispose()

        asyncio.run(insert_rows())
        yield url


async def test_the_cases_unread_before_the_upgrade_are_the_cases_unread_after_it(deployed: str) -> None:
    await asyncio.to_thread(upgrade, deployed, make_test_keyring())
    database = Database.connect(deployed, make_test_keyring())
    try:
        async with database.read_sessionmaker() as session:
            assert await staff_notices.unread_case_ids(session, [1, 2, 3, 4, 5]) == {1, 3}
            assert await staff_notices.unread_by_queue(session, None) == {"clean_hall": 1, "triage": 1}
            stored = await session.get(Case, 3)
            assert stored is not None and stored.unread_since == NOW + timedelta(hours=3)
    finally:
        await database.dispose()
