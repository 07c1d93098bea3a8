"""Actions of the back office. Each change of a case writes its trace event (what the reporter sees)
and an audit record (who did it) in the caller's transaction; nothing here commits."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from storage import actions, audit, loop, queries, staff_notices
from storage.actions import ActionError, ActionInputError
from storage.models import (
    CLOSED_STATUSES,
    ApiToken,
    Case,
    CaseStatus,
    InternalNote,
    QueueAssignment,
    StaffRole,
    StaffSession,
    StaffUser,
    TraceEvent,
    utcnow,
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def actor_ref(user: StaffUser) -> str:
    return f"staff:{user.id}"


# --- staff accounts ---------------------------------------------------------------------------


async def get_staff(session: AsyncSession, user_id: int) -> StaffUser | None:
    query = select(StaffUser).where(StaffUser.id == user_id).options(selectinload(StaffUser.queues))
    return (await session.execute(query)).scalar_one_or_none()


async def get_staff_by_username(session: AsyncSession, username: str) -> StaffUser | None:
    query = select(StaffUser).where(StaffUser.username == username).options(selectinload(StaffUser.queues))
    return (await session.execute(query)).scalar_one_or_none()


async def reloaded(session: AsyncSession, user: StaffUser) -> StaffUser:
    """`user` as the database has it now in this transaction (its queues too, after `set_queues`)."""
    user_id = user.id
    session.expire(user)
    fresh = await get_staff(session, user_id)
    assert fresh is not None
    return fresh


async def list_staff(session: AsyncSession) -> list[StaffUser]:
    query = select(StaffUser).order_by(StaffUser.username).options(selectinload(StaffUser.queues))
    return list((await session.execute(query)).scalars())


async def count_staff(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(StaffUser)) or 0)


async def name_taken(session: AsyncSession, username: str) -> ActionError | None:
    """Why `username` cannot name a new account (an account has it, or has it in other letter case: the two
    would read alike in the audit log and every list), or None."""
    existing = await session.scalar(select(StaffUser.username).where(
        func.lower(StaffUser.username) == username.lower()).limit(1))
    if existing is None:
        return None
    return ActionError.of("name_taken" if existing == username else "name_taken_case", existing=existing)


async def create_staff(session: AsyncSession, *, username: str, display_name: str, role: StaffRole,
                       password_hash: str, actor: StaffUser | None = None,
                       must_change_password: bool = False) -> StaffUser:
    """A new account; with `must_change_password` (a password someone else chose or generated) the console
    asks its owner for a new password before anything else."""
    taken = await name_taken(session, username)
    if taken is not None:
        raise taken
    user = StaffUser(username=username, display_name=display_name, role=role, password_hash=password_hash,
                     active=True, failed_logins=0, totp_required=False, must_change_password=must_change_password)
    session.add(user)
    await session.flush()
    await audit.record(session, actor, "staff.create", detail={"user": username, "role": str(role)})
    return user


async def create_first_admin(session: AsyncSession, *, username: str, display_name: str,
                             password_hash: str) -> StaffUser | None:
    """An administrator account, only while no staff account exists (None otherwise): the first start's. Its
    password was generated and printed to the log, so its owner must choose a new one at the first sign-in."""
    if await count_staff(session):
        return None
    return await create_staff(session, username=username, display_name=display_name, role=StaffRole.ADMIN,
                              password_hash=password_hash, must_change_password=True)


async def set_queues(session: AsyncSession, user: StaffUser, queues: Sequence[str], *,
                     actor: StaffUser | None = None) -> None:
    await session.execute(delete(QueueAssignment).where(QueueAssignment.user_id == user.id))
    for queue in sorted(set(queues)):
        session.add(QueueAssignment(user_id=user.id, queue=queue))
    await session.flush()
    await audit.record(session, actor, "staff.assign_queues",
                       detail={"user": user.username, "queues": sorted(set(queues))})


async def set_active(session: AsyncSession, user: StaffUser, active: bool, *, actor: StaffUser | None = None) -> None:
    user.active = active
    if not active:
        await session.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
        await session.execute(update(ApiToken).where(ApiToken.user_id == user.id).values(revoked=True))
    await audit.record(session, actor, "staff.enable" if active else "staff.disable", detail={"user": user.username})


async def set_password(session: AsyncSession, user: StaffUser, password_hash: str, *,
                       actor: StaffUser | None = None, must_change: bool = False) -> int:
    """A new password: every session of the account ends and every API token of it is revoked (whoever
    knew the old password may have made one). With `must_change` (a reset by someone else) the owner must
    choose a new one at their next login. Returns how many tokens were revoked."""
    user.password_hash = password_hash
    user.failed_logins = 0
    user.locked_until = None
    user.must_change_password = must_change
    await session.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
    revoked = await session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False))
                                    .values(revoked=True))
    count = int(getattr(revoked, "rowcount", 0) or 0)
    action = "staff.change_password" if actor is not None and actor.id == user.id else "staff.reset_password"
    await audit.record(session, actor, action, detail={"user": user.username, "tokens_revoked": count})
    return count


async def set_role(session: AsyncSession, user: StaffUser, role: StaffRole, *, actor: StaffUser | None) -> None:
    previous = user.role
    user.role = role
    await audit.record(session, actor, "staff.role", detail={"user": user.username, "from": previous, "to": str(role)})


async def set_totp(session: AsyncSession, user: StaffUser, secret: str | None, *, actor: StaffUser | None,
                   confirmed_step: int | None = None) -> None:
    """Turn the second factor on with `secret` (the code that confirmed it, of `confirmed_step`, is used up)
    or off (None)."""
    user.totp_secret = secret
    user.totp_last_step = confirmed_step if secret else None
    await audit.record(session, actor, "staff.totp_enrol" if secret else "staff.totp_remove",
                       detail={"user": user.username})


async def require_totp(session: AsyncSession, user: StaffUser, required: bool, *, actor: StaffUser | None) -> None:
    user.totp_required = required
    await audit.record(session, actor, "staff.totp_required", detail={"user": user.username, "required": required})


async def accept_totp_step(session: AsyncSession, user: StaffUser, step: int) -> bool:
    """Use up the TOTP time-step `step` of the account: True the first time, False for a step at or before
    the last one accepted (a code seen over a shoulder or replayed). One UPDATE, so two processes that get
    the same code at once accept it once."""
    result = await session.execute(
        update(StaffUser)
        .where(StaffUser.id == user.id, or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False))
    accepted = int(getattr(result, "rowcount", 0) or 0) == 1
    if accepted:
        set_committed_value(user, "totp_last_step", step)
    return accepted


async def _count_failure(session: AsyncSession, user: StaffUser, *, attempts: int, lock_minutes: int) -> bool:
    """One more wrong password or code of the account; at `attempts` in a row it locks for `lock_minutes`.
    Incremented in the database (one UPDATE), so failures in different processes add up. Returns whether the
    account locked now."""
    await session.flush()
    counted = await session.execute(
        update(StaffUser).where(StaffUser.id == user.id)
        .values(failed_logins=StaffUser.failed_logins + 1).returning(StaffUser.failed_logins)
        .execution_options(synchronize_session=False))
    failures = int(counted.scalar_one())
    set_committed_value(user, "failed_logins", failures)
    if failures < attempts:
        return False
    user.locked_until = utcnow() + timedelta(minutes=lock_minutes)
    user.failed_logins = 0
    return True


async def record_login(session: AsyncSession, user: StaffUser | None, *, success: bool, username: str,
                       ip: str | None, attempts: int, lock_minutes: int) -> None:
    """Count failures; `attempts` failures in a row lock the account for `lock_minutes`. The audit entry of a
    failure says whether it locked the account now, and whether the account is disabled (any password fails)."""
    detail: dict[str, object] = {"user": username}
    if user is not None:
        if success:
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = utcnow()
        else:
            if await _count_failure(session, user, attempts=attempts, lock_minutes=lock_minutes):
                detail["locked"] = True
            if not user.active:
                detail["account_disabled"] = True
    await audit.record(session, user, "login.success" if success else "login.failure", detail=detail, ip=ip)


LOCK_STARTS = ("login.failure", "account.password_refused")
"""The entries one of which is written by the failure that locks an account (and by every failure before it)."""


async def record_locked_attempt(session: AsyncSession, user: StaffUser, *, username: str, ip: str | None,
                                lock_minutes: int) -> bool:
    """A sign-in attempt refused because the account is locked: audited as `login.locked` once per lock — by the
    attempt that first meets it. Returns whether this one was audited.

    Like the address throttle's `login.throttled` (`console.throttle`): the attempts refused during the same lock
    write nothing. They are refused without a password check, the lock itself is audited (the failure that locked
    the account says so), and a row for each would let anyone who knows a username fill the audit log and load the
    database at the rate they can send requests — the address throttle bounds one address at 20 a lock window, but
    not an attacker who rotates addresses. The one entry says the lock was met (from which address, with which
    username); how often after it does not change what an auditor does about it.

    "Already audited during this lock" is read from the log itself: the account's newest entry since the lock began
    (its `locked_until` less the configured lock time) among the failures that lock it and `login.locked` is a
    `login.locked`. A new lock begins with new failures, so its first refused attempt is audited again; a failure
    during the lock (a wrong password given in a session still open, `refuse_password`) lets the next attempt be
    audited too. The account's row is locked first, so that attempts in other processes at the same moment wait
    for this one's entry and write none of their own."""
    await session.execute(select(StaffUser.id).where(StaffUser.id == user.id).with_for_update())
    assert user.locked_until is not None
    since = user.locked_until - timedelta(minutes=lock_minutes)
    if await audit.newest_action(session, actor_id=user.id, actions=(*LOCK_STARTS, "login.locked"),
                                 since=since) == "login.locked":
        return False
    await audit.record(session, user, "login.locked", detail={"user": username}, ip=ip)
    return True


