"""The hot issues' and problems' pages (issue 15), against SQLite and the PostgreSQL on 127.0.0.1: a supervisor
refreshes the hot issues and sees one problem's reports as one group (rank, place, description, residents,
queues, statuses, weekly trend), makes one problem of it with the page's form, opens the problem's cases in the
case list (each viewer only those of their own queues) and sets the status of all of them at once; the similar
cases' "mark duplicate" button marks the case a duplicate of the other."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from console import texts
from console.app import mount_console
from console.context import ConsoleContext
from handlers import similar as similar_cases
from storage.models import Case, StaffRole, TraceEvent
from tests.console.conftest import location, make_context
from tests.console.test_problems import PLANT_THIRD
from tests.factories import console_session, create_staff, file_case
from tests.handlers.test_similar import PLANT, PLANT_AGAIN, WINDOW

PLANT_FOURTH = "丽发新城小区对面的混凝土搅拌站半夜还在生产，噪音粉尘扰民严重，请环保部门尽快查处。"
CHECKBOX = re.compile(r'<input type="checkbox" name="cases" value="([^"]+)"')
CASE_ROW_LINK = re.compile(r'<td class="nowrap"><a href="/console/case/([^"]+)">')


@dataclass
class Console:
    context: ConsoleContext
    supervisor: httpx.AsyncClient
    supervisor_csrf: str
    reviewer: httpx.AsyncClient  # works in clean_hall only
    reviewer_csrf: str

    async def case(self, description: str, place: str, queue: str, reporter: str) -> str:
        """A case filed and signed as the dialog's submit does."""
        async with self.context.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, secret_key=self.context.secret_key, queue=queue,
                                      description=description, place=place, district="yuelu", reporter_ref=reporter)
            await similar_cases.sign_new_case(session, case.id, description, place)
        return str(case.case_number)

    async def cases(self) -> dict[str, Case]:
        async with self.context.database.read_sessionmaker() as session:
            return {str(case.case_number): case for case in (await session.execute(select(Case))).scalars()}


@pytest.fixture
async def console(database: Any, tmp_path: Path) -> AsyncIterator[Console]:
    context = make_context(database, tmp_path)
    app = FastAPI()
    mount_console(app, context)
    async with database.sessionmaker.begin() as session:
        wang = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        li = await create_staff(session, "li", StaffRole.REVIEWER, ("clean_hall",))
    (wang_cookies, wang_csrf), (li_cookies, li_csrf) = [await console_session(context, user) for user in (wang, li)]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test", cookies=wang_cookies) as wang_c, \
            httpx.AsyncClient(transport=transport, base_url="http://console.test", cookies=li_cookies) as li_c:
        yield Console(context, wang_c, wang_csrf, li_c, li_csrf)


def _section(page: str, rank: int) -> str:
    found = re.search(rf'<section class="panel hot-issue" id="hot-{rank}">(.*?)</section>', page, re.S)
    assert found, f"no hot issue #{rank} on the page"
    return found.group(1)


def _words(fragment: str) -> str:
    """What a Chinese reader sees of a page's fragment: the English halves of the bilingual labels, the tags
    and the runs of white space left out."""
    fragment = re.sub(r'<span class="en">[^<]*</span>', "", fragment)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def _listed(page: str) -> list[str]:
    """The case numbers of a case list page's rows."""
    return CASE_ROW_LINK.findall(page)


async def _problem_of_the_hot_issue(console: Console) -> tuple[list[str], list[str], int]:
    """Four residents report the plant (three in clean_hall, one in clean_projects), one resident the window;
    the supervisor refreshes the hot issues and makes one problem of the plant's group from the page."""
    plant = [await console.case(PLANT, "岳麓区丽发新城小区", "clean_hall", "resident-1"),
             await console.case(PLANT_AGAIN, "丽发新城", "clean_hall", "resident-2"),
             await console.case(PLANT_THIRD, "丽发新城", "clean_hall", "resident-3")]
    elsewhere = [await console.case(PLANT_FOURTH, "丽发新城小区", "clean_projects", "resident-4")]
    await console.case(WINDOW, "岳麓区政务服务中心", "clean_hall", "resident-9")

    empty = await console.supervisor.get("/console/hotspots")
    assert empty.status_code == 200 and "尚未计算" in empty.text and 'id="hot-1"' not in empty.text
    refreshed = await console.supervisor.post("/console/hotspots/refresh", data={"csrf": console.supervisor_csrf})
    assert location(refreshed) == "/console/hotspots?done=hotspots_refreshed"
    page = (await console.supervisor.get("/console/hotspots")).text
    top = _section(page, 1)
    offered = CHECKBOX.findall(top)
    assert sorted(offered) == sorted(plant + elsewhere)
    made = await console.supervisor.post("/console/problems", data={
        "csrf": console.supervisor_csrf, "cases": offered,
        "title": html.unescape(re.search(r'name="title" value="([^"]*)"', top).group(1))})  # type: ignore[union-attr]
    found = re.fullmatch(r"/console/problem/(\d+)\?done=problem_made", location(made))
    assert found
    return plant, elsewhere, int(found.group(1))


