"""The report dialog driven directly, step by step, against a real SQLite database."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from storage import actions
from storage.models import Attachment, Case, CaseStatus, TraceEvent
from tests.conftest import evidence_content
from tests.factories import pdf_of_size
from tests.handlers.conftest import GATHER, JPEG, PDF, DialogHarness, Resident

DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"


async def fill_to_summary(resident: Resident) -> None:
    await resident.command("report")
    await resident.press("district:yuelu")
    await resident.say("岳麓区政务服务中心3号窗口")
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")


async def where_and_when(resident: Resident) -> None:
    """Steps 1 to 3: district, place, today."""
    await resident.press("district:yuelu")
    await resident.say("岳麓区政务服务中心3号窗口")
    await resident.press("when:today")


async def submit_what_was_offered(resident: Resident) -> str:
    """A text offered as a report: taken, steps 1 to 3, no evidence, anonymous, submitted."""
    await resident.press("intake:report")
    await where_and_when(resident)
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    return await submit(resident)


async def submit(resident: Resident) -> str:
    await resident.press("summary:submit")
    match = re.search(r"\d{4} \d{4} \d{4} \d{4}", resident.text())
    assert match, resident.text()
    return match.group(0)


async def test_complete_report_stores_case_and_answers_with_receipt(harness: DialogHarness) -> None:
    resident = harness.resident()
    await fill_to_summary(resident)
    assert "岳麓区政务服务中心3号窗口" in resident.text() and "匿名" in resident.text()
    code = await submit(resident)
    assert "QL-2026-000001" in resident.text()
    async with harness.sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
        kinds = list((await session.execute(select(TraceEvent.kind).order_by(TraceEvent.id))).scalars())
    assert (case.district, case.place, case.description, case.anonymous) == (
        "yuelu", "岳麓区政务服务中心3号窗口", DESCRIPTION, True)
    assert case.occurred == "2026-11-24 (今天)"
    assert case.queue == "triage" and kinds == ["received", "routed"]
    assert code.replace(" ", "") not in str(case.__dict__)
    assert "menu:report" in resident.keys()


async def test_every_step_explains_bad_input_and_asks_again(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.say("火星")
    assert "请从列表中选择区县" in resident.text() and "district:yuelu" in resident.keys()
    await resident.send_sticker()
    assert "无法识别这条消息" in resident.text() and "district:yuelu" in resident.keys()
    await resident.say("3")  # the third option, as typed on WeChat
    assert "第2步" in resident.text()
    await resident.say("！")
    assert "太简略" in resident.text() and "第2步" in resident.text()
    await resident.upload(JPEG)
    assert "还不需要上传文件" in resident.text() and "第2步" in resident.text()
    await resident.say("岳麓区某某街道办事处")
    await resident.say("2099-01-01")
    assert "还没有到" in resident.text() and "第3步" in resident.text()
    await resident.say("2026-02-30")
    assert "不是一个有效日期" in resident.text()
    await resident.say("岳麓区某某街道办事处")  # the place again, at the question of the time
    assert "看起来不是时间" in resident.text() and "第3步" in resident.text() and "when:unsure" in resident.keys()
    await resident.say("上周三下午")
    await resident.say("太差了！！！")
    assert "至少10个字" in resident.text() and "第4步" in resident.text()
    await resident.say("啊" * 30)
    assert "至少10个字" in resident.text()
    await resident.say("字" * 3001)  # over the limit, and what fits of it says nothing: refused, not "kept"
    assert resident.text().startswith("描述太简单了") and "第4步" in resident.text() and "已把" not in resident.text()
    await resident.say(DESCRIPTION)
    await resident.say("稍等，我找一下照片")  # ("没有照片", no photos, is an answer now: no evidence)
    assert "请发送图片或PDF文件" in resident.text() and "evidence:done" in resident.keys()
    await resident.upload(b"MZ\x90\x00 not an image", name="virus.jpg")
    assert "不是图片" in resident.text()
    await resident.upload(JPEG, size=50 * 1024 * 1024)
    assert "文件太大" in resident.text()
    await resident.press("evidence:done")
    await resident.press("identity:real")
    await resident.say("张3")
    assert "不能包含数字" in resident.text()
    await resident.say("张三")
    await resident.say("12345")
    assert "手机号格式不正确" in resident.text()
    await resident.say("+86 138-1234-5678")
    assert "张三 138****5678" in resident.text()
    await resident.say("随便说点什么")
    assert "请点击下方选项之一" in resident.text() and "summary:submit" in resident.keys()
    await submit(resident)
    async with harness.sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
    assert (case.occurred, case.reporter_name, case.reporter_phone, case.anonymous) == (
        "上周三下午 (2026-11-18)", "张三", "13812345678", False)


async def test_evidence_up_to_the_limit_is_attached_to_the_case(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:unsure")
    await resident.say("望城区某单位")
    await resident.press("when:week")
    await resident.say(DESCRIPTION)
    for _ in range(4):
        await resident.upload(JPEG, kind="photo")
    await resident.upload(PDF, media_type="application/pdf", name="证明.pdf")
    assert "第 5 个文件" in resident.text()
    await resident.upload(JPEG, kind="photo")
    assert "最多只能上传5个文件" in resident.text()
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    assert "证据：5 个文件" in resident.text() and "区县：不确定" in resident.text()
    await submit(resident)
    async with harness.sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
        files = list((await session.execute(select(Attachment).order_by(Attachment.id))).scalars())
    assert case.district is None
    assert [f.case_id for f in files] == [case.id] * 5
    assert [f.media_type for f in files] == ["image/jpeg"] * 4 + ["application/pdf"]
    assert all(evidence_content(harness.context.evidence_dir, f.stored_name)[:3] in (JPEG[:3], PDF[:3]) for f in files)


async def test_summary_edits_one_field_and_returns_to_summary(harness: DialogHarness) -> None:
    resident = harness.resident()
    await fill_to_summary(resident)
    await resident.press("summary:edit")
    await resident.press("edit:place")
    await resident.say("开福区不动产登记中心")
    assert "请核对举报内容" in resident.text() and "开福区不动产登记中心" in resident.text()
    await resident.press("summary:edit")
    await resident.press("edit:identity")
    await resident.press("identity:real")
    await resident.say("Li Ming")
    await resident.say("13912345678")
    assert "Li Ming 139****5678" in resident.text()
    await submit(resident)
    async with harness.sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
    assert (case.place, case.district, case.reporter_name) == ("开福区不动产登记中心", "yuelu", "Li Ming")


@pytest.mark.parametrize("steps", range(0, 8))
async def test_cancel_works_at_every_step_and_stores_nothing(harness: DialogHarness, steps: int) -> None:
    resident = harness.resident()
    script = [
        lambda: resident.command("report"),
        lambda: resident.press("district:kaifu"),
        lambda: resident.say("开福区某窗口"),
        lambda: resident.press("when:today"),
        lambda: resident.say(DESCRIPTION),
        lambda: resident.upload(JPEG),
        lambda: resident.press("evidence:done"),
        lambda: resident.press("identity:anonymous"),
    ]
    for step in script[: steps + 1]:
        await step()
    await resident.command("cancel")
    assert "要放弃这份尚未提交的举报吗" in resident.text()  # asked first (a tap of a menu is easily made)
    await resident.press("cancel:discard")
    assert "已取消本次举报" in resident.text() and "menu:report" in resident.keys()
    await resident.command("report")
    assert "第1步" in resident.text()  # no draft left to resume
    async with harness.sessionmaker() as session:
        assert (await session.execute(select(Case))).first() is None
        assert (await session.execute(select(Attachment))).first() is None


async def test_a_report_half_written_is_discarded_only_once_the_resident_says_so(harness: DialogHarness) -> None:
    """Seen as a resident (resident2): 取消 on the web page's bottom bar (one tap, between 查询 and 语言), /cancel in
    Telegram's command menu and "❌ 取消举报" beside "提交" at the summary deleted the draft at once. They now ask;
    keeping it goes back to the question the resident was at, and /cancel sent again is meant."""
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:yuelu")
    await resident.say("岳麓区政务服务中心3号窗口")
    await resident.command("cancel")
    assert "要放弃这份尚未提交的举报吗" in resident.text() and resident.keys() == ["cancel:discard", "cancel:keep"]
    await resident.say("我再想想")  # neither: explained and asked again
    assert "请点击下方选项之一" in resident.text() and resident.keys() == ["cancel:discard", "cancel:keep"]
    await resident.press("cancel:keep")
    assert "草稿已保留" in resident.text() and "第3步" in resident.text()  # back at the time question
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    await resident.press("summary:cancel")  # the summary's button asks as well
    assert "要放弃这份尚未提交的举报吗" in resident.text()
    await resident.say("继续")
    assert "请核对举报内容" in resident.text() and "岳麓区政务服务中心3号窗口" in resident.text()
    await resident.command("cancel")
    await resident.command("cancel")
    assert "已取消本次举报" in resident.text() and "menu:report" in resident.keys()
    await resident.command("start")
    assert "尚未提交的举报草稿" not in resident.text()  # nothing left to resume


async def test_start_offers_to_resume_the_draft_or_start_over(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:tianxin")
    await resident.say("天心区税务大厅")
    await resident.command("start")
    assert "尚未提交的举报草稿" in resident.text()
    await resident.press("resume:continue")
    assert "第3步" in resident.text()
    await resident.command("report")
    await resident.press("resume:restart")
    assert "第1步" in resident.text()


async def test_draft_survives_six_days_and_expires_after_seven(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:liuyang")
    harness.clock.advance(days=6)
    await resident.command("report")
    assert "尚未提交的举报草稿" in resident.text()
    await resident.press("resume:continue")
    assert "第2步" in resident.text()
    harness.clock.advance(days=7, minutes=1)
    await resident.say("浏阳市某局")
    assert "已过期删除" in resident.text() and "menu:report" in resident.keys()


async def test_english_dialog_and_language_switch(harness: DialogHarness) -> None:
    resident = harness.resident(locale="en-GB")
    await resident.command("report")
    assert "Step 1" in resident.text()
    await resident.press("district:furong")
    await resident.command("language")
    await resident.press("language:zh")
    assert "已切换为中文" in resident.text() and "第2步" in resident.text()
    await resident.command("language")
    await resident.press("language:en")
    assert "Step 2" in resident.text()


async def test_old_buttons_and_unknown_commands_are_explained(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:yuhua")
    await resident.press("district:furong")
    assert "已失效" in resident.text() and "第2步" in resident.text()
    await resident.command("frobnicate")
    assert "无法识别指令 /frobnicate" in resident.text() and "第2步" in resident.text()


async def test_status_shows_trace_and_answer_and_allows_follow_up_and_rating(harness: DialogHarness) -> None:
    resident = harness.resident()
    await fill_to_summary(resident)
    code = await submit(resident)
    await resident.command("status", code)
    assert "当前状态：已分派" in resident.text() and "举报已收到" in resident.text()
    assert "已分派至 人工分拣" in resident.text()
    assert resident.keys() == ["case:follow_up", "case:menu"]
    await resident.press("case:follow_up")
    await resident.say("补充：涉事工作人员工号为0327。")
    await resident.upload(JPEG, kind="photo")
    await resident.press("follow_up:done")
    assert resident.text().count("举报人补充了材料") == 2
    async with harness.sessionmaker.begin() as session:
        case = (await session.execute(select(Case))).scalar_one()
        case = await actions.get_case(session, case.id)
        assert case is not None
        await actions.reply_to_reporter(session, case, "经查属实，已责令整改。", actor="staff:1")
        await actions.change_status(session, case, CaseStatus.CLOSED, actor="staff:1")
    await resident.command("status", code.replace(" ", ""))
    assert "当前状态：已办结" in resident.text() and "经查属实，已责令整改。" in resident.text()
    assert resident.keys() == ["case:rate", "case:menu"]
    await resident.press("case:rate")
    await resident.say("8")
    assert "请选择1到5星" in resident.text()
    await resident.press("rate:4")
    await resident.press("comment:skip")  # the optional comment (issue 13) comes before the thanks
    assert "感谢您的评价（4星）" in resident.text()
    await resident.command("status", code)
    assert "举报人评价：4星" in resident.text() and "case:rate" not in resident.keys()


async def test_wrong_codes_are_throttled_after_five(harness: DialogHarness) -> None:
    resident = harness.resident()
    await fill_to_summary(resident)
    code = await submit(resident)
    stranger = harness.resident("someone-else")
    for n in range(5):
        await stranger.command("status", f"0000 0000 0000 000{n}")
        assert "没有找到与该查询码对应的案件" in stranger.text()
    await stranger.command("status", code)
    assert "错误次数过多" in stranger.text() and "当前状态" not in stranger.text()
    await stranger.command("status", "12345")
    assert "错误次数过多" in stranger.text()
    harness.clock.advance(minutes=11)
    await stranger.command("status", code)
    assert "当前状态" in stranger.text()
    await resident.command("status", code)  # another resident is not affected
    assert "当前状态" in resident.text()


async def test_malformed_code_is_explained_without_counting(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("status")
    for _ in range(6):
        await resident.say("1234")
        assert "查询码应为16位数字" in resident.text()
    await resident.say("0000000000000000")
    assert "没有找到" in resident.text()


async def test_case_view_expires(harness: DialogHarness) -> None:
    resident = harness.resident()
    await fill_to_summary(resident)
    code = await submit(resident)
    await resident.command("status", code)
    harness.clock.advance(minutes=31)
    await resident.press("case:follow_up")
    assert "查询已超时" in resident.text() and "menu:status" in resident.keys()


async def test_reports_over_the_daily_limit_are_refused_and_the_draft_kept(harness: DialogHarness) -> None:
    harness.context.city.limits.reports_per_day = 2
    resident = harness.resident()
    for _ in range(2):
        await fill_to_summary(resident)
        await submit(resident)
    await fill_to_summary(resident)
    await resident.press("summary:submit")
    assert "24小时内已提交2件举报" in resident.text() and "summary:submit" in resident.keys()
    async with harness.sessionmaker() as session:
        assert len(list((await session.execute(select(Case))).scalars())) == 2
    harness.context.city.limits.reports_per_day = 3
    await submit(resident)


async def test_a_new_case_is_announced_to_its_queues_staff_group_without_the_reporter(
        harness: DialogHarness) -> None:
    from handlers.notices import render
    from storage.models import OutboxMessage

    triage = harness.context.city.queue("triage")
    assert triage is not None
    triage.telegram_chat_id = -100555
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:kaifu")
    await resident.say("开福区某局")
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.press("evidence:done")
    await resident.press("identity:real")
    await resident.say("李四")
    await resident.say("13600001111")
    await submit(resident)
    async with harness.sessionmaker() as session:
        notices = list((await session.execute(select(OutboxMessage))).scalars())
    assert [(n.channel, n.recipient) for n in notices] == [("telegram", "-100555")]
    text = render(notices[0].payload, harness.context.texts, "https://qinglian.example.cn",
                  city=harness.context.city).text
    assert "QL-2026-000001" in text and "https://qinglian.example.cn/console/case/QL-2026-000001" in text
    assert "岳麓区政务服务中心3号窗口的工作人员" in text
    assert "李四" not in text and "13600001111" not in text


@pytest.fixture
def small_quotas(harness: DialogHarness) -> DialogHarness:
    """Quotas on draft evidence small enough to reach with the test's files (1,000-odd bytes each)."""
    limits = harness.context.city.limits.model_copy(update={
        "draft_evidence_bytes_per_conversation": 2_500, "draft_evidence_bytes_per_address": 4_000,
        "draft_evidence_bytes_total": 5_000})
    harness.context.city = harness.context.city.model_copy(update={"limits": limits})
    return harness


