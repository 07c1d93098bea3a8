"""The only code that writes. Every action takes the caller's session and never commits.

A change of a case writes its trace event in the same transaction; a message to the reporter is
written to the outbox in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Insert, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import direct
from storage.crypto import pseudonym
from storage.models import (
    CLOSED_STATUSES,
    Attachment,
    Case,
    CaseStatus,
    Conversation,
    ConversationState,
    OutboxMessage,
    ProcessedUpdate,
    StatusGuess,
    TraceEvent,
    TraceKind,
    utcnow,
)
from storage.receipts import new_receipt_code, receipt_code_hash


class ActionError(Exception):
    """A rule of the domain refused the action; the message says which."""


# --- conversations and updates ----------------------------------------------------------------


_PROCESSED_UPDATES = cast(Table, ProcessedUpdate.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)


def _insert_or_ignore(session: AsyncSession, table: Table) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING` in the session's SQL dialect (SQLite and PostgreSQL spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


# The statements of every dialog step are built once: SQLAlchemy then only binds their parameters. On a
# SQLite file they run straight on the transaction's sqlite3 connection (`storage.direct`); the
# session runs them on any other database.
_CONVERSATION_COLUMNS = (_CONVERSATIONS.c.id, _CONVERSATIONS.c.locale, _CONVERSATIONS.c.state,
                         _CONVERSATIONS.c.draft, _CONVERSATIONS.c.context, _CONVERSATIONS.c.draft_updated_at)
_CONVERSATION_OF_USER = direct.Prepared(
    select(*_CONVERSATION_COLUMNS)
    .where(_CONVERSATIONS.c.channel == bindparam("channel"), _CONVERSATIONS.c.user_key == bindparam("user_key"))
    .with_for_update(),
    _CONVERSATION_COLUMNS,
)
_NEW_CONVERSATION_VALUES = ("channel", "user_key", "user_ref", "state", "draft", "context", "created_at",
                            "updated_at")
_DIRECT_NEW_CONVERSATION = direct.Prepared(
    sqlite_insert(_CONVERSATIONS)
    .values({name: bindparam(name) for name in _NEW_CONVERSATION_VALUES})
    .on_conflict_do_nothing()
)
_CASES = cast(Table, Case.__table__)
_RECEIPT_TAKEN = direct.Prepared(
    select(func.count()).select_from(_CASES).where(_CASES.c.receipt_code_hash == bindparam("code_hash")))
_RECENT_REPORTS = direct.Prepared(
    select(func.count()).select_from(_CASES)
    .where(_CASES.c.channel == bindparam("channel"), _CASES.c.reporter_key == bindparam("reporter_key"),
           _CASES.c.created_at >= bindparam("since")))
_DIRECT_CLAIM_UPDATE = direct.Prepared(
    sqlite_insert(_PROCESSED_UPDATES)
    .values(channel=bindparam("channel"), update_key=bindparam("update_key"),
            processed_at=bindparam("processed_at"))
    .on_conflict_do_nothing()
)


async def _first_value(session: AsyncSession, statement: direct.Prepared, values: dict[str, Any]) -> Any:
    """The first column of the first row of a prepared SELECT (None without rows), on either path."""
    sqlite = await direct.sqlite_connection(session)
    if sqlite is not None:
        row = statement.first(sqlite, values)
        return None if row is None else row[0]
    return await session.scalar(statement.statement, values)


async def claim_update(session: AsyncSession, channel: str, update_key: str) -> bool:
    """Record that an update is being handled; False if it was handled before (one statement)."""
    values = {"channel": channel, "update_key": update_key, "processed_at": utcnow()}
    sqlite = await direct.sqlite_connection(session)
    if sqlite is not None:
        return _DIRECT_CLAIM_UPDATE.run(sqlite, values).rowcount == 1
    result = await session.execute(_insert_or_ignore(session, _PROCESSED_UPDATES), values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def load_conversation(session: AsyncSession, channel: str, user_ref: str) -> ConversationState:
    """The resident's conversation, locked for this transaction (created on first contact).

    Found by the pseudonym of `user_ref`; the real id is stored only encrypted, to send messages.
    `save_conversation` writes back what the dialog changed."""
    keys = {"channel": channel, "user_key": pseudonym(channel, user_ref)}
    sqlite = await direct.sqlite_connection(session)
    if sqlite is not None:
        row = _CONVERSATION_OF_USER.first(sqlite, keys)
        if row is None:
            _DIRECT_NEW_CONVERSATION.run(sqlite, _new_conversation(keys, user_ref))
            row = _CONVERSATION_OF_USER.first(sqlite, keys)
    else:
        row = (await session.execute(_CONVERSATION_OF_USER.statement, keys)).first()
        if row is None:
            await session.execute(_insert_or_ignore(session, _CONVERSATIONS), _new_conversation(keys, user_ref))
            row = (await session.execute(_CONVERSATION_OF_USER.statement, keys)).first()
    assert row is not None, "the conversation exists or was inserted in this transaction"
    conversation_id, locale, state, draft, context, draft_updated_at = row
    # The stored user_ref is the one looked up: the pseudonym of the same id found it.
    return ConversationState(id=conversation_id, channel=channel, user_key=keys["user_key"], user_ref=user_ref,
                             locale=locale, state=state, draft=draft or {}, context=context or {},
                             draft_updated_at=draft_updated_at)


def _new_conversation(keys: dict[str, str], user_ref: str) -> dict[str, Any]:
    now = utcnow()
    return {**keys, "user_ref": user_ref, "state": "idle", "draft": {}, "context": {}, "created_at": now,
            "updated_at": now}


_SAVE_CONVERSATION_VALUES = ("locale", "state", "draft", "context", "draft_updated_at", "updated_at")
_SAVE_CONVERSATION = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values({name: bindparam(f"new_{name}") for name in _SAVE_CONVERSATION_VALUES})
)
_DIRECT_SAVE_CONVERSATION = direct.Prepared(_SAVE_CONVERSATION)


async def save_conversation(session: AsyncSession, conversation: ConversationState) -> None:
    """Write the conversation as a dialog step left it, with one prepared UPDATE."""
    values = {"conversation_id": conversation.id, "new_locale": conversation.locale,
              "new_state": conversation.state, "new_draft": conversation.draft,
              "new_context": conversation.context, "new_draft_updated_at": conversation.draft_updated_at,
              "new_updated_at": utcnow()}
    sqlite = await direct.sqlite_connection(session)
    if sqlite is not None:
        _DIRECT_SAVE_CONVERSATION.run(sqlite, values)
        return
    await session.execute(_SAVE_CONVERSATION, values)


# --- evidence ---------------------------------------------------------------------------------


async def add_draft_attachment(
    session: AsyncSession,
    conversation: ConversationState,
    *,
    stored_name: str,
    original_name: str | None,
    media_type: str,
    size_bytes: int,
    sha256: str,
) -> Attachment:
    attachment = Attachment(
        conversation_id=conversation.id,
        stored_name=stored_name,
        original_name=original_name,
        media_type=media_type,
        size_bytes=size_bytes,
        sha256=sha256,
    )
    session.add(attachment)
    await session.flush()
    return attachment


async def discard_draft_attachments(session: AsyncSession, attachment_ids: Sequence[int]) -> list[str]:
    """Forget a cancelled draft's files; returns their stored names so the caller can delete them."""
    if not attachment_ids:
        return []
    rows = await session.execute(
        select(Attachment.stored_name).where(Attachment.id.in_(attachment_ids), Attachment.case_id.is_(None))
    )
    names = list(rows.scalars())
    await session.execute(
        delete(Attachment).where(Attachment.id.in_(attachment_ids), Attachment.case_id.is_(None))
    )
    return names


