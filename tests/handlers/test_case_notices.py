"""What a resident receives when staff act on their case, as each channel shows it, and the rating that follows: one
clear message per event (or one message and the question it needs), never a "send /status" beside buttons that
already do it; a closing that cuts short the information the resident was adding makes the conversation wait for
the rating and says what became of that information."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from handlers import tracking
from handlers.notices import render
from storage import actions, loop, outbox, staff_actions
from storage.models import Case, CaseStatus, OutboxMessage, StaffRole, StaffUser, TraceKind
from tests.factories import create_staff
from tests.handlers.conftest import DialogHarness, Resident
from tests.handlers.test_dialog import fill_to_summary, submit

Work = Callable[[Any, Case], Awaitable[object]]
CHANNELS = ("telegram", "wechat", "web")


async def _filed(harness: DialogHarness, name: str = "r1", locale: str = "zh-hans") -> tuple[Resident, str, Case]:
    resident = harness.resident(name, locale=locale)
    await fill_to_summary(resident)
    code = await submit(resident)
    async with harness.sessionmaker() as session:
        case_id = max((await session.execute(select(Case.id))).scalars())
    return resident, code, await _case(harness, case_id)


async def _case(harness: DialogHarness, case_id: int) -> Case:
    async with harness.sessionmaker() as session:
        case = await actions.get_case(session, case_id)
    assert case is not None
    return case


async def _staff(harness: DialogHarness, name: str = "wang") -> StaffUser:
    async with harness.sessionmaker.begin() as session:
        return await create_staff(session, name, StaffRole.SUPERVISOR)


async def _as_staff(harness: DialogHarness, case_id: int, work: Work) -> None:
    """One staff action, in its own transaction as the console runs it."""
    async with harness.sessionmaker.begin() as session:
        case = await actions.get_case(session, case_id)
        assert case is not None
        await work(session, case)


def close(staff: StaffUser, harness: DialogHarness, note: str | None = None) -> Work:
    """Closing as the console does it: the status, and the rating asked for (`console.operations.set_status`)."""
    async def work(session: Any, case: Case) -> None:
        await staff_actions.set_status(session, case, CaseStatus.CLOSED, actor=staff, body=note,
                                       rating_labels=tracking.rating_labels(harness.context.texts, case.locale))

    return work


async def _received(harness: DialogHarness, case_id: int) -> dict[str, list[tuple[str, list[str]]]]:
    """The notices about the case still to be delivered, as each channel would show them (text, button labels);
    they are then counted as delivered."""
    async with harness.sessionmaker.begin() as session:
        rows = list((await session.execute(select(OutboxMessage).where(
            OutboxMessage.case_id == case_id, OutboxMessage.conversation_id.is_(None),
            OutboxMessage.status == "pending").order_by(OutboxMessage.id))).scalars())
        await outbox.mark_sent(session, [row.id for row in rows])
    shown = {}
    for channel in CHANNELS:
        messages = [render(row.payload, harness.context.texts, city=harness.context.city, channel=channel)
                    for row in rows]
        shown[channel] = [(message.text, [choice.label for choice in message.choices]) for message in messages]
    return shown


async def _told(harness: DialogHarness, case_id: int, work: Work) -> list[tuple[str, list[str]]]:
    """What the resident receives for one staff action: the same on every channel (WeChat's own words are only
    for what is typed instead of tapped)."""
    await _as_staff(harness, case_id, work)
    shown = await _received(harness, case_id)
    assert shown["wechat"] == shown["web"] == shown["telegram"]
    return shown["telegram"]


STARS = ["★★★★★", "★★★★", "★★★", "★★", "★"]
NOT_ADDED = "案件已办结，这条内容没有补充到本案。如果是新的问题，请发送 /report 另行举报。"


async def test_each_staff_action_is_one_clear_message_in_chinese(harness: DialogHarness) -> None:
    """Closing a case sent "有新进展：已办结。发送 /status 加查询码查看详情。" and then "已办结。请为办理结果打分"
    with the rating buttons: twice "closed", and "send /status" beside buttons that already rate. A rejection said "send
    /status for details" before its reason; a duplicate's note was a bare case number."""
    resident, _code, case = await _filed(harness)
    await _received(harness, case.id)
    staff = await _staff(harness)
    number = case.case_number

    async def accept(session: Any, case: Case) -> None:
        await staff_actions.set_status(session, case, CaseStatus.ACCEPTED, actor=staff)

    async def handle(session: Any, case: Case) -> None:
        await staff_actions.set_status(session, case, CaseStatus.IN_HANDLING, actor=staff, body="已转窗口所在科室核查")

    async def move(session: Any, case: Case) -> None:
        await loop.transfer(session, case, "work_style", actor=staff, reason="职责不符")

    async def extend(session: Any, case: Case) -> None:
        assert case.resolve_due_at is not None
        request = await loop.request_extension(session, case, actor=staff, reason="需调取监控",
                                               resolve_due_at=case.resolve_due_at + timedelta(days=10))
        await loop.decide_extension(session, request, case, actor=staff, approve=True)

    async def answer(session: Any, case: Case) -> None:
        await staff_actions.answer_reporter(session, case, "经查属实，已责令整改。", actor=staff)

    assert await _told(harness, case.id, accept) == [
        (f"您的举报 {number} 有新进展：已受理。发送 /status 加查询码查看详情。", [])]
    assert await _told(harness, case.id, handle) == [
        (f"您的举报 {number} 有新进展：办理中。发送 /status 加查询码查看详情。\n说明：已转窗口所在科室核查", [])]
    assert await _told(harness, case.id, move) == []  # moving between queues is the office's business
    [(extended, [])] = await _told(harness, case.id, extend)
    assert extended.startswith(f"您的举报 {number} 经批准延长办理期限，预计 ")
    assert await _told(harness, case.id, answer) == [
        (f"您的举报 {number} 收到办理答复：\n经查属实，已责令整改。\n\n"
         "发送 /status 加查询码可查看完整轨迹：问题已解决的，在那里选“问题已解决，谢谢”并评价；"
         "没有解决的，选“补充材料”说明情况。", [])]
    # the closing: the status, then only the question that its buttons answer
    assert await _told(harness, case.id, close(staff, harness)) == [
        (f"您的举报 {number} 已办结。", []),
        ("请为办理结果打分（1–5星），或选择“问题没有解决”。", [*STARS, "问题没有解决", "以后再评，返回菜单"])]
    assert (await _case(harness, case.id)).status == "closed"

    await resident.press(f"rate:2@{case.id}")
    await resident.press("comment:skip")
    assert resident.last[0].text == "感谢反馈，上级已收到通知。"
    assert await _received(harness, case.id) == {channel: [
        (f"您的举报 {number} 将根据您的评价重新办理，有新的答复时会告诉您。", [])] for channel in CHANNELS}

    # closed again with staff's note: the note goes with the status, the question follows
    assert await _told(harness, case.id, close(staff, harness, "已对窗口负责人诫勉谈话。")) == [
        (f"您的举报 {number} 已办结。\n说明：已对窗口负责人诫勉谈话。", []),
        ("请为办理结果打分（1–5星），或选择“问题没有解决”。", [*STARS, "问题没有解决", "以后再评，返回菜单"])]


