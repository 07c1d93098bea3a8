"""Housekeeping actions: drafts nobody came back to, bookkeeping no rule reads any more, retention of
reporters' contact details, and schedules that fire once across processes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, erasure
from storage.actions import ERASED
from storage.evidence_rows import discard_draft_attachments
from storage.models import (
    CASE_STATES,
    CLOSED_STATUSES,
    DRAFTLESS_STATES,
    Attachment,
    CallbackNonce,
    Case,
    ClientEvent,
    ClientEventKind,
    Conversation,
    JobRun,
    NoticeConsent,
    OutboxMessage,
    OutboxStatus,
    ProcessedUpdate,
    StatusGuess,
    utcnow,
)
from storage.outbox import STAFF_NOTICES

CONTACT_ERASED = "not delivered: the reporter's contact was erased (retention)"


async def expire_drafts(session: AsyncSession, older_than: datetime, *, with_files_older_than: datetime | None = None,
                        limit: int = 500) -> tuple[int, list[str]]:
    """Forget up to `limit` drafts untouched since `older_than`, and drafts holding evidence files untouched
    since `with_files_older_than`; returns how many, and the evidence files the caller deletes once the
    transaction is committed."""
    expired = Conversation.draft_updated_at < older_than
    if with_files_older_than is not None:
        holds_files = select(Attachment.id).where(Attachment.conversation_id == Conversation.id,
                                                  Attachment.case_id.is_(None)).exists()
        expired = expired | ((Conversation.draft_updated_at < with_files_older_than) & holds_files)
    query = (
        select(Conversation)
        .where(Conversation.draft_updated_at.is_not(None), expired)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    conversations: Sequence[Conversation] = list((await session.execute(query)).scalars())
    files: list[str] = []
    for conversation in conversations:
        files += await discard_draft_attachments(session, (conversation.draft or {}).get("attachments", []))
        conversation.draft = {}
        conversation.draft_updated_at = None
        if conversation.state not in DRAFTLESS_STATES:
            conversation.state = "idle"
    await session.flush()
    return len(conversations), files


async def prune_bookkeeping(session: AsyncSession, *, updates_before: datetime, guesses_before: datetime,
                            reports_before: datetime, wrong_codes_before: datetime,
                            nonces_before: datetime | None = None) -> None:
    """Drop dedup records, callback nonces, wrong-code records and per-address events that no rule looks
    at any more."""
    await session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < updates_before))
    await session.execute(delete(CallbackNonce).where(CallbackNonce.seen_at < (nonces_before or updates_before)))
    await session.execute(delete(StatusGuess).where(StatusGuess.created_at < guesses_before))
    for kind, before in ((ClientEventKind.REPORT, reports_before), (ClientEventKind.WRONG_CODE, wrong_codes_before)):
        await session.execute(delete(ClientEvent).where(ClientEvent.kind == kind, ClientEvent.created_at < before))


async def erase_idle_conversations(session: AsyncSession, idle_since: datetime, limit: int = 500) -> int:
    """Retention: conversations nobody has written in since `idle_since` and without a draft are deleted,
    with every message they produced (the outbox rows cascade) and the resident's consents to notices (their
    pseudonym), unless a case of theirs still keeps its contact and may be notified. Returns how many."""
    query = (select(Conversation.id, Conversation.channel, Conversation.user_key)
             .where(Conversation.updated_at < idle_since, Conversation.draft_updated_at.is_(None))
             .limit(limit).with_for_update(skip_locked=True))
    rows = list((await session.execute(query)).all())
    ids = [row.id for row in rows]
    if ids:
        await session.execute(delete(OutboxMessage).where(OutboxMessage.conversation_id.in_(ids)))
        await session.execute(delete(Conversation).where(Conversation.id.in_(ids)))
        await _forget_consents(session, {(row.channel, row.user_key) for row in rows})
    return len(ids)


async def _forget_consents(session: AsyncSession, residents: set[tuple[str, str]]) -> None:
    """Delete the consents to notices of these residents (channel, pseudonym) who have neither a conversation
    nor a case whose contact is kept: nothing can notify them any more, and the rows would only link them."""
    if not residents:
        return
    by_channel: dict[str, set[str]] = {}
    for channel, user_key in residents:
        by_channel.setdefault(channel, set()).add(user_key)
    talking = exists().where(Conversation.channel == NoticeConsent.channel,
                             Conversation.user_key == NoticeConsent.user_key)
    reachable = exists().where(Case.channel == NoticeConsent.channel, Case.reporter_key == NoticeConsent.user_key)
    await session.execute(
        delete(NoticeConsent)
        .where(or_(*(and_(NoticeConsent.channel == channel, NoticeConsent.user_key.in_(sorted(keys)))
                     for channel, keys in sorted(by_channel.items()))), ~talking, ~reachable)
        .execution_options(synchronize_session=False))


async def _locked_job_run(session: AsyncSession, name: str) -> JobRun | None:
    """The job's row, locked for this transaction (None: the job never ran)."""
    return (await session.execute(select(JobRun).where(JobRun.name == name).with_for_update())).scalar_one_or_none()


