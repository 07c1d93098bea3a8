"""Writing an archive: the tables read inside one snapshot transaction, then the data directory's files,
streamed into a gzip tar with checksums members and the manifest (`create_backup`)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Table, select, type_coerce
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from storage.backup.database import present_columns, schema_revision, snapshot_engine
from storage.backup.format import (
    CHECKSUMS_PREFIX,
    FILE_DIRS,
    FILES_PREFIX,
    FORMAT,
    FORMAT_MEMBER,
    FORMAT_VERSION,
    MANIFEST,
    BackupError,
    HashingReader,
    column_kind,
    encode_value,
    part_name,
    reason,
    sha256_hex,
    skipped_table,
    stored_type,
)
from storage.db import is_memory_sqlite, is_sqlite
from storage.models import Base

_SKIPPED_NAMES = frozenset({".lock"})  # the model registry's lock file
_SKIPPED_PREFIXES = (".incoming-", ".tmp")  # half-written models and temporary files
_SKIPPED_SUFFIXES = (".part",)  # half-written evidence files (`.<name>.<random>.part`)

FETCH_ROWS = 1000
"""Rows fetched at a time from the server-side cursor of a backup."""
PART_BYTES = 4 * 1024 * 1024
"""A table's rows go into parts of at most about this many bytes of JSON lines."""
CHECKSUM_BATCH = 5000
"""Members listed per checksums member."""


@dataclass
class BackupSummary:
    path: Path
    revision: str | None
    row_counts: dict[str, int]
    file_count: int
    created_at: str = ""


# --- the tables, in one snapshot ---------------------------------------------------------------


def _primary_key_order(table: Table, present: set[str]) -> list[Any]:
    return [c for c in table.primary_key.columns if c.name in present]


def _write_tables(connection: Connection, writer: _ArchiveWriter) -> tuple[str | None, dict[str, int]]:
    """Stream every table, in primary-key order, into parts of the archive; returns the revision and row counts."""
    revision = schema_revision(connection)
    present = present_columns(connection)
    counts: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        if table.name not in present or skipped_table(table.name, revision):
            continue
        columns = [c for c in table.columns if c.name in present[table.name]]
        types = {c.name: stored_type(c, revision) for c in columns}
        names = [c.name for c in columns]
        kinds = [column_kind(types[name]) for name in names]
        query = (select(*[type_coerce(c, types[c.name]).label(c.name) for c in columns]).select_from(table)
                 .order_by(*_primary_key_order(table, present[table.name]))
                 .execution_options(yield_per=FETCH_ROWS))
        count = part = 0
        buffer = io.BytesIO()
        result = connection.execute(query)
        try:
            for row in result:
                record = {name: encode_value(value, kind) for name, value, kind in zip(names, row, kinds, strict=True)}
                buffer.write(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
                count += 1
                if buffer.tell() >= PART_BYTES:
                    writer.add_bytes(part_name(table.name, part), buffer.getvalue())
                    part += 1
                    buffer = io.BytesIO()
        finally:
            result.close()
        if buffer.tell():
            writer.add_bytes(part_name(table.name, part), buffer.getvalue())
        counts[table.name] = count
    return revision, counts


async def _snapshot(url: str, writer: _ArchiveWriter) -> tuple[str | None, dict[str, int]]:
    engine = snapshot_engine(url)
    try:
        async with engine.connect() as connection:
            if not is_sqlite(url):
                connection = await connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            async with connection.begin():
                return await connection.run_sync(_write_tables, writer)
    finally:
        await engine.dispose()


# --- the files and the archive -----------------------------------------------------------------


def _data_files(data_dir: Path) -> Iterator[tuple[str, Path]]:
    """The evidence and model files, directory by directory as the file system lists them (nothing is
    collected: a directory of a million files is not held in memory)."""
    for top in FILE_DIRS:
        root = data_dir / top
        if not root.is_dir():
            continue
        pending = [root]
        while pending:
            directory = pending.pop()
            subdirectories = []
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith(_SKIPPED_PREFIXES):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        subdirectories.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False) and not _skipped_file(entry.name):
                        path = Path(entry.path)
                        yield f"{FILES_PREFIX}{path.relative_to(data_dir).as_posix()}", path
            pending.extend(sorted(subdirectories, reverse=True))


