"""The resident's actions: one named function per use case, each writing everything the use case changes
— the case, its trace events, the messages it causes — in the caller's transaction. Nothing here commits.

A dialog step is `claim_update` (a redelivered update does nothing), `load_conversation`, the dialog's
own decisions, then `finish_step`, which writes the conversation back and queues the replies. The
submit of a report is `submit_report`, which writes the case with its routing, its first trace events,
the staff notices and the address count in one go; the case number and the receipt code come back at
once.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self, cast

from sqlalchemy import Table, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import notices, outbox, search, staff_notices
from storage.crypto import session_keyring
from storage.db import built_once, upsert
from storage.models import (
    CLOSED_STATUSES,
    Attachment,
    CallbackNonce,
    Case,
    CaseStatus,
    ClientEvent,
    ClientEventKind,
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

REFUSALS = {
    "case_closed": "case is closed",
    "rate_not_closed": "only a closed case can be rated",
    "already_rated": "case already rated",
    "rating_range": "rating must be 1 to 5",
    "status_not_by_hand": "status {status} cannot be set by hand",
    "status_already": "case is already {status}",
    "answer_needs_text": "an answer needs text",
    "canned_reply_incomplete": "a canned reply needs a title and a text",
    "canned_reply_too_long": "a canned reply has at most {title_max} characters of title and {body_max} of text",
    "close_not_answered": "only an answered case can be closed by its reporter",
    "rating_or_unsolved": "a rating or 'not solved' is needed",
    "appeal_not_rejected": "only a rejected case can be appealed",
    "appeal_pending": "the appeal is being decided",
    "appeal_again": "the case was appealed already",
    "appeal_needs_reason": "a decision on an appeal needs its reason",
    "no_appeal": "no appeal is waiting",
    "extension_needs_reason": "an extension needs a reason",
    "case_is_status": "case {number} is {status}",
    "extension_not_later": "the new date must be later than the current resolve-by date",
    "extension_too_long": "an extension adds at most {days} days to the current resolve-by date",
    "extension_waiting": "an extension request of this case is waiting for a supervisor",
    "extension_decided": "the request was decided already",
    "extension_case_closed": "case {number} is {status}: its deadline can no longer be extended",
    "note_to_reporter_needs_text": "a note for the reporter needs text",
    "more_info_needs_question": "asking the reporter for more information needs the question",
    "rejection_needs_reason": "a rejection needs its reason and where the reporter can turn instead",
    "move_closed": "case {number} is {status}: reopen it to move it",
    "move_needs_reason": "moving a case needs a reason",
    "move_same_queue": "the case is in {queue} already",
    "name_taken": "user {existing!r} exists already",
    "name_taken_case": "user {existing!r} exists already (user names that differ only in letter case are one name)",
    "accepted_already": "case {number} was accepted already",
    "duplicate_by_hand": "use mark_duplicate to mark a duplicate",
    "answered_needs_answer": "case {number} has no answer: answer the reporter, which marks it answered",
    "closed_needs_answer": "case {number} has no answer: answer the reporter, or close it with a note that tells "
                           "the result",
    "reopen_needs_reason": "case {number} is {status}: reopening it needs the reason, which the reporter is told",
    "duplicate_itself": "a case cannot duplicate itself",
    "no_label": "the case has no label to confirm",
    "label_already": "the label is {label} already",
    "note_needs_text": "a note needs text",
    "reporter_anonymous": "the reporter is anonymous",
    "reveal_needs_reason": "revealing a reporter's identity needs a reason of at least {chars} letters or digits",
}
"""Every refusal of an action by its code: the English its message is. The code and its values let a reader in
another language be told the same (the console's texts `refusal.<code>` in each of its languages)."""


class ActionError(Exception):
    """A rule of the domain refused the action in the case's present state; the message says which.

    Raised as `ActionError.of(code, **values)` (one of `REFUSALS`); `code` and `values` name it for a reader's
    language. An error raised with a message of its own has the code ""."""

    def __init__(self, message: str, code: str = "", values: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.values = dict(values or {})

    @classmethod
    def of(cls, code: str, **values: object) -> Self:
        return cls(REFUSALS[code].format(**values), code, values)


class ActionInputError(ActionError):
    """What the action was given cannot be used, whatever the case's state (a blank reason, a rating out of range);
    the message says what is needed."""


_PROCESSED_UPDATES = cast(Table, ProcessedUpdate.__table__)
_CALLBACK_NONCES = cast(Table, CallbackNonce.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
_CASES = cast(Table, Case.__table__)
_TRACE = cast(Table, TraceEvent.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)


def pseudonym(session: AsyncSession, channel: str, user_ref: str) -> str:
    """The keyed pseudonym a channel user is looked up by (the engine's key ring)."""
    return session_keyring(session).pseudonym(channel, user_ref)


# --- a dialog step ----------------------------------------------------------------------------


async def claim_update(session: AsyncSession, channel: str, update_key: str) -> bool:
    """Record that an update is being handled; False if it was handled before (one statement)."""
    statement = built_once(session, "claim_update",
                           lambda session: upsert(session, _PROCESSED_UPDATES).on_conflict_do_nothing())
    result = await session.execute(statement, {"channel": channel, "update_key": update_key,
                                               "processed_at": utcnow()})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def claim_callback(session: AsyncSession, channel: str, timestamp: str, nonce: str,
                         body_digest: str | None = None) -> bool:
    """Record a signed callback's (timestamp, nonce) with a digest of its body; False if the pair was seen
    before with another body, or without a digest to compare (a replay). The same pair with the same body
    again is the platform resending one request it got no answer to: True, and the caller's exactly-once
    handling of the message (`claim_update`) keeps it from acting twice."""
    statement = built_once(session, "claim_callback",
                           lambda session: upsert(session, _CALLBACK_NONCES).on_conflict_do_nothing())
    nonce_key = f"{timestamp}:{nonce}"[:64]
    result = await session.execute(statement, {"channel": channel, "nonce_key": nonce_key, "seen_at": utcnow(),
                                               "body_hash": body_digest})
    if result.rowcount:  # type: ignore[attr-defined]
        return True
    if body_digest is None:
        return False
    first = await session.scalar(select(CallbackNonce.body_hash).where(CallbackNonce.channel == channel,
                                                                      CallbackNonce.nonce_key == nonce_key))
    return first is not None and hmac.compare_digest(first, body_digest)


_CONVERSATION_COLUMNS = (_CONVERSATIONS.c.id, _CONVERSATIONS.c.locale, _CONVERSATIONS.c.state,
                         _CONVERSATIONS.c.draft, _CONVERSATIONS.c.context, _CONVERSATIONS.c.draft_updated_at)


def _load_conversation(session: AsyncSession) -> Any:
    inserting = upsert(session, _CONVERSATIONS)
    waiting = exists().where(notices.waiting_for(bindparam("recipient_channel"), bindparam("recipient")))
    return (inserting.on_conflict_do_update(index_elements=["channel", "user_key"],
                                            set_={"updated_at": inserting.excluded.updated_at})
            .returning(*_CONVERSATION_COLUMNS, waiting))


async def load_conversation(session: AsyncSession, channel: str, user_ref: str) -> ConversationState:
    """The resident's conversation, created on first contact and locked for this transaction, in one
    statement (`INSERT … ON CONFLICT DO UPDATE … RETURNING`: on PostgreSQL the update locks the row), which
    also tells whether notices wait for the resident (`notices_waiting`).

    Found by the pseudonym of `user_ref`; the real id is stored only encrypted, to send messages."""
    user_key = pseudonym(session, channel, user_ref)
    now = utcnow()
    statement = built_once(session, "load_conversation", _load_conversation)
    parameters = {"channel": channel, "user_key": user_key, "user_ref": user_ref, "state": "idle", "draft": {},
                  "context": {}, "created_at": now, "updated_at": now, "recipient_channel": channel,
                  "recipient": user_ref}
    conversation_id, locale, state, draft, context, draft_updated_at, waiting = (
        await session.execute(statement, parameters)).one()
    return ConversationState(id=conversation_id, channel=channel, user_key=user_key, user_ref=user_ref,
                             locale=locale, state=state, draft=draft or {}, context=context or {},
                             draft_updated_at=draft_updated_at, notices_waiting=bool(waiting))


_SAVE_CONVERSATION = update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
"""Executed with the columns to set as parameters (their types apply), built once."""


async def finish_step(session: AsyncSession, conversation: ConversationState,
                      replies: Sequence[dict[str, Any]] = (), *, hold: timedelta | None = None) -> list[int]:
    """Write the conversation as the dialog step left it and queue the step's replies to the resident
    (none for a channel that answers in the HTTP response); returns the queued rows' ids. Replies held
    for `hold` wait that long before a worker sends them: the channel may deliver them itself first."""
    await session.execute(_SAVE_CONVERSATION, {
        "conversation_id": conversation.id, "locale": conversation.locale, "state": conversation.state,
        "draft": conversation.draft, "context": conversation.context,
        "draft_updated_at": conversation.draft_updated_at, "updated_at": utcnow()})
    return await outbox.enqueue_replies(session, channel=conversation.channel, recipient=conversation.user_ref,
                                        conversation_id=conversation.id, payloads=replies, hold=hold)


async def withdraw_held_replies(session: AsyncSession, conversation: ConversationState,
                                hold: timedelta) -> list[dict[str, Any]]:
    """The replies of the conversation's last step that still wait out their `hold`, taken back unsent (the step
    now continued answers for both)."""
    return await outbox.withdraw_held(session, conversation.id, hold)


async def queue_replies(session: AsyncSession, channel: str, user_ref: str,
                        payloads: Sequence[dict[str, Any]]) -> None:
    """Replies to a resident outside a dialog step's transaction (a WeChat answer that missed the passive
    window), queued under their conversation like the step's own."""
    conversation = await load_conversation(session, channel, user_ref)
    await outbox.enqueue_replies(session, channel=channel, recipient=user_ref, conversation_id=conversation.id,
                                 payloads=payloads)


# --- submitting a report ----------------------------------------------------------------------


@dataclass(frozen=True)
class NewReport:
    """What a resident submits, as the dialog collected it."""

    channel: str
    reporter_ref: str
    locale: str
    district: str | None
    place: str
    occurred: str
    description: str
    anonymous: bool = True
    reporter_name: str | None = None
    reporter_phone: str | None = None
    attachment_ids: Sequence[int] = ()


@dataclass(frozen=True)
class Routing:
    """Where a new case goes and what the classifier said; `staff_targets` are the (channel, recipient)
    staff groups told about it."""

    queue: str
    reason: str
    label: str | None = None
    confidence: float | None = None
    top: list[Any] | None = None
    terms: list[Any] | None = None
    model_version: str | None = None
    runner_up: str | None = None  # the close second label, and the phrases that decided against it
    contrast_terms: list[Any] | None = None
    accept_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    staff_targets: Sequence[tuple[str, str]] = field(default_factory=tuple)


@dataclass(frozen=True)
class Submitted:
    case_id: int
    case_number: str
    receipt_code: str
    """In plain text only here: the database keeps a keyed hash of it."""


_RECEIPT_TAKEN = select(func.count()).select_from(_CASES).where(_CASES.c.receipt_code_hash == bindparam("code_hash"))


async def submit_report(session: AsyncSession, report: NewReport, routing: Routing, *, secret_key: bytes,
                        case_number_prefix: str, year: int, staff_locale: str,
                        client_key: str | None = None, now: datetime | None = None,
                        search_terms: Iterable[str] = ()) -> Submitted:
    """File a report: the case in its queue with the classifier's tag and deadlines, its `received` and
    `routed` trace events, its evidence, the notices to the queue's staff groups and, where the channel
    knows the client's address, the address's report count, and the keyed hashes of `search_terms` for the
    console's search — all written before this returns."""
    while True:
        code = new_receipt_code()
        code_hash = receipt_code_hash(secret_key, code)
        taken = await session.scalar(_RECEIPT_TAKEN, {"code_hash": code_hash})
        if not taken:
            break
    now = now or utcnow()
    case = Case(
        receipt_code_hash=code_hash,
        channel=report.channel,
        reporter_ref=report.reporter_ref,
        reporter_key=pseudonym(session, report.channel, report.reporter_ref),
        locale=report.locale,
        district=report.district,
        place=report.place,
        occurred=report.occurred,
        description=report.description,
        anonymous=report.anonymous,
        reporter_name=None if report.anonymous else report.reporter_name,
        reporter_phone=None if report.anonymous else report.reporter_phone,
        status=CaseStatus.ROUTED,
        queue=routing.queue,
        label=routing.label,
        predicted_label=routing.label,
        label_confidence=routing.confidence,
        label_top=routing.top,
        label_terms=routing.terms,
        label_runner_up=routing.runner_up,
        label_contrast_terms=routing.contrast_terms if routing.runner_up else None,
        model_version=routing.model_version,
        routed_at=now,
        accept_due_at=routing.accept_due_at,
        resolve_due_at=routing.resolve_due_at,
        created_at=now,
        search_version=search.INDEX_VERSION,
    )
    session.add(case)
    await session.flush()
    await search.add_terms(session, case.id, case.created_at, search_terms)
    case.case_number = f"{case_number_prefix}-{year}-{case.id:06d}"
    await session.execute(insert(_TRACE), [
        {"case_id": case.id, "kind": TraceKind.RECEIVED, "actor": "reporter", "body": None, "detail": {},
         "created_at": now},
        {"case_id": case.id, "kind": TraceKind.ROUTED, "actor": "system", "body": None, "created_at": now,
         "detail": {"queue": routing.queue, "reason": routing.reason, "label": routing.label}},
    ])  # one statement for both
    if report.attachment_ids:
        await session.execute(
            update(Attachment)
            .where(Attachment.id.in_(report.attachment_ids), Attachment.case_id.is_(None))
            .values(case_id=case.id, client_key=None)  # the address's hash counts only while the file waits
        )
    if client_key is not None:
        session.add(ClientEvent(kind=ClientEventKind.REPORT, client_key=client_key,
                                created_at=now.replace(second=0, microsecond=0)))
    first_line = report.description.strip().splitlines()[0][:120] if report.description.strip() else ""
    for channel, recipient in routing.staff_targets:
        await outbox.enqueue(session, channel=channel, recipient=recipient, case_id=case.id, payload={
            "notice": "new_case", "locale": staff_locale, "case_number": case.case_number, "queue": case.queue,
            "label": case.label, "district": case.district, "first_line": first_line,
        })
    await session.flush()
    return Submitted(case.id, case.case_number, code)


_RECENT_REPORTS = select(func.count()).select_from(_CASES).where(
    _CASES.c.channel == bindparam("channel"), _CASES.c.reporter_key == bindparam("reporter_key"),
    _CASES.c.created_at >= bindparam("since"))


async def count_recent_reports(session: AsyncSession, channel: str, reporter_ref: str, since: datetime) -> int:
    return int(await session.scalar(_RECENT_REPORTS, {
        "channel": channel, "reporter_key": pseudonym(session, channel, reporter_ref), "since": since}) or 0)


# --- following a case -------------------------------------------------------------------------


async def find_case_by_receipt(session: AsyncSession, secret_key: bytes, code: str) -> Case | None:
    query = (
        select(Case)
        .where(Case.receipt_code_hash == receipt_code_hash(secret_key, code))
        .options(selectinload(Case.trace))
    )
    return (await session.execute(query)).scalar_one_or_none()


async def find_own_case_by_receipt(session: AsyncSession, secret_key: bytes, code: str,
                                   conversation: ConversationState) -> Case | None:
    """The case of receipt code `code` if `conversation` filed it (`filed_by`), else None: chosen by the database, so
    that someone else's valid code costs the same as a wrong one (nothing of their case is read)."""
    query = (
        select(Case)
        .where(Case.receipt_code_hash == receipt_code_hash(secret_key, code), Case.channel == conversation.channel,
               Case.reporter_key == conversation.user_key, Case.reporter_key != ERASED)
        .options(selectinload(Case.trace))
    )
    return (await session.execute(query)).scalar_one_or_none()


async def is_reporter(session: AsyncSession, case_id: int, channel: str, user_ref: str) -> bool:
    """Whether the case was filed by this channel user (compared by pseudonym)."""
    query = select(func.count()).select_from(_CASES).where(
        _CASES.c.id == case_id, _CASES.c.channel == channel,
        _CASES.c.reporter_key == pseudonym(session, channel, user_ref))
    return bool(await session.scalar(query))


async def get_case(session: AsyncSession, case_id: int) -> Case | None:
    query = select(Case).where(Case.id == case_id).options(selectinload(Case.trace))
    return (await session.execute(query)).scalar_one_or_none()


async def recent_wrong_codes(session: AsyncSession, channel: str, user_ref: str,
                             since: datetime) -> tuple[int, datetime | None]:
    """How many wrong receipt codes the resident entered since `since`, and when the oldest of them was."""
    query = select(func.count(), func.min(StatusGuess.created_at)).where(
        StatusGuess.channel == channel, StatusGuess.user_key == pseudonym(session, channel, user_ref),
        StatusGuess.created_at >= since,
    )
    count, oldest = (await session.execute(query)).one()
    if oldest is not None and oldest.tzinfo is None:  # func.min bypasses the column type on SQLite
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    return int(count or 0), oldest


async def record_wrong_code(session: AsyncSession, channel: str, user_ref: str, at: datetime | None = None,
                            *, client_key: str | None = None) -> None:
    at = at or utcnow()
    session.add(StatusGuess(channel=channel, user_key=pseudonym(session, channel, user_ref), created_at=at))
    if client_key is not None:
        session.add(ClientEvent(kind=ClientEventKind.WRONG_CODE, client_key=client_key,
                                created_at=at.replace(second=0, microsecond=0)))
    await session.flush()


ERASED = "erased"
"""What stands for a case's reporter address and its pseudonym once its contact details are erased
(`storage.housekeeping`)."""
OTHER_DEVICE = "other_device"
"""Key of a trace event's `detail`: the resident's step came, with the case's receipt code, from a channel user
other than the one who filed the case (another phone, browser or account): anyone holding a code can act on its
case, and staff should know that the words may not be the reporter's."""


def filed_by(case: Case, conversation: ConversationState) -> bool:
    """Whether `conversation` is of the channel user who filed `case` (by their keyed pseudonyms); False once
    the case's contact details are erased."""
    return case.reporter_key != ERASED and (case.channel, case.reporter_key) == (
        conversation.channel, conversation.user_key)


def from_other_device(case: Case, conversation: ConversationState) -> bool:
    """Whether `conversation` is of a channel user other than the one who filed `case`: compared by their keyed
    pseudonyms, no address read. Unknown, so False, once the case's contact details are erased."""
    return case.reporter_key != ERASED and not filed_by(case, conversation)


def by_whom(other_device: bool) -> dict[str, bool]:
    """What a resident's trace event says of who sent it: the mark of `OTHER_DEVICE`, or nothing."""
    return {OTHER_DEVICE: True} if other_device else {}


async def add_follow_up(
    session: AsyncSession, case: Case, *, text: str | None, attachment_ids: Sequence[int] = (),
    search_terms: Iterable[str] = (), other_device: bool = False, notify: bool = True
) -> TraceEvent:
    """Information the reporter adds: in the trace (marked `OTHER_DEVICE` when from another device than the report's),
    found by its words (`search_terms`), its assignee told unless `notify` is False (an album's further photo)."""
    if case.status in CLOSED_STATUSES:
        raise ActionError.of("case_closed")
    event = TraceEvent(
        case_id=case.id,
        kind=TraceKind.FOLLOW_UP,
        actor="reporter",
        body=text,
        detail={"attachments": len(attachment_ids), **by_whom(other_device)},
    )
    session.add(event)
    await session.flush()
    await staff_notices.follow_up_arrived(session, case, notify=notify)
    await search.add_terms(session, case.id, case.created_at, search_terms)
    if attachment_ids:
        await session.execute(
            update(Attachment)
            .where(Attachment.id.in_(attachment_ids), Attachment.case_id.is_(None))
            .values(case_id=case.id, trace_event_id=event.id)
        )
    return event


async def withdraw_follow_up(session: AsyncSession, event_id: int) -> None:
    """Take back a text the reporter added (`add_follow_up`) before they were told it was added: the first part of a
    text their app cut, added again whole with the rest (`handlers.dialog`); its staff notice goes with it."""
    withdrawn = (await session.execute(
        delete(TraceEvent).where(TraceEvent.id == event_id, TraceEvent.kind == TraceKind.FOLLOW_UP,
                                 TraceEvent.actor == "reporter")
        .returning(TraceEvent.case_id, TraceEvent.created_at).execution_options(synchronize_session=False))).first()
    if withdrawn is not None:
        await staff_notices.follow_up_withdrawn(session, withdrawn.case_id, withdrawn.created_at)


async def rate_case(session: AsyncSession, case: Case, rating: int) -> TraceEvent:
    if case.status not in CLOSED_STATUSES:
        raise ActionError.of("rate_not_closed")
    if case.rating is not None:
        raise ActionError.of("already_rated")
    if not 1 <= rating <= 5:
        raise ActionError.of("rating_range")
    case.rating = rating
    event = TraceEvent(case_id=case.id, kind=TraceKind.RATED, actor="reporter", detail={"rating": rating})
    session.add(event)
    await session.flush()
    return event


# --- status changes seen by the reporter ------------------------------------------------------


_STATUS_EVENT = {
    CaseStatus.ACCEPTED: TraceKind.ACCEPTED,
    CaseStatus.IN_HANDLING: TraceKind.IN_HANDLING,
    CaseStatus.ANSWERED: TraceKind.ANSWERED,
    CaseStatus.CLOSED: TraceKind.CLOSED,
    CaseStatus.REJECTED: TraceKind.REJECTED,
    CaseStatus.DUPLICATE: TraceKind.DUPLICATE,
}


TAKEN_ON = (CaseStatus.ACCEPTED, CaseStatus.IN_HANDLING, CaseStatus.ANSWERED, CaseStatus.CLOSED)
"""The statuses that say the office took the case on. A case first moved to one of them (or answered) without
"accept" is accepted then: `accepted_at` is when the case was accepted at the latest, which the statistics' time
to accept and the loop's on-time acceptance both read. Rejected or duplicate is not acceptance."""


async def change_status(
    session: AsyncSession, case: Case, status: CaseStatus, *, actor: str, body: str | None = None,
    rating_follows: bool = False,
) -> TraceEvent:
    """Move a case to a new status, with its trace event and a notice to the reporter; `rating_follows`: the same
    transaction asks the reporter to rate it (`loop.offer_rating`), so the notice only tells the status."""
    if status not in _STATUS_EVENT:
        raise ActionError.of("status_not_by_hand", status=status)
    if case.status == status:
        raise ActionError.of("status_already", status=status)
    case.status = status
    case.closed_at = utcnow() if status in CLOSED_STATUSES else None
    if status in TAKEN_ON and case.accepted_at is None:
        case.accepted_at = utcnow()  # handled, answered or closed without "accept" first: accepted by now
    event = TraceEvent(case_id=case.id, kind=_STATUS_EVENT[status], actor=actor, body=body, detail={})
    session.add(event)
    await outbox.enqueue(
        session,
        channel=case.channel,
        recipient=case.reporter_ref,
        payload={"notice": "status_changed", "locale": case.locale, "case_number": case.case_number,
                 "status": str(status), **({"note": body} if body else {}),
                 **({"rating_follows": True} if rating_follows else {})},
        case_id=case.id,
    )
    return event


async def reply_to_reporter(session: AsyncSession, case: Case, text: str, *, actor: str) -> TraceEvent:
    """Staff's answer: stored in the trace (shown by /status) and delivered through the outbox."""
    text = text.strip()
    if not text:
        raise ActionError.of("answer_needs_text")
    if case.status not in CLOSED_STATUSES:
        case.status = CaseStatus.ANSWERED
        if case.accepted_at is None:
            case.accepted_at = utcnow()  # answered without "accept" first: it was accepted no later than this
    event = TraceEvent(case_id=case.id, kind=TraceKind.ANSWERED, actor=actor, body=text, detail={})
    session.add(event)
    await outbox.enqueue(
        session,
        channel=case.channel,
        recipient=case.reporter_ref,
        payload={"notice": "answer", "locale": case.locale, "case_number": case.case_number, "answer": text},
        case_id=case.id,
    )
    return event

