"""The resident hears back weeks later on WeChat: an answer outside the 48-hour window goes as a
subscription notice or a one-time message where the resident consented, and otherwise waits and is
delivered — as the newest state of the case — before the answer to the resident's next message. The
stand-in WeChat enforces the window, the consents and the templates' field rules."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import loop_steps
from tests.channels.test_wechat import (
    APP_ID,
    APP_SECRET,
    DESCRIPTION,
    TOKEN,
    User,
    _case_id,
    _code,
    running_standin,
    to_summary,
)
from tests.conftest import LiveService, city_file
from tests.standins.wechat_server import WeChatStandIn

SUBSCRIBE_TEMPLATE = "tpl-case-progress-0001"
ONCE_TEMPLATE = "tpl-once-progress-0002"
ANSWER = "经核查，已责令该窗口整改，并对当事人批评教育。"
OFFER_LINK = re.compile(r'<a href="([^"]*/mp/subscribemsg\?action=get_confirm[^"]*#wechat_redirect)">')


@pytest.fixture(scope="module")
def standin() -> Iterator[WeChatStandIn]:
    with running_standin(once_template_id=ONCE_TEMPLATE) as server:
        server.add_subscribe_template(SUBSCRIBE_TEMPLATE, {"character_string1": "character_string",
                                                           "phrase2": "phrase", "time3": "time", "thing4": "thing"},
                                      long_term=True)
        yield server


@pytest.fixture(scope="module")
def service(standin: WeChatStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    data_dir = tmp_path_factory.mktemp("wechat-notices")
    live = LiveService(data_dir, {
        "QINGLIAN_WECHAT_TOKEN": TOKEN, "QINGLIAN_WECHAT_APP_ID": APP_ID, "QINGLIAN_WECHAT_APP_SECRET": APP_SECRET,
        "QINGLIAN_WECHAT_API_URL": standin.root_url, "QINGLIAN_WECHAT_MP_URL": standin.root_url,
        "QINGLIAN_CONFIG_FILE": str(city_file(data_dir, extra=f"""
