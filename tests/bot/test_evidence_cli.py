"""`qinglian evidence clean`: evidence an older version stored with its metadata and the name the resident's device
gave it, cleaned by the command run as an operator runs it, then downloaded by staff from the console; on SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select

from bot.app import create_app
from storage import actions, evidence_rows
from storage.db import Database
from storage.evidence_cleaning import clean_stored_evidence
from storage.evidence_files import purpose_of, write_encrypted
from storage.evidence_images import thumbnail_name
from storage.models import Attachment, AuditEntry, StaffRole
from tests.conftest import REPO, evidence_content, make_test_keyring, shared_models_dir, staff_password_hashing
from tests.console.conftest import PASSWORD, ConsoleHarness, make_settings
from tests.factories import (
    file_case,
    hidden_words_in,
    pdf_facts,
    pdf_with_metadata,
    photo_with_metadata,
    plain_photo,
)

DEVICE_NAMES = ("张伟_13912345678_证据.jpg", "张伟的收据 13912345678.pdf")


async def _store_as_before(database_url: str, evidence_dir: Path, files: list[tuple[str | None, str, bytes]],
                           *, cleaned: list[bool] | None = None) -> tuple[str, list[int]]:
    """A case with these (device's name, media type, content) files, stored as a version before cleaning did:
    encrypted as they came, with the name they were sent under. Returns its number and the attachments' ids."""
    keyring = make_test_keyring()
    database = Database.connect(database_url, keyring)
    try:
        async with database.sessionmaker.begin() as session:
            conversation = await actions.load_conversation(session, "telegram", "tg-before")
            ids = []
            for position, (name, media_type, content) in enumerate(files):
                stored_name = f"2026/10/{secrets.token_hex(16)}.{media_type.split('/')[1]}"
                write_encrypted(keyring, evidence_dir / stored_name, content, purpose=purpose_of(stored_name))
                attachment = await evidence_rows.add_draft_attachment(
                    session, conversation, stored_name=stored_name, original_name=name, media_type=media_type,
                    size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(),
                    cleaned=bool(cleaned and cleaned[position]))
                ids.append(attachment.id)
            case, _ = await file_case(session, reporter_ref="tg-before", attachment_ids=ids, queue="clean_hall")
            assert case.case_number is not None
            return case.case_number, ids
    finally:
        await database.dispose()


def _qinglian(data_dir: Path, database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "QINGLIAN_DATA_DIR": str(data_dir),
           "QINGLIAN_DATABASE_URL": database_url, "QINGLIAN_ENCRYPTION_KEY": os.environ["QINGLIAN_ENCRYPTION_KEY"],
           "QINGLIAN_PSEUDONYM_KEY": os.environ["QINGLIAN_PSEUDONYM_KEY"]}
    return subprocess.run([sys.executable, "-m", "bot.cli", *arguments], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


async def test_evidence_clean_removes_what_old_files_hid_and_a_second_run_finds_nothing(
        tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(shared_models_dir(), data_dir / "models")
    evidence_dir = data_dir / "evidence"
    photo, document = photo_with_metadata(640, 480), pdf_with_metadata(["Receipt 0042"], pages=2)
    number, (photo_id, document_id, clean_id) = await _store_as_before(database_url, evidence_dir, [
        (DEVICE_NAMES[0], "image/jpeg", photo), (DEVICE_NAMES[1], "application/pdf", document),
        (None, "image/png", plain_photo(media_type="image/png"))], cleaned=[False, False, True])

    dry = _qinglian(data_dir, database_url, "evidence", "clean", "--dry-run")
    assert (dry.returncode, dry.stdout.strip()) == (
        0, "2 evidence files to clean, 1 already clean (dry run: nothing changed)"), dry.stderr
    first = _qinglian(data_dir, database_url, "evidence", "clean")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("2 evidence files cleaned, 1 already clean, 0 failed")
    again = _qinglian(data_dir, database_url, "evidence", "clean")
    assert (again.returncode, again.stdout.strip().splitlines()[-1]) == (
        0, "0 evidence files cleaned, 3 already clean, 0 failed")

    settings = make_settings(data_dir, database_url=database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        harness = ConsoleHarness(app, settings, staff_password_hashing().hash(PASSWORD))
        await harness.user("sup", StaffRole.SUPERVISOR)
        async with harness.client() as client:
            await harness.login(client, "sup")
            page = await client.get(f"/console/case/{number}")
            assert page.status_code == 200 and "evidence-1.jpg" in page.text and "evidence-2.pdf" in page.text
            assert "张伟" not in page.text and "13912345678" not in page.text
            served_photo = await client.get(f"/console/case/{number}/evidence/{photo_id}")
            served_document = await client.get(f"/console/case/{number}/evidence/{document_id}")
            thumb = await client.get(f"/console/case/{number}/thumb/{photo_id}")
        async with harness.database.read_sessionmaker() as session:
            rows = {row.id: row for row in (await session.execute(select(Attachment))).scalars()}
            audited = list((await session.execute(
                select(AuditEntry).where(AuditEntry.action.like("evidence.%")).order_by(AuditEntry.id))).scalars())

    assert served_photo.headers["content-disposition"].endswith("''evidence-1.jpg")
    assert hidden_words_in(served_photo.content) == []
    with Image.open(io.BytesIO(served_photo.content)) as image:  # stored sideways with EXIF orientation 6
        assert (image.format, image.size, dict(image.getexif())) == ("JPEG", (480, 640), {})
    assert served_document.headers["content-disposition"].endswith("''evidence-2.pdf")
    assert pdf_facts(served_document.content) == (2, ["Receipt 0042\nPage 1", "Receipt 0042\nPage 2"], None, False,
                                                  [])
    assert thumb.status_code == 200 and hidden_words_in(thumb.content) == []
    assert (evidence_dir / thumbnail_name(rows[photo_id].stored_name)).is_file()  # made anew by the command
    for attachment_id, served in ((photo_id, served_photo.content), (document_id, served_document.content)):
        row = rows[attachment_id]
        assert (row.original_name, row.size_bytes, row.sha256, row.cleaned_at is not None) == (
            None, len(served), hashlib.sha256(served).hexdigest(), True)
    assert rows[clean_id].original_name is None and len(rows) == 3

    [photo_entry, document_entry, run_entry, second_run_entry] = audited
    assert [entry.action for entry in audited] == [
        "evidence.file_cleaned", "evidence.file_cleaned", "evidence.clean", "evidence.clean"]
    assert photo_entry.case_id == document_entry.case_id == rows[photo_id].case_id
    assert (photo_entry.detail["sha256_before"], photo_entry.detail["sha256_after"],
            photo_entry.detail["name_dropped"]) == (hashlib.sha256(photo).hexdigest(), rows[photo_id].sha256, True)
    assert document_entry.detail["sha256_before"] == hashlib.sha256(document).hexdigest()
    assert {key: run_entry.detail[key] for key in ("cleaned", "already_clean", "failed")} == {
        "cleaned": 2, "already_clean": 1, "failed": 0}
    assert second_run_entry.detail["cleaned"] == 0
    assert all(entry.actor_id is None and entry.detail["via"].startswith("command line") for entry in audited)


async def test_a_file_that_cannot_be_cleaned_is_reported_and_left_for_the_next_run(
        tmp_path: Path, database_url: str, database: Any) -> None:
    evidence_dir = tmp_path / "evidence"
    broken = photo_with_metadata()[:400]  # a photo cut short, stored before photos were checked
    _, (broken_id, missing_id, good_id) = await _store_as_before(database_url, evidence_dir, [
        ("a.jpg", "image/jpeg", broken), ("b.pdf", "application/pdf", pdf_with_metadata()),
        ("c.pdf", "application/pdf", pdf_with_metadata())])
    async with database.read_sessionmaker() as session:
        missing_name = (await session.get_one(Attachment, missing_id)).stored_name
    (evidence_dir / missing_name).unlink()

    first = await clean_stored_evidence(database, make_test_keyring(), evidence_dir, via="test", batch_size=2)
    second = await clean_stored_evidence(database, make_test_keyring(), evidence_dir, via="test", batch_size=2)

    assert (first.cleaned, first.already_clean, sorted(first.failed)) == (1, 0, [broken_id, missing_id])
    assert first.failed[broken_id] == "the image/jpeg image is undecodable"
    assert first.failed[missing_id] == f"the file {missing_name} is missing from the evidence directory"
    assert (second.cleaned, second.already_clean, second.failed) == (0, 1, first.failed)
    async with database.read_sessionmaker() as session:
        broken_row = await session.get_one(Attachment, broken_id)
        good_row = await session.get_one(Attachment, good_id)
    assert (broken_row.cleaned_at, broken_row.original_name) == (None, "a.jpg")  # left as it was
    assert evidence_content(evidence_dir, broken_row.stored_name) == broken
    assert good_row.cleaned_at is not None and pdf_facts(evidence_content(evidence_dir, good_row.stored_name))[2:] == (
        None, False, [])


def test_evidence_clean_refuses_a_database_not_yet_upgraded(tmp_path: Path) -> None:
    from storage.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    upgrade(url, make_test_keyring(), "0048")

    result = _qinglian(tmp_path, url, "evidence", "clean")

    assert result.returncode == 2, result.stderr
    said = result.stderr.strip()
    assert re.search(r"revision 0048; the newest is \d{4}: `qinglian db upgrade` migrates it$", said), said
