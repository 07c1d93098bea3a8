"""Restoring an archive (`storage.backup.restore.restore_backup`) into SQLite and the PostgreSQL on 127.0.0.1:
a target with data is refused, naming its tables; a forced restore puts back the backup's rows (bytes and JSON
as they were) and files, reports the tables it emptied, and new cases continue the backup's numbering; a restore
that fails while writing rolls back every row and keeps the data it would have replaced (files already written
stay); a target at an unknown revision is refused; a backup of an older schema restores into a newer empty
database, which ends at the newest schema; a refused archive leaves no trace, while one naming a table its own
schema lacks leaves the target at the backup's schema, empty; an archive the configured keys cannot read (a key
id of its values or files missing from the key ring, or another pseudonym key) is refused before anything is
written."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, text

from storage.backup.format import BackupError
from storage.backup.restore import restore_backup
from storage.backup.write import create_backup
from storage.crypto import DataKey, KeyRing, parse_key
from storage.db import Database
from storage.migrate import alembic_config, upgrade
from storage.models import Base, CaseSignature
from tests.conftest import TEST_PSEUDONYM_KEY, make_test_keyring
from tests.factories import create_staff, file_case

EVIDENCE = b"QLE1" + bytes(range(256)) * 8
SECOND = b"QLE1" + bytes(range(255, -1, -1)) * 3

Members = list[tuple[str, bytes]]


async def _fill(sessionmaker: Any, data_dir: Path) -> None:
    async with sessionmaker.begin() as session:
        first, _code = await file_case(session, reporter_ref="1")
        await file_case(session, reporter_ref="2")
        session.add(CaseSignature(case_id=first.id, minhash=b"\x00\x01\xff", terms=b"\x80", version=1))
    (data_dir / "evidence" / "2026").mkdir(parents=True)
    (data_dir / "evidence" / "a.jpg").write_bytes(EVIDENCE)
    (data_dir / "evidence" / "2026" / "b.jpg").write_bytes(SECOND)


async def _dump(sessionmaker: Any) -> dict[str, list[dict[str, Any]]]:
    async with sessionmaker() as session:
        return {table.name: [dict(row) for row in (await session.execute(
            select(table).order_by(*table.primary_key.columns))).mappings()]
            for table in Base.metadata.sorted_tables}


async def _revision(sessionmaker: Any) -> str:
    async with sessionmaker() as session:
        return str((await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one())


async def _restore(url: str, data_dir: Path, archive: Path, *, force: bool = False) -> Any:
    return await asyncio.to_thread(restore_backup, url, data_dir, archive, make_test_keyring(), force=force)


def _members(path: Path) -> Members:
    with tarfile.open(path) as archive:
        return [(info.name, archive.extractfile(info).read()) for info in archive]  # type: ignore[union-attr]


def _sealed(path: Path, data: Members, manifest: dict[str, Any]) -> Path:
    """An archive of `data` with its header, a checksums member and `manifest` brought in line with them: it
    passes verification whatever the rows say."""
    listing = b"".join(json.dumps({"name": name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()},
                                  sort_keys=True).encode() + b"\n" for name, content in data)
    manifest = {**manifest, "member_count": len(data),
                "checksum_members": {"checksums/000000.jsonl": hashlib.sha256(listing).hexdigest()}}
    members = [("format.json", b'{"format": "qinglian-backup", "format_version": 2}'), *data,
               ("checksums/000000.jsonl", listing), ("manifest.json", json.dumps(manifest).encode())]
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def _altered(source: Path, destination: Path, name: str, change: Any) -> Path:
    """`source` with the content of member `name` changed by `change`, sealed again."""
    members = _members(source)
    data = [(member, change(content) if member == name else content)
            for member, content in members if member.startswith(("tables/", "files/"))]
    assert any(member == name for member, _ in data)
    return _sealed(destination, data, json.loads(members[-1][1]))


async def test_a_target_with_data_is_restored_only_by_force_and_then_holds_the_backups_rows_and_files(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await _fill(sessionmaker, data_dir)
    archive = tmp_path / "backup.qlbak"
    await asyncio.to_thread(create_backup, database_url, data_dir, archive)
    at_backup, revision = await _dump(sessionmaker), await _revision(sessionmaker)
    # after the backup: a third case, a staff account, an evidence file changed and one added
    async with sessionmaker.begin() as session:
        await file_case(session, reporter_ref="3")
        await create_staff(session, "li", queues=["clean_hall"])
    (data_dir / "evidence" / "a.jpg").write_bytes(b"changed since")
    (data_dir / "evidence" / "later.jpg").write_bytes(b"filed after the backup")

    with pytest.raises(BackupError) as refused:
        await _restore(database_url, data_dir, archive)
    message = str(refused.value)
    assert message.startswith("the target database already has data (in ")
    assert message.endswith("); use --force to replace it")
    named = message.removeprefix("the target database already has data (in ").split(")")[0].split(", ")
    assert sorted(named) == ["audit_log", "case_signatures", "case_terms", "cases", "queue_assignments",
                             "staff_users", "trace_events"]

    summary = await _restore(database_url, data_dir, archive, force=True)

    assert summary.revision == revision and summary.file_count == 2
    assert (summary.row_counts["cases"], summary.row_counts["case_signatures"], summary.row_counts["trace_events"],
            summary.row_counts["staff_users"]) == (2, 1, 4, 0)
    assert sorted(summary.emptied) == sorted(named)
    assert await _dump(sessionmaker) == at_backup
    assert at_backup["case_signatures"] == [{"case_id": 1, "minhash": b"\x00\x01\xff", "terms": b"\x80",
                                             "version": 1}]
    assert await _revision(sessionmaker) == revision
    assert (data_dir / "evidence" / "a.jpg").read_bytes() == EVIDENCE
    assert (data_dir / "evidence" / "2026" / "b.jpg").read_bytes() == SECOND
    # files the backup does not hold are left where they are: a restore replaces rows, not the directory
    assert (data_dir / "evidence" / "later.jpg").read_bytes() == b"filed after the backup"
    async with sessionmaker.begin() as session:
        case, _code = await file_case(session, reporter_ref="4")
    assert (case.id, case.case_number) == (3, "QL-2026-000003")


async def test_a_restore_that_fails_while_writing_rolls_back_every_row_and_keeps_the_data_it_would_replace(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await _fill(sessionmaker, data_dir)
    archive = tmp_path / "backup.qlbak"
    await asyncio.to_thread(create_backup, database_url, data_dir, archive)
    async with sessionmaker.begin() as session:
        await file_case(session, reporter_ref="3")
    before, revision = await _dump(sessionmaker), await _revision(sessionmaker)

    def with_extra_column(content: bytes) -> bytes:
        first, *rest = content.splitlines(keepends=True)
        return json.dumps({**json.loads(first), "reporter_nickname": "老王"}).encode() + b"\n" + b"".join(rest)

    broken = {  # each passes verification: the fault shows only while the rows are written
        "tables/trace_events/000000.jsonl in the backup is not valid JSON lines": _altered(
            archive, tmp_path / "not-json.qlbak", "tables/trace_events/000000.jsonl",
            lambda content: b"".join(b"received\n" for _line in content.splitlines())),
        "table cases in the backup has columns the target lacks: ['reporter_nickname']": _altered(
            archive, tmp_path / "extra-column.qlbak", "tables/cases/000000.jsonl", with_extra_column),
    }
    for message, path in broken.items():
        with pytest.raises(BackupError) as refused:
            await _restore(database_url, data_dir, path, force=True)
        assert str(refused.value) == message
        assert await _dump(sessionmaker) == before, message

    # a data directory where the second evidence file cannot be written: the first one is already there
    target_dir = tmp_path / "target-data"
    (target_dir / "evidence").mkdir(parents=True)
    (target_dir / "evidence" / "2026").write_bytes(b"a file where the backup has a directory")
    with pytest.raises(BackupError) as refused:
        await _restore(database_url, target_dir, archive, force=True)
    assert str(refused.value).startswith(f"cannot write {target_dir / 'evidence' / '2026' / 'b.jpg'}: ")
    assert await _dump(sessionmaker) == before and await _revision(sessionmaker) == revision
    assert sorted(path.relative_to(target_dir).as_posix() for path in target_dir.rglob("*")) == [
        "evidence", "evidence/2026", "evidence/a.jpg"]  # no temporary file left
    assert (target_dir / "evidence" / "a.jpg").read_bytes() == EVIDENCE


async def test_a_target_at_a_schema_revision_this_version_does_not_know_is_refused(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    archive = tmp_path / "empty.qlbak"
    await asyncio.to_thread(create_backup, database_url, tmp_path / "data", archive)
    async with sessionmaker.begin() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))

    with pytest.raises(BackupError) as refused:
        await _restore(database_url, tmp_path / "data", archive)

    assert str(refused.value) == "the target database is at schema revision 9999_future, unknown to this version"
    assert await _revision(sessionmaker) == "9999_future"


async def test_a_backup_of_an_older_schema_restores_into_a_newer_empty_database_which_ends_at_the_newest(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    old_url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, old_url, make_test_keyring())
    old = Database.connect(old_url, make_test_keyring())
    try:  # filled by this version's actions, then taken back to revision 0044 as an older release left it
        await _fill(old.sessionmaker, tmp_path / "old-data")
        rows = await _dump(old.sessionmaker)
    finally:
        await old.dispose()
    await asyncio.to_thread(command.downgrade, alembic_config(old_url), "0044")
    archive = tmp_path / "old.qlbak"
    await asyncio.to_thread(create_backup, old_url, tmp_path / "old-data", archive)
    newest = await _revision(sessionmaker)
    assert newest != "0044"

    summary = await _restore(database_url, tmp_path / "data", archive)

    assert summary.revision == "0044" and summary.emptied == []
    assert await _revision(sessionmaker) == newest
    assert await _dump(sessionmaker) == rows
    assert (tmp_path / "data" / "evidence" / "a.jpg").read_bytes() == EVIDENCE


def test_a_refused_archive_creates_neither_the_target_database_nor_its_data_directory(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.qlbak"
    garbage.write_bytes(b"not an archive at all")
    target = tmp_path / "target" / "qinglian.db"

    with pytest.raises(BackupError, match="corrupt or truncated"):
        restore_backup(f"sqlite+aiosqlite:///{target}", tmp_path / "target-data", garbage, make_test_keyring())

    assert sorted(path.name for path in tmp_path.iterdir()) == ["garbage.qlbak"]


async def test_a_backup_naming_a_table_its_own_schema_lacks_leaves_the_target_empty_at_that_schema(
        tmp_path: Path) -> None:
    manifest = {"format": "qinglian-backup", "format_version": 2, "created_at": "2026-11-30T02:00:00+00:00",
                "schema_revision": "0001", "source_dialect": "sqlite", "row_counts": {"reply_scores": 1},
                "file_count": 0}  # reply_scores came with revision 0030
    archive = _sealed(tmp_path / "b.qlbak", [("tables/reply_scores/000000.jsonl", b'{"id": 1}\n')], manifest)
    target_url = f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"

    with pytest.raises(BackupError) as refused:
        await _restore(target_url, tmp_path / "data", archive)

    assert str(refused.value) == "the target schema lacks the backup's table reply_scores"
    target = Database.connect(target_url, make_test_keyring())
    try:
        assert await _revision(target.sessionmaker) == "0001"
        async with target.sessionmaker() as session:
            assert (await session.execute(text("SELECT count(*) FROM cases"))).scalar_one() == 0
    finally:
        await target.dispose()


async def test_an_archive_under_keys_the_configuration_lacks_is_refused_before_anything_is_written(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await _fill(sessionmaker, data_dir)
    archive = tmp_path / "backup.qlbak"
    await asyncio.to_thread(create_backup, database_url, data_dir, archive)
    before, revision = await _dump(sessionmaker), await _revision(sessionmaker)
    backup_key = make_test_keyring().current.key_id
    pseudonym_key = parse_key(TEST_PSEUDONYM_KEY)
    other_key = DataKey(b"o" * 32, "QINGLIAN_ENCRYPTION_KEY")
    fresh = tmp_path / "fresh" / "qinglian.db"
    refusals = {  # the key ring of another deployment; then the right encryption key with another pseudonym key
        KeyRing(other_key, pseudonym_key=pseudonym_key): (
            f"the backup is encrypted under key {backup_key}, which the configured key ring does not hold "
            f"(it holds {other_key.key_id}): set the key of the backup's time as QINGLIAN_ENCRYPTION_KEY or in "
            "QINGLIAN_ENCRYPTION_OLD_KEYS; nothing was restored"),
        KeyRing(make_test_keyring().current, pseudonym_key=b"p" * 32): (
            "the configured QINGLIAN_PSEUDONYM_KEY is not the one the backup was made with (residents would not "
            "find their conversations and reports): set the backup's; nothing was restored"),
    }
    for ring, message in refusals.items():
        for target_url, target_dir in ((database_url, data_dir), (f"sqlite+aiosqlite:///{fresh}", tmp_path / "t")):
            with pytest.raises(BackupError) as refused:
                await asyncio.to_thread(restore_backup, target_url, target_dir, archive, ring, force=True)
            assert str(refused.value) == message
    assert await _dump(sessionmaker) == before and await _revision(sessionmaker) == revision
    assert not fresh.parent.exists() and not (tmp_path / "t").exists()

    # an older key in QINGLIAN_ENCRYPTION_OLD_KEYS reads it
    rotated = KeyRing(other_key, [make_test_keyring().current], pseudonym_key=pseudonym_key)
    summary = await asyncio.to_thread(restore_backup, f"sqlite+aiosqlite:///{fresh}", tmp_path / "t", archive,
                                      rotated)
    assert summary.row_counts["cases"] == 2


async def test_evidence_or_model_files_under_a_key_the_configuration_lacks_are_refused(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    from storage.evidence_files import write_encrypted

    data_dir = tmp_path / "data"
    await _fill(sessionmaker, data_dir)
    model_key = DataKey(b"m" * 32, "an old key")
    ring = make_test_keyring().with_key(model_key)
    write_encrypted(ring, data_dir / "models" / "v1" / "model.joblib", b"model", purpose="model:v1", key=model_key)
    archive = tmp_path / "backup.qlbak"
    await asyncio.to_thread(create_backup, database_url, data_dir, archive)
    target = tmp_path / "target" / "qinglian.db"

    with pytest.raises(BackupError) as refused:
        await asyncio.to_thread(restore_backup, f"sqlite+aiosqlite:///{target}", tmp_path / "t", archive,
                                make_test_keyring())

    assert str(refused.value) == (
        f"the backup is encrypted under key {model_key.key_id}, which the configured key ring does not hold "
        f"(it holds {make_test_keyring().current.key_id}): set the key of the backup's time as "
        "QINGLIAN_ENCRYPTION_KEY or in QINGLIAN_ENCRYPTION_OLD_KEYS; nothing was restored")
    assert not target.parent.exists() and not (tmp_path / "t").exists()
