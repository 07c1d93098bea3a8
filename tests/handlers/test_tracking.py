"""Following a case with its receipt code, through `dialog.handle`: the case and its trace as the resident
reads them, adding information, rating, and the limits on guessing codes per resident and per network."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from handlers import dialog
from handlers.types import Attachment, Inbound
from storage import actions, loop, staff_actions
from storage.db import Database
from storage.models import Attachment as StoredFile
from storage.models import Case, CaseStatus, StaffRole, StaffUser, TraceEvent
from storage.receipts import format_receipt_code
from tests.conftest import make_test_keyring
from tests.console.conftest import make_context
from tests.console.routes.office import Office
from tests.factories import create_staff, file_case
from tests.handlers.conftest import JPEG, DialogHarness, Resident

WRONG_CODE = "0000 0000 0000 0001"


async def _case(harness: DialogHarness, **fields: Any) -> tuple[int, str]:
    """A case filed at the harness's clock in the triage queue; returns its id and receipt code."""
    async with harness.sessionmaker.begin() as session:
        case, code = await file_case(session, secret_key=harness.context.secret_key, queue="triage",
                                     now=harness.clock(), **fields)
    return case.id, code


async def _set_status(harness: DialogHarness, case_id: int, status: CaseStatus) -> None:
    async with harness.sessionmaker.begin() as session:
        case = await actions.get_case(session, case_id)
        assert case is not None
        await actions.change_status(session, case, status, actor="staff:1")


async def _answered(harness: DialogHarness, case_id: int) -> None:
    """Accepted, then answered by staff: the case asks its reporter whether it was solved."""
    await _set_status(harness, case_id, CaseStatus.ACCEPTED)
    await _set_status(harness, case_id, CaseStatus.ANSWERED)


async def test_the_case_and_its_trace_are_shown_in_city_time_and_the_residents_language(
        harness: DialogHarness) -> None:
    _, code = await _case(harness)
    resident = harness.resident(locale="en")

    await resident.command("status", format_receipt_code(code))

    assert resident.last[0].text == (
        "Case number: QL-2026-000001\nStatus: Routed\nTrace:\n"
        "2026-11-24 14:00  Report received\n2026-11-24 14:00  Routed to Manual triage")  # 06:00 UTC in Changsha
    assert resident.keys() == ["case:follow_up", "case:menu"]


async def test_a_code_typed_without_the_command_opens_the_case(harness: DialogHarness) -> None:
    _, code = await _case(harness)
    resident = harness.resident()
    await resident.say(f"{code[:4]}-{code[4:8]}-{code[8:12]}-{code[12:]}")
    assert "案件编号：QL-2026-000001\n当前状态：已分派" in resident.text()
    await resident.press("case:menu")
    assert "menu:report" in resident.keys()
    pasted = harness.resident("r2")
    await pasted.say(f"我的查询码是：{format_receipt_code(code)}，请帮我查一下")  # not a report to offer
    assert "案件编号：QL-2026-000001\n当前状态：已分派" in pasted.text()
    await pasted.command("status")
    await pasted.say(f"查询码 {code}")
    assert "案件编号：QL-2026-000001" in pasted.text()


async def test_the_menu_of_an_open_case_accepts_only_its_options(harness: DialogHarness) -> None:
    _, code = await _case(harness)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.say("我想催一下")
    assert resident.last[0].text == "请点击下方选项之一，或回复选项前的数字。"
    assert resident.keys() == ["case:follow_up", "case:menu"]
    await resident.say("1")  # the first option, typed
    assert "follow_up:done" in resident.keys()


async def test_information_sent_about_an_open_case_without_pressing_add_is_added(harness: DialogHarness) -> None:
    case_id, code = await _case(harness)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.say("已经三个星期了还没有人联系我，窗口那位工作人员今天还在玩手机。")  # no button pressed first
    assert "补充材料已收到" in resident.text() and resident.keys() == ["follow_up:done"]
    await resident.upload(JPEG)  # and a photo of it
    assert "补充材料已收到" in resident.text()
    async with harness.sessionmaker() as session:
        kinds = list((await session.execute(select(TraceEvent.kind).where(
            TraceEvent.case_id == case_id, TraceEvent.kind == "follow_up"))).scalars())
    assert len(kinds) == 2
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    closed = harness.resident("r2")
    await closed.command("status", code)
    await closed.say("已经三个星期了还没有人联系我，窗口那位工作人员今天还在玩手机。")  # a closed case takes none
    assert "请点击下方选项之一" in closed.text()


async def _adding_information(harness: DialogHarness) -> tuple[int, Resident]:
    """A case filed, and its reporter at the step that adds information to it (its id, the reporter)."""
    case_id, code = await _case(harness)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.press("case:follow_up")
    return case_id, resident


async def test_added_information_must_be_text_or_a_file_within_the_limit(harness: DialogHarness) -> None:
    case_id, resident = await _adding_information(harness)
    await resident.say("   ")
    assert resident.last[0].text == "请发送文字、图片或PDF。"
    # over the limit of one addition: added in parts, none of it dropped (it was refused: "请精简后重新发送，或把
    # 详细材料作为PDF在下一步上传", a next step there is not when adding information)
    await resident.say("补" * 3001)
    assert resident.last[0].text == ("补充材料已收到。内容较长（3001字），已分成2条记入办理轨迹。"
                                     "还可以继续发送，或点“完成”。")
    await resident.say("  涉事人员工号0327  ")
    await resident.upload(JPEG, kind="photo")
    assert resident.last[0].text.startswith("补充材料已收到")
    await resident.press("follow_up:done")
    assert resident.text().count("举报人补充了材料") == 4

    async with harness.sessionmaker() as session:
        bodies = list((await session.execute(select(TraceEvent.body).where(
            TraceEvent.case_id == case_id, TraceEvent.kind == "follow_up").order_by(TraceEvent.id))).scalars())
    assert bodies == ["补" * 3000, "补", "涉事人员工号0327", None]


