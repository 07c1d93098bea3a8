"""Key rotation and key status over the database: `qinglian keys rotate` and `qinglian keys status`.

Both read and write the stored values raw, past the column types of storage/crypto.py: status counts
values by the key id in their header, rotation decrypts each value with the key ring and encrypts it
again under the target key. Rotation works in batches, one transaction each, and only touches values
not yet under the target key, so an interrupted rotation continues where it stopped when run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table, Text, and_, case, column, func, literal, or_, select, update
from sqlalchemy import table as table_clause
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import evidence_files
from storage.crypto import (
    DETERMINISTIC,
    RANDOM,
    DataKey,
    EncryptedJSON,
    EncryptedText,
    KeyRing,
    header,
)
from storage.models import Base

PLAINTEXT = evidence_files.PLAINTEXT
"""What status reports for values stored before encryption (none after migration 0003; evidence files
written before files were encrypted, until `keys rotate`)."""


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    name: str
    purpose: str
    deterministic: bool

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.name}"


def encrypted_columns() -> list[EncryptedColumn]:
    found = []
    for table in Base.metadata.sorted_tables:
        for column_ in table.columns:
            if isinstance(column_.type, EncryptedText | EncryptedJSON):
                found.append(EncryptedColumn(table, column_.name, column_.type.purpose,
                                             bool(column_.type.deterministic)))
    return found


def _raw_table(table: Table, names: list[str]) -> Any:
    """The table with its key columns and the named columns as plain text (no encryption on the way)."""
    keys = [column(c.name, c.type) for c in table.primary_key.columns]
    return table_clause(table.name, *keys, *[column(name, Text()) for name in names])


async def key_status(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """For each encrypted column ("cases.description"), how many values are under each key id."""
    status: dict[str, dict[str, int]] = {}
    async with engine.connect() as connection:
        for encrypted in encrypted_columns():
            raw = _raw_table(encrypted.table, [encrypted.name]).c[encrypted.name]
            formatted = or_(raw.like(f"{RANDOM}.________.%"), raw.like(f"{DETERMINISTIC}.________.%"))
            key_id = case((formatted, func.substr(raw, 4, 8)), else_=literal(PLAINTEXT))
            rows = await connection.execute(
                select(key_id.label("key_id"), func.count()).where(raw.is_not(None)).group_by(key_id))
            status[encrypted.label] = {str(key): int(count) for key, count in rows.all()}
    return status


async def rotate(engine: AsyncEngine, ring: KeyRing, target: DataKey, *, batch_size: int = 200,
                 on_start: Callable[[str, int], None] | None = None,
                 on_batch: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Re-encrypt every encrypted value that is not under `target`; returns the rows changed per table.

    `ring` must be able to decrypt every value (it gets `target` added). `on_start(table, rows to do)`
    and `on_batch(table, rows done in the batch)` report progress.
    """
    ring = ring.with_key(target)
    by_table: dict[str, list[EncryptedColumn]] = {}
    for encrypted in encrypted_columns():
        by_table.setdefault(encrypted.table.name, []).append(encrypted)
    changed: dict[str, int] = {}
    for table_name, columns in by_table.items():
        table = columns[0].table
        raw_table = _raw_table(table, [c.name for c in columns])
        keys = [raw_table.c[c.name] for c in table.primary_key.columns]
        prefixes = {c.name: header(target.key_id, deterministic=c.deterministic) for c in columns}
        stale = or_(*[and_(raw_table.c[c.name].is_not(None), ~raw_table.c[c.name].like(prefixes[c.name] + "%"))
                      for c in columns])
        async with engine.connect() as connection:
            todo = int((await connection.execute(select(func.count()).select_from(raw_table).where(stale)))
                       .scalar_one())
        if on_start is not None:
            on_start(table_name, todo)
        changed[table_name] = 0
        while True:
            async with engine.begin() as connection:
                rows = (await connection.execute(
                    select(*keys, *[raw_table.c[c.name] for c in columns]).where(stale)
                    .order_by(*keys).limit(batch_size).with_for_update())).all()
                for row in rows:
                    values = {}
                    for encrypted in columns:
                        stored = getattr(row, encrypted.name)
                        if stored is not None and not stored.startswith(prefixes[encrypted.name]):
                            values[encrypted.name] = ring.reencrypt(
                                stored, purpose=encrypted.purpose, deterministic=encrypted.deterministic,
                                key=target)
                    await connection.execute(
                        update(raw_table).where(*[key == getattr(row, key.name) for key in keys]).values(values))
            if not rows:
                break
            changed[table_name] += len(rows)
            if on_batch is not None:
                on_batch(table_name, len(rows))
    return changed


def _evidence_files(evidence_dir: Path) -> Iterator[tuple[Path, str]]:
    """Every stored evidence file and its stored name (its path under the evidence directory)."""
    if not evidence_dir.is_dir():
        return
    for path in sorted(evidence_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path, path.relative_to(evidence_dir).as_posix()


def file_status(paths: Iterable[Path]) -> dict[str, int]:
    """How many of the files are under each key id (`PLAINTEXT`: stored before they were encrypted)."""
    counts: dict[str, int] = {}
    for path in paths:
        key_id = evidence_files.key_id_of_file(path)
        counts[key_id] = counts.get(key_id, 0) + 1
    return counts


def rotate_files(files: Iterable[tuple[Path, str]], ring: KeyRing, target: DataKey,
                 on_file: Callable[[], None] | None = None) -> int:
    """Re-encrypt every (path, purpose) file not under `target` (plaintext ones are encrypted), streamed, one
    at a time: the classifier's model files. Returns how many were rewritten. Blocking."""
    ring = ring.with_key(target)
    changed = 0
    for path, purpose in files:
        if evidence_files.reencrypt(ring, path, purpose=purpose, target=target):
            changed += 1
        if on_file is not None:
            on_file()
    return changed


def evidence_status(evidence_dir: Path) -> dict[str, int]:
    """How many evidence files are under each key id (`PLAINTEXT`: from before files were encrypted)."""
    return file_status(path for path, _ in _evidence_files(evidence_dir))


def rotate_evidence(evidence_dir: Path, ring: KeyRing, target: DataKey,
                    on_file: Callable[[], None] | None = None) -> int:
    """Re-encrypt every evidence file not under `target` (plaintext ones are encrypted), one file at a time,
    streamed; returns how many were rewritten. Blocking. Interrupted, it continues where it stopped."""
    files = ((path, evidence_files.purpose_of(stored_name)) for path, stored_name in _evidence_files(evidence_dir))
    return rotate_files(files, ring, target, on_file)
