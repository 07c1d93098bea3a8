"""Consistent, database-agnostic backups: `qinglian db backup` and `qinglian db restore`.

An archive (a gzip-compressed tar stream, any file name) holds, in this order,

- `format.json` — `{"format": "qinglian-backup", "format_version": 2}`, so a reader knows the layout
  from the first member;
- `tables/<table>/<part>.jsonl` — every row of every table as one JSON object per line, tables in the
  order of their foreign keys (parents first, as a restore inserts them), rows in primary-key order, cut
  into parts of about `PART_BYTES` (a part ends with the row that reaches it; numbered from 000000; a
  table without rows has none),
  read inside one snapshot transaction (PostgreSQL: REPEATABLE READ, READ ONLY; SQLite: one deferred read
  transaction, which WAL mode turns into a snapshot), so a backup taken while the service runs is consistent;
- `files/evidence/…` and `files/models/…` — the data directory's evidence files and classifier models,
  byte for byte as stored;
- `checksums/<n>.jsonl` — after every `CHECKSUM_BATCH` members and once at the end: one line
  `{"name", "size", "sha256"}` for each table part and file written since the previous checksums member;
- `manifest.json` — last: format version, creation time, the Alembic schema revision, the source dialect,
  row counts, file and member counts and the sha256 of every checksums member.

Everything is written and read as a stream: rows are fetched per table in batches of `FETCH_ROWS` through
a server-side cursor, files are copied in chunks, a restore reads the archive member by member and inserts
in batches of `INSERT_ROWS`. Memory stays the same whatever the size of the database and of the evidence.

A restore reads the archive twice: first to check every member against its checksum, the row counts and
the manifest (nothing is written before this pass succeeds, so a corrupt or truncated archive leaves the
target untouched), then to restore, inserting every row in one transaction.

Format version 1 (one `tables/<table>.jsonl` member per table, no `format.json` and no checksums
members; the manifest lists the sha256 of every member) is still read and restored.

Values are stored by column type, not by backend: datetimes as ISO 8601 with their UTC offset, JSON
columns as JSON, booleans as booleans, bytes as base64. So a backup taken from SQLite restores into
PostgreSQL and the other way round.

Encrypted fields (storage/crypto.py) are copied as they are stored, ciphertext and pseudonyms, never
decrypted, and so are evidence files (AES-GCM per file, storage/evidence_files.py): a backup holds no more
plaintext than the database and the data directory. The keys are not in the archive: receipt
codes, encrypted fields and evidence files of the restored data only work with the same
`QINGLIAN_SECRET_KEY` (or the same `<data_dir>/secret.key`) and the encryption keys of the backup's time
(`QINGLIAN_ENCRYPTION_KEY`, `QINGLIAN_ENCRYPTION_OLD_KEYS`, `QINGLIAN_PSEUDONYM_KEY`). A backup from before
encryption (schema 0002 or older) is restored as it was and then encrypted by the migration to the newest
schema.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    LargeBinary,
    Table,
    TypeDecorator,
    bindparam,
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
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FORMAT_MEMBER = "format.json"
MANIFEST = "manifest.json"
TABLES_PREFIX = "tables/"
FILES_PREFIX = "files/"
CHECKSUMS_PREFIX = "checksums/"
FILE_DIRS = ("evidence", "models")
_SKIPPED_NAMES = frozenset({".lock"})  # the model registry's lock file
_SKIPPED_PREFIXES = (".incoming-", ".tmp")  # half-written models and temporary files
_SKIPPED_SUFFIXES = (".part",)  # half-written evidence files (`.<name>.<random>.part`)

FETCH_ROWS = 1000
"""Rows fetched at a time from the server-side cursor of a backup."""
PART_BYTES = 4 * 1024 * 1024
"""A table's rows go into parts of at most about this many bytes of JSON lines."""
INSERT_ROWS = 1000
"""Rows inserted at a time by a restore."""
CHECKSUM_BATCH = 5000
"""Members listed per checksums member."""
COPY_CHUNK = 256 * 1024
"""Bytes of a file copied at a time."""


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


def _skipped_table(table_name: str, revision: str | None) -> bool:
    return revision in PLAINTEXT_REVISIONS and table_name in PLAINTEXT_SKIPPED_TABLES


