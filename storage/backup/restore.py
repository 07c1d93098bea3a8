"""Restoring an archive: verify it whole, bring the target to the backup's schema, insert the rows in one
transaction and write the files, then migrate to the newest schema (`restore_backup`)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import JSON, Table, bindparam, column, delete, func, select, text, update
from sqlalchemy import table as table_clause
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.backup.database import present_columns, schema_revision, snapshot_engine
from storage.backup.format import BackupError, column_kind, decode_value, reason, skipped_table, stored_type
from storage.backup.keys import KeyCheck
from storage.backup.read import Consumer, walk
from storage.crypto import KeyRing
from storage.db import create_engine, is_sqlite
from storage.models import Base

INSERT_ROWS = 1000
"""Rows inserted at a time by a restore."""


@dataclass
class RestoreSummary:
    revision: str | None
    row_counts: dict[str, int]
    file_count: int
    emptied: list[str] = field(default_factory=list)


def _known_revisions() -> dict[str, Any]:
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {revision.revision: revision for revision in script.walk_revisions()}


def _is_ancestor(older: str, newer: str) -> bool:
    """Whether `older` comes before (or is) `newer` in the migration history."""
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return any(revision.revision == older for revision in script.iterate_revisions(newer, "base"))


def _row_counts(connection: Connection) -> dict[str, int]:
    present = present_columns(connection)
    return {
        table.name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        for table in Base.metadata.sorted_tables
        if table.name in present
    }


async def _inspect_target(url: str) -> tuple[str | None, dict[str, int]]:
    engine = snapshot_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda c: (schema_revision(c), _row_counts(c)))
    finally:
        await engine.dispose()


class _Restorer(Consumer):
    """The second pass: rows go into the target in batches (one transaction), files into the data directory."""

    def __init__(self, connection: Connection, data_dir: Path, revision: str | None) -> None:
        self.connection = connection
        self.data_dir = data_dir
        self.revision = revision
        self.present = present_columns(connection)
        self.table_name: str | None = None
        self.deferred: list[dict[str, Any]] = []  # self-references to rows not inserted yet
        self.largest_key: Any = None

    def table_part(self, table_name: str, lines: Iterator[bytes]) -> int:
        if table_name != self.table_name:
            self.finish_table()
            self.table_name, self.largest_key = table_name, None
        if table_name not in self.present:
            raise BackupError(f"the target schema lacks the backup's table {table_name}")
        skipped = skipped_table(table_name, self.revision)
        count = 0
        batch: list[dict[str, Any]] = []
        for line in lines:
            if not line.strip():
                continue
            count += 1
            if skipped:
                continue
            batch.append(json.loads(line))
            if len(batch) >= INSERT_ROWS:
                self._insert(Base.metadata.tables[table_name], batch)
                batch = []
        if batch:
            self._insert(Base.metadata.tables[table_name], batch)
        return count

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        unknown = set().union(*(row.keys() for row in rows)) - self.present[table.name]
        if unknown:
            raise BackupError(f"table {table.name} in the backup has columns the target lacks: {sorted(unknown)}")
        names = [c.name for c in table.columns if any(c.name in row for row in rows)]
        types = {c.name: stored_type(c, self.revision) for c in table.columns if c.name in names}
        kinds = {name: column_kind(type_) for name, type_ in types.items()}
        # JSON None becomes SQL NULL, as the service writes it when a value is unset.
        target = table_clause(table.name, *[
            column(name, JSON(none_as_null=True) if kinds[name] == "json" else types[name]) for name in names
        ])
        decoded = [{name: decode_value(row.get(name), kinds[name]) for name in names} for row in rows]
        # A column pointing into its own table (a case marked duplicate of another) is set at once when the
        # row it points to is already in (rows come in primary-key order), else once it is.
        primary_key = [c.name for c in table.primary_key.columns]
        self_refs = [c.name for c in table.columns if c.name in names
                     and any(fk.column.table is table for fk in c.foreign_keys)]
        single_key = primary_key[0] if len(primary_key) == 1 else None
        for row in decoded:
            for name in self_refs:
                value = row[name]
                if value is None:
                    continue
                if single_key is None or self.largest_key is None or value > self.largest_key:
                    self.deferred.append({"_key": [row[key] for key in primary_key], "_column": name,
                                          "_value": value})
                    row[name] = None
        self.connection.execute(target.insert(), decoded)
        if single_key is not None:
            self.largest_key = decoded[-1][single_key] if self.largest_key is None \
                else max(self.largest_key, decoded[-1][single_key])
            ready = [entry for entry in self.deferred if entry["_value"] <= self.largest_key]
            if ready:
                self.deferred = [entry for entry in self.deferred if entry["_value"] > self.largest_key]
                self._apply(table, ready)

    def _apply(self, table: Table, entries: list[dict[str, Any]]) -> None:
        primary_key = [c.name for c in table.primary_key.columns]
        for name in sorted({entry["_column"] for entry in entries}):
            target = table_clause(table.name, *[column(key, table.c[key].type) for key in primary_key],
                                  column(name, table.c[name].type))
            statement = (update(target)
                         .where(*[target.c[key] == bindparam(f"_pk_{key}") for key in primary_key])
                         .values({name: bindparam("_value")}))
            self.connection.execute(statement, [
                {"_value": entry["_value"], **{f"_pk_{key}": value for key, value in zip(
                    primary_key, entry["_key"], strict=True)}}
                for entry in entries if entry["_column"] == name
            ])

    def finish_table(self) -> None:
        if self.table_name is not None and self.deferred:
            self._apply(Base.metadata.tables[self.table_name], self.deferred)
        self.deferred = []

    def data_file(self, relative: PurePosixPath, chunks: Iterator[bytes]) -> None:
        self.finish_table()
        self.table_name = None
        path = self.data_dir / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(prefix=".tmp-restore-", dir=path.parent)
        except OSError as exc:
            raise BackupError(f"cannot write {path}: {reason(exc)}") from None
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    try:
                        out.write(chunk)
                    except OSError as exc:  # a full disk, not the archive's fault
                        raise BackupError(f"cannot write {path}: {reason(exc)}") from None
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def _restore_into(connection: Connection, source: Path, data_dir: Path, force: bool,
                  revision: str | None) -> list[str]:
    present = present_columns(connection)
    counts = {
        name: int(connection.execute(select(func.count()).select_from(Base.metadata.tables[name])).scalar_one())
        for name in present
    }
    filled = [name for name, count in counts.items() if count]
    if filled and not force:
        raise BackupError(f"the target database already has data (in {', '.join(filled)}); "
                          "use --force to replace it")
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in present and counts[table.name]:
            connection.execute(delete(table))
    restorer = _Restorer(connection, data_dir, revision)
    walk(source, restorer)
    restorer.finish_table()
    if connection.dialect.name == "postgresql":
        _reset_sequences(connection, present)
    return filled


def _reset_sequences(connection: Connection, present: dict[str, set[str]]) -> None:
    """After explicit ids, move each serial sequence past the largest id so new rows do not collide."""
    preparer = connection.dialect.identifier_preparer
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            continue
        key_columns = list(table.primary_key.columns)
        if len(key_columns) != 1 or key_columns[0].autoincrement is False:
            continue
        key = key_columns[0]
        if column_kind(key.type) != "plain" or key.type.python_type is not int:
            continue
        quoted_table = preparer.quote(table.name)
        quoted_key = preparer.quote(key.name)
        connection.execute(
            text(f"SELECT setval(pg_get_serial_sequence(:table, :key), COALESCE(MAX({quoted_key}), 1), "
                 f"MAX({quoted_key}) IS NOT NULL) FROM {quoted_table}"),
            {"table": quoted_table, "key": key.name},
        )


async def _restore_rows(url: str, source: Path, data_dir: Path, force: bool, revision: str | None) -> list[str]:
    engine = create_engine(url, None)  # rows are copied as stored: ciphertext stays ciphertext
    try:
        async with engine.begin() as connection:
            return await _run(connection, source, data_dir, force, revision)
    finally:
        await engine.dispose()


async def _run(connection: AsyncConnection, source: Path, data_dir: Path, force: bool,
               revision: str | None) -> list[str]:
    return await connection.run_sync(_restore_into, source, data_dir, force, revision)


def restore_backup(database_url: str, data_dir: Path, source: Path, keyring: KeyRing, *,
                   force: bool = False) -> RestoreSummary:
    """Blocking: verify the whole archive and that `keyring` reads it (first pass), prepare the schema at the
    backup's revision, then restore the rows in one transaction and the files (second pass), and finally migrate
    to the newest schema this code knows. Nothing is written before the first pass succeeds."""
    import asyncio

    from alembic import command

    from storage.migrate import alembic_config, upgrade

    key_check = KeyCheck()
    archive = walk(Path(source), key_check)
    key_check.confirm(keyring)
    revision = archive.manifest.get("schema_revision")
    known = _known_revisions()
    if revision is not None and revision not in known:
        raise BackupError(f"the backup is from schema revision {revision}, newer than this version of Qinglian "
                          f"knows ({', '.join(sorted(known))}); restore it with a newer release")
    if is_sqlite(database_url) and ":///" in database_url:
        database_path = database_url.split(":///", 1)[1]
        if database_path and database_path != ":memory:":
            Path(database_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        current, counts = asyncio.run(_inspect_target(database_url))
        filled = [name for name, count in counts.items() if count]
        if filled and not force:
            raise BackupError(f"the target database already has data (in {', '.join(filled)}); "
                              "use --force to replace it")
        if current is not None and current not in known:
            raise BackupError(f"the target database is at schema revision {current}, unknown to this version")
        target_revision = revision or "head"
        if current is not None and revision is not None and current != revision and _is_ancestor(revision, current):
            command.downgrade(alembic_config(database_url), revision)
        else:
            upgrade(database_url, keyring, target_revision)
        emptied = asyncio.run(_restore_rows(database_url, Path(source), Path(data_dir), force, revision))
        upgrade(database_url, keyring, "head")
    except (OSError, SQLAlchemyError) as exc:
        raise BackupError(f"restore failed: {reason(exc)}") from None
    row_counts = {name: int(count) for name, count in (archive.manifest.get("row_counts") or {}).items()}
    return RestoreSummary(revision, row_counts, int(archive.manifest.get("file_count") or 0), emptied)
