"""The rows of evidence files: drafts' files, the bytes waiting in drafts, a discarded draft's files."""

from __future__ import annotations

from typing import Any

from storage import actions, evidence_rows
from tests.factories import file_case


async def _file(session: Any, conversation: Any, name: str, size: int, client_key: str | None) -> int:
    attachment = await evidence_rows.add_draft_attachment(
        session, conversation, stored_name=name, original_name=None, media_type="image/jpeg", size_bytes=size,
        sha256="0" * 64, client_key=client_key)
    return attachment.id


async def test_the_bytes_waiting_in_drafts_count_this_conversations_this_addresss_and_everyones(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        mine = await actions.load_conversation(session, "web", "u1")
        neighbour = await actions.load_conversation(session, "web", "u2")
        other = await actions.load_conversation(session, "telegram", "9")
        await _file(session, mine, "a.jpg", 100, "net-1")
        await _file(session, neighbour, "b.jpg", 200, "net-1")
        await _file(session, other, "c.jpg", 400, None)
        submitted = await _file(session, mine, "d.jpg", 800, "net-1")
        await file_case(session, attachment_ids=[submitted])  # a case's file waits in no draft
    async with sessionmaker.begin() as session:
        waiting = await evidence_rows.draft_evidence(session, mine.id, "net-1")
    assert (waiting.conversation, waiting.address, waiting.total) == (100, 300, 700)


async def test_a_discarded_drafts_files_are_forgotten_and_named_but_never_a_cases(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "web", "u1")
        draft = await _file(session, conversation, "2026/12/draft.jpg", 10, None)
        filed = await _file(session, conversation, "2026/12/filed.jpg", 10, None)
        await file_case(session, attachment_ids=[filed])
    async with sessionmaker.begin() as session:
        names = await evidence_rows.discard_draft_attachments(session, [draft, filed])
    async with sessionmaker.begin() as session:
        assert await evidence_rows.discard_draft_attachments(session, [draft, filed]) == []
    assert names == ["2026/12/draft.jpg"]