async def _stamp_job_run(session: AsyncSession, name: str, row: JobRun | None) -> datetime:
    now = utcnow()
    if row is None:
        session.add(JobRun(name=name, last_run_at=now))
    else:
        row.last_run_at = now
    await session.flush()
    return now


async def claim_scheduled_run(session: AsyncSession, name: str, due_since: datetime) -> bool:
    """True for exactly one caller per schedule period, across processes: the job's row is locked,
    and its last run is compared with the start of the current period."""
    row = await _locked_job_run(session, name)
    if row is not None and row.last_run_at >= due_since:
        return False
    await _stamp_job_run(session, name, row)
    return True


async def erase_old_contacts(session: AsyncSession, closed_before: datetime, limit: int = 500) -> int:
    """Retention: forget how to reach reporters of cases closed long ago. The case, its trace and the
    receipt code stay; the name, phone, channel address and its pseudonym go, also from the case's
    delivered messages and from what was written about the case (`storage.erasure`), and so do the consents to
    notices about the case (and the reporter's other consents when neither a conversation nor another case of
    theirs is left), the keyed hash of the address its evidence came from, the case in the reporter's
    conversation, and the notices to the reporter still waiting to be taken (given up). Returns how many cases
    were erased.

    A batch is a few statements on the cases' ids (an UPDATE, the audit entries in one INSERT, the messages'
    UPDATE, the consents' DELETEs): the cases are not loaded, and only the real-name cases' texts are decrypted
    (to take the name and phone out of them), so the write transaction (SQLite's one write lock, which
    residents' steps wait for) stays short, not the seconds the first round after a year of cases used to hold
    it batch after batch."""
    query = (select(Case.id, Case.channel, Case.reporter_key)
             .where(Case.status.in_([str(s) for s in CLOSED_STATUSES]), Case.closed_at < closed_before,
                    Case.reporter_key != ERASED)
             .limit(limit).with_for_update(skip_locked=True))
    rows = list((await session.execute(query)).all())
    ids = [row.id for row in rows]
    if not ids:
        return 0
    await erasure.scrub_own_contacts(session, ids)  # their name and phone as written into the case, while known
    await session.execute(update(Case).where(Case.id.in_(ids))
                          .values(reporter_name=None, reporter_phone=None, reporter_ref=ERASED, reporter_key=ERASED)
                          .execution_options(synchronize_session=False))
    await audit.record_many(session, None, "retention.erase_contact", ids)
    # the keyed hash of the address the evidence came from (kept on files filed before it was dropped at filing)
    await session.execute(update(Attachment).where(Attachment.case_id.in_(ids), Attachment.client_key.is_not(None))
                          .values(client_key=None).execution_options(synchronize_session=False))
    await _forget_case_in_conversations(session, ids)
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.case_id.in_(ids), OutboxMessage.status != OutboxStatus.PENDING)
        .values(recipient=ERASED)
    )
    # the notices to the reporter still waiting to be taken (a web chat's wait until the browser asks for them,
    # however long): nobody may be reached now; given up, they are pruned as the channels' failures are
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.case_id.in_(ids), OutboxMessage.status == OutboxStatus.PENDING,
               OutboxMessage.conversation_id.is_(None), OutboxMessage.kind.not_in(sorted(STAFF_NOTICES)))
        .values(recipient=ERASED, status=OutboxStatus.FAILED, last_error=CONTACT_ERASED)
        .execution_options(synchronize_session=False)
    )
    # the consents to notices about these cases, and those of reporters nothing else can reach now
    await session.execute(delete(NoticeConsent).where(NoticeConsent.case_id.in_(ids))
                          .execution_options(synchronize_session=False))
    await _forget_consents(session, {(row.channel, row.reporter_key) for row in rows})
    return len(ids)


