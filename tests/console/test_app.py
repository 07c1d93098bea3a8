"""The console mounted on an app of its own (as the shell mounts it on the service's), with a context handed
in: where a visitor without a login is sent, how a refused operation is answered on a page and in the API,
its static files, and an API document that lists only the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from console.app import mount_console
from console.context import ConsoleContext
from storage import staff_actions
from storage.db import Database
from storage.models import StaffRole
from tests.conftest import make_test_keyring
from tests.console.conftest import make_context
from tests.factories import console_session, create_staff, file_case

STYLE_SHEET = (Path(__file__).resolve().parents[2] / "console" / "static" / "console.css").read_text(encoding="utf-8")


def _mounted(database: Database, data_dir: Path) -> tuple[FastAPI, ConsoleContext]:
    """The console on an app of its own, on `database`."""
    context = make_context(database, data_dir)
    app = FastAPI()
    mount_console(app, context)
    return app, context


@pytest.fixture
async def console(database: Any, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, ConsoleContext]]:
    app, context = _mounted(database, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as client:
        yield client, context


async def test_a_page_without_a_login_sends_the_visitor_to_log_in_and_back(
        console: tuple[httpx.AsyncClient, ConsoleContext]) -> None:
    client, _ = console
    response = await client.get("/console/queue/clean_hall")
    assert (response.status_code, response.headers["location"]) == (
        303, "/console/login?next=/console/queue/clean_hall")


async def test_a_login_without_its_second_factor_is_sent_to_the_second_factor(
        console: tuple[httpx.AsyncClient, ConsoleContext]) -> None:
    client, context = console
    async with context.database.sessionmaker.begin() as session:
        user = await create_staff(session, "zhao", StaffRole.SUPERVISOR)
    cookies, _ = await console_session(context, user, second_factor_done=False)
    client.cookies.update(cookies)
    response = await client.get("/console/stats")
    assert (response.status_code, response.headers["location"]) == (303, "/console/login/2fa?next=/console/stats")


async def test_a_refused_operation_is_json_in_the_api_and_an_error_page_in_the_console(
        console: tuple[httpx.AsyncClient, ConsoleContext]) -> None:
    client, context = console
    async with context.database.sessionmaker.begin() as session:
        user = await create_staff(session, "zhao", StaffRole.SUPERVISOR)
        token, _ = await staff_actions.create_api_token(session, user, "script", actor=user)
    cookies, _ = await console_session(context, user)

    api = await client.get("/api/v1/cases/QL-2026-424242", headers={"Authorization": f"Bearer {token}"})
    client.cookies.update(cookies)
    page = await client.get("/console/case/QL-2026-424242")

    assert (api.status_code, api.json()) == (404, {"detail": "no case QL-2026-424242 in your queues"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert ('<p class="message"><span class="bi">您负责的队列中没有案件 QL-2026-424242'
            '<span class="en">no case QL-2026-424242 in your queues</span></span></p>') in page.text


async def test_the_consoles_style_sheet_is_served(console: tuple[httpx.AsyncClient, ConsoleContext]) -> None:
    client, _ = console
    response = await client.get("/console/static/console.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert response.text == STYLE_SHEET


async def test_the_api_document_lists_the_api_and_no_page(console: tuple[httpx.AsyncClient, ConsoleContext]) -> None:
    client, _ = console
    document = (await client.get("/openapi.json")).json()
    assert document["paths"] and all(path.startswith("/api/v1/") for path in document["paths"])


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_page_whose_read_outlasts_the_read_timeout_says_so_and_the_next_one_works(
        database_url: str, tmp_path: Path) -> None:
    """A supervisor's statistics and an API list while the cases table is locked (as a migration would hold it):
    each read stops at the read timeout and the answer says what to change; once the lock is gone they load."""
    database = Database.connect(database_url, make_test_keyring(), read_timeout=0.5)
    app, context = _mounted(database, tmp_path)
    async with database.sessionmaker.begin() as session:
        user = await create_staff(session, "zhao", StaffRole.SUPERVISOR)
        token, _ = await staff_actions.create_api_token(session, user, "script", actor=user)
    cookies, _ = await console_session(context, user)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                                     cookies=cookies) as client:
            async with database.engine.connect() as holder:
                await holder.execute(text("LOCK TABLE cases IN ACCESS EXCLUSIVE MODE"))
                page = await client.get("/console/stats")
                api = await client.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"})
                await holder.rollback()
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
            assert "0.5 秒内未能读完" in page.text and "more than it can read in 0.5 s" in page.text
            assert api.status_code == 503
            assert api.json()["detail"].startswith("This page asked the database for more than it can read in 0.5 s")
            assert (await client.get("/console/stats")).status_code == 200
            assert (await client.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    finally:
        await database.dispose()


async def test_staff_asking_for_heavy_reads_at_once_take_turns_while_other_pages_are_served(
        database: Any, tmp_path: Path) -> None:
    """While another heavy read (someone's year of statistics, an export) holds the process's one slot, a
    supervisor's statistics page and export wait their turn — their queue page does not — and both answer in full
    once the slot is free."""
    app, context = _mounted(database, tmp_path)
    async with database.sessionmaker.begin() as session:
        user = await create_staff(session, "zhao", StaffRole.SUPERVISOR)
        await file_case(session, secret_key=context.secret_key)  # an export of no case would answer at once
    cookies, _ = await console_session(context, user)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                                 cookies=cookies) as client:
        async with database.heavy_read_slot():  # another heavy read is running
            statistics = asyncio.create_task(client.get("/console/stats"))
            export = asyncio.create_task(client.get("/console/export.csv"))
            queue_page = await client.get("/console/queue/clean_hall")
            assert queue_page.status_code == 200
            await asyncio.sleep(0.3)
            assert not statistics.done() and not export.done()
        page, csv = await asyncio.wait_for(asyncio.gather(statistics, export), 30)
    assert page.status_code == 200 and "统计" in page.text
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")


async def test_a_form_from_an_earlier_login_is_refused_as_expired_not_as_the_role(
        console: tuple[httpx.AsyncClient, ConsoleContext]) -> None:
    """A form typed in a tab of an earlier login (its CSRF token belongs to that login) was refused with "您的角色
    不能执行此操作 Your role may not do this": staff who may do it were told their role may not, and not what to do."""
    client, context = console
    async with context.database.sessionmaker.begin() as session:
        user = await create_staff(session, "zhao", StaffRole.SUPERVISOR)
    _, earlier_csrf = await console_session(context, user)
    cookies, _ = await console_session(context, user)
    client.cookies.update(cookies)
    page = await client.post("/console/replies", data={"csrf": earlier_csrf, "queue": "clean_hall", "title": "已受理",
                                                       "body": "您的举报已受理。"})
    assert page.status_code == 403
    assert "Your role may not do this" not in page.text and "您的角色不能执行此操作" not in page.text
    assert ("页面已过期（可能已在别处退出或重新登录）。请先复制已填写的内容，再重新打开页面后提交。"
            '<span class="en">The page has expired (you may have logged out or in again elsewhere). Copy what you '
            'typed, then open the page again and submit it.</span>') in page.text
