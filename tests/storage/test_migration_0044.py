"""Migration 0044 on a deployed database: the cases its search index held before the upgrade are found after it,
newest first, now that the index keeps each case's date."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, text

from storage import queries
from storage.db import Database, create_engine
from storage.migrate import upgrade
from storage.models import Case
from tests.conftest import deployed_at, make_test_keyring

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _case(case_id: int, created_at: datetime) -> dict[str, Any]:
    return {"id": case_id, "case_number": f"QL-2026-{case_id:06d}", "receipt_code_hash": f"h{case_id}",
            "channel": "web", "reporter_ref": "resident", "reporter_key": f"k{case_id}", "locale": "zh",
            "place": "岳麓区政务服务中心", "occurred": "今天", "description": "窗口推诿", "anonymous": True,
            "status": "routed", "queue": "clean_hall", "created_at": created_at, "updated_at": created_at,
            "search_version": 1}


@pytest.fixture(params=["sqlite", "postgres"])
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at 0043 with three indexed cases: 1 and 3 have the word 窗口 (3 filed before 1), 2 does not."""
    ring = make_test_keyring()
    with deployed_at(request, tmp_path, "0043") as url:

        async def insert_rows() -> None:
            engine = create_engine(url, ring)
            window, other = ring.search_hash("窗口"), ring.search_hash("食堂")
            async with engine.begin() as connection:
                await connection.execute(insert(cast(Table, Case.__table__)), [
                    _case(1, NOW), _case(2, NOW + timedelta(days=1)), _case(3, NOW - timedelta(days=1))])
                await connection.execute(text("INSERT INTO case_terms (term, case_id) VALUES (:term, :case_id)"), [
                    {"term": window, "case_id": 1}, {"term": other, "case_id": 2}, {"term": window, "case_id": 3},
                    {"term": other, "case_id": 3}])
            await engine.dispose()

        asyncio.run(insert_rows())
        yield url


async def test_the_cases_indexed_before_the_upgrade_are_found_newest_first_after_it(deployed: str) -> None:
    await asyncio.to_thread(upgrade, deployed, make_test_keyring())
    database = Database.connect(deployed, make_test_keyring())
    try:
        async with database.read_sessionmaker() as session:
            window = await queries.list_cases(session, queries.CaseFilter(text="窗口", terms=("窗口",)), per_page=1)
            assert window.older is not None
            older = await queries.list_cases(session, queries.CaseFilter(text="窗口", terms=("窗口",)), per_page=1,
                                             after=window.older)
            both = await queries.list_cases(session, queries.CaseFilter(text="窗口 食堂", terms=("窗口", "食堂")),
                                            per_page=10)
        assert [case.id for case in window.cases + older.cases] == [1, 3]
        assert (older.older, [case.id for case in both.cases]) == (None, [3])
    finally:
        await database.dispose()
