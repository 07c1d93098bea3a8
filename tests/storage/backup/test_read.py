"""Reading and verifying an archive (`storage.backup.read`) on archives built by hand: a well-formed archive of
format 2 (checksums in one or several members) or of format 1 is read with its manifest; every kind of damage
or foreign content is refused with a one-line message naming what is wrong — an unreadable stream, a foreign or
newer header, entries that are not files, members out of place or unlisted, names that would write outside the
data directory, checksums, member, row and file counts that disagree with the manifest. Reading writes nothing."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from storage.backup.format import BackupError
from storage.backup.read import Archive, Consumer, read_archive, walk

Members = list[tuple[str, bytes]]

HEADER = ("format.json", b'{"format": "qinglian-backup", "format_version": 2}')
DATA: Members = [
    ("tables/cases/000000.jsonl", b'{"id": 1, "case_number": "QL-2026-000001"}\n'
                                  b'{"id": 2, "case_number": "QL-2026-000002"}\n'),
    ("tables/cases/000001.jsonl", b'{"id": 3, "case_number": "QL-2026-000003"}\n'),
    ("tables/trace_events/000000.jsonl", b'{"id": 1, "case_id": 1, "kind": "received"}\n'),
    ("files/evidence/2026/11/0001-ab.jpg", b"QLE1" + bytes(range(256)) * 4),
    ("files/models/registry.json", b'{"promoted": "v1"}'),
]
ROW_COUNTS = {"cases": 3, "trace_events": 1, "staff_users": 0}


def _checksums(members: Members) -> bytes:
    return b"".join(json.dumps({"name": name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()},
                               sort_keys=True).encode() + b"\n" for name, content in members)


def _format_2(data: Members = DATA, *, batch: int = 100, **manifest_changes: Any) -> Members:
    """Header, `data`, a checksums member after every `batch` members and at the end, and the manifest."""
    members: Members = [HEADER]
    checksum_members: dict[str, str] = {}
    for start in range(0, len(data), batch):
        chunk = data[start:start + batch]
        listing = _checksums(chunk)
        name = f"checksums/{len(checksum_members):06d}.jsonl"
        members += [*chunk, (name, listing)]
        checksum_members[name] = hashlib.sha256(listing).hexdigest()
    manifest = {
        "format": "qinglian-backup", "format_version": 2, "created_at": "2026-11-30T02:00:00+00:00",
        "schema_revision": "0047", "source_dialect": "sqlite", "row_counts": ROW_COUNTS,
        "file_count": len([name for name, _ in data if name.startswith("files/")]),
        "member_count": len(data), "checksum_members": checksum_members, **manifest_changes,
    }
    return [*members, ("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())]


def _format_1(data: Members | None = None, listed: Members | None = None) -> Members:
    """As the previous release wrote it: one member per table, every member's sha256 in the manifest."""
    if data is None:
        data = [("tables/cases.jsonl", DATA[0][1] + DATA[1][1]), ("tables/trace_events.jsonl", DATA[2][1]), *DATA[3:]]
    manifest = {
        "format": "qinglian-backup", "format_version": 1, "created_at": "2025-06-01T02:00:00+00:00",
        "schema_revision": "0010", "source_dialect": "postgresql", "row_counts": ROW_COUNTS, "file_count": 2,
        "members": {name: hashlib.sha256(content).hexdigest() for name, content in (listed or data)},
    }
    return [*data, ("manifest.json", json.dumps(manifest).encode())]


