"""Consistent, database-agnostic backups: `qinglian db backup` and `qinglian db restore`.

An archive (`.tar.gz`, any name) holds

- `tables/<table>.jsonl` — every row of every table as one JSON object per line, read inside one
  snapshot transaction (PostgreSQL: REPEATABLE READ, READ ONLY; SQLite: one deferred read transaction,
  which WAL mode turns into a snapshot), so a backup taken while the service runs is consistent;
- `files/evidence/…` and `files/models/…` — the data directory's evidence files and classifier models;
- `manifest.json` — format version, creation time, the Alembic schema revision, row counts and the
  sha256 of every other member.

Values are stored by column type, not by backend: datetimes as ISO 8601 with their UTC offset, JSON
columns as JSON, booleans as booleans, bytes as base64. So a backup taken from SQLite restores into
PostgreSQL and the other way round.

Encrypted fields (storage/crypto.py) are copied as they are stored, ciphertext and pseudonyms, never
decrypted: a backup holds no more plaintext than the database. The keys are not in the archive: receipt
codes and encrypted fields of the restored data only work with the same `QINGLIAN_SECRET_KEY` (or the
same `<data_dir>/secret.key`) and the encryption keys of the backup's time (`QINGLIAN_ENCRYPTION_KEY`,
`QINGLIAN_ENCRYPTION_OLD_KEYS`, `QINGLIAN_PSEUDONYM_KEY`). A backup from before encryption (schema 0002
or older) is restored as it was and then encrypted by the migration to the newest schema.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    LargeBinary,
    Table,
    TypeDecorator,
    column,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy import table as table_clause
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeEngine

from storage.crypto import EncryptedJSON, EncryptedText, KeyRing, PseudonymisedKey
from storage.db import create_engine, is_sqlite
from storage.models import Base

FORMAT = "qinglian-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TABLES_PREFIX = "tables/"
FILES_PREFIX = "files/"
FILE_DIRS = ("evidence", "models")
_SKIPPED_NAMES = frozenset({".lock"})  # the model registry's lock file
_SKIPPED_PREFIXES = (".incoming-", ".tmp")  # half-written models and temporary files


class BackupError(Exception):
    """The backup or restore cannot be done; the message is one line for the operator."""


@dataclass
class BackupSummary:
    path: Path
    revision: str | None
    row_counts: dict[str, int]
    file_count: int
    created_at: str = ""


@dataclass
class RestoreSummary:
    revision: str | None
    row_counts: dict[str, int]
    file_count: int
    emptied: list[str] = field(default_factory=list)


# --- values ------------------------------------------------------------------------------------


PLAINTEXT_REVISIONS = frozenset({"0001", "0002"})
"""Schemas from before field encryption: the draft was a JSON column there."""
PLAINTEXT_SKIPPED_TABLES = frozenset({"status_guesses"})
"""Short-lived wrong-code records of those schemas, whose user column was renamed since: not carried over."""


def _stored_type(column_: Any, revision: str | None) -> TypeEngine[Any]:
    """The type of the value as the database stores it: encrypted columns are read and written raw."""
    type_ = column_.type
    if isinstance(type_, EncryptedJSON):
        return JSON() if revision in PLAINTEXT_REVISIONS else type_.impl_instance
    if isinstance(type_, EncryptedText | PseudonymisedKey):
        return type_.impl_instance
    return type_  # type: ignore[no-any-return]


def _kind(type_: TypeEngine[Any]) -> str:
    if isinstance(type_, TypeDecorator):
        return _kind(type_.impl_instance)
    if isinstance(type_, DateTime):
        return "datetime"
    if isinstance(type_, Date):
        return "date"
    if isinstance(type_, LargeBinary):
        return "bytes"
    if isinstance(type_, JSON):
        return "json"
    return "plain"


def _encode(value: Any, kind: str) -> Any:
    if value is None or kind == "json":
        return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _decode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value)
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- database access ---------------------------------------------------------------------------


def _snapshot_engine(url: str) -> AsyncEngine:
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


def _present_columns(connection: Connection) -> dict[str, set[str]]:
    """The known tables that exist in this database and their columns (an older schema has fewer)."""
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    return {
        table.name: {column_info["name"] for column_info in inspector.get_columns(table.name)}
        for table in Base.metadata.sorted_tables
        if table.name in existing
    }


def _revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    revisions = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(revisions) > 1:
        raise BackupError(f"the database has several schema heads {revisions}; migrate it first")
    return revisions[0] if revisions else None


def _primary_key_order(table: Table, present: set[str]) -> list[Any]:
    return [c for c in table.primary_key.columns if c.name in present]


def _read_tables(connection: Connection) -> tuple[str | None, dict[str, list[dict[str, Any]]]]:
    revision = _revision(connection)
    present = _present_columns(connection)
    data: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            continue
        if revision in PLAINTEXT_REVISIONS and table.name in PLAINTEXT_SKIPPED_TABLES:
            continue
        columns = [c for c in table.columns if c.name in present[table.name]]
        types = {c.name: _stored_type(c, revision) for c in columns}
        kinds = {name: _kind(type_) for name, type_ in types.items()}
        query = (select(*[type_coerce(c, types[c.name]).label(c.name) for c in columns]).select_from(table)
                 .order_by(*_primary_key_order(table, present[table.name])))
        data[table.name] = [
            {name: _encode(value, kinds[name]) for name, value in row._mapping.items()}
            for row in connection.execute(query)
        ]
    return revision, data


async def _snapshot(url: str) -> tuple[str | None, dict[str, list[dict[str, Any]]]]:
    engine = _snapshot_engine(url)
    try:
        async with engine.connect() as connection:
            if not is_sqlite(url):
                connection = await connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            async with connection.begin():
                return await connection.run_sync(_read_tables)
    finally:
        await engine.dispose()


# --- backup ------------------------------------------------------------------------------------


def _data_files(data_dir: Path) -> Iterator[tuple[str, Path]]:
    for top in FILE_DIRS:
        root = data_dir / top
        if not root.is_dir():
            continue
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith(_SKIPPED_PREFIXES))
            for name in sorted(names):
                if name in _SKIPPED_NAMES or name.startswith(_SKIPPED_PREFIXES):
                    continue
                path = Path(directory) / name
                if path.is_file() and not path.is_symlink():
                    yield f"{FILES_PREFIX}{path.relative_to(data_dir).as_posix()}", path


def _add_member(archive: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o600
    archive.addfile(info, io.BytesIO(data))


def create_backup(database_url: str, data_dir: Path, destination: Path) -> BackupSummary:
    """Blocking: read the database snapshot, then the files, and write the archive atomically."""
    import asyncio

    try:
        revision, data = asyncio.run(_snapshot(database_url))
    except (OSError, SQLAlchemyError) as exc:
        raise BackupError(f"cannot read the database: {_reason(exc)}") from None
    created_at = datetime.now(UTC).isoformat()
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    checksums: dict[str, str] = {}
    file_count = 0
    handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    try:
        with os.fdopen(handle, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            now = datetime.now(UTC).timestamp()
            for table_name, rows in data.items():
                body = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
                member = f"{TABLES_PREFIX}{table_name}.jsonl"
                payload = body.encode("utf-8")
                checksums[member] = _sha256(payload)
                _add_member(archive, member, payload, now)
            for member, path in _data_files(Path(data_dir)):
                try:
                    payload = path.read_bytes()
                    mtime = path.stat().st_mtime
                except FileNotFoundError:  # deleted since the walk (a discarded draft's file)
                    continue
                checksums[member] = _sha256(payload)
                _add_member(archive, member, payload, mtime)
                file_count += 1
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": created_at,
                "schema_revision": revision,
                "source_dialect": "sqlite" if is_sqlite(database_url) else "postgresql",
                "row_counts": {name: len(rows) for name, rows in data.items()},
                "file_count": file_count,
                "members": checksums,
            }
            _add_member(archive, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode(), now)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return BackupSummary(destination, revision, {name: len(rows) for name, rows in data.items()}, file_count,
                         created_at)


# --- reading an archive ------------------------------------------------------------------------


@dataclass
class Archive:
    manifest: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]
    files: dict[str, bytes]  # relative path inside the data directory → content


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in FILE_DIRS:
        raise BackupError(f"the backup holds an unsafe file name {name!r}")
    return path


def read_archive(path: Path) -> Archive:
    """Blocking: open the archive and verify its manifest and every checksum; nothing is written."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:*") as archive:
            for info in archive:
                if not info.isfile():
                    raise BackupError(f"the backup holds an entry that is not a file: {info.name!r}")
                if info.name in members:
                    raise BackupError(f"the backup holds {info.name!r} twice")
                extracted = archive.extractfile(info)
                assert extracted is not None
                members[info.name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BackupError(f"{path} is not a readable backup (corrupt or truncated): {_reason(exc)}") from None
    if MANIFEST not in members:
        raise BackupError(f"{path} is not a Qinglian backup: it has no {MANIFEST}")
    try:
        manifest = json.loads(members.pop(MANIFEST))
    except ValueError:
        raise BackupError(f"the manifest of {path} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a Qinglian backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"backup format version {manifest.get('format_version')!r} is not supported "
                          f"(this version reads {FORMAT_VERSION})")
    expected: dict[str, str] = manifest.get("members") or {}
    if set(expected) != set(members):
        missing = sorted(set(expected) - set(members))
        extra = sorted(set(members) - set(expected))
        raise BackupError(f"the backup's members do not match its manifest (missing {missing[:3]}, "
                          f"unlisted {extra[:3]})")
    for name, content in members.items():
        if _sha256(content) != expected[name]:
            raise BackupError(f"checksum mismatch for {name}: the backup is corrupt")
    tables: dict[str, list[dict[str, Any]]] = {}
    files: dict[str, bytes] = {}
    for name, content in members.items():
        if name.startswith(TABLES_PREFIX) and name.endswith(".jsonl"):
            table_name = name[len(TABLES_PREFIX):-len(".jsonl")]
            try:
                tables[table_name] = [json.loads(line) for line in content.decode("utf-8").splitlines() if line]
            except ValueError:
                raise BackupError(f"{name} in the backup is not valid JSON lines") from None
        elif name.startswith(FILES_PREFIX):
            files[str(_safe_relative(name[len(FILES_PREFIX):]))] = content
        else:
            raise BackupError(f"the backup holds an unexpected member {name!r}")
    counts = manifest.get("row_counts") or {}
    for table_name, rows in tables.items():
        if counts.get(table_name) != len(rows):
            raise BackupError(f"table {table_name} has {len(rows)} rows but the manifest says {counts.get(table_name)}")
    unknown = sorted(set(tables) - set(Base.metadata.tables))
    if unknown:
        raise BackupError(f"the backup holds tables this version does not know: {', '.join(unknown)}")
    return Archive(manifest, tables, files)


# --- restore -----------------------------------------------------------------------------------


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
    present = _present_columns(connection)
    return {
        table.name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        for table in Base.metadata.sorted_tables
        if table.name in present
    }


async def _inspect_target(url: str) -> tuple[str | None, dict[str, int]]:
    engine = _snapshot_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda c: (_revision(c), _row_counts(c)))
    finally:
        await engine.dispose()


