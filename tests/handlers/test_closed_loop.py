"""The closed loop as the reporter lives it, driven through the dialog with staff's actions between the
steps: the rating request after closing, a poor rating reopening the case once, "solved, thank you",
notes and a rejection's reason in the trace, an appeal decided by a supervisor, an approved extension's
new date, and a transfer shown once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from handlers.notices import render
from storage import actions, loop, staff_actions
from storage.models import Case, CaseStatus, OutboxMessage, StaffRole, StaffUser, TraceEvent
from tests.factories import create_staff
from tests.handlers.conftest import DialogHarness, Resident
from tests.handlers.test_dialog import fill_to_summary, submit

LABELS = ["★★★★★", "★★★★", "★★★", "★★", "★", "问题没有解决", "以后再评，返回菜单"]


async def _filed(harness: DialogHarness, name: str = "r1") -> tuple[Resident, str, int]:
    resident = harness.resident(name)
    await fill_to_summary(resident)
    code = await submit(resident)
    async with harness.sessionmaker() as session:
        case_id = max((await session.execute(select(Case.id))).scalars())
    return resident, code, case_id


async def _staff(harness: DialogHarness, role: StaffRole = StaffRole.SUPERVISOR) -> StaffUser:
    async with harness.sessionmaker.begin() as session:
        return await create_staff(session, f"{role}-{datetime.now(UTC).timestamp()}", role)


async def _as_staff(harness: DialogHarness, case_id: int, work: Any) -> None:
    async with harness.sessionmaker.begin() as session:
        case = await actions.get_case(session, case_id)
        assert case is not None
        await work(session, case)


async def _answer_and_close(harness: DialogHarness, case_id: int, staff: StaffUser) -> None:
    async def work(session: Any, case: Case) -> None:
        await staff_actions.answer_reporter(session, case, "经查属实，已责令整改。", actor=staff)
        await staff_actions.set_status(session, case, CaseStatus.CLOSED, actor=staff)
        await loop.offer_rating(session, case, labels=LABELS)

    await _as_staff(harness, case_id, work)


async def _case(harness: DialogHarness, case_id: int) -> Case:
    async with harness.sessionmaker() as session:
        case = await actions.get_case(session, case_id)
    assert case is not None
    return case


async def test_a_closed_case_asks_for_a_rating_and_a_poor_one_reopens_it_once(harness: DialogHarness) -> None:
    resident, _code, case_id = await _filed(harness)
    staff = await _staff(harness)
    await _answer_and_close(harness, case_id, staff)
    async with harness.sessionmaker() as session:
        query = select(OutboxMessage).where(OutboxMessage.kind == "rate_request")
        request = (await session.execute(query)).scalar_one()
    shown = render(request.payload, harness.context.texts, city=harness.context.city)
    # each button names the case it is about
    assert "请为办理结果打分" in shown.text and [c.key for c in shown.choices][-2:] == [
        f"rate:unsolved@{case_id}", f"rate:later@{case_id}"]

    await resident.press(f"rate:1@{case_id}")  # the button under the notice rates this case, with no code typed
    assert "还有什么想说的吗" in resident.text()
    await resident.say("窗口还是没人，问题依旧。")
    assert "感谢反馈，上级已收到通知" in resident.text()  # the "reopened" notice tells the rest
    case = await _case(harness, case_id)
    assert (case.status, case.rehandle_count, case.rating) == ("in_handling", 1, None)
    assert [e.kind for e in case.trace][-2:] == ["rated", "reopened"]
    assert case.trace[-1].body == "窗口还是没人，问题依旧。"

    await _answer_and_close(harness, case_id, staff)  # handled again, closed again: rated again, no third round
    await resident.say("1")
    await resident.press("comment:skip")
    case = await _case(harness, case_id)
    assert (case.status, case.rehandle_count, case.rating) == ("closed", 1, 1)


async def test_solved_thank_you_closes_an_answered_case(harness: DialogHarness) -> None:
    resident, code, case_id = await _filed(harness)
    staff = await _staff(harness)

    async def answer(session: Any, case: Case) -> None:
        await staff_actions.answer_reporter(session, case, "已约谈窗口负责人。", actor=staff)

    await _as_staff(harness, case_id, answer)
    await resident.command("status", code)
    assert "case:solved" in resident.keys()
    await resident.press("case:solved")
    assert "本案已办结" in resident.text() and "rate:5" in resident.keys()
    await resident.press("rate:5")
    await resident.press("comment:skip")
    case = await _case(harness, case_id)
    assert (case.status, case.rating) == ("closed", 5)
    assert [e.kind for e in case.trace][-2:] == ["solved", "rated"]


def note_and_reject(supervisor: StaffUser) -> Callable[[Any, Case], Awaitable[None]]:
    """A supervisor's steps on a case: in handling with a note, a note for the reporter, then a rejection with its
    reason and where to turn instead."""

    async def steps(session: Any, case: Case) -> None:
        await staff_actions.set_status(session, case, CaseStatus.IN_HANDLING, actor=supervisor, body="已转相关科室核查")
        await loop.tell_reporter(session, case, "预计下周反馈核查结果。", actor=supervisor)
        await loop.reject(session, case, actor=supervisor, reason="所反映事项属于民事纠纷",
                          referral="请拨打12345市民热线咨询")

    return steps


async def test_notes_a_rejections_reason_and_an_appeal_reach_the_reporter(harness: DialogHarness) -> None:
    resident, code, case_id = await _filed(harness)
    supervisor = await _staff(harness)
    await _as_staff(harness, case_id, note_and_reject(supervisor))
    await resident.command("status", code)
    trace = resident.text()
    assert "正在办理：已转相关科室核查" in trace and "办理说明：预计下周反馈核查结果。" in trace
    assert "不予受理：所反映事项属于民事纠纷\n请拨打12345市民热线咨询" in trace
    async with harness.sessionmaker() as session:
        kinds = list((await session.execute(select(OutboxMessage.kind).where(OutboxMessage.case_id == case_id)
                                             .order_by(OutboxMessage.id))).scalars())
        last = (await session.execute(select(OutboxMessage).where(OutboxMessage.case_id == case_id)
                                      .order_by(OutboxMessage.id.desc()).limit(1))).scalar_one()
    assert kinds == ["status_changed", "note", "status_changed"]
    assert "请拨打12345市民热线" in render(last.payload, harness.context.texts, city=harness.context.city).text

    await resident.press("case:appeal")
    await resident.say("这不是民事纠纷，" * 300)  # 2,000 characters at most: explained and asked again, not cut
    assert resident.text() == "内容过长（2400字），最多2000字。\n请说明申请复核的理由（将由上级复核）："
    assert (await _case(harness, case_id)).appeal_count == 0
    await resident.say("这不是民事纠纷，是窗口人员索要好处。")
    assert "复核申请已提交" in resident.text()
    case = await _case(harness, case_id)
    assert (case.appeal_pending, case.appeal_count) == (True, 1)

    async def reopen(session: Any, case: Case) -> None:
        await loop.decide_appeal(session, case, actor=supervisor, uphold=False, reason="经复核，转窗口监督组办理。")

    await _as_staff(harness, case_id, reopen)
    case = await _case(harness, case_id)
    # it was put in handling (so accepted) before the rejection: the appeal returns it to handling
    assert (case.status, case.appeal_pending) == ("in_handling", False)
    await resident.command("status", code)
    assert "复核决定：重新受理办理：经复核，转窗口监督组办理。" in resident.text()
    assert "case:appeal" not in resident.keys()


async def test_an_approved_extension_shows_its_new_date_and_a_refused_one_changes_nothing(
        harness: DialogHarness) -> None:
    resident, code, case_id = await _filed(harness)
    reviewer = await _staff(harness, StaffRole.REVIEWER)
    supervisor = await _staff(harness)
    case = await _case(harness, case_id)
    assert case.resolve_due_at is not None
    later = case.resolve_due_at + timedelta(days=20)

    async def extend(session: Any, case: Case) -> None:
        first = await loop.request_extension(session, case, actor=reviewer, reason="需调取三个月的监控录像",
                                             resolve_due_at=later)
        await loop.decide_extension(session, first, case, actor=supervisor, approve=False, note="先完成初步核查")
        second = await loop.request_extension(session, case, actor=reviewer, reason="监控录像需公安协助调取",
                                              resolve_due_at=later)
        await loop.decide_extension(session, second, case, actor=supervisor, approve=True)

    await _as_staff(harness, case_id, extend)
    case = await _case(harness, case_id)
    assert case.resolve_due_at == later and case.extension_count == 1
    await resident.command("status", code)
    day = later.astimezone(harness.context.tz).strftime("%Y-%m-%d")
    assert f"经批准延长办理期限至 {day}" in resident.text() and f"预计答复：{day}" in resident.text()
    assert "先完成初步核查" not in resident.text()  # the refusal is the staff's business
    async with harness.sessionmaker() as session:
        trace = list((await session.execute(select(TraceEvent).where(TraceEvent.case_id == case_id)
                                            .order_by(TraceEvent.id))).scalars())
    kinds = [event.kind for event in trace]
    assert kinds.count("extended") == 1 and kinds.index("extension_refused") < kinds.index("extended")
    refused = next(event for event in trace if event.kind == "extension_refused")
    assert (refused.body, refused.detail["internal"]) == ("先完成初步核查", True)
    assert refused.actor == f"staff:{supervisor.id}"


async def test_a_transfer_keeps_the_deadlines_and_the_reporter_reads_it_once(harness: DialogHarness) -> None:
    resident, code, case_id = await _filed(harness)
    reviewer = await _staff(harness, StaffRole.REVIEWER)
    before = await _case(harness, case_id)

    async def ping_pong(session: Any, case: Case) -> None:
        for queue in ("work_style", "clean_hall", "work_style"):
            await loop.transfer(session, case, queue, actor=reviewer, reason="职责不符", alert_after=3)

    await _as_staff(harness, case_id, ping_pong)
    after = await _case(harness, case_id)
    assert (after.accept_due_at, after.resolve_due_at) == (before.accept_due_at, before.resolve_due_at)
    assert after.transfer_count == 3
    await resident.command("status", code)
    assert resident.text().count("已转交责任部门办理") == 1
    assert "已分派至 党风政风监督室" not in resident.text()


async def test_a_question_of_the_staff_reaches_the_reporter_who_answers_with_the_button(
        harness: DialogHarness) -> None:
    resident, _code, case_id = await _filed(harness)
    reviewer = await _staff(harness, StaffRole.REVIEWER)

    async def ask(session: Any, case: Case) -> None:
        await loop.ask_for_information(session, case, "请提供3号窗口当天的排队小票照片。", actor=reviewer,
                                       add_label="补充材料")

    await _as_staff(harness, case_id, ask)
    async with harness.sessionmaker() as session:
        notice = (await session.execute(select(OutboxMessage).where(OutboxMessage.kind == "more_info"))).scalar_one()
    shown = render(notice.payload, harness.context.texts, city=harness.context.city)
    assert "请您补充信息：\n请提供3号窗口当天的排队小票照片。" in shown.text and "/status" in shown.text
    assert [(c.key, c.label) for c in shown.choices] == [(f"case:follow_up@{case_id}", "补充材料")]

    await resident.press(f"case:follow_up@{case_id}")  # the button under the notice, with no code typed
    assert "请发送要补充的" in resident.text()
    await resident.say("小票上的时间是上午9点20分，叫号到11点半。")
    assert "补充材料已收到" in resident.text()
    case = await _case(harness, case_id)
    assert [e.kind for e in case.trace][-2:] == ["more_info", "follow_up"]
    assert case.trace[-2].body == "请提供3号窗口当天的排队小票照片。"


async def test_a_poor_rating_tells_the_reporter_by_a_notice_that_the_case_is_reopened(
        harness: DialogHarness) -> None:
    resident, _code, case_id = await _filed(harness)
    await _answer_and_close(harness, case_id, await _staff(harness))
    await resident.press(f"rate:2@{case_id}")  # the button under the notice
    await resident.press("comment:skip")
    assert "感谢反馈，上级已收到通知" in resident.text()  # the notice says the case is handled again
    async with harness.sessionmaker() as session:
        reopened = (await session.execute(select(OutboxMessage).where(OutboxMessage.kind == "reopened"))).scalar_one()
    assert "将根据您的评价重新办理" in render(reopened.payload, harness.context.texts, city=harness.context.city).text
    assert reopened.case_id == case_id