async def test_a_rejection_and_a_duplicate_say_what_they_mean_in_one_message(harness: DialogHarness) -> None:
    staff = await _staff(harness)
    _resident, _code, first = await _filed(harness, "r1")
    await _received(harness, first.id)

    async def reject(session: Any, case: Case) -> None:
        await loop.reject(session, case, actor=staff, reason="所反映事项属于民事纠纷", referral="请拨打12345市民热线")

    assert await _told(harness, first.id, reject) == [(
        f"您的举报 {first.case_number} 有新进展：不予受理（不属于受理范围）。\n"
        "说明：所反映事项属于民事纠纷\n请拨打12345市民热线\n"
        "如有异议，可发送 /status 加查询码申请复核。", [])]

    _resident, _code, second = await _filed(harness, "r2")
    _resident, _code, third = await _filed(harness, "r3")
    await _received(harness, third.id)

    async def duplicate(session: Any, case: Case) -> None:
        original = await actions.get_case(session, second.id)
        assert original is not None
        await staff_actions.mark_duplicate(session, case, original, actor=staff)

    assert await _told(harness, third.id, duplicate) == [(
        f"您的举报 {third.case_number} 与举报 {second.case_number} 反映的是同一问题，已合并办理。\n"
        "发送 /status 加查询码可查看详情。",
        [])]


