"""End to end through Telegram: `qinglian serve` in its own process, talking to the stand-in Bot API
server, which checks every request against the official Bot API specification."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import loop_steps
from tests.conftest import LiveService, evidence_content, free_port, make_test_keyring, stored_value
from tests.factories import pdf_facts, pdf_with_metadata, picture_of, plain_photo
from tests.standins.telegram_server import TelegramStandIn

TOKEN = "424242:TEST-qinglian"
JPEG = plain_photo(320, 240)
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"


class Chat:
    """One resident in a private chat with the bot."""

    def __init__(self, standin: TelegramStandIn, chat_id: int, language: str = "zh-hans") -> None:
        self.standin = standin
        self.chat_id = chat_id
        self.language = language
        self.seen = 0

    def expect(self, fragment: str, timeout: float = 15.0) -> str:
        """Wait for a new message containing `fragment`; returns its text."""
        found: list[str] = []

        def arrived() -> bool:
            for index, message in enumerate(self.standin.sent_messages(self.chat_id)[self.seen:], self.seen):
                if fragment in (message.get("text") or ""):
                    found.append(message["text"])
                    self.seen = index + 1
                    return True
            return False

        try:
            self.standin.wait_until(arrived, timeout=timeout, what=f"a message with {fragment!r}")
        except AssertionError:
            texts = [m.get("text") for m in self.standin.sent_messages(self.chat_id)[self.seen:]]
            raise AssertionError(f"no message with {fragment!r} in chat {self.chat_id}; got {texts}") from None
        return found[0]

    def say(self, text: str, expect: str) -> str:
        self.standin.send_text(self.chat_id, text, language_code=self.language)
        return self.expect(expect)

    def press(self, data: str, expect: str) -> str:
        self.standin.wait_until(lambda: data in self.buttons(), what=f"a button {data!r}")
        self.standin.press_button(self.chat_id, data, language_code=self.language)
        return self.expect(expect)

    def buttons(self) -> list[str]:
        return [data for _, data in self.standin.last_buttons(self.chat_id)]

    def settle(self, service: LiveService) -> None:
        """Wait until the bot has sent this chat everything it will: every update is acknowledged (long
        polling moves past an update only once its step has committed, replies included) and no reply to the
        chat is still waiting in the service's outbox."""
        self.standin.wait_until(lambda: self.standin.pending_update_count() == 0, what="every update handled")
        recipient = make_test_keyring().encrypt(str(self.chat_id), purpose="outbox.recipient", deterministic=True)

        def delivered() -> bool:
            with _db(service) as db:
                return db.execute("SELECT count(*) FROM outbox WHERE recipient = ? AND status = 'pending'",
                                  (recipient,)).fetchone() == (0,)

        _eventually(delivered, what=f"the outbox of chat {self.chat_id} delivered")
        self.seen = len(self.standin.sent_messages(self.chat_id))


def _eventually(condition: Callable[[], bool], *, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout} s"
        time.sleep(0.05)


def _db(service: LiveService) -> sqlite3.Connection:
    return sqlite3.connect(service.data_dir / "qinglian.db")


def _reporter(chat: Chat) -> str:
    """What the database knows the resident by: the keyed pseudonym of their chat id."""
    return make_test_keyring().pseudonym("telegram", str(chat.chat_id))


def _code(text: str) -> str:
    match = re.search(r"\d{4} \d{4} \d{4} \d{4}", text)
    assert match, text
    return match.group(0)


@pytest.fixture(scope="module")
def standin() -> Iterator[TelegramStandIn]:
    server = TelegramStandIn(token=TOKEN)
    server.start()
    yield server
    server.stop()
    assert server.violations == []


