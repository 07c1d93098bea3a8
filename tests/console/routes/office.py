"""A staff console on an app of its own for the route tests: browsers of logged-in staff (httpx through the ASGI
app, no server), cases filed as residents file them, and what a page says (its error message, its flash, the
fields FastAPI refused)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from console.app import mount_console
from console.context import ConsoleContext
from storage import staff_actions
from storage.models import AuditEntry, Case, StaffRole
from tests.factories import console_session, create_staff, file_case

MESSAGE = re.compile(r'<p class="message">'
                     r'(?:<span class="bi">([^<]*)<span class="en">([^<]*)</span></span>|([^<]*))</p>')
FIELD_LOCATION = re.compile(r'<li data-loc="([^"]+)">')
FLASH = re.compile(r'<p class="flash ok" role="status"><span class="bi">([^<]*)<span class="en">')


class Office:
    """A console on an app of its own, with browsers of logged-in staff and cases filed as residents file them."""

    def __init__(self, context: ConsoleContext, stack: AsyncExitStack) -> None:
        self.context = context
        self.database = context.database
        self.stack = stack
        app = FastAPI()
        mount_console(app, context)
        self.transport = httpx.ASGITransport(app=app)

    async def login(self, username: str, role: StaffRole, queues: Sequence[str] = ()) -> tuple[httpx.AsyncClient, str]:
        """A new staff member's browser, logged in, and the CSRF token of its forms."""
        async with self.database.sessionmaker.begin() as session:
            user = await create_staff(session, username, role, queues)
        cookies, csrf = await console_session(self.context, user)
        client = await self.stack.enter_async_context(
            httpx.AsyncClient(transport=self.transport, base_url="http://console.test", cookies=cookies))
        return client, csrf

    async def browser(self, username: str, role: StaffRole, queues: Sequence[str] = ()) -> httpx.AsyncClient:
        return (await self.login(username, role, queues))[0]

    def anonymous(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url="http://console.test")

    async def case(self, queue: str = "clean_hall", reporter: str = "42", **values: Any) -> str:
        async with self.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, queue=queue, reporter_ref=reporter,
                                      secret_key=self.context.secret_key, **values)
        return str(case.case_number)

    async def assign(self, case_number: str, username: str) -> None:
        async with self.database.sessionmaker.begin() as session:
            case = (await session.execute(select(Case).where(Case.case_number == case_number))).scalar_one()
            user = await staff_actions.get_staff_by_username(session, username)
            assert user is not None
            await staff_actions.assign_case(session, case, user, actor=user)

    async def exports(self) -> list[AuditEntry]:
        async with self.database.read_sessionmaker() as session:
            return list((await session.execute(select(AuditEntry).where(AuditEntry.action == "case.export")
                                               .order_by(AuditEntry.id))).scalars())


def page_reason(response: httpx.Response) -> tuple[str, str]:
    """What the console's error page says, in Chinese and in English (a reason said in one line twice)."""
    assert response.headers["content-type"].startswith("text/html"), response.text[:300]
    found = MESSAGE.search(response.text)
    if found is None:
        return "", ""
    chinese, english, one_line = (html.unescape(part) for part in found.groups(""))
    return (chinese, english) if not one_line else (one_line, one_line)


def page_message(response: httpx.Response) -> str:
    """What the console's error page says (in English)."""
    return page_reason(response)[1]


def flash(page: str) -> str | None:
    """The confirmation a page shows after an action (`?done=…`), if any."""
    found = FLASH.search(page)
    return html.unescape(found.group(1)) if found else None


def invalid_fields(response: httpx.Response) -> list[list[str | int]]:
    """Where the fields FastAPI refused are ("body", name), ("query", name), ("path", name), as the console's error
    page for a refused form lists them."""
    assert response.status_code == 422, response.text[:300]
    assert "<html" in response.text and '{"detail"' not in response.text  # a page, not the API's JSON
    return [[int(part) if part.isdigit() else part for part in where.split(".")]
            for where in FIELD_LOCATION.findall(response.text)]