async def test_each_staff_action_is_one_clear_message_in_english(harness: DialogHarness) -> None:
    resident, _code, case = await _filed(harness, locale="en")
    await _received(harness, case.id)
    staff = await _staff(harness)
    number = case.case_number

    async def answer(session: Any, case: Case) -> None:
        await staff_actions.answer_reporter(session, case, "Checked: the counter now opens on time.", actor=staff)

    async def reject(session: Any, case: Case) -> None:
        await loop.reject(session, case, actor=staff, reason="A civil dispute", referral="Call 12345")

    assert await _told(harness, case.id, answer) == [(
        f"Your report {number} has an answer:\nChecked: the counter now opens on time.\n\n"
        "Send /status with your receipt code to see the full trace: if the problem is solved, "
        "choose \"Solved, thank you\" there and rate the handling; if it is not, "
        "choose \"Add information\" and say what is still wrong.", [])]
    assert await _told(harness, case.id, close(staff, harness)) == [
        (f"Your report {number} is closed.", []),
        ("Please rate how it was handled (1–5 stars), or choose Not solved.",
         [*STARS, "Not solved", "Later — back to the menu"])]
    await resident.press(f"rate:1@{case.id}")
    await resident.press("comment:skip")
    assert await _received(harness, case.id) == {channel: [
        (f"Your report {number} will be handled again after your rating; you will be told of its new answer.", [])]
        for channel in CHANNELS}
    assert await _told(harness, case.id, reject) == [(
        f"Your report {number} has an update: Rejected (out of scope).\nNote: A civil dispute\nCall 12345\n"
        "If you disagree, send /status with your receipt code to ask for a review.", [])]


# --- a closing that cuts short the information being added ------------------------------------------------------


async def _adding_information(harness: DialogHarness, locale: str = "zh-hans") -> tuple[Resident, Case, StaffUser]:
    """A resident who pressed "add information", sent a line and did not press "done"."""
    resident, code, case = await _filed(harness, locale=locale)
    await resident.command("status", code)
    await resident.press("case:follow_up")
    await resident.say("补充：涉事工作人员工号为0327。")
    assert "补充材料已收到" in resident.text() or "Received" in resident.text()
    staff = await _staff(harness)
    await _as_staff(harness, case.id, staff_actions_answer(staff))
    return resident, case, staff


async def _state(harness: DialogHarness, resident: Resident) -> str:
    async with harness.sessionmaker() as session:
        conversation = await actions.load_conversation(session, "test", resident.user_ref)
    return conversation.state


async def test_a_closing_makes_a_conversation_adding_information_to_that_case_wait_for_the_rating(
        harness: DialogHarness) -> None:
    """The conversation stayed in "adding information" about a closed case: a further line was answered "this case
    is closed; no more information can be added" with the case's menu, and the closing's rating question was not
    what the conversation waited for."""
    resident, case, staff = await _adding_information(harness)
    await _received(harness, case.id)
    told = await _told(harness, case.id, close(staff, harness))
    assert told == [(f"您的举报 {case.case_number} 已办结。", []), (
        "案件已办结，补充材料随之结束：此前发送的都已记入办理轨迹，之后发送的内容不会再补充到本案。\n"
        "请为办理结果打分（1–5星），或选择“问题没有解决”。", [*STARS, "问题没有解决", "以后再评，返回菜单"])]
    assert await _state(harness, resident) == "rating"

    # what they send before reading the notice is not added, and they are told so, with the question again
    await resident.say("另外，该工作人员当天还对排队群众态度恶劣，大声呵斥老人。")
    assert [message.text for message in resident.last] == [
        NOT_ADDED, "请为本案的办理打分（1–5星）："]
    assert resident.keys()[:5] == ["rate:5", "rate:4", "rate:3", "rate:2", "rate:1"]
    await resident.upload(b"%PDF-1.4 not evidence")
    assert resident.last[0].text == NOT_ADDED
    loaded = await _case(harness, case.id)
    added = [event.body for event in loaded.trace if event.kind == TraceKind.FOLLOW_UP]
    assert added == ["补充：涉事工作人员工号为0327。"]

    for done in ({"choice": "follow_up:done"}, {"text": "完成"}):  # "done", under the question to add information
        await (resident.press(done["choice"]) if "choice" in done else resident.say(done["text"]))
        assert [message.text for message in resident.last] == [
            "补充材料已结束：此前发送的都已记入办理轨迹（案件已办结）。", "请为本案的办理打分（1–5星）："]

    await resident.say("4")
    assert "还有什么想说的吗" in resident.text()
    await resident.press("comment:skip")
    assert "感谢您的评价（4星）" in resident.text()
    assert (await _case(harness, case.id)).rating == 4