async def _follow_up_bodies(harness: DialogHarness, case_id: int) -> list[str | None]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(select(TraceEvent.body).where(
            TraceEvent.case_id == case_id, TraceEvent.kind == "follow_up").order_by(TraceEvent.id))).scalars())


async def test_information_pasted_and_cut_in_two_by_the_app_is_added_whole_once(harness: DialogHarness) -> None:
    """Asked for more information, the resident pastes a long text that their app sends in two messages: it is
    one follow-up, the whole text, and the resident is told once that it was added."""
    case_id, resident = await _adding_information(harness)
    whole = ("补充说明：今天上午我又去了一次三号窗口，工作人员仍然在玩手机，排队的群众有二十多人。" * 60)[:2600]
    said = await resident.paste(whole[:2100], whole[2100:])
    assert said == ["补充材料已收到，已记入办理轨迹。还可以继续发送，或点“完成”。"]
    assert await _follow_up_bodies(harness, case_id) == [whole]


NOTICE_ROW = re.compile(r'<tr class="(unread|)">\s*<td class="nowrap">[^<]*</td>\s*'
                        r'<td class="nowrap"><a[^>]*>([^<]*)</a>')


async def _assignees_notices(harness: DialogHarness, tmp_path: Path, case_id: int,
                             resident_adds: Callable[[], Awaitable[object]]) -> list[tuple[str, str]]:
    """The case assigned to a reviewer; what the resident adds; the rows of the reviewer's notices page."""
    url = harness.sessionmaker.kw["bind"].url.render_as_string(hide_password=False)
    database = Database.connect(url, make_test_keyring())
    try:
        async with AsyncExitStack() as stack:
            office = Office(make_context(database, tmp_path), stack)
            assignee = await office.browser("rev", StaffRole.REVIEWER, ["triage"])
            async with harness.sessionmaker.begin() as session:
                case = await actions.get_case(session, case_id)
                user = await session.scalar(select(StaffUser).where(StaffUser.username == "rev"))
                assert case is not None and user is not None
                await staff_actions.assign_case(session, case, user, actor=user)
            await resident_adds()
            page = (await assignee.get("/console/notices")).text
    finally:
        await database.engine.dispose()
        await database.read_engine.dispose()
    return NOTICE_ROW.findall(page)


async def test_information_pasted_cut_in_two_tells_the_assignee_once(harness: DialogHarness, tmp_path: Path) -> None:
    """The first part of a pasted text was added on its own, then taken back and added again whole with the rest:
    the colleague the case is assigned to had two unread notices in the console for one piece of information."""
    case_id, resident = await _adding_information(harness)
    whole = ("补充说明：今天上午我又去了一次三号窗口，工作人员仍然在玩手机，排队的群众有二十多人。" * 60)[:2600]

    async def adds() -> None:
        await resident.paste(whole[:2100], whole[2100:])
        await resident.say("另外，涉事人员的工号是0327。")  # a second piece of information: a second notice

    assert await _assignees_notices(harness, tmp_path, case_id, adds) == [("unread", "QL-2026-000001")] * 2
    assert await _follow_up_bodies(harness, case_id) == [whole, "另外，涉事人员的工号是0327。"]


async def test_an_album_added_to_a_case_tells_the_assignee_once(harness: DialogHarness, tmp_path: Path) -> None:
    """Three photos sent as one album were three notices to the assignee; every photo is still kept."""
    case_id, resident = await _adding_information(harness)

    async def adds() -> None:
        said = await resident.in_one_go(*({"attachment": Attachment("photo", "image/jpeg", len(JPEG), None, fetch),
                                           "group": "album-1"} for _ in range(3)))
        assert said == ["补充材料已收到，已记入办理轨迹。还可以继续发送，或点“完成”。"]

    async def fetch() -> bytes:
        return JPEG

    assert await _assignees_notices(harness, tmp_path, case_id, adds) == [("unread", "QL-2026-000001")]
    assert await _follow_up_bodies(harness, case_id) == [None, None, None]


async def test_information_pasted_over_the_limit_and_cut_in_two_is_added_whole_in_parts(
        harness: DialogHarness) -> None:
    """The pasted information is 5000 characters, sent by the app as 4096 and 904: it was refused whole ("请精简到
    3000字以内后重新发送"). It is added whole, in parts that fit, cut after a sentence; the first part as the app
    cut it is not added on its own, and the resident is told once."""
    case_id, resident = await _adding_information(harness)
    whole = ("补充说明：今天上午我又去了一次三号窗口，工作人员仍然在玩手机，排队的群众有二十多人。" * 120)[:5000]
    said = await resident.paste(whole[:4096], whole[4096:])
    assert said == ["补充材料已收到。内容较长（5000字），已分成2条记入办理轨迹。还可以继续发送，或点“完成”。"]
    bodies = await _follow_up_bodies(harness, case_id)
    assert len(bodies) == 2 and "".join(body or "" for body in bodies) == whole
    assert all(len(body or "") <= 3000 for body in bodies) and (bodies[0] or "").endswith("。")


