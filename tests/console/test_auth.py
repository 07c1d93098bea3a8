"""Who is asking, through the console's HTTP API and pages on an app of its own: signed session cookies bound
to a server-side session, API tokens and when their use is noted, passwords, second-factor codes, and who
may see a reporter's identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from itsdangerous import URLSafeTimedSerializer

from console.app import mount_console
from console.auth import (
    SESSION_COOKIE,
    verify_totp,
)
from console.context import ConsoleContext
from storage import staff_actions
from storage.models import StaffRole, StaffUser
from tests.console.conftest import make_context
from tests.factories import console_session, create_staff, file_case


class Console:
    def __init__(self, context: ConsoleContext) -> None:
        self.context = context
        app = FastAPI()
        mount_console(app, context)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test")

    async def staff(self, username: str, role: StaffRole = StaffRole.SUPERVISOR) -> StaffUser:
        async with self.context.database.sessionmaker.begin() as session:
            return await create_staff(session, username, role, ["clean_hall"])

    async def token(self, user: StaffUser) -> str:
        async with self.context.database.sessionmaker.begin() as session:
            token, _ = await staff_actions.create_api_token(session, user, "script", actor=user)
        return token

    async def as_cookie(self, cookies: dict[str, str]) -> tuple[int, int]:
        """(the API's status for /me, the page's status for /console) with these cookies."""
        self.client.cookies.clear()
        self.client.cookies.update(cookies)
        api = await self.client.get("/api/v1/me")
        page = await self.client.get("/console")
        self.client.cookies.clear()
        return api.status_code, page.status_code


@pytest.fixture
async def console(database: Any, tmp_path: Path) -> AsyncIterator[Console]:
    built = Console(make_context(database, tmp_path))
    async with built.client:
        yield built


async def test_a_session_cookie_opens_the_console_until_it_is_forged_or_its_session_ended(console: Console) -> None:
    zhao = await console.staff("zhao")
    cookies, _ = await console_session(console.context, zhao)
    token = URLSafeTimedSerializer(console.context.secret_key, salt="qinglian-staff-session").loads(
        cookies[SESSION_COOKIE])
    forged = URLSafeTimedSerializer(b"another service's key", salt="qinglian-staff-session").dumps(token)
    expired, _ = await console_session(console.context, zhao, hours=-1)

    assert await console.as_cookie(cookies) == (200, 200)
    assert await console.as_cookie({SESSION_COOKIE: forged}) == (401, 303)
    assert await console.as_cookie({SESSION_COOKIE: cookies[SESSION_COOKIE][:-3]}) == (401, 303)
    assert await console.as_cookie(expired) == (401, 303)
    async with console.context.database.sessionmaker.begin() as session:
        await staff_actions.end_session(session, str(token))
    assert await console.as_cookie(cookies) == (401, 303)


async def test_an_api_tokens_use_is_noted_once_in_a_while(console: Console) -> None:
    zhao = await console.staff("zhao")
    token = await console.token(zhao)

    async def last_used() -> str | None:
        tokens = (await console.client.get("/api/v1/tokens", headers={"Authorization": f"bearer {token}"})).json()
        return str(tokens[0]["last_used_at"]) if tokens[0]["last_used_at"] else None

    async with console.context.database.read_sessionmaker() as session:
        before = await staff_actions.find_api_token(session, token)
    first = await last_used()
    second = await last_used()

    assert before is not None and before.last_used_at is None
    assert first is not None and second == first  # noted at the first call, not rewritten at the next


async def test_a_disabled_accounts_token_and_session_stop_working(console: Console) -> None:
    admin = await console.staff("root", StaffRole.ADMIN)
    zhao = await console.staff("zhao")
    token = await console.token(zhao)
    cookies, _ = await console_session(console.context, zhao)
    disabled = await console.client.patch("/api/v1/staff/zhao", json={"active": False},
                                          headers={"Authorization": f"Bearer {await console.token(admin)}"})
    assert disabled.status_code == 200
    me = await console.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (me.status_code, me.headers["www-authenticate"]) == (401, "Bearer")
    assert await console.as_cookie(cookies) == (401, 303)


async def test_who_may_see_a_reporters_identity_is_the_citys_decision(database: Any, tmp_path: Path) -> None:
    context = make_context(database, tmp_path)
    city = context.city.model_copy(update={"console": context.city.console.model_copy(
        update={"identity_roles": ["admin"]})})
    console = Console(replace(context, city=city))
    async with console.client:
        async with database.sessionmaker.begin() as session:
            case, _ = await file_case(session, anonymous=False, reporter_name="钱七", reporter_phone="13600002222",
                                      queue="clean_hall")
        supervisor = await console.staff("zhao")
        admin = await console.staff("root", StaffRole.ADMIN)
        url = f"/api/v1/cases/{case.case_number}/reveal-identity"

        reason = {"reason": "回访核实举报内容"}
        refused = await console.client.post(url, json=reason,
                                            headers={"Authorization": f"Bearer {await console.token(supervisor)}"})
        revealed = await console.client.post(url, json=reason,
                                             headers={"Authorization": f"Bearer {await console.token(admin)}"})

    assert (refused.status_code, refused.json()) == (403, {"detail": "your role may not see reporters' identities"})
    assert revealed.json() == {"case_number": case.case_number, "name": "钱七", "phone": "13600002222"}


def test_a_second_factor_code_is_accepted_with_spaces_and_an_old_one_is_not() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    current = totp.now()
    assert verify_totp(secret, current)
    assert verify_totp(secret, f" {current[:3]} {current[3:]} ")
    assert not verify_totp(secret, totp.at(datetime.now(UTC) - timedelta(minutes=10)))
    assert not verify_totp(secret, "12345a")
    assert not verify_totp(secret, "")
