"""The database: SQLAlchemy's async engine on its stock drivers (aiosqlite, asyncpg), and the session
factories the edges open their transactions with.

`Database` holds two session factories. `sessionmaker` is for work that writes: on SQLite its
transactions start with `BEGIN IMMEDIATE`, so a transaction that reads and then writes never fails
half-way because another writer came first, and its pool holds a single connection, so the process's
writers queue for it in order (SQLite has one writer at a time anyway) rather than in SQLite's busy
handler. `read_sessionmaker` is for console pages, statistics, exports and `/metrics`: on SQLite a pool
of its own with `PRAGMA query_only`, whose deferred transactions read a WAL snapshot without taking or
waiting for the write lock; on PostgreSQL the same pool in read-only transactions.

Every statement of a read session is bounded in time (`read_timeout`, 30 s by default): PostgreSQL's
`statement_timeout` for the transaction, on SQLite a progress handler that interrupts a statement past its
deadline. A staff page that asks for too much then fails with a clear answer (`timed_out` tells that error
apart) instead of holding a connection and the server's work without end. Writes — residents' steps among them —
are never cut short.

Both run every statement the same way on both databases: there is one storage path.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.crypto import KeyRing, bind_keyring

DEFAULT_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for the write lock (held by another process) before "database is locked"."""

DATABASE_UNAVAILABLE = (SQLAlchemyError, OSError, TimeoutError)
"""What a transaction raises while the database is down, locked or unreachable (a refused connection is a
bare `OSError`, not wrapped by SQLAlchemy)."""

DISK_FULL_SQLSTATE = "53100"
"""PostgreSQL's disk_full: the server could not extend a file (its data directory's disk, or its WAL's)."""


