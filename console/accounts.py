"""What administrators and each user do to staff accounts and API tokens, and the audit log: once for the
pages and the REST API, one transaction per operation (as in `console.operations`)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Collection
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from console import texts
from console.auth import Principal
from console.exports import neutralised
from console.operations import OperationError, require_admin
from console.passwords import WeakPassword
from console.rendering import Names
from handlers.city import CityConfig
from handlers.validation import readable
from storage import audit, queries, staff_actions
from storage.actions import ActionError
from storage.models import ApiToken, StaffRole, StaffUser


async def staff_usernames(principal: Principal, user_ids: Collection[int]) -> dict[int, str]:
    """id → username of the given staff accounts (to show who a case is assigned to)."""
    if not user_ids:
        return {}
    async with principal.context.database.read_sessionmaker() as session:
        return {user.id: user.username for user in await staff_actions.list_staff(session) if user.id in user_ids}


def _check_queues(principal: Principal, queues: Collection[str]) -> None:
    known = {queue.code for queue in principal.context.city.queues}
    unknown = sorted(set(queues) - known)
    if unknown:
        raise OperationError(422, "unknown_queues", queues=", ".join(unknown), count=len(unknown))


async def staff_user(principal: Principal, username: str) -> StaffUser:
    """One staff account (administrators only); 404 for an unknown username."""
    require_admin(principal)
    async with principal.context.database.read_sessionmaker() as session:
        user = await staff_actions.get_staff_by_username(session, username)
    if user is None:
        raise OperationError(404, "no_staff", username=username)
    return user


async def list_staff(principal: Principal) -> list[StaffUser]:
    require_admin(principal)
    async with principal.context.database.read_sessionmaker() as session:
        return await staff_actions.list_staff(session)


class NoQueuesWarning(OperationError):
    """A reviewer without queues sees no case: refused until the administrator confirms it."""

    def __init__(self) -> None:
        super().__init__(422, "reviewer_without_queues")


async def add_staff(principal: Principal, *, username: str, display_name: str, role: StaffRole,
                    queues: Collection[str], password: str, no_queues_ok: bool = False) -> StaffUser:
    """A new account whose owner must change the password (an administrator chose or generated it) at their
    first login. A reviewer without queues needs `no_queues_ok` (NoQueuesWarning otherwise)."""
    require_admin(principal)
    _check_queues(principal, queues)
    async with principal.context.database.read_sessionmaker() as session:
        taken = await staff_actions.name_taken(session, username)
        if taken is not None:
            raise OperationError.refused(409, taken)
    if role == StaffRole.REVIEWER and not queues and not no_queues_ok:
        raise NoQueuesWarning()
    try:
        password_hash = await asyncio.to_thread(partial(principal.context.passwords.hash, password,
                                                        user_inputs=(username, display_name)))
    except WeakPassword as weak:
        raise OperationError(422, weak.key, **weak.values) from None
    async with principal.write() as session:
        try:
            user = await staff_actions.create_staff(session, username=username, display_name=display_name,
                                                    role=role, password_hash=password_hash, actor=principal.user,
                                                    must_change_password=True)
        except ActionError as error:
            raise OperationError.refused(409, error) from None
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
    async with principal.write() as session:
        user = await staff_actions.get_staff_by_username(session, username)
        if user is None:
            raise OperationError(404, "no_staff_named", username=username)
        if user.id == principal.user.id and ((role is not None and role != user.role) or active is False):
            raise OperationError(409, "own_account")
        if role is not None and role != user.role:
            await staff_actions.set_role(session, user, role, actor=principal.user)
        if queues is not None:
            await staff_actions.set_queues(session, user, list(queues), actor=principal.user)
        if active is not None and active != user.active:
            await staff_actions.set_active(session, user, active, actor=principal.user)
        if totp_required is not None and totp_required != user.totp_required:
            await staff_actions.require_totp(session, user, totp_required, actor=principal.user)
        return await staff_actions.reloaded(session, user)


async def api_tokens(principal: Principal) -> list[ApiToken]:
    async with principal.context.database.read_sessionmaker() as session:
        return await staff_actions.list_api_tokens(session, principal.user.id)


async def create_api_token(principal: Principal, name: str) -> tuple[str, ApiToken]:
    """A new token for the user; only from a console login, so a leaked token cannot mint more."""
    if principal.session is None:
        raise OperationError(403, "token_from_token")
    name = token_name(name)
    async with principal.write() as session:
        return await staff_actions.create_api_token(session, principal.user, name, actor=principal.user)


def token_name(name: str) -> str:
    """A token's name as it is kept: it is written into every audit entry of what the token does, so no control,
    direction or invisible characters (a right-to-left override made a name read backwards in the audit log);
    422 when nothing visible is left."""
    cleaned = readable(name)
    if not cleaned:
        raise OperationError(422, "token_needs_name")
    return cleaned


async def revoke_api_token(principal: Principal, token_id: int) -> None:
    async with principal.write() as session:
        record = await staff_actions.get_api_token(session, token_id)
        if record is None or record.user_id != principal.user.id:
            raise OperationError(404, "no_own_token", token_id=token_id)
        if not record.revoked:
            await staff_actions.revoke_api_token(session, record, actor=principal.user)


async def audit_log(principal: Principal, *, page: int, per_page: int, actor: str | None = None,
                    case_number: str | None = None, action: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, bulk: str | None = None) -> tuple[list[audit.AuditRow], int]:
    """Entries of the audit log (administrators) by actor's username, case number, action (or a group of them
    such as "case."), period [since, until), and bulk action (its id: the entries of one action on a selection)."""
    require_admin(principal)
    async with principal.context.database.read_sessionmaker() as session:
        actor_id = case_id = None
        if actor is not None:
            user = await staff_actions.get_staff_by_username(session, actor)
            if user is None:
                return [], 0
            actor_id = user.id
        if case_number is not None:
            case_id = await queries.case_id_by_number(session, case_number)
            if case_id is None:
                return [], 0
        flt = audit.AuditFilter(actor_id=actor_id, case_id=case_id, action=action, since=since, until=until,
                                bulk_id=bulk)
        return await audit.audit_log(session, page=page, per_page=per_page, flt=flt)


MAX_AUDIT_EXPORT = 50_000


AUDIT_COLUMNS = ("time", "user", "action", "case", "detail", "address", "action_name", "detail_text")
"""The audit export's columns by their texts `audit_column.<name>`: `detail` is the entry's detail as data (JSON,
every id kept, for tools), `action_name` and `detail_text` the action and its detail as the audit page says them."""


def audit_sheet(rows: list[audit.AuditRow], city: CityConfig, locale: str = "zh") -> bytes:
    """The entries as CSV: columns named in Chinese and English, the action and its detail said in both (`zh`), or
    everything in English (`en`), times in the city's time zone."""
    names, zone = Names(city), ZoneInfo(city.timezone)
    english = locale == "en"

    def said(pair: tuple[str, str], between: str) -> str:
        return pair[1] if english else between.join(dict.fromkeys(part for part in pair if part))

    def column(name: str) -> str:
        zh, en = texts.pair(f"audit_column.{name}")
        return (en if english else f"{zh} {en}") + (f" ({zone.key})" if name == "time" else "")

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([column(name) for name in AUDIT_COLUMNS])
    for entry, username, number in rows:
        writer.writerow([neutralised(value) for value in (
            entry.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), username or "", entry.action,
            number or "", json.dumps(entry.detail or {}, ensure_ascii=False, sort_keys=True), entry.ip or "",
            said(names.audit_action(entry.action), " "),
            said(names.audit_details(entry.detail, with_ids=True), " / "))])
    return buffer.getvalue().encode("utf-8-sig")


