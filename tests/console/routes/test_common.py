"""What every list page shares: filter values are checked and a bad one is a 422 page naming the field, and
long lists come in pages whose links keep the filters."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from console.app import mount_console
from console.routes.common import PER_PAGE
from storage.models import StaffRole
from tests.console.conftest import make_context
from tests.factories import console_session, create_staff, file_case

CASE_LINK = re.compile(r'<a href="/console/case/(QL-\d{4}-\d{6})">')
MESSAGE = re.compile(r'<p class="message">(?:<span class="bi">[^<]*<span class="en">)?([^<]*)(?:</span></span>)?</p>')


@pytest.fixture
async def supervisor(database: Any, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A supervisor's browser, logged in to a console on an app of its own."""
    context = make_context(database, tmp_path)
    app = FastAPI()
    mount_console(app, context)
    async with database.sessionmaker.begin() as session:
        user = await create_staff(session, "wang", StaffRole.SUPERVISOR)
    cookies, _ = await console_session(context, user)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                                 cookies=cookies) as client:
        yield client


@pytest.mark.parametrize(("query", "message"), [
    ({"from": "2026-13-01"}, "from: a date like 2026-11-24, not '2026-13-01'"),
    ({"to": "yesterday"}, "to: a date like 2026-11-24, not 'yesterday'"),
    ({"conf_min": "150"}, "conf_min: a percentage from 0 to 100"),
    ({"conf_min": "-1"}, "conf_min: a percentage from 0 to 100"),
    ({"conf_max": "high"}, "conf_max: a percentage from 0 to 100, not 'high'"),
    ({"conf_max": "nan"}, "conf_max: a percentage from 0 to 100, not 'nan'"),
    ({"conf_min": "90", "conf_max": "80"}, "conf_min 90 % is above conf_max 80 %"),
    ({"after": "two"}, "after: not a cursor of this list (follow the list's own links)"),
    ({"before": "MjAyNg"}, "before: not a cursor of this list (follow the list's own links)"),
])
async def test_a_bad_filter_value_is_a_page_naming_the_field(supervisor: httpx.AsyncClient, query: dict[str, str],
                                                             message: str) -> None:
    response = await supervisor.get("/console/cases", params=query)
    assert response.status_code == 422
    assert [html.unescape(found) for found in MESSAGE.findall(response.text)] == [message]


async def test_a_long_list_comes_in_pages_whose_links_keep_the_filters(supervisor: httpx.AsyncClient,
                                                                       database: Any) -> None:
    async with database.sessionmaker.begin() as session:
        numbers = [str((await file_case(session, reporter_ref=str(n), queue="clean_hall"))[0].case_number)
                   for n in range(PER_PAGE + 1)]
        await file_case(session, queue="petitions")

    first = await supervisor.get("/console/cases", params={"queue": "clean_hall"})
    older = re.search(r'href="(/console/cases\?queue=clean_hall&amp;after=[A-Za-z0-9_-]+)" rel="next"', first.text)
    assert older is not None
    second = await supervisor.get(html.unescape(older.group(1)))

    assert CASE_LINK.findall(first.text) == numbers[::-1][:PER_PAGE]
    assert CASE_LINK.findall(second.text) == [numbers[0]]
    assert f"共 {PER_PAGE + 1} 件" in first.text and 'rel="prev"' not in first.text
    assert 'rel="next"' not in second.text
    assert 'href="/console/cases?queue=clean_hall"' in second.text  # back to the newest page, filter kept
    newer = re.search(r'href="(/console/cases\?queue=clean_hall&amp;before=[A-Za-z0-9_-]+)" rel="prev"', second.text)
    assert newer is not None
    assert CASE_LINK.findall((await supervisor.get(html.unescape(newer.group(1)))).text) == numbers[::-1][:PER_PAGE]
    forged = await supervisor.get("/console/cases", params={"queue": "clean_hall", "after": "page-2"})
    assert forged.status_code == 422
