"""The Telegram adapter in-process, against the stand-in Bot API server (which checks every request against the
official Bot API description): how an update becomes the dialog's input — text, commands, button presses, files —
and which updates are not for the dialog; how a reply and its inline keyboard become one `sendMessage`; how
Telegram's refusals are classified for the outbox (flood control waits `retry_after`, a blocked bot or a bad
request fails for good, server errors are retried); what the channel registers when it starts (commands, webhook,
nothing at all for a sending-only worker); long polling that waits out flood control and acknowledges handled
updates; and the apology a resident gets when their step fails. Tests that touch the database (the outbox, the
shared send budget) run on SQLite and the PostgreSQL on 127.0.0.1. The whole service end to end is in
tests/channels/test_telegram.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from telegram import Update

from bot.channels.telegram import (
    Outage,
    TelegramChannel,
    contact_name,
    in_parts,
    keyboard,
    parse_command,
    split_text,
    to_inbound,
)
from bot.config import Settings
from bot.outbox import PermanentFailure, TemporaryFailure
from bot.runtime import Runtime
from handlers.types import Choice, Inbound, Outbound, SharedContact
from storage import outbox
from storage.models import OutboxMessage
from tests.standins.telegram_server import TelegramStandIn

TOKEN = "424242:TEST-qinglian"
SECRET_KEY = "telegram-channel-test-secret-" + "k" * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
WELCOME_EN = "Hello! This is the Changsha integrity reporting service."
BUSY_EN = "Sorry, the service is busy. Your answers so far are kept; please try again shortly."
BUSY_ZH = "抱歉，系统繁忙，您已填写的内容不会丢失，请稍后再试。"


@pytest.fixture(scope="module")
def server() -> Iterator[TelegramStandIn]:
    with TelegramStandIn(token=TOKEN) as running:
        yield running


@pytest.fixture
def standin(server: TelegramStandIn) -> Iterator[TelegramStandIn]:
    """The module's stand-in with its logs, faults and pending updates cleared (each test has its own chats); a
    test that passed sent nothing the Bot API description does not allow."""
    server.reset()
    yield server
    assert server.violations == []


@pytest.fixture
def own_standin() -> Iterator[TelegramStandIn]:
    """A stand-in of its own, for a test that leaves a webhook set."""
    with TelegramStandIn(token=TOKEN) as running:
        yield running
    assert running.violations == []


def _settings(tmp_path: Path, database_url: str, standin: TelegramStandIn, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, secret_key=SECRET_KEY, telegram_token=TOKEN,
                    telegram_api_url=standin.root_url, **extra)


@asynccontextmanager
async def _channel(settings: Settings, *, receive: bool = False) -> AsyncIterator[tuple[TelegramChannel, Runtime]]:
    """The channel started as `qinglian serve` starts it (`receive`) or as a sending-only worker does."""
    runtime = Runtime.build(settings)
    channel = TelegramChannel(settings, runtime)
    try:
        await channel.start(receive=receive)
        yield channel, runtime
    finally:
        await channel.stop()
        await runtime.close()


def _update(standin: TelegramStandIn, update_id: int) -> Update:
    """An update the stand-in made for a simulated user, as python-telegram-bot reads it."""
    return Update.de_json(standin.update(update_id), None)


def _raw(update_id: int, chat: dict[str, Any], **content: Any) -> Update:
    message = {"message_id": 7, "date": 1_790_000_000, "chat": chat,
               "from": {"id": 5200, "is_bot": False, "first_name": "Li", "language_code": "zh-hans"}, **content}
    return Update.de_json({"update_id": update_id, "message": message}, None)


PRIVATE = {"id": 5200, "type": "private", "first_name": "Li"}


def _fetcher(file_id: str) -> Callable[[], Awaitable[bytes]]:
    async def fetch() -> bytes:
        return f"downloaded {file_id}".encode()

    return fetch


# --- updates in -----------------------------------------------------------------------------------


def test_a_command_is_read_in_lower_case_without_the_bots_username_with_its_argument() -> None:
    assert parse_command("/status@QinglianBot 1234 5678") == ("status", "1234 5678")
    assert parse_command("/Report") == ("report", None)
    assert parse_command("/cancel   ") == ("cancel", None)
    assert parse_command("/status  1234 5678 9012 3456 ") == ("status", "1234 5678 9012 3456")
    assert [parse_command(text) for text in ("status 1234", "", "/", "/ report", "/@QinglianBot")] == [None] * 5


def test_a_command_with_its_argument_on_the_next_line_is_still_that_command() -> None:
    assert parse_command("/status\n1234 5678 9012 3456") == ("status", "1234 5678 9012 3456")


async def test_text_commands_and_button_presses_in_a_private_chat_become_the_dialogs_input(
        standin: TelegramStandIn) -> None:
    typed = standin.send_text(5201, "岳麓区政务服务中心3号窗口", deliver=False)
    command = standin.send_text(5201, "/status@qinglian_test_bot 1234 5678 9012 3456", language_code="en",
                                deliver=False)
    pressed = standin.press_button(5201, "district:yuelu", message_id=3, language_code="en", deliver=False)
    typed_message = _update(standin, typed).message
    assert typed_message is not None
    assert to_inbound(_update(standin, typed), _fetcher) == Inbound(
        "telegram", "5201", "zh-hans", text="岳麓区政务服务中心3号窗口", update_key=str(typed),
        sequence=typed_message.message_id, sent_at=typed_message.date)  # a cut text's rest: the next, moments after
    assert to_inbound(_update(standin, command), _fetcher) == Inbound(
        "telegram", "5201", "en", command="status", command_arg="1234 5678 9012 3456", update_key=str(command))
    assert to_inbound(_update(standin, pressed), _fetcher) == Inbound(
        "telegram", "5201", "en", choice="district:yuelu", update_key=str(pressed))


async def test_a_photo_is_fetched_at_its_largest_size_and_a_document_keeps_its_name_type_and_size(
        standin: TelegramStandIn) -> None:
    sizes = [{"file_id": f"AgACAgUAAx-{width}", "file_unique_id": f"AQADx{width}", "width": width,
              "height": width * 9 // 16, "file_size": size} for width, size in ((90, 1_210), (320, 9_870),
                                                                                  (1280, 96_544))]
    photo = to_inbound(_raw(9201, PRIVATE, photo=sizes, caption="3号窗口"), _fetcher)
    made = standin.update(standin.send_document(5202, b"%PDF-1.4 receipt", "小票.pdf", "application/pdf"))
    document = to_inbound(Update.de_json(made, None), _fetcher)
    assert photo is not None and photo.attachment is not None and photo.text == "3号窗口"
    assert (photo.attachment.kind, photo.attachment.media_type, photo.attachment.size_bytes,
            photo.attachment.file_name) == ("photo", "image/jpeg", 96_544, None)
    assert photo.attachment.fetch is not None
    assert await photo.attachment.fetch() == b"downloaded AgACAgUAAx-1280"
    assert document is not None and document.attachment is not None
    assert (document.attachment.kind, document.attachment.media_type, document.attachment.size_bytes,
            document.attachment.file_name) == ("document", "application/pdf", 16, "小票.pdf")
    assert document.attachment.fetch is not None
    assert await document.attachment.fetch() == f"downloaded {made['message']['document']['file_id']}".encode()


async def test_other_kinds_of_message_are_named_for_the_dialog_and_offer_nothing_to_download(
        standin: TelegramStandIn) -> None:
    made = {"sticker": standin.send_sticker(5203), "voice": standin.send_voice(5203),
            "location": standin.send_location(5203, 28.23, 112.94)}
    kinds = {name: to_inbound(_update(standin, update_id), _fetcher) for name, update_id in made.items()}
    media = {"file_id": "BAACAgUAAxkBAAIB", "file_unique_id": "AgADBQADxk", "duration": 3}
    raw = {
        "video": _raw(9001, PRIVATE, video={**media, "width": 640, "height": 360}),
        "video_note": _raw(9002, PRIVATE, video_note={**media, "length": 240}),
        "audio": _raw(9003, PRIVATE, audio=media),
        "venue": _raw(9004, PRIVATE, location={"latitude": 28.23, "longitude": 112.94},
                      venue={"location": {"latitude": 28.23, "longitude": 112.94}, "title": "岳麓区政务服务中心",
                             "address": "岳麓区金星中路"}),
        "contact": _raw(9005, PRIVATE, contact={"phone_number": "+8613912345678", "first_name": "Li"}),
    }
    kinds |= {name: to_inbound(update, _fetcher) for name, update in raw.items()}
    assert {name: (inbound.attachment.kind, inbound.attachment.fetch, inbound.user_ref)
            for name, inbound in kinds.items() if inbound is not None and inbound.attachment is not None} == {
        "sticker": ("sticker", None, "5203"), "voice": ("voice", None, "5203"),
        "location": ("location", None, "5203"), "video": ("video", None, "5200"),
        "video_note": ("video", None, "5200"), "audio": ("audio", None, "5200"),
        "venue": ("location", None, "5200"), "contact": ("contact", None, "5200"),
    }
    # a card from the address book, of someone not on Telegram: not the sender's own
    assert kinds["contact"] is not None and kinds["contact"].attachment is not None
    assert kinds["contact"].attachment.contact == SharedContact("Li", "+8613912345678", own=False)
    places = {name: inbound.attachment.place for name, inbound in kinds.items()
              if inbound is not None and inbound.attachment is not None and inbound.attachment.place}
    assert places == {"location": "28.23000, 112.94000", "venue": "岳麓区政务服务中心 岳麓区金星中路"}


async def test_group_messages_channel_posts_edits_and_membership_changes_are_not_for_the_dialog(
        standin: TelegramStandIn) -> None:
    group = {"id": -1001234500077, "type": "supergroup", "title": "清廉大厅监督组"}
    in_group = _raw(9101, group, text="/status 1234 5678 9012 3456")
    press_in_group = Update.de_json({"update_id": 9102, "callback_query": {
        "id": "77", "chat_instance": "1", "data": "case:follow_up",
        "from": {"id": 5204, "is_bot": False, "first_name": "Li"},
        "message": {"message_id": 4, "date": 1_790_000_000, "chat": group, "text": "新案件"}}}, None)
    inline_press = Update.de_json({"update_id": 9103, "callback_query": {
        "id": "78", "chat_instance": "1", "data": "menu:report", "inline_message_id": "AAAAAQ",
        "from": {"id": 5204, "is_bot": False, "first_name": "Li"}}}, None)
    post = Update.de_json({"update_id": 9104, "channel_post": {
        "message_id": 1, "date": 1_790_000_000, "chat": {"id": -1009876, "type": "channel", "title": "公告"},
        "text": "/report"}}, None)
    edited = Update.de_json({"update_id": 9105, "edited_message": {
        "message_id": 2, "date": 1_790_000_000, "edit_date": 1_790_000_100, "chat": PRIVATE, "text": "/report"}},
        None)
    kicked = standin.block_user(5204)  # the bot is told with a `my_chat_member` update
    assert kicked is not None
    blocked = _update(standin, kicked)
    assert [to_inbound(update, _fetcher) for update in (in_group, press_in_group, inline_press, post, edited,
                                                         blocked)] == [None] * 6


def test_a_keyboard_is_laid_out_in_the_messages_columns_and_a_message_without_choices_has_none() -> None:
    districts = tuple(Choice(f"district:{code}", name) for code, name in (
        ("furong", "芙蓉区"), ("tianxin", "天心区"), ("yuelu", "岳麓区"), ("kaifu", "开福区"), ("yuhua", "雨花区")))

    def rows(message: Outbound) -> list[list[tuple[str, str]]] | None:
        markup = keyboard(message)
        if markup is None:
            return None
        return [[(button["text"], button["callback_data"]) for button in row] for row in markup["inline_keyboard"]]

    assert rows(Outbound("第1步", districts, columns=2)) == [
        [("芙蓉区", "district:furong"), ("天心区", "district:tianxin")],
        [("岳麓区", "district:yuelu"), ("开福区", "district:kaifu")],
        [("雨花区", "district:yuhua")]]
    assert rows(Outbound("第1步", districts[:2], columns=0)) == [[("芙蓉区", "district:furong")],
                                                                 [("天心区", "district:tianxin")]]
    assert rows(Outbound("第1步", districts[:2], columns=3)) == [[("芙蓉区", "district:furong"),
                                                                  ("天心区", "district:tianxin")]]
    assert rows(Outbound("已取消本次举报。", (), columns=2)) is None


def test_a_text_longer_than_telegram_takes_is_cut_at_paragraphs_then_lines_then_at_the_limit() -> None:
    assert split_text("短消息") == ["短消息"]
    assert split_text("甲" * 6 + "\n乙乙\n\n" + "丙" * 5, limit=10) == ["甲" * 6 + "\n乙乙", "丙" * 5]
    assert split_text("甲" * 6 + "\n" + "乙" * 6, limit=10) == ["甲" * 6, "乙" * 6]
    assert split_text("甲" * 25, limit=10) == ["甲" * 10, "甲" * 10, "甲" * 5]
    assert split_text("甲" * 4 + "\n" * 20, limit=10) == ["甲" * 4]


def test_a_long_reply_is_stored_as_its_parts_with_the_keyboard_and_offer_under_the_last() -> None:
    menu = (Choice("case:follow_up", "补充材料"),)
    stored = in_parts([Outbound("甲" * 4000 + "\n\n" + "乙" * 3000, menu, notice_offer=7), Outbound("您还可以：")])
    assert stored == [{"text": "甲" * 4000, "choices": [], "columns": 1},
                      {"text": "乙" * 3000, "choices": [["case:follow_up", "补充材料"]], "columns": 1,
                       "notice_offer": 7},
                      {"text": "您还可以：", "choices": [], "columns": 1}]


# --- replies out ----------------------------------------------------------------------------------


async def test_a_reply_is_one_send_message_with_its_keyboard_to_a_resident_or_a_staff_group(
        standin: TelegramStandIn, tmp_path: Path, database_url: str) -> None:
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, _runtime):
        await channel.send("5301", Outbound("请选择：", (Choice("menu:report", "📝 我要举报"),
                                                         Choice("menu:status", "🔎 查询进度"),
                                                         Choice("menu:help", "❓ 使用说明")), columns=2))
        await channel.send("5301", Outbound("已取消本次举报。"))
        await channel.send("-1001234500077", Outbound("新案件 QL-2026-000001"))
    question, plain = standin.sent_messages(5301)
    assert (question["method"], question["text"]) == ("sendMessage", "请选择：")
    assert question["reply_markup"] == {"inline_keyboard": [
        [{"text": "📝 我要举报", "callback_data": "menu:report"},
         {"text": "🔎 查询进度", "callback_data": "menu:status"}],
        [{"text": "❓ 使用说明", "callback_data": "menu:help"}]]}
    assert (plain["text"], plain["reply_markup"]) == ("已取消本次举报。", None)
    assert "reply_markup" not in plain["params"]
    assert [m["text"] for m in standin.sent_messages(-1001234500077)] == ["新案件 QL-2026-000001"]
    assert [method for method, _ in standin.requests if method != "getMe"] == ["sendMessage"] * 3


async def test_flood_control_is_a_temporary_failure_that_waits_for_telegrams_retry_after(
        standin: TelegramStandIn, tmp_path: Path, database_url: str) -> None:
    standin.fail_next("sendMessage", status=429, retry_after=4)
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, _runtime):
        with pytest.raises(TemporaryFailure) as limited:
            await channel.send("5302", Outbound("第1步"))
    assert limited.value.retry_after == 4.0
    assert str(limited.value) == "flood control: Flood control exceeded. Retry in 4 seconds"
    assert standin.sent_messages(5302) == []


async def test_a_resident_who_blocked_the_bot_fails_for_good_and_the_outbox_records_why(
        standin: TelegramStandIn, tmp_path: Path, database_url: str) -> None:
    standin.block_user(5303)
    standin.fail_next("sendMessage", status=403, description="Forbidden: bot can't initiate conversation with a user")
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, runtime):
        with pytest.raises(PermanentFailure) as never_started:
            await channel.send("5304", Outbound("您的举报已受理。"))
        async with runtime.sessionmaker.begin() as session:
            await outbox.enqueue(session, channel="telegram", recipient="5303", payload={"text": "收到办理答复"})
        assert await runtime.outbox.deliver_once() == 1
        async with runtime.sessionmaker() as session:
            rows = (await session.execute(select(OutboxMessage.recipient, OutboxMessage.status,
                                                 OutboxMessage.last_error))).all()
    assert str(never_started.value) == "forbidden: Forbidden: bot can't initiate conversation with a user"
    assert [tuple(row) for row in rows] == [
        ("5303", "failed", "blocked: the resident blocked the bot (Forbidden: bot was blocked by the user)")]
    assert standin.sent_messages(5303) == standin.sent_messages(5304) == []


async def test_a_bad_request_fails_for_good_and_telegrams_server_errors_are_retried(
        standin: TelegramStandIn, tmp_path: Path, database_url: str) -> None:
    failures: dict[str, Exception] = {}
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, _runtime):
        for status, description in ((400, "Bad Request: chat not found"), (500, None), (502, None)):
            standin.fail_next("sendMessage", status=status, retry_after=None, description=description)
            try:
                await channel.send("5305", Outbound("第2步"))
            except Exception as failure:  # noqa: BLE001 - each kind is checked below
                failures[str(status)] = failure
        await channel.send("5305", Outbound("第2步"))  # nothing else is wrong with the chat
    assert {status: (type(failure).__name__, str(failure), getattr(failure, "retry_after", None))
            for status, failure in failures.items()} == {
        "400": ("PermanentFailure", "bad request: Chat not found", None),
        "500": ("TemporaryFailure", "network: Internal Server Error", None),
        "502": ("TemporaryFailure", "network: Bad Gateway", None),
    }
    assert [m["text"] for m in standin.sent_messages(5305)] == ["第2步"]


async def test_a_token_telegram_no_longer_accepts_is_a_temporary_failure_named_as_such(
        standin: TelegramStandIn, tmp_path: Path, never_opened: str) -> None:
    standin.fail_next("sendMessage", status=401, retry_after=None, description="Unauthorized")
    async with _channel(_settings(tmp_path, never_opened, standin)) as (channel, _runtime):
        with pytest.raises(TemporaryFailure, match=r"^invalid token: "):
            await channel.send("5306", Outbound("第1步"))


@pytest.mark.parametrize("receive", [True, False], ids=["serve", "worker"])
async def test_a_token_refused_at_start_is_one_line_without_the_token_and_the_channel_keeps_trying(
        standin: TelegramStandIn, tmp_path: Path, never_opened: str, caplog: pytest.LogCaptureFixture,
        receive: bool) -> None:
    """Seen deploying: a revoked token (or no route to Telegram) crashed serve and the worker at start with a
    traceback that printed the token, and took the web chat and WeChat down with them."""
    standin.fail_next("getMe", status=401, retry_after=None, description="Unauthorized")
    settings = _settings(tmp_path, never_opened, standin)
    runtime = Runtime.build(settings)
    channel = TelegramChannel(settings, runtime, retry_seconds=0.05)
    try:
        with caplog.at_level(logging.ERROR, logger="bot.channels.telegram"):
            await channel.start(receive=receive)  # does not raise: the rest of the service starts
        refused = [record.getMessage() for record in caplog.records]
        assert len(refused) == 1 and "refused QINGLIAN_TELEGRAM_TOKEN" in refused[0]
        assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text
        for _ in range(100):  # the next try succeeds: the channel starts and sends
            if channel.started:
                break
            await asyncio.sleep(0.05)
        assert channel.started
    finally:
        await channel.stop()
        await runtime.close()


async def test_an_outage_of_the_bot_api_is_one_line_when_it_starts_and_one_when_it_ends_without_the_token(
        own_standin: TelegramStandIn, tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Seen reading the logs while Telegram could not be reached: one WARNING every 2 s (43,000 a day), each with
    the Bot API address and the bot's token in it. Now one line when it starts, one when it ends (how long)."""
    settings = _settings(tmp_path, database_url, own_standin)
    runtime = Runtime.build(settings)
    channel = TelegramChannel(settings, runtime, poll_backoff_seconds=0.02)
    try:
        await channel.start(receive=True)
        first = own_standin.send_text(5410, "/start", language_code="en")
        await asyncio.to_thread(own_standin.wait_until, lambda: own_standin.is_confirmed(first), 15, "polling")
        with caplog.at_level(logging.INFO, logger="bot.channels.telegram"):
            own_standin.stop()  # the Bot API goes away: connections refused, then the same address answers again
            for _ in range(500):
                if channel.polling_outage.failures >= 20:
                    break
                await asyncio.sleep(0.02)
            assert channel.polling_outage.failures >= 20
            own_standin.start()
            again = own_standin.send_text(5410, "/help", language_code="en")
            await asyncio.to_thread(own_standin.wait_until, lambda: own_standin.is_confirmed(again), 15,
                                    "polling again")
    finally:
        await channel.stop()
        await runtime.close()
    lines = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    assert lines[0].startswith("telegram: getUpdates fails, no update is received: the Bot API at "
                               f"{own_standin.root_url} cannot be reached")
    assert "trying again every 0.02 s" in lines[0]
    assert re.fullmatch(r"telegram: getUpdates works again after \d+ s \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, "
                        r"\d+ tries failed\)", lines[1]), lines[1]
    assert TOKEN.split(":")[1] not in caplog.text


