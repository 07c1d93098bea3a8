"""Migrations driven from code: a new database gets the whole schema, a current one is left alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from storage.migrate import MIGRATIONS_DIR, describe, head_revisions, upgrade
from tests.conftest import make_test_keyring

LAST = max(script.name.split("_", 1)[0] for script in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
"""The revision of the newest migration script (scripts are numbered; each one's revision is its number)."""


def is_current(database_url: str) -> bool:
    """Whether the database is at the newest revision, as `qinglian db current` says it."""
    return describe(database_url)[0]


def test_the_head_is_the_last_migration() -> None:
    assert head_revisions() == {LAST}


def test_a_new_database_in_a_new_directory_is_created_and_migrated(tmp_path: Path) -> None:
    assert not is_current(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    path = tmp_path / "not" / "there" / "qinglian.db"
    url = f"sqlite+aiosqlite:///{path}"

    upgrade(url, make_test_keyring())

    assert is_current(url)
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"cases", "conversations", "outbox", "staff_users", "audit_log", "wechat_access_tokens"} <= tables
    assert version == [(LAST,)]


def test_an_older_database_is_brought_to_the_head_and_a_current_one_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "qinglian.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, make_test_keyring(), revision="0004")
    assert not is_current(url)
    upgrade(url, make_test_keyring())
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE operator_notes (body TEXT)")  # alembic would not know this table
    upgrade(url, make_test_keyring())
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert version == [(LAST,)] and "operator_notes" in tables and "callback_nonces" in tables


async def test_the_test_databases_of_both_backends_are_current(database_url: str) -> None:
    assert await asyncio.to_thread(is_current, database_url)



async def test_the_migrations_build_the_schema_the_models_describe(database_url: str) -> None:
    """Three lines of work each add migrations; whatever order they are chained in, the migrated database has the
    tables, columns, indexes and foreign keys of `storage.models` and nothing the models do not know."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from storage.models import Base

    sqlite = database_url.startswith("sqlite")
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            # SQLite neither enforces nor alters column types: the old VARCHAR columns hold ciphertext unbounded.
            differences = await connection.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": not sqlite}), Base.metadata))
    finally:
        await engine.dispose()
    if sqlite:
        # On SQLite migration 0003 made the pseudonym's uniqueness a unique index, not a constraint (SQLite cannot
        # add one), and could not drop the unnamed UNIQUE (channel, user_ref), which ciphertext never repeats.
        legacy = {("remove_constraint", ("channel", "user_ref")), ("add_constraint", ("channel", "user_key")),
                  ("remove_index", ("channel", "user_key"))}
        differences = [difference for difference in differences
                       if (difference[0], tuple(column.name for column in difference[1].columns)) not in legacy]
    assert differences == []