@pytest.fixture(scope="module")
def service(standin: TelegramStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    live = LiveService(tmp_path_factory.mktemp("telegram"), {
        "QINGLIAN_TELEGRAM_TOKEN": TOKEN, "QINGLIAN_TELEGRAM_API_URL": standin.root_url,
    })
    live.start()
    yield live
    live.stop()


_next_chat = iter(range(5000, 6000))


@pytest.fixture
def chat(standin: TelegramStandIn, service: LiveService) -> Chat:
    return Chat(standin, next(_next_chat))


def file_report(chat: Chat, real_name: tuple[str, str] | None = None) -> str:
    """A report with a photo, anonymous or under `real_name` (name, phone); returns its receipt code."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.standin.send_photo(chat.chat_id, JPEG)
    chat.expect("已收到第 1 个文件")
    chat.press("evidence:done", expect="第6步")
    if real_name is None:
        chat.press("identity:anonymous", expect="请核对举报内容")
    else:
        chat.press("identity:real", expect="请输入您的姓名")
        chat.say(real_name[0], expect="手机号码")
        chat.say(real_name[1], expect="请核对举报内容")
    return _code(chat.press("summary:submit", expect="举报已提交"))


STAFF_GROUP = -1001234500077


def test_the_closed_loop_question_extension_warning_and_a_poor_rating(standin: TelegramStandIn,
                                                                       service: LiveService, chat: Chat) -> None:
    file_report(chat)
    chat.settle(service)
    case_id, number = loop_steps.latest_case(service)

    loop_steps.ask_for_information(service, case_id, "请提供3号窗口当天的排队小票照片。")
    question = chat.expect("请您补充信息")
    assert number in question and "请提供3号窗口当天的排队小票照片。" in question
    chat.press(f"case:follow_up@{case_id}", expect="请发送要补充的")  # the button under the notice: no code typed
    chat.say("小票显示上午9点20分取号，11点半才叫到。", expect="补充材料已收到")
    chat.press("follow_up:done", expect="举报人补充了材料")

    until = loop_steps.extend(service, case_id)
    assert f"预计 {until} 前答复" in chat.expect("延长办理期限")

    # the deadline job at injected times: nothing two working days before the accept-by day, a warning to
    # the queue's staff group one working day before it
    assert loop_steps.warn_before_deadline(service, case_id, staff_chat=STAFF_GROUP) == [False, True]
    standin.wait_until(lambda: any(number in (m.get("text") or "") and "即将到期" in (m.get("text") or "")
                                   for m in standin.sent_messages(STAFF_GROUP)), what="the staff group warned")

    loop_steps.answer_and_close(service, case_id, "经核查，已对3号窗口工作人员批评教育。")
    chat.expect("请为办理结果打分")
    chat.press(f"rate:1@{case_id}", expect="还有什么想说的吗")
    assert number in chat.press("comment:skip", expect="将根据您的评价重新办理")  # the notice, then the thanks
    chat.expect("感谢反馈，上级已收到通知")
    status, rehandled, trace = loop_steps.case_state(service, case_id)
    assert (status, rehandled, trace[-2:]) == ("in_handling", 1, ["rated", "reopened"])


def test_commands_menu_is_published_in_both_languages(standin: TelegramStandIn, service: LiveService) -> None:
    standin.wait_for_request("setMyCommands", count=3)
    english = [c["command"] for c in standin.my_commands(language_code="en")]
    chinese = standin.my_commands(language_code="zh")
    assert english == ["start", "report", "status", "cancel", "language", "help"]
    assert [c["description"] for c in chinese][:2] == ["开始 / 主菜单", "我要举报"]


def test_full_report_in_chinese_with_a_photo(chat: Chat, service: LiveService) -> None:
    chat.say("/start", expect="清廉监督举报平台")
    assert "menu:report" in chat.buttons()
    code = file_report(chat)
    with _db(service) as db:
        case_id, district, place, anonymous, queue = db.execute(
            "SELECT id, district, place, anonymous, queue FROM cases WHERE reporter_key = ?", (_reporter(chat),)
        ).fetchone()
        stored_names = [row[0] for row in db.execute("SELECT stored_name FROM attachments WHERE case_id = ?",
                                                      (case_id,))]
        hashes = [row[0] for row in db.execute("SELECT receipt_code_hash FROM cases")]
    assert (district, stored_value(place, "cases.place"), anonymous, queue) == (
        "yuelu", "岳麓区政务服务中心3号窗口", 1, "clean_hall")
    assert len(stored_names) == 1
    assert picture_of(evidence_content(service.data_dir / "evidence", stored_names[0])) == picture_of(JPEG)
    assert code.replace(" ", "") not in hashes


def test_the_receipt_code_is_not_kept_once_it_was_delivered(chat: Chat, service: LiveService) -> None:
    code = file_report(chat)
    keys = make_test_keyring()

    def stored() -> list[tuple[str, str]]:
        with _db(service) as db:
            rows = db.execute("SELECT status, payload FROM outbox WHERE recipient = ?",
                              (keys.encrypt(str(chat.chat_id), purpose="outbox.recipient", deterministic=True),))
            return [(status, keys.decrypt(payload, purpose="outbox.payload")) for status, payload in rows]

    deadline = time.monotonic() + 10
    while any(status != "sent" for status, _ in stored()) and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = stored()
    assert rows and all(status == "sent" for status, _ in rows)
    assert [payload for _, payload in rows if code in payload or code.replace(" ", "") in payload] == []


def test_full_report_in_english_typed_answers(standin: TelegramStandIn, service: LiveService) -> None:
    chat = Chat(standin, next(_next_chat), language="en")
    chat.say("/report", expect="Step 1")
    chat.say("Kaifu", expect="Step 2")
    chat.say("Kaifu District Tax Service Hall, window 7", expect="Step 3")
    chat.say("2026-11-02", expect="Step 4")
    chat.say("The clerk refused my application although every document on the list was there.", expect="Step 5")
    chat.say("1", expect="Step 6")
    chat.say("With my name", expect="Your name")
    chat.say("Zhang Wei", expect="mobile number")
    chat.say("139 1234 5678", expect="Please check your report")
    chat.say("Submit", expect="Your report was submitted")
    with _db(service) as db:
        district, occurred, name, phone, locale = db.execute(
            "SELECT district, occurred, reporter_name, reporter_phone, locale FROM cases WHERE reporter_key = ?",
            (_reporter(chat),)).fetchone()
    keys = make_test_keyring()  # the service's keys: both read them from the environment
    assert (district, stored_value(occurred, "cases.occurred"), keys.decrypt(name, purpose="cases.reporter_name"),
            keys.decrypt(phone, purpose="cases.reporter_phone"), locale) == (
        "kaifu", "2026-11-02", "Zhang Wei", "13912345678", "en")


def test_edit_from_summary_and_cancel(chat: Chat, service: LiveService) -> None:
    chat.say("/report", expect="第1步")
    chat.press("district:furong", expect="第2步")
    chat.say("芙蓉区车管所", expect="第3步")
    chat.press("when:yesterday", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:anonymous", expect="请核对举报内容")
    chat.press("summary:edit", expect="要修改哪一项")
    chat.press("edit:district", expect="第1步")
    summary = chat.press("district:yuhua", expect="请核对举报内容")
    assert "区县：雨花区" in summary and "芙蓉区车管所" in summary
    chat.say("/cancel", expect="要放弃这份尚未提交的举报吗")
    chat.press("cancel:discard", expect="已取消本次举报")
    with _db(service) as db:
        assert db.execute("SELECT count(*) FROM cases WHERE reporter_key = ?", (_reporter(chat),)).fetchone() == (0,)


def test_bad_input_at_each_step_is_explained_and_asked_again(chat: Chat) -> None:
    standin = chat.standin
    chat.say("/report", expect="第1步")
    standin.send_sticker(chat.chat_id)
    chat.expect("无法识别这条消息")
    chat.expect("第1步")
    chat.press("district:wangcheng", expect="第2步")
    standin.send_voice(chat.chat_id)
    chat.expect("无法识别这条消息")
    chat.expect("第2步")
    chat.say("望城区某街道便民服务中心", expect="第3步")
    chat.say("2030年1月1日", expect="还没有到")
    chat.say("上周五", expect="第4步")
    chat.say("字" * 3001, expect="最多3000字")
    chat.say(DESCRIPTION, expect="第5步")
    standin.send_document(chat.chat_id, b"PK\x03\x04zipfile", "evidence.zip", "application/zip")
    chat.expect("不是图片")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:real", expect="请输入您的姓名")
    chat.say("王五", expect="手机号码")
    chat.say("0731-8888888", expect="手机号格式不正确")
    chat.say("13712345678", expect="请核对举报内容")
    first_question = next(m for m in standin.sent_messages(chat.chat_id) if "第1步" in m["text"])
    standin.press_button(chat.chat_id, "district:furong", message_id=first_question["message_id"])
    chat.expect("已失效")
    chat.expect("请核对举报内容")


def test_restart_in_the_middle_resumes_the_draft(chat: Chat, service: LiveService) -> None:
    chat.say("/report", expect="第1步")
    chat.press("district:ningxiang", expect="第2步")
    chat.say("宁乡市自然资源局窗口", expect="第3步")
    chat.settle(service)
    service.stop()
    service.start()
    chat.press("when:month", expect="第4步")
    chat.settle(service)
    service.kill()
    service.start()
    chat.say("/start", expect="尚未提交的举报草稿")
    chat.press("resume:continue", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:anonymous", expect="请核对举报内容")
    chat.press("summary:submit", expect="举报已提交")
    with _db(service) as db:
        row = db.execute("SELECT district, place, occurred FROM cases WHERE reporter_key = ?",
                         (_reporter(chat),)).fetchone()
    assert (row[0], stored_value(row[1], "cases.place"), stored_value(row[2], "cases.occurred")) == (
        "ningxiang", "宁乡市自然资源局窗口", "最近一个月内")


def test_a_redelivered_update_does_nothing(chat: Chat, service: LiveService) -> None:
    standin = chat.standin
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区某局", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:anonymous", expect="请核对举报内容")
    submit = standin.press_button(chat.chat_id, "summary:submit")
    chat.expect("举报已提交")
    chat.settle(service)
    seen = chat.seen
    standin.redeliver(submit)
    chat.settle(service)  # the redelivered update handled, and anything it wrote to the outbox sent
    assert chat.seen == seen
    with _db(service) as db:
        assert db.execute("SELECT count(*) FROM cases WHERE reporter_key = ?", (_reporter(chat),)).fetchone() == (1,)


def test_status_follow_up_answer_and_rating(chat: Chat, service: LiveService) -> None:
    code = file_report(chat)
    chat.settle(service)
    chat.say(f"/status {code}", expect="当前状态：已分派")
    chat.press("case:follow_up", expect="请发送要补充的")
    chat.say("补充：该窗口工作人员工号0327。", expect="补充材料已收到")
    chat.press("follow_up:done", expect="举报人补充了材料")
    chat.say("/status 1111 2222 3333 4444", expect="没有找到")
    chat.say("/status 12", expect="16位数字")
    # staff answer and close the case (the console will do this); the outbox tells the reporter
    with _db(service) as db:
        case_id = db.execute("SELECT id FROM cases WHERE reporter_key = ?", (_reporter(chat),)).fetchone()[0]
    _staff_answers_and_closes(service, case_id)
    chat.expect("收到办理答复")
    chat.expect("有新进展：已办结")
    chat.say(f"/status {code.replace(' ', '')}", expect="经核查，已对该工作人员批评教育")
    chat.press("case:rate", expect="请为本案的办理打分")
    chat.press("rate:5", expect="可以写几句意见")
    chat.press("comment:skip", expect="感谢您的评价（5星）")


def test_a_status_longer_than_one_telegram_message_arrives_whole_in_several(chat: Chat, service: LiveService) -> None:
    """Two answers of the console's longest (3000 characters each) make a status of some 6000 characters; Telegram
    takes 4096 a message and refused it whole ("message is too long"): it comes in parts, each answer whole in one."""
    code = file_report(chat)
    chat.settle(service)
    case_id, _number = loop_steps.latest_case(service)
    first = ("经核查，3号窗口工作人员上班时间使用手机的情况属实，已责令其作出书面检讨。" * 80)[:3000]
    second = ("复核后，中心已调整窗口排班并增设取号提醒，群众平均等候时间已缩短至二十分钟以内。" * 80)[:3000]
    loop_steps.reply_or_close(service, case_id, answer=first)
    loop_steps.reply_or_close(service, case_id, answer=second)
    chat.settle(service)
    chat.standin.send_text(chat.chat_id, f"/status {code}")
    chat.settle(service)
    status, answer, menu = (m["text"] for m in chat.standin.sent_messages(chat.chat_id)[chat.seen - 3:])
    assert "当前状态：已答复" in status and first in status and second in answer and menu == "您还可以："
    assert max(len(status), len(answer)) <= 4096
    assert "case:follow_up" in chat.buttons()


def test_a_file_telegram_calls_octet_stream_is_taken_by_what_it_is(chat: Chat, service: LiveService) -> None:
    """A scan saved without an extension reaches the bot as "application/octet-stream" (Telegram's clients name the
    type from the file's name): its bytes say it is a PDF, which is taken, rewritten without its metadata."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.standin.send_document(chat.chat_id, pdf_with_metadata(), "扫描件", "application/octet-stream")
    chat.expect("已收到第 1 个文件")
    chat.standin.send_document(chat.chat_id, b"PK\x03\x04zipfile", "材料", "application/octet-stream")
    chat.expect("不是图片")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:anonymous", expect="请核对举报内容")
    chat.press("summary:submit", expect="举报已提交")
    with _db(service) as db:
        [(media_type, stored_name)] = db.execute(
            "SELECT media_type, stored_name FROM attachments WHERE case_id = "
            "(SELECT id FROM cases WHERE reporter_key = ?)", (_reporter(chat),)).fetchall()
    kept = evidence_content(service.data_dir / "evidence", stored_name)
    pages, _texts, information, has_xmp, hidden = pdf_facts(kept)
    assert (media_type, pages, information, has_xmp, hidden) == ("application/pdf", 2, None, False, [])


def test_a_command_in_a_group_is_answered_with_where_to_report_and_nothing_of_it_is_read(
        standin: TelegramStandIn, service: LiveService) -> None:
    """Someone added the bot to their neighbourhood group and asks it there: every member reads the group, so
    nothing is taken from it (no draft, no status looked up); the bot says once where reporting happens."""
    group, member = -1001234500123, next(_next_chat)
    bot = standin.bot_user["username"]
    standin.send_text(group, f"/report@{bot}", user_id=member)
    standin.send_text(group, "/status 1234 5678 9012 3456", user_id=member)
    standin.send_text(group, "/start@SomeOtherBot", user_id=member)  # another bot's command: not ours to answer
    standin.send_text(group, "今天办事大厅又排长队了", user_id=member)
    standin.wait_until(lambda: standin.pending_update_count() == 0, what="every update handled")
    texts = [m["text"] for m in standin.sent_messages(group)]
    assert texts == [f"请私聊 @{bot} 举报或查询：群里的消息所有成员都能看到，请不要在群里发送举报内容或查询码。"] * 2
    private = Chat(standin, member)
    private.say("/start", expect="清廉监督举报平台")  # the menu, not a draft begun in the group
    assert not any("草稿" in m["text"] for m in standin.sent_messages(member))


def test_a_message_edited_after_it_was_answered_is_said_not_to_change_the_report(chat: Chat) -> None:
    """Telegram lets a resident edit a sent message; the step it answered is done, so the correction would be lost
    without a word: the bot says so, and how to correct the report, which keeps what was first sent."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    sent = chat.standin.send_text(chat.chat_id, "岳麓区政务服务中心5号窗口")
    chat.expect("第3步")
    message_id = chat.standin.update(sent)["message"]["message_id"]
    chat.standin.edit_text(chat.chat_id, message_id, "岳麓区政务服务中心3号窗口")
    edited = chat.expect("修改后的内容不会被采用")
    assert "请不要重新发送" in edited and "核对页" in edited  # sent again, the place would answer the time question
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.press("evidence:done", expect="第6步")
    assert "地点/单位：岳麓区政务服务中心5号窗口" in chat.press("identity:anonymous", expect="请核对举报内容")


def test_the_button_under_an_older_cases_question_adds_nothing_to_a_newer_case(chat: Chat,
                                                                               service: LiveService) -> None:
    """Staff of two of the resident's cases each ask a question, the same "add information" button under both;
    the resident scrolls up and presses it under the first: what they send must go to the first case, or the
    button be refused as out of date, never land in the second case."""
    file_report(chat)
    chat.settle(service)
    first_id, first_number = loop_steps.latest_case(service)
    file_report(chat)
    chat.settle(service)
    second_id, second_number = loop_steps.latest_case(service)
    loop_steps.ask_for_information(service, first_id, "请提供3号窗口当天的排队小票照片。")
    first_question = chat.expect("请您补充信息")
    loop_steps.ask_for_information(service, second_id, "请说明工作人员的大致体貌特征。")
    second_question = chat.expect("请说明工作人员的大致体貌特征")
    chat.settle(service)
    [under_first] = [m for m in chat.standin.sent_messages(chat.chat_id) if m.get("text") == first_question]
    [under_second] = [m for m in chat.standin.sent_messages(chat.chat_id) if m.get("text") == second_question]
    chat.standin.press_button(chat.chat_id, f"case:follow_up@{first_id}", message_id=under_first["message_id"])
    assert "已失效" in chat.expect("")  # out of date: the conversation waits for the answer to the newer question
    chat.settle(service)
    chat.standin.press_button(chat.chat_id, f"case:follow_up@{second_id}", message_id=under_second["message_id"])
    assert "请发送要补充的" in chat.expect("请发送要补充的")  # the newest question's button works
    chat.say("大约四十岁，戴眼镜，胸牌号码看不清。", expect="补充材料已收到")
    chat.settle(service)
    assert [kinds[-1] for kinds in (loop_steps.case_state(service, first_id)[2],
                                    loop_steps.case_state(service, second_id)[2])] == ["more_info", "follow_up"]
    assert first_number != second_number


def test_a_photo_with_its_story_as_the_caption_answers_the_question_and_is_kept_as_evidence(
        chat: Chat, service: LiveService) -> None:
    """Telegram sends a photo and its caption as one message: asked what happened, a resident sends the photo with
    the story written under it. Both are kept: the caption as the description, the photo as the first file; and a
    photo with a caption added to a filed case keeps its words too."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.standin.send_photo(chat.chat_id, JPEG, caption=DESCRIPTION)
    chat.expect("已收到第 1 个文件")
    chat.press("evidence:done", expect="第6步")
    summary = chat.press("identity:anonymous", expect="请核对举报内容")
    assert f"经过：{DESCRIPTION}" in summary and "证据：1 个文件" in summary
    code = _code(chat.press("summary:submit", expect="举报已提交"))
    chat.settle(service)
    chat.say(f"/status {code}", expect="当前状态")
    chat.press("case:follow_up", expect="请发送要补充的")
    chat.standin.send_photo(chat.chat_id, plain_photo(200, 150, shade=60), caption="排队小票：上午9点20分取号。")
    chat.expect("补充材料已收到")
    with _db(service) as db:
        case_id = db.execute("SELECT id FROM cases WHERE reporter_key = ?", (_reporter(chat),)).fetchone()[0]
        files = db.execute("SELECT count(*) FROM attachments WHERE case_id = ?", (case_id,)).fetchone()[0]
        [body] = [row[0] for row in db.execute(
            "SELECT body FROM trace_events WHERE case_id = ? AND kind = 'follow_up'", (case_id,))]
    assert (files, stored_value(body, "trace_events.body")) == (2, "排队小票：上午9点20分取号。")


def test_flood_control_between_the_parts_of_a_long_status_sends_no_part_twice(chat: Chat, service: LiveService) -> None:
    """Telegram's flood control refuses the second part of a long status, after the first went out: once it is over,
    the resident gets the rest, and the part they have is not sent again."""
    code = file_report(chat)
    chat.settle(service)
    case_id, _number = loop_steps.latest_case(service)
    first = ("经核查，3号窗口工作人员上班时间使用手机的情况属实，已责令其作出书面检讨。" * 80)[:3000]
    second = ("复核后，中心已调整窗口排班并增设取号提醒，群众平均等候时间已缩短至二十分钟以内。" * 80)[:3000]
    loop_steps.reply_or_close(service, case_id, answer=first)
    loop_steps.reply_or_close(service, case_id, answer=second)
    chat.settle(service)
    chat.standin.fail_next("sendMessage", status=429, retry_after=1, after=1)
    chat.standin.send_text(chat.chat_id, f"/status {code}")
    chat.expect("您还可以：", timeout=30)
    texts = [m["text"] for m in chat.standin.sent_messages(chat.chat_id)[-3:]]
    assert len(chat.standin.sent_messages(chat.chat_id)) == chat.seen
    assert "当前状态：已答复" in texts[0] and first in texts[0] and second in texts[1] and texts[2] == "您还可以："
    assert sum("当前状态：已答复" in (m.get("text") or "") for m in chat.standin.sent_messages(chat.chat_id)) == 1
    assert chat.standin.early_retries == []


def test_the_words_under_an_evidence_photo_join_the_description(chat: Chat) -> None:
    """At the evidence step a resident writes under a photo what it shows: the words are added to "what happened"
    (the summary shows them, and they can be changed there), not dropped."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.standin.send_photo(chat.chat_id, JPEG, caption="照片中穿蓝色制服、低头看手机的就是该工作人员。")
    chat.expect("已收到第 1 个文件")
    chat.expect("图片下的文字已加入“经过”")
    chat.press("evidence:done", expect="第6步")
    summary = chat.press("identity:anonymous", expect="请核对举报内容")
    assert f"经过：{DESCRIPTION}\n照片中穿蓝色制服、低头看手机的就是该工作人员。\n" in summary


def test_a_first_message_of_a_photo_and_its_story_is_offered_as_a_report_with_both(chat: Chat) -> None:
    """A resident's very first message is a photo with the complaint written under it: the offer to report quotes
    the words, and the report then has both, without asking for the description again."""
    chat.standin.send_photo(chat.chat_id, JPEG, caption=DESCRIPTION)
    offer = chat.expect("您发来的内容")
    assert DESCRIPTION[:20] in offer and "已收到 1/5 个文件" in offer
    chat.press("intake:report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第5步")
    chat.press("evidence:done", expect="第6步")
    summary = chat.press("identity:anonymous", expect="请核对举报内容")
    assert f"经过：{DESCRIPTION}\n" in summary and "证据：1 个文件" in summary


def _to_the_evidence_step(chat: Chat) -> None:
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")


def _files_of_the_case(service: LiveService, chat: Chat) -> list[bytes]:
    with _db(service) as db:
        names = [row[0] for row in db.execute(
            "SELECT stored_name FROM attachments WHERE case_id = (SELECT id FROM cases WHERE reporter_key = ?) "
            "ORDER BY id", (_reporter(chat),))]
    return [evidence_content(service.data_dir / "evidence", name) for name in names]


def _said_since(chat: Chat, seen: int) -> list[str]:
    return [m.get("text") or "" for m in chat.standin.sent_messages(chat.chat_id)[seen:]]


def test_an_album_at_the_evidence_step_is_answered_once_and_every_photo_is_kept(chat: Chat,
                                                                                service: LiveService) -> None:
    """Telegram delivers an album of three photos as three updates with one media_group_id: the resident gets one
    acknowledgement for the three and the evidence question once, and the case has all three photos."""
    _to_the_evidence_step(chat)
    chat.settle(service)
    seen = chat.seen
    photos = [plain_photo(320, 240, shade=shade) for shade in (30, 110, 190)]
    chat.standin.send_album(chat.chat_id, photos)
    chat.settle(service)
    said = _said_since(chat, seen)
    assert said[0] == "已收到这一组的 3 个文件（共 3/5 个），照片中的位置、文档中的作者等隐藏信息已删除。"
    assert len(said) == 2 and said[1].startswith("第5步") and said[1].endswith("已收到 3/5 个文件。")
    chat.press("evidence:done", expect="第6步")
    assert "证据：3 个文件" in chat.press("identity:anonymous", expect="请核对举报内容")
    chat.press("summary:submit", expect="举报已提交")
    assert sorted(picture_of(content) for content in _files_of_the_case(service, chat)) == sorted(
        picture_of(photo) for photo in photos)


def test_an_albums_photos_are_kept_in_the_order_they_were_sent_when_the_first_downloads_slowest(
        chat: Chat, service: LiveService) -> None:
    """The photos of an album are downloaded side by side; the first one's download takes longest. The case's
    evidence (what staff see, in order) is still the album's order, and the counts the resident reads follow it."""
    _to_the_evidence_step(chat)
    chat.settle(service)
    seen = chat.seen
    photos = [plain_photo(width, 200, shade=shade) for width, shade in ((320, 30), (300, 110), (280, 190))]
    chat.standin.send_album(chat.chat_id, photos, download_seconds=[1.0])
    chat.settle(service)
    assert _said_since(chat, seen)[0].startswith("已收到这一组的 3 个文件（共 3/5 个）")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:anonymous", expect="请核对举报内容")
    chat.press("summary:submit", expect="举报已提交")
    assert [picture_of(content) for content in _files_of_the_case(service, chat)] == [
        picture_of(photo) for photo in photos]


def test_an_album_over_the_evidence_limit_keeps_what_fits_and_says_once_what_did_not(chat: Chat,
                                                                                    service: LiveService) -> None:
    """One photo sent before, then an album of six: four fit under the limit of five; the resident is told once that
    two of the album were over it, and asked the question once."""
    _to_the_evidence_step(chat)
    chat.standin.send_photo(chat.chat_id, JPEG)
    chat.expect("已收到第 1 个文件")
    chat.settle(service)
    seen = chat.seen
    chat.standin.send_album(chat.chat_id, [plain_photo(200, 150, shade=shade) for shade in range(10, 70, 10)])
    chat.settle(service)
    assert _said_since(chat, seen) == [
        "已收到这一组的 4 个文件（共 5/5 个），照片中的位置、文档中的作者等隐藏信息已删除。",
        "证据最多5个文件，这一组中有 2 个超出上限，没有保存。"
        "如需换成这些文件，可先点“删除已上传的全部文件”，再重新发送。",
        chat.standin.sent_messages(chat.chat_id)[-1]["text"],
    ]
    assert chat.standin.sent_messages(chat.chat_id)[-1]["text"].startswith("第5步")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:anonymous", expect="请核对举报内容")
    chat.press("summary:submit", expect="举报已提交")
    assert len(_files_of_the_case(service, chat)) == 5


def test_the_residents_own_contact_card_answers_the_real_name_question(chat: Chat, service: LiveService) -> None:
    """Asked for their name for a real-name report, a resident taps "share contact": their own card fills the name
    and the mobile number, checked as typed ones are; someone else's card is refused with the reason, and a card
    where no name is asked is explained, not silently dropped."""
    chat.say("/report", expect="第1步")
    chat.standin.send_contact(chat.chat_id, "13912345678", "伟", contact_last_name="张",
                              contact_user_id=chat.chat_id)
    chat.expect("名片只在实名举报填写姓名和手机号时使用")
    chat.expect("第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:real", expect="请输入您的姓名")
    chat.standin.send_contact(chat.chat_id, "13700001111", "李四", contact_user_id=chat.chat_id + 1)
    chat.expect("这张名片不是您本人的")
    chat.expect("请输入您的姓名")
    chat.standin.send_contact(chat.chat_id, "+86 139 1234 5678", "伟", contact_last_name="张",
                              contact_user_id=chat.chat_id)
    summary = chat.expect("请核对举报内容")
    assert "身份：张伟 139****5678" in summary
    chat.press("summary:submit", expect="举报已提交")
    with _db(service) as db:
        name, phone, anonymous = db.execute(
            "SELECT reporter_name, reporter_phone, anonymous FROM cases WHERE reporter_key = ?",
            (_reporter(chat),)).fetchone()
    keys = make_test_keyring()
    assert (keys.decrypt(name, purpose="cases.reporter_name"), keys.decrypt(phone, purpose="cases.reporter_phone"),
            anonymous) == ("张伟", "13912345678", 0)


def test_a_long_pasted_description_that_telegram_split_in_two_is_judged_whole(chat: Chat,
                                                                             service: LiveService) -> None:
    """A resident pastes a description of 5000 characters; their Telegram client sends it as two messages (4096 and
    904 characters). The tail alone must not become the description: the resident is told once that the whole text
    is over the limit of 3000 and what of it was kept (what fits, as for a first message), and goes on to the
    evidence; the summary shows the part kept."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.settle(service)
    seen = chat.seen
    pasted = (DESCRIPTION * 200)[:5000]
    chat.standin.send_text(chat.chat_id, pasted[:4096])
    chat.standin.send_text(chat.chat_id, pasted[4096:])
    chat.settle(service)
    said = _said_since(chat, seen)
    assert len(said) == 2, said
    assert said[0].startswith("您发来的内容共5000字，超过了“经过”3000字的上限。已把前")
    assert said[-1].startswith("第5步")
    chat.press("evidence:done", expect="第6步")
    assert f"经过：{DESCRIPTION}" in chat.press("identity:anonymous", expect="请核对举报内容")


def test_a_complaint_pasted_as_the_first_message_that_telegram_split_in_two_is_judged_whole(
        chat: Chat, service: LiveService) -> None:
    """A resident opens the bot by pasting their complaint of 5000 characters; their client sends it as two messages
    (4096 and 904). Neither part is taken on its own: the resident is told once what of the whole was kept (the
    3000 characters that fit; it was refused whole, "在下一步上传" where there was no step yet), and offered the report
    with it."""
    chat.settle(service)
    seen = chat.seen
    pasted = (DESCRIPTION * 200)[:5000]
    chat.standin.send_text(chat.chat_id, pasted[:4096])
    chat.standin.send_text(chat.chat_id, pasted[4096:])
    chat.settle(service)
    said = _said_since(chat, seen)
    assert len(said) == 2 and said[0].startswith("您发来的内容共5000字，超过了“经过”3000字的上限。已把前")
    assert "下一步" not in said[0] and said[1].startswith("您发来的内容：")
    assert chat.buttons() == ["intake:report", "intake:menu"]


def _staff_answers_and_closes(service: LiveService, case_id: int) -> None:
    import asyncio

    from storage import actions
    from storage.db import create_engine, create_sessionmaker
    from storage.models import CaseStatus

    async def act() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}", make_test_keyring())
        async with create_sessionmaker(engine).begin() as session:
            case = await actions.get_case(session, case_id)
            assert case is not None
            await actions.reply_to_reporter(session, case, "经核查，已对该工作人员批评教育。", actor="staff:test")
            await actions.change_status(session, case, CaseStatus.CLOSED, actor="staff:test")
        await engine.dispose()

    asyncio.run(act())


def test_flood_control_and_server_errors_lose_nothing(chat: Chat, service: LiveService) -> None:
    standin = chat.standin
    chat.say("/start", expect="清廉监督举报平台")
    chat.settle(service)
    standin.fail_next("sendMessage", count=1, status=429, retry_after=2)
    standin.fail_next("sendMessage", count=2, status=502, retry_after=None, description="Bad Gateway")
    standin.send_text(chat.chat_id, "/report")
    chat.expect("开始举报", timeout=30)
    chat.expect("第1步", timeout=30)
    chat.press("district:kaifu", expect="第2步")
    texts = [m["text"] for m in standin.sent_messages(chat.chat_id)]
    assert texts.count(next(t for t in texts if "开始举报" in t)) == 1
    assert standin.early_retries == []  # nothing was sent while Telegram's flood control lasted


@pytest.fixture
def webhook_service(tmp_path: Path) -> Iterator[tuple[TelegramStandIn, LiveService]]:
    standin = TelegramStandIn(token=TOKEN)
    standin.start()
    live = LiveService(tmp_path / "webhook", {
        "QINGLIAN_TELEGRAM_TOKEN": TOKEN, "QINGLIAN_TELEGRAM_API_URL": standin.root_url,
        "QINGLIAN_TELEGRAM_WEBHOOK_SECRET": "hook-secret-123",
    })
    live.env["QINGLIAN_TELEGRAM_WEBHOOK_URL"] = f"{live.url}/telegram/webhook"
    live.start()
    yield standin, live
    live.stop()
    standin.stop()
    assert standin.violations == []


def test_webhook_mode_checks_the_secret_and_files_reports(webhook_service: tuple[TelegramStandIn, LiveService]) -> None:
    standin, live = webhook_service
    assert standin.webhook_url == f"{live.url}/telegram/webhook"
    update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"},
                                          "text": "/report"}}
    forged = httpx.post(f"{live.url}/telegram/webhook", json=update,
                        headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})
    missing = httpx.post(f"{live.url}/telegram/webhook", json=update)
    assert (forged.status_code, missing.status_code) == (403, 403)
    chat = Chat(standin, 777)
    code = file_report(chat)
    chat.say(f"/status {code}", expect="当前状态")
    assert standin.webhook_deliveries
    assert not standin.requests_for("getUpdates")


def test_an_oversized_webhook_body_is_refused_while_it_streams(
        webhook_service: tuple[TelegramStandIn, LiveService]) -> None:
    _standin, live = webhook_service
    headers = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret-123", "Content-Type": "application/json"}
    padding = b" " * 64 * 1024

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold on the stream itself
        yield b'{"update_id": 5, "padding": "'
        for _ in range(40):  # 2.5 MB
            yield padding
        yield b'"}'

    refused = httpx.post(f"{live.url}/telegram/webhook", content=chunked(), headers=headers)
    declared = httpx.post(f"{live.url}/telegram/webhook", content=b"{" + b" " * 1_100_000 + b"}", headers=headers)
    assert (refused.status_code, declared.status_code) == (413, 413)
    assert "larger than" in refused.json()["detail"]


def test_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(free_port())], cwd=REPO, capture_output=True,
        text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_TELEGRAM_TOKEN": "not-a-token"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "qinglian: invalid setting QINGLIAN_TELEGRAM_TOKEN: "
        "must look like 123456:ABC-DEF (the token BotFather gave you)"
    ]


def test_zz_the_service_log_holds_no_report_text_or_identity(service: LiveService) -> None:
    """Runs last in this module: everything above went through this service."""
    log = service.log()
    assert len(log) > 0
    for secret in (DESCRIPTION, "岳麓区政务服务中心3号窗口", "Zhang Wei", "13912345678", "王五", "13712345678", "张伟",
                   "补充：该窗口工作人员工号0327", "经核查，已对该工作人员批评教育", "字字字字字字字字"):
        assert secret not in log, f"{secret!r} leaked into the service log"
    assert not re.search(r"\b\d{4} \d{4} \d{4} \d{4}\b", log), "a receipt code leaked into the service log"
    assert not re.search(r"\b\d{17}[\dXx]\b", log), "something shaped like an ID-card number is in the log"


def test_debug_logging_keeps_the_bot_token_chat_ids_and_the_residents_words_out(tmp_path: Path) -> None:
    """An operator who turns QINGLIAN_LOG_LEVEL=DEBUG on to chase a problem gets the service's own details, not the
    libraries' dumps of what they carry: the bot token (in the Bot API address), the residents' chat ids and
    words, the receipt codes sent to them, the database statements' parameters (staff sessions' tokens)."""
    server = TelegramStandIn(token=TOKEN)
    server.start()
    live = LiveService(tmp_path / "debug", {"QINGLIAN_TELEGRAM_TOKEN": TOKEN,
                                            "QINGLIAN_TELEGRAM_API_URL": server.root_url,
                                            "QINGLIAN_LOG_LEVEL": "DEBUG"})
    live.start()
    try:
        chat = Chat(server, 7301)
        code = file_report(chat, real_name=("赵六", "13612345678"))
        chat.settle(live)
    finally:
        live.stop()
        server.stop()
    log = live.log()
    assert "DEBUG" in log  # the level was on
    for secret in (TOKEN, "TEST-qinglian", DESCRIPTION, "岳麓区政务服务中心3号窗口", "赵六", "13612345678", code,
                   code.replace(" ", ""), str(chat.chat_id)):
        assert secret not in log, f"{secret!r} is in the service's DEBUG log"
    with _db(live) as db:
        csrf_tokens = [row[0] for row in db.execute("SELECT csrf_token FROM staff_sessions")]
    assert all(token not in log for token in csrf_tokens)
