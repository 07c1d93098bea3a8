"""What staff can do to tickets, once for the pages and the REST API.

Each operation is one transaction opened here (the edge): it loads the case, applies the
permission rules (a case outside the user's queues does not exist for them: 404), runs the
storage action(s), and returns plain data. Routes only parse input and render the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from console.auth import Principal, can_reveal_identity, can_see, has_role, hash_password, visible_queues
from handlers.routing import due_dates, route
from nlp.types import Tag
from storage import queries, staff_actions
from storage.actions import ActionError
from storage.models import (
    ApiToken,
    Attachment,
    AuditEntry,
    Case,
    CaseStatus,
    InternalNote,
    StaffRole,
    StaffUser,
    utcnow,
)

LABELS = ("slow_service", "lazy_procrastination", "formalism", "project_irregularity", "village_affairs",
          "medical", "education", "bribery_gifts", "other")
SETTABLE_STATUSES = (CaseStatus.ACCEPTED, CaseStatus.IN_HANDLING, CaseStatus.ANSWERED, CaseStatus.CLOSED,
                     CaseStatus.REJECTED)


class OperationError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass
class CaseDetail:
    case: Case
    notes: list[tuple[InternalNote, str | None]]
    assignee: str | None
    duplicate_of: str | None
    can_reveal: bool
    assignee_username: str | None = None


async def _case(session: AsyncSession, principal: Principal, case_number: str) -> Case:
    case = await queries.case_by_number(session, case_number)
    if case is None or not can_see(principal.user, case):
        raise OperationError(404, f"no case {case_number} in your queues")
    return case


def _wrap(error: ActionError) -> OperationError:
    return OperationError(409, str(error))


async def list_cases(principal: Principal, flt: queries.CaseFilter, *, page: int,
                     per_page: int) -> tuple[list[Case], int]:
    """Only ever the user's queues, whatever queue the filter asks for."""
    allowed = visible_queues(principal.user)
    if allowed is not None:
        flt.queues = allowed if flt.queues is None else set(flt.queues) & allowed
    threshold = principal.runtime.settings.city.routing.confidence_threshold
    async with principal.runtime.sessionmaker() as session:
        return await queries.list_cases(session, flt, page=page, per_page=per_page, threshold=threshold)


async def overview(principal: Principal) -> dict[str, queries.QueueCounts]:
    allowed = visible_queues(principal.user)
    queues = allowed if allowed is not None else {q.code for q in principal.runtime.settings.city.queues}
    async with principal.runtime.sessionmaker() as session:
        counts = await queries.queue_counts(session, queues)
    return {queue: counts.get(queue, queries.QueueCounts(queue, 0, 0, 0)) for queue in sorted(queues)}


async def case_detail(principal: Principal, case_number: str, *, ip: str | None,
                      audit_view: bool = True) -> CaseDetail:
    """A ticket with everything this user may see; the view itself is audited (unless it is only the
    result of an action the user just took, which has its own audit record)."""
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        if audit_view:
            await staff_actions.record_view(session, case, actor=principal.user, ip=ip)
        notes = await queries.notes_for(session, case.id)
        assignee = await staff_actions.get_staff(session, case.assigned_to_id) if case.assigned_to_id else None
        original = await session.get(Case, case.duplicate_of_id) if case.duplicate_of_id else None
    return CaseDetail(case, notes, assignee.display_name if assignee else None,
                      original.case_number if original else None,
                      can_reveal_identity(principal.user, principal.runtime.settings.city) and not case.anonymous,
                      assignee.username if assignee else None)


