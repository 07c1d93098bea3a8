"""What staff can do to tickets, once for the pages and the REST API.

Each operation is one transaction opened here (the edge): it loads the case, applies the
permission rules (a case outside the user's queues does not exist for them: 404), runs the
storage action(s), and returns plain data. Routes only parse input and render the result.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from console import texts
from console.auth import Principal, can_reveal_identity, can_see, has_role, visible_queues
from console.evidence import EvidenceUnreadable, NoThumbnail, evidence_response, thumbnail_response
from handlers import reply_quality, tracking
from handlers.evidence import display_name
from handlers.routing import route, staff_channels
from handlers.texts import Texts
from handlers.validation import readable
from nlp.reply_quality import ReplyScore
from nlp.search import query_terms
from nlp.types import Tag
from storage import audit, loop, notices, queries, reply_scores, staff_actions
from storage.actions import ActionError, ActionInputError
from storage.models import (
    Attachment,
    AuditEntry,
    Case,
    CaseStatus,
    ExtensionRequest,
    InternalNote,
    StaffRole,
    StaffUser,
    utcnow,
)
from storage.notices import NoticeState

MAX_ID = 2**31 - 1
"""The largest row id a request may name (the ids are 32-bit integers): a larger number is a 422, not a database
error."""
INLINE_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
LABELS = ("slow_service", "lazy_procrastination", "formalism", "project_irregularity", "village_affairs",
          "medical", "education", "bribery_gifts", "other")
SETTABLE_STATUSES = (CaseStatus.ACCEPTED, CaseStatus.IN_HANDLING, CaseStatus.ANSWERED, CaseStatus.CLOSED,
                     CaseStatus.REJECTED)


class OperationError(Exception):
    """A refusal with its HTTP status. `key` names the reason among the console's texts (`refusal.<key>`, with
    `values`), so that a page says it in the reader's language; `message` is its English, which the REST API
    answers with as `detail`."""

    def __init__(self, status_code: int, key: str, /, **values: object) -> None:
        self.status_code = status_code
        self.key = key
        self.values = values
        self.message = texts.get("en", f"refusal.{key}", **values)
        super().__init__(self.message)

    @classmethod
    def refused(cls, status_code: int, error: ActionError) -> OperationError:
        """A storage action's refusal under its own code (`storage.actions.REFUSALS`); one raised with a message
        of its own only has that message."""
        return cls(status_code, error.code, **error.values) if error.code else cls(status_code, "other",
                                                                                    detail=str(error))


@dataclass
class CaseDetail:
    case: Case
    notes: list[tuple[InternalNote, str | None]]
    assignee: str | None
    duplicate_of: str | None
    can_reveal: bool
    assignee_username: str | None = None
    #: every message of the case to its reporter with its delivery state (queued, sent, waiting, failed)
    notices: list[NoticeState] = field(default_factory=list)
    extensions: list[ExtensionRequest] = field(default_factory=list)


def typed_case_number(text: str) -> str:
    """A case number as staff typed or pasted it: full-width letters, digits and hyphens (a Chinese keyboard's) read
    as their ASCII, invisible and direction marks and spaces around it dropped."""
    return unicodedata.normalize("NFKC", readable(text))


async def load_case(session: AsyncSession, principal: Principal, case_number: str) -> Case:
    """The case, if it is in the user's queues (else 404)."""
    case_number = typed_case_number(case_number)
    case = await queries.case_by_number(session, case_number)
    if case is None or not can_see(principal.user, case):
        raise OperationError(404, "no_case", number=case_number)
    return case


def _wrap(error: ActionError) -> OperationError:
    """422 when what was sent cannot be used (a blank reason), 409 when the case's state refuses the action."""
    return OperationError.refused(422 if isinstance(error, ActionInputError) else 409, error)


def _scoped(principal: Principal, flt: queries.CaseFilter) -> float:
    """Narrow the filter to the user's queues and look up its search terms; the review threshold."""
    allowed = visible_queues(principal.user)
    if allowed is not None:
        flt.queues = allowed if flt.queues is None else set(flt.queues) & allowed
    if flt.text and not flt.terms:
        flt.terms = tuple(query_terms(flt.text))
    return principal.context.city.routing.confidence_threshold


async def list_cases(principal: Principal, flt: queries.CaseFilter, *, per_page: int,
                     after: queries.CaseCursor | None = None, before: queries.CaseCursor | None = None,
                     only: Sequence[InstrumentedAttribute[Any]] = ()) -> queries.CasePage:
    """Only ever the user's queues, whatever queue the filter asks for (`only`: as `queries.list_cases`)."""
    threshold = _scoped(principal, flt)
    async with principal.context.database.read_sessionmaker() as session:
        return await queries.list_cases(session, flt, per_page=per_page, after=after, before=before,
                                        threshold=threshold, only=only)


async def count_cases(principal: Principal, flt: queries.CaseFilter,
                      cap: int = queries.COUNT_CAP) -> queries.CaseCount:
    """How many cases of the user's queues match, up to `cap`."""
    threshold = _scoped(principal, flt)
    async with principal.context.database.read_sessionmaker() as session:
        return await queries.count_cases(session, flt, threshold=threshold, cap=cap)


PAGE_KEYS = ("after", "before")
"""The query parameters that say where a page of a case list starts: not part of its filter."""


async def case_page(principal: Principal, flt: queries.CaseFilter, *, after: str | None, before: str | None,
                    per_page: int) -> tuple[queries.CasePage, queries.CaseCount]:
    """One page of the user's cases matching `flt` — the first, the older ones after the cursor `after`, or else
    the newer ones before `before` (422 for a cursor the list did not hand out) — and how many match."""
    if after and before:
        raise OperationError(422, "cursor_both")
    start = parse_cursor(after, "after")
    end = parse_cursor(before, "before")
    listed = await list_cases(principal, flt, per_page=per_page, after=start, before=end)
    return listed, await count_cases(principal, flt)


def cursor_param(cursor: queries.CaseCursor) -> str:
    """A list's place as the `after` / `before` parameter of its links (`parse_cursor` reads it back)."""
    raw = f"{cursor.created_at.astimezone(UTC).isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(value: str | None, name: str) -> queries.CaseCursor | None:
    """The cursor of a list's `after` / `before` parameter; 422 for one this list did not hand out."""
    if not value:
        return None
    refused = OperationError(422, "bad_cursor", name=name)
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        stamp, _, number = raw.partition("|")
        created_at, case_id = datetime.fromisoformat(stamp), int(number)
        if created_at.tzinfo is None or not 1 <= case_id <= MAX_ID:
            raise refused
        created_at = created_at.astimezone(UTC)  # a year 1 or 9999 moment in a far zone leaves the calendar
    except (ValueError, OverflowError, UnicodeDecodeError, binascii.Error):
        raise refused from None
    return queries.CaseCursor(created_at, case_id)


async def overview(principal: Principal) -> dict[str, queries.QueueCounts]:
    allowed = visible_queues(principal.user)
    queues = allowed if allowed is not None else {q.code for q in principal.context.city.queues}
    async with principal.context.database.read_sessionmaker() as session:
        counts = await queries.queue_counts(session, queues)
    # in the configuration's order (the city's groups, then its districts, as it lists them), not the codes'; a
    # queue the configuration no longer has (still assigned, its cases still there) after them
    configured = [q.code for q in principal.context.city.queues]
    ordered = [code for code in configured if code in queues] + sorted(set(queues) - set(configured))
    return {queue: counts.get(queue, queries.QueueCounts(queue, 0, 0, 0)) for queue in ordered}


async def case_detail(principal: Principal, case_number: str, *, ip: str | None,
                      audit_view: bool = True) -> CaseDetail:
    """A ticket with everything this user may see; the view itself is audited (unless it is only the
    result of an action the user just took, which has its own audit record)."""
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        if audit_view:
            await staff_actions.record_view(session, case, actor=principal.user, ip=ip)
        notes = await queries.notes_for(session, case.id)
        assignee = await staff_actions.get_staff(session, case.assigned_to_id) if case.assigned_to_id else None
        original = await queries.case_by_id(session, case.duplicate_of_id) if case.duplicate_of_id else None
        delivery = await notices.notice_states(session, case.id)
        extensions = await loop.extension_requests(session, case.id)
    return CaseDetail(case, notes, assignee.display_name if assignee else None,
                      original.case_number if original else None,
                      can_reveal_identity(principal.user, principal.context.city) and not case.anonymous,
                      assignee.username if assignee else None, delivery, extensions)


async def accept(principal: Principal, case_number: str) -> None:
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        try:
            await staff_actions.accept_case(session, case, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None


async def confirm_label(principal: Principal, case_number: str, expected: str | None = None) -> None:
    """Confirm the current label; with `expected`, only if that is still the label (409 otherwise)."""
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        if expected is not None and expected != case.label:
            raise OperationError(409, "label_changed", label=case.label, expected_label=expected)
        try:
            await staff_actions.confirm_label(session, case, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None


async def correct_label(principal: Principal, case_number: str, label: str) -> str:
    """Set the label staff decided; an open case moves where routing sends that label (a closed one stays).
    Returns its queue."""
    if label not in LABELS:
        raise OperationError(422, "unknown_label", code=label, choices=", ".join(LABELS))
    city = principal.context.city
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        decision = route(city, Tag(label, 1.0), case.district, utcnow())
        try:
            # a transfer is not an extension: the case keeps the deadlines it was filed with
            await staff_actions.correct_label(session, case, label, actor=principal.user, queue=decision.queue,
                                              accept_due_at=case.accept_due_at, resolve_due_at=case.resolve_due_at)
        except ActionError as error:
            raise _wrap(error) from None
        return case.queue


def check_transfer_reason(principal: Principal, reason_code: str | None) -> None:
    """A transfer's reason code is none or one of the city's (`loop.transfer_reasons`)."""
    if reason_code and reason_code not in principal.context.city.loop.transfer_reasons:
        raise OperationError(422, "unknown_transfer_reason", code=reason_code[:60])


async def move(principal: Principal, case_number: str, queue: str, reason: str,
               reason_code: str | None = None) -> None:
    """Transfer a case; its deadlines stay. Returning it to triage, or moving it out of one's own queues, needs
    one of the city's transfer reasons as well as the free text."""
    city = principal.context.city
    if city.queue(queue) is None:
        raise OperationError(422, "unknown_queue", code=queue)
    check_transfer_reason(principal, reason_code)
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        own = visible_queues(principal.user)
        leaving = queue == city.routing.triage_queue or (own is not None and queue not in own)
        if leaving and reason_code not in city.loop.transfer_reasons:
            raise OperationError(422, "transfer_reason_needed", reasons=", ".join(city.loop.transfer_reasons))
        try:
            await loop.transfer(session, case, queue, actor=principal.user, reason=reason.strip(),
                                reason_code=reason_code or None, alert_after=city.loop.transfer_alert_after,
                                staff_targets=staff_channels(city, queue), staff_locale=city.default_locale)
        except ActionError as error:
            raise _wrap(error) from None


async def set_status(principal: Principal, case_number: str, status: str, note: str | None = None,
                     referral: str | None = None) -> None:
    """A new status, told to the reporter with the note. A rejection needs its reason (the note) and where the
    reporter can turn instead; closing a case asks the reporter to rate it."""
    try:
        wanted = CaseStatus(status)
    except ValueError:
        raise OperationError(422, "unknown_status", code=status) from None
    if wanted not in SETTABLE_STATUSES:
        raise OperationError(422, "status_not_settable", status=status)
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        try:
            if wanted == CaseStatus.REJECTED:
                await loop.reject(session, case, actor=principal.user, reason=note or "", referral=referral or "")
            else:
                await staff_actions.set_status(session, case, wanted, actor=principal.user, body=note or None,
                                               rating_labels=rating_labels(principal, case.locale))
        except ActionError as error:
            raise _wrap(error) from None


def rating_labels(principal: Principal, locale: str) -> list[str]:
    """The reporter's rating choices in their language, as the dialog offers them."""
    return tracking.rating_labels(Texts(principal.context.city.texts), locale)


async def tell_reporter(principal: Principal, case_number: str, text: str) -> None:
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        try:
            await loop.tell_reporter(session, case, text, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None


async def ask_for_information(principal: Principal, case_number: str, question: str) -> None:
    """The reporter is asked the question on their channel, with the button that adds information."""
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        label = Texts(principal.context.city.texts).get(case.locale, "case_follow_up")
        try:
            await loop.ask_for_information(session, case, question, actor=principal.user, add_label=label)
        except ActionError as error:
            raise _wrap(error) from None


async def request_extension(principal: Principal, case_number: str, until: date, reason: str) -> None:
    city = principal.context.city
    resolve_by = datetime.combine(until, time(23, 59, 59), ZoneInfo(city.timezone)).astimezone(UTC)
    if resolve_by <= utcnow():  # a case without a resolve-by date took any day, the year 1 too
        raise OperationError(422, "extension_in_past", until=until.isoformat())
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        try:
            await loop.request_extension(session, case, actor=principal.user, reason=reason, resolve_due_at=resolve_by,
                                         staff_targets=staff_channels(city, case.queue),
                                         staff_locale=city.default_locale, max_days=city.loop.extension_max_days)
        except ActionError as error:
            raise _wrap(error) from None


async def decide_extension(principal: Principal, case_number: str, request_id: int, approve: bool,
                           note: str = "") -> None:
    require_supervisor(principal)
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        request = next((r for r in await loop.extension_requests(session, case.id) if r.id == request_id), None)
        if request is None:
            raise OperationError(404, "no_extension_request")
        try:
            await loop.decide_extension(session, request, case, actor=principal.user, approve=approve, note=note)
        except ActionError as error:
            raise _wrap(error) from None


async def decide_appeal(principal: Principal, case_number: str, uphold: bool, reason: str) -> None:
    require_supervisor(principal)
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        try:
            await loop.decide_appeal(session, case, actor=principal.user, uphold=uphold, reason=reason)
        except ActionError as error:
            raise _wrap(error) from None


async def extensions_of(principal: Principal, case_id: int) -> list[ExtensionRequest]:
    async with principal.context.database.read_sessionmaker() as session:
        return await loop.extension_requests(session, case_id)


async def mark_duplicate(principal: Principal, case_number: str, original_number: str) -> None:
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        original_number = typed_case_number(original_number)
        original = await queries.case_by_number(session, original_number)
        if original is None or not can_see(principal.user, original):
            raise OperationError(422, "no_case", number=original_number)
        try:
            await staff_actions.mark_duplicate(session, case, original, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None


async def add_note(principal: Principal, case_number: str, body: str) -> None:
    if len(body) > 10_000:
        raise OperationError(422, "note_too_long")
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        try:
            await staff_actions.add_note(session, case, body, actor=principal.user)
        except ActionError as error:
            raise OperationError.refused(422, error) from None


async def assign(principal: Principal, case_number: str, username: str | None) -> None:
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        assignee = None
        if username and username != principal.user.username:
            # Reviewers take a case themselves or let it go; handing it to others is a supervisor's call.
            require_supervisor(principal)
        if username:
            assignee = await staff_actions.get_staff_by_username(session, username)
            if assignee is None or not assignee.active:
                raise OperationError(422, "no_active_staff", username=username)
            if not can_see(assignee, case):
                # by name, as the assignee list that the colleague was picked from names them
                raise OperationError(422, "not_in_queue", colleague=assignee.display_name, queue=case.queue)
        await staff_actions.assign_case(session, case, assignee, actor=principal.user)


def score_answer(principal: Principal, case: Case, text: str, now: datetime) -> ReplyScore:
    """How `text` answers `case` (relevance, completeness, clarity, timeliness), as the check before sending
    shows it and as it is stored with the answer."""
    return reply_quality.score_answer(principal.context.city, case, text, now)


async def answer_case(session: AsyncSession, principal: Principal, case: Case, text: str, now: datetime) -> None:
    """Send the answer to the case's reporter and keep its quality scores with it."""
    try:
        event = await staff_actions.answer_reporter(session, case, text, actor=principal.user)
    except ActionError as error:
        raise OperationError.refused(422, error) from None
    await session.flush()
    await reply_scores.record(session, event, case, reply_quality.stored(score_answer(principal, case, text, now)))


async def answer(principal: Principal, case_number: str, text: str) -> None:
    if len(text) > 3000:
        raise OperationError(422, "answer_too_long")
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        await answer_case(session, principal, case, text, utcnow())
    principal.context.wake_outbox()


async def reveal_identity(principal: Principal, case_number: str, *, ip: str | None,
                          reason: str | None) -> tuple[str | None, str | None]:
    """A real-name reporter's name and phone, for the roles the city allows; the reveal and its reason are
    audited."""
    if not can_reveal_identity(principal.user, principal.context.city):
        raise OperationError(403, "identity_forbidden")
    if not staff_actions.identity_reason_says_enough(reason):
        raise OperationError(422, "identity_needs_reason", chars=staff_actions.IDENTITY_REASON_MIN_CHARS)
    if reason is None or len(reason) > 500:
        raise OperationError(422, "reason_too_long")
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        try:
            return await staff_actions.reveal_identity(session, case, actor=principal.user, ip=ip, reason=reason)
        except ActionError as error:
            raise _wrap(error) from None


async def identity_shown_again(principal: Principal, case_number: str) -> tuple[str | None, str | None]:
    """The identity this user revealed moments ago (the ticket page after the reveal, or reloaded): no new
    reveal, the page's view is audited."""
    if not can_reveal_identity(principal.user, principal.context.city):
        raise OperationError(403, "identity_forbidden")
    async with principal.context.database.read_sessionmaker() as session:
        case = await load_case(session, principal, case_number)
        if case.anonymous:
            return None, None
        return case.reporter_name, case.reporter_phone


@dataclass(frozen=True)
class EvidenceFile:
    """An evidence file a user may see: where it is stored, its row, and the neutral name staff see it under."""

    path: Path
    stored: Attachment
    name: str


async def evidence_file(principal: Principal, case_number: str, attachment_id: int, *,
                        ip: str | None) -> EvidenceFile:
    """An evidence file of a case this user may see; the download is audited."""
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        stored = await queries.attachment(session, attachment_id)
        if stored is None or stored.case_id != case.id:
            raise OperationError(404, "no_evidence")
        path = principal.context.evidence_dir / stored.stored_name
        if not path.is_file():
            raise OperationError(410, "evidence_missing")
        await audit.record(session, principal.user, "case.download", case=case,
                                  detail={"attachment_id": attachment_id}, ip=ip)
        position = await queries.evidence_position(session, stored)
    return EvidenceFile(path, stored, display_name(position, stored.media_type))


THUMBNAIL_VIEW_WINDOW = timedelta(minutes=15)
"""How long after opening a ticket its images load as part of that (audited) view."""


async def thumbnail_file(principal: Principal, case_number: str, attachment_id: int) -> EvidenceFile:
    """An image of a case shown in its ticket page: covered by the page's audited view when this user opened
    the ticket within `THUMBNAIL_VIEW_WINDOW`, audited as a download otherwise."""
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        stored = await queries.attachment(session, attachment_id)
        if stored is None or stored.case_id != case.id or stored.media_type not in INLINE_IMAGE_TYPES:
            raise OperationError(404, "no_image")
        path = principal.context.evidence_dir / stored.stored_name
        if not path.is_file():
            raise OperationError(410, "evidence_missing")
        viewed = await audit.last_entry_at(session, actor_id=principal.user.id, case_id=case.id, action="case.view")
        if viewed is None or viewed < utcnow() - THUMBNAIL_VIEW_WINDOW:
            await audit.record(session, principal.user, "case.download", case=case,
                                      detail={"attachment_id": attachment_id, "thumbnail": True})
        position = await queries.evidence_position(session, stored)
    return EvidenceFile(path, stored, display_name(position, "image/jpeg"))


async def evidence_download(principal: Principal, evidence: EvidenceFile, *, inline: bool, media_type: str,
                            headers: dict[str, str]) -> StreamingResponse:
    """The decrypted file, streamed; 500 with the reason when it does not decrypt."""
    try:
        return await evidence_response(principal.context.database.keyring, evidence.path, evidence.stored,
                                       name=evidence.name, inline=inline, media_type=media_type, headers=headers)
    except EvidenceUnreadable as problem:
        raise OperationError(500, "evidence_unreadable", detail=problem) from None


async def evidence_thumbnail(principal: Principal, evidence: EvidenceFile, *, headers: dict[str, str]) -> Response:
    """The small JPEG of an evidence image (made on first request, then kept encrypted); 500 when the file does
    not decrypt, 422 when it does not decode as an image (a file kept before images were checked)."""
    try:
        return await thumbnail_response(principal.context.database.keyring, principal.context.evidence_dir,
                                        evidence.stored, name=evidence.name, headers=headers)
    except EvidenceUnreadable as problem:
        raise OperationError(500, "evidence_unreadable", detail=problem) from None
    except NoThumbnail:
        raise OperationError(422, "no_thumbnail") from None


def require_supervisor(principal: Principal) -> None:
    if not has_role(principal.user, StaffRole.SUPERVISOR, StaffRole.ADMIN):
        raise OperationError(403, "supervisors_only")


def require_admin(principal: Principal) -> None:
    if not has_role(principal.user, StaffRole.ADMIN):
        raise OperationError(403, "admins_only")


async def staff_by_id(principal: Principal) -> dict[int, StaffUser]:
    """Every staff account by id (to name assignees, authors and colleagues)."""
    async with principal.context.database.read_sessionmaker() as session:
        return {user.id: user for user in await staff_actions.list_staff(session)}


@dataclass(frozen=True)
class Activity:
    """What a colleague did to a case, as its ticket shows it."""

    entry: AuditEntry
    actor: StaffUser | None  # None: the system or the command line
    detail: dict[str, object]  # the entry's detail, a colleague it names (an assignment's "to") by display name


async def case_activity(principal: Principal, case: Case, staff: dict[int, StaffUser]) -> list[Activity]:
    """What staff did to a case (its audit entries but views, downloads and exports), newest first, with the
    colleagues named as the rest of the console names them (`staff`: every account by id)."""
    async with principal.context.database.read_sessionmaker() as session:
        rows, _ = await audit.audit_log(session, page=1, per_page=200, case_id=case.id)
    names = {user.username: user.display_name for user in staff.values()}

    def shown(entry: AuditEntry) -> dict[str, object]:
        detail = dict(entry.detail or {})
        if entry.action == "case.assign" and isinstance(detail.get("to"), str):
            detail["to"] = names.get(str(detail["to"]), detail["to"])
        return detail

    return [Activity(entry, staff.get(entry.actor_id) if entry.actor_id else None, shown(entry))
            for entry, _username, _number in rows
            if entry.action not in ("case.view", "case.download", "case.in_export")]
