"""Reading an archive member by member and checking it against its checksums, row counts and manifest
(`read_archive`); a restore walks it again with a consumer that writes."""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from storage.backup.format import (
    CHECKSUMS_PREFIX,
    FILES_PREFIX,
    FORMAT,
    FORMAT_MEMBER,
    FORMAT_VERSION,
    MANIFEST,
    READABLE_VERSIONS,
    BackupError,
    HashingReader,
    member_chunks,
    member_lines,
    reason,
    safe_relative,
    sha256_hex,
    table_of,
)
from storage.models import Base


@dataclass
class Archive:
    """A verified archive: its manifest and format version (the rows and files stay in the file)."""

    path: Path
    manifest: dict[str, Any]
    version: int


class Consumer:
    """What a pass over the archive does with each member's content (the verifying pass: nothing)."""

    def table_part(self, table_name: str, lines: Iterator[bytes]) -> int:
        return sum(1 for line in lines if line.strip())

    def data_file(self, relative: PurePosixPath, chunks: Iterator[bytes]) -> None:
        for _chunk in chunks:
            pass


def _header(content: bytes, path: Path) -> int:
    try:
        header = json.loads(content)
    except ValueError:
        raise BackupError(f"{path} is not a Qinglian backup: its {FORMAT_MEMBER} is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{path} is not a Qinglian backup")
    version = header.get("format_version")
    if version in READABLE_VERSIONS and version != FORMAT_VERSION:  # format 1 had no such header
        raise BackupError(f"{path} says format version {version} in its {FORMAT_MEMBER}, which that version does "
                          "not have: the backup is corrupt")
    if version != FORMAT_VERSION:
        raise BackupError(f"backup format version {version!r} is not supported (this version reads "
                          f"{' and '.join(str(v) for v in READABLE_VERSIONS)}); restore it with a newer release")
    return int(version)


def walk(path: Path, consumer: Consumer) -> Archive:
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
                reader = HashingReader(extracted)
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
                    checksum_members[name] = sha256_hex(content)
                    continue
                table_name = table_of(name, version)
                if table_name is not None:
                    if table_name not in Base.metadata.tables:
                        raise BackupError(f"the backup holds table {table_name}, which this version does not know")
                    try:
                        row_counts[table_name] = (row_counts.get(table_name, 0)
                                                  + consumer.table_part(table_name, member_lines(reader)))
                    except (ValueError, UnicodeDecodeError):
                        raise BackupError(f"{name} in the backup is not valid JSON lines") from None
                elif name.startswith(FILES_PREFIX):
                    consumer.data_file(safe_relative(name[len(FILES_PREFIX):]), member_chunks(reader))
                    file_count += 1
                else:
                    raise BackupError(f"the backup holds an unexpected member {name!r}")
                reader.drain()
                computed.append((name, reader.size, reader.digest.hexdigest()))
                member_count += 1
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{path} is not a readable backup (corrupt or truncated): {reason(exc)}") from None
    except OSError as exc:
        raise BackupError(f"cannot read {path} (corrupt or truncated?): {reason(exc)}") from None
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
            said = "does not list it" if table_name not in counts else f"says {counts[table_name]}"
            raise BackupError(f"table {table_name} has {row_counts.get(table_name, 0)} rows but the manifest {said}")
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
    return walk(Path(path), Consumer())