async def test_the_hot_issues_page_shows_one_problems_reports_as_a_group_and_makes_a_problem_of_it(
        console: Console) -> None:
    plant, elsewhere, problem_id = await _problem_of_the_hot_issue(console)

    page = (await console.supervisor.get("/console/hotspots")).text
    top = html.unescape(_section(page, 1))
    assert re.search(r"<h2>#1 [^<]*丽发新城", top)  # rank and place
    description = re.search(r'<p class="description">([^<]+)</p>', top)
    assert description and any(report.startswith(description.group(1).rstrip("…")[:20])
                               for report in (PLANT, PLANT_AGAIN, PLANT_THIRD, PLANT_FOURTH))
    shown = _words(top)
    assert "举报人数 4 · 4 件" in shown
    assert "队列 清廉大厅监督组 3 · 工程建设领域监督组 1" in shown  # the queues, with their cases
    assert f"状态 {texts.pair('status.routed')[0]} 4" in shown
    trend = re.search(r'<figure class="trend">(<svg.*?</svg>)', top, re.S)
    assert trend, "no weekly trend"
    assert sum(int(count) for count in re.findall(r"<title>\d{4}-\d\d-\d\d: (\d+)</title>", trend.group(1))) == 4
    assert f'href="/console/problem/{problem_id}"' in top  # the group now names its problem
    assert 'id="hot-2"' not in page  # the window report is alone: no hot issue

    problem = await console.supervisor.get(f"/console/problem/{problem_id}?done=problem_made")
    assert problem.status_code == 200
    assert sorted(_listed(problem.text)) == sorted(plant + elsewhere)
    assert f'href="/console/cases?problem={problem_id}"' in problem.text
    cases = await console.cases()
    assert {cases[number].problem_id for number in plant + elsewhere} == {problem_id}


async def test_a_supervisor_sets_the_status_of_all_a_problems_cases_from_its_case_list(console: Console) -> None:
    plant, elsewhere, problem_id = await _problem_of_the_hot_issue(console)

    as_reviewer = await console.reviewer.get("/console/cases", params={"problem": problem_id})
    assert as_reviewer.status_code == 200
    assert sorted(_listed(as_reviewer.text)) == sorted(plant)  # not the case of a queue they do not work in
    listed = await console.supervisor.get("/console/cases", params={"problem": problem_id})
    assert sorted(_listed(listed.text)) == sorted(plant + elsewhere)  # not the window report
    selected = CHECKBOX.findall(re.sub(r'(<input type="checkbox" name="cases" value="[^"]+") form="bulk"[^>]*'
                                       r' checked>', r"\1", listed.text))
    assert sorted(selected) == sorted(plant + elsewhere)  # all of them selected already

    done = await console.supervisor.post("/console/cases/bulk", data={
        "csrf": console.supervisor_csrf, "cases": selected, "action": "status", "status": "in_handling",
        "note": "已约谈搅拌站负责人，正在整改。", "back": f"/console/cases?problem={problem_id}"})
    assert done.status_code == 200, done.text[:500]
    cases = await console.cases()
    assert {number: cases[number].status for number in plant + elsewhere} == dict.fromkeys(plant + elsewhere,
                                                                                           "in_handling")
    assert [case.status for case in cases.values() if case.problem_id is None] == ["routed"]

    nothing = await console.supervisor.get("/console/cases", params={"problem": problem_id + 1})
    assert nothing.status_code == 200 and _listed(nothing.text) == []
    refused = await console.supervisor.get("/console/cases", params={"problem": "one"})
    assert refused.status_code == 422


async def test_the_similar_cases_mark_duplicate_button_marks_the_case_a_duplicate(console: Console) -> None:
    first = await console.case(PLANT, "岳麓区丽发新城小区", "clean_hall", "resident-1")
    again = await console.case(PLANT_AGAIN, "丽发新城", "clean_hall", "resident-2")

    ticket = (await console.reviewer.get(f"/console/case/{again}")).text
    form = re.search(rf'<form method="post" action="(/console/case/{again}/duplicate)"[^>]*>(.*?)</form>', ticket,
                     re.S)
    assert form, "no mark-duplicate button among the similar cases"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(2)))
    assert fields["original"] == first
    marked = await console.reviewer.post(form.group(1), data=fields)
    assert location(marked).startswith(f"/console/case/{again}")

    cases = await console.cases()
    assert (cases[again].status, cases[first].status) == ("duplicate", "routed")
    async with console.context.database.read_sessionmaker() as session:
        kinds = list((await session.execute(select(TraceEvent.kind, TraceEvent.detail)
                                            .where(TraceEvent.case_id == cases[again].id))).all())
    assert any(kind == "duplicate" for kind, _ in kinds)
