"""Writing an archive (`storage.backup.write.create_backup`) from SQLite and the PostgreSQL on 127.0.0.1: the
header first, then every table's rows in parts (parents before children, rows in primary-key order, values
encoded by column type), then the evidence and model files as stored, the checksums member and the manifest
last; what the manifest and the summary report; which files of the data directory are left out; and that a
backup which cannot read the database leaves no archive behind and keeps the previous one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tarfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storage.backup.format import BackupError
from storage.backup.write import create_backup
from storage.models import Base, Case, CaseSignature
from tests.factories import file_case

EVIDENCE = b"QLE1" + bytes(range(256)) * 8
MODEL = os.urandom(2000)
NEW_YEAR_2026 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as archive:
        return [(info, archive.extractfile(info).read()) for info in archive]  # type: ignore[union-attr]


def _lines(content: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in content.splitlines()]


async def _fill(sessionmaker: Any, data_dir: Path) -> None:
    """Two cases (the first with a similarity signature) and three files, one per directory."""
    async with sessionmaker.begin() as session:
        first, _code = await file_case(session, reporter_ref="1", label="贿赂")
        await file_case(session, reporter_ref="2")
        session.add(CaseSignature(case_id=first.id, minhash=b"\x00\x01\xff", terms=b"", version=1))
    for relative, content in (("evidence/a.jpg", EVIDENCE), ("evidence/2026/b.jpg", EVIDENCE[::-1]),
                              ("models/v1/model.joblib", MODEL)):
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_bytes(content)


async def _backup(database_url: str, data_dir: Path, destination: Path) -> Any:
    return await asyncio.to_thread(create_backup, database_url, data_dir, destination)


async def test_the_archive_holds_the_header_then_the_parts_parents_first_then_the_files_checksums_and_manifest(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    await _fill(sessionmaker, tmp_path / "data")

    await _backup(database_url, tmp_path / "data", tmp_path / "nightly.qlbak")

    members = _members(tmp_path / "nightly.qlbak")
    assert [info.name for info, _ in members] == [
        "format.json",
        "tables/cases/000000.jsonl", "tables/case_signatures/000000.jsonl", "tables/case_terms/000000.jsonl",
        "tables/trace_events/000000.jsonl",  # tables without rows have no part
        "files/evidence/a.jpg", "files/evidence/2026/b.jpg", "files/models/v1/model.joblib",
        "checksums/000000.jsonl",
        "manifest.json",
    ]
    assert members[0][1] == b'{"format": "qinglian-backup", "format_version": 2}'
    stored = {info.name: content for info, content in members}
    assert stored["files/evidence/a.jpg"] == EVIDENCE and stored["files/evidence/2026/b.jpg"] == EVIDENCE[::-1]
    assert stored["files/models/v1/model.joblib"] == MODEL
    assert {info.mode for info, _ in members} == {0o600}  # not readable by others once extracted


async def test_rows_are_written_in_primary_key_order_with_values_encoded_by_column_type(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    await _fill(sessionmaker, tmp_path / "data")
    async with sessionmaker() as session:
        created = list((await session.execute(select(Case.created_at).order_by(Case.id))).scalars())

    await _backup(database_url, tmp_path / "data", tmp_path / "b.qlbak")

    stored = {info.name: content for info, content in _members(tmp_path / "b.qlbak")}
    cases = _lines(stored["tables/cases/000000.jsonl"])
    assert [(row["id"], row["case_number"]) for row in cases] == [(1, "QL-2026-000001"), (2, "QL-2026-000002")]
    assert all(list(row) == sorted(row) for row in cases)  # keys in a stable order
    assert [row["created_at"][-6:] for row in cases] == ["+00:00", "+00:00"]
    assert [datetime.fromisoformat(row["created_at"]) for row in cases] == created
    assert cases[0]["label_top"] == [["贿赂", 0.9], ["other", 0.1]]  # JSON as JSON, not as a string
    assert "贿赂".encode() in stored["tables/cases/000000.jsonl"]  # UTF-8 as it is, not \u escapes
    assert cases[0]["anonymous"] is True and cases[0]["duplicate_of_id"] is None  # booleans as booleans
    assert _lines(stored["tables/case_signatures/000000.jsonl"]) == [
        {"case_id": 1, "minhash": "AAH/", "terms": "", "version": 1}]  # bytes as base64
    keys = [(row["term"], row["case_id"]) for row in _lines(stored["tables/case_terms/000000.jsonl"])]
    assert len(keys) > 2 and keys == sorted(keys)  # the primary key is (term, case_id)
    assert [(row["case_id"], row["kind"]) for row in _lines(stored["tables/trace_events/000000.jsonl"])] == [
        (1, "received"), (1, "routed"), (2, "received"), (2, "routed")]


async def test_the_manifest_checksums_and_summary_report_the_revision_the_source_and_every_count(
        database_url: str, sessionmaker: Any, tmp_path: Path) -> None:
    await _fill(sessionmaker, tmp_path / "data")
    async with sessionmaker() as session:
        revision = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        counts = {table.name: (await session.execute(select(func.count()).select_from(table))).scalar_one()
                  for table in Base.metadata.sorted_tables}

    summary = await _backup(database_url, tmp_path / "data", tmp_path / "b.qlbak")

    members = _members(tmp_path / "b.qlbak")
    manifest = json.loads(members[-1][1])
    assert sorted(manifest) == ["checksum_members", "created_at", "file_count", "format", "format_version",
                                "member_count", "row_counts", "schema_revision", "source_dialect"]
    assert (manifest["format"], manifest["format_version"]) == ("qinglian-backup", 2)
    assert manifest["schema_revision"] == revision
    assert manifest["source_dialect"] == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    assert manifest["row_counts"] == counts  # every table, those without rows too
    assert (counts["cases"], counts["case_signatures"], counts["trace_events"], counts["staff_users"]) == (2, 1, 4, 0)
    assert (manifest["file_count"], manifest["member_count"]) == (3, 7)  # 4 parts and 3 files
    listing = dict((info.name, content) for info, content in members)["checksums/000000.jsonl"]
    assert manifest["checksum_members"] == {"checksums/000000.jsonl": hashlib.sha256(listing).hexdigest()}
    assert _lines(listing) == [  # every part and file with its size and sha256, in archive order
        {"name": info.name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for info, content in members if info.name.startswith(("tables/", "files/"))
    ]
    assert datetime.fromisoformat(manifest["created_at"]).utcoffset() == timedelta(0)

    assert (summary.path, summary.revision, summary.row_counts) == (tmp_path / "b.qlbak", revision, counts)
    assert (summary.file_count, summary.created_at) == (3, manifest["created_at"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_only_finished_evidence_and_model_files_are_copied_with_their_modification_time(
        database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    kept = {
        "evidence/2026/11/0001-ab.jpg": b"a photo",
        "evidence/.hidden.jpg": b"a dot file that is no half-written one",
        "models/registry.json": b'{"promoted": "v2"}',
        "models/v2/model.joblib": b"model v2",
    }
    left_out = {
        "evidence/2026/11/.0002-cd.jpg.x1y2z3.part": b"half-written evidence",
        "evidence/.tmp-restore-abc": b"half-restored evidence",
        "models/.lock": b"",
        "models/.incoming-v3/model.joblib": b"half-written model",
        "models/.tmp-v3/model.joblib": b"temporary model",
        "secret.key": b"k" * 32,
        "qinglian.db.bak": b"an old copy",
        "logs/service.log": b"log lines",
    }
    for relative, content in {**kept, **left_out}.items():
        (data_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / relative).write_bytes(content)
    (tmp_path / "outside.jpg").write_bytes(b"not evidence")
    (data_dir / "evidence" / "link.jpg").symlink_to(tmp_path / "outside.jpg")  # links are not followed
    os.utime(data_dir / "evidence/2026/11/0001-ab.jpg", (NEW_YEAR_2026, NEW_YEAR_2026))

    summary = await _backup(database_url, data_dir, tmp_path / "b.qlbak")

    files = {info.name: (content, info.mtime) for info, content in _members(tmp_path / "b.qlbak")
             if info.name.startswith("files/")}
    assert {name: content for name, (content, _mtime) in files.items()} == {
        f"files/{relative}": content for relative, content in kept.items()}
    assert files["files/evidence/2026/11/0001-ab.jpg"][1] == NEW_YEAR_2026
    assert summary.file_count == 4


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_empty_database_without_a_data_directory_gives_the_header_and_the_manifest_alone(
        database_url: str, tmp_path: Path) -> None:
    summary = await _backup(database_url, tmp_path / "no-such-data-dir", tmp_path / "backups" / "b.qlbak")
    names = [info.name for info, _ in _members(tmp_path / "backups" / "b.qlbak")]
    assert names == ["format.json", "manifest.json"]  # an empty database: no part, no file, no checksums
    assert summary.file_count == 0 and set(summary.row_counts.values()) == {0}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_backup_that_cannot_read_the_database_leaves_no_archive_and_keeps_the_previous_one(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if backend == "sqlite":
        missing = tmp_path / "no-such-dir" / "qinglian.db"
        url, cause = f"sqlite+aiosqlite:///{missing}", f"there is no SQLite database at {missing}"
    else:
        admin = request.getfixturevalue("postgres_server")
        url = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/qinglian_no_such_db"
        cause = 'database "qinglian_no_such_db" does not exist'
    previous = tmp_path / "backups" / "nightly.qlbak"
    previous.parent.mkdir()
    previous.write_bytes(b"last night's backup")

    with pytest.raises(BackupError) as refused:
        create_backup(url, tmp_path / "data", previous)

    assert str(refused.value) == f"cannot read the database: {cause}"
    assert previous.read_bytes() == b"last night's backup"
    assert [path.name for path in previous.parent.iterdir()] == ["nightly.qlbak"]  # no temporary file left


async def test_a_new_backup_replaces_the_previous_file_whole(database_url: str, sessionmaker: Any,
                                                              tmp_path: Path) -> None:
    await _fill(sessionmaker, tmp_path / "data")
    previous = tmp_path / "backups" / "nightly.qlbak"
    previous.parent.mkdir()
    previous.write_bytes(b"last night's backup")

    await _backup(database_url, tmp_path / "data", previous)

    assert json.loads(_members(previous)[-1][1])["row_counts"]["cases"] == 2
    assert [path.name for path in previous.parent.iterdir()] == ["nightly.qlbak"]


def test_backing_up_a_sqlite_file_that_does_not_exist_is_refused_and_creates_no_database(tmp_path: Path) -> None:
    typo = tmp_path / "qinglain.db"
    with pytest.raises(BackupError) as refused:
        create_backup(f"sqlite+aiosqlite:///{typo}", tmp_path / "data", tmp_path / "b.qlbak")
    assert str(refused.value) == f"cannot read the database: there is no SQLite database at {typo}"
    assert not typo.exists() and not (tmp_path / "b.qlbak").exists()
