"""The archive's layout and encoding, shared by writing, reading and restoring: member names and format
constants, values stored by column type (not by backend), members read in chunks while they are hashed, and
the operator's one-line error."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import PurePosixPath
from typing import IO, Any

from sqlalchemy import JSON, Date, DateTime, LargeBinary, TypeDecorator
from sqlalchemy.types import TypeEngine

from storage.crypto import EncryptedJSON, EncryptedText, PseudonymisedKey

FORMAT = "qinglian-backup"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FORMAT_MEMBER = "format.json"
MANIFEST = "manifest.json"
TABLES_PREFIX = "tables/"
FILES_PREFIX = "files/"
CHECKSUMS_PREFIX = "checksums/"
FILE_DIRS = ("evidence", "models")

COPY_CHUNK = 256 * 1024
"""Bytes of a file copied at a time."""


class BackupError(Exception):
    """The backup or restore cannot be done; the message is one line for the operator."""


# --- values ------------------------------------------------------------------------------------


PLAINTEXT_REVISIONS = frozenset({"0001", "0002"})
"""Schemas from before field encryption: the draft was a JSON column there."""
PLAINTEXT_SKIPPED_TABLES = frozenset({"status_guesses"})
"""Short-lived wrong-code records of those schemas, whose user column was renamed since: not carried over."""


def stored_type(column_: Any, revision: str | None) -> TypeEngine[Any]:
    """The type of the value as the database stores it: encrypted columns are read and written raw."""
    type_ = column_.type
    if isinstance(type_, EncryptedJSON):
        return JSON() if revision in PLAINTEXT_REVISIONS else type_.impl_instance
    if isinstance(type_, EncryptedText | PseudonymisedKey):
        return type_.impl_instance
    return type_  # type: ignore[no-any-return]


def column_kind(type_: TypeEngine[Any]) -> str:
    if isinstance(type_, TypeDecorator):
        return column_kind(type_.impl_instance)
    if isinstance(type_, DateTime):
        return "datetime"
    if isinstance(type_, Date):
        return "date"
    if isinstance(type_, LargeBinary):
        return "bytes"
    if isinstance(type_, JSON):
        return "json"
    return "plain"


def encode_value(value: Any, kind: str) -> Any:
    if value is None or kind == "json":
        return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def decode_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value)
    return value


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def skipped_table(table_name: str, revision: str | None) -> bool:
    return revision in PLAINTEXT_REVISIONS and table_name in PLAINTEXT_SKIPPED_TABLES


# --- member names ------------------------------------------------------------------------------


def part_name(table_name: str, part: int) -> str:
    return f"{TABLES_PREFIX}{table_name}/{part:06d}.jsonl"


def table_of(name: str, version: int) -> str | None:
    """The table a member holds rows of, or None when it is not a table member."""
    if not (name.startswith(TABLES_PREFIX) and name.endswith(".jsonl")):
        return None
    inner = name[len(TABLES_PREFIX):-len(".jsonl")]
    if version == 1:
        return inner if "/" not in inner else None
    table_name, _, part = inner.partition("/")
    return table_name if part.isdigit() and "/" not in part else None


def safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in FILE_DIRS:
        raise BackupError(f"the backup holds an unsafe file name {name!r}")
    return path


# --- reading members ---------------------------------------------------------------------------


class HashingReader:
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


def member_lines(reader: HashingReader) -> Iterator[bytes]:
    """The lines of a member, read in chunks (a line is never longer than a row)."""
    pending = b""
    while chunk := reader.read(COPY_CHUNK):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
    if pending:
        yield pending


def member_chunks(reader: HashingReader) -> Iterator[bytes]:
    while chunk := reader.read(COPY_CHUNK):
        yield chunk


def reason(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
