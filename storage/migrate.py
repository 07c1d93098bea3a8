"""Alembic, driven from code: `qinglian db upgrade` and the start of `qinglian serve` call this.

Alembic is imported only when there is something to migrate: a service restarting on a current schema
reads the revision from the database and leaves Alembic (and its templates) out of its memory.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

    from storage.crypto import KeyRing

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\b[^=]*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def alembic_config(database_url: str, keyring: KeyRing | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.attributes["keyring"] = keyring
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _revision_graph() -> tuple[set[str], set[str]]:
    """(every revision this version's scripts define, every revision one of them follows), read from the scripts'
    `revision`/`down_revision` lines."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _ASSIGNMENT.findall(script.read_text(encoding="utf-8")):
            (revisions if name == "revision" else parents).update(_QUOTED.findall(value))
    return revisions, parents


def head_revisions() -> set[str]:
    """The heads of the migration graph."""
    revisions, parents = _revision_graph()
    return revisions - parents


def known_revisions() -> set[str]:
    """Every revision this version of Qinglian has a migration for."""
    return _revision_graph()[0]


class DatabaseUnreachable(Exception):
    """The database cannot be opened or reached (the message says which and why; `reason` is the driver's)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot open the database: {reason}")
        self.reason = reason


class SchemaProblem(Exception):
    """The schema is not one this version can migrate or use: newer than it knows, or a migration failed. The
    message is one line for the operator, saying where the database stands and what to do."""


def newer_schema(recorded: set[str], newest: set[str]) -> str:
    """The sentence for a database at revisions this version has no migration for: a newer release migrated it
    (the service was rolled back, or an older installation points at the new release's database)."""
    return (f"revision {', '.join(sorted(recorded))} is newer than this version of Qinglian knows (its newest is "
            f"{', '.join(sorted(newest))}): a newer release migrated this database. Run that release again, or "
            "restore the backup taken before its upgrade (docs/deploy.md, section 14)")


async def _schema_state(database_url: str) -> set[str] | None:
    """The revisions recorded in the database; None when it has no schema yet."""
    from sqlalchemy import inspect
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            if not await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
                return None
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return {str(row[0]) for row in rows}
    except (SQLAlchemyError, OSError) as problem:
        cause = getattr(problem, "orig", None) or problem
        raise DatabaseUnreachable(str(cause)) from None
    finally:
        await engine.dispose()


def upgrade(database_url: str, keyring: KeyRing, revision: str = "head") -> None:
    """Blocking; call it in a thread from async code. `keyring` encrypts what a migration encrypts.

    Raises `SchemaProblem` when the database is at a revision this version does not know (a newer release migrated
    it), and when a migration fails (every migration of one upgrade runs in one transaction, so the database stays
    where it was; the message says where). A database that cannot be reached raises the driver's error, as before.
    """
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1] if ":///" in database_url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    recorded: set[str] | None = None
    if not (database_url.startswith("sqlite") and ":memory:" in database_url):
        try:
            recorded = asyncio.run(_schema_state(database_url))
        except DatabaseUnreachable:
            recorded = None  # the upgrade that follows raises the driver's reason
        else:
            newest = head_revisions()
            if recorded is not None and recorded - known_revisions():
                raise SchemaProblem(newer_schema(recorded, newest))
            if revision == "head" and recorded == newest:
                return
    from alembic import command

    try:
        command.upgrade(alembic_config(database_url, keyring), revision)
    except Exception as problem:
        if recorded is None and not _reachable(database_url):
            raise  # never reached: the caller's "cannot open the database" line says why
        raise SchemaProblem(_failed_migration(database_url, recorded, revision, problem)) from problem


def _reachable(database_url: str) -> bool:
    try:
        asyncio.run(_schema_state(database_url))
    except DatabaseUnreachable:
        return False
    return True


def _failed_migration(database_url: str, before: set[str] | None, target: str, problem: BaseException) -> str:
    """One line for a migration that failed: from where to where, where the database stands now (read again, not
    assumed), and the database's reason."""
    cause = getattr(problem, "orig", None) or problem
    reason = (str(cause).strip().splitlines() or [cause.__class__.__name__])[0]
    goal = ", ".join(sorted(head_revisions())) if target == "head" else target
    start = f"revision {', '.join(sorted(before))}" if before else "an empty database"
    failed = f"migrating the database from {start} to revision {goal} failed"
    try:
        after = asyncio.run(_schema_state(database_url))
    except DatabaseUnreachable:
        where = f"{failed}; where it stands now could not be read (`qinglian db current`)"
    else:
        if after == before:
            where = f"{failed} and was rolled back: " + (
                f"the database is still at revision {', '.join(sorted(after))}" if after else "it still has no schema")
        else:
            where = f"{failed}: the database is now at revision {', '.join(sorted(after or ())) or '(none)'}"
    return f"{where}. The database said: {reason}"


async def _missing_sqlite_file(database_url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (None: it exists, or the database is not a
    SQLite file): looked at without opening it, which would create it."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not await asyncio.to_thread(Path(url.database).exists):
            return url.database
    return None


async def _read_schema_state(database_url: str) -> tuple[set[str] | None, set[str], str | None]:
    """(the revisions recorded in the database, None when it has no schema or no file; this version's newest
    revisions; the path of a SQLite file that does not exist yet, or None). Looks without creating anything.
    Raises `DatabaseUnreachable`."""
    newest = await asyncio.to_thread(head_revisions)
    missing = await _missing_sqlite_file(database_url)
    if missing is not None:
        return None, newest, missing
    return await _schema_state(database_url), newest, None


def status_sentence(recorded: set[str] | None, newest: set[str], missing_file: str | None = None) -> str:
    """Where a database stands, in words, with what to do when it is not at the newest revision."""
    heads = ", ".join(sorted(newest))
    if missing_file is not None:
        return (f"no database at {missing_file} yet: `qinglian db upgrade` (or the first `qinglian serve`) creates it "
                f"at revision {heads}")
    if recorded is None:
        return f"the database has no schema yet: `qinglian db upgrade` creates it at revision {heads}"
    shown = ", ".join(sorted(recorded)) or "(none)"
    if recorded == newest:
        return f"revision {shown} (the newest)"
    if recorded - known_revisions():
        return newer_schema(recorded, newest)
    return f"revision {shown}; the newest is {heads}: `qinglian db upgrade` migrates it"


async def schema_status(database_url: str) -> tuple[bool, str]:
    """Whether the schema is the newest, and a sentence saying where the database stands (`qinglian db current`,
    `qinglian check`). Looks without creating anything: a SQLite file that does not exist is reported, not made.
    Raises `DatabaseUnreachable`."""
    recorded, newest, missing = await _read_schema_state(database_url)
    return recorded == newest, await asyncio.to_thread(status_sentence, recorded, newest, missing)


def schema_state(database_url: str) -> tuple[set[str] | None, set[str], str | None]:
    """`_read_schema_state` from blocking code (the command line)."""
    return asyncio.run(_read_schema_state(database_url))


async def has_schema(database_url: str) -> bool:
    """Whether the database has been set up (by `qinglian db upgrade` or a first `serve`), looking without creating
    anything, as `schema_status` does. Raises `DatabaseUnreachable`."""
    if await _missing_sqlite_file(database_url) is not None:
        return False
    return await _schema_state(database_url) is not None


def describe(database_url: str) -> tuple[bool, str]:
    """`schema_status` from blocking code (the command line)."""
    return asyncio.run(schema_status(database_url))