async def _forget_case_in_conversations(session: AsyncSession, case_ids: Sequence[int]) -> int:
    """The reporters' conversations that still point at these cases (a case opened with its code, a rating asked
    for) forget them: the conversation holds the resident's chat id, and would tie it to the case. One that a
    resident's step holds at this moment is skipped rather than waited for (the batch holds its cases locked):
    `forget_erased_cases` comes back to it. Returns how many forgot a case."""
    return await _forget_cases(session, Conversation.context["case_id"].as_integer().in_(list(case_ids)))


async def forget_erased_cases(session: AsyncSession) -> int:
    """Conversations still pointing at a case whose contact was erased forget it: those that were busy when the
    case's batch ran (`erase_old_contacts` skips them). The housekeeping round calls this after its erasure, so a
    skipped one is caught at the latest a round later. It reads only the conversations that point at a case (few:
    idle ones are deleted after their own retention time), each case found by its primary key. Returns how many
    forgot a case."""
    erased = exists().where(Case.id == Conversation.context["case_id"].as_integer(), Case.reporter_key == ERASED)
    return await _forget_cases(session, erased)


async def _forget_cases(session: AsyncSession, pointing: ColumnElement[bool]) -> int:
    query = select(Conversation).where(pointing).with_for_update(skip_locked=True)
    forgotten = 0
    for conversation in (await session.execute(query)).scalars():
        forgotten += 1
        context = {key: value for key, value in (conversation.context or {}).items()
                   if key not in ("case_id", "case_until", "pending_rating")}
        if conversation.state in CASE_STATES:
            conversation.state = "idle"
            context.pop("choices", None)
        conversation.context = context
    await session.flush()
    return forgotten


async def hold_lease(session: AsyncSession, name: str, *, held_at: datetime | None,
                     expired_before: datetime) -> datetime | None:
    """A task only one process does at a time (its `JobRun` row, locked): the caller keeps the lease when the row
    still has the time it last took it (`held_at`), or takes it when the holder has not renewed it since
    `expired_before` (or nobody ever held it). The new `held_at` to pass next time, or None: another holds it."""
    row = await _locked_job_run(session, name)
    if row is not None and not ((held_at is not None and row.last_run_at == held_at)
                                or row.last_run_at < expired_before):
        return None
    return await _stamp_job_run(session, name, row)


async def optimize(session: AsyncSession) -> bool:
    """Keep SQLite's query planner informed (PostgreSQL's autovacuum does this itself): the first time, ANALYZE
    (sampled, so a large database takes moments); afterwards `PRAGMA optimize`, which analyses again only the
    tables whose statistics have gone stale. True when it ran (SQLite)."""
    if session.get_bind().dialect.name != "sqlite":
        return False
    await session.execute(text("PRAGMA analysis_limit=1000"))
    analysed = await session.scalar(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"))
    await session.execute(text("PRAGMA optimize" if analysed else "ANALYZE"))
    return True
