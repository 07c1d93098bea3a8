"""Migration 0008 on a deployed database: a case's place, time and key words, staff notes, audit details
and evidence file names are encrypted in place, read back through the models, and decrypted again by a
downgrade; the search index is filled afterwards by housekeeping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bot.jobs import index_for_search
from storage import queries, search
from storage.db import Database, create_engine
from storage.migrate import alembic_config, upgrade
from storage.models import Attachment, AuditEntry, Case, InternalNote
from tests.conftest import deployed_at, make_test_keyring
from tests.storage.test_encryption import leaks, raw_dump

PLACE, OCCURRED, NOTE = "旧案的地点ABC", "去年冬天ABC", "旧的内部意见ABC"
REASON, FILE_NAME = "旧的转办理由ABC", "旧照片ABC.jpg"
SECRETS = (PLACE, OCCURRED, NOTE, REASON, FILE_NAME, "关键词ABC")
ROWS = [
    ("INSERT INTO staff_users (id, username, display_name, role, password_hash, active, totp_required, "
     "failed_logins, created_at) VALUES (1, 'old', 'Old', 'admin', 'x', :true, :false, 0, :now)"),
    ("INSERT INTO cases (id, case_number, receipt_code_hash, channel, reporter_ref, reporter_key, locale, place, "
     "occurred, description, anonymous, status, queue, label_terms, created_at, updated_at) VALUES (1, "
     "'QL-2026-000001', 'h1', 'web', :ref, 'k1', 'zh', :place, :occurred, :description, :true, 'routed', "
     "'clean_hall', :terms, :now, :now)"),
    "INSERT INTO internal_notes (id, case_id, author_id, body, created_at) VALUES (1, 1, 1, :note, :now)",
    ("INSERT INTO audit_log (id, actor_id, action, case_id, detail, created_at) "
     "VALUES (1, 1, 'case.move', 1, :detail, :now)"),
    ("INSERT INTO attachments (id, case_id, stored_name, original_name, media_type, size_bytes, sha256, created_at) "
     "VALUES (1, 1, '2026/11/a.jpg', :file_name, 'image/jpeg', 3, :sha, :now)"),
]


@pytest.fixture(params=["sqlite", "postgres"])
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at revision 0007 with the values of a deployment, stored before 0008."""
    ring = make_test_keyring()
    with deployed_at(request, tmp_path, "0007") as url:
        values = {"now": datetime.now(UTC), "true": True, "false": False, "place": PLACE, "occurred": OCCURRED,
                  "note": NOTE, "file_name": FILE_NAME, "sha": "0" * 64,
                  "ref": ring.encrypt("resident-1", purpose="cases.reporter_ref"),
                  "description": ring.encrypt("旧案的举报内容", purpose="cases.description"),
                  "terms": json.dumps(["关键词ABC"], ensure_ascii=False),
                  "detail": json.dumps({"from": "triage", "to": "clean_hall", "reason": REASON}, ensure_ascii=False)}

        async def insert() -> None:
            engine = create_engine(url, ring)
            async with engine.begin() as connection:
                for statement in ROWS:
                    await connection.execute(text(statement), {k: v for k, v in values.items() if f":{k}" in statement})
            await engine.dispose()

        asyncio.run(insert())
        yield url


async def test_upgrade_encrypts_in_place_and_housekeeping_indexes_the_old_cases(deployed: str) -> None:
    assert leaks(await raw_dump(deployed), SECRETS) != []
    await asyncio.to_thread(upgrade, deployed, make_test_keyring())
    assert leaks(await raw_dump(deployed), SECRETS) == []
    database = Database.connect(deployed, make_test_keyring())
    try:
        async with database.read_sessionmaker() as session:
            case = (await session.execute(select(Case))).scalar_one()
            note = (await session.execute(select(InternalNote))).scalar_one()
            entry = (await session.execute(select(AuditEntry))).scalar_one()
            attachment = (await session.execute(select(Attachment))).scalar_one()
        assert (case.place, case.occurred, case.label_terms, case.search_version) == (
            PLACE, OCCURRED, ["关键词ABC"], None)
        assert (note.body, entry.detail["reason"], attachment.original_name) == (NOTE, REASON, FILE_NAME)
        assert await index_for_search(database.sessionmaker) == 1
        async with database.read_sessionmaker() as session:
            page = await queries.list_cases(session, queries.CaseFilter(text="地点", terms=("地点",)), per_page=10)
            found = [case.id for case in page.cases]
            indexed = await session.scalar(select(Case.search_version))
        assert (found, indexed) == ([1], search.INDEX_VERSION)
        assert await index_for_search(database.sessionmaker) == 0
    finally:
        await database.dispose()


async def test_downgrade_restores_the_plain_values(deployed: str) -> None:
    from alembic import command

    await asyncio.to_thread(upgrade, deployed, make_test_keyring())
    await asyncio.to_thread(command.downgrade, alembic_config(deployed, make_test_keyring()), "0007")
    rows = {(table, name): value for table, row in await raw_dump(deployed) for name, value in row.items()}
    detail = rows[("audit_log", "detail")]
    assert (rows[("cases", "place")], rows[("cases", "occurred")], rows[("internal_notes", "body")],
            rows[("attachments", "original_name")]) == (PLACE, OCCURRED, NOTE, FILE_NAME)
    assert (json.loads(detail) if isinstance(detail, str) else detail)["reason"] == REASON
