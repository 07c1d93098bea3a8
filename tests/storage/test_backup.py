"""Backup and restore across SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage import actions, evidence_rows
from storage.backup import BackupError, create_backup, read_archive, restore_backup
from storage.db import create_engine, create_sessionmaker
from storage.models import Base, CaseStatus, utcnow
from tests.conftest import (
    REPO,
    create_postgres_database,
    drop_postgres_database,
    evidence_content,
    make_test_keyring,
)
from tests.factories import file_case

KEY = b"k" * 32
EVIDENCE = bytes(range(256)) * 40 + "照片".encode()
MODEL_FILES = {"models/registry.json": b'{"promoted": "v1"}', "models/v1/model.joblib": os.urandom(3000)}


async def _file(session: Any, **overrides: Any) -> Any:
    fields: dict[str, Any] = dict(
        secret_key=KEY, case_number_prefix="QL", year=2026, channel="telegram", reporter_ref="42",
        locale="zh", district="yuelu", place="岳麓区政务服务中心", occurred="今天",
        description="窗口工作人员擅离岗位两个小时", anonymous=False, reporter_name="张三", reporter_phone="13800000000",
        attachment_ids=[], queue="triage", label=None,
    )
    fields.update(overrides)
    case, _code = await file_case(session, **fields)
    return case


async def _fill(url: str, data_dir: Path) -> None:
    (data_dir / "evidence").mkdir(parents=True)
    (data_dir / "evidence" / "a1b2.jpg").write_bytes(EVIDENCE)
    for relative, content in MODEL_FILES.items():
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_bytes(content)
    engine = create_engine(url, make_test_keyring())
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", "42")
        attachment = await evidence_rows.add_draft_attachment(
            session, conversation, stored_name="a1b2.jpg", original_name="照片.jpg", media_type="image/jpeg",
            size_bytes=len(EVIDENCE), sha256=hashlib.sha256(EVIDENCE).hexdigest(),
        )
        case = await _file(session, attachment_ids=[attachment.id])
        case.label, case.label_confidence, case.label_top = "bribery", 0.8125, [["bribery", 0.8125], ["other", 0.1]]
        await actions.change_status(session, case, CaseStatus.ACCEPTED, actor="staff:1", body="受理")
        await actions.add_follow_up(session, case, text="补充：还有一位同事")
        second = await _file(session, reporter_ref="43", anonymous=True, description="另一件事情需要反映一下")
        second.duplicate_of_id = case.id
        drafting = await actions.load_conversation(session, "wechat", "o-abc")
        drafting.state = "description"
        drafting.draft = {"place": "天心区", "anonymous": True, "attachments": [], "nested": {"n": 1.5}}
        drafting.draft_updated_at = utcnow() - timedelta(hours=3)
        await actions.finish_step(session, drafting)
        await actions.record_wrong_code(session, "telegram", "42")
    await engine.dispose()


async def _dump(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(url, make_test_keyring())
    try:
        async with engine.connect() as connection:
            return {
                table.name: [dict(row._mapping) for row in await connection.execute(
                    select(table).order_by(*table.primary_key.columns))]
                for table in Base.metadata.sorted_tables
            }
    finally:
        await engine.dispose()


def _files(data_dir: Path) -> dict[str, bytes]:
    return {
        path.relative_to(data_dir).as_posix(): path.read_bytes()
        for top in ("evidence", "models") if (data_dir / top).is_dir()
        for path in sorted((data_dir / top).rglob("*")) if path.is_file()
    }


@pytest.fixture
def fresh_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An empty, unmigrated database of each kind to restore into."""
    admin = request.getfixturevalue("postgres_server")
    name, postgres_url = create_postgres_database(admin)
    try:
        yield {"sqlite": f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'restored.db'}", "postgres": postgres_url}
    finally:
        drop_postgres_database(admin, name)