def test_a_days_outage_is_a_few_dozen_lines_reminding_at_growing_intervals(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    outage = Outage("getUpdates fails", "trying again every 2 s", clock=lambda: now[0], wall_clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="bot.channels.telegram"):
        while now[0] < 1000.0 + 86400:
            outage.failed("the Bot API at https://api.telegram.org cannot be reached: Bad Gateway")
            now[0] += 2.0
        outage.ended("getUpdates works again")
    lines = [record.getMessage() for record in caplog.records]
    assert 20 <= len(lines) <= 40, len(lines)
    assert lines[1].startswith("telegram: getUpdates fails for 1 min now (31 tries failed): the Bot API")
    assert lines[2].startswith("telegram: getUpdates fails for 3 min now")  # twice as late as the one before
    assert lines[-2].startswith("telegram: getUpdates fails for 23 h")  # hourly at most
    assert lines[-1] == ("telegram: getUpdates works again after 1 d (since 1970-01-01 00:00:00 UTC, 43200 tries "
                         "failed)")


async def test_a_word_to_a_group_that_cannot_be_sent_is_logged_without_the_chats_id(
        standin: TelegramStandIn, tmp_path: Path, never_opened: str, caplog: pytest.LogCaptureFixture) -> None:
    """Seen reading a normal day's log: `could not send telegram_group_private to chat -100…` — a chat's id is a
    channel identity, which docs/deploy.md (section 15) says the logs never hold."""
    group, member = -1001234500456, 5420
    standin.fail_next("sendMessage", status=403, retry_after=None,
                      description="Forbidden: bot was kicked from the supergroup chat")
    async with _channel(_settings(tmp_path, never_opened, standin)) as (channel, _runtime):
        with caplog.at_level(logging.DEBUG, logger="bot.channels.telegram"):
            await channel.process_webhook(standin.update(standin.send_text(group, "/report", user_id=member,
                                                                           deliver=False)))
    [line] = [record.getMessage() for record in caplog.records if "could not send" in record.getMessage()]
    assert "telegram_group_private" in line
    assert str(group) not in caplog.text and str(member) not in caplog.text


# --- the channel receiving ------------------------------------------------------------------------


async def test_a_button_press_is_answered_and_runs_the_step_even_when_telegram_refuses_the_answer(
        standin: TelegramStandIn, tmp_path: Path, database_url: str) -> None:
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, runtime):
        await channel.process_webhook(standin.update(standin.send_text(5401, "/report", deliver=False)))
        await runtime.outbox.deliver_once()  # the district question with its buttons
        first = standin.press_button(5401, "district:yuelu", deliver=False)
        await channel.process_webhook(standin.update(first))
        await channel.process_webhook(standin.update(standin.send_text(5401, "岳麓区政务服务中心3号窗口",
                                                                       deliver=False)))
        await runtime.outbox.deliver_once()
        standin.fail_next("answerCallbackQuery", status=400, retry_after=None,
                          description="Bad Request: query is too old and response timeout expired or query ID is "
                                      "invalid")
        late = standin.press_button(5401, "when:today", deliver=False)
        await channel.process_webhook(standin.update(late))
        await runtime.outbox.deliver_once()
    steps = [m["text"][:3] for m in standin.sent_messages(5401) if m["text"].startswith("第")]
    assert steps == ["第1步", "第2步", "第3步", "第4步"]
    assert standin.callback_answer(first) is not None
    assert standin.callback_answer(late) is None  # refused by Telegram; the step ran all the same