async def record_throttled(session: AsyncSession, *, username: str, ip: str | None, failures: int,
                           minutes: int) -> None:
    """An address reached the login throttle's limit (`failures` within the window) with a failure that tried
    `username`; it waits `minutes`. The entry's actor is the account named, if there is one, as a failure's is."""
    user = await get_staff_by_username(session, username)
    await audit.record(session, user, "login.throttled",
                       detail={"user": username, "failures": failures, "minutes": minutes}, ip=ip)


async def refuse_password(session: AsyncSession, user: StaffUser, *, purpose: str, ip: str | None, attempts: int,
                          lock_minutes: int) -> bool:
    """A wrong password given by a logged-in user to confirm `purpose` (a password change, removing the second
    factor): counted like a failed login, so that a session left open is no way around the account's lock, and
    audited. At the lock every session of the account ends. Returns whether it locked now."""
    locked = await _count_failure(session, user, attempts=attempts, lock_minutes=lock_minutes)
    await audit.record(session, user, "account.password_refused",
                       detail={"user": user.username, "purpose": purpose, "locked": locked}, ip=ip)
    if locked:
        await session.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
    return locked


async def start_session(session: AsyncSession, user: StaffUser, *, hours: float, ip: str | None,
                        second_factor_done: bool) -> tuple[str, StaffSession]:
    token = secrets.token_urlsafe(32)
    record = StaffSession(token_hash=token_hash(token), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                          second_factor_done=second_factor_done, expires_at=utcnow() + timedelta(hours=hours), ip=ip)
    session.add(record)
    await session.flush()
    return token, record