# --- cases ------------------------------------------------------------------------------------


async def file_report(
    session: AsyncSession,
    *,
    secret_key: bytes,
    case_number_prefix: str,
    year: int,
    channel: str,
    reporter_ref: str,
    locale: str,
    district: str | None,
    place: str,
    occurred: str,
    description: str,
    anonymous: bool,
    reporter_name: str | None,
    reporter_phone: str | None,
    attachment_ids: Sequence[int],
    triage_queue: str,
) -> tuple[Case, str]:
    """Store a submitted report with its first trace event. Returns the case and its receipt code,
    which exists in plain text only in this return value. `reporter_ref` is the reporter's real channel
    address: stored encrypted, with its pseudonym for the daily limit."""
    while True:
        code = new_receipt_code()
        code_hash = receipt_code_hash(secret_key, code)
        if not await _first_value(session, _RECEIPT_TAKEN, {"code_hash": code_hash}):
            break
    case = Case(
        receipt_code_hash=code_hash,
        channel=channel,
        reporter_ref=reporter_ref,
        reporter_key=pseudonym(channel, reporter_ref),
        locale=locale,
        district=district,
        place=place,
        occurred=occurred,
        description=description,
        anonymous=anonymous,
        reporter_name=None if anonymous else reporter_name,
        reporter_phone=None if anonymous else reporter_phone,
        status=CaseStatus.RECEIVED,
        queue=triage_queue,
    )
    session.add(case)
    await session.flush()
    case.case_number = f"{case_number_prefix}-{year}-{case.id:06d}"
    event = TraceEvent(case_id=case.id, kind=TraceKind.RECEIVED, actor="reporter", detail={})
    session.add(event)
    if attachment_ids:
        await session.execute(
            update(Attachment)
            .where(Attachment.id.in_(attachment_ids), Attachment.case_id.is_(None))
            .values(case_id=case.id)
        )
    # The case number and the trace event are written by the next flush: `route_case`'s, which follows at
    # once when a resident submits, or the commit's.
    return case, code