async def _to_evidence(resident: Resident) -> None:
    await resident.command("report")
    await resident.press("district:unsure")
    await resident.say("望城区某单位")
    await resident.press("when:week")
    await resident.say(DESCRIPTION)


async def test_draft_evidence_is_held_within_quotas_per_conversation_address_and_in_total(
        small_quotas: DialogHarness) -> None:
    photo = pdf_of_size(1_204)  # 1,204 bytes, as many when taken (an image is re-encoded to a size of its own)
    first = small_quotas.resident("first", client_ip="203.0.113.7")
    await _to_evidence(first)
    await first.upload(photo, kind="photo")
    await first.upload(photo, kind="photo")
    assert "第 2 个文件" in first.text()
    await first.upload(photo, kind="photo")  # 3,612 bytes in one draft > 2,500
    assert "这份举报的证据文件已达" in first.text() and "第5步" in first.text()
    second = small_quotas.resident("second", client_ip="203.0.113.7")  # same address
    await _to_evidence(second)
    await second.upload(photo, kind="photo")
    await second.upload(photo, kind="photo")  # 4,816 bytes from one address > 4,000
    assert "您所在网络上传的证据文件已达" in second.text()
    third = small_quotas.resident("third", client_ip="198.51.100.9")
    await _to_evidence(third)
    await third.upload(photo, kind="photo")
    await third.upload(photo, kind="photo")  # 6,020 bytes waiting in drafts in all > 5,000
    assert "暂时无法接收更多证据文件" in third.text()
    stored = sorted(path.stat().st_size for path in small_quotas.context.evidence_dir.rglob("*") if path.is_file())
    assert len(stored) == 4  # two of the first, one each of the others: nothing refused was written
    await first.press("evidence:done")  # a refused file loses nothing: the draft goes on
    assert "第6步" in first.text()


