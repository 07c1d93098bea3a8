"""Staff sessions: the password step, the second factor, logging out and a new password (which ends every
other session). Each is one transaction opened here; the login pages only parse the form and render."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from console.auth import totp_step
from console.context import ConsoleContext
from storage import audit, staff_actions
from storage.models import StaffUser, utcnow


@dataclass(frozen=True)
class PasswordStep:
    token: str | None  # the new session's token; None when the login is refused
    second_factor: bool  # the session still needs the second factor


@dataclass(frozen=True)
class SecondFactorStep:
    token: str | None  # the new, complete session's token; None when the code was refused
    locked: bool  # the account is locked now (and the half-done session has ended)


@dataclass(frozen=True)
class PasswordConfirmation:
    ok: bool  # the password is the account's
    locked: bool  # a wrong one locked the account now, and its sessions have ended


def _locked(user: StaffUser) -> bool:
    return user.locked_until is not None and user.locked_until > utcnow()


async def password_step(context: ConsoleContext, username: str, password: str, *, ip: str | None) -> PasswordStep:
    """Check a username and password; count a failure against the account (which locks after the configured
    number) or start a session, complete unless the account has or needs a second factor."""
    console = context.city.console
    async with context.database.read_sessionmaker() as session:
        found = await staff_actions.get_staff_by_username(session, username)
    checked_hash = found.password_hash if found else None
    # Argon2 takes tens of milliseconds on purpose: off the event loop, outside the write transaction.
    password_ok = await asyncio.to_thread(context.passwords.verify, checked_hash, password)
    async with context.database.sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = ip
        user = await staff_actions.get_staff_by_username(session, username)
        password_ok = password_ok and user is not None and user.password_hash == checked_hash
        locked = user is not None and _locked(user)
        if user is None or locked or not password_ok or not user.active:
            if locked:  # audited once per lock, by the first attempt that meets it (`record_locked_attempt`)
                assert user is not None
                await staff_actions.record_locked_attempt(session, user, username=username, ip=ip,
                                                          lock_minutes=console.login_lock_minutes)
            else:
                await staff_actions.record_login(session, user, success=False, username=username, ip=ip,
                                                 attempts=console.login_attempts,
                                                 lock_minutes=console.login_lock_minutes)
            return PasswordStep(None, False)
        second_factor = bool(user.totp_secret) or user.totp_required
        if second_factor:  # the failure count is reset only once the second factor is done too
            await audit.record(session, user, "login.password_ok", detail={"user": username}, ip=ip)
        else:
            await staff_actions.record_login(session, user, success=True, username=username, ip=ip,
                                             attempts=console.login_attempts, lock_minutes=console.login_lock_minutes)
        token, _ = await staff_actions.start_session(session, user, hours=console.session_hours, ip=ip,
                                                     second_factor_done=not second_factor)
    return PasswordStep(token, second_factor)


async def address_throttled(context: ConsoleContext, username: str, *, ip: str | None, failures: int,
                            minutes: int) -> None:
    """The audit entry of an address that has just reached the login throttle's limit, with the username its last
    failure tried (the requests refused afterwards are not audited one by one: `console.throttle`)."""
    async with context.database.sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = ip
        await staff_actions.record_throttled(session, username=username, ip=ip, failures=failures, minutes=minutes)


async def second_factor_step(context: ConsoleContext, user_id: int, code: str, *, enrol_secret: str | None,
                             old_token: str | None, ip: str | None) -> SecondFactorStep:
    """Check a TOTP code (of the account's secret, or of `enrol_secret` when the account enrols now); a
    right code replaces the half-done session with a complete one, a wrong one counts as a failed login.
    A code is good once: the same code again (its time-step used up) counts as a wrong one."""
    console = context.city.console
    async with context.database.sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = ip  # the enrolment's entry too, not only the sign-in's
        user = await staff_actions.get_staff(session, user_id)
        assert user is not None
        secret = enrol_secret if enrol_secret and not user.totp_secret else user.totp_secret
        locked = _locked(user)
        new_token: str | None = None
        step = totp_step(secret, code) if secret is not None and not locked else None
        if step is not None and not user.totp_secret:
            await staff_actions.set_totp(session, user, secret, actor=user, confirmed_step=step)
            code_ok = True
        else:
            code_ok = step is not None and await staff_actions.accept_totp_step(session, user, step)
        if code_ok:
            await staff_actions.record_login(session, user, success=True, username=user.username, ip=ip,
                                             attempts=console.login_attempts, lock_minutes=console.login_lock_minutes)
            if old_token:
                await staff_actions.end_session(session, old_token)
            new_token, _ = await staff_actions.start_session(session, user, hours=console.session_hours, ip=ip,
                                                             second_factor_done=True)
        elif not locked:
            await staff_actions.record_login(session, user, success=False, username=user.username, ip=ip,
                                             attempts=console.login_attempts, lock_minutes=console.login_lock_minutes)
        now_locked = _locked(user)
        if now_locked and old_token:
            await staff_actions.end_session(session, old_token)
    return SecondFactorStep(new_token, now_locked)


async def log_out(context: ConsoleContext, user: StaffUser, token: str | None, *, ip: str | None) -> None:
    async with context.database.sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = ip
        if token:
            await staff_actions.end_session(session, token)
        await audit.record(session, user, "logout", ip=ip)


async def new_password(context: ConsoleContext, user_id: int, password_hash: str, *, ip: str | None) -> str:
    """Set the user's own new password: every session of theirs ends and their API tokens are revoked;
    returns the token of a new session."""
    async with context.database.sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = ip
        user = await staff_actions.get_staff(session, user_id)
        assert user is not None
        await staff_actions.set_password(session, user, password_hash, actor=user)  # ends every session
        token, _ = await staff_actions.start_session(session, user, hours=context.city.console.session_hours,
                                                     ip=ip, second_factor_done=True)
    return token


async def set_own_totp(context: ConsoleContext, user_id: int, secret: str | None, *, ip: str | None,
                       confirmed_step: int | None = None) -> None:
    """Turn the user's own second factor on (with a secret confirmed by a code of `confirmed_step`) or off
    (None)."""
    async with context.database.sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = ip
        user = await staff_actions.get_staff(session, user_id)
        assert user is not None
        await staff_actions.set_totp(session, user, secret, actor=user, confirmed_step=confirmed_step)


async def confirm_own_password(context: ConsoleContext, user_id: int, password: str, *, purpose: str,
                               ip: str | None) -> PasswordConfirmation:
    """Check the password a logged-in user gives to confirm `purpose`; a wrong one counts towards the account's
    lock as a failed login does (`staff_actions.refuse_password`)."""
    async with context.database.read_sessionmaker() as session:
        found = await staff_actions.get_staff(session, user_id)
    checked_hash = found.password_hash if found else None
    if await asyncio.to_thread(context.passwords.verify, checked_hash, password):
        return PasswordConfirmation(ok=True, locked=False)
    console = context.city.console
    async with context.database.sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = ip
        user = await staff_actions.get_staff(session, user_id)
        locked = user is not None and await staff_actions.refuse_password(
            session, user, purpose=purpose, ip=ip, attempts=console.login_attempts,
            lock_minutes=console.login_lock_minutes)
    return PasswordConfirmation(ok=False, locked=locked)
