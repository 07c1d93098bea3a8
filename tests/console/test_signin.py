"""Staff sessions without the pages: the password step counts failures and locks, the second factor
replaces a half-done session, a new password ends every other session; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyotp
import pytest

from console import signin
from console.context import ConsoleContext
from storage import staff_actions
from storage.models import StaffRole, StaffUser
from tests.conftest import staff_password_hashing
from tests.console.conftest import make_context

PASSWORD = "a long enough password"
IP = "192.0.2.10"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return staff_password_hashing().hash(PASSWORD)


@pytest.fixture
def context(database: Any, tmp_path: Path) -> ConsoleContext:
    return make_context(database, tmp_path)


async def _staff(context: ConsoleContext, password_hash: str, *, totp_secret: str | None = None,
                 totp_required: bool = False, active: bool = True) -> StaffUser:
    async with context.database.sessionmaker.begin() as session:
        user = await staff_actions.create_staff(session, username="zhao", display_name="赵", role=StaffRole.REVIEWER,
                                                password_hash=password_hash)
        if totp_secret:
            await staff_actions.set_totp(session, user, totp_secret, actor=None)
        if totp_required:
            await staff_actions.require_totp(session, user, True, actor=None)
        if not active:
            await staff_actions.set_active(session, user, False)
    return user


async def _reload(context: ConsoleContext, user_id: int) -> StaffUser:
    async with context.database.read_sessionmaker() as session:
        user = await staff_actions.get_staff(session, user_id)
    assert user is not None
    return user


async def _session_done(context: ConsoleContext, token: str) -> bool | None:
    async with context.database.read_sessionmaker() as session:
        record = await staff_actions.find_session(session, token)
    return None if record is None else record.second_factor_done


async def test_the_right_password_starts_a_complete_session(context: ConsoleContext, password_hash: str) -> None:
    user = await _staff(context, password_hash)
    step = await signin.password_step(context, "zhao", PASSWORD, ip=IP)
    assert step.token is not None and not step.second_factor
    assert await _session_done(context, step.token) is True
    assert (await _reload(context, user.id)).last_login_at is not None


async def test_failures_lock_the_account_and_then_even_the_right_password_is_refused(
        context: ConsoleContext, password_hash: str) -> None:
    user = await _staff(context, password_hash)
    for _ in range(context.city.console.login_attempts):
        assert await signin.password_step(context, "zhao", "not the password", ip=IP) == signin.PasswordStep(
            None, False)
    assert (await _reload(context, user.id)).locked_until is not None
    assert (await signin.password_step(context, "zhao", PASSWORD, ip=IP)).token is None


@pytest.mark.parametrize("username", ["zhao", "nobody"])
async def test_a_disabled_or_unknown_account_gets_no_session(context: ConsoleContext, password_hash: str,
                                                              username: str) -> None:
    await _staff(context, password_hash, active=False)
    assert (await signin.password_step(context, username, PASSWORD, ip=IP)).token is None


async def test_the_second_factor_replaces_the_half_done_session(context: ConsoleContext, password_hash: str) -> None:
    secret = pyotp.random_base32()
    user = await _staff(context, password_hash, totp_secret=secret)
    half = await signin.password_step(context, "zhao", PASSWORD, ip=IP)
    assert half.token is not None and half.second_factor
    assert await _session_done(context, half.token) is False
    wrong = await signin.second_factor_step(context, user.id, "000000", enrol_secret=None, old_token=half.token, ip=IP)
    assert wrong == signin.SecondFactorStep(None, False)
    right = await signin.second_factor_step(context, user.id, pyotp.TOTP(secret).now(), enrol_secret=None,
                                            old_token=half.token, ip=IP)
    assert right.token is not None and not right.locked
    assert (await _session_done(context, half.token), await _session_done(context, right.token)) == (None, True)


async def test_a_required_second_factor_is_enrolled_with_the_signed_secret(context: ConsoleContext,
                                                                           password_hash: str) -> None:
    user = await _staff(context, password_hash, totp_required=True)
    half = await signin.password_step(context, "zhao", PASSWORD, ip=IP)
    assert half.second_factor
    secret = pyotp.random_base32()
    step = await signin.second_factor_step(context, user.id, pyotp.TOTP(secret).now(), enrol_secret=secret,
                                           old_token=half.token, ip=IP)
    assert step.token is not None
    assert (await _reload(context, user.id)).totp_secret == secret


async def test_every_entry_of_a_sign_in_with_enrolment_carries_the_address(context: ConsoleContext,
                                                                            password_hash: str) -> None:
    """Seen as an auditor: the second factor turned on while signing in was in the audit log without the address
    it was done from, unlike the sign-in entries around it."""
    from sqlalchemy import select

    from storage.models import AuditEntry

    user = await _staff(context, password_hash, totp_required=True)
    half = await signin.password_step(context, "zhao", PASSWORD, ip=IP)
    secret = pyotp.random_base32()
    await signin.second_factor_step(context, user.id, pyotp.TOTP(secret).now(), enrol_secret=secret,
                                    old_token=half.token, ip=IP)
    async with context.database.read_sessionmaker() as session:
        entries = (await session.execute(select(AuditEntry.action, AuditEntry.ip).where(AuditEntry.actor_id == user.id)
                                         .order_by(AuditEntry.id))).all()
    assert [tuple(entry) for entry in entries] == [
        ("login.password_ok", IP), ("staff.totp_enrol", IP), ("login.success", IP)]


async def test_wrong_codes_lock_the_account_and_end_the_half_done_session(context: ConsoleContext,
                                                                          password_hash: str) -> None:
    secret = pyotp.random_base32()
    user = await _staff(context, password_hash, totp_secret=secret)
    half = await signin.password_step(context, "zhao", PASSWORD, ip=IP)
    assert half.token is not None
    steps = [await signin.second_factor_step(context, user.id, "000000", enrol_secret=None, old_token=half.token,
                                             ip=IP) for _ in range(context.city.console.login_attempts)]
    assert [step.locked for step in steps][-2:] == [False, True]
    assert await _session_done(context, half.token) is None
    locked = await signin.second_factor_step(context, user.id, pyotp.TOTP(secret).now(), enrol_secret=None,
                                             old_token=None, ip=IP)
    assert locked == signin.SecondFactorStep(None, True)


async def test_a_new_password_ends_every_other_session(context: ConsoleContext, password_hash: str) -> None:
    user = await _staff(context, password_hash)
    other = await signin.password_step(context, "zhao", PASSWORD, ip=IP)
    assert other.token is not None
    token = await signin.new_password(context, user.id, staff_password_hashing().hash("another long password"), ip=IP)
    assert (await _session_done(context, other.token), await _session_done(context, token)) == (None, True)
    assert (await signin.password_step(context, "zhao", "another long password", ip=IP)).token is not None
    await signin.log_out(context, user, token, ip=IP)
    assert await _session_done(context, token) is None
