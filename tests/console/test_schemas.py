"""The shapes the REST API answers in, as an integration reads them: excerpts, the overdue flag, pages,
the classifier's top labels, and trace events that say who acted without saying which staff member."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from console.app import mount_console
from console.context import ConsoleContext
from handlers.city import load_city_config
from handlers.routing import route
from nlp.registry import ModelRegistry
from storage import actions, staff_actions
from storage.models import CaseStatus, StaffRole, utcnow
from tests.console.conftest import make_context
from tests.factories import create_staff, decided, file_case


class Api:
    def __init__(self, context: ConsoleContext, client: httpx.AsyncClient, token: str) -> None:
        self.context = context
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(f"/api/v1/{path}", params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def api(database: Any, tmp_path: Path) -> AsyncIterator[Api]:
    context = make_context(database, tmp_path)
    app = FastAPI()
    mount_console(app, context)
    async with database.sessionmaker.begin() as session:
        user = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        token, _ = await staff_actions.create_api_token(session, user, "integration", actor=user)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as client:
        yield Api(context, client, token)


async def test_a_list_shows_an_excerpt_and_pages_of_the_matching_cases(api: Api) -> None:
    description = "  " + "窗口工作人员推诿扯皮，" * 20 + "  "
    async with api.context.database.sessionmaker.begin() as session:
        for reporter in range(3):
            await file_case(session, reporter_ref=str(reporter), description=description)

    listed = await api.get("cases", per_page=2)
    nothing = await api.get("cases", status="closed")

    assert (listed["total"], listed["total_capped"], len(listed["items"]), listed["prev"]) == (3, False, 2, None)
    assert listed["next"] == f"/api/v1/cases?per_page=2&after={listed['next_cursor']}"
    assert listed["items"][0]["excerpt"] == description.strip()[:120]
    assert (nothing["items"], nothing["total"], nothing["next"], nothing["prev"]) == ([], 0, None, None)


async def test_a_case_is_overdue_while_open_past_the_deadline_of_its_stage(api: Api) -> None:
    past, future = utcnow() - timedelta(days=1), utcnow() + timedelta(days=1)
    async with api.context.database.sessionmaker.begin() as session:
        not_accepted, _ = await file_case(session, reporter_ref="1", accept_due_at=past, resolve_due_at=future)
        accepted_in_time, _ = await file_case(session, reporter_ref="2", accept_due_at=past, resolve_due_at=future)
        accepted_late, _ = await file_case(session, reporter_ref="3", accept_due_at=future, resolve_due_at=past)
        closed_late, _ = await file_case(session, reporter_ref="4", accept_due_at=past, resolve_due_at=past)
        for case in (accepted_in_time, accepted_late):
            await actions.change_status(session, case, CaseStatus.ACCEPTED, actor="staff:1")
        await actions.change_status(session, closed_late, CaseStatus.CLOSED, actor="staff:1")

    flags = {item["case_number"]: item["overdue"] for item in (await api.get("cases"))["items"]}
    detail = await api.get(f"cases/{accepted_late.case_number}")

    assert flags == {not_accepted.case_number: True, accepted_in_time.case_number: False,
                     accepted_late.case_number: True, closed_late.case_number: False}
    assert detail["overdue"] is True


async def test_a_case_shows_the_classifiers_three_best_labels_and_who_acted(api: Api) -> None:
    top = [["medical", 0.61], ["education", 0.2], ["other", 0.1], ["formalism", 0.09]]
    async with api.context.database.sessionmaker.begin() as session:
        case, _ = await file_case(session, label="medical", confidence=0.61, top=top, terms=["医院", "红包"],
                                  queue="clean_medical")
        await actions.add_follow_up(session, case, text="补充：收红包的是挂号处的人。")
        await actions.change_status(session, case, CaseStatus.ACCEPTED, actor="staff:7")

    detail = await api.get(f"cases/{case.case_number}")

    assert detail["label_top"] == [{"label": "medical", "score": 0.61}, {"label": "education", "score": 0.2},
                                   {"label": "other", "score": 0.1}]
    assert detail["label_terms"] == ["医院", "红包"]
    assert [(event["kind"], event["actor"], event["body"]) for event in detail["trace"]] == [
        ("received", "reporter", None), ("routed", "system", None),
        ("follow_up", "reporter", "补充：收红包的是挂号处的人。"), ("accepted", "staff", None)]


async def test_a_case_names_a_close_runner_up_and_why_it_was_not_chosen(api: Api, data_template: Path) -> None:
    classifier = await asyncio.to_thread(ModelRegistry(data_template / "models").load_promoted)
    close_call = "学校食堂的承包项目没有招标，校长的亲戚拿下了工程。"  # education or an irregular project
    clear_call = "办证窗口工作人员长时间不在岗，群众排队两个小时无人办理。"
    city, now = load_city_config(None), utcnow()
    tags = [classifier.classify(text) for text in (close_call, clear_call)]
    assert tags[0].runner_up is not None and tags[0].contrast_terms and tags[1].runner_up is None
    async with api.context.database.sessionmaker.begin() as session:
        cases = [(await file_case(session, reporter_ref=str(number), description=text, now=now,
                                  **decided(route(city, tag, "yuelu", now))))[0]
                 for number, (text, tag) in enumerate(zip((close_call, clear_call), tags, strict=True))]

    close, clear = [await api.get(f"cases/{case.case_number}") for case in cases]

    assert close["runner_up"] == {"label": tags[0].runner_up, "contrast_terms": tags[0].contrast_terms}
    assert close["label"] == tags[0].label and close["label_terms"] == tags[0].terms
    assert clear["runner_up"] is None and clear["label"] == tags[1].label
    async with api.context.database.read_sessionmaker() as session:  # the report's phrases are not readable at rest
        stored = (await session.execute(text("SELECT label_contrast_terms FROM cases "
                                             "WHERE label_runner_up IS NOT NULL"))).scalar_one()
    assert stored and not any(term in stored for term in tags[0].contrast_terms)