def disk_full(problem: BaseException) -> bool:
    """Whether a failed write says the database's disk is full: SQLite's SQLITE_FULL ("database or disk is full"),
    PostgreSQL's disk_full, or the system's ENOSPC or EDQUOT — rather than a database that is down or locked."""
    import errno
    import sqlite3

    original = getattr(problem, "orig", None) or problem
    if isinstance(original, OSError):
        return original.errno in (errno.ENOSPC, errno.EDQUOT)
    if getattr(original, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return DISK_FULL_SQLSTATE in (getattr(original, "sqlstate", None), getattr(original, "pgcode", None))


def unwritable(problem: BaseException, database: str | None = None) -> str | None:
    """What a failed write could not write and what the operator does about it, for one log line; None when
    `problem` is neither a file that cannot be written nor a database whose disk is full (a database that is down
    or locked). It names a file of the data directory (evidence files have random names) or the database
    (`database`: its masked address), never a resident's words, which a database error's text can quote."""
    if isinstance(problem, OSError) and problem.filename is not None:
        remedy = ("free space in the data directory" if disk_full(problem)
                  else "check that the data directory is a directory the service's user may write (not read-only, "
                       "not a file)")
        return f"{problem.filename} cannot be written ({problem.strerror or type(problem).__name__}): {remedy}"
    if disk_full(problem):
        name = f"the database {database}" if database else "the database"
        return (f"{name} cannot write, its disk is full ({type(problem).__name__}): free space where the database "
                "keeps its files")
    return None


WRITE_POOL_SIZE = 1
"""SQLite: one write connection per process; writers wait for it in the pool's FIFO queue."""

READ_POOL_SIZE = 4

DEFAULT_READ_TIMEOUT = 30.0
"""Seconds one statement of a read session may run (`Database.connect`'s `read_timeout`)."""
DEFAULT_HEAVY_READS = 1
"""Reads over a period's cases one process runs at once (`Database.connect`'s `heavy_reads`)."""

PROGRESS_STEPS = 10_000
"""SQLite: its virtual machine's instructions between two looks at a read statement's deadline (~0.1 ms of work)."""

QUERY_CANCELED = "57014"
"""PostgreSQL's SQLSTATE for a statement stopped by `statement_timeout` (or cancelled)."""


def timed_out(error: BaseException) -> bool:
    """Whether `error` is a read statement stopped at its deadline (see `Database.connect`'s `read_timeout`)."""
    original = getattr(error, "orig", None)
    if original is None:
        return False
    if getattr(original, "sqlstate", None) == QUERY_CANCELED:
        return True
    # sqlite3's error for a statement its progress handler stopped
    return type(original).__name__ == "OperationalError" and str(original) == "interrupted"


class _Deadline:
    """The end of the running statement of one SQLite read connection, looked at by its progress handler
    (in aiosqlite's thread) and set before each statement (on the event loop)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = math.inf

    def start(self) -> None:
        self.at = time.monotonic() + self.seconds

    def passed(self) -> int:
        return 1 if time.monotonic() > self.at else 0


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


MASKED = "***"


def parsed_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it; `ValueError` when it is not one, or when an unencoded "@" in its user
    name or password would make SQLAlchemy take part of the password for the host (it ends the password at
    the first "@"; no host name holds one)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise ValueError("is not a database URL") from None
    if parsed.host and "@" in parsed.host:
        raise ValueError("holds an '@' in its user name or password")
    return parsed


def masked_url(url: str) -> str:
    """The URL to show in a log line or on the terminal: the password masked whole, however it is written
    (encoded or not, with "@", ":" or "/" in it); a URL that cannot be parsed is not shown at all."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return MASKED
    if parsed.host and "@" in parsed.host:  # "user:p@ss@host": what SQLAlchemy took for the host holds the rest
        parsed = parsed.set(host=parsed.host.rsplit("@", 1)[1])
    return parsed.render_as_string(hide_password=True)


def is_memory_sqlite(url: str) -> bool:
    database = make_url(url).database
    return is_sqlite(url) and (not database or database == ":memory:" or "mode=memory" in url)


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


def _sqlite_engine(url: str, *, read_only: bool, read_timeout: float, **kwargs: Any) -> AsyncEngine:
    """An aiosqlite engine: WAL, a busy timeout, foreign keys; writers begin with BEGIN IMMEDIATE.

    SQLAlchemy's documented recipe for SQLite transactions: the driver's own implicit BEGIN is
    switched off (`isolation_level = None`) and the engine's `begin` event emits ours."""
    busy_timeout = sqlite_busy_timeout(url)
    kwargs.setdefault("connect_args", {"timeout": busy_timeout})
    if not is_memory_sqlite(url):
        kwargs.setdefault("pool_size", READ_POOL_SIZE if read_only else WRITE_POOL_SIZE)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", max(busy_timeout, 1.0))
    engine = create_async_engine(url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()
        if read_only:
            deadline = _record.info["deadline"] = _Deadline(read_timeout)
            dbapi_connection.run_async(lambda driver: driver.set_progress_handler(deadline.passed, PROGRESS_STEPS))

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    if read_only:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _on_statement(connection: Any, *_: Any) -> None:
            connection.connection.info["deadline"].start()

    return engine


def _bounded_reads(engine: AsyncEngine, read_timeout: float) -> AsyncEngine:
    """PostgreSQL: `engine` in read-only transactions whose statements stop after `read_timeout` seconds
    (`SET LOCAL`: the setting ends with the transaction, so the pool's connections go back to writers unbounded)."""
    reads = engine.execution_options(postgresql_readonly=True)
    milliseconds = max(1, round(read_timeout * 1000))

    @event.listens_for(reads.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")

    return reads


def create_engine(url: str, keyring: KeyRing | None, *, read_only: bool = False,
                  read_timeout: float = DEFAULT_READ_TIMEOUT, **kwargs: Any) -> AsyncEngine:
    """An engine for `url` whose encrypted columns use `keyring` (None: an engine that never touches an
    encrypted column, such as the migration runner's for `db current`).

    Errors never quote a statement's parameters (`hide_parameters`): they can hold what a resident wrote.
    A SQLite engine with `read_only` stops each statement after `read_timeout` seconds.
    """
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite(url):
        engine = _sqlite_engine(url, read_only=read_only, read_timeout=read_timeout, **kwargs)
    else:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_async_engine(url, **kwargs)
    if keyring is not None:
        bind_keyring(engine, keyring)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@dataclass
class Database:
    """The engines and session factories of one database, built once by the application."""

    url: str
    keyring: KeyRing
    engine: AsyncEngine
    read_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    read_sessionmaker: async_sessionmaker[AsyncSession]
    read_timeout: float = DEFAULT_READ_TIMEOUT  # seconds one statement of a read session may run
    heavy_reads: int = DEFAULT_HEAVY_READS  # reads over a period's cases this process runs at once
    _heavy_slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._heavy_slots = asyncio.Semaphore(self.heavy_reads)

    @classmethod
    def connect(cls, url: str, keyring: KeyRing, *, read_timeout: float = DEFAULT_READ_TIMEOUT,
                heavy_reads: int = DEFAULT_HEAVY_READS, **kwargs: Any) -> Database:
        """The engines of `url`; each statement of a read session stops after `read_timeout` seconds (except
        on an in-memory SQLite database, whose one connection also writes); `heavy_reads` reads at a time may
        hold a `heavy_read_slot`."""
        if not 0 < read_timeout <= 3600:
            raise ValueError(f"the read timeout must be between 0 and 3600 seconds, not {read_timeout}")
        if not 1 <= heavy_reads <= 64:
            raise ValueError(f"heavy reads at a time must be between 1 and 64, not {heavy_reads}")
        engine = create_engine(url, keyring, **kwargs)
        if is_memory_sqlite(url):
            read_engine = engine  # one in-memory database lives in one connection
        elif is_sqlite(url):
            read_engine = create_engine(url, keyring, read_only=True, read_timeout=read_timeout, **kwargs)
        else:
            read_engine = _bounded_reads(engine, read_timeout)
        return cls(url, keyring, engine, read_engine, create_sessionmaker(engine), create_sessionmaker(read_engine),
                   read_timeout, heavy_reads)

    @asynccontextmanager
    async def heavy_read_slot(self) -> AsyncIterator[None]:
        """Held around a read that passes over a period's cases (the statistics, the loop's figures, an export, the
        gauges of /metrics): at most `heavy_reads` of them run at once in this process and the others wait their
        turn, so that staff asking for a year's figures at the same moment leave a core to the residents' steps
        and the other pages instead of taking them all (docs/benchmarks.md, "Heavy reads take turns")."""
        async with self._heavy_slots:
            yield

    @asynccontextmanager
    async def heavy_read(self) -> AsyncIterator[AsyncSession]:
        """A read session inside a `heavy_read_slot`: for a heavy read that is one session's work."""
        async with self.heavy_read_slot(), self.read_sessionmaker() as session:
            yield session

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    async def ping(self) -> None:
        """One round trip on a write session (raises what the driver raises when the database does not answer):
        the health check. On SQLite that takes the write lock as a resident's step would, so a database locked
        by another process reads as unavailable, not only one that cannot be opened."""
        async with self.sessionmaker() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.read_engine is not self.engine and self.is_sqlite:
            await self.read_engine.dispose()
        await self.engine.dispose()


def built_once(session: AsyncSession, name: str, build: Callable[[AsyncSession], Any]) -> Any:
    """The statement `name`, built by `build` once per SQL dialect (an `INSERT … ON CONFLICT` is the dialect's
    own construct) and from then on only executed with parameters: on the dialog's hot path, building a statement
    and its cache key on every call was a large share of a step's CPU (docs/benchmarks-telegram.md)."""
    key = (session.get_bind().dialect.name, name)
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = build(session)
    return statement


_BUILT: dict[tuple[str, str], Any] = {}


def upsert(session: AsyncSession, table: Table) -> Any:
    """`INSERT … ON CONFLICT` in the session's SQL dialect (SQLite and PostgreSQL spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)
