"""Migration 0051 on a deployed database: the entries a bulk action wrote before its id had a column of its own (the
id in their encrypted detail only) get it in the column, so the audit log's filter finds old bulk actions too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage import audit
from storage.crypto import EncryptedJSON
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models.base import UTCDateTime
from tests.conftest import deployed_at, make_test_keyring

AT = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
# the table as it was at 0050
audit_log = sa.table("audit_log", sa.column("id", sa.Integer), sa.column("action", sa.String),
                     sa.column("detail", EncryptedJSON("audit_log.detail")), sa.column("created_at", UTCDateTime))


def _entry(entry_id: int, action: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry_id, "action": action, "detail": detail, "created_at": AT}


@pytest.fixture(params=["sqlite", "postgres"])
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """At 0050: a bulk move of two cases (1, 2 and its summary 3), one of one case (4), a move on one ticket (5), and
    an export (6)."""
    with deployed_at(request, tmp_path, "0050") as url:

        async def insert_rows() -> None:
            engine = create_engine(url, make_test_keyring())
            async with engine.begin() as connection:
                await connection.execute(sa.insert(audit_log), [
                    _entry(1, "case.move", {"to": "petitions", "bulk": "0a1b2c3d", "selection": 2}),
                    _entry(2, "case.move", {"to": "petitions", "bulk": "0a1b2c3d", "selection": 2}),
                    _entry(3, "case.bulk", {"bulk_action": "move", "done": 2, "bulk": "0a1b2c3d", "selection": 2}),
                    _entry(4, "case.move", {"to": "petitions", "bulk": "4e5f6a7b", "selection": 1}),
                    _entry(5, "case.move", {"to": "petitions"}),
                    _entry(6, "case.export", {"count": 3})])
            await engine.dispose()

        asyncio.run(insert_rows())
        yield url


async def test_the_entries_of_a_bulk_action_written_before_are_found_by_its_id(deployed: str) -> None:
    await asyncio.to_thread(upgrade, deployed, make_test_keyring())
    engine = create_engine(deployed, make_test_keyring())
    try:
        async with create_sessionmaker(engine)() as session:
            first, first_total = await audit.audit_log(session, page=1, per_page=50,
                                                       flt=audit.AuditFilter(bulk_id="0a1b2c3d"))
            second, _ = await audit.audit_log(session, page=1, per_page=50, flt=audit.AuditFilter(bulk_id="4e5f6a7b"))
    finally:
        await engine.dispose()
    assert ([entry.id for entry, _, _ in first], first_total) == ([3, 2, 1], 3)
    assert [entry.id for entry, _, _ in second] == [4]