def _write_tables(connection: Connection, writer: _ArchiveWriter) -> tuple[str | None, dict[str, int]]:
    """Stream every table, in primary-key order, into parts of the archive; returns the revision and row counts."""
    revision = _revision(connection)
    present = _present_columns(connection)
    counts: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        if table.name not in present or _skipped_table(table.name, revision):
            continue
        columns = [c for c in table.columns if c.name in present[table.name]]
        types = {c.name: _stored_type(c, revision) for c in columns}
        names = [c.name for c in columns]
        kinds = [_kind(types[name]) for name in names]
        query = (select(*[type_coerce(c, types[c.name]).label(c.name) for c in columns]).select_from(table)
                 .order_by(*_primary_key_order(table, present[table.name]))
                 .execution_options(yield_per=FETCH_ROWS))
        count = part = 0
        buffer = io.BytesIO()
        result = connection.execute(query)
        try:
            for row in result:
                record = {name: _encode(value, kind) for name, value, kind in zip(names, row, kinds, strict=True)}
                buffer.write(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
                count += 1
                if buffer.tell() >= PART_BYTES:
                    writer.add_bytes(_part_name(table.name, part), buffer.getvalue())
                    part += 1
                    buffer = io.BytesIO()
        finally:
            result.close()
        if buffer.tell():
            writer.add_bytes(_part_name(table.name, part), buffer.getvalue())
        counts[table.name] = count
    return revision, counts


def _part_name(table_name: str, part: int) -> str:
    return f"{TABLES_PREFIX}{table_name}/{part:06d}.jsonl"


async def _snapshot(url: str, writer: _ArchiveWriter) -> tuple[str | None, dict[str, int]]:
    engine = _snapshot_engine(url)
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


# --- backup ------------------------------------------------------------------------------------


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


class _HashingReader:
    """A file object that hashes and counts what is read through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


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
        self._listed(name, len(data), _sha256(data))

    def add_file(self, name: str, path: Path) -> bool:
        """Copy one file in chunks; False when it disappeared before it could be opened."""
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # deleted since the walk (a discarded draft's file)
            return False
        with handle:
            status = os.fstat(handle.fileno())
            reader = _HashingReader(handle)
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
        self.checksum_members[name] = _sha256(payload)
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
                raise BackupError(f"cannot read the database: {_reason(exc)}") from None
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


# --- reading an archive ------------------------------------------------------------------------


@dataclass
class Archive:
    """A verified archive: its manifest and format version (the rows and files stay in the file)."""

    path: Path
    manifest: dict[str, Any]
    version: int


class _Consumer:
    """What a pass over the archive does with each member's content (the verifying pass: nothing)."""

    def table_part(self, table_name: str, lines: Iterator[bytes]) -> int:
        return sum(1 for line in lines if line.strip())

    def data_file(self, relative: PurePosixPath, chunks: Iterator[bytes]) -> None:
        for _chunk in chunks:
            pass


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in FILE_DIRS:
        raise BackupError(f"the backup holds an unsafe file name {name!r}")
    return path


def _table_of(name: str, version: int) -> str | None:
    """The table a member holds rows of, or None when it is not a table member."""
    if not (name.startswith(TABLES_PREFIX) and name.endswith(".jsonl")):
        return None
    inner = name[len(TABLES_PREFIX):-len(".jsonl")]
    if version == 1:
        return inner if "/" not in inner else None
    table_name, _, part = inner.partition("/")
    return table_name if part.isdigit() and "/" not in part else None


def _lines(reader: _HashingReader) -> Iterator[bytes]:
    """The lines of a member, read in chunks (a line is never longer than a row)."""
    pending = b""
    while chunk := reader.read(COPY_CHUNK):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def _chunks(reader: _HashingReader) -> Iterator[bytes]:
    while chunk := reader.read(COPY_CHUNK):
        yield chunk


def _header(content: bytes, path: Path) -> int:
    try:
        header = json.loads(content)
    except ValueError:
        raise BackupError(f"{path} is not a Qinglian backup: its {FORMAT_MEMBER} is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{path} is not a Qinglian backup")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise BackupError(f"backup format version {version!r} is not supported (this version reads "
                          f"{' and '.join(str(v) for v in READABLE_VERSIONS)}); restore it with a newer release")
    return int(version)


def _walk(path: Path, consumer: _Consumer) -> Archive:
    """Read the archive member by member, hand each member's content to `consumer` and check it against
    the archive's checksums, row counts and manifest. Raises BackupError at the first disagreement."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    version = 1  # unless the first member says otherwise
    computed: list[tuple[str, int, str]] = []  # members not yet confirmed by a checksums member
    checksum_members: dict[str, str] = {}
    row_counts: dict[str, int] = {}
    file_count = member_count = 0
    manifest: dict[str, Any] | None = None
    first = True
    try:
        with tarfile.open(path, mode="r|*") as archive:
            while (info := archive.next()) is not None:
                archive.members.clear()  # type: ignore[attr-defined]  # TarFile keeps every member; not needed
                name = info.name
                if not info.isfile():
                    raise BackupError(f"the backup holds an entry that is not a file: {name!r}")
                if manifest is not None:
                    raise BackupError(f"the backup holds {name!r} after its manifest")
                extracted = archive.extractfile(info)
                assert extracted is not None
                reader = _HashingReader(extracted)
                if first and name == FORMAT_MEMBER:
                    version = _header(reader.read(), path)
                    first = False
                    continue
                first = False
                if name == MANIFEST:
                    manifest = _manifest(reader.read(), path, version)
                    continue
                if version == 2 and name.startswith(CHECKSUMS_PREFIX):
                    content = reader.read()
                    _confirm(content, computed, name)
                    computed = []
                    checksum_members[name] = _sha256(content)
                    continue
                table_name = _table_of(name, version)
                if table_name is not None:
                    if table_name not in Base.metadata.tables:
                        raise BackupError(f"the backup holds table {table_name}, which this version does not know")
                    try:
                        row_counts[table_name] = (row_counts.get(table_name, 0)
                                                  + consumer.table_part(table_name, _lines(reader)))
                    except (ValueError, UnicodeDecodeError):
                        raise BackupError(f"{name} in the backup is not valid JSON lines") from None
                elif name.startswith(FILES_PREFIX):
                    consumer.data_file(_safe_relative(name[len(FILES_PREFIX):]), _chunks(reader))
                    file_count += 1
                else:
                    raise BackupError(f"the backup holds an unexpected member {name!r}")
                reader.drain()
                computed.append((name, reader.size, reader.digest.hexdigest()))
                member_count += 1
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{path} is not a readable backup (corrupt or truncated): {_reason(exc)}") from None
    except OSError as exc:
        raise BackupError(f"cannot read {path} (corrupt or truncated?): {_reason(exc)}") from None
    if manifest is None:
        if first:
            raise BackupError(f"{path} is not a readable backup (corrupt or truncated): it holds no member")
        raise BackupError(f"{path} is incomplete (corrupt or truncated): it ends before its {MANIFEST}")
    if version == 1:
        expected: dict[str, str] = manifest.get("members") or {}
        names = [name for name, _size, _digest in computed]
        if len(set(names)) != len(names):
            raise BackupError("the backup holds a member twice")
        if set(expected) != set(names):
            missing = sorted(set(expected) - set(names))
            extra = sorted(set(names) - set(expected))
            raise BackupError(f"the backup's members do not match its manifest (missing {missing[:3]}, "
                              f"unlisted {extra[:3]})")
        for name, _size, digest in computed:
            if digest != expected[name]:
                raise BackupError(f"checksum mismatch for {name}: the backup is corrupt")
    else:
        if computed:
            raise BackupError(f"the backup's checksums do not list {computed[0][0]}: the backup is corrupt")
        listed = manifest.get("checksum_members") or {}
        if set(listed) != set(checksum_members):
            raise BackupError("the backup's checksums members do not match its manifest: the backup is corrupt")
        for name, digest in checksum_members.items():
            if listed[name] != digest:
                raise BackupError(f"checksum mismatch for {name}: the backup is corrupt")
        if manifest.get("member_count") != member_count:
            raise BackupError(f"the backup holds {member_count} members but its manifest says "
                              f"{manifest.get('member_count')}")
    counts = manifest.get("row_counts") or {}
    for table_name in sorted(set(counts) | set(row_counts)):
        if counts.get(table_name) != row_counts.get(table_name, 0):
            raise BackupError(f"table {table_name} has {row_counts.get(table_name, 0)} rows but the manifest says "
                              f"{counts.get(table_name)}")
    unknown = sorted(set(counts) - set(Base.metadata.tables))
    if unknown:
        raise BackupError(f"the backup holds tables this version does not know: {', '.join(unknown)}")
    if manifest.get("file_count", file_count) != file_count:
        raise BackupError(f"the backup holds {file_count} files but its manifest says {manifest.get('file_count')}")
    return Archive(path, manifest, version)


def _confirm(content: bytes, computed: list[tuple[str, int, str]], member: str) -> None:
    """Compare a checksums member with what was read since the previous one."""
    try:
        entries = [json.loads(line) for line in content.decode("utf-8").splitlines() if line]
        listed = [(entry["name"], entry["size"], entry["sha256"]) for entry in entries]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise BackupError(f"{member} in the backup is not valid: the backup is corrupt") from None
    for (name, size, digest), (listed_name, listed_size, listed_digest) in zip(computed, listed, strict=False):
        if name != listed_name:
            raise BackupError(f"the backup holds {name} where its checksums list {listed_name}: the backup is corrupt")
        if (size, digest) != (listed_size, listed_digest):
            raise BackupError(f"checksum mismatch for {name}: the backup is corrupt")
    if len(computed) != len(listed):
        unlisted = computed[len(listed)][0] if len(computed) > len(listed) else listed[len(computed)][0]
        raise BackupError(f"the backup's checksums and members disagree at {unlisted}: the backup is corrupt")


def _manifest(content: bytes, path: Path, version: int) -> dict[str, Any]:
    try:
        manifest = json.loads(content)
    except ValueError:
        raise BackupError(f"the manifest of {path} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a Qinglian backup")
    if manifest.get("format_version") != version:
        found = manifest.get("format_version")
        if found not in READABLE_VERSIONS:
            raise BackupError(f"backup format version {found!r} is not supported (this version reads "
                              f"{' and '.join(str(v) for v in READABLE_VERSIONS)})")
        raise BackupError(f"the manifest of {path} says format version {found} but the archive is laid out "
                          f"as version {version}: the backup is corrupt")
    return manifest


def read_archive(path: Path) -> Archive:
    """Blocking: read the whole archive once and verify its manifest, every checksum and the row counts;
    nothing is written and nothing but one chunk at a time is held in memory."""
    return _walk(Path(path), _Consumer())


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


class _Restorer(_Consumer):
    """The second pass: rows go into the target in batches (one transaction), files into the data directory."""

    def __init__(self, connection: Connection, data_dir: Path, revision: str | None) -> None:
        self.connection = connection
        self.data_dir = data_dir
        self.revision = revision
        self.present = _present_columns(connection)
        self.table_name: str | None = None
        self.deferred: list[dict[str, Any]] = []  # self-references to rows not inserted yet
        self.largest_key: Any = None

    def table_part(self, table_name: str, lines: Iterator[bytes]) -> int:
        if table_name != self.table_name:
            self.finish_table()
            self.table_name, self.largest_key = table_name, None
        if table_name not in self.present:
            raise BackupError(f"the target schema lacks the backup's table {table_name}")
        skipped = _skipped_table(table_name, self.revision)
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
        types = {c.name: _stored_type(c, self.revision) for c in table.columns if c.name in names}
        kinds = {name: _kind(type_) for name, type_ in types.items()}
        # JSON None becomes SQL NULL, as the service writes it when a value is unset.
        target = table_clause(table.name, *[
            column(name, JSON(none_as_null=True) if kinds[name] == "json" else types[name]) for name in names
        ])
        decoded = [{name: _decode(row.get(name), kinds[name]) for name in names} for row in rows]
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
            raise BackupError(f"cannot write {path}: {_reason(exc)}") from None
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    try:
                        out.write(chunk)
                    except OSError as exc:  # a full disk, not the archive's fault
                        raise BackupError(f"cannot write {path}: {_reason(exc)}") from None
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def _restore_into(connection: Connection, source: Path, data_dir: Path, force: bool,
                  revision: str | None) -> list[str]:
    present = _present_columns(connection)
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
    _walk(source, restorer)
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
        if _kind(key.type) != "plain" or key.type.python_type is not int:
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
    """Blocking: verify the whole archive (first pass), prepare the schema at the backup's revision, then
    restore the rows in one transaction and the files (second pass), and finally migrate to the newest
    schema this code knows."""
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
        emptied = asyncio.run(_restore_rows(database_url, Path(source), Path(data_dir), force, revision))
        upgrade(database_url, keyring, "head")
    except (OSError, SQLAlchemyError) as exc:
        raise BackupError(f"restore failed: {_reason(exc)}") from None
    row_counts = {name: int(count) for name, count in (archive.manifest.get("row_counts") or {}).items()}
    return RestoreSummary(revision, row_counts, int(archive.manifest.get("file_count") or 0), emptied)


def _reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