async def find_session(session: AsyncSession, token: str) -> StaffSession | None:
    query = select(StaffSession).where(StaffSession.token_hash == token_hash(token))
    record = (await session.execute(query)).scalar_one_or_none()
    if record is None or record.expires_at < utcnow():
        return None
    return record


async def end_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(StaffSession).where(StaffSession.token_hash == token_hash(token)))


async def create_api_token(session: AsyncSession, user: StaffUser, name: str, *,
                           actor: StaffUser | None) -> tuple[str, ApiToken]:
    token = "qlt_" + secrets.token_urlsafe(32)
    record = ApiToken(user_id=user.id, name=name, token_hash=token_hash(token), revoked=False)
    session.add(record)
    await session.flush()
    await audit.record(session, actor, "api_token.create",
                       detail={"user": user.username, "name": name, "token_id": record.id})
    return token, record


TOKEN_USE_RESOLUTION = timedelta(minutes=5)
"""How exact an API token's `last_used_at` is: at most one write per token in this time."""


async def find_api_token(session: AsyncSession, token: str) -> ApiToken | None:
    """The active token with this secret (a read: `record_token_use` notes the use)."""
    query = select(ApiToken).where(ApiToken.token_hash == token_hash(token), ApiToken.revoked.is_(False))
    return (await session.execute(query)).scalar_one_or_none()