async def route_case(
    session: AsyncSession,
    case: Case,
    *,
    queue: str,
    reason: str,
    label: str | None = None,
    confidence: float | None = None,
    top: list[Any] | None = None,
    terms: list[Any] | None = None,
    model_version: str | None = None,
    accept_due_at: datetime | None = None,
    resolve_due_at: datetime | None = None,
) -> TraceEvent:
    """Put the case in a queue with the classifier's tag; the routing shows in the trace."""
    case.queue = queue
    case.label = label
    case.predicted_label = label
    case.label_confidence = confidence
    case.label_top = top
    case.label_terms = terms
    case.model_version = model_version
    case.routed_at = utcnow()
    case.accept_due_at = accept_due_at
    case.resolve_due_at = resolve_due_at
    if case.status == CaseStatus.RECEIVED:
        case.status = CaseStatus.ROUTED
    event = TraceEvent(
        case_id=case.id,
        kind=TraceKind.ROUTED,
        actor="system",
        detail={"queue": queue, "reason": reason, "label": label},
    )
    session.add(event)
    await session.flush()
    return event


async def find_case_by_receipt(session: AsyncSession, secret_key: bytes, code: str) -> Case | None:
    query = (
        select(Case)
        .where(Case.receipt_code_hash == receipt_code_hash(secret_key, code))
        .options(selectinload(Case.trace))
    )
    return (await session.execute(query)).scalar_one_or_none()


async def get_case(session: AsyncSession, case_id: int) -> Case | None:
    query = select(Case).where(Case.id == case_id).options(selectinload(Case.trace))
    return (await session.execute(query)).scalar_one_or_none()


async def count_recent_wrong_codes(session: AsyncSession, channel: str, user_ref: str, since: datetime) -> int:
    query = select(func.count()).where(
        StatusGuess.channel == channel, StatusGuess.user_key == pseudonym(channel, user_ref),
        StatusGuess.created_at >= since,
    )
    return int(await session.scalar(query) or 0)


async def oldest_recent_wrong_code(
    session: AsyncSession, channel: str, user_ref: str, since: datetime
) -> datetime | None:
    query = select(func.min(StatusGuess.created_at)).where(
        StatusGuess.channel == channel, StatusGuess.user_key == pseudonym(channel, user_ref),
        StatusGuess.created_at >= since,
    )
    value = await session.scalar(query)
    if value is not None and value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


