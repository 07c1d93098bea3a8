"""What a Telegram resident noticed when using the bot with the habits of a phone: a button tapped twice in a row,
the rating button under a closing notice that arrived while they were adding information."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from handlers import tracking
from handlers.texts import Texts
from storage import actions, loop, staff_actions
from storage.models import Case, CaseStatus, StaffRole
from tests.factories import create_staff
from tests.handlers.conftest import DialogHarness, Resident
from tests.handlers.test_dialog import fill_to_summary

DONE_ZH = "您已按过这个按钮，已经办好了，不会重复办理；这个按钮现已失效。"


async def submitted(resident: Resident) -> str:
    await fill_to_summary(resident)
    await resident.press("summary:submit")
    match = re.search(r"\d{4} \d{4} \d{4} \d{4}", resident.text())
    assert match, resident.text()
    return match.group(0)


async def cases(harness: DialogHarness) -> list[Case]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(select(Case))).scalars())


async def test_a_button_tapped_twice_in_a_row_is_said_to_be_done_once_not_refused_with_the_question_again(
        harness: DialogHarness) -> None:
    """A fast double tap: the second tap was answered "this button belongs to an earlier question" and the question
    asked again right under itself; after "submit", the receipt was followed by that refusal and a second menu."""
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:yuelu")
    assert "第2步" in resident.text()
    await resident.press("district:yuelu")
    assert [message.text for message in resident.last] == [DONE_ZH]
    await resident.say("岳麓区政务服务中心3号窗口")  # the dialog goes on from where the first tap took it
    assert "第3步" in resident.text()

    second = harness.resident("r2")
    await fill_to_summary(second)
    await second.press("summary:submit")
    assert "举报已提交" in second.text()
    await second.press("summary:submit")
    assert [message.text for message in second.last] == [DONE_ZH]
    assert len(await cases(harness)) == 1

    english = harness.resident("r3", locale="en")
    await english.command("report")
    await english.press("district:yuelu")
    await english.press("district:yuelu")
    assert [message.text for message in english.last] == [
        "You already pressed that button and it was done; it will not be done twice. The button no longer works."]


async def test_an_old_button_pressed_twice_is_explained_twice_as_out_of_date(harness: DialogHarness) -> None:
    """Only a press that did something is "already done": an out-of-date button pressed again is still out of date."""
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:yuelu")
    for _ in range(2):
        await resident.press("district:furong")
        assert "这个按钮属于之前的问题，已失效。" in resident.text() and "第2步" in resident.text()
    await resident.press("menu:help")  # a press between two of the same: the second is a press of its own
    await resident.press("district:yuelu")
    assert "这个按钮属于之前的问题，已失效。" in resident.text() and "第2步" in resident.text()


async def _close_and_offer_rating(harness: DialogHarness) -> int:
    [case] = await cases(harness)
    async with harness.sessionmaker.begin() as session:
        loaded = await actions.get_case(session, case.id)
        assert loaded is not None
        staff: Any = await create_staff(session, "reviewer", StaffRole.REVIEWER)
        await staff_actions.answer_reporter(session, loaded, "经查属实，已责令整改。", actor=staff)
        await staff_actions.set_status(session, loaded, CaseStatus.CLOSED, actor=staff)
        await loop.offer_rating(session, loaded, labels=tracking.rating_labels(Texts(), "zh"))
    return case.id


async def test_the_rating_button_under_the_closing_notice_rates_a_case_the_resident_was_adding_information_to(
        harness: DialogHarness) -> None:
    """The resident pressed "add information", sent a line and did not press "done"; staff closed the case, whose
    notice asks for a rating with buttons. Pressing one answered "this button belongs to an earlier question" and
    asked for more information about the closed case."""
    resident = harness.resident()
    code = await submitted(resident)
    await resident.command("status", code)
    await resident.press("case:follow_up")
    await resident.say("补充：涉事工作人员工号为0327。")
    case_id = await _close_and_offer_rating(harness)
    await resident.press(f"rate:5@{case_id}")
    assert "已失效" not in resident.text() and "还有什么想说的吗" in resident.text()
    await resident.press("comment:skip")
    assert "感谢您的评价（5星）" in resident.text()
    [case] = await cases(harness)
    assert case.rating == 5


async def test_stars_typed_after_the_closing_notice_rate_a_case_the_resident_was_adding_information_to(
        harness: DialogHarness) -> None:
    """The same resident types "5星" to the rating question: it was answered "this case is closed; no more
    information can be added"."""
    resident = harness.resident()
    code = await submitted(resident)
    await resident.command("status", code)
    await resident.press("case:follow_up")
    await resident.say("补充：涉事工作人员工号为0327。")
    await _close_and_offer_rating(harness)
    await resident.say("5星")
    assert "不能再补充材料" not in resident.text() and "还有什么想说的吗" in resident.text()
    await resident.say("处理得很及时，谢谢。")
    assert "感谢您的评价（5星）" in resident.text()
    [case] = await cases(harness)
    assert case.rating == 5
