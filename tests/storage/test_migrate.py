"""Migrations driven from code: a new database gets the whole schema, a current one is left alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from storage.migrate import MIGRATIONS_DIR, head_revisions, is_current, upgrade
from tests.conftest import make_test_keyring

LAST = max(script.name.split("_", 1)[0] for script in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
"""The revision of the newest migration script (scripts are numbered; each one's revision is its number)."""


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