def token_use_is_news(record: ApiToken, now: datetime) -> bool:
    """Whether `record_token_use` would change anything (so a caller on a read session can skip it)."""
    return record.last_used_at is None or record.last_used_at < now - TOKEN_USE_RESOLUTION


async def record_token_use(session: AsyncSession, token_id: int, now: datetime) -> None:
    """Note that a token was used, unless it was noted less than `TOKEN_USE_RESOLUTION` ago."""
    await session.execute(update(ApiToken).where(
        ApiToken.id == token_id,
        (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - TOKEN_USE_RESOLUTION),
    ).values(last_used_at=now))


async def list_api_tokens(session: AsyncSession, user_id: int) -> list[ApiToken]:
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
    return list((await session.execute(query)).scalars())


async def get_api_token(session: AsyncSession, token_id: int) -> ApiToken | None:
    return await session.get(ApiToken, token_id)


async def revoke_api_token(session: AsyncSession, record: ApiToken, *, actor: StaffUser | None) -> None:
    """Audited with whose token it was and which (names are the owner's choice, and repeat across accounts)."""
    record.revoked = True
    owner = await session.get(StaffUser, record.user_id)
    await audit.record(session, actor, "api_token.revoke", detail={
        "user": owner.username if owner else None, "name": record.name, "token_id": record.id})


# --- work on cases ----------------------------------------------------------------------------


def _open(case: Case) -> None:
    if case.status in CLOSED_STATUSES:
        raise ActionError.of("case_is_status", number=case.case_number, status=case.status)


async def accept_case(session: AsyncSession, case: Case, *, actor: StaffUser) -> TraceEvent:
    if case.status not in (CaseStatus.RECEIVED, CaseStatus.ROUTED):
        raise ActionError.of("accepted_already", number=case.case_number)
    event = await actions.change_status(session, case, CaseStatus.ACCEPTED, actor=actor_ref(actor))
    await audit.record(session, actor, "case.accept", case=case)
    return event


async def set_status(session: AsyncSession, case: Case, status: CaseStatus, *, actor: StaffUser,
                     body: str | None = None, rating_labels: Sequence[str] | None = None) -> TraceEvent:
    """A new status by hand, within the lifecycle the reporter reads: "answered" only once the reporter has an
    answer (answering marks it), "closed" with the answer or a note that tells the result, and a closed case
    reopened with the reason (`body`, which the reporter is told). With `rating_labels` (the reporter's rating
    choices in their language), closing a case not yet rated also asks the reporter to rate it
    (`loop.offer_rating`): the closing notice tells the status and staff's note, the rating notice only asks."""
    if status == CaseStatus.DUPLICATE:
        raise ActionError.of("duplicate_by_hand")
    has_note = bool(body and body.strip())
    if status in (CaseStatus.ANSWERED, CaseStatus.CLOSED) and not (status == CaseStatus.CLOSED and has_note):
        if not await queries.answered_case_ids(session, [case.id]):
            raise ActionError.of("answered_needs_answer" if status == CaseStatus.ANSWERED else "closed_needs_answer",
                                 number=case.case_number)
    if case.status in CLOSED_STATUSES and status not in CLOSED_STATUSES and not has_note:
        raise ActionInputError.of("reopen_needs_reason", number=case.case_number, status=case.status)
    # a rating given before (a case reopened and closed again) stays the rating
    asked = rating_labels if status == CaseStatus.CLOSED and case.rating is None else None
    event = await actions.change_status(session, case, status, actor=actor_ref(actor), body=body,
                                        rating_follows=asked is not None)
    await audit.record(session, actor, "case.status", case=case, detail={"status": str(status)})
    if asked is not None:
        await loop.offer_rating(session, case, labels=asked, status_told=True)
    return event


async def mark_duplicate(session: AsyncSession, case: Case, original: Case, *, actor: StaffUser) -> TraceEvent:
    if original.id == case.id:
        raise ActionInputError.of("duplicate_itself")
    case.duplicate_of_id = original.id
    event = await actions.change_status(session, case, CaseStatus.DUPLICATE, actor=actor_ref(actor),
                                        body=original.case_number)
    await audit.record(session, actor, "case.duplicate", case=case, detail={"of": original.case_number})
    return event


