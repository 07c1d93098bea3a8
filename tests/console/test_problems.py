"""Similar cases, problems, hot issues and the answer check through the console's REST API (issue 15), against
SQLite and the PostgreSQL on 127.0.0.1: a reviewer sees the similar cases of their own queues and only a count
of the others, a problem is answered once and every reporter in it is told (with the answer's scores stored), a
reviewer may not answer a problem reaching outside their queues, an off-topic answer scores lower than an
on-topic one, and the hot issues group the same problem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import AuditEntry, Case, OutboxMessage, ReplyScore, StaffRole, TraceEvent
from tests.console.api_client import ApiClient as Api
from tests.console.conftest import make_context
from tests.handlers.test_similar import PLANT, PLANT_AGAIN, WINDOW

PLANT_THIRD = "丽发新城旁边搅拌站晚上一直施工，噪音粉尘太大，小区居民没法睡觉，投诉了也没人管。"
ON_TOPIC = ("经调查核实，丽发新城附近搅拌站确实存在夜间违规生产和粉尘噪音扰民问题。区生态环境局已依据《中华人民共和国"
            "噪声污染防治法》责令其停止夜间施工、加装降尘设施，并处罚款。如有疑问请拨打0731-88888888联系区生态环境局。")
OFF_TOPIC = "感谢您的来信，您的意见我们已收悉，我们将继续努力，欢迎您继续关心支持我们的工作。"


@pytest.fixture
async def api(database: Any, tmp_path: Path) -> AsyncIterator[Api]:
    built = Api(make_context(database, tmp_path))
    async with built.client:
        await built.staff("li", StaffRole.REVIEWER, ("clean_hall",))
        await built.staff("wang", StaffRole.SUPERVISOR)
        yield built


async def test_a_reviewer_sees_similar_cases_of_their_queues_and_only_a_count_of_the_others(api: Api) -> None:
    first = await api.case(PLANT, "岳麓区丽发新城小区", "clean_hall", "resident-1")
    elsewhere = await api.case(PLANT_THIRD, "丽发新城", "clean_projects", "resident-2")
    await api.case(WINDOW, "岳麓区政务服务中心", "clean_hall", "resident-3")
    again = await api.case(PLANT_AGAIN, "丽发新城", "clean_hall", "resident-4")

    seen = (await api.call("li", "GET", f"cases/{again}/similar")).json()
    assert [item["case_number"] for item in seen["cases"]] == [first]
    assert seen["hidden"] == 1  # the project queue's case: counted, its number never shown
    assert seen["cases"][0]["same_place"] and seen["cases"][0]["score"] >= 0.45
    everything = (await api.call("wang", "GET", f"cases/{again}/similar")).json()
    assert sorted(item["case_number"] for item in everything["cases"]) == sorted([first, elsewhere])
    assert everything["hidden"] == 0


async def test_a_problem_is_answered_once_and_every_reporter_in_it_is_told(api: Api) -> None:
    first = await api.case(PLANT, "岳麓区丽发新城小区", "clean_hall", "resident-1")
    second = await api.case(PLANT_AGAIN, "丽发新城", "clean_hall", "resident-2")
    third = await api.case(PLANT_THIRD, "丽发新城", "clean_projects", "resident-3")

    made = await api.call("li", "POST", "problems", {"cases": [first, second], "title": "丽发新城搅拌站"})
    assert made.status_code == 201, made.text
    problem = made.json()
    assert (problem["title"], problem["hidden"], problem["answerable"]) == ("丽发新城搅拌站", 0, True)
    refused = await api.call("li", "POST", "problems", {"cases": [first, third]})
    assert refused.status_code == 422 and third in refused.json()["detail"]

    grown = (await api.call("wang", "POST", "problems", {"cases": [third, second]})).json()
    assert grown["id"] == problem["id"] and len(grown["cases"]) == 3  # the third joined the existing problem
    as_li = (await api.call("li", "GET", f"problems/{problem['id']}")).json()
    assert (len(as_li["cases"]), as_li["hidden"], as_li["answerable"]) == (2, 1, False)
    blocked = await api.call("li", "POST", f"problems/{problem['id']}/answer", {"text": ON_TOPIC})
    assert blocked.status_code == 403 and "outside your queues" in blocked.json()["detail"]

    answered = await api.call("wang", "POST", f"problems/{problem['id']}/answer", {"text": ON_TOPIC})
    assert answered.json() == {"id": problem["id"], "told": 3}
    async with api.context.database.read_sessionmaker() as session:
        cases = {case.case_number: case for case in (await session.execute(select(Case))).scalars()}
        sent = [message for message in (await session.execute(select(OutboxMessage))).scalars()
                if message.payload.get("notice") == "answer"]
        scores = (await session.execute(select(ReplyScore))).scalars().all()
        audit = [entry.action for entry in (await session.execute(select(AuditEntry))).scalars()]
        answers = (await session.execute(select(TraceEvent).where(TraceEvent.kind == "answered"))).scalars().all()
    assert sorted(message.recipient for message in sent) == ["resident-1", "resident-2", "resident-3"]
    assert {message.payload["answer"] for message in sent} == {ON_TOPIC}
    assert {cases[number].status for number in (first, second, third)} == {"answered"}
    assert len(scores) == 3 and {score.trace_event_id for score in scores} == {event.id for event in answers}
    assert "problem.answer" in audit

    # a case that joins later is answered on its own: the reporters answered before are not told again
    fourth = await api.case(PLANT_AGAIN, "丽发新城", "clean_hall", "resident-4")
    await api.call("wang", "POST", "problems", {"cases": [fourth, first]})
    later = await api.call("wang", "POST", f"problems/{problem['id']}/answer", {"text": "补充答复：搅拌站已停产整改。"})
    assert later.json() == {"id": problem["id"], "told": 1}
    async with api.context.database.read_sessionmaker() as session:
        told_again = [message.recipient for message in (await session.execute(select(OutboxMessage))).scalars()
                      if message.payload.get("answer") == "补充答复：搅拌站已停产整改。"]
    assert told_again == ["resident-4"]
    everyone_answered = await api.call("wang", "POST", f"problems/{problem['id']}/answer", {"text": ON_TOPIC})
    assert everyone_answered.status_code == 409 and "every case" in everyone_answered.json()["detail"]


async def test_an_off_topic_answer_scores_lower_than_an_on_topic_one_and_says_why(api: Api) -> None:
    number = await api.case(PLANT, "岳麓区丽发新城小区", "clean_hall", "resident-1")
    on_topic = (await api.call("li", "POST", f"cases/{number}/answer/check", {"text": ON_TOPIC})).json()
    off_topic = (await api.call("li", "POST", f"cases/{number}/answer/check", {"text": OFF_TOPIC})).json()
    assert off_topic["score"] < on_topic["score"]
    assert off_topic["relevance"] < on_topic["relevance"]
    codes = {reason["code"] for reason in off_topic["reasons"]}
    assert {"no_findings", "no_contact"} <= codes
    assert all(reason["zh"] and reason["en"] for reason in off_topic["reasons"])
    async with api.context.database.read_sessionmaker() as session:  # a check sends and stores nothing
        assert (await session.execute(select(OutboxMessage))).scalars().all() == []
        assert (await session.execute(select(ReplyScore))).scalars().all() == []

    outside = await api.call("li", "POST", "cases/QL-2026-999999/answer/check", {"text": ON_TOPIC})
    assert outside.status_code == 404
    empty = await api.call("li", "POST", f"cases/{number}/answer/check", {"text": "   "})
    assert empty.status_code == 422


async def test_the_hot_issues_group_one_problems_reports_and_show_each_viewer_their_own(api: Api) -> None:
    plant = [await api.case(text, "丽发新城", "clean_hall", f"resident-{index}")
             for index, text in enumerate((PLANT, PLANT_AGAIN, PLANT_THIRD))]
    await api.case(WINDOW, "岳麓区政务服务中心", "clean_hall", "resident-9")

    before = (await api.call("wang", "GET", "hotspots")).json()
    assert before == {"computed_at": None, "since": None, "until": None, "issues": []}
    assert (await api.call("li", "POST", "hotspots/refresh")).status_code == 403
    refreshed = (await api.call("wang", "POST", "hotspots/refresh")).json()
    [top] = [issue for issue in refreshed["issues"] if sorted(case["case_number"] for case in issue["cases"]) ==
             sorted(plant)]
    assert top["rank"] == 1 and top["residents"] == 3 and top["queues"] == {"clean_hall": 3}
    assert "丽发新城" in top["place_people"] + top["description"]
    assert sum(count for _, count in top["weekly"]) == 3
    seen_by_li = (await api.call("li", "GET", "hotspots")).json()
    assert [issue["rank"] for issue in seen_by_li["issues"]] == [1]
