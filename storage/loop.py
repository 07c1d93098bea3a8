"""The closed loop of a case, after its answer: the reporter rates it or says it is solved, a poor rating
reopens it for re-handling, a rejection can be appealed, a deadline can be extended by a supervisor, a
case moves between queues without the reporter seeing each internal hop. Each action writes its trace
event (what the reporter sees), its notices and, for staff, its audit record, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage import actions, audit, outbox, staff_notices
from storage.actions import ActionError, ActionInputError, change_status
from storage.models import (
    CLOSED_STATUSES,
    RESTING_STATES,
    Case,
    CaseStatus,
    Conversation,
    ExtensionRequest,
    StaffUser,
    TraceEvent,
    TraceKind,
    utcnow,
)
from storage.models.cases import ACCEPT_UNESCALATED_SQL, OPEN_SQL, RESOLVE_UNESCALATED_SQL

RATING_CHOICES = [[f"rate:{n}", "★" * n] for n in range(5, 0, -1)] + [["rate:unsolved", "unsolved"],
                                                                      ["rate:later", "later"]]
OFFER_DAYS = 30
FOR_CASE = "@"
"""Between a button's key and the id of the case a notice's button is about ("rate:5@17"): a button under an older
notice, about another case than the one the conversation now waits for, is answered as out of date rather than
taken for that case (`handlers.dialog`)."""


def for_case(key: str, case: Case) -> str:
    """The key of a notice's button about `case` (`FOR_CASE`)."""
    return f"{key}{FOR_CASE}{case.id}"


def button_parts(choice: str) -> tuple[str, str | None]:
    """(key, the id of the case a notice's button names, or None) of a button's choice (`for_case`)."""
    key, _, case_ref = choice.partition(FOR_CASE)
    return key, case_ref or None


def _staff_notice(notice: str, case: Case, locale: str, **extra: Any) -> dict[str, Any]:
    return {"notice": notice, "locale": locale, "case_number": case.case_number, "queue": case.queue, **extra}


async def _tell_staff(session: AsyncSession, case: Case, targets: Sequence[tuple[str, str]], notice: str,
                      locale: str, **extra: Any) -> None:
    for channel, recipient in targets:
        await outbox.enqueue(session, channel=channel, recipient=recipient, case_id=case.id,
                             payload=_staff_notice(notice, case, locale, **extra))


async def _tell_reporter(session: AsyncSession, case: Case, notice: str, **extra: Any) -> None:
    await outbox.enqueue(session, channel=case.channel, recipient=case.reporter_ref, case_id=case.id,
                         payload={"notice": notice, "locale": case.locale, "case_number": case.case_number, **extra})


CUT_SHORT = "cut_short"
"""In a conversation's context: the id of the case whose closing cut short what the resident was doing about it
(adding information, writing an appeal) and made the conversation wait for the rating (`offer_rating`); what they
send after that is not added to the closed case, and the dialog says so (`handlers.tracking`)."""
ADDING_STATES = ("follow_up", "appeal")
"""The dialog's states that add to a case (information, an appeal), which its closing cuts short."""


async def offer_rating(session: AsyncSession, case: Case, *, labels: Sequence[str], status_told: bool = False) -> None:
    """Ask the reporter to rate the closed case: a notice with the rating buttons, and their conversation waits
    for the answer, so a typed number or a button rates this case. It waits when they are in the middle of nothing
    else, or were adding information to (or appealing) this very case, which can take no more now: the notice
    then also says what became of that. `status_told`: the same transaction wrote the notice that the case closed
    (`actions.change_status(rating_follows=True)`), which tells the status and staff's note, so this one only asks
    (no "send /status" beside the buttons). `labels` are the localised labels of the choices (five ratings, "not
    solved", "later")."""
    choices = [[for_case(key, case), label] for (key, _), label in zip(RATING_CHOICES, labels, strict=True)]
    cut_short = await _await_answer(session, case, "rating", choices, cutting_short=ADDING_STATES)
    told = {"status_told": True} if status_told else {}
    await _tell_reporter(session, case, "rate_request", choices=choices, **told,
                         **({"cut_short": cut_short} if cut_short else {}))