async def test_a_sending_only_worker_registers_nothing_with_telegram_and_delivers_the_outbox(
        standin: TelegramStandIn, tmp_path: Path, database_url: str) -> None:
    async with _channel(_settings(tmp_path, database_url, standin), receive=False) as (_started, runtime):
        async with runtime.sessionmaker.begin() as session:
            await outbox.enqueue(session, channel="telegram", recipient="5402",
                                 payload=Outbound("请选择：", (Choice("rate:5", "★★★★★"),)).to_payload())
        assert await runtime.outbox.deliver_once() == 1
    assert [method for method, _ in standin.requests] == ["getMe", "sendMessage"]
    [sent] = standin.sent_messages(5402)
    assert sent["reply_markup"] == {"inline_keyboard": [[{"text": "★★★★★", "callback_data": "rate:5"}]]}


async def test_long_polling_waits_out_flood_control_and_acknowledges_an_update_once_its_step_is_done(
        standin: TelegramStandIn, tmp_path: Path, database_url: str) -> None:
    standin.fail_next("getUpdates", status=429, retry_after=1)
    async with _channel(_settings(tmp_path, database_url, standin), receive=True) as (_started, runtime):
        started = standin.send_text(5403, "/start", language_code="en")
        await asyncio.to_thread(standin.wait_until, lambda: standin.is_confirmed(started), 15,
                                "the update acknowledged")
        assert await runtime.outbox.deliver_once() == 1  # the step's reply was committed with it
        polls = standin.requests_for("getUpdates")
    assert standin.early_retries == []  # no getUpdates while Telegram's flood control lasted
    assert polls[0]["allowed_updates"] == ["message", "edited_message", "callback_query"]
    assert [method for method, _ in standin.requests[:5]] == ["getMe", "setMyCommands", "setMyCommands",
                                                              "setMyCommands", "deleteWebhook"]
    assert [c["description"] for c in standin.my_commands()] == [
        "开始 / 主菜单", "我要举报", "查询进度（/status 查询码）", "取消当前操作", "切换语言", "使用说明"]
    assert [c["command"] for c in standin.my_commands(language_code="en")] == [
        "start", "report", "status", "cancel", "language", "help"]
    assert standin.sent_messages(5403)[0]["text"].startswith(WELCOME_EN)