async def record_wrong_code(
    session: AsyncSession, channel: str, user_ref: str, at: datetime | None = None
) -> None:
    session.add(StatusGuess(channel=channel, user_key=pseudonym(channel, user_ref), created_at=at or utcnow()))
    await session.flush()


async def add_follow_up(
    session: AsyncSession, case: Case, *, text: str | None, attachment_ids: Sequence[int] = ()
) -> TraceEvent:
    """Information the reporter adds to their case; it appears in the trace."""
    if case.status in CLOSED_STATUSES:
        raise ActionError("case is closed")
    event = TraceEvent(
        case_id=case.id,
        kind=TraceKind.FOLLOW_UP,
        actor="reporter",
        body=text,
        detail={"attachments": len(attachment_ids)},
    )
    session.add(event)
    await session.flush()
    if attachment_ids:
        await session.execute(
            update(Attachment)
            .where(Attachment.id.in_(attachment_ids), Attachment.case_id.is_(None))
            .values(case_id=case.id, trace_event_id=event.id)
        )
    return event


async def rate_case(session: AsyncSession, case: Case, rating: int) -> TraceEvent:
    if case.status not in CLOSED_STATUSES:
        raise ActionError("only a closed case can be rated")
    if case.rating is not None:
        raise ActionError("case already rated")
    if not 1 <= rating <= 5:
        raise ActionError("rating must be 1 to 5")
    case.rating = rating
    event = TraceEvent(case_id=case.id, kind=TraceKind.RATED, actor="reporter", detail={"rating": rating})
    session.add(event)
    await session.flush()
    return event


_STATUS_EVENT = {
    CaseStatus.ACCEPTED: TraceKind.ACCEPTED,
    CaseStatus.IN_HANDLING: TraceKind.IN_HANDLING,
    CaseStatus.ANSWERED: TraceKind.ANSWERED,
    CaseStatus.CLOSED: TraceKind.CLOSED,
    CaseStatus.REJECTED: TraceKind.REJECTED,
    CaseStatus.DUPLICATE: TraceKind.DUPLICATE,
}


async def change_status(
    session: AsyncSession, case: Case, status: CaseStatus, *, actor: str, body: str | None = None
) -> TraceEvent:
    """Move a case to a new status, with its trace event (and a notice to the reporter)."""
    if status not in _STATUS_EVENT:
        raise ActionError(f"status {status} cannot be set by hand")
    if case.status == status:
        raise ActionError(f"case is already {status}")
    case.status = status
    case.closed_at = utcnow() if status in CLOSED_STATUSES else None
    if status == CaseStatus.ACCEPTED and case.accepted_at is None:
        case.accepted_at = utcnow()
    event = TraceEvent(case_id=case.id, kind=_STATUS_EVENT[status], actor=actor, body=body, detail={})
    session.add(event)
    await session.flush()
    await enqueue_message(
        session,
        channel=case.channel,
        recipient=case.reporter_ref,
        payload={"notice": "status_changed", "locale": case.locale, "case_number": case.case_number,
                 "status": str(status)},
        case_id=case.id,
    )
    return event


async def reply_to_reporter(session: AsyncSession, case: Case, text: str, *, actor: str) -> TraceEvent:
    """Staff's answer: stored in the trace (shown by /status) and delivered through the outbox."""
    text = text.strip()
    if not text:
        raise ActionError("an answer needs text")
    if case.status not in CLOSED_STATUSES:
        case.status = CaseStatus.ANSWERED
    event = TraceEvent(case_id=case.id, kind=TraceKind.ANSWERED, actor=actor, body=text, detail={})
    session.add(event)
    await session.flush()
    await enqueue_message(
        session,
        channel=case.channel,
        recipient=case.reporter_ref,
        payload={"notice": "answer", "locale": case.locale, "case_number": case.case_number, "answer": text},
        case_id=case.id,
    )
    return event


