"""Notices that waited for the resident (WeChat's 48 hours without consent) reach them with their next
message: what each notice said — a staff note, a rejection's reason and where to turn, an extension's new
date — and the newest status of the case, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from handlers.city import load_city_config
from handlers.context import DialogContext
from handlers.routing import RouteDecision
from handlers.routing import route as decide
from handlers.texts import Texts
from storage import loop, outbox, staff_actions
from storage.models import Case, OutboxMessage, OutboxStatus, StaffRole
from tests.handlers.conftest import Clock, DialogHarness
from tests.handlers.test_closed_loop import _as_staff, _case, _filed, _staff, note_and_reject
from tests.handlers.test_dialog import fill_to_summary, submit


@pytest.fixture
def harness(sessionmaker: Any, tmp_path: Path) -> Iterator[DialogHarness]:
    """The dialog on each database backend (the package's harness is SQLite only)."""
    city = load_city_config(None)
    clock = Clock()

    async def route(text: str, district: str | None) -> RouteDecision:
        return decide(city, None, district, clock())

    context = DialogContext(city=city, texts=Texts(), secret_key=b"s" * 32, evidence_dir=tmp_path / "evidence",
                            route=route, clock=clock)
    yield DialogHarness(sessionmaker, context, clock)


async def _platform_refused_while_away(harness: DialogHarness, case_id: int) -> int:
    """What the outbox does when WeChat will not take the reporter's notices (outside 48 hours, no consent):
    each waits for the resident's next message. Returns how many wait."""
    async with harness.sessionmaker.begin() as session:
        rows = list((await session.execute(select(OutboxMessage).where(
            OutboxMessage.case_id == case_id, OutboxMessage.channel == "test",
            OutboxMessage.status == OutboxStatus.PENDING))).scalars())
        for message in rows:
            outbox.mark_waiting(message, reason="outside WeChat's 48-hour window; no consent to notices")
    return len(rows)


async def _states(harness: DialogHarness, case_id: int) -> list[tuple[str, str]]:
    async with harness.sessionmaker() as session:
        rows = (await session.execute(select(OutboxMessage.kind, OutboxMessage.status).where(
            OutboxMessage.case_id == case_id, OutboxMessage.channel == "test").order_by(OutboxMessage.id))).all()
    return [(str(kind), str(status)) for kind, status in rows]


async def test_a_note_and_a_rejection_reach_the_resident_after_a_wait(harness: DialogHarness) -> None:
    resident, _code, case_id = await _filed(harness)
    supervisor = await _staff(harness)
    await _as_staff(harness, case_id, note_and_reject(supervisor))
    assert await _platform_refused_while_away(harness, case_id) == 3

    await resident.say("你好")

    news = resident.last[0].text
    assert news == (f"您的举报 {(await _case(harness, case_id)).case_number} 在您离开期间有新进展，"
                    "当前状态：不予受理（不属于受理范围）。\n"
                    "办理中，说明：已转相关科室核查\n"
                    "办理说明：预计下周反馈核查结果。\n"
                    "不予受理（不属于受理范围），说明：所反映事项属于民事纠纷\n请拨打12345市民热线咨询")
    assert len(resident.last) > 1  # the answer to what they wrote follows the news
    assert await _states(harness, case_id) == [("status_changed", "sent"), ("note", "sent"),
                                               ("status_changed", "sent")]
    await resident.say("你好")
    assert "离开期间" not in resident.text()  # told once


async def test_an_extensions_new_date_and_an_answer_reach_the_resident_after_a_wait(
        harness: DialogHarness) -> None:
    resident = harness.resident("r-en", locale="en")
    await fill_to_summary(resident)
    await submit(resident)
    async with harness.sessionmaker() as session:
        case_id = max((await session.execute(select(Case.id))).scalars())
    reviewer = await _staff(harness, StaffRole.REVIEWER)
    supervisor = await _staff(harness)
    case = await _case(harness, case_id)
    assert case.resolve_due_at is not None
    later = case.resolve_due_at + timedelta(days=20)

    async def extend_and_answer(session: Any, case: Case) -> None:
        request = await loop.request_extension(session, case, actor=reviewer, reason="监控录像需公安协助调取",
                                               resolve_due_at=later)
        await loop.decide_extension(session, request, case, actor=supervisor, approve=True)
        await staff_actions.answer_reporter(session, case, "经查属实，已责令整改。", actor=supervisor)

    await _as_staff(harness, case_id, extend_and_answer)
    assert await _platform_refused_while_away(harness, case_id) == 2

    await resident.say("hello")

    assert resident.last[0].text == (
        f"Your report {case.case_number} moved on while you were away; its status now: Answered.\n"
        f"The deadline was extended with approval: expect an answer by {later.date().isoformat()}.\n"
        "Answer: 经查属实，已责令整改。")
    assert await _states(harness, case_id) == [("extended", "sent"), ("answer", "sent")]