async def _await_answer(session: AsyncSession, case: Case, state: str, choices: list[list[str]], *,
                        cutting_short: Sequence[str] = ()) -> str | None:
    """The reporter's conversation, when it is not in the middle of something else, waits in `state` for
    their answer about this case (for `OFFER_DAYS`), so that a button under a notice works without a code. So does
    one in a state of `cutting_short` about this very case, whatever draft it holds (it stays): that state is
    returned (None for any other)."""
    if case.reporter_key == "erased":
        return None
    conversation = (await session.execute(select(Conversation).where(
        Conversation.channel == case.channel, Conversation.user_key == case.reporter_key).with_for_update(),
    )).scalar_one_or_none()
    if conversation is None:
        return None
    context = {key: value for key, value in (conversation.context or {}).items()
               if key not in ("language_return", CUT_SHORT)}
    cut_short = conversation.state if conversation.state in cutting_short and \
        str(context.get("case_id")) == str(case.id) else None
    if cut_short is None and (conversation.state not in RESTING_STATES or conversation.draft_updated_at is not None):
        return None
    context.update(case_id=case.id, case_until=(utcnow() + timedelta(days=OFFER_DAYS)).isoformat(),
                   choices=choices, **({CUT_SHORT: case.id} if cut_short else {}))
    conversation.context = context
    conversation.state = state
    await session.flush()
    return cut_short


async def close_as_solved(session: AsyncSession, case: Case, *, other_device: bool = False) -> TraceEvent:
    """The reporter says the answer solved it: the answered case closes. (`other_device`: as
    `actions.add_follow_up`'s.)"""
    if case.status != CaseStatus.ANSWERED:
        raise ActionError.of("close_not_answered")
    case.status = CaseStatus.CLOSED
    case.closed_at = utcnow()
    event = TraceEvent(case_id=case.id, kind=TraceKind.SOLVED, actor="reporter", detail=actions.by_whom(other_device))
    session.add(event)
    await session.flush()
    return event


async def rate(session: AsyncSession, case: Case, rating: int | None, *, comment: str | None = None,
               unsolved: bool = False, rehandle_limit: int, staff_targets: Sequence[tuple[str, str]] = (),
               staff_locale: str = "zh", tell_reporter: bool = False, other_device: bool = False) -> bool:
    """The reporter's rating (1–5) of a closed case, or "not solved", with an optional comment. A rating of 1–2 or
    "not solved" reopens the case for re-handling in its queue while the case's re-handlings stay within
    `rehandle_limit`, and its staff groups are told — and, with `tell_reporter` (the city notifies of
    "reopened"), the reporter by a notice, which shows on the ticket with its delivery state. Returns whether
    it was reopened. (`other_device`: as `actions.add_follow_up`'s.)"""
    if case.status not in CLOSED_STATUSES:
        raise ActionError.of("rate_not_closed")
    if case.rating is not None:
        raise ActionError.of("already_rated")
    if rating is not None and not 1 <= rating <= 5:
        raise ActionInputError.of("rating_range")
    if rating is None and not unsolved:
        raise ActionInputError.of("rating_or_unsolved")
    comment = (comment or "").strip() or None
    case.rating = rating if rating is not None else 1
    session.add(TraceEvent(case_id=case.id, kind=TraceKind.RATED, actor="reporter", body=comment or None,
                           detail={"rating": rating, "unsolved": unsolved, **actions.by_whom(other_device)}))
    poor = unsolved or (rating is not None and rating <= 2)
    if not poor or case.rehandle_count >= rehandle_limit or case.status != CaseStatus.CLOSED:
        await session.flush()
        return False
    case.rehandle_count += 1
    case.rating = None  # the re-handled case is rated again when it closes again
    case.status = CaseStatus.IN_HANDLING
    case.closed_at = None
    session.add(TraceEvent(case_id=case.id, kind=TraceKind.REOPENED, actor="reporter", body=comment or None,
                           detail={"rating": rating, "unsolved": unsolved, **actions.by_whom(other_device)}))
    await _tell_staff(session, case, staff_targets, "rehandle", staff_locale, rating=rating, unsolved=unsolved)
    if tell_reporter:
        await _tell_reporter(session, case, "reopened")
    await session.flush()
    return True


