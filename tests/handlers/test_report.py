"""The report wizard through `dialog.handle`: what each answer becomes in the summary and in the filed case,
editing, the long description, cancelling with files, routing by what the classifier said, and the daily
limits per resident and per network."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from handlers import dialog
from handlers.routing import RouteDecision
from handlers.routing import route as decide
from handlers.types import Inbound, Outbound
from nlp.types import Tag
from storage.models import Attachment, Case, TraceEvent
from tests.console.test_problems import PLANT_THIRD
from tests.handlers.conftest import JPEG, DialogHarness, Resident
from tests.handlers.test_similar import PLANT, PLANT_AGAIN

DESCRIPTION = "村委会把低保名额分给了村干部的亲属，真正困难的人家没有评上。"


async def _to_when(resident: Resident, district: str = "district:kaifu") -> None:
    await resident.command("report")
    await resident.press(district)
    await resident.say("开福区某村村委会")


async def _to_identity(resident: Resident, description: str = DESCRIPTION) -> None:
    """Steps 1 to 5 (happened today, no evidence): at the question whether to report anonymously."""
    await _to_when(resident)
    await resident.press("when:today")
    await resident.say(description)
    await resident.press("evidence:done")


async def _after_when(resident: Resident, description: str = DESCRIPTION) -> None:
    await resident.say(description)
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")


async def _filed(harness: DialogHarness) -> list[Case]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(select(Case).order_by(Case.id))).scalars())


async def test_when_the_resident_picks_yesterday_the_date_is_kept_with_the_word(harness: DialogHarness) -> None:
    resident = harness.resident()
    await _to_when(resident)
    await resident.press("when:yesterday")
    await _after_when(resident)
    assert "时间：2026-11-23 (昨天)" in resident.text()  # the harness's clock: 24 November 2026, Beijing time

    await resident.press("summary:submit")
    assert [case.occurred for case in await _filed(harness)] == ["2026-11-23 (昨天)"]


async def test_a_typed_time_of_day_keeps_the_words_with_the_date_they_name(harness: DialogHarness) -> None:
    """Typed, "昨天下午" was stored as the bare words: read weeks later, the case no longer said which day it was."""
    resident = harness.resident()
    await _to_when(resident)
    await resident.say("昨天下午")
    await _after_when(resident)
    assert "时间：昨天下午 (2026-11-23)\n" in resident.text()  # the harness's clock: 24 November 2026, Beijing time

    await resident.press("summary:submit")
    assert [case.occurred for case in await _filed(harness)] == ["昨天下午 (2026-11-23)"]


async def test_a_vague_time_is_kept_as_the_words_offered(harness: DialogHarness) -> None:
    resident = harness.resident()
    await _to_when(resident)
    await resident.press("when:month")
    await _after_when(resident)
    await resident.press("summary:submit")
    assert [case.occurred for case in await _filed(harness)] == ["最近一个月内"]


async def test_a_long_description_is_shortened_in_the_summary_and_filed_whole(harness: DialogHarness) -> None:
    description = "村委会" + "低保名额分配不公，" * 100  # 903 characters
    resident = harness.resident()
    await _to_when(resident)
    await resident.press("when:week")
    await _after_when(resident, description)

    assert f"经过：{description[:800]}……（共{len(description)}字，已完整保存）\n" in resident.text()
    await resident.press("summary:submit")
    assert [case.description for case in await _filed(harness)] == [description.strip()]


async def test_editing_the_district_and_the_time_returns_to_the_summary(harness: DialogHarness) -> None:
    resident = harness.resident()
    await _to_when(resident)
    await resident.press("when:week")
    await _after_when(resident)
    await resident.press("summary:edit")
    await resident.press("edit:district")
    assert "第1步" in resident.text()
    await resident.press("district:liuyang")
    assert "请核对举报内容" in resident.text() and "区县：浏阳市" in resident.text()
    await resident.press("summary:edit")
    await resident.press("edit:when")
    await resident.say("2026-11-02")
    assert "时间：2026-11-02" in resident.text()
    await resident.press("summary:edit")
    await resident.press("edit:back")
    assert resident.keys() == ["summary:submit", "summary:edit", "summary:cancel"]

    await resident.press("summary:submit")
    assert [(case.district, case.occurred) for case in await _filed(harness)] == [("liuyang", "2026-11-02")]


async def test_the_summary_in_english_names_the_district_in_english(harness: DialogHarness) -> None:
    resident = harness.resident(locale="en-US")
    await _to_when(resident)
    await resident.press("when:today")
    await _after_when(resident)
    assert "District: Kaifu\n" in resident.text() and "开福区\n" not in resident.text()
    await resident.press("summary:submit")
    assert re.search(r"QL-2026-000001", resident.text())
    assert [case.locale for case in await _filed(harness)] == ["en"]


async def test_cancelling_at_the_summary_deletes_the_draft_and_its_files(harness: DialogHarness) -> None:
    resident = harness.resident()
    await _to_when(resident)
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.upload(JPEG, kind="photo")
    await resident.upload(JPEG, kind="photo")
    stored = [path for path in harness.context.evidence_dir.rglob("*") if path.is_file()]
    assert len(stored) == 2
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    await resident.press("summary:cancel")
    await resident.press("cancel:discard")

    assert "已取消本次举报" in resident.text() and "menu:report" in resident.keys()
    assert [path for path in harness.context.evidence_dir.rglob("*") if path.is_file()] == []
    await resident.command("report")
    assert "第1步" in resident.text()  # nothing to resume


async def test_a_file_remembered_after_the_evidence_step_is_taken_as_evidence_and_the_question_asked_again(
        harness: DialogHarness) -> None:
    """A photo sent at the real-name questions or at the summary was refused with "no file is needed yet" — wrong,
    the evidence step was over — and not kept. It is evidence of the report as any other: taken while there is
    room, the count said, and the question asked again (the summary with the new count)."""
    resident = harness.resident()
    await _to_identity(resident)
    await resident.press("identity:real")
    await resident.upload(JPEG, kind="photo")  # at the name question
    assert "已收到第 1 个文件" in resident.text() and resident.text().endswith("请输入您的姓名：")
    await resident.say("张三")
    await resident.say("13812345678")
    assert "证据：1 个文件" in resident.text()
    for _ in range(4):
        await resident.upload(JPEG, kind="photo")  # at the summary: kept, the summary shown with the new count
    assert "已收到第 5 个文件" in resident.text() and "证据：5 个文件" in resident.text()
    await resident.upload(JPEG, kind="photo")  # one more than the limit: said, the summary asked again
    assert "最多只能上传5个文件，这个文件没有收下。" in resident.text() and "证据：5 个文件" in resident.text()
    await resident.press("summary:submit")
    (case,) = await _filed(harness)
    async with harness.sessionmaker() as session:
        attached = (await session.execute(select(Attachment.id).where(Attachment.case_id == case.id))).scalars()
        assert len(list(attached)) == 5


async def test_clearing_the_evidence_deletes_the_files_and_the_resident_may_send_others(
        harness: DialogHarness) -> None:
    resident = harness.resident()
    await _to_when(resident)
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.upload(JPEG, kind="photo")
    assert resident.keys() == ["evidence:done", "evidence:clear"]
    await resident.press("evidence:clear")
    assert [path for path in harness.context.evidence_dir.rglob("*") if path.is_file()] == []
    assert resident.keys() == ["evidence:done"]
    await resident.upload(JPEG, kind="photo")
    assert "已收到第 1 个文件" in resident.text()


async def test_the_case_goes_where_the_classifiers_label_and_the_district_send_it(harness: DialogHarness) -> None:
    heard: list[tuple[str, str | None]] = []

    async def village_affairs(text: str, district: str | None) -> RouteDecision:
        heard.append((text, district))
        return decide(harness.context.city, Tag("village_affairs", 0.93), district, harness.clock())

    classified = DialogHarness(harness.sessionmaker, replace(harness.context, route=village_affairs), harness.clock)
    resident = classified.resident()
    await _to_when(resident)
    await resident.press("when:today")
    await _after_when(resident)
    await resident.press("summary:submit")

    assert heard == [(DESCRIPTION, "kaifu")]
    cases = await _filed(harness)
    assert [(c.queue, c.label, c.label_confidence) for c in cases] == [("district_kaifu", "village_affairs", 0.93)]
    async with harness.sessionmaker() as session:
        routed = (await session.execute(select(TraceEvent.detail).where(TraceEvent.kind == "routed"))).scalar_one()
    assert routed == {"queue": "district_kaifu", "reason": "district", "label": "village_affairs"}


async def _step(harness: DialogHarness, user_ref: str, *, shared_address: bool = False, **fields: Any) -> str:
    """One message through a channel that knows the sender's address (a platform's server when shared)."""
    inbound = Inbound("test", user_ref, "zh", client_ip="198.51.100.23", shared_address=shared_address, **fields)
    async with harness.sessionmaker.begin() as session:
        replies: list[Outbound] = (await dialog.handle(session, inbound, harness.context)).messages
    return "\n".join(reply.text for reply in replies)


async def _file_from_the_network(harness: DialogHarness, user_ref: str, *, shared_address: bool = False) -> str:
    for fields in ({"command": "report"}, {"choice": "district:kaifu"}, {"text": "开福区某村村委会"},
                   {"choice": "when:today"}, {"text": DESCRIPTION}, {"choice": "evidence:done"},
                   {"choice": "identity:anonymous"}, {"choice": "summary:submit"}):
        answer = await _step(harness, user_ref, shared_address=shared_address, **fields)
    return answer


async def test_reports_from_one_network_are_limited_and_the_wait_is_told_in_hours(harness: DialogHarness) -> None:
    harness.context.city.limits.reports_per_ip_per_day = 2
    assert "举报已提交" in await _file_from_the_network(harness, "neighbour-1")
    harness.clock.advance(hours=3)
    assert "举报已提交" in await _file_from_the_network(harness, "neighbour-2")
    harness.clock.advance(hours=1)

    refused = await _file_from_the_network(harness, "neighbour-3")

    # the first report leaves the 24-hour window in 20 h 1 min: told in whole hours, rounded up
    assert "24小时内从您所在的网络提交的举报已达上限" in refused and "请21小时后再提交" in refused
    assert len(await _filed(harness)) == 2
    harness.clock.advance(hours=20, minutes=1)  # the first report is a day old: one more may come
    assert "举报已提交" in await _step(harness, "neighbour-3", choice="summary:submit")


async def test_a_platform_server_relaying_many_residents_is_not_one_network(harness: DialogHarness) -> None:
    harness.context.city.limits.reports_per_ip_per_day = 1
    answers = [await _file_from_the_network(harness, f"wechat-user-{n}", shared_address=True) for n in range(3)]
    assert ["举报已提交" in answer for answer in answers] == [True, True, True]


async def test_reports_filed_before_the_last_day_do_not_count_against_the_resident(harness: DialogHarness) -> None:
    harness.context.city.limits.reports_per_day = 1
    resident = harness.resident()
    for _ in range(2):
        await _to_when(resident)
        await resident.press("when:today")
        await _after_when(resident)
        await resident.press("summary:submit")
        assert "举报已提交" in resident.text()
        harness.clock.advance(hours=24, minutes=1)
    assert len(await _filed(harness)) == 2


async def _report_the_plant(harness: DialogHarness, user_ref: str, description: str) -> str:
    resident = harness.resident(user_ref)
    await resident.command("report")
    await resident.press("district:yuelu")
    await resident.say("岳麓区丽发新城小区")
    await resident.press("when:today")
    await _after_when(resident, description)
    await resident.press("summary:submit")
    return resident.text()


async def test_a_residents_own_earlier_report_is_not_told_as_other_residents(harness: DialogHarness) -> None:
    """Seen as a security tester: a resident's second report of one problem was told that other residents had
    reported it too, when the only similar report was their own."""
    assert "类似问题" not in await _report_the_plant(harness, "r1", PLANT)
    harness.clock.advance(hours=24, minutes=1)  # the next day: not held by the daily report limit
    again = await _report_the_plant(harness, "r1", PLANT_AGAIN)
    assert "举报已提交" in again and "类似问题" not in again
    assert "其他群众反映了类似问题" in await _report_the_plant(harness, "r2", PLANT_THIRD)


async def test_the_resident_is_told_of_similar_reports_only_when_the_city_says_so(harness: DialogHarness) -> None:
    assert "类似问题" not in await _report_the_plant(harness, "r1", PLANT)  # nothing similar yet
    told = await _report_the_plant(harness, "r2", PLANT_AGAIN)
    assert "举报已提交" in told and "其他群众反映了类似问题" in told
    assert "搅拌站每天夜里" not in told  # never another resident's words

    similarity = harness.context.city.similarity.model_copy(update={"tell_resident": False})
    harness.context.city = harness.context.city.model_copy(update={"similarity": similarity})
    quiet = await _report_the_plant(harness, "r3", PLANT_THIRD)
    assert "举报已提交" in quiet and "类似问题" not in quiet
    assert len(await _filed(harness)) == 3


STORY = ("我上周二去开福区某村村委会办低保申请，村会计说材料不全让我回去等通知，"
         "过了两个月也没人联系我，打电话也没人接，后来才听说名额给了他亲戚。")


async def test_the_whole_story_sent_as_the_place_is_kept_as_what_happened_and_the_place_asked_again(
        harness: DialogHarness) -> None:
    """Residents often answer the first open question with everything at once: the story is kept as the
    description (not as the place, nor refused), the place is asked again, and the description is not."""
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:kaifu")
    await resident.say(STORY)
    assert "已记为“事情经过”" in resident.text()
    assert "第2步" in resident.text()  # the place, again
    await resident.say("开福区某村村委会")
    await resident.press("when:month")
    assert "第5步" in resident.text()  # evidence next: the story was not asked for again
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    assert "地点/单位：开福区某村村委会" in resident.text()
    await resident.press("summary:submit")
    [case] = await _filed(harness)
    assert (case.place, case.occurred, case.description) == ("开福区某村村委会", "最近一个月内", STORY)


async def test_a_story_too_long_for_the_time_question_is_kept_rather_than_refused(harness: DialogHarness) -> None:
    resident = harness.resident()
    await _to_when(resident)
    long_story = STORY * 2  # over the time answer's 100 characters
    await resident.say(long_story)
    assert "已记为“事情经过”" in resident.text() and "第3步" in resident.text()
    await resident.press("when:week")
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    await resident.press("summary:submit")
    [case] = await _filed(harness)
    assert (case.occurred, case.description) == ("最近一周内", long_story)


async def test_a_long_place_taken_for_a_story_is_given_back_with_one_press(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:kaifu")
    place = "开福区四方坪街道某某社区居委会一楼大厅，就是在社区卫生服务站旁边、靠近公交站的那个办事窗口"
    await resident.say(place)
    assert "story:answer" in resident.keys()
    await resident.press("story:answer")
    assert "第3步" in resident.text()  # the time: the text answered the place
    await resident.press("when:today")
    assert "第4步" in resident.text()  # and the description is asked for after all
    await _after_when(resident)
    await resident.press("summary:submit")
    [case] = await _filed(harness)
    assert (case.place, case.description) == (place, DESCRIPTION)


async def test_a_short_place_or_time_is_an_answer_not_a_story(harness: DialogHarness) -> None:
    resident = harness.resident()
    await _to_when(resident)
    await resident.say("上个月中旬，具体哪天记不清了")
    assert "第4步" in resident.text() and "事情经过”" not in resident.text()


async def test_in_english_a_place_is_a_place_and_a_story_a_story(harness: DialogHarness) -> None:
    """English takes more letters than Chinese takes characters for the same place: the rule weighs words."""
    resident = harness.resident(locale="en")
    await resident.command("report")
    await resident.press("district:kaifu")
    await resident.say("Room 203, second floor, Kaifu District Tax Service Hall, next to the bus stop on Furong Road")
    assert "Step 3" in resident.text()
    story = ("The clerk at window 7 refused my application although every document on the list was there, "
             "and told me to come back next month.")
    await resident.say(story)
    assert "account of what happened" in resident.text() and "Step 3" in resident.text()
    await resident.press("when:week")
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    await resident.press("summary:submit")
    [case] = await _filed(harness)
    assert (case.occurred, case.description) == ("Within the last week", story)


async def test_a_story_pasted_as_the_place_and_cut_in_two_by_the_app_is_kept_whole(harness: DialogHarness) -> None:
    """Telegram cuts a long paste into messages; at the place question the whole is the story, never its tail."""
    resident = harness.resident()
    await resident.command("report")
    await resident.press("district:kaifu")
    whole = (STORY * 40)[:2600]
    said = await resident.paste(whole[:2100], whole[2100:])
    assert said[0] == "您发来的这段话已记为“事情经过”，提交前可以核对和修改。" and "第2步" in said[-1], said
    await resident.say("开福区某村村委会")
    await resident.press("when:month")
    await resident.press("evidence:done")
    await resident.press("identity:anonymous")
    await resident.press("summary:submit")
    [case] = await _filed(harness)
    assert (case.place, case.description) == ("开福区某村村委会", whole)


async def test_a_change_typed_at_the_summary_goes_to_the_item_named(harness: DialogHarness) -> None:
    """At the summary a resident typing "修改" (change), or "修改地点" (change the place), was told to press a button
    and shown the summary again, and so was "地点" typed to the question of which item to change: only the buttons'
    whole labels ("修改某一项", "地点/单位") were understood. The same in English."""
    chinese = harness.resident("r1")
    await _to_when(chinese)
    await chinese.press("when:today")
    await _after_when(chinese)
    await chinese.say("修改")
    assert chinese.text().startswith("要修改哪一项？") and "edit:place" in chinese.keys()
    await chinese.say("地点")
    assert chinese.text().startswith("第2步")
    await chinese.say("开福区某村村委会办公室")
    assert "地点/单位：开福区某村村委会办公室" in chinese.text()
    await chinese.say("修改时间")
    assert chinese.text().startswith("第3步")
    await chinese.say("昨天")
    await chinese.say("改成实名")
    assert chinese.text().startswith("第6步") and "identity:real" in chinese.keys()
    await chinese.press("identity:anonymous")
    await chinese.say("返回")  # nothing to change after all, from the question of which item
    assert "请核对举报内容" in chinese.text()
    await chinese.press("summary:submit")

    english = harness.resident("r2", locale="en")
    await _to_when(english)
    await english.press("when:today")
    await _after_when(english)
    await english.say("change the place")
    assert english.text().startswith("Step 2")
    await english.say("开福区某村村委会办公室")
    await english.say("edit")
    assert english.text().startswith("Which item do you want to change?")
    await english.say("description")
    assert english.text().startswith("Step 4")
    await english.say(DESCRIPTION + "他们还威胁举报的人。")
    await english.press("summary:submit")
    cases = await _filed(harness)
    assert [case.place for case in cases] == ["开福区某村村委会办公室"] * 2
    assert cases[1].description == DESCRIPTION + "他们还威胁举报的人。"


async def test_anonymous_or_real_name_typed_in_words_is_understood(harness: DialogHarness) -> None:
    """Found in English: "real name" typed at step 6 (whose buttons read "Anonymous" and "With my name") was answered
    "please tap one of the options", and so was everything typed after it. A resident who types "匿名" (anonymously)
    when asked for their name reports anonymously, as the button under the question would."""
    english = harness.resident("r1", locale="en")
    await _to_identity(english)
    await english.say("not anonymous")
    assert english.text().startswith("Your name:"), english.text()
    await english.say("Li Wei")
    await english.say("+86 139-1234-5678")
    assert "Li Wei" in english.text() and "139****5678" in english.text()
    await english.press("summary:submit")

    chinese = harness.resident("r2")
    await _to_identity(chinese)
    await chinese.say("实名举报")
    assert chinese.text().startswith("请输入您的姓名"), chinese.text()
    await chinese.say("还是匿名吧")
    assert "身份：匿名" in chinese.text(), chinese.text()
    await chinese.press("summary:submit")
    assert [case.anonymous for case in await _filed(harness)] == [False, True]


async def test_not_knowing_the_district_typed_is_taken_as_not_sure(harness: DialogHarness) -> None:
    """Step 1 says to choose "不确定" (not sure) when unsure: a resident typing "不知道" (I don't know) or "不清楚" was
    told the same again, and again, with no way on but the button."""
    for name, locale, typed in (("r1", "zh-hans", "不知道"), ("r2", "zh-hans", "不清楚是哪个区"),
                                ("r3", "en", "I don't know"), ("r4", "zh-HK", "我不知道是哪個區"),
                                ("r5", "zh-hans", "我也不清楚")):
        resident = harness.resident(name, locale=locale)
        await resident.command("report")
        await resident.say(typed)
        assert resident.text().startswith(("第2步", "Step 2")), resident.text()


async def test_a_resident_writing_traditional_characters_answers_by_typing_as_in_simplified(
        harness: DialogHarness) -> None:
    """A Hong Kong visitor types her answers in traditional characters: "跳過" at the evidence was refused ("请发送
    图片或PDF文件") again and again, while "嶽麓區" was understood; so were "實名" and "確認"-style words. Every word
    typed for a button reads as its simplified form."""
    resident = harness.resident("hk", "zh-HK")
    await resident.command("report")
    await resident.say("開福區")
    await resident.say("開福區稅務局")
    await resident.say("12月3日下午")
    await resident.say("職員索取好處費，不給就不辦理營業執照。")
    await resident.say("跳過")
    assert resident.text().startswith("第6步")
    await resident.say("實名")
    assert resident.text().startswith("请输入您的姓名")
    await resident.say("匿名")
    assert "请核对举报内容" in resident.text() and "时间：12月3日下午" in resident.text()
    await resident.say("修改時間")
    assert resident.text().startswith("第3步")
    await resident.say("上週三")
    await resident.say("提交")
    assert "举报已提交" in resident.text()


async def test_cancel_typed_in_words_during_the_report_asks_before_discarding_not_taken_as_the_answer(
        harness: DialogHarness) -> None:
    """"取消" typed at the place question became the place ("地点/单位：取消"), "cancel" at the time was "not a
    time": the words of the cancel button, typed, ask whether to discard the draft, as /cancel does."""
    resident = harness.resident()
    await _to_when(resident)
    await resident.say("取消")
    assert resident.keys() == ["cancel:discard", "cancel:keep"]
    await resident.say("继续")
    assert "第3步" in resident.text()
    english = harness.resident("en", "en")
    await english.command("report")
    await english.press("district:kaifu")
    await english.say("Cancel")
    assert english.keys() == ["cancel:discard", "cancel:keep"]
    await english.say("yes")
    assert "cancelled" in english.text()


@pytest.mark.parametrize("typed", ["确认", "確認", "确认提交", "没问题", "提交", "好的", "可以"])
async def test_confirming_in_words_at_the_summary_submits(harness: DialogHarness, typed: str) -> None:
    """"确认无误请点‘提交’", the summary says, and "确认" (or "確認", "没问题") typed to it was "请点击下方选项之一"."""
    resident = harness.resident("r1", "zh-HK")
    await _to_identity(resident)
    await resident.press("identity:anonymous")
    await resident.say(typed)
    assert "举报已提交" in resident.text()


async def test_confirming_in_english_words_at_the_summary_submits(harness: DialogHarness) -> None:
    resident = harness.resident("en", "en")
    await _to_identity(resident, "The clerk at window 3 refused to process my application unless I paid him 200 yuan.")
    await resident.press("identity:anonymous")
    await resident.say("ok")
    assert "Your report was submitted" in resident.text()


@pytest.mark.parametrize(("locale", "complaint", "yes"), [
    ("zh-HK", "窗口職員態度惡劣，拖延辦理，在開福區政務中心等了一個上午。", "好"),
    ("zh-CN", "窗口工作人员态度恶劣，拖延办理，在开福区政务中心等了一个上午。", "可以"),
    ("zh-CN", "窗口工作人员态度恶劣，拖延办理，在开福区政务中心等了一个上午。", "好的"),
    ("en", "The clerk at window 3 refused to process my application unless I paid him 200 yuan.", "yes"),
])
async def test_yes_typed_to_the_offer_of_a_report_begins_it(harness: DialogHarness, locale: str, complaint: str,
                                                            yes: str) -> None:
    """"要以这段文字作为事情经过，开始一份举报吗？" — "好" (or "yes") typed to it was "请点击下方选项之一"."""
    resident = harness.resident("r1", locale)
    await resident.say(complaint)
    assert resident.keys() == ["intake:report", "intake:menu"]
    await resident.say(yes)
    assert "district:kaifu" in resident.keys()


async def test_no_evidence_said_in_a_sentence_goes_on_to_the_identity(harness: DialogHarness) -> None:
    """"I don't have any" and "冇" at the evidence step were "please send a photo or a PDF", over and over."""
    for user_ref, locale, typed in (("en", "en", "I don't have any"), ("hk", "zh-HK", "冇")):
        resident = harness.resident(user_ref, locale)
        await _to_when(resident)
        await resident.press("when:today")
        await resident.say(DESCRIPTION)
        await resident.say(typed)
        assert resident.keys() == ["identity:anonymous", "identity:real"]