async def notify_staff(session: AsyncSession, case: Case, targets: Sequence[tuple[str, str]], *,
                       locale: str) -> None:
    """Announce a case in its queue's staff groups: number, label, district, first line — no identity."""
    first_line = case.description.strip().splitlines()[0][:120] if case.description.strip() else ""
    for channel, recipient in targets:
        await enqueue_message(session, channel=channel, recipient=recipient, case_id=case.id, payload={
            "notice": "new_case", "locale": locale, "case_number": case.case_number, "queue": case.queue,
            "label": case.label, "district": case.district, "first_line": first_line,
        })


# --- outbox -----------------------------------------------------------------------------------


_OUTBOX_VALUES = ("channel", "recipient", "payload", "case_id", "status", "attempts", "next_attempt_at", "created_at")
_DIRECT_ENQUEUE = direct.Prepared(insert(_OUTBOX).values({name: bindparam(name) for name in _OUTBOX_VALUES}))


async def enqueue_messages(session: AsyncSession, *, channel: str, recipient: str,
                           payloads: Sequence[dict[str, Any]]) -> None:
    """Several replies to one resident in one statement, in order (the outbox sends by id)."""
    if not payloads:
        return
    now = utcnow()
    rows = [{"channel": channel, "recipient": recipient, "payload": payload, "case_id": None, "status": "pending",
             "attempts": 0, "next_attempt_at": now, "created_at": now} for payload in payloads]
    sqlite = await direct.sqlite_connection(session)
    if sqlite is not None:
        _DIRECT_ENQUEUE.run_many(sqlite, rows)
        return
    await session.execute(insert(_OUTBOX), rows)


async def enqueue_message(
    session: AsyncSession, *, channel: str, recipient: str, payload: dict[str, Any], case_id: int | None = None
) -> OutboxMessage:
    message = OutboxMessage(channel=channel, recipient=recipient, payload=payload, case_id=case_id)
    session.add(message)
    await session.flush()
    return message


async def lease_outbox(
    session: AsyncSession, *, channels: Sequence[str], limit: int, lease: timedelta, now: datetime | None = None
) -> list[tuple[int, str, str, dict[str, Any]]]:
    """Take a batch for delivery: (id, channel, recipient, payload) of due messages, oldest first, leased until
    now + `lease` so no other worker takes them while they are sent. None of a recipient's messages is taken
    while an earlier one of theirs waits for a retry; rows are locked with SKIP LOCKED where supported."""
    now = now or utcnow()
    blocked = (
        select(OutboxMessage.recipient)
        .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at > now)
        .scalar_subquery()
    )
    due = (
        select(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.payload)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.channel.in_(channels),
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.recipient.not_in(blocked),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = [(row[0], row[1], row[2], row[3]) for row in await session.execute(due)]
    if rows:
        await session.execute(
            update(_OUTBOX).where(_OUTBOX.c.id.in_([row[0] for row in rows])).values(next_attempt_at=now + lease)
        )
    return rows


async def mark_sent_many(session: AsyncSession, message_ids: Sequence[int]) -> None:
    """Delivered: one statement for the whole batch."""
    if message_ids:
        await session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(message_ids))
            .values(status="sent", sent_at=utcnow(), attempts=_OUTBOX.c.attempts + 1, last_error=None)
        )


def mark_sent(message: OutboxMessage) -> None:
    message.status = "sent"
    message.sent_at = utcnow()
    message.attempts += 1
    message.last_error = None


def mark_retry(message: OutboxMessage, *, error: str, delay: timedelta) -> None:
    message.attempts += 1
    message.last_error = error[:500]
    message.next_attempt_at = utcnow() + delay


def mark_failed(message: OutboxMessage, *, error: str) -> None:
    message.attempts += 1
    message.status = "failed"
    message.last_error = error[:500]


async def take_web_messages(session: AsyncSession, recipient: str) -> list[OutboxMessage]:
    """Pending messages for a web-chat browser; the browser fetching them is their delivery."""
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.channel == "web", OutboxMessage.recipient == recipient,
               OutboxMessage.status == "pending")
        .order_by(OutboxMessage.id)
        .with_for_update(skip_locked=True)
    )
    messages = list((await session.execute(query)).scalars())
    for message in messages:
        mark_sent(message)
    return messages


