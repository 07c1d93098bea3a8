"""What the console takes from the context the shell hands in: cookies marked secure when staff reach it over
https, and the name an authenticator app shows for the account."""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi import FastAPI

from console.app import mount_console
from console.context import ConsoleContext
from storage.models import StaffRole
from tests.console.conftest import make_context
from tests.factories import console_session, create_staff


def _client(context: ConsoleContext) -> httpx.AsyncClient:
    app = FastAPI()
    mount_console(app, context)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test")


async def test_cookies_are_secure_when_staff_reach_the_console_over_https(database: Any, tmp_path: Path) -> None:
    plain = make_context(database, tmp_path)
    secure = replace(plain, public_url="https://qinglian.example.cn")
    flags = {}
    for context in (plain, secure):
        async with _client(context) as client:
            login_page = await client.get("/console/login")
        flags[context.public_url] = "secure" in login_page.headers["set-cookie"].lower().split("; ")
    assert flags == {"http://127.0.0.1:8000": False, "https://qinglian.example.cn": True}


async def test_an_authenticator_app_names_the_account_after_the_city(database: Any, tmp_path: Path) -> None:
    context = make_context(database, tmp_path)
    async with database.sessionmaker.begin() as session:
        user = await create_staff(session, "zhao", StaffRole.REVIEWER)
    cookies, _ = await console_session(context, user)
    async with _client(context) as client:
        client.cookies.update(cookies)
        page = await client.get("/console/account", params={"enrol": "1"})
    uri = html.unescape(unquote(page.text.split('<code class="uri">', 1)[1].split("</code>", 1)[0]))
    assert uri.startswith("otpauth://totp/Qinglian Changsha:zhao?secret=")
    assert uri.endswith("&issuer=Qinglian Changsha")
