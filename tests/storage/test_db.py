"""The database's engines and session factories: the read session never waits for the write lock, reads
cannot write, SQLite runs in WAL with a busy timeout and writers take the write lock when they begin."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from storage import actions
from storage.db import DEFAULT_BUSY_TIMEOUT, Database, masked_url, sqlite_busy_timeout, timed_out
from storage.migrate import upgrade
from storage.models import ProcessedUpdate
from tests.conftest import make_test_keyring


async def _updates(session: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(ProcessedUpdate)) or 0)


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}?timeout=5"
    await asyncio.to_thread(upgrade, url, make_test_keyring())
    database = Database.connect(url, make_test_keyring())
    yield database
    await database.dispose()


async def test_a_read_returns_the_committed_state_while_a_write_transaction_is_open(database: Database) -> None:
    async with database.sessionmaker.begin() as session:
        await actions.claim_update(session, "telegram", "committed-before")
    async with database.sessionmaker.begin() as writing:
        await actions.claim_update(writing, "telegram", "not-committed-yet")
        async with database.read_sessionmaker() as reading:
            seen = await asyncio.wait_for(_updates(reading), 30)  # returns; it does not wait for the writer
        assert seen == 1
    async with database.read_sessionmaker() as reading:
        assert await _updates(reading) == 2


async def test_a_read_session_cannot_write(database: Database) -> None:
    async with database.read_sessionmaker() as reading:
        with pytest.raises(DBAPIError):
            await actions.claim_update(reading, "telegram", "sneaked-in")
    async with database.read_sessionmaker() as reading:
        assert await _updates(reading) == 0


async def test_writers_of_one_process_queue_for_the_write_connection_and_readers_do_not(
        sqlite_database: Database) -> None:
    order: list[str] = []

    async def second_writer() -> None:
        async with sqlite_database.sessionmaker.begin() as session:
            await actions.claim_update(session, "telegram", "second")
            order.append("second wrote")

    async with sqlite_database.sessionmaker.begin() as first:
        await actions.claim_update(first, "telegram", "first")
        waiting = asyncio.create_task(second_writer())
        for _ in range(20):
            await asyncio.sleep(0)
        async with sqlite_database.read_sessionmaker() as reading:
            order.append(f"read {await _updates(reading)}")
        assert not waiting.done()
        order.append("first commits")
    await asyncio.wait_for(waiting, 30)

    assert order == ["read 0", "first commits", "second wrote"]
    async with sqlite_database.read_sessionmaker() as reading:
        assert await _updates(reading) == 2


async def test_sqlite_runs_in_wal_with_the_urls_busy_timeout_and_foreign_keys(sqlite_database: Database) -> None:
    for factory in (sqlite_database.sessionmaker, sqlite_database.read_sessionmaker):
        async with factory() as session:
            journal = await session.scalar(text("PRAGMA journal_mode"))
            timeout = await session.scalar(text("PRAGMA busy_timeout"))
            foreign_keys = await session.scalar(text("PRAGMA foreign_keys"))
        assert (journal, timeout, foreign_keys) == ("wal", 5000, 1)


async def test_a_write_transaction_takes_the_write_lock_when_it_begins(sqlite_database: Database) -> None:
    path = sqlite_database.url.split(":///", 1)[1].split("?", 1)[0]

    def another_process_writes() -> str:
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return "wrote"
        except sqlite3.OperationalError as refused:
            return str(refused)
        finally:
            connection.close()

    async with sqlite_database.sessionmaker.begin() as session:
        await _updates(session)  # the transaction has only read so far
        during = await asyncio.to_thread(another_process_writes)
    after = await asyncio.to_thread(another_process_writes)
    async with sqlite_database.read_sessionmaker.begin() as session:
        await _updates(session)
        while_reading = await asyncio.to_thread(another_process_writes)

    assert (during, after, while_reading) == ("database is locked", "wrote", "wrote")


def test_the_busy_timeout_comes_from_the_url() -> None:
    assert sqlite_busy_timeout("sqlite+aiosqlite:///data/qinglian.db") == DEFAULT_BUSY_TIMEOUT == 30.0
    assert sqlite_busy_timeout("sqlite+aiosqlite:///data/qinglian.db?timeout=2.5") == 2.5
    with pytest.raises(ValueError, match="timeout='soon' is not a number of seconds"):
        sqlite_busy_timeout("sqlite+aiosqlite:///data/qinglian.db?timeout=soon")
    with pytest.raises(ValueError, match="timeout='7200' is not between 0 and 3600 seconds"):
        sqlite_busy_timeout("sqlite+aiosqlite:///data/qinglian.db?timeout=7200")


async def test_an_in_memory_database_reads_what_was_written() -> None:
    database = Database.connect("sqlite+aiosqlite:///:memory:", make_test_keyring())
    try:
        async with database.sessionmaker.begin() as session:
            await session.execute(text("CREATE TABLE notes (body TEXT)"))
            await session.execute(text("INSERT INTO notes VALUES ('one database, one connection')"))
        async with database.read_sessionmaker() as session:
            assert await session.scalar(text("SELECT body FROM notes")) == "one database, one connection"
    finally:
        await database.dispose()


def _slow_statement(database: Database, seconds: float) -> str:
    """A statement that keeps the database working for about `seconds` (SQLite: counting in a recursive query,
    roughly; PostgreSQL: sleeping)."""
    if database.is_sqlite:
        return ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < "
                f"{int(seconds * 5_000_000)}) SELECT count(*) FROM n")
    return f"SELECT pg_sleep({seconds})"


async def test_a_read_statement_is_stopped_at_the_read_timeout_and_a_write_is_not(database_url: str) -> None:
    database = Database.connect(database_url, make_test_keyring(), read_timeout=0.2)
    try:
        async with database.read_sessionmaker() as reading:
            started = asyncio.get_running_loop().time()
            with pytest.raises(DBAPIError) as stopped:
                await reading.execute(text(_slow_statement(database, 20)))
            assert asyncio.get_running_loop().time() - started < 10
        assert timed_out(stopped.value)
        async with database.read_sessionmaker() as reading:  # the pool's connections still read
            assert (await reading.execute(text("SELECT 1"))).scalar() == 1
        async with database.sessionmaker() as writing:  # a write session is never cut short
            await writing.execute(text(_slow_statement(database, 0.6)))
        async with database.read_sessionmaker() as reading:  # nor a read that ends in time
            await reading.execute(text(_slow_statement(database, 0.02)))
    finally:
        await database.dispose()


async def test_other_database_errors_are_not_taken_for_a_timeout(database: Database) -> None:
    async with database.read_sessionmaker() as reading:
        with pytest.raises(DBAPIError) as failed:
            await reading.execute(text("SELECT * FROM no_such_table"))
    assert not timed_out(failed.value)


def test_a_read_timeout_outside_its_range_is_refused() -> None:
    for seconds in (0, -1, 7200):
        with pytest.raises(ValueError, match="read timeout"):
            Database.connect("sqlite+aiosqlite:///unused.db", make_test_keyring(), read_timeout=seconds)


@pytest.mark.parametrize(("slots", "expected"), [(1, ["first in", "first out", "second in"]),
                                                 (2, ["first in", "second in", "first out"])])
async def test_heavy_reads_take_turns_in_as_many_slots_as_configured(slots: int, expected: list[str]) -> None:
    """With one slot (the default) a second heavy read waits until the first is done; with two they run at once."""
    database = Database.connect("sqlite+aiosqlite:///unused.db", make_test_keyring(), heavy_reads=slots)
    events: list[str] = []
    release = asyncio.Event()

    async def read(name: str) -> None:
        async with database.heavy_read_slot():
            events.append(f"{name} in")
            if name == "first":
                await release.wait()
                events.append("first out")

    first = asyncio.create_task(read("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(read("second"))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(first, second)
    assert events == expected
    await database.dispose()


def test_heavy_reads_at_a_time_outside_their_range_are_refused() -> None:
    for slots in (0, -1, 65):
        with pytest.raises(ValueError, match="heavy reads"):
            Database.connect("sqlite+aiosqlite:///unused.db", make_test_keyring(), heavy_reads=slots)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+asyncpg://qinglian:s3cret@db.internal:5432/qinglian",
     "postgresql+asyncpg://qinglian:***@db.internal:5432/qinglian"),
    ("postgresql+asyncpg://qinglian:p%40ss@db.internal/qinglian", "postgresql+asyncpg://qinglian:***@db.internal/qinglian"),
    # an "@" left unencoded: SQLAlchemy ends the password at the first one and takes the rest for the host
    ("postgresql+asyncpg://qinglian:p@ss@db.internal/qinglian", "postgresql+asyncpg://qinglian:***@db.internal/qinglian"),
    ("postgresql+asyncpg://qinglian:a@b@c@db.internal:5432/q?ssl=require",
     "postgresql+asyncpg://qinglian:***@db.internal:5432/q?ssl=require"),
    ("postgresql+asyncpg://qinglian:a@b:c@db.internal:5432/q", "***"),  # SQLAlchemy reads the port "c@db…:5432"
    ("postgresql+asyncpg://qinglian:se:cr/et@db.internal/qinglian",
     "postgresql+asyncpg://qinglian:***@db.internal/qinglian"),
    ("postgresql+asyncpg://qinglian@db.internal/qinglian", "postgresql+asyncpg://qinglian@db.internal/qinglian"),
    ("sqlite+aiosqlite:////srv/qinglian/data/qinglian.db", "sqlite+aiosqlite:////srv/qinglian/data/qinglian.db"),
    ("postgresql+asyncpg://qinglian:p@ss@[::1:5432/qinglian", "***"),  # cannot be parsed: nothing of it is shown
    ("not a url p@ss", "***"),
])
def test_a_database_url_is_shown_without_any_part_of_its_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_what_cannot_be_written_names_the_file_or_the_database_and_what_to_do() -> None:
    """One description of a write that failed for want of space or rights, used by the web chat, the Telegram
    adapter and the background jobs: the file of the data directory or the database's address, and the remedy."""
    import errno

    from storage.db import unwritable

    full_file = OSError(errno.ENOSPC, "No space left on device", "/srv/q/evidence/2026/a1.bin")
    assert unwritable(full_file) == ("/srv/q/evidence/2026/a1.bin cannot be written (No space left on device): free "
                                     "space in the data directory")
    not_a_directory = NotADirectoryError(errno.ENOTDIR, "Not a directory", "/srv/q/evidence/2026")
    assert unwritable(not_a_directory) == (
        "/srv/q/evidence/2026 cannot be written (Not a directory): check that the data directory is a directory the "
        "service's user may write (not read-only, not a file)")
    full_database = sqlite3.OperationalError("database or disk is full")
    full_database.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    assert unwritable(full_database, "postgresql+asyncpg://qinglian:***@db/qinglian") == (
        "the database postgresql+asyncpg://qinglian:***@db/qinglian cannot write, its disk is full "
        "(OperationalError): free space where the database keeps its files")
    assert unwritable(sqlite3.OperationalError("database is locked")) is None  # down or locked: not a disk
    assert unwritable(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")) is None