async def appeal(session: AsyncSession, case: Case, text: str, *, appeal_limit: int,
                 staff_targets: Sequence[tuple[str, str]] = (), staff_locale: str = "zh",
                 other_device: bool = False) -> TraceEvent:
    """The reporter appeals a rejection; a supervisor decides. (`other_device`: as `actions.add_follow_up`'s.)"""
    if case.status != CaseStatus.REJECTED:
        raise ActionError.of("appeal_not_rejected")
    if case.appeal_pending:
        raise ActionError.of("appeal_pending")
    if case.appeal_count >= appeal_limit:
        raise ActionError.of("appeal_again")
    case.appeal_count += 1
    case.appeal_pending = True
    event = TraceEvent(case_id=case.id, kind=TraceKind.APPEALED, actor="reporter", body=text.strip() or None,
                       detail=actions.by_whom(other_device))
    session.add(event)
    await _tell_staff(session, case, staff_targets, "appeal", staff_locale)
    await session.flush()
    return event


async def decide_appeal(session: AsyncSession, case: Case, *, actor: StaffUser, uphold: bool,
                        reason: str) -> TraceEvent:
    """A supervisor upholds the rejection (with the reason) or reopens the case for handling."""
    reason = reason.strip()
    if not reason:
        raise ActionInputError.of("appeal_needs_reason")
    if not case.appeal_pending:
        raise ActionError.of("no_appeal")
    case.appeal_pending = False
    event = TraceEvent(case_id=case.id, kind=TraceKind.APPEAL_DECIDED, actor=f"staff:{actor.id}", body=reason,
                       detail={"upheld": uphold})
    session.add(event)
    if not uphold:
        case.status = CaseStatus.ROUTED if case.accepted_at is None else CaseStatus.IN_HANDLING
        case.closed_at = None
    await audit.record(session, actor, "case.appeal_decided", case=case, detail={"upheld": uphold, "reason": reason})
    await _tell_reporter(session, case, "appeal_decided", upheld=uphold, reason=reason)
    await session.flush()
    return event


EXTENSION_MAX_DAYS = 30
"""Days an extension may add to a case's resolve-by date, unless the city says otherwise (`loop.extension_max_days`;
China's rules on letters and visits allow a handling period of 60 days to be extended by at most 30)."""


async def request_extension(session: AsyncSession, case: Case, *, actor: StaffUser, reason: str,
                            resolve_due_at: datetime, staff_targets: Sequence[tuple[str, str]] = (),
                            staff_locale: str = "zh", max_days: int = EXTENSION_MAX_DAYS) -> ExtensionRequest:
    """A reviewer asks a supervisor for a later resolve-by date, at most `max_days` after the current one (or after
    now, for a case without one)."""
    reason = reason.strip()
    if not reason:
        raise ActionInputError.of("extension_needs_reason")
    if case.status in CLOSED_STATUSES:
        raise ActionError.of("case_is_status", number=case.case_number, status=case.status)
    if case.resolve_due_at is not None and resolve_due_at <= case.resolve_due_at:
        raise ActionInputError.of("extension_not_later")
    latest = (case.resolve_due_at or utcnow()) + timedelta(days=max_days, hours=23, minutes=59, seconds=59)
    if resolve_due_at > latest:  # (to the end of the last day, as the console asks for a day)
        raise ActionInputError.of("extension_too_long", days=max_days)
    waiting = await session.scalar(select(ExtensionRequest.id).where(ExtensionRequest.case_id == case.id,
                                                                    ExtensionRequest.status == "pending"))
    if waiting is not None:
        raise ActionError.of("extension_waiting")
    request = ExtensionRequest(case_id=case.id, requested_by_id=actor.id, reason=reason, resolve_due_at=resolve_due_at)
    session.add(request)
    await session.flush()
    await audit.record(session, actor, "case.extension_requested", case=case,
                 detail={"request_id": request.id, "until": resolve_due_at.isoformat(), "reason": reason})
    await _tell_staff(session, case, staff_targets, "extension_request", staff_locale, until=resolve_due_at.isoformat())
    await session.flush()
    return request


