"""What the REST API returns, one shape per audience.

Nothing here is built from an ORM object by reflection: every response is assembled field by field
from a named allow-list, so a column added to `Case` (or a reporter's identity) never reaches a
response by accident. The reporter's name and phone leave the service only through
`IdentityOut`, which only the audited reveal endpoint returns; their channel and channel identity
(`channel`, `reporter_ref`) never do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from console.operations import CaseDetail
from handlers.evidence import display_name
from handlers.validation import readable
from storage.models import Attachment, AuditEntry, Case, InternalNote, StaffUser, TraceEvent, utcnow
from storage.queries import COUNT_CAP, NOT_ACCEPTED, OPEN_STATUSES, SEARCH_COUNT_CAP

LabelCode = Literal["slow_service", "lazy_procrastination", "formalism", "project_irregularity", "village_affairs",
                    "medical", "education", "bribery_gifts", "other"]
SettableStatus = Literal["accepted", "in_handling", "answered", "closed", "rejected"]
CaseStatusCode = Literal["received", "routed", "accepted", "in_handling", "answered", "closed", "rejected",
                         "duplicate"]
RoleCode = Literal["reviewer", "supervisor", "admin"]
USERNAME_PATTERN = r"^[a-z][a-z0-9._-]{1,59}$"

# Keys of a trace event's `detail` that say nothing about who reported: routing facts, counts, ratings, and whether
# a resident's step came from another device than the report (a mark, no address or id).
TRACE_DETAIL_KEYS = ("queue", "reason", "label", "from", "attachments", "rating", "other_device")

T = TypeVar("T")

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2999, 12, 31)
"""Days a filter may name: outside them a date is a 422 (9999-12-31 plus a day, or 0001-01-01 in UTC, do not
exist as datetimes)."""


def _bounded_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"a date between {FIRST_DAY} and {LAST_DAY}")
    return day


FilterDay = Annotated[date, AfterValidator(_bounded_day)]
"""A day of a filter (query parameter): a 422 outside FIRST_DAY..LAST_DAY."""


def _visible(text: str) -> str:
    cleaned = readable(text)
    if not cleaned:
        raise ValueError("the text has no visible characters")
    return cleaned


Visible = Annotated[str, AfterValidator(_visible)]
"""Text staff write for a reporter or for the record: without control and invisible characters (`readable`), and
a 422 when nothing visible is left (a zero-width space, a lone direction mark)."""


def _optional_text(text: str | None) -> str | None:
    return readable(text) or None if text is not None else None


Readable = Annotated[str | None, AfterValidator(_optional_text)]
"""An optional text staff write (a status note, a referral, a decision's note), cleaned as `Visible` is: one of
nothing but invisible characters is no text (null), as the console's forms read it."""


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- errors and pages -------------------------------------------------------------------------


class ErrorOut(_Out):
    detail: str = Field(description="Why the request was refused.")


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented refusals of an API operation (its `responses=`), each with the body `ErrorOut`."""
    reasons = {
        401: "Not authenticated: no valid token or session.",
        403: "Authenticated, but this role may not do this (or the CSRF header is missing).",
        404: "No such case in your queues (cases outside them do not exist for you).",
        409: "The case's state does not allow this (e.g. accepted already, closed, same label).",
        410: "The evidence file is missing from storage.",
    }
    return {code: {"model": ErrorOut, "description": reasons[code]} for code in codes}


class Page(_Out, Generic[T]):
    items: list[T]
    total: int = Field(description="Items matching the query, on all pages.")
    page: int
    per_page: int
    pages: int = Field(description="Number of pages (0 when nothing matches).")

    @classmethod
    def of(cls, items: list[T], *, total: int, page: int, per_page: int) -> Page[T]:
        return cls(items=items, total=total, page=page, per_page=per_page, pages=math.ceil(total / per_page))


class CaseList(_Out, Generic[T]):
    """One page of a list that is paged by cursor: follow `next` / `prev` (or pass `next_cursor` as `after`,
    `prev_cursor` as `before`), whatever the list's length; a deep page costs what the first one does."""

    items: list[T]
    total: int = Field(description=f"Items matching the query, counted up to a cap ({COUNT_CAP:,}; "
                                   f"{SEARCH_COUNT_CAP:,} for a search by text), see `total_capped`.")
    total_capped: bool = Field(description="True: at least `total` match (counting stopped there).")
    per_page: int
    next_cursor: str | None = Field(description="Pass as `after` for the next (older) page; null on the last.")
    prev_cursor: str | None = Field(description="Pass as `before` for the previous (newer) page; null on the first.")
    next: str | None = Field(description="The URL of the next page; null on the last.")
    prev: str | None = Field(description="The URL of the previous page; null on the first.")


# --- cases ------------------------------------------------------------------------------------


def is_overdue(case: Case, now: datetime | None = None) -> bool:
    """The same rule as `storage.queries.overdue_condition`, for one loaded case."""
    now = now or utcnow()
    if case.status in NOT_ACCEPTED and case.accept_due_at is not None and case.accept_due_at < now:
        return True
    return case.status in OPEN_STATUSES and case.resolve_due_at is not None and case.resolve_due_at < now


class LabelScore(_Out):
    label: str
    score: float


class RunnerUpOut(_Out):
    """The label the classifier nearly chose, and why it did not."""

    label: str
    contrast_terms: list[str] = Field(
        description="Phrases of the report that favoured the chosen label over this one (may be empty).")


class CaseSummary(_Out):
    """A case in a list: enough to triage, no reporter identity."""

    case_number: str
    status: CaseStatusCode
    queue: str
    label: str | None
    label_confidence: float | None = Field(description="The classifier's confidence in its label, 0–1.")
    label_status: Literal["confirmed", "corrected"] | None = Field(
        description="Whether staff confirmed or corrected the label; null while only the classifier decided.")
    district: str | None
    place: str
    excerpt: str = Field(description="The first 120 characters of the description.")
    anonymous: bool
    assignee: str | None = Field(description="Username of the colleague the case is assigned to.")
    created_at: datetime
    accept_due_at: datetime | None
    resolve_due_at: datetime | None
    overdue: bool

    @classmethod
    def build(cls, case: Case, usernames: dict[int, str], now: datetime | None = None) -> CaseSummary:
        return cls(
            case_number=case.case_number or "", status=case.status,  # type: ignore[arg-type]
            queue=case.queue, label=case.label, label_confidence=case.label_confidence,
            label_status=case.label_status,  # type: ignore[arg-type]
            district=case.district, place=case.place, excerpt=case.description.strip()[:120],
            anonymous=case.anonymous,
            assignee=usernames.get(case.assigned_to_id) if case.assigned_to_id else None,
            created_at=case.created_at, accept_due_at=case.accept_due_at, resolve_due_at=case.resolve_due_at,
            overdue=is_overdue(case, now),
        )


class TraceEventOut(_Out):
    """One event of the case's trace, as the reporter sees it, plus routing facts."""

    id: int
    kind: str
    at: datetime
    actor: Literal["reporter", "staff", "system"]
    body: str | None = Field(description="Public text: a staff answer, a status note or a reporter's follow-up.")
    detail: dict[str, Any]

    @classmethod
    def build(cls, event: TraceEvent) -> TraceEventOut:
        actor: Literal["reporter", "staff", "system"] = (
            "staff" if event.actor.startswith("staff:") else "reporter" if event.actor == "reporter" else "system")
        detail = {key: event.detail[key] for key in TRACE_DETAIL_KEYS if key in (event.detail or {})}
        return cls(id=event.id, kind=event.kind, at=event.created_at, actor=actor, body=event.body, detail=detail)


class EvidenceOut(_Out):
    id: int
    original_name: str = Field(description=(
        "A neutral name by the file's position in the case and its type (evidence-1.jpg): the name the resident's "
        "device gave the file is not kept, as it may name them. Kept under this name for existing clients."))
    media_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
    follow_up_event_id: int | None = Field(description="The trace event of the follow-up that added the file.")
    download_url: str

    @classmethod
    def build(cls, attachment: Attachment, case_number: str, position: int) -> EvidenceOut:
        return cls(id=attachment.id, original_name=display_name(position, attachment.media_type),
                   media_type=attachment.media_type,
                   size_bytes=attachment.size_bytes, sha256=attachment.sha256, created_at=attachment.created_at,
                   follow_up_event_id=attachment.trace_event_id,
                   download_url=f"/api/v1/cases/{case_number}/evidence/{attachment.id}")


class DeliveryOut(_Out):
    """A message of the case to its reporter, and whether it reached them."""

    kind: str = Field(description="answer, status_changed, …")
    status: Literal["pending", "sent", "waiting", "failed"] = Field(
        description="queued; sent; waiting for the reporter's next message (outside the platform's reply window); "
                    "failed for good")
    reason: str | None = Field(description="The platform's reason (failed) or why it waits.")
    attempts: int
    created_at: datetime
    sent_at: datetime | None


class NoteOut(_Out):
    """A staff-only note; never shown to the reporter."""

    id: int
    body: str
    author: str | None = Field(description="Display name of the author (null if the account was deleted).")
    created_at: datetime

    @classmethod
    def build(cls, note: InternalNote, author: str | None) -> NoteOut:
        return cls(id=note.id, body=note.body, author=author, created_at=note.created_at)


class CaseDetailOut(CaseSummary):
    """Everything staff may see of a case. The reporter's identity is not part of it: see reveal-identity."""

    description: str
    occurred: str
    predicted_label: str | None = Field(description="The classifier's original label.")
    label_top: list[LabelScore] = Field(description="The classifier's three most likely labels.")
    label_terms: list[str] = Field(description="Key terms of the text behind the classifier's decision.")
    runner_up: RunnerUpOut | None = Field(
        description="The second most likely label when it was close to the chosen one, with the phrases that "
                    "decided against it; null when the classifier's choice was clear or not recorded.")
    model_version: str | None
    duplicate_of: str | None
    rating: int | None
    updated_at: datetime
    routed_at: datetime | None
    accepted_at: datetime | None
    closed_at: datetime | None
    can_reveal_identity: bool = Field(
        description="True when this user's role may reveal the reporter's identity and the reporter gave it.")
    trace: list[TraceEventOut]
    evidence: list[EvidenceOut]
    notes: list[NoteOut]
    deliveries: list[DeliveryOut] = Field(description="Messages to the reporter and their delivery state.")
    extensions: list[ExtensionOut] = Field(description="Requests to extend the resolve-by date.")
    appeal_pending: bool = Field(description="The reporter appealed the rejection; a supervisor decides.")
    rehandle_count: int = Field(description="Times the case was reopened after a poor rating.")
    transfer_count: int = Field(description="Times the case moved between queues.")

    @classmethod
    def from_detail(cls, detail: CaseDetail) -> CaseDetailOut:
        case = detail.case
        usernames: dict[int, str] = {}
        if case.assigned_to_id is not None and detail.assignee_username is not None:
            usernames[case.assigned_to_id] = detail.assignee_username
        summary = CaseSummary.build(case, usernames)
        number = case.case_number or ""
        return cls(
            **summary.model_dump(),
            description=case.description, occurred=case.occurred, predicted_label=case.predicted_label,
            label_top=[LabelScore(label=str(label), score=float(score)) for label, score in (case.label_top or [])][:3],
            label_terms=[str(term) for term in (case.label_terms or [])],
            runner_up=RunnerUpOut(label=case.label_runner_up,
                                  contrast_terms=[str(term) for term in (case.label_contrast_terms or [])])
            if case.label_runner_up else None,
            model_version=case.model_version, duplicate_of=detail.duplicate_of, rating=case.rating,
            updated_at=case.updated_at, routed_at=case.routed_at, accepted_at=case.accepted_at,
            closed_at=case.closed_at, can_reveal_identity=detail.can_reveal,
            trace=[TraceEventOut.build(event) for event in case.trace],
            evidence=[EvidenceOut.build(attachment, number, position)
                      for position, attachment in enumerate(case.attachments, start=1)],
            notes=[NoteOut.build(note, author) for note, author in detail.notes],
            deliveries=[DeliveryOut(kind=n.notice, status=n.status, reason=n.reason,  # type: ignore[arg-type]
                                    attempts=n.attempts, created_at=n.created_at, sent_at=n.sent_at)
                        for n in detail.notices],
            extensions=[ExtensionOut(id=r.id, until=r.resolve_due_at, reason=r.reason, status=r.status,  # type: ignore[arg-type]
                                     created_at=r.created_at, decided_at=r.decided_at) for r in detail.extensions],
            appeal_pending=case.appeal_pending, rehandle_count=case.rehandle_count,
            transfer_count=case.transfer_count,
        )


class IdentityOut(_Out):
    """A real-name reporter's identity: returned only by the audited reveal endpoint."""

    case_number: str
    name: str | None
    phone: str | None


# --- requests on cases ------------------------------------------------------------------------


class LabelIn(_In):
    action: Literal["confirm", "correct"] = Field(
        description="`confirm` the current label, or `correct` it to `label` (the case moves by the routing rules "
                    "and becomes training data).")
    label: LabelCode | None = Field(
        default=None, description="Required to correct; when confirming, if given, it must be the current label.")


class MoveIn(_In):
    queue: str = Field(min_length=1, max_length=60)
    reason: Visible = Field(min_length=1, max_length=500)
    reason_code: str | None = Field(default=None, max_length=200, description=(
        "One of the city's transfer reasons (loop.transfer_reasons): required to return a case to triage or "
        "to move it out of your own queues."))


class TellReporterIn(_In):
    text: Visible = Field(min_length=1, max_length=3000)


class MoreInfoIn(_In):
    question: Visible = Field(min_length=1, max_length=3000,
                          description="What the reporter is asked; they answer by adding information to the case.")


class ExtensionIn(_In):
    until: date = Field(description="The new resolve-by day (city time).")
    reason: Visible = Field(min_length=1, max_length=1000)


class DecisionIn(_In):
    approve: bool
    note: Annotated[str, AfterValidator(readable)] = Field(default="", max_length=1000)


class AppealDecisionIn(_In):
    uphold: bool = Field(description="true: the rejection stands; false: the case is handled again.")
    reason: Visible = Field(min_length=1, max_length=2000)


class ExtensionOut(_Out):
    id: int
    until: datetime
    reason: str
    status: Literal["pending", "approved", "refused"]
    created_at: datetime
    decided_at: datetime | None


class StatusIn(_In):
    status: SettableStatus = Field(description="Mark duplicates with the duplicate endpoint.")
    note: Readable = Field(default=None, max_length=3000,
                           description="Shown to the reporter with the new status; a rejection's reason.")
    referral: Readable = Field(default=None, max_length=1000,
                               description="Where the reporter can turn instead (required to reject).")


class RevealIn(_In):
    reason: Visible = Field(min_length=1, max_length=500,
                        description="Why you need the reporter's identity; recorded in the audit log.")


class DuplicateIn(_In):
    of: str = Field(min_length=1, max_length=32, description="Case number of the original case.")


class NoteIn(_In):
    body: Visible = Field(min_length=1, max_length=10_000)


class AssignIn(_In):
    username: str | None = Field(max_length=60, description="The colleague to assign to; null to unassign.")


class AnswerIn(_In):
    text: Visible = Field(min_length=1, max_length=3000,
                      description="Delivered to the reporter on their channel and shown by /status.")


# --- queues, users, tokens, audit -------------------------------------------------------------


class QueueOut(_Out):
    code: str
    name_zh: str
    name_en: str
    new: int = Field(description="Cases not yet accepted.")
    in_handling: int = Field(description="Accepted, in handling or answered, not closed.")
    overdue: int


class MeOut(_Out):
    username: str
    display_name: str
    role: RoleCode
    queues: list[str] | None = Field(description="The queues this user works in; null means every queue.")
    can_reveal_identity: bool
    totp_enabled: bool
    authenticated_by: Literal["session", "token"]


class StaffOut(_Out):
    username: str
    display_name: str
    role: RoleCode
    queues: list[str]
    active: bool
    totp_enabled: bool
    totp_required: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def build(cls, user: StaffUser) -> StaffOut:
        return cls(username=user.username, display_name=user.display_name, role=user.role,  # type: ignore[arg-type]
                   queues=sorted(assignment.queue for assignment in user.queues), active=user.active,
                   totp_enabled=user.totp_secret is not None, totp_required=user.totp_required,
                   created_at=user.created_at, last_login_at=user.last_login_at)


class StaffCreateIn(_In):
    username: str = Field(pattern=USERNAME_PATTERN)
    display_name: Visible | None = Field(default=None, min_length=1, max_length=80)
    role: RoleCode = "reviewer"
    queues: list[str] = Field(default_factory=list, max_length=100)
    password: str = Field(min_length=10, max_length=200,
                          description="At least 10 characters and hard to guess (zxcvbn); the owner must change "
                                      "it at the first console login.")
    no_queues_ok: bool = Field(default=False, description="Create a reviewer without queues (who sees no cases) "
                                                          "anyway; without it such a request is refused (422).")


class StaffPatchIn(_In):
    role: RoleCode | None = None
    queues: list[str] | None = Field(default=None, max_length=100, description="Replaces the current set.")
    active: bool | None = None
    totp_required: bool | None = None


class TokenOut(_Out):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The secret, shown this once: send it as `Authorization: Bearer <token>`.")


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=80, description="What the token is for, e.g. the integration's name.")


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str | None = Field(description="Username of the staff member; null for the system or the shell.")
    action: str
    case_number: str | None
    detail: dict[str, Any]
    ip: str | None

    @classmethod
    def build(cls, entry: AuditEntry, actor: str | None, case_number: str | None) -> AuditOut:
        return cls(id=entry.id, at=entry.created_at, actor=actor, action=entry.action, case_number=case_number,
                   detail=dict(entry.detail or {}), ip=entry.ip)


def summaries(cases: Iterable[Case], usernames: dict[int, str]) -> list[CaseSummary]:
    now = utcnow()
    return [CaseSummary.build(case, usernames, now) for case in cases]


def tokens_out(records: Sequence[Any]) -> list[TokenOut]:
    return [TokenOut(id=r.id, name=r.name, created_at=r.created_at, last_used_at=r.last_used_at, revoked=r.revoked)
            for r in records]
