"""Staff accounts, API tokens and the audit log as administrators and each user manage them, through the REST
API and the staff pages of a console on an app of its own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from console.app import mount_console
from console.context import ConsoleContext
from storage import staff_actions
from storage.models import ApiToken, AuditEntry, StaffRole
from tests.console.conftest import make_context
from tests.factories import console_session, create_staff, file_case

TOKEN_ROW = re.compile(r"<tr (?:class=\"dim\")?>\s*<td>([^<]+)</td>")


class Console:
    def __init__(self, context: ConsoleContext) -> None:
        self.context = context
        app = FastAPI()
        mount_console(app, context)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test")
        self.bearer: dict[str, dict[str, str]] = {}

    async def staff(self, username: str, role: StaffRole = StaffRole.REVIEWER, queues: tuple[str, ...] = ()) -> int:
        async with self.context.database.sessionmaker.begin() as session:
            user = await create_staff(session, username, role, queues)
            token, _ = await staff_actions.create_api_token(session, user, "tests", actor=user)
        self.bearer[username] = {"Authorization": f"Bearer {token}"}
        return user.id

    async def log_in(self, username: str) -> str:
        """The console login of `username` for the pages; returns its CSRF token."""
        async with self.context.database.read_sessionmaker() as session:
            user = await staff_actions.get_staff_by_username(session, username)
        assert user is not None
        cookies, csrf = await console_session(self.context, user)
        self.client.cookies.update(cookies)
        return csrf

    async def audit_entries(self) -> int:
        async with self.context.database.read_sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


@pytest.fixture
async def console(database: Any, tmp_path: Path) -> AsyncIterator[Console]:
    built = Console(make_context(database, tmp_path))
    async with built.client:
        yield built


async def test_the_audit_log_of_an_unknown_person_or_case_is_empty(console: Console) -> None:
    await console.staff("root", StaffRole.ADMIN)
    for params in ({"actor": "nobody"}, {"case": "QL-2026-424242"}):
        response = await console.client.get("/api/v1/audit", params=params, headers=console.bearer["root"])
        assert (response.status_code, response.json()["items"], response.json()["total"]) == (200, [], 0)


async def test_a_change_that_changes_nothing_writes_nothing_to_the_audit_log(console: Console) -> None:
    await console.staff("root", StaffRole.ADMIN)
    await console.staff("li", queues=("clean_hall",))
    before = await console.audit_entries()

    same = await console.client.patch("/api/v1/staff/li", json={"role": "reviewer", "active": True,
                                                                "totp_required": False},
                                      headers=console.bearer["root"])
    mars = await console.client.patch("/api/v1/staff/li", json={"queues": ["clean_hall", "mars"]},
                                      headers=console.bearer["root"])

    assert same.status_code == 200 and same.json()["queues"] == ["clean_hall"]
    assert (mars.status_code, mars.json()) == (422, {"detail": "unknown queue mars"})
    assert await console.audit_entries() == before


async def test_a_case_list_names_the_colleague_it_is_assigned_to(console: Console) -> None:
    await console.staff("wang", StaffRole.SUPERVISOR)
    await console.staff("li", queues=("clean_hall",))
    async with console.context.database.sessionmaker.begin() as session:
        case, _ = await file_case(session, queue="clean_hall")
    await console.client.post(f"/api/v1/cases/{case.case_number}/assign", json={"username": "li"},
                              headers=console.bearer["wang"])
    listed = (await console.client.get("/api/v1/cases", headers=console.bearer["li"])).json()["items"]
    assert [(item["case_number"], item["assignee"]) for item in listed] == [(case.case_number, "li")]


async def test_an_administrator_sees_a_users_tokens_active_first_and_revokes_only_that_users(
        console: Console) -> None:
    await console.staff("root", StaffRole.ADMIN)
    li = await console.staff("li", queues=("clean_hall",))
    zhao = await console.staff("zhao", queues=("clean_hall",))
    async with console.context.database.sessionmaker.begin() as session:
        user = await staff_actions.get_staff(session, li)
        assert user is not None
        _, old = await staff_actions.create_api_token(session, user, "old script", actor=user)
        await staff_actions.create_api_token(session, user, "dashboard", actor=user)
        await staff_actions.revoke_api_token(session, old, actor=user)
        zhaos_token = (await session.execute(select(ApiToken.id).where(ApiToken.user_id == zhao))).scalar_one()
    csrf = await console.log_in("root")

    page = await console.client.get("/console/staff/li")
    not_his = await console.client.post(f"/console/staff/li/tokens/{zhaos_token}/revoke", data={"csrf": csrf})

    assert TOKEN_ROW.findall(page.text) == ["dashboard", "tests", "old script"]
    assert not_his.status_code == 404 and f"li has no API token {zhaos_token}" in not_his.text
    assert (await console.client.get("/api/v1/me", headers=console.bearer["zhao"])).status_code == 200


async def test_an_administrator_removes_a_lost_second_factor(console: Console) -> None:
    await console.staff("root", StaffRole.ADMIN)
    li = await console.staff("li", queues=("clean_hall",))
    async with console.context.database.sessionmaker.begin() as session:
        user = await staff_actions.get_staff(session, li)
        assert user is not None
        await staff_actions.set_totp(session, user, "JBSWY3DPEHPK3PXP", actor=user)
    csrf = await console.log_in("root")

    removed = await console.client.post("/console/staff/li/totp-reset", data={"csrf": csrf})

    assert (removed.status_code, removed.headers["location"]) == (303, "/console/staff/li?done=saved")
    me = (await console.client.get("/api/v1/me", headers=console.bearer["li"])).json()
    assert me["totp_enabled"] is False
    log = (await console.client.get("/api/v1/audit", params={"actor": "root"}, headers=console.bearer["root"])).json()
    assert log["items"][0]["action"] == "staff.totp_remove"