async def test_a_photo_with_words_over_the_limit_under_it_is_added_with_all_the_words_in_parts(
        harness: DialogHarness) -> None:
    """A photo sent with a 4,000-character account under it was refused, photo and words, with "请精简后重新发送，
    或把详细材料作为PDF在下一步上传" (adding information has no next step). As text sent alone is, the words are
    added whole in parts that fit, the photo with the first, and the resident told so once."""
    case_id, resident = await _adding_information(harness)
    words = ("补充说明：今天上午我又去了一次三号窗口，工作人员仍然在玩手机，排队的群众有二十多人。" * 100)[:4000]
    await resident.upload(JPEG, kind="photo", caption=words)
    assert resident.text() == ("补充材料已收到。内容较长（4000字），已分成2条记入办理轨迹。"
                               "还可以继续发送，或点“完成”。")
    bodies = await _follow_up_bodies(harness, case_id)
    assert len(bodies) == 2 and "".join(body or "" for body in bodies) == words
    async with harness.sessionmaker() as session:
        files = list((await session.execute(select(StoredFile.trace_event_id).where(
            StoredFile.case_id == case_id))).scalars())
        first = await session.scalar(select(TraceEvent.id).where(
            TraceEvent.case_id == case_id, TraceEvent.kind == "follow_up").order_by(TraceEvent.id))
    assert files == [first]  # the photo kept, with the first part of the words


async def test_information_sent_after_the_case_was_closed_is_refused(harness: DialogHarness) -> None:
    case_id, resident = await _adding_information(harness)
    await _set_status(harness, case_id, CaseStatus.CLOSED)

    await resident.say("还有一份材料")

    assert resident.last[0].text == "案件已办结，不能再补充材料。"
    assert resident.keys() == ["case:rate", "case:menu"]


async def test_a_closed_case_is_rated_with_stars_or_a_typed_number_once(harness: DialogHarness) -> None:
    first_id, first_code = await _case(harness)
    second_id, second_code = await _case(harness, reporter_ref="43")
    third_id, third_code = await _case(harness, reporter_ref="44")
    for case_id in (first_id, second_id, third_id):
        await _set_status(harness, case_id, CaseStatus.CLOSED)
    resident = harness.resident()

    await resident.command("status", first_code)
    await resident.press("case:rate")
    assert resident.keys() == ["rate:5", "rate:4", "rate:3", "rate:2", "rate:1", "rate:unsolved", "rate:later"]
    await resident.say("★★★")
    assert resident.keys() == ["comment:skip"]  # an optional comment comes next
    await resident.press("comment:skip")
    assert resident.last[0].text == "感谢您的评价（3星）！"
    await resident.command("status", second_code)
    await resident.press("case:rate")
    await resident.say("5")  # a digit is a rating here, not the fifth option
    await resident.say("办得很快，谢谢。")
    assert resident.last[0].text == "感谢您的评价（5星）！"
    await resident.command("status", first_code)
    assert resident.keys() == ["case:menu"]
    await resident.command("status", third_code)
    await resident.press("case:rate")
    await resident.say("④")  # as a phone's Chinese keyboard types it
    await resident.press("comment:skip")
    assert resident.last[0].text == "感谢您的评价（4星）！"

    async with harness.sessionmaker() as session:
        ratings = list((await session.execute(select(Case.rating).order_by(Case.id))).scalars())
    assert ratings == [3, 5, 4]


async def test_a_comment_over_the_limit_is_explained_and_asked_again_not_cut(harness: DialogHarness) -> None:
    """A rating's comment was cut to its first 1,000 characters without a word; now the resident is told the
    length and the limit, the rating waits, and the comment they send then is kept as written."""
    case_id, code = await _case(harness)
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.press("case:rate")
    await resident.press("rate:4")
    await resident.say("办事效率有提高，" * 150)
    assert resident.text() == "内容过长（1200字），最多1000字。\n还有什么想说的吗？可以写几句意见，或点“跳过”。"
    assert resident.keys() == ["comment:skip"]
    async with harness.sessionmaker() as session:
        assert (await session.get_one(Case, case_id)).rating is None
    await resident.say("办事效率有提高，窗口服务也更耐心了。")
    assert resident.last[0].text == "感谢您的评价（4星）！"
    async with harness.sessionmaker() as session:
        assert (await session.get_one(Case, case_id)).rating == 4
        comments = list((await session.execute(select(TraceEvent.body).where(
            TraceEvent.case_id == case_id, TraceEvent.kind == "rated"))).scalars())
    assert comments == ["办事效率有提高，窗口服务也更耐心了。"]


async def test_a_comment_pasted_and_cut_in_two_by_the_app_is_refused_whole_not_kept_in_part(
        harness: DialogHarness) -> None:
    """Telegram sends a 5,000-character paste as 4,096 + 904: the comment is refused once, for its whole length,
    and the rating waits; the tail alone is never taken as the comment."""
    case_id, code = await _case(harness)
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.press("case:rate")
    await resident.press("rate:4")
    whole = ("答复及时，态度也好，" * 500)[:5000]
    said = await resident.paste(whole[:4096], whole[4096:])
    assert said == ["内容过长（5000字），最多1000字。", "还有什么想说的吗？可以写几句意见，或点“跳过”。"], said
    async with harness.sessionmaker() as session:
        assert (await session.get_one(Case, case_id)).rating is None
    await resident.press("comment:skip")
    async with harness.sessionmaker() as session:
        assert (await session.get_one(Case, case_id)).rating == 4, resident.text()


@pytest.mark.parametrize(("typed", "stars"), [("5星", 5), ("五颗星", 5), ("４分", 4), ("3 stars", 3), ("二星", 2),
                                              ("6星", None), ("五星好评，谢谢", None)])
async def test_a_rating_typed_in_words_is_that_many_stars(harness: DialogHarness, typed: str,
                                                         stars: int | None) -> None:
    case_id, code = await _case(harness)
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.press("case:rate")
    await resident.say(typed)
    if stars is None:  # explained and asked again
        assert "rate:5" in resident.keys()
        return
    await resident.press("comment:skip")
    # three stars and more are thanked as such; one or two reopen the case and tell the supervisor
    assert resident.last[0].text == (f"感谢您的评价（{stars}星）！" if stars >= 3 else "感谢反馈，上级已收到通知。")