async def audit_export(principal: Principal, *, ip: str | None, described: dict[str, str], locale: str = "zh",
                       **filters: Any) -> bytes:
    """The entries of the filter as CSV (`audit_sheet`), at most `MAX_AUDIT_EXPORT`; the export is itself
    audited."""
    rows, total = await audit_log(principal, page=1, per_page=MAX_AUDIT_EXPORT, **filters)
    if total > MAX_AUDIT_EXPORT:
        raise OperationError(422, "audit_export_too_many", total=total, limit=MAX_AUDIT_EXPORT)
    content = audit_sheet(rows, principal.context.city, locale)
    async with principal.write() as session:
        await audit.record(session, principal.user, "audit.export", ip=ip,
                                  detail={"count": len(rows), "filter": described})
    return content


async def tokens_of(principal: Principal, user_id: int) -> list[ApiToken]:
    """A user's API tokens, the active ones first, newest first (their own, or any for administrators)."""
    if user_id != principal.user.id:
        require_admin(principal)
    async with principal.context.database.read_sessionmaker() as session:
        tokens = await staff_actions.list_api_tokens(session, user_id)
    return sorted(tokens, key=lambda token: (token.revoked, -token.id))


async def _staff_to_change(session: AsyncSession, principal: Principal, username: str) -> StaffUser:
    require_admin(principal)
    user = await staff_actions.get_staff_by_username(session, username)
    if user is None:
        raise OperationError(404, "no_staff", username=username)
    return user


async def reset_password(principal: Principal, username: str, password_hash: str) -> int:
    """A new password an administrator set for someone: the account's sessions end, its API tokens are
    revoked (returns how many) and its owner must choose a new password at the next login."""
    async with principal.write() as session:
        user = await _staff_to_change(session, principal, username)
        return await staff_actions.set_password(session, user, password_hash, actor=principal.user,
                                                must_change=user.id != principal.user.id)


async def reset_totp(principal: Principal, username: str) -> None:
    """Remove someone's second factor (a lost phone); they enrol again at their next login if it is required."""
    async with principal.write() as session:
        user = await _staff_to_change(session, principal, username)
        await staff_actions.set_totp(session, user, None, actor=principal.user)


async def create_token_for(principal: Principal, username: str, name: str) -> str:
    """A new API token for someone's account (administrators); returns its secret."""
    name = token_name(name)
    async with principal.write() as session:
        user = await _staff_to_change(session, principal, username)
        token, _ = await staff_actions.create_api_token(session, user, name, actor=principal.user)
    return token


async def revoke_token_of(principal: Principal, username: str, token_id: int) -> None:
    async with principal.write() as session:
        user = await _staff_to_change(session, principal, username)
        record = await staff_actions.get_api_token(session, token_id)
        if record is None or record.user_id != user.id:
            raise OperationError(404, "no_user_token", username=username, token_id=token_id)
        if not record.revoked:
            await staff_actions.revoke_api_token(session, record, actor=principal.user)


async def record(principal: Principal, action: str, detail: dict[str, Any]) -> None:
    """An audit entry of an action outside the database (training, promoting or rolling back a model)."""
    async with principal.write() as session:
        await audit.record(session, principal.user, action, detail=detail)