async def test_in_english_the_cut_short_information_is_explained_too(harness: DialogHarness) -> None:
    resident, case, staff = await _adding_information(harness, locale="en")
    await _received(harness, case.id)
    [_closed, (question, _buttons)] = await _told(harness, case.id, close(staff, harness))
    assert question == ("Adding information ended with the closing: what you sent before is in the case's trace; "
                        "what you send now is not added to it.\n"
                        "Please rate how it was handled (1–5 stars), or choose Not solved.")
    await resident.say("One more thing: the same clerk was rude to an old man.")
    assert resident.last[0].text == ("The case is closed, so this was not added to it. If it is a new matter, send "
                                     "/report to file a new report.")
    await resident.say("not solved")
    await resident.press("comment:skip")
    assert (await _case(harness, case.id)).status == "in_handling"


async def test_a_closing_cuts_short_an_appeal_being_written_and_says_it_was_not_sent(harness: DialogHarness) -> None:
    resident, code, case = await _filed(harness)
    staff = await _staff(harness)

    async def reject(session: Any, case: Case) -> None:
        await loop.reject(session, case, actor=staff, reason="所反映事项属于民事纠纷", referral="请拨打12345市民热线")

    await _as_staff(harness, case.id, reject)
    await resident.command("status", code)
    await resident.press("case:appeal")
    assert "复核的理由" in resident.text()
    await _received(harness, case.id)
    [_closed, (question, _buttons)] = await _told(harness, case.id, close(staff, harness, "经核实已另案处理。"))
    assert question.startswith("您的复核申请没有提交：案件已办结，不能再申请复核。")
    await resident.say("这不是民事纠纷，是窗口人员索要好处。")
    assert resident.last[0].text.startswith("案件已办结，这条内容没有补充到本案。")
    loaded = await _case(harness, case.id)
    assert (loaded.appeal_count, loaded.status) == (0, "closed")


async def test_a_conversation_on_another_case_or_filing_a_report_is_left_where_it_is(harness: DialogHarness) -> None:
    resident, _case_one, staff = await _adding_information(harness)
    _other, _code, other = await _filed(harness, "r2")  # another resident's case closes: nothing changes here
    await _as_staff(harness, other.id, staff_actions_answer(staff))
    await _as_staff(harness, other.id, close(staff, harness))
    assert await _state(harness, resident) == "follow_up"


def staff_actions_answer(staff: StaffUser) -> Work:
    async def work(session: Any, case: Case) -> None:
        await staff_actions.answer_reporter(session, case, "经查属实。", actor=staff)

    return work


# --- the rating after the notice ---------------------------------------------------------------------------------


async def _closed(harness: DialogHarness, name: str = "r1") -> tuple[Resident, str, Case]:
    resident, code, case = await _filed(harness, name)
    staff = await _staff(harness, f"staff-{name}")
    await _as_staff(harness, case.id, staff_actions_answer(staff))
    await _as_staff(harness, case.id, close(staff, harness))
    return resident, code, case


@pytest.mark.parametrize(("typed", "rating"), [("5星", 5), ("⭐⭐⭐", 3), ("四颗星", 4), ("2", 2)])
async def test_stars_typed_to_the_closing_notice_rate_the_case(harness: DialogHarness, typed: str,
                                                                rating: int) -> None:
    resident, _code, case = await _closed(harness)
    await resident.say(typed)
    assert "还有什么想说的吗" in resident.text()
    await resident.say("处理得很及时。")
    loaded = await _case(harness, case.id)
    assert loaded.rating == (rating if rating > 2 else None)  # a poor rating reopens the case, to be rated again
    assert loaded.status == ("closed" if rating > 2 else "in_handling")


