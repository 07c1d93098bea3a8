"""Key status and rotation (storage/keys.py), what `qinglian keys status | rotate` report and do: which columns are
encrypted, how many values of each are under each key (plaintext and empty values apart), rotation's progress and
its refusal that leaves the batch as it was, on SQLite and the PostgreSQL on 127.0.0.1; the evidence and model
files counted by key and re-encrypted one at a time.

(A full rotation, interrupted and run again, and its refusal of unknown keys and tampered values:
test_encryption.py; the commands' output: tests/bot/test_keys.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from storage.crypto import DataKey, DecryptionError, KeyRing, parse_key
from storage.db import Database
from storage.evidence_files import read_decrypted, write_encrypted
from storage.keys import (
    PLAINTEXT,
    encrypted_columns,
    evidence_status,
    file_status,
    key_status,
    rotate,
    rotate_evidence,
    rotate_files,
)
from storage.models import Case
from tests.conftest import TEST_PSEUDONYM_KEY, make_test_keyring
from tests.factories import file_case

OLD = DataKey(bytes(range(32)), "QINGLIAN_ENCRYPTION_OLD_KEYS")
NEW = DataKey(bytes(range(100, 132)), "QINGLIAN_ENCRYPTION_KEY")
PHOTO = b"\xff\xd8\xff\xe0" + b"photo of the receipt " * 5000  # more than one chunk


def _ring(current: DataKey, *older: DataKey) -> KeyRing:
    return KeyRing(current, older, pseudonym_key=parse_key(TEST_PSEUDONYM_KEY))


def _content(ring: KeyRing, path: Path, purpose: str) -> bytes:
    return b"".join(read_decrypted(ring, path, purpose=purpose))


# --- the encrypted columns ----------------------------------------------------------------------------


def test_every_column_holding_what_a_reporter_gave_is_listed_under_its_own_purpose() -> None:
    columns = {column.label: column for column in encrypted_columns()}
    assert {"cases.reporter_ref", "cases.place", "cases.occurred", "cases.description", "cases.reporter_name",
            "cases.reporter_phone", "conversations.user_ref", "conversations.draft", "trace_events.body",
            "outbox.recipient", "outbox.payload", "attachments.original_name", "extension_requests.reason",
            "internal_notes.body", "audit_log.detail"} <= set(columns)
    # the column is the associated data of its values: a value moved to another column does not decrypt
    assert all(column.purpose == label for label, column in columns.items())
    # only the outbox's recipient, compared in SQL, is deterministic
    assert [label for label, column in columns.items() if column.deterministic] == ["outbox.recipient"]
    # keyed hashes and plain columns are not encrypted values: nothing to rotate there
    assert not {"cases.reporter_key", "conversations.user_key", "processed_updates.update_key", "cases.queue",
                "cases.case_number"} & set(columns)


# --- status -------------------------------------------------------------------------------------------


async def test_status_counts_each_columns_values_by_key_with_plaintext_apart_and_nulls_left_out(
        database: Database, sessionmaker: Any) -> None:
    current = make_test_keyring().current.key_id
    async with sessionmaker.begin() as session:  # under the test key: anonymous, no name or phone
        first, _ = await file_case(session, reporter_ref="1", place="岳麓区政务服务中心")
        second, _ = await file_case(session, reporter_ref="2", place="开福区某街道")
    rotated = Database.connect(database.url, _ring(NEW, make_test_keyring().current))
    try:
        async with rotated.sessionmaker.begin() as session:
            await file_case(session, reporter_ref="3", anonymous=False, reporter_name="欧阳明远",
                            reporter_phone="13912345678")
    finally:
        await rotated.dispose()
    async with sessionmaker.begin() as session:  # a value from before encryption, and one not in the format
        await session.execute(text("UPDATE cases SET place = '岳麓区' WHERE id = :id"), {"id": first.id})
        await session.execute(text("UPDATE cases SET occurred = 'g1.short' WHERE id = :id"), {"id": second.id})

    status = await key_status(database.engine)
    assert set(status) == {column.label for column in encrypted_columns()}
    assert status["cases.description"] == {current: 2, NEW.key_id: 1}
    assert status["cases.reporter_name"] == status["cases.reporter_phone"] == {NEW.key_id: 1}
    assert status["cases.place"] == {PLAINTEXT: 1, current: 1, NEW.key_id: 1}
    assert status["cases.occurred"] == {PLAINTEXT: 1, current: 1, NEW.key_id: 1}
    assert status["internal_notes.body"] == {} and status["extension_requests.reason"] == {}
    assert PLAINTEXT == "plaintext"


# --- rotation -----------------------------------------------------------------------------------------


async def test_rotation_reports_its_progress_per_table_and_leaves_values_under_the_target_as_they_are(
        database: Database, sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for n in range(3):
            await file_case(session, reporter_ref=f"r{n}", description=f"窗口工作人员擅离岗位 #{n}")
    already = Database.connect(database.url, _ring(NEW))
    try:
        async with already.sessionmaker.begin() as session:
            moved_before, _ = await file_case(session, reporter_ref="r3", description="窗口工作人员擅离岗位 #3")
    finally:
        await already.dispose()
    query = text("SELECT reporter_ref, place, occurred, description, reporter_name FROM cases WHERE id = :id")
    async with sessionmaker() as session:
        untouched = (await session.execute(query, {"id": moved_before.id})).one()

    started: dict[str, int] = {}
    batches: dict[str, list[int]] = {}
    # the ring that reads the old values; the target (generated for an offline rotation) is not in it yet
    changed = await rotate(database.engine, make_test_keyring(), NEW, batch_size=2,
                           on_start=lambda table, todo: started.__setitem__(table, todo),
                           on_batch=lambda table, done: batches.setdefault(table, []).append(done))
    assert changed["cases"] == 3 and started["cases"] == 3 and batches["cases"] == [2, 1]
    assert set(started) == set(changed) == {column.table.name for column in encrypted_columns()}
    assert started["internal_notes"] == changed["internal_notes"] == 0 and "internal_notes" not in batches
    assert {table: sum(done) for table, done in batches.items()} == {table: n for table, n in changed.items() if n}

    status = await key_status(database.engine)
    assert status["cases.description"] == {NEW.key_id: 4}
    assert status["cases.reporter_name"] == {}  # anonymous reports: still no name, not an encrypted empty one
    async with sessionmaker() as session:
        assert (await session.execute(query, {"id": moved_before.id})).one() == untouched
    only_new = Database.connect(database.url, _ring(NEW))
    try:
        async with only_new.sessionmaker() as session:
            descriptions = (await session.execute(select(Case.description).order_by(Case.id))).scalars().all()
    finally:
        await only_new.dispose()
    assert descriptions == [f"窗口工作人员擅离岗位 #{n}" for n in range(4)]


async def test_rotation_stops_at_a_value_it_cannot_read_and_leaves_that_whole_batch_as_it_was(
        database: Database, sessionmaker: Any) -> None:
    current = make_test_keyring().current.key_id
    async with sessionmaker.begin() as session:
        cases = [(await file_case(session, reporter_ref=f"r{n}"))[0] for n in range(3)]
        await session.execute(text("UPDATE cases SET place = '岳麓区' WHERE id = :id"), {"id": cases[1].id})
    with pytest.raises(DecryptionError) as refused:
        await rotate(database.engine, make_test_keyring(), NEW, batch_size=10)
    assert str(refused.value) == "a value of cases.place is not encrypted or not in a known format"
    status = await key_status(database.engine)
    assert status["cases.description"] == {current: 3}  # the first case, before the bad one, was not moved either
    assert status["cases.place"] == {current: 2, PLAINTEXT: 1}


# --- evidence and model files -------------------------------------------------------------------------


def _evidence(tmp_path: Path) -> Path:
    """Two files under OLD, one under NEW, one from before encryption and a temporary file of a write in progress."""
    evidence = tmp_path / "evidence"
    old_ring, new_ring = _ring(OLD), _ring(NEW)
    write_encrypted(old_ring, evidence / "2026/11/a.jpg", PHOTO, purpose="evidence:2026/11/a.jpg")
    write_encrypted(old_ring, evidence / "2026/12/b.pdf", b"%PDF-1.7 receipt", purpose="evidence:2026/12/b.pdf")
    write_encrypted(new_ring, evidence / "2027/01/c.png", b"\x89PNG new", purpose="evidence:2027/01/c.png")
    (evidence / "2026/11/legacy.txt").write_bytes(b"stored before files were encrypted")
    (evidence / "2026/11/.d.jpg.1a2b3c4d.part").write_bytes(b"half written")
    return evidence


def test_evidence_status_counts_the_stored_files_by_key_and_skips_temporary_ones(tmp_path: Path) -> None:
    evidence = _evidence(tmp_path)
    assert evidence_status(evidence) == {OLD.key_id: 2, NEW.key_id: 1, PLAINTEXT: 1}
    assert evidence_status(tmp_path / "no-evidence-yet") == {}
    (tmp_path / "empty").mkdir()
    assert evidence_status(tmp_path / "empty") == {}
    # the files handed over are what is counted (the classifier's model files)
    assert file_status([evidence / "2026/11/.d.jpg.1a2b3c4d.part", evidence / "2027/01/c.png"]) == {
        PLAINTEXT: 1, NEW.key_id: 1}
    assert file_status([]) == {}


def test_evidence_rotation_rewrites_only_files_not_under_the_target_and_can_run_again(tmp_path: Path) -> None:
    evidence = _evidence(tmp_path)
    temporary = (evidence / "2026/11/.d.jpg.1a2b3c4d.part").read_bytes()
    already = (evidence / "2027/01/c.png").read_bytes()
    seen: list[int] = []
    assert rotate_evidence(evidence, _ring(OLD), NEW, on_file=lambda: seen.append(1)) == 3
    assert len(seen) == 4  # every stored file, the one under the target too
    assert evidence_status(evidence) == {NEW.key_id: 4}
    assert (evidence / "2027/01/c.png").read_bytes() == already
    assert (evidence / "2026/11/.d.jpg.1a2b3c4d.part").read_bytes() == temporary
    new_only = _ring(NEW)
    assert _content(new_only, evidence / "2026/11/a.jpg", "evidence:2026/11/a.jpg") == PHOTO
    assert _content(new_only, evidence / "2026/12/b.pdf", "evidence:2026/12/b.pdf") == b"%PDF-1.7 receipt"
    assert _content(new_only, evidence / "2026/11/legacy.txt", "evidence:2026/11/legacy.txt") == \
        b"stored before files were encrypted"
    assert rotate_evidence(evidence, new_only, NEW) == 0


def test_a_moved_file_or_one_under_a_key_the_ring_lacks_stops_rotation_and_stays_as_it_was(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    write_encrypted(_ring(OLD), evidence / "2026/11/a.jpg", PHOTO, purpose="evidence:2026/11/a.jpg")
    (evidence / "2026/11/a.jpg").rename(evidence / "2026/11/z.jpg")
    moved = (evidence / "2026/11/z.jpg").read_bytes()
    with pytest.raises(DecryptionError) as refused:
        rotate_evidence(evidence, _ring(OLD), NEW)
    assert str(refused.value) == "evidence file z.jpg failed authentication: altered, cut short or moved"
    assert (evidence / "2026/11/z.jpg").read_bytes() == moved
    assert sorted(path.name for path in (evidence / "2026/11").iterdir()) == ["z.jpg"]  # no half-written file left

    with pytest.raises(DecryptionError) as unknown:
        rotate_evidence(evidence, _ring(NEW), NEW)
    assert str(unknown.value) == (f"evidence file z.jpg is encrypted under key {OLD.key_id}, "
                                  "which is not in the key ring")
    assert (evidence / "2026/11/z.jpg").read_bytes() == moved


def test_model_files_are_rotated_under_the_purpose_each_one_is_given(tmp_path: Path) -> None:
    model = tmp_path / "models/v3/model.joblib"
    write_encrypted(_ring(OLD), model, b"pickled pipeline", purpose="model:v3/model.joblib")
    metadata = tmp_path / "models/v3/metadata.json"
    metadata.write_bytes(b'{"version": "v3"}')  # saved before model files were encrypted
    files = [(model, "model:v3/model.joblib"), (metadata, "model:v3/metadata.json")]
    counted: list[int] = []
    assert rotate_files(files, _ring(OLD), NEW, on_file=lambda: counted.append(1)) == 2 and len(counted) == 2
    assert file_status([model, metadata]) == {NEW.key_id: 2}
    assert _content(_ring(NEW), model, "model:v3/model.joblib") == b"pickled pipeline"
    assert _content(_ring(NEW), metadata, "model:v3/metadata.json") == b'{"version": "v3"}'
    with pytest.raises(DecryptionError, match="failed authentication"):  # under another file's purpose
        rotate_files([(model, "model:v4/model.joblib")], _ring(NEW), OLD)
    assert rotate_files(files, _ring(NEW), NEW) == 0