def _write(path: Path, members: Members, extra: Callable[[tarfile.TarFile], None] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        if extra is not None:
            extra(archive)
    return path


def _manifest(members: Members) -> dict[str, Any]:
    return dict(json.loads(dict(members)["manifest.json"]))


def _replace(members: Members, name: str, content: bytes) -> Members:
    assert name in dict(members)
    return [(member, content if member == name else old) for member, old in members]


# --- what is read ------------------------------------------------------------------------------------


def test_a_well_formed_archive_is_read_with_its_manifest_and_nothing_is_written(tmp_path: Path) -> None:
    members = _format_2()
    path = _write(tmp_path / "nightly.qlbak", members)
    before = path.read_bytes()

    archive = read_archive(path)

    assert archive == Archive(path, _manifest(members), 2)
    assert archive.manifest["row_counts"] == {"cases": 3, "trace_events": 1, "staff_users": 0}
    assert [entry.name for entry in tmp_path.iterdir()] == ["nightly.qlbak"] and path.read_bytes() == before
    assert read_archive(str(path)).version == 2  # type: ignore[arg-type]  # a path given as text


def test_checksums_may_come_in_several_members(tmp_path: Path) -> None:
    members = _format_2(batch=2)
    assert [name for name, _ in members if name.startswith("checksums/")] == [
        "checksums/000000.jsonl", "checksums/000001.jsonl", "checksums/000002.jsonl"]
    assert read_archive(_write(tmp_path / "b.qlbak", members)).version == 2


def test_blank_lines_of_a_part_are_not_rows(tmp_path: Path) -> None:
    data = _replace(DATA, "tables/cases/000001.jsonl", b'\n{"id": 3, "case_number": "QL-2026-000003"}\n\n  \n')
    assert read_archive(_write(tmp_path / "b.qlbak", _format_2(data))).manifest["row_counts"]["cases"] == 3


def test_an_archive_of_format_1_is_still_read(tmp_path: Path) -> None:
    members = _format_1()
    archive = read_archive(_write(tmp_path / "old.tar.gz", members))
    assert (archive.version, archive.manifest) == (1, _manifest(members))


def test_walk_hands_each_parts_lines_and_each_files_bytes_to_its_consumer_in_archive_order(tmp_path: Path) -> None:
    class Recorder(Consumer):
        def __init__(self) -> None:
            self.seen: list[tuple[str, Any]] = []

        def table_part(self, table_name: str, lines: Iterator[bytes]) -> int:
            rows = [json.loads(line) for line in lines]
            self.seen.append((table_name, [row["id"] for row in rows]))
            return len(rows)

        def data_file(self, relative: PurePosixPath, chunks: Iterator[bytes]) -> None:
            self.seen.append((str(relative), next(chunks)[:4]))  # reads only the start: the rest is still checked

    recorder = Recorder()
    archive = walk(_write(tmp_path / "b.qlbak", _format_2()), recorder)

    assert archive.version == 2
    assert recorder.seen == [("cases", [1, 2]), ("cases", [3]), ("trace_events", [1]),
                             ("evidence/2026/11/0001-ab.jpg", b"QLE1"), ("models/registry.json", b'{"pr')]


def test_the_rows_a_consumer_counts_are_checked_against_the_manifest(tmp_path: Path) -> None:
    class SkipsOne(Consumer):
        def table_part(self, table_name: str, lines: Iterator[bytes]) -> int:
            return super().table_part(table_name, lines) - 1

    with pytest.raises(BackupError, match=r"^table cases has 1 rows but the manifest says 3$"):
        walk(_write(tmp_path / "b.qlbak", _format_2()), SkipsOne())


# --- what is refused ---------------------------------------------------------------------------------


def _directory(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("files/evidence/2027")
    info.type = tarfile.DIRTYPE
    archive.addfile(info)


def _symlink(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("files/evidence/link.jpg")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive.addfile(info)


def _listed_without(members: Members, name: str) -> Members:
    """`members` without `name`, in the data and in the checksums listing (only the manifest still counts it)."""
    data = [(member, content) for member, content in members
            if member.startswith(("tables/", "files/")) and member != name]
    manifest = _manifest(members)
    return _format_2(data, member_count=manifest["member_count"])


BROKEN: dict[str, tuple[Callable[[], Members], str]] = {
    "the header of another program": (lambda: [("format.json", b'{"format": "pg_dump"}'), *_format_2()[1:]],
                                      "{path} is not a Qinglian backup"),
    "a header that is not JSON": (lambda: [("format.json", b"qinglian-backup v2"), *_format_2()[1:]],
                                  "{path} is not a Qinglian backup: its format.json is not valid JSON"),
    "a header from a newer release": (
        lambda: [("format.json", b'{"format": "qinglian-backup", "format_version": 3}'), *_format_2()[1:]],
        "backup format version 3 is not supported (this version reads 1 and 2); restore it with a newer release"),
    "a header that claims format 1, which had none": (
        lambda: [("format.json", b'{"format": "qinglian-backup", "format_version": 1}'), *_format_2()[1:]],
        "{path} says format version 1 in its format.json, which that version does not have: the backup is corrupt"),
    "the header after another member": (lambda: [DATA[3], *_format_2()],  # read as format 1 from the first member
                                        "the backup holds an unexpected member 'format.json'"),
    "an unexpected member": (lambda: [*_format_2()[:3], ("notes.txt", b"hello"), *_format_2()[3:]],
                             "the backup holds an unexpected member 'notes.txt'"),
    "a table this version does not know": (
        lambda: [HEADER, ("tables/secrets/000000.jsonl", b'{"id": 1}\n'), *_format_2()[1:]],
        "the backup holds table secrets, which this version does not know"),
    "a file outside the data directory": (lambda: [HEADER, ("files/../secret.key", b"k" * 32), *_format_2()[1:]],
                                          "the backup holds an unsafe file name '../secret.key'"),
    "a file of another directory": (lambda: [HEADER, ("files/logs/service.log", b"log"), *_format_2()[1:]],
                                    "the backup holds an unsafe file name 'logs/service.log'"),
    "a member after the manifest": (lambda: [*_format_2(), ("files/evidence/late.jpg", b"late")],
                                    "the backup holds 'files/evidence/late.jpg' after its manifest"),
    "no manifest at all": (lambda: _format_2()[:-1],
                           "{path} is incomplete (corrupt or truncated): it ends before its manifest.json"),
    "a manifest that is not JSON": (lambda: [*_format_2()[:-1], ("manifest.json", b"{'format': ")],
                                    "the manifest of {path} is not valid JSON"),
    "a manifest of another program": (lambda: [*_format_2()[:-1], ("manifest.json", b'{"format": "other"}')],
                                      "{path} is not a Qinglian backup"),
    "a manifest of format 1 in a format 2 layout": (
        lambda: _format_2(format_version=1),
        "the manifest of {path} says format version 1 but the archive is laid out as version 2: the backup is "
        "corrupt"),
    "a manifest of an unknown format version": (
        lambda: _format_2(format_version=9),
        "backup format version 9 is not supported (this version reads 1 and 2)"),
    "members in another order than their checksums": (
        lambda: [HEADER, DATA[1], DATA[0], *_format_2()[3:]],
        "the backup holds tables/cases/000001.jsonl where its checksums list tables/cases/000000.jsonl: "
        "the backup is corrupt"),
    "a model file altered": (
        lambda: _replace(_format_2(), "files/models/registry.json", b'{"promoted": "v9"}'),
        "checksum mismatch for files/models/registry.json: the backup is corrupt"),
    "the last member missing": (
        lambda: [member for member in _format_2() if member[0] != "files/models/registry.json"],
        "the backup's checksums and members disagree at files/models/registry.json: the backup is corrupt"),
    "a member no checksums member lists": (
        lambda: [*_format_2()[:-1], ("files/evidence/extra.jpg", b"x"), _format_2()[-1]],
        "the backup's checksums do not list files/evidence/extra.jpg: the backup is corrupt"),
    "a checksums member that is not JSON lines": (
        lambda: _replace(_format_2(), "checksums/000000.jsonl", b"sha256 of everything\n"),
        "checksums/000000.jsonl in the backup is not valid: the backup is corrupt"),
    "a checksums entry without its sha256": (
        lambda: _replace(_format_2(), "checksums/000000.jsonl", b'{"name": "tables/cases/000000.jsonl", "size": 1}\n'),
        "checksums/000000.jsonl in the backup is not valid: the backup is corrupt"),
    "a checksums member the manifest does not confirm": (
        lambda: _format_2(checksum_members={"checksums/000000.jsonl": "0" * 64}),
        "checksum mismatch for checksums/000000.jsonl: the backup is corrupt"),
    "a checksums member missing": (
        lambda: _format_2(checksum_members={"checksums/000000.jsonl": _manifest(_format_2())["checksum_members"][
            "checksums/000000.jsonl"], "checksums/000001.jsonl": "0" * 64}),
        "the backup's checksums members do not match its manifest: the backup is corrupt"),
    "a part missing with its checksum": (lambda: _listed_without(_format_2(), "tables/cases/000001.jsonl"),
                                         "the backup holds 4 members but its manifest says 5"),
    "a row missing": (lambda: _format_2(row_counts={**ROW_COUNTS, "cases": 4}),
                      "table cases has 3 rows but the manifest says 4"),
    "a table the manifest does not count": (lambda: _format_2(row_counts={"cases": 3}),
                                            "table trace_events has 1 rows but the manifest does not list it"),
    "a counted table this version does not know": (
        lambda: _format_2(row_counts={**ROW_COUNTS, "secrets": 0}),
        "the backup holds tables this version does not know: secrets"),
    "a file missing": (lambda: _format_2(file_count=3), "the backup holds 2 files but its manifest says 3"),
    "a format 1 member listed twice": (lambda: _format_1([*_format_1()[:-1], DATA[4]], _format_1()[:-1]),
                                       "the backup holds a member twice"),
    "a format 1 member missing": (
        lambda: _format_1([member for member in _format_1()[:-1] if member[0] != "files/models/registry.json"],
                          _format_1()[:-1]),
        "the backup's members do not match its manifest (missing ['files/models/registry.json'], unlisted [])"),
    "a format 1 member altered": (
        lambda: _format_1(_replace(_format_1()[:-1], "tables/cases.jsonl", DATA[0][1] + DATA[0][1]),
                          _format_1()[:-1]),
        "checksum mismatch for tables/cases.jsonl: the backup is corrupt"),
    "a format 2 part in a format 1 archive": (
        lambda: _format_1([DATA[0], *_format_1()[1:-1]]),
        "the backup holds an unexpected member 'tables/cases/000000.jsonl'"),
}


@pytest.mark.parametrize("what", list(BROKEN))
def test_a_damaged_or_foreign_archive_is_refused_with_a_message_naming_the_fault(what: str, tmp_path: Path) -> None:
    build, message = BROKEN[what]
    path = _write(tmp_path / "broken.qlbak", build())
    with pytest.raises(BackupError) as refused:
        read_archive(path)
    assert str(refused.value) == message.format(path=path)


@pytest.mark.parametrize(("what", "extra", "name"), [
    ("a directory", _directory, "files/evidence/2027"),
    ("a symbolic link", _symlink, "files/evidence/link.jpg"),
])
def test_an_entry_that_is_not_a_regular_file_is_refused(what: str, extra: Callable[[tarfile.TarFile], None],
                                                        name: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "b.qlbak", _format_2()[:3], extra)
    with pytest.raises(BackupError, match=f"^the backup holds an entry that is not a file: '{name}'$"):
        read_archive(path)


@pytest.mark.parametrize(("what", "content", "message"), [
    ("an empty file", b"", "{path} is not a readable backup (corrupt or truncated): empty file"),
    ("not an archive", b"qinglian backup of 30 November", "{path} is not a readable backup (corrupt or truncated): "),
    ("a gzip stream that is no tar", gzip.compress(b"not a tar archive" * 40),
     "{path} is not a readable backup (corrupt or truncated): "),
    ("an archive without members", gzip.compress(b"\0" * 1024),
     "{path} is not a readable backup (corrupt or truncated): it holds no member"),
])
def test_a_file_that_is_no_readable_archive_is_refused_as_corrupt_or_truncated(
        what: str, content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "b.qlbak"
    path.write_bytes(content)
    with pytest.raises(BackupError) as refused:
        read_archive(path)
    assert str(refused.value).startswith(message.format(path=path))
    assert "\n" not in str(refused.value)


def test_a_missing_file_or_a_directory_is_no_backup(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.qlbak", tmp_path):
        with pytest.raises(BackupError, match=f"^no backup file at {re.escape(str(path))}$"):
            read_archive(path)