@pytest.mark.parametrize(("typed", "step"), [("②", "第2步"), ("３", "第2步"), ("⑳", "没有第20项"),
                                             ("٣", "请从列表中选择区县"), ("二", "第2步"), ("第三个", "第2步"),
                                             ("二十", "没有第20项")])
async def test_a_choice_typed_as_a_circled_or_full_width_number_is_read_as_that_number(
        harness: DialogHarness, typed: str, step: str) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.say(typed)  # a phone's Chinese keyboard offers ② and ３; there is no 20th district
    assert step in resident.text()


@pytest.mark.parametrize(("first", "expected"), [("我要举报", "第1步"), (" 查询进度 ", "查询码"),
                                                 ("使用说明", "/status"), ("举报", "第1步"), ("投诉！", "第1步"),
                                                 ("查询", "查询码")])
async def test_a_first_message_that_names_a_menu_option_is_that_option(harness: DialogHarness, first: str,
                                                                        expected: str) -> None:
    resident = harness.resident()  # has never seen the menu: what a resident types first is often just this
    await resident.say(first)
    assert expected in resident.text()
    other = harness.resident("r2")
    await other.say("你好")  # anything else is greeted with the menu, as before
    assert "menu:report" in other.keys() and "第1步" not in other.text()


async def test_a_first_message_that_describes_something_becomes_the_report_it_offers(harness: DialogHarness) -> None:
    resident = harness.resident()  # a WeChat resident's first message is often the whole complaint
    await resident.say(DESCRIPTION)
    assert "岳麓区政务服务中心3号窗口的工作人员" in resident.text() and "开始一份举报" in resident.text()
    assert resident.keys() == ["intake:report", "intake:menu"]
    await resident.press("intake:report")
    assert "已把您发来的内容记为事情经过" in resident.text() and "district:yuelu" in resident.keys()
    await where_and_when(resident)
    assert "第5步" in resident.text() and "第4步" not in resident.text()  # the description is not asked again
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    assert DESCRIPTION in resident.text()  # the summary shows it for checking
    await submit(resident)
    async with harness.sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
    assert (case.district, case.place, case.description) == ("yuelu", "岳麓区政务服务中心3号窗口", DESCRIPTION)