def _insert_rows(connection: Connection, tables: dict[str, list[dict[str, Any]]], force: bool,
                 revision: str | None) -> list[str]:
    present = _present_columns(connection)
    missing = sorted(set(tables) - set(present))
    if missing:
        raise BackupError(f"the target schema lacks the backup's tables {', '.join(missing)}")
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
    for table in Base.metadata.sorted_tables:
        rows = tables.get(table.name)
        if not rows or (revision in PLAINTEXT_REVISIONS and table.name in PLAINTEXT_SKIPPED_TABLES):
            continue
        unknown = set().union(*(row.keys() for row in rows)) - present[table.name]
        if unknown:
            raise BackupError(f"table {table.name} in the backup has columns the target lacks: {sorted(unknown)}")
        names = [c.name for c in table.columns if c.name in rows[0] or any(c.name in row for row in rows)]
        types = {c.name: _stored_type(c, revision) for c in table.columns}
        kinds = {name: _kind(type_) for name, type_ in types.items()}
        # JSON None becomes SQL NULL, as the service writes it when a value is unset.
        target = table_clause(table.name, *[
            column(c.name, JSON(none_as_null=True) if kinds[c.name] == "json" else types[c.name])
            for c in table.columns if c.name in names
        ])
        # A column pointing into its own table (a case marked duplicate of another) is filled in afterwards,
        # so row order cannot break the foreign key.
        self_refs = [c.name for c in table.columns if c.name in names
                     and any(fk.column.table is table for fk in c.foreign_keys)]
        decoded = [{name: _decode(row.get(name), kinds[name]) for name in names} for row in rows]
        connection.execute(target.insert(), [{k: (None if k in self_refs else v) for k, v in row.items()}
                                            for row in decoded])
        primary_key = [c.name for c in table.primary_key.columns]
        for name in self_refs:
            for row in decoded:
                if row[name] is not None:
                    connection.execute(
                        update(target)
                        .where(*[target.c[key] == row[key] for key in primary_key])
                        .values({name: row[name]})
                    )
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
        if _kind(key.type) != "plain" or key.type.python_type is not int:
            continue
        quoted_table = preparer.quote(table.name)
        quoted_key = preparer.quote(key.name)
        connection.execute(
            text(f"SELECT setval(pg_get_serial_sequence(:table, :key), COALESCE(MAX({quoted_key}), 1), "
                 f"MAX({quoted_key}) IS NOT NULL) FROM {quoted_table}"),
            {"table": quoted_table, "key": key.name},
        )