async def decide_extension(session: AsyncSession, request: ExtensionRequest, case: Case, *, actor: StaffUser,
                           approve: bool, note: str = "") -> None:
    """A supervisor approves (the case gets the new resolve-by date, the reporter is told it) or refuses (a
    staff-only trace event); both are audited. The request of a case closed meanwhile can only be refused."""
    if request.status != "pending":
        raise ActionError.of("extension_decided")
    if approve and case.status in CLOSED_STATUSES:  # its deadline no longer runs; a refusal still clears it
        raise ActionError.of("extension_case_closed", number=case.case_number, status=case.status)
    request.status = "approved" if approve else "refused"
    request.decided_by_id = actor.id
    request.decided_at = utcnow()
    await audit.record(session, actor, "case.extension_approved" if approve else "case.extension_refused", case=case,
                 detail={"request_id": request.id, "until": request.resolve_due_at.isoformat(), "note": note.strip()})
    if approve:
        case.resolve_due_at = request.resolve_due_at
        case.extension_count += 1
        session.add(TraceEvent(case_id=case.id, kind=TraceKind.EXTENDED, actor=f"staff:{actor.id}",
                               detail={"until": request.resolve_due_at.isoformat()}))
        await _tell_reporter(session, case, "extended", until=request.resolve_due_at.isoformat())
    else:  # in the trace for the staff; the reporter's deadline stands, so they are not told
        session.add(TraceEvent(case_id=case.id, kind=TraceKind.EXTENSION_REFUSED, actor=f"staff:{actor.id}",
                               body=note.strip() or None,
                               detail={"until": request.resolve_due_at.isoformat(), "request_id": request.id,
                                       "internal": True}))
    await session.flush()


async def pending_extensions(session: AsyncSession,
                             queues: Sequence[str] | None) -> list[tuple[ExtensionRequest, Case]]:
    """The requests waiting for a supervisor, of cases still open (a case closed meanwhile has no deadline to
    extend)."""
    query = (select(ExtensionRequest, Case).join(Case, Case.id == ExtensionRequest.case_id)
             .where(ExtensionRequest.status == "pending", Case.status.not_in(sorted(CLOSED_STATUSES)))
             .order_by(ExtensionRequest.id))
    if queues is not None:
        query = query.where(Case.queue.in_(queues))
    return [(request, case) for request, case in (await session.execute(query)).all()]


async def extension_requests(session: AsyncSession, case_id: int) -> list[ExtensionRequest]:
    query = select(ExtensionRequest).where(ExtensionRequest.case_id == case_id).order_by(ExtensionRequest.id)
    return list((await session.execute(query)).scalars())


async def tell_reporter(session: AsyncSession, case: Case, text: str, *, actor: StaffUser) -> TraceEvent:
    """A note of the staff for the reporter: in their trace and sent to them."""
    text = text.strip()
    if not text:
        raise ActionInputError.of("note_to_reporter_needs_text")
    event = TraceEvent(case_id=case.id, kind=TraceKind.NOTE, actor=f"staff:{actor.id}", body=text, detail={})
    session.add(event)
    await audit.record(session, actor, "case.note_to_reporter", case=case)
    await _tell_reporter(session, case, "note", note=text)
    await session.flush()
    return event


