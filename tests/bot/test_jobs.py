"""Housekeeping: drafts nobody came back to are deleted with their evidence files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.config import Limits
from bot.jobs import housekeeping_once
from storage import actions
from storage.models import Attachment, Conversation, utcnow


async def _draft(sessionmaker: Any, evidence_dir: Path, user: str, age: timedelta) -> tuple[int, Path]:
    stored = f"2026/11/{user}.jpg"
    (evidence_dir / stored).parent.mkdir(parents=True, exist_ok=True)
    (evidence_dir / stored).write_bytes(b"\xff\xd8\xff")
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", user)
        attachment = await actions.add_draft_attachment(
            session, conversation, stored_name=stored, original_name=None, media_type="image/jpeg",
            size_bytes=3, sha256="0" * 64)
        conversation.state = "evidence"
        conversation.draft = {"step": "evidence", "attachments": [attachment.id], "place": "某单位"}
        conversation.draft_updated_at = utcnow() - age
    return conversation.id, evidence_dir / stored


async def test_expired_drafts_and_their_files_are_deleted(sessionmaker: Any, tmp_path: Path) -> None:
    old_id, old_file = await _draft(sessionmaker, tmp_path, "old", timedelta(days=8))
    fresh_id, fresh_file = await _draft(sessionmaker, tmp_path, "fresh", timedelta(days=6))
    await housekeeping_once(sessionmaker, tmp_path, Limits())
    async with sessionmaker() as session:
        old = await session.get(Conversation, old_id)
        fresh = await session.get(Conversation, fresh_id)
        attachments = [a.stored_name for a in (await session.execute(Attachment.__table__.select())).all()]
    assert old is not None and (old.draft, old.state, old.draft_updated_at) == ({}, "idle", None)
    assert not old_file.exists()
    assert fresh is not None and fresh.draft["place"] == "某单位" and fresh_file.exists()
    assert attachments == ["2026/11/fresh.jpg"]