async def confirm_label(session: AsyncSession, case: Case, *, actor: StaffUser) -> None:
    if case.label is None:
        raise ActionError.of("no_label")
    case.label_status = "confirmed"
    await audit.record(session, actor, "case.confirm_label", case=case, detail={"label": case.label})


async def correct_label(session: AsyncSession, case: Case, label: str, *, actor: StaffUser, queue: str,
                        accept_due_at: datetime | None, resolve_due_at: datetime | None) -> TraceEvent | None:
    """A reviewer's label; it becomes training data and moves an open case where routing sends that label (a closed
    case stays with the queue that closed it)."""
    if label == case.label and case.label_status is not None:
        raise ActionError.of("label_already", label=label)
    previous = case.label
    case.label = label
    case.label_status = "corrected" if label != case.predicted_label else "confirmed"
    if label == previous:  # the label it had, not yet reviewed: a confirmation (that still routes the case)
        await audit.record(session, actor, "case.confirm_label", case=case, detail={"label": label})
    else:
        await audit.record(session, actor, "case.correct_label", case=case, detail={"from": previous, "to": label})
    if queue != case.queue and case.status not in CLOSED_STATUSES:  # routed anew: the new queue's deadlines
        return await loop.transfer(session, case, queue, reason=f"label {previous} → {label}", actor=actor,
                                   deadlines=(accept_due_at, resolve_due_at))
    return None


async def assign_case(session: AsyncSession, case: Case, assignee: StaffUser | None, *, actor: StaffUser) -> None:
    case.assigned_to_id = assignee.id if assignee else None
    await staff_notices.refresh_unread(session, case.id)  # unread again if the new assignee has not seen it
    await audit.record(session, actor, "case.assign", case=case,
                detail={"to": assignee.username if assignee else None})


async def add_note(session: AsyncSession, case: Case, body: str, *, actor: StaffUser) -> InternalNote:
    body = body.strip()
    if not body:
        raise ActionInputError.of("note_needs_text")
    note = InternalNote(case_id=case.id, author_id=actor.id, body=body)
    session.add(note)
    await session.flush()
    await audit.record(session, actor, "case.note", case=case, detail={"note_id": note.id})
    return note


async def answer_reporter(session: AsyncSession, case: Case, text: str, *, actor: StaffUser) -> TraceEvent:
    event = await actions.reply_to_reporter(session, case, text, actor=actor_ref(actor))
    await audit.record(session, actor, "case.answer", case=case, detail={"trace_event_id": event.id})
    return event


IDENTITY_REASON_MIN_CHARS = 4
"""The letters and digits a reason for seeing reporters' identities has at least ("核实线索" has four)."""


def identity_reason_says_enough(reason: str | None) -> bool:
    """Whether a reason for seeing reporters' identities says something: spaces, punctuation and symbols do not
    count, so "." or "？？？？" is no reason."""
    return sum(1 for ch in reason or "" if ch.isalnum()) >= IDENTITY_REASON_MIN_CHARS


async def reveal_identity(session: AsyncSession, case: Case, *, actor: StaffUser, ip: str | None,
                          reason: str) -> tuple[str | None, str | None]:
    """A real-name reporter's name and phone; every reveal is audited with the reason given for it (one that
    says something: `identity_reason_says_enough`)."""
    if case.anonymous:
        raise ActionError.of("reporter_anonymous")
    reason = reason.strip()
    if not identity_reason_says_enough(reason):
        raise ActionInputError.of("reveal_needs_reason", chars=IDENTITY_REASON_MIN_CHARS)
    await audit.record(session, actor, "case.reveal_identity", case=case, ip=ip, detail={"reason": reason})
    return case.reporter_name, case.reporter_phone


async def record_view(session: AsyncSession, case: Case, *, actor: StaffUser, ip: str | None) -> None:
    """Staff opened the case: audited, and what the reporter added before now is read (`staff_notices`)."""
    await audit.record(session, actor, "case.view", case=case, ip=ip)
    await staff_notices.case_seen(session, case.id, actor.id, utcnow())