async def test_backup_restores_every_row_and_file_into_both_backends(
    database_url: str, fresh_databases: dict[str, str], tmp_path: Path
) -> None:
    source_dir = tmp_path / "source-data"
    await _fill(database_url, source_dir)
    original = await _dump(database_url)
    archive_path = tmp_path / "backups" / "qinglian.tar.gz"

    summary = await asyncio.to_thread(create_backup, database_url, source_dir, archive_path)

    assert summary.row_counts["cases"] == 2 and summary.row_counts["trace_events"] == 6
    assert summary.row_counts["outbox"] == 1 and summary.file_count == 3
    manifest = read_archive(archive_path).manifest
    assert manifest["schema_revision"] == summary.revision is not None
    assert manifest["row_counts"] == {name: len(rows) for name, rows in original.items()}
    assert not list(archive_path.parent.glob(".*.tmp"))

    for kind, target_url in fresh_databases.items():
        target_dir = tmp_path / f"restored-{kind}"
        restored = await asyncio.to_thread(restore_backup, target_url, target_dir, archive_path,
                                           make_test_keyring())

        assert restored.row_counts == manifest["row_counts"]
        assert await _dump(target_url) == original, kind
        assert _files(target_dir) == _files(source_dir) == {"evidence/a1b2.jpg": EVIDENCE, **MODEL_FILES}

        engine = create_engine(target_url, make_test_keyring())
        async with create_sessionmaker(engine).begin() as session:
            new_case = await _file(session, reporter_ref="99")
            event = await actions.add_follow_up(session, new_case, text="新的补充")
            conversation = await actions.load_conversation(session, "web", "fresh")
        await engine.dispose()
        assert new_case.id == max(row["id"] for row in original["cases"]) + 1
        assert new_case.case_number == f"QL-2026-{new_case.id:06d}"
        assert event.id == max(row["id"] for row in original["trace_events"]) + 3  # after received, routed
        assert conversation.id == max(row["id"] for row in original["conversations"]) + 1