# --- housekeeping -----------------------------------------------------------------------------


async def expired_drafts(session: AsyncSession, older_than: datetime, limit: int = 500) -> list[Conversation]:
    query = (
        select(Conversation)
        .where(Conversation.draft_updated_at.is_not(None), Conversation.draft_updated_at < older_than)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars())


async def discard_expired_draft(session: AsyncSession, conversation: Conversation) -> list[str]:
    """Forget a draft nobody came back to; returns the evidence files to delete."""
    names = await discard_draft_attachments(session, (conversation.draft or {}).get("attachments", []))
    conversation.draft = {}
    conversation.draft_updated_at = None
    if conversation.state not in ("idle", "status_code", "case_menu", "follow_up", "rating", "language"):
        conversation.state = "idle"
    return names


async def prune_bookkeeping(session: AsyncSession, *, updates_before: datetime, guesses_before: datetime) -> None:
    """Drop dedup records and wrong-code records that no rule looks at any more."""
    await session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < updates_before))
    await session.execute(delete(StatusGuess).where(StatusGuess.created_at < guesses_before))


async def claim_scheduled_run(session: AsyncSession, name: str, due_since: datetime) -> bool:
    """True for exactly one caller per schedule period, across processes: the job's row is locked,
    and its last run is compared with the start of the current period."""
    from storage.models import JobRun

    row = (await session.execute(select(JobRun).where(JobRun.name == name).with_for_update())).scalar_one_or_none()
    now = utcnow()
    if row is None:
        session.add(JobRun(name=name, last_run_at=now))
        await session.flush()
        return True
    if row.last_run_at >= due_since:
        return False
    row.last_run_at = now
    return True


# --- channel credentials ----------------------------------------------------------------------


async def load_wechat_token(session: AsyncSession, app_id: str) -> tuple[str, datetime] | None:
    """The stored WeChat access token of an app and when it expires."""
    from storage.models import WeChatAccessToken

    row = await session.get(WeChatAccessToken, app_id)
    return None if row is None else (row.access_token, row.expires_at)


async def store_wechat_token(session: AsyncSession, app_id: str, access_token: str, expires_at: datetime) -> None:
    """Keep a freshly issued WeChat access token for every process (the newest one wins)."""
    from storage.models import WeChatAccessToken

    query = select(WeChatAccessToken).where(WeChatAccessToken.app_id == app_id).with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        session.add(WeChatAccessToken(app_id=app_id, access_token=access_token, expires_at=expires_at))
        await session.flush()
        return
    row.access_token = access_token
    row.expires_at = expires_at
    row.refreshed_at = utcnow()


async def count_recent_reports(session: AsyncSession, channel: str, reporter_ref: str, since: datetime) -> int:
    values = {"channel": channel, "reporter_key": pseudonym(channel, reporter_ref), "since": since}
    return int(await _first_value(session, _RECENT_REPORTS, values) or 0)


ERASED = "erased"


async def erase_old_contacts(session: AsyncSession, closed_before: datetime, limit: int = 500) -> int:
    """Retention: forget how to reach reporters of cases closed long ago. The case, its trace and the
    receipt code stay; the name, phone, channel address and its pseudonym go, also from the case's
    delivered messages. Returns how many cases were erased."""
    from storage.models import AuditEntry

    query = (select(Case).where(Case.status.in_([str(s) for s in CLOSED_STATUSES]),
                                Case.closed_at < closed_before, Case.reporter_key != ERASED)
             .limit(limit).with_for_update(skip_locked=True))
    cases = list((await session.execute(query)).scalars())
    for case in cases:
        case.reporter_name = None
        case.reporter_phone = None
        case.reporter_ref = ERASED
        case.reporter_key = ERASED
        session.add(AuditEntry(actor_id=None, action="retention.erase_contact", case_id=case.id, detail={}))
    if cases:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.case_id.in_([case.id for case in cases]), OutboxMessage.status != "pending")
            .values(recipient=ERASED)
        )
    await session.flush()
    return len(cases)