async def ask_for_information(session: AsyncSession, case: Case, question: str, *, actor: StaffUser,
                              add_label: str) -> TraceEvent:
    """Staff ask the reporter for more information: the question is in the reporter's trace and sent to them
    with the button that starts adding information (`add_label`, in their language), which their
    conversation then waits for; they answer with the follow-up of their case."""
    question = question.strip()
    if not question:
        raise ActionInputError.of("more_info_needs_question")
    if case.status in CLOSED_STATUSES:
        raise ActionError.of("case_is_status", number=case.case_number, status=case.status)
    event = TraceEvent(case_id=case.id, kind=TraceKind.MORE_INFO, actor=f"staff:{actor.id}", body=question,
                       detail={})
    session.add(event)
    await audit.record(session, actor, "case.more_info_asked", case=case, detail={"question": question})
    choices = [[for_case("case:follow_up", case), add_label]]
    await _tell_reporter(session, case, "more_info", question=question, choices=choices)
    await _await_answer(session, case, "case_menu", choices)
    await session.flush()
    return event


async def reject(session: AsyncSession, case: Case, *, actor: StaffUser, reason: str, referral: str) -> TraceEvent:
    """Not for this service: the reporter is told why and where to turn instead (both required)."""
    reason, referral = reason.strip(), referral.strip()
    if not reason or not referral:
        raise ActionInputError.of("rejection_needs_reason")
    event = await change_status(session, case, CaseStatus.REJECTED, actor=f"staff:{actor.id}",
                                body=f"{reason}\n{referral}")
    await audit.record(session, actor, "case.status", case=case,
                 detail={"status": "rejected", "reason": reason, "referral": referral})
    await session.flush()
    return event


async def transfer(session: AsyncSession, case: Case, queue: str, *, actor: StaffUser, reason: str,
                   alert_after: int | None = None, reason_code: str | None = None,
                   deadlines: tuple[datetime | None, datetime | None] | None = None,
                   staff_targets: Sequence[tuple[str, str]] = (), staff_locale: str = "zh") -> TraceEvent:
    """Move the case to another queue. A staff transfer keeps the deadlines (it is not an extension); a case
    routed anew — its label corrected — takes `deadlines` (accept-by, resolve-by) of its new queue, counted from
    now. The reporter's trace says "transferred to the responsible office" once, whatever the internal hops;
    the `alert_after`-th transfer and every one after it tell the new queue's staff groups. A closed case stays with
    the queue that closed it (its figures, its reporter's trace): it is reopened before it moves."""
    if case.status in CLOSED_STATUSES:
        raise ActionError.of("move_closed", number=case.case_number, status=case.status)
    reason = reason.strip()
    if not reason:
        raise ActionInputError.of("move_needs_reason")
    if queue == case.queue:
        raise ActionError.of("move_same_queue", queue=queue)
    previous = case.queue
    case.queue = queue
    case.assigned_to_id = None
    case.transfer_count += 1
    if deadlines is not None:
        case.routed_at = utcnow()
        case.accept_due_at, case.resolve_due_at = deadlines
    event = TraceEvent(case_id=case.id, kind=TraceKind.ROUTED, actor=f"staff:{actor.id}",
                       detail={"queue": queue, "reason": "moved", "from": previous, "internal": True})
    session.add(event)
    await staff_notices.refresh_unread(session, case.id)  # assigned to nobody: unread unless anyone saw it
    told = await session.scalar(select(TraceEvent.id).where(TraceEvent.case_id == case.id,
                                                          TraceEvent.kind == TraceKind.TRANSFERRED))
    if told is None:
        session.add(TraceEvent(case_id=case.id, kind=TraceKind.TRANSFERRED, actor=f"staff:{actor.id}", detail={}))
    detail: dict[str, Any] = {"from": previous, "to": queue, "reason": reason, "transfers": case.transfer_count}
    if reason_code:
        detail["reason_code"] = reason_code
    await audit.record(session, actor, "case.move", case=case, detail=detail)
    if alert_after is not None and case.transfer_count >= alert_after:
        await _tell_staff(session, case, staff_targets, "transfer_alert", staff_locale, transfers=case.transfer_count,
                          source=previous)
    await session.flush()
    return event


def deadline_of(case: Case) -> tuple[str, datetime] | None:
    """The deadline a case is working towards now: acceptance until it is accepted, then resolution."""
    if case.status in CLOSED_STATUSES:
        return None
    if case.accepted_at is None and case.accept_due_at is not None:
        return "accept", case.accept_due_at
    if case.resolve_due_at is not None:
        return "resolve", case.resolve_due_at
    return None