async def test_a_corrupt_or_tampered_archive_is_refused(sessionmaker: Any, database_url: str, tmp_path: Path) -> None:
    await _fill(database_url, tmp_path / "data")
    archive_path = tmp_path / "backup.tar.gz"
    await asyncio.to_thread(create_backup, database_url, tmp_path / "data", archive_path)
    target = f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive_path.read_bytes()[: archive_path.stat().st_size // 2])
    with pytest.raises(BackupError, match="corrupt or truncated"):
        restore_backup(target, tmp_path / "target-data", truncated, make_test_keyring())

    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(archive_path) as archive:
        for info in archive:
            extracted = archive.extractfile(info)
            assert extracted is not None
            content = extracted.read()
            if info.name == "tables/cases/000000.jsonl":
                tampered_content = content.replace(b'"QL-2026-', b'"QL-2027-')
                assert tampered_content != content
                content = tampered_content
            members.append((info, content))
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(tampered, "w:gz") as archive:
        for info, content in members:
            archive.addfile(info, io.BytesIO(content))
    with pytest.raises(BackupError, match=r"checksum mismatch for tables/cases/000000\.jsonl"):
        restore_backup(target, tmp_path / "target-data", tampered, make_test_keyring())

    with pytest.raises(BackupError, match="no backup file"):
        restore_backup(target, tmp_path / "target-data", tmp_path / "missing.tar.gz", make_test_keyring())
    assert not (tmp_path / "target-data").exists()


async def test_a_backup_from_a_newer_schema_is_refused(database_url: str, tmp_path: Path) -> None:
    archive_path = tmp_path / "backup.tar.gz"
    await asyncio.to_thread(create_backup, database_url, tmp_path / "data", archive_path)
    with tarfile.open(archive_path) as archive:
        members = {info.name: archive.extractfile(info).read() for info in archive}  # type: ignore[union-attr]
    manifest = json.loads(members["manifest.json"])
    manifest["schema_revision"] = "9999_from_the_future"
    members["manifest.json"] = json.dumps(manifest).encode()
    newer = tmp_path / "newer.tar.gz"
    with tarfile.open(newer, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    with pytest.raises(BackupError, match="newer than this version"):
        restore_backup(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", tmp_path / "t", newer, make_test_keyring())


async def test_a_target_with_data_is_refused_without_force(database_url: str, tmp_path: Path) -> None:
    await _fill(database_url, tmp_path / "data")
    archive_path = tmp_path / "backup.tar.gz"
    await asyncio.to_thread(create_backup, database_url, tmp_path / "data", archive_path)
    original = await _dump(database_url)

    engine = create_engine(database_url, make_test_keyring())
    async with create_sessionmaker(engine).begin() as session:
        await _file(session, reporter_ref="after-backup")
    await engine.dispose()

    with pytest.raises(BackupError, match=r"already has data .*--force"):
        await asyncio.to_thread(restore_backup, database_url, tmp_path / "data", archive_path,
                                make_test_keyring())
    assert len((await _dump(database_url))["cases"]) == 3

    restored = await asyncio.to_thread(restore_backup, database_url, tmp_path / "data", archive_path,
                                           make_test_keyring(), force=True)
    assert "cases" in restored.emptied
    assert await _dump(database_url) == original


def test_the_cli_backs_up_and_restores(tmp_path: Path) -> None:
    source_dir, target_dir = tmp_path / "source", tmp_path / "target"
    source_url = f"sqlite+aiosqlite:///{source_dir / 'qinglian.db'}"
    from storage.migrate import upgrade

    upgrade(source_url, make_test_keyring())
    asyncio.run(_fill(source_url, source_dir))

    def run(data_dir: Path, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "QINGLIAN_DATA_DIR": str(data_dir), "QINGLIAN_SECRET_KEY": "x" * 40, **overrides}
        env.pop("QINGLIAN_DATABASE_URL", None)
        return subprocess.run([sys.executable, "-m", "bot.cli", "db", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)

    archive_path = tmp_path / "nightly.qlbak"
    backup = run(source_dir, "backup", str(archive_path))
    assert backup.returncode == 0, backup.stderr
    assert "written to" in backup.stdout
    kept = archive_path.read_bytes()
    again = run(source_dir, "backup", str(archive_path))  # yesterday's archive (perhaps under an old key) stays
    assert again.returncode == 2 and "exists already" in again.stderr and archive_path.read_bytes() == kept
    assert run(source_dir, "backup", "--force", str(archive_path)).returncode == 0

    other_key = "b3RoZXItZGVwbG95bWVudC1rZXktMzItYnl0ZXMhISE"  # another deployment's key ring
    refused = run(target_dir, "restore", str(archive_path), QINGLIAN_ENCRYPTION_KEY=other_key)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(f"qinglian: the backup is encrypted under key {make_test_keyring().current.key_id}"
                                     ", which the configured key ring does not hold")
    assert not target_dir.exists()  # neither its database nor its files

    restore = run(target_dir, "restore", str(archive_path))
    assert restore.returncode == 0, restore.stderr
    assert "cases: 2 rows" in restore.stdout
    assert _files(target_dir) == _files(source_dir)

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(gzip.compress(b"not a tar archive"))
    corrupt = run(target_dir, "restore", "--force", str(garbage))
    assert corrupt.returncode == 2
    assert corrupt.stderr.startswith("qinglian: ") and corrupt.stderr.strip().count("\n") == 0


# --- streaming in bounded pieces (format 2) ----------------------------------------------------------


async def _fill_many(url: str, data_dir: Path, cases: int) -> dict[str, bytes]:
    """`cases` cases with trace events, notes, answers, attachments with encrypted evidence files and
    duplicates pointing both ways; returns the evidence as the residents sent it, by stored name."""
    from storage import staff_actions
    from storage.evidence_files import purpose_of, write_encrypted
    from storage.models import StaffRole
    from tests.factories import create_staff

    keyring = make_test_keyring()
    engine = create_engine(url, keyring)
    sessionmaker = create_sessionmaker(engine)
    evidence: dict[str, bytes] = {}
    async with sessionmaker.begin() as session:
        staff = await create_staff(session, "li", StaffRole.REVIEWER, ["triage"])
        filed = []
        for number in range(cases):
            attachment_ids = []
            if number % 3 == 0:
                stored_name = f"2026/11/{number:04d}-{hashlib.sha256(str(number).encode()).hexdigest()[:16]}.jpg"
                content = os.urandom(1000 + number * 37) + f"第{number}张照片".encode()
                write_encrypted(keyring, data_dir / "evidence" / stored_name, content, purpose=purpose_of(stored_name))
                evidence[stored_name] = content
                conversation = await actions.load_conversation(session, "telegram", f"r{number}")
                attachment = await evidence_rows.add_draft_attachment(
                    session, conversation, stored_name=stored_name, original_name=f"照片{number}.jpg",
                    media_type="image/jpeg", size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest())
                attachment_ids.append(attachment.id)
            description = f"第{number}号反映：窗口工作人员擅离岗位，群众排队无人办理。" * (1 + number % 4)
            case = await _file(session, reporter_ref=f"r{number}", attachment_ids=attachment_ids,
                               description=description)
            filed.append(case)
            await actions.change_status(session, case, CaseStatus.ACCEPTED, actor="staff:1", body=f"受理{number}")
            await staff_actions.add_note(session, case, f"内部备注{number}：需要核实", actor=staff)
            if number % 2:
                await actions.add_follow_up(session, case, text=f"补充{number}")
        for number, case in enumerate(filed):
            if number % 5 == 1:
                case.duplicate_of_id = filed[number - 1].id  # an earlier case
            elif number % 5 == 3 and number + 1 < len(filed):
                case.duplicate_of_id = filed[number + 1].id  # a later one: its row is restored after this one
    await engine.dispose()
    return evidence


def _members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as archive:
        return [(info.name, archive.extractfile(info).read()) for info in archive]  # type: ignore[union-attr]


def _write_members(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts, batches and checksum lists a few rows long, so a small database spans many of each."""
    import importlib
    import pkgutil

    import storage.backup
    from storage.backup import format as archive_format
    from storage.backup import restore, write

    modules = [storage.backup, *(importlib.import_module(f"storage.backup.{info.name}")
                                 for info in pkgutil.iter_modules(storage.backup.__path__))]
    for name, module, value in [("PART_BYTES", write, 3000), ("FETCH_ROWS", write, 7), ("INSERT_ROWS", restore, 5),
                                ("CHECKSUM_BATCH", write, 6), ("COPY_CHUNK", archive_format, 1024)]:
        # the module that reads a size is the only one holding it (no copy imported by name elsewhere),
        # so patching it there takes effect
        assert [m.__name__ for m in modules if hasattr(m, name)] == [module.__name__], name
        monkeypatch.setattr(module, name, value)


async def test_a_backup_in_many_parts_restores_cases_trace_notes_attachments_and_evidence_identically(
    database_url: str, fresh_databases: dict[str, str], tmp_path: Path, small_pieces: None
) -> None:
    source_dir = tmp_path / "source"
    evidence = await _fill_many(database_url, source_dir, 24)
    original = await _dump(database_url)
    archive_path = tmp_path / "many.qlbak"

    summary = await asyncio.to_thread(create_backup, database_url, source_dir, archive_path)

    names = [name for name, _content in _members(archive_path)]
    assert names[0] == "format.json" and names[-1] == "manifest.json"
    assert len([name for name in names if name.startswith("tables/cases/")]) > 3
    for table_name in ("trace_events", "internal_notes"):  # several parts for the other tables too
        assert len([name for name in names if name.startswith(f"tables/{table_name}/")]) > 1, table_name
    assert len([name for name in names if name.startswith("checksums/")]) > 3
    stored = dict(_members(archive_path))
    for stored_name, content in evidence.items():  # copied as stored: encrypted, never the resident's bytes
        member = stored[f"files/evidence/{stored_name}"]
        assert member == (source_dir / "evidence" / stored_name).read_bytes()
        assert member.startswith(b"QLE1") and content not in member
    assert summary.row_counts["internal_notes"] == 24 and summary.row_counts["attachments"] == 8
    assert summary.file_count == 8

    for kind, target_url in fresh_databases.items():
        target_dir = tmp_path / f"restored-{kind}"
        restored = await asyncio.to_thread(restore_backup, target_url, target_dir, archive_path,
                                           make_test_keyring())
        assert restored.file_count == 8
        assert await _dump(target_url) == original, kind
        assert _files(target_dir) == _files(source_dir)
        assert {name: evidence_content(target_dir / "evidence", name) for name in evidence} == evidence


async def test_a_truncated_or_corrupted_archive_is_refused_and_leaves_the_target_untouched(
    database_url: str, tmp_path: Path, small_pieces: None
) -> None:
    source_dir = tmp_path / "source"
    await _fill_many(database_url, source_dir, 9)
    archive_path = tmp_path / "good.qlbak"
    await asyncio.to_thread(create_backup, database_url, source_dir, archive_path)
    members = _members(archive_path)

    # the target: the same database with a case filed after the backup, and its data directory
    engine = create_engine(database_url, make_test_keyring())
    async with create_sessionmaker(engine).begin() as session:
        await _file(session, reporter_ref="after-the-backup")
    await engine.dispose()
    (source_dir / "evidence" / "2026" / "12").mkdir(parents=True)
    (source_dir / "evidence" / "2026" / "12" / "newer.jpg").write_bytes(b"a later file")
    before_rows, before_files = await _dump(database_url), _files(source_dir)

    whole = archive_path.read_bytes()
    broken: dict[str, tuple[bytes, str]] = {}
    for share in (0.3, 0.6, 0.95):
        broken[f"cut at {share:.0%}"] = (whole[: int(len(whole) * share)], "corrupt or truncated")

    def rewritten(change: Any) -> bytes:
        path = tmp_path / "rewritten.qlbak"
        _write_members(path, change([*members]))
        return path.read_bytes()

    first_file = next(name for name, _content in members if name.startswith("files/evidence/"))
    broken["evidence altered"] = (rewritten(lambda ms: [
        (name, content[:-1] + bytes([content[-1] ^ 1]) if name == first_file else content) for name, content in ms
    ]), f"checksum mismatch for {first_file}")
    broken["no manifest"] = (rewritten(lambda ms: ms[:-1]), "ends before its manifest.json")
    broken["a part missing"] = (rewritten(lambda ms: [m for m in ms if m[0] != "tables/cases/000001.jsonl"]),
                                "tables/cases/000002.jsonl where its checksums list tables/cases/000001.jsonl")
    broken["a part and its checksum missing"] = (rewritten(lambda ms: [
        (name, b"".join(line + b"\n" for line in content.splitlines() if b"tables/cases/000001.jsonl" not in line)
         if name.startswith("checksums/") else content)
        for name, content in ms if name != "tables/cases/000001.jsonl"
    ]), "checksum mismatch for checksums/")
    broken["from a newer release"] = (rewritten(lambda ms: [
        ("format.json", b'{"format": "qinglian-backup", "format_version": 3}'), *ms[1:]
    ]), "backup format version 3 is not supported")

    for what, (content, message) in broken.items():
        path = tmp_path / "broken.qlbak"
        path.write_bytes(content)
        with pytest.raises(BackupError, match=re.escape(message)):
            await asyncio.to_thread(restore_backup, database_url, source_dir, path, make_test_keyring(), force=True)
        assert await _dump(database_url) == before_rows, what
        assert _files(source_dir) == before_files, what


async def test_a_backup_of_format_1_still_restores(database_url: str, tmp_path: Path) -> None:
    """An archive as the previous release wrote it: one member per table, every checksum in the manifest."""
    source_dir = tmp_path / "source"
    await _fill_many(database_url, source_dir, 5)
    original = await _dump(database_url)
    archive_path = tmp_path / "new.qlbak"
    await asyncio.to_thread(create_backup, database_url, source_dir, archive_path)
    members = _members(archive_path)
    manifest = json.loads(dict(members)["manifest.json"])
    tables: dict[str, bytes] = {}  # in the order of the archive: parents first
    files: list[tuple[str, bytes]] = []
    for name, content in members:
        if name.startswith("tables/"):
            tables[name.split("/")[1]] = tables.get(name.split("/")[1], b"") + content
        elif name.startswith("files/"):
            files.append((name, content))
    old_members = [(f"tables/{name}.jsonl", content) for name, content in tables.items()] + files
    old_manifest = {key: manifest[key] for key in ("format", "created_at", "schema_revision", "source_dialect",
                                                   "row_counts", "file_count")}
    old_manifest.update(format_version=1, members={name: hashlib.sha256(content).hexdigest()
                                                   for name, content in old_members})
    old = tmp_path / "old.tar.gz"
    _write_members(old, [*old_members, ("manifest.json", json.dumps(old_manifest).encode())])
    target = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"

    restored = await asyncio.to_thread(restore_backup, target, tmp_path / "restored", old, make_test_keyring())

    assert restored.row_counts == manifest["row_counts"]
    assert await _dump(target) == original
    assert _files(tmp_path / "restored") == _files(source_dir)