async def test_not_solved_typed_reopens_the_case_and_the_notice_says_so(harness: DialogHarness) -> None:
    resident, _code, case = await _closed(harness)
    await _received(harness, case.id)
    await resident.say("没解决")
    assert "还有什么想说的吗" in resident.text()
    await resident.say("窗口还是没人。")
    assert resident.last[0].text == "感谢反馈，上级已收到通知。"
    loaded = await _case(harness, case.id)
    assert (loaded.status, loaded.rehandle_count) == ("in_handling", 1)
    assert [kind for kind in (event.kind for event in loaded.trace)][-2:] == ["rated", "reopened"]
    assert (await _received(harness, case.id))["telegram"] == [
        (f"您的举报 {case.case_number} 将根据您的评价重新办理，有新的答复时会告诉您。", [])]


async def test_a_second_rating_of_a_rated_case_is_declined_with_the_rating_given(harness: DialogHarness) -> None:
    resident, code, case = await _closed(harness)
    await resident.press(f"rate:5@{case.id}")
    await resident.press("comment:skip")
    assert "感谢您的评价（5星）" in resident.text()
    await resident.press(f"rate:1@{case.id}")  # the button under the notice, again, a moment later
    assert resident.last[0].text == "这件举报已经评价过了（5星），谢谢您的反馈。"
    assert (await _case(harness, case.id)).rating == 5
    await resident.command("status", code)
    assert "case:rate" not in resident.keys()
    await resident.say("1星")
    assert (await _case(harness, case.id)).rating == 5


async def test_a_rating_button_pressed_days_later_after_other_messages_rates_the_case(harness: DialogHarness) -> None:
    """The resident read the closing notice, used the menu for something else and came back days later to the
    buttons under it."""
    resident, _code, case = await _closed(harness)
    await resident.press(f"rate:later@{case.id}")
    assert "以后想评价时" in resident.text()
    await resident.press("menu:help")
    assert "使用说明" in resident.text()
    harness.clock.advance(days=6)
    await resident.say("你好")
    await resident.press(f"rate:4@{case.id}")
    assert "还有什么想说的吗" in resident.text()
    await resident.press("comment:skip")
    assert "感谢您的评价（4星）" in resident.text()
    assert (await _case(harness, case.id)).rating == 4


async def test_a_rating_button_of_someone_elses_case_rates_nothing(harness: DialogHarness) -> None:
    _resident, _code, case = await _closed(harness)
    stranger = harness.resident("r9")
    await stranger.command("start")
    await stranger.press(f"rate:1@{case.id}")  # a forged button: not her case
    assert "已失效" in stranger.text()
    assert (await _case(harness, case.id)).rating is None


async def test_stars_typed_days_later_after_other_messages_still_rate_the_case(harness: DialogHarness) -> None:
    """The conversation waits for the rating for 30 days: "你好" in between is answered with the question again;
    the stars typed five days later rate the case."""
    resident, _code, case = await _closed(harness)
    await resident.say("你好")
    assert [message.text for message in resident.last][-1] == "请为本案的办理打分（1–5星）："
    harness.clock.advance(days=5)
    await resident.say("五星")
    await resident.press("comment:skip")
    assert "感谢您的评价（5星）" in resident.text() and (await _case(harness, case.id)).rating == 5


@pytest.mark.parametrize("locale", ["zh", "en"])
@pytest.mark.parametrize("overrides", [{}, {"case_solved": "办好了", "case_follow_up": "还没办好"}],
                         ids=["bundled", "city's words"])
def test_the_answer_notice_names_the_buttons_the_case_page_offers_by_their_words(
        harness: DialogHarness, locale: str, overrides: dict[str, str]) -> None:
    """An answered case is rated after the resident says it is solved (`tracking.ask_case_menu`): the notice tells
    them which of the case page's buttons does what, by the very words on the buttons — a city's own as well."""
    from handlers.texts import Texts

    texts = Texts({locale: overrides})
    notice = render({"notice": "answer", "locale": locale, "case_number": "QL-2026-000001", "answer": "已整改。"},
                    texts, city=harness.context.city).text
    assert texts.get(locale, "case_solved") in notice and texts.get(locale, "case_follow_up") in notice