DEADLINE_BATCH = 500
"""Cases the deadline round tells of per transaction. Each batch's cases are looked at in the event loop: batches
of 500 hold it for under 5 ms (`benchmarks.jobs_lag`)."""


def _accept_is_current() -> ColumnElement[bool]:
    """An open case works towards its accept-by date (`deadline_of`), not escalated for it yet — word for word the
    predicate of the partial index `ix_cases_accept_unescalated`, so that the database reads that index."""
    return and_(text(OPEN_SQL), text(ACCEPT_UNESCALATED_SQL))


def _resolve_is_current() -> ColumnElement[bool]:
    """The same for the resolve-by date (`ix_cases_resolve_unescalated`)."""
    return and_(text(OPEN_SQL), text(RESOLVE_UNESCALATED_SQL))


def _not_warned(kind: str, due: InstrumentedAttribute[datetime | None]) -> ColumnElement[bool]:
    return or_(Case.warned_due_at.is_(None), Case.warned_kind != kind, Case.warned_due_at != due)


def untold_deadline_query(before: datetime, now: datetime) -> Select[int]:
    """The ids of the open cases whose staff are still to be told of their current deadline: escalated if it
    passed before `now` (and they were not escalated for it), warned if it falls at or before `before` (and they
    were not warned of it).

    It reads only the two partial indexes of cases not escalated for their current deadline, over the deadlines up
    to `before`: a case leaves them once escalated. So a backlog of overdue cases told long ago costs nothing,
    and a round reads the cases it has to tell, those it warned within the horizon, and nothing else. (No ORDER
    BY / LIMIT: with them SQLite walks the whole table by id rather than the two small indexes.)"""
    accept = and_(_accept_is_current(), Case.accept_due_at <= before,
                  or_(Case.accept_due_at < now, _not_warned("accept", Case.accept_due_at)))
    resolve = and_(_resolve_is_current(), Case.resolve_due_at <= before,
                   or_(Case.resolve_due_at < now, _not_warned("resolve", Case.resolve_due_at)))
    return select(Case.id).where(or_(accept, resolve))


async def untold_deadline_case_ids(session: AsyncSession, before: datetime, now: datetime) -> list[int]:
    """`untold_deadline_query`'s cases, in id order."""
    return sorted(int(case_id) for case_id in (await session.execute(untold_deadline_query(before, now))).scalars())


async def cases_by_id(session: AsyncSession, ids: Sequence[int]) -> list[Case]:
    """Whole cases (to tell of them), in id order."""
    return list((await session.execute(select(Case).where(Case.id.in_(ids)).order_by(Case.id))).scalars()) \
        if ids else []


async def warn(session: AsyncSession, case: Case, *, staff_targets: Sequence[tuple[str, str]],
               staff_locale: str) -> bool:
    """Tell the queue's staff groups that the case's deadline nears, once per deadline."""
    current = deadline_of(case)
    if current is None or (case.warned_kind, case.warned_due_at) == current:
        return False
    case.warned_kind, case.warned_due_at = current
    await _tell_staff(session, case, staff_targets, "due_soon", staff_locale, deadline=current[0],
                      until=current[1].isoformat())
    await session.flush()
    return True


async def escalate(session: AsyncSession, case: Case, *, staff_targets: Sequence[tuple[str, str]],
                   staff_locale: str) -> bool:
    """An overdue case goes to the queue's supervisor (its staff groups, and the console's overdue list),
    once per deadline; the escalation is in the audit log."""
    current = deadline_of(case)
    if current is None or (case.escalated_kind, case.escalated_due_at) == current:
        return False
    case.escalated_kind, case.escalated_due_at = current
    await audit.record(session, None, "case.escalated", case=case,
                 detail={"deadline": current[0], "due": current[1].isoformat()})
    await _tell_staff(session, case, staff_targets, "escalation", staff_locale, deadline=current[0],
                      until=current[1].isoformat())
    await session.flush()
    return True