async def test_the_first_words_written_at_the_menu_set_the_language_unless_one_was_chosen(
        harness: DialogHarness) -> None:
    phone_in_english = harness.resident("r1", locale="en-US")  # a Changsha resident whose phone speaks English
    await phone_in_english.say(DESCRIPTION)
    assert phone_in_english.text().startswith("您用中文写的，接下来用中文回复您。")
    assert "开始一份举报" in phone_in_english.text()
    await phone_in_english.press("intake:report")
    assert "第1步" in phone_in_english.text()

    visitor = harness.resident("r2")  # the city's default is Chinese; a visitor writes English
    await visitor.say("Hello, I would like to report a clerk who asked me for money")
    assert "You wrote in English" in visitor.text() and "如需中文回复，请发送 /language" in visitor.text()

    chose = harness.resident("r3", locale="zh-CN")
    await chose.command("language")
    await chose.press("language:en")
    await chose.say(DESCRIPTION)  # a language chosen stays, whatever is written after
    assert "You wrote" in chose.text() and "接下来用中文" not in chose.text()

    with_command = harness.resident("r5", locale="en-US")  # "/report <the complaint>": written as much as alone
    await with_command.command("report", DESCRIPTION)
    assert with_command.text().startswith("您用中文写的，接下来用中文回复您。") and "第1步" in with_command.text()
    receipt_asked = harness.resident("r6", locale="en-US")  # a command's other arguments say nothing of a language
    await receipt_asked.command("status", "1234 5678 9012 3456")
    assert "接下来用中文" not in receipt_asked.text()

    copying = harness.resident("r4", locale="en-GB")  # a Chinese address copied into the English report
    await copying.command("report")
    await copying.press("district:yuelu")
    await copying.say("岳麓区政务服务中心3号窗口")
    assert "Step 3" in copying.text() and "接下来用中文" not in copying.text()