async def test_a_file_where_the_code_is_expected_is_answered_with_the_codes_format(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.command("status")
    await resident.upload(JPEG, kind="photo")
    assert resident.last[0].text == "查询码应为16位数字，请检查后重新输入；回复“菜单”返回主菜单。"


@pytest.mark.parametrize(("typed", "locale"), [("菜单", "zh"), ("返回", "zh"), ("menu", "en"), ("back", "en")])
async def test_the_menu_asked_for_at_the_code_question_is_shown(harness: DialogHarness, typed: str,
                                                                locale: str) -> None:
    """查询进度 tapped, then "菜单": the code question had no way back but /cancel — "查询码应为16位数字" each time."""
    resident = harness.resident(locale=locale)
    await resident.command("status")
    await resident.say(typed)
    assert resident.keys()[:2] == ["menu:report", "menu:status"] and "16" not in resident.text()


async def test_wrong_codes_from_one_network_are_throttled_across_residents(harness: DialogHarness) -> None:
    harness.context.city.limits.status_wrong_codes_per_ip = 3
    _, code = await _case(harness)
    for number in range(3):
        guesser = harness.resident(f"guesser-{number}", client_ip="203.0.113.50")
        await guesser.command("status", WRONG_CODE)
        assert "没有找到" in guesser.text()
    same_network = harness.resident("guesser-4", client_ip="203.0.113.50")
    elsewhere = harness.resident("owner", client_ip="198.51.100.4")

    await same_network.command("status", code)
    await elsewhere.command("status", code)

    assert same_network.last[0].text == "从您所在的网络输入错误查询码的次数过多，请11分钟后再试。"
    assert "当前状态：已分派" in elsewhere.text()
    harness.clock.advance(minutes=11)
    await same_network.command("status", code)
    assert "当前状态：已分派" in same_network.text()


async def test_one_residents_wrong_codes_leave_her_neighbours_valid_code_working(harness: DialogHarness) -> None:
    """The security review's case: one resident behind an office or carrier NAT keeps guessing. She is throttled
    herself; the address counts only the guesses she was allowed, so a neighbour still opens her own case."""
    _, code = await _case(harness)
    guesser = harness.resident("guesser", client_ip="203.0.113.60")
    answers = []
    for _ in range(25):
        await guesser.command("status", WRONG_CODE)
        answers.append(guesser.last[0].text)
    neighbour = harness.resident("neighbour", client_ip="203.0.113.60")

    await neighbour.command("status", code)

    allowed = harness.context.city.limits.status_wrong_codes
    assert answers[:allowed] == ["没有找到与该查询码对应的案件，请核对后重试。"] * allowed
    assert answers[allowed:] == ["查询码错误次数过多，请11分钟后再试。"] * (25 - allowed)
    assert "当前状态：已分派" in neighbour.text()


async def test_neighbours_who_each_mistype_a_few_codes_do_not_lock_their_network(harness: DialogHarness) -> None:
    """Twenty wrong codes from one address (four residents, each up to her own limit) lock no one else out."""
    _, code = await _case(harness)
    allowed = harness.context.city.limits.status_wrong_codes
    for number in range(20 // allowed):
        neighbour = harness.resident(f"neighbour-{number}", client_ip="203.0.113.61")
        for _ in range(allowed):
            await neighbour.command("status", WRONG_CODE)
            assert neighbour.last[0].text == "没有找到与该查询码对应的案件，请核对后重试。"
    owner = harness.resident("owner", client_ip="203.0.113.61")
    newcomer = harness.resident("newcomer", client_ip="203.0.113.61", locale="en")

    await owner.command("status", code)
    await newcomer.command("status", WRONG_CODE)

    assert "当前状态：已分派" in owner.text()
    assert newcomer.last[0].text == "No case matches that code. Please check it and try again."


async def test_residents_rotated_on_one_address_reach_its_ceiling_and_then_everyone_there_waits(
        harness: DialogHarness) -> None:
    """An attacker who starts a new conversation (a new cookie) whenever one is throttled gets no more guesses
    from one address than its ceiling; then even a valid code from that address waits, with the network's text."""
    limits = harness.context.city.limits
    _, code = await _case(harness)
    assert limits.status_wrong_codes_per_ip >= 10 * limits.status_wrong_codes  # the default ceiling
    guesses = 0
    for number in range(limits.status_wrong_codes_per_ip // limits.status_wrong_codes):
        rotated = harness.resident(f"rotated-{number}", client_ip="203.0.113.62")
        for _ in range(limits.status_wrong_codes):
            await rotated.command("status", WRONG_CODE)
            assert rotated.last[0].text == "没有找到与该查询码对应的案件，请核对后重试。"
            guesses += 1
    fresh = harness.resident("fresh", client_ip="203.0.113.62")
    owner_there = harness.resident("owner-there", client_ip="203.0.113.62", locale="en")
    owner_elsewhere = harness.resident("owner-elsewhere", client_ip="198.51.100.62")

    await fresh.command("status", WRONG_CODE)
    await owner_there.command("status", code)
    await owner_elsewhere.command("status", code)

    assert guesses == limits.status_wrong_codes_per_ip
    assert fresh.last[0].text == "从您所在的网络输入错误查询码的次数过多，请11分钟后再试。"
    assert owner_there.last[0].text == "Too many wrong codes from your network. Please try again in 11 minutes."
    assert "当前状态：已分派" in owner_elsewhere.text()


async def test_a_stopped_reporter_still_opens_the_case_she_filed_and_no_other(harness: DialogHarness) -> None:
    """A stopped resident's code opens a case only if she filed it from this very conversation: that tells her
    nothing she did not know. Any other code, a valid one of someone else's case included, is refused alike."""
    _, own_code = await _case(harness, channel="test", reporter_ref="reporter")
    _, other_code = await _case(harness, channel="test", reporter_ref="someone-else")
    reporter = harness.resident("reporter")
    for _ in range(harness.context.city.limits.status_wrong_codes):
        await reporter.command("status", WRONG_CODE)

    await reporter.command("status", other_code)
    refused = reporter.last[0].text
    await reporter.command("status", own_code)

    assert refused == "查询码错误次数过多，请11分钟后再试。"
    assert "案件编号：QL-2026-000001" in reporter.text()


async def test_a_stopped_resident_cannot_tell_a_valid_code_from_a_wrong_one_by_how_long_the_refusal_takes(
        harness: DialogHarness) -> None:
    """What she sends while stopped is not counted, so if a refusal of someone else's valid code cost the service
    more than one of a wrong code (reading that case and its trace), its timing would test codes without limit.
    Both refusals ask the database the very same statements: nothing of another's case is read."""
    _, other_code = await _case(harness, channel="test", reporter_ref="someone-else")
    guesser = harness.resident("guesser")
    for _ in range(harness.context.city.limits.status_wrong_codes):
        await guesser.command("status", WRONG_CODE)
    engine = harness.sessionmaker.kw["bind"].sync_engine
    statements: list[str] = []

    def asked(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    answers: dict[str, tuple[str, list[str]]] = {}
    event.listen(engine, "before_cursor_execute", asked)
    try:
        for name, code in (("valid", other_code), ("wrong", "0000 0000 0000 0002")):
            statements.clear()
            await guesser.command("status", code)
            answers[name] = (guesser.last[0].text, list(statements))
    finally:
        event.remove(engine, "before_cursor_execute", asked)

    assert answers["valid"][0] == answers["wrong"][0] == "查询码错误次数过多，请11分钟后再试。"
    assert answers["valid"][1] == answers["wrong"][1]


async def test_a_reporter_opens_the_case_she_filed_while_her_network_waits(harness: DialogHarness) -> None:
    harness.context.city.limits.status_wrong_codes_per_ip = 3
    _, code = await _case(harness, channel="test", reporter_ref="reporter")
    for number in range(3):  # her network reaches its ceiling
        await harness.resident(f"guesser-{number}", client_ip="198.51.100.63").command("status", WRONG_CODE)
    reporter = harness.resident("reporter", client_ip="198.51.100.63")
    stranger = harness.resident("stranger", client_ip="198.51.100.63")

    await reporter.command("status", code)
    await stranger.command("status", code)

    assert "案件编号：QL-2026-000001" in reporter.text()
    assert stranger.last[0].text == "从您所在的网络输入错误查询码的次数过多，请11分钟后再试。"


async def _relayed(harness: DialogHarness, user_ref: str, code: str) -> str:
    """A /status through a platform whose servers relay every resident's messages from one address."""
    inbound = Inbound("wechat", user_ref, "zh", command="status", command_arg=code, client_ip="101.226.103.7",
                      shared_address=True)
    async with harness.sessionmaker.begin() as session:
        step = await dialog.handle(session, inbound, harness.context)
    return step.messages[0].text


async def test_a_platform_servers_address_is_counted_apart_under_its_own_limit(harness: DialogHarness) -> None:
    limits = harness.context.city.limits
    limits.status_wrong_codes_per_ip, limits.status_wrong_codes_per_platform_address = 1, 3
    _, code = await _case(harness)
    answers = [await _relayed(harness, f"openid-{number}", WRONG_CODE) for number in range(3)]
    assert answers == ["没有找到与该查询码对应的案件，请核对后重试。"] * 3  # over the per-address limit of 1

    refused = await _relayed(harness, "openid-9", code)
    resident_on_that_address = harness.resident("web-visitor", client_ip="101.226.103.7")
    await resident_on_that_address.command("status", code)

    assert refused == "从您所在的网络输入错误查询码的次数过多，请11分钟后再试。"
    assert "当前状态：已分派" in resident_on_that_address.text()


async def test_one_wechat_user_who_keeps_guessing_leaves_others_on_the_platforms_address_alone(
        harness: DialogHarness) -> None:
    """WeChat relays every resident from a few server addresses: one openid's guessing throttles that openid."""
    _, code = await _case(harness)
    answers = [await _relayed(harness, "openid-guesser", WRONG_CODE) for _ in range(25)]
    allowed = harness.context.city.limits.status_wrong_codes

    owner = await _relayed(harness, "openid-owner", code)

    assert answers[:allowed] == ["没有找到与该查询码对应的案件，请核对后重试。"] * allowed
    assert answers[allowed:] == ["查询码错误次数过多，请11分钟后再试。"] * (25 - allowed)
    assert "当前状态：已分派" in owner


async def test_one_telegram_user_who_keeps_guessing_leaves_other_users_alone(harness: DialogHarness) -> None:
    """Telegram gives no address: each user id is counted on its own."""
    _, code = await _case(harness)

    async def status(user_ref: str, typed: str) -> str:
        inbound = Inbound("telegram", user_ref, "zh", command="status", command_arg=typed)
        async with harness.sessionmaker.begin() as session:
            return (await dialog.handle(session, inbound, harness.context)).messages[0].text

    answers = [await status("1001", WRONG_CODE) for _ in range(25)]
    allowed = harness.context.city.limits.status_wrong_codes

    assert answers[allowed:] == ["查询码错误次数过多，请11分钟后再试。"] * (25 - allowed)
    assert "当前状态：已分派" in await status("1002", code)


async def test_a_receipt_code_sent_at_an_open_case_opens_that_case_and_is_never_kept_as_information(
        harness: DialogHarness) -> None:
    """A code is a credential: typed (or pasted) while another case is open, it opens the case it belongs to,
    and it never becomes "supplementary material" that staff of another queue would read."""
    first_id, first_code = await _case(harness)
    second_id, second_code = await _case(harness, reporter_ref="43")
    resident = harness.resident()
    await resident.command("status", first_code)
    await resident.say(format_receipt_code(second_code))
    assert "案件编号：QL-2026-000002" in resident.text()
    await resident.press("case:follow_up")  # adding information to the second case, then the first's code
    await resident.say(f"查询码 {format_receipt_code(first_code)}")
    assert "案件编号：QL-2026-000001" in resident.text()
    async with harness.sessionmaker() as session:
        follow_ups = list((await session.execute(select(TraceEvent.id).where(
            TraceEvent.case_id.in_([first_id, second_id]), TraceEvent.kind == "follow_up"))).scalars())
    assert follow_ups == []


async def _asked_to_rate(harness: DialogHarness, user_ref: str = "r1") -> tuple[Resident, int]:
    """A resident whose case was closed and who was asked to rate it, as the console asks (their conversation
    waits for the rating)."""
    resident = harness.resident(user_ref)
    await resident.say("你好")
    case_id, _ = await _case(harness, channel="test", reporter_ref=user_ref)
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    async with harness.sessionmaker.begin() as session:
        case = await actions.get_case(session, case_id)
        assert case is not None
        await loop.offer_rating(session, case, labels=RATING_LABELS)
    return resident, case_id


RATING_LABELS = ["★★★★★", "★★★★", "★★★", "★★", "★", "问题没有解决", "以后再评，返回菜单"]


async def test_a_resident_asked_to_rate_can_still_use_the_menu_report_and_look_up_cases(
        harness: DialogHarness) -> None:
    """The rating question waits for days: in the meantime the resident must not be held in it. Whatever is
    not a rating — the menu's buttons or names, a new complaint, a receipt code — is what it would be anywhere
    else, and the question itself offers a way out."""
    resident, _ = await _asked_to_rate(harness)
    await resident.say("你好")  # not a rating: explained, asked again, with the way out
    assert resident.last[0].text == "请选择1到5星：5星表示非常满意，1星表示很不满意。"
    assert resident.keys()[-1] == "rate:later"
    await resident.press("menu:report")  # a button of the menu shown before the question
    assert "第1步" in resident.text()

    resident, _ = await _asked_to_rate(harness, "r2")
    await resident.say("我要举报")
    assert "第1步" in resident.text()

    resident, _ = await _asked_to_rate(harness, "r3")
    complaint = "另外还有一件事：区城管执法队员收了摊贩的钱就不管占道经营了"
    await resident.say(complaint)  # a new complaint is kept and offered as a report, not refused
    assert complaint in resident.text() and "intake:report" in resident.keys()

    resident, _ = await _asked_to_rate(harness, "r4")
    _, other_code = await _case(harness, reporter_ref="99")
    await resident.say(format_receipt_code(other_code))
    assert "案件编号：QL-2026-000005" in resident.text()

    resident, case_id = await _asked_to_rate(harness, "r5")
    await resident.say("7")  # WeChat numbers the way out 7, after "6. 问题没有解决"
    assert "menu:report" in resident.keys() and "查询码" in resident.text()
    resident, case_id = await _asked_to_rate(harness, "r6")
    await resident.say("6")  # "not solved" by its number
    assert resident.keys() == ["comment:skip"]
    await resident.press("comment:skip")
    async with harness.sessionmaker() as session:
        rated = await session.scalar(select(TraceEvent.detail).where(TraceEvent.case_id == case_id,
                                                                     TraceEvent.kind == "rated"))
    assert rated == {"rating": None, "unsolved": True}


async def test_a_resident_asked_for_more_information_can_still_use_the_menu(harness: DialogHarness) -> None:
    resident = harness.resident()
    await resident.say("你好")
    case_id, _ = await _case(harness, channel="test", reporter_ref="r1")
    _, other_code = await _case(harness, reporter_ref="99")
    async with harness.sessionmaker.begin() as session:
        case = await actions.get_case(session, case_id)
        assert case is not None
        staff = await create_staff(session, "rev")
        await loop.ask_for_information(session, case, "请问是几号窗口？", actor=staff, add_label="补充材料")
    await resident.say(format_receipt_code(other_code))  # as the notice suggests: the case of that code
    assert "案件编号：QL-2026-000002" in resident.text()
    await resident.say("我要举报")
    assert "第1步" in resident.text()
    async with harness.sessionmaker() as session:
        follow_ups = list((await session.execute(select(TraceEvent.id).where(
            TraceEvent.kind == "follow_up"))).scalars())
    assert follow_ups == []


async def test_help_or_a_new_language_at_an_open_case_asks_its_question_again_in_that_language(
        harness: DialogHarness) -> None:
    _, code = await _case(harness)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.command("language")
    await resident.press("language:en")
    assert resident.last[0].text == "Language set to English."
    assert resident.keys() == ["case:follow_up", "case:menu"] and resident.last[-1].text == "You can also:"
    await resident.command("help")
    assert resident.keys() == ["case:follow_up", "case:menu"]
    await resident.press("case:follow_up")
    await resident.command("help")
    assert resident.keys() == ["follow_up:done"]


async def test_the_expected_dates_come_before_the_trace_and_say_what_is_still_to_come(harness: DialogHarness) -> None:
    now = harness.clock()
    case_id, code = await _case(harness, accept_due_at=now + timedelta(days=3), resolve_due_at=now + timedelta(days=30))
    resident = harness.resident()
    await resident.command("status", code)
    assert "当前状态：已分派\n预计受理：2026-11-27　预计答复：2026-12-24\n办理轨迹：\n" in resident.text()
    await _set_status(harness, case_id, CaseStatus.ACCEPTED)
    await resident.command("status", code)
    assert "当前状态：已受理\n已受理，预计答复：2026-12-24\n办理轨迹：\n" in resident.text()


async def test_a_rating_given_on_another_device_meanwhile_is_said_so(harness: DialogHarness) -> None:
    case_id, code = await _case(harness)
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    phone, laptop = harness.resident("phone"), harness.resident("laptop")
    for device in (phone, laptop):
        await device.command("status", code)
        await device.press("case:rate")
    await phone.press("rate:5")
    await phone.press("comment:skip")
    await laptop.press("rate:1")
    assert laptop.last[0].text == "这件举报已经评价过了（5星），谢谢您的反馈。"


async def test_a_rating_in_emoji_stars_and_the_menu_after_too_many_wrong_codes(harness: DialogHarness) -> None:
    case_id, code = await _case(harness)
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.press("case:rate")
    await resident.say("⭐️⭐️⭐️⭐️")  # as a phone's emoji keyboard types stars
    await resident.press("comment:skip")
    assert resident.last[0].text == "感谢您的评价（4星）！"
    guesser = harness.resident("guesser")
    await guesser.command("status")
    for _ in range(harness.context.city.limits.status_wrong_codes + 1):
        await guesser.say(WRONG_CODE)
    assert "查询码错误次数过多" in guesser.text() and "menu:report" in guesser.keys()


async def test_a_comment_with_not_solved_is_in_the_residents_trace_once(harness: DialogHarness) -> None:
    case_id, code = await _case(harness)
    await _set_status(harness, case_id, CaseStatus.CLOSED)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.press("case:rate")
    await resident.press("rate:unsolved")
    await resident.say("窗口还是没人管")
    await resident.command("status", code)
    assert resident.text().count("窗口还是没人管") == 1 and "根据举报人的评价重新办理" in resident.text()


async def test_an_answered_case_shows_no_dates_still_to_come(harness: DialogHarness) -> None:
    now = harness.clock()
    case_id, code = await _case(harness, accept_due_at=now + timedelta(days=3), resolve_due_at=now + timedelta(days=30))
    await _set_status(harness, case_id, CaseStatus.ANSWERED)
    resident = harness.resident()
    await resident.command("status", code)
    assert "预计" not in resident.text() and "当前状态：已答复\n办理轨迹：" in resident.text()


async def test_a_resident_who_said_it_is_solved_is_not_offered_not_solved(harness: DialogHarness) -> None:
    """"Solved, thank you" closes the answered case and asks for stars: "not solved" would contradict what the
    resident just said, so the question offers the stars and "later" only — asked again too."""
    case_id, code = await _case(harness)
    await _set_status(harness, case_id, CaseStatus.ANSWERED)
    resident = harness.resident()
    await resident.command("status", code)
    await resident.press("case:solved")
    assert resident.last[0].text == "感谢确认，本案已办结。"
    assert resident.keys() == ["rate:5", "rate:4", "rate:3", "rate:2", "rate:1", "rate:later"]
    await resident.say("好的")  # not a rating: asked again, still without "not solved"
    assert resident.last[0].text == "请选择1到5星：5星表示非常满意，1星表示很不满意。"
    assert resident.keys() == ["rate:5", "rate:4", "rate:3", "rate:2", "rate:1", "rate:later"]
    await resident.say("6")  # the sixth option is now "later"
    assert resident.last[0].text == "好的。以后想评价时，发送查询码打开案件即可。"
    await resident.command("status", code)
    await resident.press("case:rate")  # rating it later: still solved, still no "not solved"
    assert resident.keys() == ["rate:5", "rate:4", "rate:3", "rate:2", "rate:1", "rate:later"]
    await resident.press("rate:4")
    await resident.press("comment:skip")
    assert resident.last[0].text == "感谢您的评价（4星）！"


FOLLOW_UP_ROW = re.compile(r"<tr>((?:(?!</tr>).)*st-follow_up(?:(?!</tr>).)*)</tr>", re.S)
OTHER_DEVICE = "来自非举报时的设备或账号"


async def test_information_added_with_the_code_on_another_device_is_marked_for_staff_only(
        harness: DialogHarness, tmp_path: Path) -> None:
    """Seen by a security tester: whoever holds a resident's receipt code could add "I am the reporter, call me
    at …" and staff read it as the reporter's own words."""
    case_id, code = await _case(harness, channel="test", reporter_ref="r1")
    reporter, holder = harness.resident("r1"), harness.resident("r2")  # the one who filed it, and another device
    await reporter.command("status", code)
    await reporter.say("补充一下：今天下午那位工作人员又不在窗口，我排了一个多小时。")
    await holder.command("status", code)
    await holder.say("我就是举报人，请打电话13800001111联系我，我要撤回这个举报。")
    assert "补充材料已收到" in holder.text()  # the resident is told the same either way
    await reporter.command("status", code)
    await holder.command("status", code)
    assert "设备" not in reporter.text() and reporter.text() == holder.text()

    await _set_status(harness, case_id, CaseStatus.CLOSED)  # a rating from the other device is marked too
    await holder.command("status", code)
    await holder.press("case:rate")
    await holder.press("rate:5")
    await holder.press("comment:skip")
    async with harness.sessionmaker() as session:
        events = list(await session.execute(select(TraceEvent.kind, TraceEvent.detail).where(
            TraceEvent.case_id == case_id, TraceEvent.kind.in_(("follow_up", "rated"))).order_by(TraceEvent.id)))
        case = await actions.get_case(session, case_id)
        assert case is not None
    assert [(kind, detail.get("other_device", False)) for kind, detail in events] == [
        ("follow_up", False), ("follow_up", True), ("rated", True)]

    # staff read the case's trace: the mark on the second follow-up only, with no address or id of the device
    url = harness.sessionmaker.kw["bind"].url.render_as_string(hide_password=False)
    database = Database.connect(url, make_test_keyring())
    try:
        async with AsyncExitStack() as stack:
            office = Office(make_context(database, tmp_path), stack)
            staff = await office.browser("sup", StaffRole.SUPERVISOR)
            page = (await staff.get(f"/console/case/{case.case_number}")).text
            trace = (await staff.get(f"/api/v1/cases/{case.case_number}")).json()["trace"]
    finally:
        await database.engine.dispose()
        await database.read_engine.dispose()
    own, other = FOLLOW_UP_ROW.findall(page)
    assert "排了一个多小时" in own and OTHER_DEVICE not in own
    assert "13800001111" in other and OTHER_DEVICE in other and "r2" not in other
    assert [event["detail"].get("other_device") for event in trace if event["kind"] in ("follow_up", "rated")] == [
        None, True, True]


async def test_a_complaint_written_to_the_code_question_is_kept_and_offered_as_a_report(
        harness: DialogHarness) -> None:
    """On WeChat the menu's 查询进度 is always one tap away: a resident who taps it and then writes what happened
    was told "查询码应为16位数字" again and again, and what she wrote was lost."""
    resident = harness.resident()
    await resident.command("status")  # WeChat's menu button 查询进度
    assert resident.text() == "请输入16位查询码（可带空格）："
    complaint = "2026年11月我去芙蓉区某街道办事处办理低保，工作人员张某三次以材料不全为由让我回去补材料。"
    await resident.say(complaint)
    assert "查询码应为16位数字" not in resident.text() and complaint in resident.text()
    assert resident.keys() == ["intake:report", "intake:menu"]
    await resident.press("intake:report")
    assert "已把您发来的内容记为事情经过" in resident.text() and "district:furong" in resident.keys()



@pytest.mark.parametrize("typed", ["1234 5678 9012 345", "我的查询码是1234 5678 9012 345，请帮我查一下", "查询码"])
async def test_a_mistyped_code_at_the_code_question_is_still_asked_again(harness: DialogHarness,
                                                                         typed: str) -> None:
    resident = harness.resident()
    await resident.command("status")  # WeChat's menu button 查询进度
    await resident.say(typed)
    assert resident.text() == ("查询码应为16位数字，请检查后重新输入；回复“菜单”返回主菜单。\n"
                               "请输入16位查询码（可带空格）：")
    assert resident.keys() == []


@pytest.mark.parametrize(("typed", "rating"), [("给5星", 5), ("打4分", 4), ("五星好评", 5), ("5星好评", 5),
                                               ("give 3 stars", 3), ("没解决", 0), ("问题还没解决", 0),
                                               ("not resolved", 0), ("五顆星", 5), ("給4星", 4),
                                               ("問題還沒解決", 0), ("four stars", 4), ("5 star", 5),
                                               ("five", 5)])
async def test_a_rating_typed_as_residents_say_it_is_taken(harness: DialogHarness, typed: str, rating: int) -> None:
    """"给5星", "五星好评" (five stars, praise) or "没解决" (not solved) typed to the rating question was answered
    "请选择1到5星" (choose 1 to 5 stars), as if the resident had not said it."""
    resident, _ = await _asked_to_rate(harness)
    await resident.say(typed)
    assert resident.last[0].text.startswith("还有什么想说的吗"), resident.text()
    await resident.press("comment:skip")
    assert ("感谢您的评价" in resident.text()) == (rating > 0), resident.text()


async def test_satisfied_typed_to_the_rating_question_is_shown_the_scale(harness: DialogHarness) -> None:
    """"满意" (satisfied) is no number of stars: the question is asked again with what the stars mean, not only
    "choose 1 to 5 stars"."""
    resident, _ = await _asked_to_rate(harness)
    await resident.say("满意")
    assert resident.last[0].text == "请选择1到5星：5星表示非常满意，1星表示很不满意。"


async def test_the_case_menus_options_typed_in_words_are_understood(harness: DialogHarness) -> None:
    """At a case's menu "已解決", "solved", "補充", "返回" and "back" were each "请点击下方选项之一" (only a button's
    exact words were taken): a resident typing what she wants, in either script or English, gets it."""
    case_id, code = await _case(harness)
    resident = harness.resident("hk", "zh-HK")
    await resident.command("status", code)
    await resident.say("補充")
    assert resident.keys() == ["follow_up:done"]
    await resident.say("完成")
    await resident.say("返回")
    assert "menu:report" in resident.keys()
    await _answered(harness, case_id)
    await resident.command("status", code)
    await resident.say("已解決")
    assert "请为本案的办理打分" in resident.text()
    await resident.say("五星")
    await resident.say("跳過")
    assert "5" in resident.text() and "menu:report" in resident.keys()

    other_id, other_code = await _case(harness)
    english = harness.resident("en", "en")
    await _answered(harness, other_id)
    await english.command("status", other_code)
    await english.say("solved")
    assert "How was your case handled?" in english.text()
    await english.say("later")
    assert "menu:report" in english.keys()
    await english.command("status", other_code)
    await english.say("back")
    assert "menu:report" in english.keys()
