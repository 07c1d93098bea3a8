"""The database side a backup and a restore share (`storage.backup.database`), on SQLite and the PostgreSQL on
127.0.0.1: the schema revision (none without Alembic's table or row, a refusal when there are several heads),
the known tables present and their columns (an older schema has fewer, unknown tables are ignored), and on
SQLite a snapshot engine whose transaction reads one snapshot without holding up the service's writers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storage.backup.database import present_columns, schema_revision, snapshot_engine
from storage.backup.format import BackupError
from storage.models import Base, Case
from tests.factories import file_case


async def _on(url: str, work: Any, *statements: str) -> Any:
    """Run `statements` in one transaction, then `work` on a snapshot connection."""
    engine = snapshot_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
        async with engine.connect() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


async def test_the_schema_revision_is_the_one_alembic_recorded(database_url: str, sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        recorded = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()

    assert await _on(database_url, schema_revision) == recorded


async def test_a_database_without_an_alembic_row_or_table_has_no_revision(database_url: str) -> None:
    assert await _on(database_url, schema_revision, "DELETE FROM alembic_version") is None
    assert await _on(database_url, schema_revision, "DROP TABLE alembic_version") is None


async def test_a_database_with_several_schema_heads_is_refused(database_url: str) -> None:
    with pytest.raises(BackupError, match=r"^the database has several schema heads \[.*'0001'.*\]; migrate it first$"):
        await _on(database_url, schema_revision, "INSERT INTO alembic_version (version_num) VALUES ('0001')")


async def test_the_present_columns_are_the_known_tables_of_the_database_and_their_columns(database_url: str) -> None:
    present = await _on(database_url, present_columns)

    assert set(present) == set(Base.metadata.tables)  # a migrated database has every table; alembic's is not one
    assert {"id", "case_number", "description", "duplicate_of_id", "unread_since"} <= present["cases"]
    assert present["case_signatures"] == {"case_id", "minhash", "terms", "version"}


async def test_an_older_or_foreign_schema_shows_only_the_known_tables_it_has(database_url: str) -> None:
    present = await _on(database_url, present_columns,
                        "DROP TABLE reply_scores",
                        "CREATE TABLE operator_notes (id INTEGER PRIMARY KEY, body TEXT)",
                        "ALTER TABLE case_signatures ADD COLUMN operator_mark TEXT")

    assert "reply_scores" not in present and "operator_notes" not in present
    assert present["case_signatures"] == {"case_id", "minhash", "terms", "version", "operator_mark"}
    assert len(present) == len(Base.metadata.tables) - 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_sqlite_snapshot_reads_one_state_while_the_service_writes(database_url: str,
                                                                          sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await file_case(session, reporter_ref="before")
    engine = snapshot_engine(database_url)
    try:
        async with engine.connect() as snapshot, snapshot.begin():
            count = select(func.count()).select_from(Case)
            assert (await snapshot.execute(count)).scalar_one() == 1

            async def write() -> None:
                async with sessionmaker.begin() as session:
                    await file_case(session, reporter_ref="during")

            await asyncio.wait_for(write(), timeout=20)  # a writer is not held up by the open snapshot

            assert (await snapshot.execute(count)).scalar_one() == 1
        async with engine.connect() as later:
            assert (await later.execute(select(func.count()).select_from(Case))).scalar_one() == 2
    finally:
        await engine.dispose()
