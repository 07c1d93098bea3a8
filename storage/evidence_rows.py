"""The rows of evidence files: a draft's files as the resident adds and discards them, the bytes waiting in drafts
(checked against the quotas under one lock), and a file marked clean once its metadata is gone. The files
themselves are `storage.evidence_files`'."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, client_limits
from storage.models import Attachment, ConversationState, utcnow


async def add_draft_attachment(
    session: AsyncSession,
    conversation: ConversationState,
    *,
    stored_name: str,
    original_name: str | None,
    media_type: str,
    size_bytes: int,
    sha256: str,
    client_key: str | None = None,
    cleaned: bool = False,
) -> Attachment:
    """A draft's file; `cleaned` when the stored file is free of its metadata (`Attachment.cleaned_at`)."""
    attachment = Attachment(
        conversation_id=conversation.id,
        stored_name=stored_name,
        original_name=original_name,
        media_type=media_type,
        size_bytes=size_bytes,
        sha256=sha256,
        client_key=client_key,
        cleaned_at=utcnow() if cleaned else None,
    )
    session.add(attachment)
    await session.flush()
    return attachment


async def mark_evidence_cleaned(session: AsyncSession, attachment: Attachment, *, size_bytes: int, sha256: str,
                                via: str) -> None:
    """An evidence file stored before cleaning existed has been rewritten without its metadata: the row takes the
    clean file's size and SHA-256, forgets the name the resident's device gave it (staff see the neutral
    `evidence-N.ext`) and is marked clean; the audit log keeps both hashes and who ran the cleaning (`via`), so the
    hash recorded when the file was taken can still be matched. Flushed: a row deleted meanwhile raises here,
    before the caller writes the file."""
    detail = {"attachment": attachment.id, "media_type": attachment.media_type, "sha256_before": attachment.sha256,
              "sha256_after": sha256, "size_before": attachment.size_bytes, "size_after": size_bytes,
              "name_dropped": attachment.original_name is not None, "via": via}
    if attachment.case_id is not None:  # in the case's own history
        await audit.record_many(session, None, "evidence.file_cleaned", [attachment.case_id], detail=detail)
    else:  # a draft's file
        await audit.record(session, None, "evidence.file_cleaned", detail=detail)
    attachment.size_bytes = size_bytes
    attachment.sha256 = sha256
    attachment.original_name = None
    attachment.cleaned_at = utcnow()
    await session.flush()


@dataclass(frozen=True)
class DraftEvidence:
    """Bytes of evidence waiting in unsubmitted drafts: this conversation's, this address's, everyone's."""

    conversation: int
    address: int
    total: int


async def draft_evidence(session: AsyncSession, conversation_id: int, client_key: str | None) -> DraftEvidence:
    """The bytes waiting, counted under a lock held until this transaction ends: a caller that checks them
    against the quotas and then adds its file (`add_draft_attachment`) in the same transaction makes the
    check and the reservation one step, which no concurrent upload from any process can slip between.
    One lock for all draft evidence, because the total quota counts every upload; on PostgreSQL an advisory
    transaction lock (as `client_limits` serialises the per-address counts), on SQLite the writers' own
    serialisation."""
    await client_limits.hold_until_commit(session, "draft-evidence")
    waiting = Attachment.case_id.is_(None)
    size = func.coalesce(func.sum(Attachment.size_bytes), 0)
    mine = await session.scalar(select(size).where(waiting, Attachment.conversation_id == conversation_id))
    address = 0
    if client_key is not None:
        address = await session.scalar(select(size).where(waiting, Attachment.client_key == client_key)) or 0
    total = await session.scalar(select(size).where(waiting))
    return DraftEvidence(int(mine or 0), int(address), int(total or 0))


async def discard_draft_attachments(session: AsyncSession, attachment_ids: Sequence[int]) -> list[str]:
    """Forget a cancelled draft's files; returns their stored names so the caller can delete them."""
    if not attachment_ids:
        return []
    rows = await session.execute(
        delete(Attachment).where(Attachment.id.in_(attachment_ids), Attachment.case_id.is_(None))
        .returning(Attachment.stored_name)
    )
    return list(rows.scalars())