[notices.wechat]
subscribe_template_id = "{SUBSCRIBE_TEMPLATE}"
subscribe_fields = {{ case_number = "character_string1", status = "phrase2", time = "time3", summary = "thing4" }}
once_template_id = "{ONCE_TEMPLATE}"
once_title = "举报办理进度"
""")),
    })
    live.env["QINGLIAN_PUBLIC_URL"] = live.url
    standin.business_domains = (f"127.0.0.1:{live.port}",)  # authorisation links must come back to us
    live.start()
    standin.callback_url = f"{live.url}/wechat"
    yield live
    live.stop()


_openids = iter(range(7000, 8000))


def _report(standin: WeChatStandIn) -> tuple[User, str]:
    user = User(standin, f"oQL_{next(_openids)}_n0t1cesTst", "plaintext")
    to_summary(user)
    submitted = user.say("1", expect="举报已提交")
    return user, submitted


def _delivery_states(service: LiveService, case_id: int) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(service.data_dir / "qinglian.db") as db:
        rows = db.execute("SELECT kind, status, last_error FROM outbox WHERE case_id = ? AND channel = 'wechat' "
                          "ORDER BY id", (case_id,)).fetchall()
    return [(str(kind), str(status), error) for kind, status, error in rows]


def _eventually(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.1)


def test_the_receipt_says_when_to_expect_an_answer_and_offers_the_subscription(standin: WeChatStandIn,
                                                                               service: LiveService) -> None:
    _user, submitted = _report(standin)
    assert re.search(r"本案将于 \d{4}-\d{2}-\d{2} 前受理，\d{4}-\d{2}-\d{2} 前给出办理答复", submitted)
    assert re.search(r'<a href="[^"]*/mp/subscribemsg\?action=get_confirm[^"]*#wechat_redirect">', submitted)


def test_an_answer_on_day_10_reaches_a_subscriber_as_a_subscription_notice(standin: WeChatStandIn,
                                                                           service: LiveService) -> None:
    user, _ = _report(standin)
    user.last = standin.user_subscribe(user.openid, accept=[SUBSCRIBE_TEMPLATE])
    user.settle()
    case_id = _case_id(service, user.openid)
    standin.advance(days=10)
    loop_steps.reply_or_close(service, case_id, answer=ANSWER)
    _eventually(lambda: any(m.via == "subscribe_notice" for m in standin.inbox(user.openid)))
    notice = next(m for m in standin.inbox(user.openid) if m.via == "subscribe_notice")
    assert notice.template_id == SUBSCRIBE_TEMPLATE
    assert notice.data["character_string1"].startswith("QL-") and notice.data["phrase2"] == "已答复"
    assert notice.data["thing4"].startswith("经核查")
    _eventually(lambda: _delivery_states(service, case_id)[-1][1] == "sent")
    assert _delivery_states(service, case_id)[-1][:2] == ("answer", "sent")


def _answered_after_one_time_consent(standin: WeChatStandIn, service: LiveService, user: User,
                                     link: str) -> tuple[int, Any]:
    """The resident gives the one-time consent behind `link` (as the bot's message shows it), staff answer their
    case ten days later; the case's id and the one message the consent let through."""
    authorised = standin.user_authorise_once(user.openid, link.replace("&amp;", "&"))
    assert authorised.problem is None and authorised.response is not None
    assert authorised.response.status_code == 200 and "已订阅" in authorised.response.text
    case_id = _case_id(service, user.openid)
    standin.advance(days=10)
    loop_steps.reply_or_close(service, case_id, answer=ANSWER)
    _eventually(lambda: any(m.via == "template_subscribe_once" for m in standin.inbox(user.openid)))
    return case_id, next(m for m in standin.inbox(user.openid) if m.via == "template_subscribe_once")


def test_a_one_time_authorisation_lets_one_message_through_and_the_next_waits(standin: WeChatStandIn,
                                                                              service: LiveService) -> None:
    user, submitted = _report(standin)
    match = re.search(r'<a href="([^"]+)">', submitted)
    assert match
    case_id, once = _answered_after_one_time_consent(standin, service, user, match.group(1))
    assert once.title == "举报办理进度" and ANSWER[:10] in once.data["content"]
    loop_steps.reply_or_close(service, case_id, close=True)  # a second notice: the one-time consent is used up
    _eventually(lambda: _delivery_states(service, case_id)[-1][1] == "waiting")
    assert "48-hour window" in (_delivery_states(service, case_id)[-1][2] or "")


def test_without_consent_the_answer_waits_and_comes_first_when_the_resident_writes(standin: WeChatStandIn,
                                                                                   service: LiveService) -> None:
    user, _ = _report(standin)
    case_id = _case_id(service, user.openid)
    standin.advance(days=10)
    loop_steps.reply_or_close(service, case_id, answer=ANSWER)
    _eventually(lambda: bool(_delivery_states(service, case_id)) and _delivery_states(service, case_id)[-1][1]
                == "waiting")
    kind, status, reason = _delivery_states(service, case_id)[-1]
    assert (kind, status) == ("answer", "waiting") and "waits for the resident" in (reason or "")
    reply = user.say("你好", expect="在您离开期间有新进展")
    assert reply.index("在您离开期间有新进展") < reply.index("请选择您要办理的事项")  # the news first
    assert "当前状态：已答复" in reply and ANSWER in reply
    assert _delivery_states(service, case_id)[-1][1] == "sent"


def _subscribed_case(standin: WeChatStandIn, service: LiveService) -> tuple[User, int]:
    user, _ = _report(standin)
    user.last = standin.user_subscribe(user.openid, accept=[SUBSCRIBE_TEMPLATE])
    user.settle()
    standin.advance(days=10)
    return user, _case_id(service, user.openid)


def _notices(standin: WeChatStandIn, user: User, count: int) -> list[Any]:
    _eventually(lambda: len([m for m in standin.inbox(user.openid) if m.via == "subscribe_notice"]) >= count)
    return [m for m in standin.inbox(user.openid) if m.via == "subscribe_notice"]


def test_a_question_of_the_staff_reaches_a_subscriber_and_the_resident_answers_it(standin: WeChatStandIn,
                                                                                  service: LiveService) -> None:
    user, case_id = _subscribed_case(standin, service)  # ten days later: outside the 48 hours
    loop_steps.ask_for_information(service, case_id, "请提供3号窗口当天的排队小票照片，以便核实排队时间。")
    notice = _notices(standin, user, 1)[-1]
    assert (notice.data["phrase2"], notice.data["thing4"]) == ("待补充", "请提供3号窗口当天的排队小票照片，以便…")
    assert notice.data["character_string1"].startswith("QL-")
    _eventually(lambda: _delivery_states(service, case_id)[-1][1] == "sent")
    assert _delivery_states(service, case_id)[-1][:2] == ("more_info", "sent")
    user.say("补充材料", expect="请发送要补充的")  # the notice's option, typed: no code needed
    user.say("小票显示上午9点20分取号，11点半才叫到。", expect="补充材料已收到")
    assert loop_steps.case_state(service, case_id)[2][-2:] == ["more_info", "follow_up"]
    assert standin.violations == []


def test_the_closed_loop_extension_warning_and_a_poor_rating_weeks_later(standin: WeChatStandIn,
                                                                         service: LiveService) -> None:
    user, case_id = _subscribed_case(standin, service)  # ten days later: outside the 48 hours
    until = loop_steps.extend(service, case_id)
    notice = _notices(standin, user, 1)[-1]
    assert (notice.data["phrase2"], notice.data["thing4"]) == ("已延期", f"预计{until}前答复")
    assert loop_steps.warn_before_deadline(service, case_id) == [False, True]

    loop_steps.answer_and_close(service, case_id, ANSWER)
    answered, closed = _notices(standin, user, 3)[-2:]  # the answer and the closing by subscription notice
    assert (answered.data["phrase2"], closed.data["phrase2"]) == ("已答复", "已办结")
    _eventually(lambda: _delivery_states(service, case_id)[-1][1] == "waiting")
    assert _delivery_states(service, case_id)[-1][:2] == ("rate_request", "waiting")  # no template for it
    reply = user.say("1", expect="还有什么想说的吗")  # the rating request came first, then this rated it
    assert reply.index("请为办理结果打分") < reply.index("还有什么想说的吗")
    user.say("1", expect="将根据您的评价重新办理")  # 1: skip the comment; within 48 hours of writing now
    assert loop_steps.case_state(service, case_id)[:2] == ("in_handling", 1)
    # the "reopened" notice goes out through the outbox worker, after the dialog's own reply
    _eventually(lambda: _delivery_states(service, case_id)[-1][1] != "pending")
    assert _delivery_states(service, case_id)[-1][:2] == ("reopened", "sent")
    assert standin.violations == []


def test_an_answer_with_a_line_break_reaches_a_subscriber_on_one_line(standin: WeChatStandIn,
                                                                      service: LiveService) -> None:
    user, case_id = _subscribed_case(standin, service)
    loop_steps.reply_or_close(service, case_id, answer="经核查：\n已责令该窗口整改。\n并对当事人批评教育。")
    notice = _notices(standin, user, 1)[-1]
    assert notice.data["thing4"] == "经核查： 已责令该窗口整改。 并对当事…"
    assert standin.violations == []


def test_an_english_residents_notice_keeps_the_template_chinese_where_wechat_demands_it(
        standin: WeChatStandIn, service: LiveService) -> None:
    user = User(standin, f"oQL_{next(_openids)}_n0t1cesTst", "plaintext")
    user.say("/language", expect="Choose your language")
    user.say("2", expect="Language set to English")
    user.say("/report", expect="Step 1")
    user.say("3", expect="Step 2")
    user.say("岳麓区政务服务中心3号窗口", expect="Step 3")
    user.say("1", expect="Step 4")
    user.say(DESCRIPTION, expect="Step 5")
    user.say("1", expect="Step 6")
    user.say("1", expect="Please check your report")
    user.say("1", expect="Your report was submitted")
    user.last = standin.user_subscribe(user.openid, accept=[SUBSCRIBE_TEMPLATE])
    user.settle()
    standin.advance(days=10)
    case_id = _case_id(service, user.openid)
    loop_steps.reply_or_close(service, case_id, answer="The window staff were reprimanded.")
    notice = _notices(standin, user, 1)[-1]
    assert (notice.data["phrase2"], notice.data["thing4"]) == ("已答复", "The window staff we…")
    assert standin.violations == []


def test_a_notice_wechat_refuses_for_its_values_waits_for_the_resident(standin: WeChatStandIn,
                                                                       service: LiveService) -> None:
    user, case_id = _subscribed_case(standin, service)
    standin.fail_next("/cgi-bin/message/subscribe/bizsend", errcode=47003,
                      errmsg="argument invalid! data.thing4.value invalid")
    loop_steps.reply_or_close(service, case_id, answer=ANSWER)
    _eventually(lambda: _delivery_states(service, case_id)[-1][1] != "pending")
    kind, status, reason = _delivery_states(service, case_id)[-1]
    assert (kind, status) == ("answer", "waiting")
    assert "47003" in (reason or "") and "data.thing4.value invalid" in (reason or "")
    assert not [m for m in standin.inbox(user.openid) if m.via == "subscribe_notice"]
    reply = user.say("你好", expect="在您离开期间有新进展")
    assert "当前状态：已答复" in reply and ANSWER in reply
    assert _delivery_states(service, case_id)[-1][1] == "sent"


@pytest.mark.parametrize("value", ["", "  ", "第一行\n第二行", "tab\there", "Answered", "不予受理（不属于受理范围）",
                                   "经核查，已责令该窗口整改，并对当事人批评教育。", "\n\n"])
@pytest.mark.parametrize("kind", ["thing", "phrase", "character_string", "number"])
def test_every_value_is_fitted_to_what_wechat_accepts_for_its_kind(kind: str, value: str) -> None:
    from bot.channels.wechat.notices import _fit
    from tests.standins.wechat_templates import value_ok

    assert value_ok(kind, _fit(f"{kind}1", value))


def test_each_status_check_offers_the_subscription_and_its_consent_carries_a_later_notice(
        standin: WeChatStandIn, service: LiveService) -> None:
    """The offer is not only in the receipt: a resident who ignored it there finds it again in the answer to
    `/status`, and agreeing there lets the next notice of that case through after the 48 hours. A closed case
    offers nothing more."""
    user, submitted = _report(standin)
    code = _code(submitted)
    status = user.say(f"/status {code}", expect="当前状态：已分派")
    match = OFFER_LINK.search(status)
    assert match, status
    assert status.index("当前状态：已分派") < match.start()  # below the case's status, in the same answer
    case_id, once = _answered_after_one_time_consent(standin, service, user, match.group(1))
    assert ANSWER[:10] in once.data["content"]
    _eventually(lambda: _delivery_states(service, case_id)[-1][:2] == ("answer", "sent"))

    loop_steps.reply_or_close(service, case_id, close=True)
    closed = user.say(f"/status {code}", expect="当前状态：已办结")
    assert "subscribemsg" not in closed
    assert standin.violations == []