async def _restore_rows(url: str, tables: dict[str, list[dict[str, Any]]], force: bool,
                        revision: str | None) -> list[str]:
    engine = create_engine(url, None)  # rows are copied as stored: ciphertext stays ciphertext
    try:
        async with engine.begin() as connection:
            return await _run(connection, tables, force, revision)
    finally:
        await engine.dispose()


async def _run(connection: AsyncConnection, tables: dict[str, list[dict[str, Any]]], force: bool,
               revision: str | None) -> list[str]:
    return await connection.run_sync(_insert_rows, tables, force, revision)


def _write_files(data_dir: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".tmp-restore-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def restore_backup(database_url: str, data_dir: Path, source: Path, keyring: KeyRing, *,
                   force: bool = False) -> RestoreSummary:
    """Blocking: verify the archive, prepare the schema at the backup's revision, restore the files and
    then every row in one transaction, and finally migrate to the newest schema this code knows."""
    import asyncio

    from alembic import command

    from storage.migrate import alembic_config, upgrade

    archive = read_archive(source)
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
        _write_files(Path(data_dir), archive.files)
        emptied = asyncio.run(_restore_rows(database_url, archive.tables, force, revision))
        upgrade(database_url, keyring, "head")
    except (OSError, SQLAlchemyError) as exc:
        raise BackupError(f"restore failed: {_reason(exc)}") from None
    return RestoreSummary(revision, {name: len(rows) for name, rows in archive.tables.items()}, len(archive.files),
                          emptied)


def _reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