async def test_a_day_of_the_month_at_the_time_question_is_a_date_not_an_option(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:yuelu")
    await resident.say("岳麓区政务服务中心3号窗口")
    await resident.say("3号")  # the 3rd of the month; "3" alone is the third option, as on WeChat
    await resident.say(DESCRIPTION)
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    assert "时间：3号" in resident.text()


async def to_summary(resident: Resident) -> str:
    """From the place question of a report begun with its description to the summary, whose text it returns."""
    await resident.say("政务服务中心3号窗口")
    await resident.press("when:today")
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    return resident.text()


async def test_the_district_a_complaint_names_is_offered_and_a_yes_takes_it(harness: DialogHarness) -> None:
    resident = harness.resident()  # the complaint says 岳麓区: the resident need not look for it in the list
    await resident.say(DESCRIPTION)
    await resident.press("intake:report")
    assert "您的描述里提到了岳麓区" in resident.text() and "district:yuelu" in resident.keys()
    await resident.say("是")
    assert "第2步" in resident.text()
    assert "区县：岳麓区" in await to_summary(resident)

    elsewhere = harness.resident("r2")  # it is only offered: the resident may have come from another district
    await elsewhere.say(DESCRIPTION)
    await elsewhere.press("intake:report")
    await elsewhere.press("district:tianxin")
    assert "区县：天心区" in await to_summary(elsewhere)

    english = harness.resident("r3", locale="en-GB")
    await english.say("The clerk at window 3 of the Yuelu District service centre ignored me for an hour and "
                      "told me to come back next week without giving any reason at all.")
    await english.press("intake:report")
    assert "Your description mentions Yuelu" in english.text()
    await english.say("yes")
    assert "District: Yuelu" in await to_summary(english)

    plain = harness.resident("r4")  # a report begun from the menu has no description yet: nothing offered
    await plain.command("report")
    assert "提到了" not in plain.text()
    await plain.say("是")  # and a "yes" there names no district: explained, asked again
    assert "请从列表中选择区县" in plain.text()


async def test_a_text_offered_as_a_report_can_be_declined_replaced_or_taken_later(harness: DialogHarness) -> None:
    declining = harness.resident("r1")
    await declining.say(DESCRIPTION)
    await declining.say("谢谢")  # neither option, nor a description: explained, offered again ("好的" says yes)
    assert "请点击下方选项之一" in declining.text() and "intake:report" in declining.keys()
    await declining.press("intake:menu")
    assert "menu:report" in declining.keys()
    await declining.command("report")  # the declined text is gone: a new report starts with its first question
    assert "第1步" in declining.text() and "已把您发来的内容" not in declining.text()

    replacing = harness.resident("r2")
    await replacing.say("村委会主任把低保名额给了自己的亲戚，村民意见很大。")
    await replacing.say(DESCRIPTION)  # a second message of the complaint joins the first
    assert "岳麓区政务服务中心3号窗口" in replacing.text() and replacing.keys() == ["intake:report", "intake:menu"]
    assert "低保名额" in replacing.text()
    await replacing.say("我要举报")  # the menu's words typed to the offer take it
    assert "已把您发来的内容记为事情经过" in replacing.text()
    await replacing.command("cancel")
    await replacing.command("cancel")  # sent again to the question whether to discard: meant
    assert "草稿已删除" in replacing.text()

    later = harness.resident("r3")
    await later.say(DESCRIPTION)
    await later.say("查询进度")  # another menu option: the text waits in the draft
    assert "查询码" in later.text()
    await later.command("report")
    assert "已把您发来的内容记为事情经过" in later.text() and "district:yuelu" in later.keys()


LONG_COMPLAINT = DESCRIPTION * 75 + "另外，窗口负责人说这种情况他管不了，让我去找区里。" * 20
"""A complaint of 3,500 characters: 75 times `DESCRIPTION` (3,000), then 20 sentences more."""


async def test_a_first_message_over_the_limit_is_kept_as_far_as_it_fits(harness: DialogHarness) -> None:
    """A resident whose first message is 3,500 characters was told it was too long and to send the details "in the
    next step" (there was none yet), and nothing was kept. What fits is kept as the description, cut after a
    sentence, the resident told how much and where the rest begins, and offered the report."""
    resident = harness.resident()
    await resident.say(LONG_COMPLAINT)
    assert resident.last[0].text == (
        "您发来的内容共3500字，超过了“经过”3000字的上限。已把前3000字记为事情经过；从“另外，窗口负责人说这种情……”"
        "开始的其余500字没有保存，您的聊天记录里还有。提交前核对时可以修改“经过”，提交后也可以凭查询码用“补充材料”发送其余内容。")
    assert "下一步" not in resident.text() and resident.keys() == ["intake:report", "intake:menu"]
    await submit_what_was_offered(resident)
    async with harness.sessionmaker() as session:
        assert (await session.execute(select(Case.description))).scalar_one() == DESCRIPTION * 75


async def test_a_long_story_sent_with_report_or_to_the_district_question_is_kept(harness: DialogHarness) -> None:
    """"/report <3,500 characters>", or the complaint pasted right after choosing to report: refused whole (the
    district question even took a story naming a district for its answer, and dropped the rest). What fits is kept
    as the description, and the district asked."""
    with_command = harness.resident("r1", locale="en")  # a phone in English; the complaint in Chinese is followed
    await with_command.command("report", LONG_COMPLAINT)
    assert "您发来的内容共3500字，超过了“经过”3000字的上限。已把前3000字" in with_command.text()
    assert "下一步" not in with_command.text() and "第1步" in with_command.text()
    pasted_after = harness.resident("r2")
    await pasted_after.say("你好")
    await pasted_after.press("menu:report")
    await pasted_after.say(LONG_COMPLAINT)
    assert "共3500字" in pasted_after.text() and "已记为“事情经过”" in pasted_after.text()
    assert pasted_after.text().endswith("第1步：问题发生在长沙市哪个区县（市）？\n"
                                        "您的描述里提到了岳麓区：如果事情就发生在那里，回复“是”或选择岳麓区。")
    for resident in (with_command, pasted_after):
        await resident.press("district:yuelu")
        await resident.say("岳麓区政务服务中心")
        await resident.press("when:today")
        await resident.press("evidence:done")
        await resident.press("identity:anonymous")
        assert "3000" in resident.text() and DESCRIPTION[:20] in resident.text()  # the summary: the kept part
        await submit(resident)
    async with harness.sessionmaker() as session:
        assert list((await session.execute(select(Case.description))).scalars()) == [DESCRIPTION * 75] * 2


async def test_a_description_too_long_edited_from_the_summary_keeps_what_fits(harness: DialogHarness) -> None:
    """Edited from the summary, an over-long description was refused with advice for "the next step" — which is the
    summary again, not the evidence. What fits is kept, and the summary shows it."""
    resident = harness.resident()
    await fill_to_summary(resident)
    await resident.press("summary:edit")
    await resident.press("edit:description")
    await resident.say(LONG_COMPLAINT)
    assert "共3500字" in resident.text() and "下一步" not in resident.text()
    assert "请核对举报内容" in resident.text()
    await submit(resident)
    async with harness.sessionmaker() as session:
        assert (await session.execute(select(Case.description))).scalar_one() == DESCRIPTION * 75


async def test_a_description_too_long_at_step_4_keeps_what_fits_as_a_first_message_does(
        harness: DialogHarness) -> None:
    """At step 4 a description over the limit was refused whole and the resident had to shorten it and send it again,
    while the same text sent as the first message was kept as far as it fits. It is kept the same way here, in
    Chinese and in English: the resident told how much was kept and where the rest begins, and taken on to the
    evidence; the summary and the case have the part kept."""
    for resident, step_5 in ((harness.resident("r1"), "第5步"), (harness.resident("r2", locale="en"), "Step 5")):
        await resident.command("report")
        await where_and_when(resident)
        await resident.say(LONG_COMPLAINT)
        said = [message.text for message in resident.last]
        assert len(said) == 2 and said[1].startswith(step_5), said
        assert said[0] in (
            "您发来的内容共3500字，超过了“经过”3000字的上限。已把前3000字记为事情经过；从“另外，窗口负责人说这种情……”"
            "开始的其余500字没有保存，您的聊天记录里还有。提交前核对时可以修改“经过”，提交后也可以凭查询码用“补充材料”发送其余内容。",
            "What you sent is 3500 characters long, over the 3000-character limit for what happened. The first 3000 "
            "characters are kept as what happened; the other 500, from “另外，窗口负责人说这种情…” on, were not kept "
            "(they are still in your chat). You can change the description when you check the summary, or send the "
            "rest after submitting, as additional information with your receipt code.")
        await resident.press("evidence:done")
        await resident.press("identity:anonymous")
        await submit(resident)
    async with harness.sessionmaker() as session:
        assert list((await session.execute(select(Case.description))).scalars()) == [DESCRIPTION * 75] * 2


async def test_a_number_beyond_the_options_is_explained_with_their_range(harness: DialogHarness) -> None:
    """"9" to the menu of 4 showed the menu again without a word; "12" to the 10 districts said to pick one."""
    resident = harness.resident()
    await resident.say("你好")
    await resident.say("9")
    assert resident.text().startswith("没有第9项。请点击下方选项之一，或回复1到4之间的数字。\n请选择您要办理的事项")
    await resident.say("1")
    await resident.say("12")
    assert resident.text().startswith("没有第12项。") and "1到10之间" in resident.text() and "第1步" in resident.text()
    english = harness.resident("r2", locale="en")
    await english.say("hello")
    await english.say("5")
    assert english.text().startswith("There is no option 5. Please tap one of the options below, or reply with a "
                                     "number from 1 to 4.")
    assert "menu:report" in english.keys()


def pasted(length: int) -> str:
    """A long complaint a resident pastes: `DESCRIPTION` over and over, `length` characters."""
    return (DESCRIPTION * (length // len(DESCRIPTION) + 1))[:length]


async def test_a_complaint_pasted_as_the_first_message_and_cut_in_two_is_offered_whole(
        harness: DialogHarness) -> None:
    """A resident opens the chat by pasting their complaint; their app sends it in two messages. They are offered
    once to report it, and the report's description is the whole text, joined where the app cut it."""
    resident = harness.resident()
    whole = pasted(2600)
    said = await resident.paste(whole[:2100], whole[2100:])
    assert len(said) == 1 and said[0].startswith(f"您发来的内容：\n“{whole[:60]}……”")
    assert resident.keys() == ["intake:report", "intake:menu"]
    await submit_what_was_offered(resident)
    async with harness.sessionmaker() as session:
        assert (await session.execute(select(Case.description))).scalar_one() == whole


async def test_a_first_message_pasted_over_the_limit_and_cut_in_two_is_judged_whole(harness: DialogHarness) -> None:
    """The first message is a text of 5000 characters, cut by the app into 4096 and 904: the resident is told once
    what of the whole was kept (what fits), and offered the report with it."""
    resident = harness.resident()
    whole = pasted(5000)
    said = await resident.paste(whole[:4096], whole[4096:])
    assert len(said) == 2 and said[0].startswith("您发来的内容共5000字，超过了“经过”3000字的上限。已把前3000字")
    assert said[1].startswith("您发来的内容：") and resident.keys() == ["intake:report", "intake:menu"]


async def test_the_rest_of_a_pasted_text_handled_after_the_window_is_still_joined_to_it(
        harness: DialogHarness) -> None:
    """The rest of a text cut in two comes to the dialog after the gather window (the service was slow), when the
    answer to the first part alone has gone out. The platform's own signals — the next message of the chat, sent
    within the window of the first by the platform's clock — still make it the rest: the whole is answered."""
    resident = harness.resident()
    whole = pasted(5000)
    sent = harness.clock()
    first = await resident.in_one_go({"text": whole[:4096], "may_be_cut": True, "sequence": 41, "sent_at": sent})
    assert first[0].startswith("您发来的内容共4096字")
    said = await resident.in_one_go({"text": whole[4096:], "sequence": 42, "sent_at": sent + timedelta(seconds=1)})
    assert said[0].startswith("您发来的内容共5000字") and said[1].startswith("您发来的内容：") and len(said) == 2


async def test_a_text_sent_well_after_a_long_one_is_a_message_of_its_own(harness: DialogHarness) -> None:
    """The same two texts, the second sent after the window of the first (`GATHER`), or not the chat's next message:
    it is not the rest of the first, and is answered on its own."""
    for user_ref, sequence, seconds in (("r1", 42, GATHER.total_seconds() + 1), ("r2", 44, 1)):
        resident = harness.resident(user_ref)
        whole = pasted(5000)
        sent = harness.clock()
        await resident.in_one_go({"text": whole[:4096], "may_be_cut": True, "sequence": 41, "sent_at": sent})
        said = await resident.in_one_go({"text": whole[4096:], "sequence": sequence,
                                         "sent_at": sent + timedelta(seconds=seconds)})
        # not the rest of the first: added to what was kept of it (as a further message of a complaint), not joined
        assert "共5000字" not in said[0] and "共3905字" in said[0]
        assert resident.keys() == ["intake:report", "intake:menu"]


async def test_a_photo_sent_first_is_kept_as_the_evidence_of_the_report_it_offers(harness: DialogHarness) -> None:
    resident = harness.resident()  # a photo of the empty counter, before any word
    await resident.upload(JPEG, kind="photo", name=None)
    assert "已收到您发来的 1 个文件" in resident.text() and resident.keys() == ["intake:report", "intake:menu"]
    await resident.say(DESCRIPTION)  # then what happened: both are kept
    assert "岳麓区政务服务中心3号窗口的工作人员" in resident.text() and "已收到 1/5 个文件" in resident.text()
    await resident.press("intake:report")
    await where_and_when(resident)
    assert "第5步" in resident.text() and "已收到 1/5 个文件" in resident.text()
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    assert "证据：1 个文件" in resident.text()
    await submit(resident)
    async with harness.sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
        files = (await session.execute(select(Attachment).where(Attachment.case_id == case.id))).scalars().all()
    assert case.description == DESCRIPTION and len(files) == 1


async def test_files_offered_as_a_report_and_declined_are_deleted(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.upload(PDF, media_type="application/pdf", name="receipt.pdf")
    await resident.upload(b"MZ not a picture", media_type="image/jpeg", name="x.jpg")  # refused, and why
    assert "不是图片" in resident.text() and "已收到您发来的 1 个文件" in resident.text()
    assert resident.keys() == ["intake:report", "intake:menu"]
    await resident.press("intake:menu")
    assert "menu:report" in resident.keys()
    async with harness.sessionmaker() as session:
        left = (await session.execute(select(Attachment))).scalars().all()
    assert left == [] and not any(path.is_file() for path in harness.context.evidence_dir.rglob("*"))
    other = harness.resident("r2")
    await other.upload(b"MZ not a picture", media_type="image/jpeg", name="x.jpg")  # refused where no offer was
    assert "不是图片" in other.text() and "menu:report" in other.keys() and "intake:report" not in other.keys()


async def test_a_report_command_that_carries_the_description_begins_with_it(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report", DESCRIPTION)  # "/report 岳麓区…", as Telegram users type it
    assert "已把您发来的内容记为事情经过" in resident.text() and "district:yuelu" in resident.keys()
    assert "开始一份举报吗" not in resident.text()
    await where_and_when(resident)
    assert "第5步" in resident.text()
    short = harness.resident("r2")
    await short.command("report", "窗口")  # too short to be one: the report starts with its first question
    assert "开始举报" in short.text() and "district:yuelu" in short.keys()
    again = harness.resident("r3")
    await again.say("村委会主任把低保名额给了自己的亲戚，村民意见很大。")  # offered, not taken yet
    await again.command("report", DESCRIPTION)  # what comes with the command replaces it
    await where_and_when(again)
    await again.press("evidence:done")
    await again.press("identity:anonymous")
    assert DESCRIPTION in again.text() and "低保" not in again.text()


async def test_a_location_shared_at_the_place_question_answers_it(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.send_location("岳麓区政务服务中心 长沙市岳麓区金星中路")  # a WeChat location, or a Telegram venue
    assert "无法识别这条消息" in resident.text() and "menu:report" in resident.keys()  # not where none is asked
    await resident.command("report")
    await resident.press("district:yuelu")
    await resident.send_location("28.22820, 112.93880")  # a bare pin: its coordinates
    assert "第3步" in resident.text()
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    assert "地点/单位：28.22820, 112.93880" in resident.text()


@pytest.mark.parametrize(("typed", "district"), [("岳麓", "岳麓区"), ("在岳麓区那边", "岳麓区"), ("长沙县", "长沙县"),
                                                 ("yuelu district", "岳麓区"), ("浏阳", "浏阳市"),
                                                 ("长沙", None), ("芙蓉区和天心区交界处", None), ("火星", None)])
async def test_a_district_typed_by_its_name_or_short_name_is_taken(harness: DialogHarness, typed: str,
                                                                 district: str | None) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.say(typed)
    if district is None:  # none, or several: explained and asked again
        assert "请从列表中选择区县" in resident.text() and "district:yuelu" in resident.keys()
        return
    assert "第2步" in resident.text()
    await resident.say("某某单位办事窗口")
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    assert f"区县：{district}" in resident.text()


@pytest.mark.parametrize("typed", ["跳过", "完成", "done", "Skip"])
async def test_the_evidence_step_takes_the_words_of_its_buttons_typed(harness: DialogHarness, typed: str) -> None:
    resident = harness.resident()
    await resident.command("report")
    await where_and_when(resident)
    await resident.say(DESCRIPTION)
    await resident.say(typed)  # the question says to "点“完成/跳过”"; a WeChat resident types it
    assert "identity:anonymous" in resident.keys()


@pytest.mark.parametrize(("locale", "typed"), [("zh-hans", "没有"), ("zh-hans", "没有证据"), ("zh-hans", "无"),
                                               ("zh-hans", "没有了。"), ("en", "No"), ("en", "none"),
                                               ("en", "nothing")])
async def test_the_evidence_step_takes_no_for_an_answer(harness: DialogHarness, locale: str, typed: str) -> None:
    """Step 5 asks "如有照片或文件证据，可直接发送" (if you have any, send it): a resident typing "没有" (no) was told
    to send an image or PDF, again and again, whatever they typed after it."""
    resident = harness.resident(locale=locale)
    await resident.command("report")
    await where_and_when(resident)
    await resident.say(DESCRIPTION)
    await resident.say(typed)
    assert "identity:anonymous" in resident.keys(), resident.text()


async def test_a_complaint_typed_at_the_menu_while_a_draft_waits_is_not_dropped_without_a_word(
        harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:yuelu")
    await resident.say("岳麓区政务服务中心3号窗口")
    await resident.command("menu")
    await resident.say("人社局的工作人员上班时间打游戏，群众排了两个小时的队也没人管")
    assert "没有保存" in resident.text() and resident.keys() == ["resume:continue", "resume:restart"]
    await resident.press("resume:continue")
    assert "第3步" in resident.text()  # the draft goes on where it was


async def test_short_words_and_other_scripts_residents_type_are_understood(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.say("嶽麓區")  # traditional characters, as a Hong Kong or Taiwan keyboard types them
    assert "第2步" in resident.text()
    await resident.command("start")
    await resident.say("继续")  # "继续填写" in a word
    assert "第2步" in resident.text()
    photo = harness.resident("r2")
    await photo.upload(JPEG, kind="photo")  # a photo first: the offer is of the files, not of "this text"
    labels = [choice.label for choice in photo.last[-1].choices]
    assert labels[0] == "📝 用这些文件举报"


async def test_a_resident_without_a_mainland_mobile_can_turn_back_to_an_anonymous_report(
        harness: DialogHarness) -> None:
    resident = harness.resident()
    await fill_to_summary(resident)
    await resident.press("summary:edit")
    await resident.press("edit:identity")
    await resident.press("identity:real")
    await resident.say("Alex Chen")
    await resident.say("+1 415 555 0100")  # refused: and the way out is offered, the draft kept
    assert "手机号格式不正确" in resident.text() and "identity:anonymous" in resident.keys()
    await resident.press("identity:anonymous")
    assert "summary:submit" in resident.keys() and "匿名" in resident.text()


@pytest.mark.parametrize(("locale", "typed"), [("en", "I want to report"), ("en", "I'd like to file a report."),
                                               ("en", "report a problem"), ("zh-hans", "我想举报"),
                                               ("zh-hans", "我要举报！")])
async def test_asking_to_report_in_words_starts_the_report(harness: DialogHarness, locale: str, typed: str) -> None:
    """Found in English: "I want to report" at the menu was taken for the complaint itself ("You wrote: “I want to
    report” — shall we file a report with this as what happened?"), and what the resident then typed as answers
    was joined to it."""
    resident = harness.resident(locale=locale)
    await resident.say("hello" if locale == "en" else "你好")
    await resident.say(typed)
    assert "district:yuelu" in resident.keys(), resident.text()
