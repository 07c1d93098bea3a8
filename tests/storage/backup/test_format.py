"""The archive's layout and encoding as `storage.backup.format` defines them: member names of both format
versions, the file names a restore may write (nothing outside the data directory's evidence and models),
values stored by column type rather than by backend (datetimes with their offset, bytes as base64, JSON as
JSON, encrypted columns as their stored ciphertext), members read in bounded chunks while they are hashed,
and the operator's one-line error."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import PurePosixPath

import pytest
from sqlalchemy import JSON, Date, DateTime, Integer, LargeBinary, String, Text
from sqlalchemy.exc import OperationalError

from storage.backup import format as archive_format
from storage.backup.format import (
    BackupError,
    HashingReader,
    column_kind,
    decode_value,
    encode_value,
    member_chunks,
    member_lines,
    part_name,
    reason,
    safe_relative,
    sha256_hex,
    skipped_table,
    stored_type,
    table_of,
)
from storage.models import Base

CHINA = timezone(timedelta(hours=8))


def test_the_constants_name_the_layout_an_archive_is_read_by() -> None:
    assert (archive_format.FORMAT, archive_format.FORMAT_VERSION) == ("qinglian-backup", 2)
    assert archive_format.READABLE_VERSIONS == (1, 2)
    assert (archive_format.FORMAT_MEMBER, archive_format.MANIFEST) == ("format.json", "manifest.json")
    assert (archive_format.TABLES_PREFIX, archive_format.FILES_PREFIX, archive_format.CHECKSUMS_PREFIX) == (
        "tables/", "files/", "checksums/")
    assert archive_format.FILE_DIRS == ("evidence", "models")
    assert archive_format.COPY_CHUNK == 256 * 1024


def test_a_tables_part_is_named_by_its_table_and_a_six_digit_number() -> None:
    assert part_name("cases", 0) == "tables/cases/000000.jsonl"
    assert part_name("trace_events", 41) == "tables/trace_events/000041.jsonl"
    assert part_name("cases", 1_234_567) == "tables/cases/1234567.jsonl"  # wider, never cut


@pytest.mark.parametrize(("name", "version", "table"), [
    ("tables/cases/000000.jsonl", 2, "cases"),
    ("tables/trace_events/000012.jsonl", 2, "trace_events"),
    ("tables/cases.jsonl", 2, None),  # the format 1 name is no table member of format 2
    ("tables/cases/first.jsonl", 2, None),
    ("tables/cases/000000/extra.jsonl", 2, None),
    ("tables/cases/000000.json", 2, None),
    ("tables/cases.jsonl", 1, "cases"),
    ("tables/cases/000000.jsonl", 1, None),  # the format 2 name is no table member of format 1
    ("files/evidence/a.jpg", 2, None),
    ("checksums/000000.jsonl", 2, None),
    ("manifest.json", 1, None),
])
def test_table_of_names_the_table_a_member_holds_rows_of_in_each_format_version(
        name: str, version: int, table: str | None) -> None:
    assert table_of(name, version) == table


def test_evidence_and_model_files_have_safe_relative_names() -> None:
    assert safe_relative("evidence/2026/11/0001-ab.jpg") == PurePosixPath("evidence/2026/11/0001-ab.jpg")
    assert safe_relative("models/v1/model.joblib") == PurePosixPath("models/v1/model.joblib")
    assert safe_relative("evidence/.hidden.jpg") == PurePosixPath("evidence/.hidden.jpg")


@pytest.mark.parametrize("name", [
    "/etc/passwd",
    "../secret.key",
    "evidence/../../etc/cron.d/job",
    "evidence/../secret.key",
    "models/../../qinglian.db",
    "secret.key",  # the data directory's key is never in a backup
    "qinglian.db",
    "logs/service.log",
    "",
])
def test_a_file_name_outside_the_evidence_and_models_directories_is_refused(name: str) -> None:
    with pytest.raises(BackupError) as refused:
        safe_relative(name)
    assert str(refused.value) == f"the backup holds an unsafe file name {name!r}"


# --- values ------------------------------------------------------------------------------------------


def test_datetimes_are_written_as_iso_8601_with_their_offset_and_naive_ones_as_utc() -> None:
    assert encode_value(datetime(2026, 3, 1, 8, 0), "datetime") == "2026-03-01T08:00:00+00:00"
    assert encode_value(datetime(2026, 3, 1, 8, 0, 0, 125000, tzinfo=UTC), "datetime") == \
        "2026-03-01T08:00:00.125000+00:00"
    assert encode_value(datetime(2026, 3, 1, 16, 30, tzinfo=CHINA), "datetime") == "2026-03-01T16:30:00+08:00"
    assert encode_value(date(2026, 3, 1), "date") == "2026-03-01"


def test_bytes_are_written_as_base64_whatever_buffer_holds_them() -> None:
    for value in (b"\x00\xffab", bytearray(b"\x00\xffab"), memoryview(b"\x00\xffab")):
        assert encode_value(value, "bytes") == "AP9hYg=="
    assert encode_value(b"", "bytes") == ""


def test_json_and_plain_values_are_written_as_they_are() -> None:
    draft = {"place": "天心区", "anonymous": True, "nested": {"n": 1.5}, "attachments": []}
    assert encode_value(draft, "json") is draft
    assert encode_value([["bribery", 0.8125]], "json") == [["bribery", 0.8125]]
    for value in (42, 0.8125, "张三", True, False, "g1.1b1189f5.ciphertext"):
        assert encode_value(value, "plain") == value
    for kind in ("datetime", "date", "bytes", "json", "plain"):
        assert encode_value(None, kind) is None


def test_stored_values_are_read_back_by_column_type() -> None:
    read = decode_value("2026-03-01T16:30:00+08:00", "datetime")
    assert read == datetime(2026, 3, 1, 8, 30, tzinfo=UTC) and read.utcoffset() == timedelta(hours=8)
    assert decode_value("2026-03-01", "date") == date(2026, 3, 1)
    assert decode_value("AP9hYg==", "bytes") == b"\x00\xffab"
    assert decode_value({"n": 1.5}, "json") == {"n": 1.5}
    assert decode_value("2026-03-01", "plain") == "2026-03-01"  # a plain column keeps its text
    assert decode_value(7, "plain") == 7
    for kind in ("datetime", "date", "bytes", "json", "plain"):
        assert decode_value(None, kind) is None


def test_a_naive_datetime_comes_back_as_the_same_instant_in_utc() -> None:
    written = encode_value(datetime(2026, 11, 30, 23, 59, 59), "datetime")
    assert decode_value(written, "datetime") == datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)


def test_column_kinds_follow_the_sql_type_through_type_decorators() -> None:
    cases = Base.metadata.tables["cases"]
    signatures = Base.metadata.tables["case_signatures"]
    assert column_kind(cases.c.created_at.type) == "datetime"  # UTCDateTime, a TypeDecorator over DateTime
    assert column_kind(cases.c.label_top.type) == "json"
    assert column_kind(signatures.c.minhash.type) == "bytes"
    assert column_kind(cases.c.id.type) == "plain"
    assert column_kind(cases.c.anonymous.type) == "plain"
    assert column_kind(cases.c.description.type) == "plain"  # encrypted text: a string as stored
    assert [column_kind(type_) for type_ in (DateTime(), Date(), LargeBinary(), JSON(), Integer(), Text())] == [
        "datetime", "date", "bytes", "json", "plain", "plain"]


def test_encrypted_columns_are_copied_as_their_stored_ciphertext_and_pseudonyms() -> None:
    cases = Base.metadata.tables["cases"]
    draft = Base.metadata.tables["conversations"].c.draft  # EncryptedJSON
    update_key = Base.metadata.tables["processed_updates"].c.update_key  # PseudonymisedKey
    assert isinstance(stored_type(cases.c.description, "0047"), Text)
    assert isinstance(stored_type(draft, "0047"), Text)
    assert isinstance(stored_type(draft, None), Text)
    pseudonym = stored_type(update_key, "0047")
    assert isinstance(pseudonym, String) and pseudonym.length == 128
    assert stored_type(cases.c.created_at, "0047") is cases.c.created_at.type  # other columns keep their type
    assert stored_type(cases.c.label_top, "0047") is cases.c.label_top.type


def test_a_schema_from_before_encryption_keeps_the_draft_as_json_and_leaves_out_wrong_code_records() -> None:
    draft = Base.metadata.tables["conversations"].c.draft
    for revision in ("0001", "0002"):
        assert column_kind(stored_type(draft, revision)) == "json"
        assert skipped_table("status_guesses", revision)
        assert not skipped_table("cases", revision)
    assert column_kind(stored_type(draft, "0003")) == "plain"
    assert not skipped_table("status_guesses", "0003")
    assert not skipped_table("status_guesses", None)


# --- reading members ---------------------------------------------------------------------------------


def test_a_hashing_reader_counts_and_hashes_what_passes_through_it() -> None:
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    content = "第1号反映：窗口无人\n".encode() * 50
    reader = HashingReader(io.BytesIO(content))
    assert reader.read(3) == content[:3]
    assert (reader.size, reader.digest.hexdigest()) == (3, hashlib.sha256(content[:3]).hexdigest())
    reader.drain()
    assert (reader.size, reader.digest.hexdigest()) == (len(content), hashlib.sha256(content).hexdigest())
    assert reader.read() == b""


@pytest.mark.parametrize(("content", "lines"), [
    (b'{"id": 1}\n{"id": 2}\n', [b'{"id": 1}', b'{"id": 2}']),
    (b'{"id": 1}\n\n{"id": 2}', [b'{"id": 1}', b"", b'{"id": 2}']),  # the last line needs no newline
    (b"", []),
    (b"\n", [b""]),
])
def test_a_member_is_split_into_its_lines(content: bytes, lines: list[bytes]) -> None:
    assert list(member_lines(HashingReader(io.BytesIO(content)))) == lines


def test_a_line_longer_than_a_chunk_comes_back_whole() -> None:
    long_line = '{"description": "' + "长" * 120_000 + '"}'  # 360 kB of UTF-8: more than one chunk
    content = (long_line + "\n" + '{"id": 2}' + "\n").encode()
    reader = HashingReader(io.BytesIO(content))
    assert list(member_lines(reader)) == [long_line.encode(), b'{"id": 2}']
    assert reader.size == len(content)


def test_a_file_is_copied_in_chunks_of_at_most_256_kib() -> None:
    content = bytes(range(256)) * 2400  # 614,400 bytes
    reader = HashingReader(io.BytesIO(content))
    chunks = list(member_chunks(reader))
    assert [len(chunk) for chunk in chunks] == [262_144, 262_144, 90_112]
    assert b"".join(chunks) == content and reader.digest.hexdigest() == hashlib.sha256(content).hexdigest()


def test_the_operators_error_is_the_first_line_of_the_underlying_cause() -> None:
    assert reason(ValueError("line one\nline two")) == "line one"
    assert reason(ValueError("   padded   ")) == "padded"
    assert reason(ValueError("")) == "ValueError"
    wrapped = OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))
    assert reason(wrapped) == "database is locked"  # the driver's words, not SQLAlchemy's statement dump
    assert issubclass(BackupError, Exception)
