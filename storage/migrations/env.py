from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event
from sqlalchemy.engine import Connection

from storage.db import create_engine
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


MIGRATION_LOCK = 0x51_6C_69_61  # any constant; "Qlia"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several workers starting at once: one migrates, the others wait and then find nothing to do.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:  # raised inside the transaction: the whole upgrade is rolled back
                raise RuntimeError(f"the migration left {len(broken)} rows whose foreign keys point nowhere, "
                                   f"first in table {broken[0][0]}")


async def _run_async() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    # A migration that encrypts existing values (0003) uses the application's key ring.
    engine = create_engine(url, config.attributes.get("keyring"))
    if engine.dialect.name == "sqlite":
        # A batch migration rebuilds a table on SQLite (create a copy, copy the rows, drop, rename). With foreign
        # keys enforced, dropping the old `cases` would delete every trace event, note and attachment of every case
        # (ON DELETE CASCADE). Off for the migration's own connection (SQLite ignores the pragma inside a
        # transaction, so it is set as the connection opens); the references are checked after the migrations.
        @event.listens_for(engine.sync_engine, "connect")
        def _no_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=OFF")
            cursor.close()

    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(_run_async())
