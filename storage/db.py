"""Engine and session factory."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from storage import direct, sqlite_inline

DEFAULT_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite statement waits for another writer's lock before failing with "database is locked"."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_busy_timeout(url: str) -> float:
    """The busy timeout of a SQLite URL: its `timeout` query parameter (SQLAlchemy's documented
    pysqlite parameter, e.g. `sqlite+aiosqlite:///data/qinglian.db?timeout=5`), else the default."""
    value = make_url(url).query.get("timeout")
    if isinstance(value, tuple):
        value = value[-1]
    if value is None:
        return DEFAULT_BUSY_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"the database URL's timeout={value!r} is not a number of seconds") from None
    if not 0 <= seconds <= 3600:
        raise ValueError(f"the database URL's timeout={value!r} is not between 0 and 3600 seconds")
    return seconds


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine tuned for the backend.

    SQLite runs in WAL mode and every transaction starts with BEGIN IMMEDIATE, so two concurrent
    writers queue instead of failing when a read transaction upgrades to write. A database file is
    driven on the event loop's thread (`storage.sqlite_inline`), which queues writers without blocking
    the loop; an in-memory database keeps aiosqlite. How long a writer waits for the lock is the URL's
    `timeout` parameter (default 30 s): a shorter one answers residents "try again shortly" sooner
    while something else holds the database.
    """
    # An error's message never quotes the statement's parameters: they can hold what a resident wrote.
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite(url):
        busy_timeout = sqlite_busy_timeout(url)
        database = make_url(url).database
        inline = bool(database) and database != ":memory:" and "mode=memory" not in url
        if inline:
            assert database is not None
            kwargs.setdefault("async_creator", sqlite_inline.connector(database, busy_timeout))
        else:
            kwargs.setdefault("connect_args", {"timeout": busy_timeout})
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if not inline:  # the inline driver waits for the lock itself, off the loop's back
                cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            driver = connection.connection.driver_connection
            if isinstance(driver, sqlite_inline.InlineConnection):
                # What the statement below does, without its execution context (docs/benchmarks-telegram.md).
                try:
                    await_(driver.begin_immediate())
                except sqlite3.Error as error:
                    raise direct.translated(error, "BEGIN IMMEDIATE") from error
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class Transaction:
    """`async with sessionmaker.begin() as session`: a new session in a transaction that commits (or rolls
    back) in the calling task, then the session is closed, shielded from cancellation.

    SQLAlchemy's own `async_sessionmaker.begin()` runs the commit too inside a shielded task of its own,
    which costs a turn of the event loop before the COMMIT; on SQLite every other writer of the process
    queues behind the write lock for that turn (20 % of the CPU per update in the Telegram benchmark,
    docs/benchmarks-telegram.md). Nothing cancels an edge mid-commit: PTB's Application.stop and
    uvicorn's shutdown wait for running handlers.
    """

    __slots__ = ("_session", "_transaction")

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._transaction: AsyncSessionTransaction | None = None

    async def __aenter__(self) -> AsyncSession:
        transaction = self._session.begin()
        try:
            await transaction.__aenter__()
        except BaseException:
            await self._session.close()
            raise
        self._transaction = transaction
        return self._session

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        assert self._transaction is not None
        try:
            await self._transaction.__aexit__(type_, value, traceback)
        finally:
            await self._session.__aexit__(type_, value, traceback)


class SessionMaker(async_sessionmaker[AsyncSession]):
    """The project's session factory: `begin()` is a `Transaction`."""

    def begin(self) -> Transaction:  # type: ignore[override]  # same use: `async with … as session`
        return Transaction(self())


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return SessionMaker(engine, expire_on_commit=False)
