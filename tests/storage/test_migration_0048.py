"""Migration 0048 on a deployed database: a case answered (or handled, or closed) before anyone pressed "accept"
is accepted as of its first such event, so the statistics' time to accept and the loop's table agree about it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select

from storage.db import create_engine
from storage.migrate import upgrade
from storage.models import Case, TraceEvent
from tests.conftest import deployed_at, make_test_keyring

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _case(case_id: int, status: str, accepted_at: datetime | None) -> dict[str, Any]:
    return {"id": case_id, "case_number": f"QL-2026-{case_id:06d}", "receipt_code_hash": f"h{case_id}",
            "channel": "web", "reporter_ref": "resident", "reporter_key": f"k{case_id}", "locale": "zh",
            "place": "岳麓区政务服务中心", "occurred": "今天", "description": "窗口推诿", "anonymous": True,
            "status": status, "queue": "clean_hall", "created_at": T0, "updated_at": T0, "accepted_at": accepted_at}


def _event(case_id: int, kind: str, after: timedelta) -> dict[str, Any]:
    return {"case_id": case_id, "kind": kind, "detail": {}, "actor": "staff:1", "created_at": T0 + after}


@pytest.fixture(params=["sqlite", "postgres"])
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """At 0047: 1 answered (30 h) and later closed, never accepted; 2 accepted at 5 h, answered at 9 h; 3 rejected;
    4 put in handling at 3 h without acceptance; 5 still routed."""
    with deployed_at(request, tmp_path, "0047") as url:

        async def insert_rows() -> None:
            engine = create_engine(url, make_test_keyring())
            async with engine.begin() as connection:
                await connection.execute(insert(cast(Table, Case.__table__)), [
                    _case(1, "closed", None), _case(2, "answered", T0 + 5 * HOUR), _case(3, "rejected", None),
                    _case(4, "in_handling", None), _case(5, "routed", None)])
                await connection.execute(insert(cast(Table, TraceEvent.__table__)), [
                    _event(1, "received", timedelta()), _event(1, "answered", 30 * HOUR),
                    _event(1, "closed", 40 * HOUR), _event(2, "accepted", 5 * HOUR), _event(2, "answered", 9 * HOUR),
                    _event(3, "rejected", 2 * HOUR), _event(4, "in_handling", 3 * HOUR),
                    _event(5, "received", timedelta())])
            await engine.dispose()

        asyncio.run(insert_rows())
        yield url


async def test_a_case_taken_on_without_acceptance_is_accepted_by_its_first_handling(deployed: str) -> None:
    await asyncio.to_thread(upgrade, deployed, make_test_keyring())
    engine = create_engine(deployed, make_test_keyring())
    try:
        async with engine.connect() as connection:
            accepted = dict((await connection.execute(select(Case.id, Case.accepted_at).order_by(Case.id))).all())
    finally:
        await engine.dispose()
    assert {case_id: None if at is None else at.replace(tzinfo=UTC) for case_id, at in accepted.items()} == {
        1: T0 + 30 * HOUR, 2: T0 + 5 * HOUR, 3: None, 4: T0 + 3 * HOUR, 5: None}