async def test_a_step_that_fails_is_apologised_for_when_polled_and_left_for_telegram_to_resend_when_pushed(
        standin: TelegramStandIn, tmp_path: Path, never_opened: str) -> None:
    async with _channel(_settings(tmp_path, never_opened, standin), receive=False) as (channel, _runtime):
        pushed = standin.send_text(5404, "/report", deliver=False)
        with pytest.raises(OperationalError, match="no such table"):
            await channel.process_webhook(standin.update(pushed))
    assert standin.sent_messages(5404) == []  # the webhook answers an error: Telegram delivers the update again
    async with _channel(_settings(tmp_path, never_opened, standin), receive=True):
        english = standin.send_text(5405, "/report", language_code="en")
        chinese = standin.press_button(5406, "district:yuelu", message_id=2)
        await asyncio.to_thread(standin.wait_until, lambda: standin.is_confirmed(chinese), 15,
                                "both updates acknowledged")
    assert standin.is_confirmed(english)
    assert [m["text"] for m in standin.sent_messages(5405)] == [BUSY_EN]
    assert [m["text"] for m in standin.sent_messages(5406)] == [BUSY_ZH]


async def test_a_resident_who_chose_english_is_apologised_to_in_english(
        standin: TelegramStandIn, tmp_path: Path, migrated_sqlite: Path) -> None:
    """The apology for a step that failed was in the language of the resident's Telegram app: one whose app is
    Chinese and who chose English with /language got it in Chinese. A step fails here because the database's disk
    is full (SQLite capped at the size it has: a long description needs pages it cannot have)."""
    from sqlalchemy import text

    shutil.copyfile(migrated_sqlite, tmp_path / "full.db")
    async with _channel(_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'full.db'}", standin),
                        receive=True) as (_channel_started, runtime):
        for typed in ("/language", "English"):
            update = standin.send_text(5407, typed)

            def answered(sent: int = update) -> bool:
                return standin.is_confirmed(sent)

            await asyncio.to_thread(standin.wait_until, answered, 15, "answered")
        async with runtime.sessionmaker.begin() as session:
            pages = (await session.execute(text("PRAGMA page_count"))).scalar_one()
            await session.execute(text(f"PRAGMA max_page_count = {pages}"))
        standin.send_text(5407, "/report " + "窗口人员推诿扯皮，让群众来回跑了四趟。" * 150)
        # a full disk keeps the update with Telegram, to be stored later, and says so without storing anything
        await asyncio.to_thread(standin.wait_until, lambda: any(
            "cannot store your message" in message["text"] for message in standin.sent_messages(5407)),
            15, "apologised")
    said = [message["text"] for message in standin.sent_messages(5407)]
    assert not any("无法保存您的消息" in text for text in said)


