"""SQLite for the async engine without a thread hop per call.

aiosqlite runs every cursor call (cursor, execute, fetch, close) on a thread of its own and wakes the
event loop for each result; a dialog step makes about thirty such calls, and the hops cost more CPU
than SQLite itself (docs/benchmarks-telegram.md). A statement of ours touches a few rows by key and
takes microseconds, so here it runs on the event loop's thread. What must never block the loop is
waiting for SQLite's write lock, so:

* the connection's busy timeout is 0 and `BEGIN IMMEDIATE` (every transaction starts with it, see
  `storage.db`) is retried with `asyncio.sleep` while another *process* holds the lock;
* within one process and event loop, transactions queue on an `asyncio.Lock` per database file
  before their `BEGIN IMMEDIATE`, in order, and the lock is released at `COMMIT`/`ROLLBACK`/close.

The objects below have the shape of aiosqlite's connection and cursor, which is what SQLAlchemy's
`sqlite+aiosqlite` dialect drives; they are handed to it through `create_async_engine(async_creator=…)`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

LOCK_WAIT_SECONDS = 30.0
_RETRY_FIRST = 0.001
_RETRY_MAX = 0.05

_gates: dict[tuple[str, int], asyncio.Lock] = {}


def _gate(path: str) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    key = (path, id(loop))
    gate = _gates.get(key)
    if gate is None:
        for stale in [k for k in _gates if k[0] == path]:
            del _gates[stale]  # an earlier, finished event loop's lock
        gate = _gates[key] = asyncio.Lock()
    return gate


def _locked(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


async def _retry_while_locked(statement: Callable[[], Any], wait_seconds: float) -> None:
    """Run `statement` until another process lets go of the database, sleeping between tries."""
    deadline = time.monotonic() + wait_seconds
    delay = _RETRY_FIRST
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as error:
            if not _locked(error) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX)


class InlineCursor:
    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._cursor = connection.raw.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        cursor = self._cursor
        if sql.lstrip()[:5].upper() == "BEGIN":
            await self._connection.begin(cursor, sql)
            return self
        try:
            if parameters is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, parameters)
        except sqlite3.OperationalError as error:
            if not _locked(error):
                raise
            await _retry_while_locked(lambda: cursor.execute(sql, () if parameters is None else parameters),
                                      self._connection.lock_wait)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()


class _ImmediateQueue:
    """aiosqlite's job queue, which SQLAlchemy uses to set `isolation_level`: runs the job at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # noqa: BLE001 - handed to the awaiting caller
            future.set_exception(error)


class InlineConnection:
    def __init__(self, path: str, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.path = path
        self.lock_wait = lock_wait
        self.raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self._conn = self.raw  # the attribute names SQLAlchemy's adapter reaches for
        self._connection = self.raw
        self._tx = _ImmediateQueue()
        self._gate: asyncio.Lock | None = None

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        cursor = self.cursor()
        return await cursor.execute(sql, parameters)

    async def begin_immediate(self) -> None:
        await self.begin(self.raw.cursor(), "BEGIN IMMEDIATE")

    async def begin(self, cursor: sqlite3.Cursor, sql: str) -> None:
        """Queue behind this process's other transactions, then wait out other processes."""
        if self._gate is None:
            gate = _gate(self.path)
            if gate.locked():
                try:
                    async with asyncio.timeout(self.lock_wait):  # a timer, not the task wait_for would start
                        await gate.acquire()
                except TimeoutError:
                    raise sqlite3.OperationalError("database is locked (waited for this process's writers)") from None
            else:
                await gate.acquire()  # free: returns at once
            self._gate = gate
        try:
            await _retry_while_locked(lambda: cursor.execute(sql), self.lock_wait)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None and gate.locked():
            gate.release()

    async def commit(self) -> None:
        try:
            if self.raw.in_transaction:
                self.raw.execute("COMMIT")
        finally:
            self._release()

    async def rollback(self) -> None:
        try:
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
        finally:
            self._release()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self.raw.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        self._release()
        self.raw.close()


def connector(path: str, lock_wait: float = LOCK_WAIT_SECONDS) -> Callable[[], Any]:
    """The `async_creator` for a SQLite file; `lock_wait` is how long a statement waits for the write lock."""

    async def connect() -> InlineConnection:
        return InlineConnection(path, lock_wait)

    return connect
