"""Database access shared by a backup and a restore: a snapshot engine, the tables present and the schema
revision."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage.backup.format import BackupError
from storage.db import is_sqlite
from storage.models import Base


def snapshot_engine(url: str) -> AsyncEngine:
    """An engine whose transactions are read snapshots.

    The service's SQLite engine begins with BEGIN IMMEDIATE (a write lock); a backup must not block
    writers, so it uses a deferred BEGIN, which in WAL mode reads one snapshot until it ends.
    """
    if not is_sqlite(url):
        return create_async_engine(url)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def present_columns(connection: Connection) -> dict[str, set[str]]:
    """The known tables that exist in this database and their columns (an older schema has fewer)."""
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    return {
        table.name: {column_info["name"] for column_info in inspector.get_columns(table.name)}
        for table in Base.metadata.sorted_tables
        if table.name in existing
    }


def schema_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    revisions = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(revisions) > 1:
        raise BackupError(f"the database has several schema heads {revisions}; migrate it first")
    return revisions[0] if revisions else None