def _skipped_file(name: str) -> bool:
    return name in _SKIPPED_NAMES or (name.startswith(".") and name.endswith(_SKIPPED_SUFFIXES))


class _ArchiveWriter:
    """Appends members to a gzip tar stream and lists their checksums in batches; keeps no member list."""

    def __init__(self, raw: IO[bytes], mtime: float) -> None:
        self.archive = tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6)
        self.mtime = int(mtime)
        self.pending: list[dict[str, Any]] = []
        self.checksum_members: dict[str, str] = {}
        self.member_count = 0

    def _add(self, name: str, size: int, source: IO[bytes], mtime: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = mtime
        info.mode = 0o600
        self.archive.addfile(info, source)
        self.archive.members.clear()  # type: ignore[attr-defined]  # TarFile keeps every member; not needed

    def add_header(self) -> None:
        """The first member, which tells a reader the format version before anything else."""
        header = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION}).encode()
        self._add(FORMAT_MEMBER, len(header), io.BytesIO(header), self.mtime)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._add(name, len(data), io.BytesIO(data), self.mtime)
        self._listed(name, len(data), sha256_hex(data))

    def add_file(self, name: str, path: Path) -> bool:
        """Copy one file in chunks; False when it disappeared before it could be opened."""
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # deleted since the walk (a discarded draft's file)
            return False
        with handle:
            status = os.fstat(handle.fileno())
            reader = HashingReader(handle)
            self._add(name, status.st_size, reader, int(status.st_mtime))  # type: ignore[arg-type]
        self._listed(name, reader.size, reader.digest.hexdigest())
        return True

    def _listed(self, name: str, size: int, sha256: str) -> None:
        self.pending.append({"name": name, "size": size, "sha256": sha256})
        self.member_count += 1
        if len(self.pending) >= CHECKSUM_BATCH:
            self.flush_checksums()

    def flush_checksums(self) -> None:
        if not self.pending:
            return
        name = f"{CHECKSUMS_PREFIX}{len(self.checksum_members):06d}.jsonl"
        data = "".join(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n" for entry in self.pending)
        payload = data.encode("utf-8")
        self._add(name, len(payload), io.BytesIO(payload), self.mtime)
        self.checksum_members[name] = sha256_hex(payload)
        self.pending = []

    def finish(self, manifest: dict[str, Any]) -> None:
        self.flush_checksums()
        manifest = {**manifest, "member_count": self.member_count, "checksum_members": self.checksum_members}
        payload = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._add(MANIFEST, len(payload), io.BytesIO(payload), self.mtime)
        self.archive.close()


def create_backup(database_url: str, data_dir: Path, destination: Path) -> BackupSummary:
    """Blocking: stream the database snapshot, then the files, into the archive, written atomically."""
    import asyncio

    if is_sqlite(database_url):  # a path mistyped would otherwise become a new, empty database backed up "fine"
        database = make_url(database_url).database or ""
        if is_memory_sqlite(database_url) or not Path(database).is_file():
            raise BackupError(f"cannot read the database: there is no SQLite database at {database or '(none)'}")
    created_at = datetime.now(UTC).isoformat()
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    file_count = 0
    handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    try:
        with os.fdopen(handle, "wb") as raw:
            writer = _ArchiveWriter(raw, datetime.now(UTC).timestamp())
            writer.add_header()
            try:
                revision, row_counts = asyncio.run(_snapshot(database_url, writer))
            except (OSError, SQLAlchemyError) as exc:
                raise BackupError(f"cannot read the database: {reason(exc)}") from None
            for member, path in _data_files(Path(data_dir)):
                if writer.add_file(member, path):
                    file_count += 1
            writer.finish({
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": created_at,
                "schema_revision": revision,
                "source_dialect": "sqlite" if is_sqlite(database_url) else "postgresql",
                "row_counts": row_counts,
                "file_count": file_count,
            })
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return BackupSummary(destination, revision, row_counts, file_count, created_at)
