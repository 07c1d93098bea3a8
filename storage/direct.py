"""The dialog step's statements, run straight on SQLite's connection when the session is on a SQLite file.

Every update a resident sends is one transaction of four small statements (claim the update id, read
the conversation, write it back, queue the replies). On a SQLite file the session's connection is
`storage.sqlite_inline`'s, on the event loop's thread, where SQLite runs such a statement in a few
microseconds — and SQLAlchemy's execution of it (cache key, execution context, the async adapter's
greenlet hops, result objects) took 60–200 µs, most of a step's CPU (docs/benchmarks-telegram.md).

So these statements are `Prepared`: SQLAlchemy compiles the Core statement once for the dialect, with
the columns' own types — the encryption of `EncryptedJSON`, the pseudonym of `PseudonymisedKey`,
SQLite's date format — and `run` binds the parameters through those same processors and executes the
SQL on the sqlite3 connection that holds the session's transaction (begun, committed and rolled back by
the session as always). Any other database, PostgreSQL or an in-memory SQLite on aiosqlite, runs the
same statements through the session: the callers in `storage.actions` keep both paths.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from storage.sqlite_inline import InlineConnection

_SESSION_INFO_KEY = "storage.direct.connection"

Processor = Callable[[Any], Any] | None


async def sqlite_connection(session: AsyncSession) -> tuple[sqlite3.Connection, Dialect] | None:
    """The sqlite3 connection (and dialect) of the session's transaction when it is on the inline driver.

    Asking makes the session begin its transaction (`BEGIN IMMEDIATE`), as its first statement would.
    The answer is remembered for the rest of that transaction only.
    """
    sync_session = session.sync_session
    transaction = sync_session.get_transaction()
    remembered = sync_session.info.get(_SESSION_INFO_KEY)
    if transaction is not None and remembered is not None and remembered[0] is transaction:
        found: tuple[sqlite3.Connection, Dialect] | None = remembered[1]
        return found
    connection = await session.connection()
    sync_connection = connection.sync_connection
    assert sync_connection is not None, "a session's connection is open while it is in a transaction"
    driver = sync_connection.connection.driver_connection
    found = (driver.raw, connection.dialect) if isinstance(driver, InlineConnection) else None
    sync_session.info[_SESSION_INFO_KEY] = (sync_session.get_transaction(), found)
    return found


class _Compiled:
    def __init__(self, statement: Executable, columns: Sequence[ColumnElement[Any]], dialect: Dialect) -> None:
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if dialect.paramstyle != "qmark" or compiled.positiontup is None:
            raise ValueError(f"{dialect.name} with paramstyle {dialect.paramstyle} is not run directly")
        self.sql = compiled.string
        self.binds: list[tuple[str, Processor]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup
        ]
        self.results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(values[name] if process is None else process(values[name]) for name, process in self.binds)

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        if not self.results:  # no columns given: the values as SQLite returns them (counts, ids)
            return tuple(raw)
        return tuple(value if process is None else process(value)
                     for value, process in zip(raw, self.results, strict=True))


class Prepared:
    """A Core statement with named `bindparam`s, compiled once per SQLite dialect class.

    `columns` are the selected columns of a SELECT, whose types turn the stored values back into
    Python values.
    """

    def __init__(self, statement: Executable, columns: Sequence[ColumnElement[Any]] = ()) -> None:
        self.statement = statement
        self._columns = tuple(columns)
        self._compiled: dict[type[Dialect], _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(type(dialect))
        if compiled is None:
            compiled = self._compiled[type(dialect)] = _Compiled(self.statement, self._columns, dialect)
        return compiled

    def run(self, target: tuple[sqlite3.Connection, Dialect], values: Mapping[str, Any]) -> sqlite3.Cursor:
        raw, dialect = target
        compiled = self._for(dialect)
        try:
            return raw.execute(compiled.sql, compiled.parameters(values))
        except sqlite3.Error as error:
            raise translated(error, compiled.sql) from error

    def run_many(self, target: tuple[sqlite3.Connection, Dialect], rows: Iterable[Mapping[str, Any]]) -> None:
        raw, dialect = target
        compiled = self._for(dialect)
        try:
            raw.executemany(compiled.sql, [compiled.parameters(values) for values in rows])
        except sqlite3.Error as error:
            raise translated(error, compiled.sql) from error

    def first(self, target: tuple[sqlite3.Connection, Dialect], values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        raw, dialect = target
        compiled = self._for(dialect)
        try:
            found = raw.execute(compiled.sql, compiled.parameters(values)).fetchone()
        except sqlite3.Error as error:
            raise translated(error, compiled.sql) from error
        return None if found is None else compiled.row(found)


def translated(error: sqlite3.Error, sql: str) -> DBAPIError:
    """SQLAlchemy's exception for a driver error (`OperationalError`, `IntegrityError`, …), as a statement the
    session ran would raise, so callers handle one family of errors; the parameters are never quoted."""
    wrapped = DBAPIError.instance(sql, None, error, sqlite3.Error, hide_parameters=True)
    assert isinstance(wrapped, DBAPIError), "a sqlite3.Error is a DB-API error"
    return wrapped
