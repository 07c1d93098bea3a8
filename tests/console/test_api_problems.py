"""The REST API of similar cases, problems, answer checks and hot issues (console.api_problems), called in-process
as an integration calls it: every operation needs a token or a console session (with its CSRF header on a
change); bodies, ids and limits outside their bounds are refused before anything is done; a problem made through
the API reads back with its cases oldest first, its answer is checked against its oldest case, a case leaves it
(and a problem left with one case is gone); similar cases carry the problem they are in; the hot issues list at
most `top` groups. On SQLite and the PostgreSQL on 127.0.0.1 where a database is read.
(tests/console/test_problems.py covers the visibility rules and answering a problem for every reporter.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select

from console import api_problems
from console.app import mount_console
from storage import staff_actions
from storage.db import Database
from storage.models import AuditEntry, OutboxMessage, Problem, StaffRole
from tests.conftest import make_test_keyring
from tests.console.api_client import ApiClient
from tests.console.conftest import make_context
from tests.factories import console_session
from tests.handlers.test_similar import PLANT, PLANT_AGAIN

WINDOW = "政务服务中心社保窗口工作人员上班时间玩手机，群众排长队无人办理，态度也很差。"
WINDOW_AGAIN = "政务服务中心社保窗口的工作人员上班时间一直在玩手机，群众排了长队也没人办理，态度很差。"
ANSWER = ("经调查核实，丽发新城附近搅拌站确实存在夜间违规生产和粉尘噪音扰民问题。区生态环境局已依据《中华人民共和国"
          "噪声污染防治法》责令其停止夜间施工、加装降尘设施，并处罚款。如有疑问请拨打0731-88888888联系区生态环境局。")
MISSING = "QL-2026-999999"


class Api(ApiClient):
    async def case(self, description: str = PLANT, place: str = "丽发新城", queue: str = "clean_hall",
                   reporter: str = "resident-1", *, due_in_days: int | None = 60) -> str:
        """A case due in 60 days, as every case of these tests is."""
        return await super().case(description, place, queue, reporter, due_in_days=due_in_days)


@pytest.fixture
async def api(database: Any, tmp_path: Path) -> AsyncIterator[Api]:
    built = Api(make_context(database, tmp_path))
    async with built.client:
        await built.staff("li", StaffRole.REVIEWER, ("clean_hall",))
        await built.staff("wang", StaffRole.SUPERVISOR)
        yield built


def _cases_out(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(item["case_number"], item["queue"], item["status"]) for item in items]


# --- who may call, and what is refused before anything is done ---------------------------------------------------


async def test_every_operation_refuses_a_caller_without_a_token_or_session(tmp_path: Path) -> None:
    database = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}", make_test_keyring())
    app = FastAPI()
    mount_console(app, make_context(database, tmp_path))
    routes = [route for route in api_problems.router.routes if isinstance(route, APIRoute)]
    operations = [(method, route.path.replace("{case_number}", "QL-2026-000001").replace("{problem_id}", "1"))
                  for route in routes for method in route.methods or ()]
    assert len(operations) >= 9  # the similar cases, the answer checks, problems and hot issues
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as client:
        for method, path in operations:
            refused = await client.request(method, path, json={"text": ANSWER, "cases": ["a", "b"]})
            assert (method, path, refused.status_code, refused.headers.get("www-authenticate")) == (
                method, path, 401, "Bearer")
    await database.dispose()


async def test_requests_out_of_bounds_or_without_the_csrf_header_change_nothing_and_the_bounds_pass(
        api: Api) -> None:
    first, second = await api.case(reporter="resident-1"), await api.case(PLANT_AGAIN, reporter="resident-2")
    refused = [
        ("POST", "problems", {"cases": [first]}, None),
        ("POST", "problems", {"cases": [first, second] + [f"QL-2026-{n:06d}" for n in range(499)]}, None),
        ("POST", "problems", {"cases": [first, "Q" * 33]}, None),
        ("POST", "problems", {"cases": [first, second], "title": "题" * 201}, None),
        ("POST", "problems", {"cases": [first, second], "owner": "wang"}, None),
        ("POST", "problems", {"cases": first}, None),
        ("POST", f"cases/{first}/answer/check", {"text": "字" * 3001}, None),
        ("POST", f"cases/{first}/answer/check", {"text": ANSWER, "send": True}, None),
        ("POST", f"cases/{first}/answer/check", {}, None),
        ("POST", "problems/1/answer", {"text": " \n "}, None),
        ("POST", "problems/1/answer", {"text": "\u200b\u2060"}, None),  # nothing visible: sent as an empty answer
        ("GET", "problems/0", None, None),
        ("GET", f"problems/{2**31}", None, None),
        ("GET", "problems/first", None, None),
        ("GET", f"cases/{'Q' * 33}/similar", None, None),
        ("GET", "hotspots", None, {"top": 0}),
        ("GET", "hotspots", None, {"top": 51}),
    ]
    for method, path, body, params in refused:
        response = await api.call("wang", method, path, body, params)
        assert (path, body, params, response.status_code) == (path, body, params, 422), response.text
    assert (await api.call("li", "POST", "hotspots/refresh")).status_code == 403  # supervisors only

    async with api.context.database.read_sessionmaker() as session:  # a console session, as the pages' scripts
        user = await staff_actions.get_staff_by_username(session, "li")
    assert user is not None
    cookies, csrf = await console_session(api.context, user)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://console.test",
                                 cookies=cookies) as browser:
        unchecked = await browser.post("/api/v1/problems", json={"cases": [first, second]})
        assert unchecked.status_code == 403 and "CSRF" in unchecked.json()["detail"]
        assert (await browser.get(f"/api/v1/cases/{first}/similar")).status_code == 200  # a read needs no header
        assert (await api.count(Problem), await api.count(OutboxMessage)) == (0, 0)
        async with api.context.database.read_sessionmaker() as session:
            actions = set((await session.execute(select(AuditEntry.action))).scalars())
        assert not actions & {"case.link_problem", "problem.answer", "hotspots.refresh"}
        made = await browser.post("/api/v1/problems", json={"cases": [first, second], "title": "题" * 200},
                                  headers={"X-CSRF-Token": csrf})
        assert (made.status_code, made.json()["title"]) == (201, "题" * 200)

    # 500 case numbers pass the body's check: the operation then looks them up and refuses the unknown one
    unknown = await api.call("wang", "POST", "problems", {"cases": [first, second] + [MISSING] * 498})
    assert (unknown.status_code, unknown.json()) == (422, {"detail": f"no case {MISSING} in your queues"})
    assert (await api.call("li", "POST", f"cases/{first}/answer/check", {"text": "经核实" * 1000})).status_code == 200
    assert (await api.call("wang", "GET", f"problems/{2**31 - 1}")).status_code == 404
    assert (await api.call("wang", "GET", "hotspots", params={"top": 50})).status_code == 200


# --- problems ---------------------------------------------------------------------------------------------------


async def test_a_problem_reads_back_is_checked_against_its_oldest_case_answered_and_loses_cases(api: Api) -> None:
    first = await api.case(PLANT, "岳麓区丽发新城小区", reporter="resident-1")
    second = await api.case(PLANT_AGAIN, reporter="resident-2")
    third = await api.case(PLANT_AGAIN, reporter="resident-3")
    alone = await api.case(WINDOW, "岳麓区政务服务中心", reporter="resident-4")

    made = await api.call("li", "POST", "problems", {"cases": [f" {third} ", second, first, third],
                                                     "title": "  丽发新城搅拌站  "})
    assert made.status_code == 201, made.text
    problem = made.json()
    problem_id = problem["id"]
    assert problem == {"id": problem_id, "title": "丽发新城搅拌站", "answered_at": None, "answered_cases": 0, "cases": [
        {"case_number": number, "queue": "clean_hall", "status": "routed",
         "created_at": problem["cases"][index]["created_at"]} for index, number in enumerate((first, second, third))],
        "hidden": 0, "answerable": True}
    assert [datetime.fromisoformat(case["created_at"]) for case in problem["cases"]] == [
        await api.created_at(number) for number in (first, second, third)]
    assert (await api.call("wang", "GET", f"problems/{problem_id}")).json() == problem

    checked = await api.call("li", "POST", f"problems/{problem_id}/answer/check", {"text": ANSWER})
    score = checked.json()
    assert set(score) == {"score", "relevance", "completeness", "clarity", "timeliness", "working_days", "reasons"}
    assert score == (await api.call("li", "POST", f"cases/{first}/answer/check", {"text": ANSWER})).json()
    assert all(set(reason) == {"code", "zh", "en"} and reason["zh"] and reason["en"] for reason in score["reasons"])
    assert (score["timeliness"], score["working_days"]) == (1.0, 0)  # filed today, due in 60 days, answered today
    assert await api.count(OutboxMessage) == 0  # a check sends nothing

    assert (await api.call("li", "POST", f"problems/{problem_id + 1}/answer", {"text": ANSWER})).status_code == 404
    before = datetime.now().astimezone()
    answered = await api.call("li", "POST", f"problems/{problem_id}/answer", {"text": ANSWER})
    assert answered.json() == {"id": problem_id, "told": 3}
    shown = (await api.call("li", "GET", f"problems/{problem_id}")).json()
    assert shown["answered_at"] is not None and datetime.fromisoformat(shown["answered_at"]) >= before
    assert [case["status"] for case in shown["cases"]] == ["answered"] * 3 and shown["answered_cases"] == 3

    left = await api.call("li", "DELETE", f"cases/{second}/problem")
    assert (left.status_code, left.content) == (204, b"")
    remaining = (await api.call("li", "GET", f"problems/{problem_id}")).json()
    assert _cases_out(remaining["cases"]) == [(first, "clean_hall", "answered"), (third, "clean_hall", "answered")]
    again = await api.call("li", "DELETE", f"cases/{second}/problem")
    assert (again.status_code, again.json()) == (409, {"detail": f"{second} is not part of a problem"})
    assert (await api.call("li", "DELETE", f"cases/{alone}/problem")).status_code == 409
    assert (await api.call("li", "DELETE", f"cases/{MISSING}/problem")).status_code == 404

    assert (await api.call("li", "DELETE", f"cases/{third}/problem")).status_code == 204  # one case left: dissolved
    gone = await api.call("li", "GET", f"problems/{problem_id}")
    assert (gone.status_code, gone.json()) == (404, {"detail": f"no problem {problem_id} with cases in your queues"})
    assert (await api.call("li", "POST", f"problems/{problem_id}/answer/check", {"text": ANSWER})).status_code == 404
    assert (await api.call("li", "DELETE", f"cases/{first}/problem")).status_code == 409
    async with api.context.database.read_sessionmaker() as session:
        audited = list((await session.execute(select(AuditEntry.action).where(
            AuditEntry.action.in_(["case.link_problem", "case.leave_problem", "problem.answer"]))
            .order_by(AuditEntry.id))).scalars())
    # the third leaves: the first, left alone in the dissolved problem, leaves it too, and that is audited as well
    assert audited == ["case.link_problem"] * 3 + ["problem.answer"] + ["case.leave_problem"] * 3


# --- similar cases and hot issues -----------------------------------------------------------------------------


async def test_similar_cases_carry_their_scores_and_the_problem_they_are_in(api: Api) -> None:
    first = await api.case(PLANT, "岳麓区丽发新城小区", reporter="resident-1")
    second = await api.case(PLANT_AGAIN, "丽发新城", reporter="resident-2")
    await api.case(WINDOW, "岳麓区政务服务中心", reporter="resident-3")
    petition = await api.case(PLANT_AGAIN, "丽发新城", queue="petitions", reporter="resident-4")
    third = await api.case(PLANT_AGAIN, "丽发新城", reporter="resident-5")
    problem_id = (await api.call("li", "POST", "problems", {"cases": [first, second]})).json()["id"]

    found = (await api.call("li", "GET", f"cases/{third}/similar")).json()
    assert found["hidden"] == 1  # the petitions office's case
    items = {item["case_number"]: item for item in found["cases"]}
    assert set(items) == {first, second}
    assert found["cases"][0]["case_number"] == second  # the same text and place ranks first
    for number, item in items.items():
        assert set(item) == {"case_number", "score", "text_similarity", "same_place", "same_district", "queue",
                             "status", "created_at", "problem_id"}
        assert (item["problem_id"], item["queue"], item["status"], item["same_district"]) == (
            problem_id, "clean_hall", "routed", True)
        assert 0.45 <= item["score"] <= 1 and 0 < item["text_similarity"] <= 1
        assert datetime.fromisoformat(item["created_at"]) == await api.created_at(number)
    assert items[second]["same_place"] is True
    assert (await api.call("li", "GET", f"cases/{petition}/similar")).status_code == 404
    assert (await api.call("li", "GET", f"cases/{MISSING}/similar")).status_code == 404


async def test_the_hot_issues_list_at_most_top_groups_best_first(api: Api) -> None:
    for index, text in enumerate((PLANT, PLANT_AGAIN, PLANT_AGAIN)):
        await api.case(text, "丽发新城", reporter=f"resident-{index}")
    for index, text in enumerate((WINDOW, WINDOW_AGAIN)):
        await api.case(text, "岳麓区政务服务中心", reporter=f"resident-{index + 5}")

    refreshed = await api.call("wang", "POST", "hotspots/refresh")
    assert refreshed.status_code == 200
    listing = refreshed.json()
    assert listing == (await api.call("wang", "GET", "hotspots")).json()
    since, until = (datetime.fromisoformat(listing[name]) for name in ("since", "until"))
    assert (until - since, until) == (timedelta(days=30), datetime.fromisoformat(listing["computed_at"]))
    issues = listing["issues"]
    assert [issue["rank"] for issue in issues] == [1, 2] and issues[0]["heat"] >= issues[1]["heat"]
    assert sorted((len(issue["cases"]), issue["residents"], issue["queues"]["clean_hall"]) for issue in issues) == [
        (2, 2, 2), (3, 3, 3)]
    top = (await api.call("li", "GET", "hotspots", params={"top": 1})).json()
    assert [(issue["rank"], issue["cases"]) for issue in top["issues"]] == [(1, issues[0]["cases"])]
    async with api.context.database.read_sessionmaker() as session:
        [entry] = (await session.execute(select(AuditEntry).where(AuditEntry.action == "hotspots.refresh"))).scalars()
        wang = await staff_actions.get_staff_by_username(session, "wang")
        assert wang is not None
        [token] = await staff_actions.list_api_tokens(session, wang.id)
    assert entry.detail == {"cases": 5, "groups": 2, "api_token": f"tests (#{token.id})"}  # which token refreshed