async def accept(principal: Principal, case_number: str) -> None:
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        try:
            await staff_actions.accept_case(session, case, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None


async def confirm_label(principal: Principal, case_number: str, expected: str | None = None) -> None:
    """Confirm the current label; with `expected`, only if that is still the label (409 otherwise)."""
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        if expected is not None and expected != case.label:
            raise OperationError(409, f"the label is {case.label}, not {expected}; correct it instead")
        try:
            await staff_actions.confirm_label(session, case, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None


async def correct_label(principal: Principal, case_number: str, label: str) -> str:
    """Set the label staff decided; the case moves where routing sends that label. Returns its queue."""
    if label not in LABELS:
        raise OperationError(422, f"unknown label {label!r}; one of {', '.join(LABELS)}")
    city = principal.runtime.settings.city
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        decision = route(city, Tag(label, 1.0), case.district, utcnow())
        try:
            await staff_actions.correct_label(session, case, label, actor=principal.user, queue=decision.queue,
                                              accept_due_at=decision.accept_due_at,
                                              resolve_due_at=decision.resolve_due_at)
        except ActionError as error:
            raise _wrap(error) from None
        return case.queue


async def move(principal: Principal, case_number: str, queue: str, reason: str) -> None:
    city = principal.runtime.settings.city
    if city.queue(queue) is None:
        raise OperationError(422, f"unknown queue {queue!r}")
    if not reason.strip():
        raise OperationError(422, "moving a case needs a reason")
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        accept_due, resolve_due = due_dates(city, queue, utcnow())
        try:
            await staff_actions.move_case(session, case, queue, reason=reason, actor=principal.user,
                                          accept_due_at=accept_due, resolve_due_at=resolve_due)
        except ActionError as error:
            raise _wrap(error) from None


async def set_status(principal: Principal, case_number: str, status: str, note: str | None = None) -> None:
    try:
        wanted = CaseStatus(status)
    except ValueError:
        raise OperationError(422, f"unknown status {status!r}") from None
    if wanted not in SETTABLE_STATUSES:
        raise OperationError(422, f"status {status} cannot be set here")
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        try:
            await staff_actions.set_status(session, case, wanted, actor=principal.user, body=note or None)
        except ActionError as error:
            raise _wrap(error) from None


async def mark_duplicate(principal: Principal, case_number: str, original_number: str) -> None:
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        original = await queries.case_by_number(session, original_number.strip())
        if original is None or not can_see(principal.user, original):
            raise OperationError(422, f"no case {original_number} in your queues")
        try:
            await staff_actions.mark_duplicate(session, case, original, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None


async def add_note(principal: Principal, case_number: str, body: str) -> None:
    if len(body) > 10_000:
        raise OperationError(422, "a note has at most 10,000 characters")
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        try:
            await staff_actions.add_note(session, case, body, actor=principal.user)
        except ActionError as error:
            raise OperationError(422, str(error)) from None


async def assign(principal: Principal, case_number: str, username: str | None) -> None:
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        assignee = None
        if username and username != principal.user.username:
            # Reviewers take a case themselves or let it go; handing it to others is a supervisor's call.
            require_supervisor(principal)
        if username:
            assignee = await staff_actions.get_staff_by_username(session, username)
            if assignee is None or not assignee.active:
                raise OperationError(422, f"no active staff user {username!r}")
            if not can_see(assignee, case):
                raise OperationError(422, f"{username} does not work in queue {case.queue}")
        await staff_actions.assign_case(session, case, assignee, actor=principal.user)


async def answer(principal: Principal, case_number: str, text: str) -> None:
    if len(text) > 3000:
        raise OperationError(422, "an answer has at most 3,000 characters")
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        try:
            await staff_actions.answer_reporter(session, case, text, actor=principal.user)
        except ActionError as error:
            raise OperationError(422, str(error)) from None
    principal.runtime.outbox.wake()


async def reveal_identity(principal: Principal, case_number: str, *, ip: str | None) -> tuple[str | None, str | None]:
    if not can_reveal_identity(principal.user, principal.runtime.settings.city):
        raise OperationError(403, "your role may not see reporters' identities")
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        try:
            return await staff_actions.reveal_identity(session, case, actor=principal.user, ip=ip)
        except ActionError as error:
            raise _wrap(error) from None


async def evidence_file(principal: Principal, case_number: str, attachment_id: int, *,
                        ip: str | None) -> tuple[Path, Attachment]:
    """The path of an evidence file of a case this user may see; the download is audited."""
    async with principal.runtime.sessionmaker.begin() as session:
        case = await _case(session, principal, case_number)
        stored = await queries.attachment(session, attachment_id)
        if stored is None or stored.case_id != case.id:
            raise OperationError(404, "no such evidence file on this case")
        path = principal.runtime.settings.evidence_dir / stored.stored_name
        if not path.is_file():
            raise OperationError(410, "the evidence file is missing from storage")
        await staff_actions.audit(session, principal.user, "case.download", case=case,
                                  detail={"attachment_id": attachment_id}, ip=ip)
    return path, stored


def require_supervisor(principal: Principal) -> None:
    if not has_role(principal.user, StaffRole.SUPERVISOR, StaffRole.ADMIN):
        raise OperationError(403, "only supervisors and administrators may do this")


def require_admin(principal: Principal) -> None:
    if not has_role(principal.user, StaffRole.ADMIN):
        raise OperationError(403, "only administrators may do this")


# --- staff accounts, API tokens and the audit log -----------------------------------------------


async def staff_usernames(principal: Principal, user_ids: Collection[int]) -> dict[int, str]:
    """id → username of the given staff accounts (to show who a case is assigned to)."""
    if not user_ids:
        return {}
    async with principal.runtime.sessionmaker() as session:
        return {user.id: user.username for user in await staff_actions.list_staff(session) if user.id in user_ids}


def _check_queues(principal: Principal, queues: Collection[str]) -> None:
    known = {queue.code for queue in principal.runtime.settings.city.queues}
    unknown = sorted(set(queues) - known)
    if unknown:
        raise OperationError(422, f"unknown queue(s) {', '.join(unknown)}")


async def list_staff(principal: Principal) -> list[StaffUser]:
    require_admin(principal)
    async with principal.runtime.sessionmaker() as session:
        return await staff_actions.list_staff(session)


async def add_staff(principal: Principal, *, username: str, display_name: str, role: StaffRole,
                    queues: Collection[str], password: str) -> StaffUser:
    require_admin(principal)
    _check_queues(principal, queues)
    try:
        password_hash = await asyncio.to_thread(hash_password, password)
    except ValueError as error:
        raise OperationError(422, str(error)) from None
    async with principal.runtime.sessionmaker.begin() as session:
        try:
            user = await staff_actions.create_staff(session, username=username, display_name=display_name,
                                                    role=role, password_hash=password_hash, actor=principal.user)
        except ActionError as error:
            raise _wrap(error) from None
        await staff_actions.set_queues(session, user, list(queues), actor=principal.user)
        created = await staff_actions.get_staff(session, user.id)
    assert created is not None
    return created


async def update_staff(principal: Principal, username: str, *, role: StaffRole | None = None,
                       queues: Collection[str] | None = None, active: bool | None = None,
                       totp_required: bool | None = None) -> StaffUser:
    """Change what is given; an administrator cannot demote or disable themselves (no lock-out)."""
    require_admin(principal)
    if queues is not None:
        _check_queues(principal, queues)
    async with principal.runtime.sessionmaker.begin() as session:
        user = await staff_actions.get_staff_by_username(session, username)
        if user is None:
            raise OperationError(404, f"no staff user {username!r}")
        if user.id == principal.user.id and ((role is not None and role != user.role) or active is False):
            raise OperationError(409, "you cannot demote or disable your own account")
        if role is not None and role != user.role:
            await staff_actions.set_role(session, user, role, actor=principal.user)
        if queues is not None:
            await staff_actions.set_queues(session, user, list(queues), actor=principal.user)
        if active is not None and active != user.active:
            await staff_actions.set_active(session, user, active, actor=principal.user)
        if totp_required is not None and totp_required != user.totp_required:
            await staff_actions.require_totp(session, user, totp_required, actor=principal.user)
        user_id = user.id
        session.expire(user)
        updated = await staff_actions.get_staff(session, user_id)
    assert updated is not None
    return updated


async def api_tokens(principal: Principal) -> list[ApiToken]:
    async with principal.runtime.sessionmaker() as session:
        return await staff_actions.list_api_tokens(session, principal.user.id)


async def create_api_token(principal: Principal, name: str) -> tuple[str, ApiToken]:
    """A new token for the user; only from a console login, so a leaked token cannot mint more."""
    if principal.session is None:
        raise OperationError(403, "API tokens are created from a console login, not with another token")
    async with principal.runtime.sessionmaker.begin() as session:
        return await staff_actions.create_api_token(session, principal.user, name, actor=principal.user)


async def revoke_api_token(principal: Principal, token_id: int) -> None:
    async with principal.runtime.sessionmaker.begin() as session:
        record = await staff_actions.get_api_token(session, token_id)
        if record is None or record.user_id != principal.user.id:
            raise OperationError(404, f"you have no API token {token_id}")
        if not record.revoked:
            await staff_actions.revoke_api_token(session, record, actor=principal.user)


async def audit_log(principal: Principal, *, page: int, per_page: int, actor: str | None = None,
                    case_number: str | None = None) -> tuple[list[tuple[AuditEntry, str | None, str | None]], int]:
    require_admin(principal)
    async with principal.runtime.sessionmaker() as session:
        actor_id = case_id = None
        if actor is not None:
            user = await staff_actions.get_staff_by_username(session, actor)
            if user is None:
                return [], 0
            actor_id = user.id
        if case_number is not None:
            case = await queries.case_by_number(session, case_number)
            if case is None:
                return [], 0
            case_id = case.id
        return await queries.audit_log(session, page=page, per_page=per_page, actor_id=actor_id, case_id=case_id)