async def test_webhook_mode_registers_the_url_with_a_secret_derived_from_the_secret_key_and_only_the_updates_it_handles(
        own_standin: TelegramStandIn, tmp_path: Path, never_opened: str) -> None:
    standin = own_standin
    settings = _settings(tmp_path, never_opened, standin,
                         telegram_webhook_url="https://qinglian.example/telegram/webhook")
    derived = hmac.new(SECRET_KEY.encode(), b"telegram-webhook", hashlib.sha256).hexdigest()[:48]
    async with _channel(settings, receive=True) as (channel, _runtime):
        assert channel.webhook_mode
        assert [channel.check_secret(value) for value in (derived, None, "", derived[:-1], derived.upper())] == [
            True, False, False, False, False]
        # a header of bytes outside ASCII, as the server reads it (latin-1): refused (403), not an error (500)
        assert channel.check_secret("密钥".encode().decode("latin-1")) is False
        [registered] = standin.requests_for("setWebhook")
    assert registered == {"url": "https://qinglian.example/telegram/webhook", "secret_token": derived,
                          "allowed_updates": ["message", "edited_message", "callback_query"]}
    assert standin.requests_for("getUpdates") == standin.requests_for("deleteWebhook") == []
    assert len(standin.requests_for("setMyCommands")) == 3


def test_a_contact_cards_name_is_written_as_its_owner_writes_it() -> None:
    assert contact_name("伟", "张") == "张伟"
    assert contact_name("张伟", None) == "张伟"
    assert contact_name("Wei", "Zhang") == "Wei Zhang"
