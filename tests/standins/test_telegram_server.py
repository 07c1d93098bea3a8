"""The Telegram stand-in, proven with the real clients (python-telegram-bot and aiogram)."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from tests.standins.telegram_server import (
    EntityParseError,
    TelegramStandIn,
    parse_html,
    parse_markdown_v2,
)

REPO = Path(__file__).resolve().parents[2]
# a real 2x1 PNG
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000010802000000"
    "7b40e8dd0000000f49444154789c63f8cfc0f01f0003fe01fe2b4a4a5d0000000049454e44ae426082"
)


@pytest.fixture
def server() -> Iterator[TelegramStandIn]:
    standin = TelegramStandIn()
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[TelegramStandIn]:
    """One server for many small cases; each case starts with reset()."""
    standin = TelegramStandIn()
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
async def bot(server: TelegramStandIn) -> AsyncIterator[Bot]:
    async with Bot(server.token, base_url=server.root_url + "/bot", base_file_url=server.root_url + "/file/bot") as b:
        yield b


def _raw(server: TelegramStandIn, method: str, **params: Any) -> httpx.Response:
    """A form-encoded call, the way PTB sends it (objects as JSON text)."""
    data = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()}
    return httpx.post(f"{server.root_url}/bot{server.token}/{method}", data=data, timeout=5)


# ------------------------------------------------------------------------------------------------
# python-telegram-bot against the stand-in


async def test_ptb_keyboard_updates_and_files(server: TelegramStandIn, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456 and me.is_bot and me.username

    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("举报", callback_data="report"), InlineKeyboardButton("帮助", callback_data="help")]]
    )
    sent = await bot.send_message(42, "<b>你好</b> 🙂", parse_mode="HTML", reply_markup=keyboard)
    assert sent.text == "你好 🙂" and sent.chat.id == 42 and sent.from_user and sent.from_user.id == me.id
    assert sent.entities[0].type == "bold" and (sent.entities[0].offset, sent.entities[0].length) == (0, 2)
    assert sent.reply_markup == keyboard
    second = await bot.send_message(42, "plain")
    assert second.message_id == sent.message_id + 1

    entries = server.sent_messages(42)
    assert [(e["method"], e["text"]) for e in entries] == [("sendMessage", "你好 🙂"), ("sendMessage", "plain")]
    assert entries[0]["reply_markup"] == keyboard.to_dict()
    assert server.last_buttons(42) == [("举报", "report"), ("帮助", "help")]

    text_id = server.send_text(42, "/start hello")
    press_id = server.press_button(42, "help")
    photo_id = server.send_photo(42, PNG, caption="证据")
    assert text_id < press_id < photo_id

    updates = await bot.get_updates(timeout=2)
    assert [u.update_id for u in updates] == [text_id, press_id, photo_id]
    command = updates[0].message
    assert command is not None and command.text == "/start hello"
    assert command.entities[0].type == "bot_command" and command.entities[0].length == len("/start")
    assert command.from_user is not None and command.from_user.language_code == "zh-hans"
    query = updates[1].callback_query
    assert query is not None and query.data == "help"
    assert query.message is not None and query.message.message_id == sent.message_id
    photo_message = updates[2].message
    assert photo_message is not None and photo_message.caption == "证据"
    largest = photo_message.photo[-1]
    assert (largest.width, largest.height) == (2, 1)

    telegram_file = await bot.get_file(largest.file_id)
    assert telegram_file.file_size == len(PNG) and telegram_file.file_path
    assert bytes(await telegram_file.download_as_bytearray()) == PNG
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await bot.get_file("no-such-file")

    assert server.callback_answer(press_id) is None
    assert await bot.answer_callback_query(query.id, text="好的")
    assert server.callback_answer(press_id) == {"callback_query_id": query.id, "text": "好的"}
    assert server.unanswered_callbacks() == []

    # bot uploads (multipart) and re-sends by file_id; documents keep their name
    uploaded = await bot.send_photo(42, photo=PNG, caption="back")
    again = await bot.send_photo(42, photo=uploaded.photo[-1].file_id)
    assert again.photo[-1].file_id == uploaded.photo[-1].file_id
    document = await bot.send_document(42, document=b"report body", filename="report.txt")
    assert document.document is not None and document.document.file_name == "report.txt"
    downloaded = await (await bot.get_file(document.document.file_id)).download_as_bytearray()
    assert bytes(downloaded) == b"report body"

    await bot.set_my_commands([BotCommand("start", "开始")], scope=BotCommandScopeChat(42), language_code="zh")
    commands = await bot.get_my_commands(scope=BotCommandScopeChat(42), language_code="zh")
    assert [c.command for c in commands] == ["start"]
    assert await bot.send_chat_action(42, "typing")
    assert server.chat_actions(42) == ["typing"]
    chat = await bot.get_chat(42)
    assert chat.id == 42 and chat.type == "private"

    edited = await bot.edit_message_text("已处理", chat_id=42, message_id=sent.message_id)
    assert isinstance(edited, type(sent)) and edited.text == "已处理" and edited.reply_markup is None
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("已处理", chat_id=42, message_id=sent.message_id)
    assert server.sent_messages(42)[-1]["method"] == "editMessageText"
    assert server.violations == []


async def test_long_poll_wakes_at_once_and_offsets_confirm(server: TelegramStandIn, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=60))
    await asyncio.to_thread(server.wait_for_request, "getUpdates")
    assert not poll.done()  # held open: nothing to deliver yet
    first = await asyncio.to_thread(server.send_text, 7, "wake up")
    updates = await asyncio.wait_for(poll, 30)  # woken by the update, long before its 60 s are up
    assert [u.update_id for u in updates] == [first]

    second = server.send_text(7, "two")
    third = server.send_text(7, "three")
    # not confirmed yet: served again
    assert [u.update_id for u in await bot.get_updates()] == [first, second, third]
    assert [u.update_id for u in await bot.get_updates(offset=second)] == [second, third]
    assert [u.update_id for u in await bot.get_updates(offset=third + 1)] == []

    server.redeliver(second)  # the identical update again, although it was confirmed
    again = await bot.get_updates(offset=third + 1)
    assert [u.update_id for u in again] == [second] and again[0].message and again[0].message.text == "two"
    assert await bot.get_updates(offset=second + 1) == ()
    assert (await bot.get_webhook_info()).pending_update_count == 0

    # a second poller (another bot instance) terminates the first, like Telegram
    async with httpx.AsyncClient() as other_instance:
        polls = len(server.requests_for("getUpdates"))
        older = asyncio.create_task(
            other_instance.post(f"{server.api_url}{server.token}/getUpdates", data={"timeout": "5"}, timeout=10)
        )
        await asyncio.to_thread(server.wait_for_request, "getUpdates", polls + 1)  # the older poll waits
        assert await bot.get_updates(offset=third + 1, timeout=0) == ()
        response = await older
    assert response.status_code == 409
    assert response.json()["description"].startswith("Conflict: terminated by other getUpdates request")
    assert server.violations == []


async def test_ptb_application_polling_end_to_end(server: TelegramStandIn) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await context.bot.send_message(
            update.effective_chat.id,
            "选择:",
            reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("是", callback_data="yes")]]),
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(f"你选了 {query.data}")

    app = (
        Application.builder()
        .token(server.token)
        .base_url(server.root_url + "/bot")
        .base_file_url(server.root_url + "/file/bot")
        .build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=5, poll_interval=0.0, allowed_updates=Update.ALL_TYPES)
        await app.start()
        server.send_text(1001, "/start")
        (menu,) = await asyncio.to_thread(server.wait_for_messages, 1001, 1, 5.0)
        assert menu["text"] == "选择:" and server.last_buttons(1001) == [("是", "yes")]
        press = server.press_button(1001, "yes")
        messages = await asyncio.to_thread(server.wait_for_messages, 1001, 2, 5.0)
        assert messages[-1]["method"] == "editMessageText" and messages[-1]["text"] == "你选了 yes"
        assert messages[-1]["message_id"] == menu["message_id"]
        assert server.last_buttons(1001) == []  # the edit removed the keyboard
        await asyncio.to_thread(server.wait_for_request, "answerCallbackQuery", 1, 5.0)
        assert server.callback_answer(press) is not None
        await app.updater.stop()
        await app.stop()
    assert server.violations == []
    assert server.pending_update_count() == 0


# ------------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"chat_id": 1, "text": "hi", "colour": "red"}, 'unknown parameter "colour"'),
        ({"text": "hi"}, "chat_id is empty"),
        ({"chat_id": 1}, "message text is empty"),
        ({"chat_id": 1, "text": "   "}, "message text is empty"),
        ({"chat_id": 1, "text": "x" * 4097}, "message is too long"),
        ({"chat_id": "one", "text": "hi"}, "chat not found"),
        ({"chat_id": 1, "text": "hi", "disable_notification": "maybe"}, "must be of type Boolean"),
        ({"chat_id": 1, "text": "hi", "reply_markup": "{not json"}, "can't parse reply keyboard markup JSON object"),
        ({"chat_id": 1, "text": "hi", "reply_markup": {"inline_keyboard": {"text": "a"}}}, "Array of Array"),
        (
            {"chat_id": 1, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "a", "colour": 1}]]}},
            'unknown field "colour" in InlineKeyboardButton',
        ),
        (
            {"chat_id": 1, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "x" * 65}]]}},  # noqa: E501
            "BUTTON_DATA_INVALID",
        ),
        (
            {"chat_id": 1, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "清" * 22}]]}},  # noqa: E501
            "BUTTON_DATA_INVALID",
        ),
        (
            {"chat_id": 1, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "a"}]]}},
            "Text buttons are unallowed in the inline keyboard",
        ),
        (
            {
                "chat_id": 1,
                "text": "hi",
                "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "x", "url": "https://e.org"}]]},
            },
            "exactly one of the optional fields",
        ),
        ({"chat_id": 1, "text": "1.5 < 2", "parse_mode": "HTML"}, 'Unsupported start tag "" at byte offset 4'),
        ({"chat_id": 1, "text": "done.", "parse_mode": "MarkdownV2"}, "Character '.' is reserved"),
        ({"chat_id": 1, "text": "hi", "parse_mode": "BBCode"}, "unsupported parse_mode"),
    ],
)
def test_invalid_send_message_is_rejected_and_recorded(
    shared_server: TelegramStandIn, params: dict[str, Any], description: str
) -> None:
    server = shared_server
    server.reset()
    response = _raw(server, "sendMessage", **params)
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False and body["error_code"] == 400
    assert body["description"].startswith("Bad Request: ") and description in body["description"]
    assert len(server.violations) == 1 and description in server.violations[0]
    assert server.sent_messages(1) == []


def test_other_invalid_requests(server: TelegramStandIn) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("setMyCommands", {"commands": [{"command": "Start", "description": "x"}]}, "BOT_COMMAND_INVALID"),
        ("setMyCommands", {"commands": [], "scope": {"type": "chat"}}, 'field "chat_id" of BotCommandScopeChat'),
        ("setMyCommands", {"commands": [], "scope": {"type": "galaxy"}}, "scope"),
        ("sendChatAction", {"chat_id": 1, "action": "dancing"}, "wrong parameter action"),
        ("getUpdates", {"limit": "many"}, "must be of type Integer"),
        ("editMessageText", {"text": "x"}, "message identifier is not specified"),
        ("sendPhoto", {"chat_id": 1}, 'parameter "photo" is required'),
    ]
    for method, params, description in cases:
        response = _raw(server, method, **params)
        assert response.status_code == 400, (method, params)
        assert description in response.json()["description"], (method, response.json())
    assert len(server.violations) == len(cases)

    unknown = httpx.post(f"{server.root_url}/bot{server.token}/sendTelepathy", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["description"] == "Not Found"
    wrong_token = httpx.post(f"{server.root_url}/bot999:wrong/getMe", timeout=5)
    assert wrong_token.status_code == 401
    assert len(server.violations) == len(cases) + 2

    # valid requests in every encoding pass: JSON body with native types, GET query string
    ok = httpx.post(
        f"{server.root_url}/bot{server.token}/sendMessage",
        json={
            "chat_id": 5,
            "text": "json",
            "disable_notification": True,
            "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "清" * 21}]]},
            "reply_parameters": None,
        },
        timeout=5,
    )
    assert ok.status_code == 200 and ok.json()["result"]["text"] == "json"
    got = httpx.get(f"{server.root_url}/bot{server.token}/SENDMESSAGE", params={"chat_id": 5, "text": "get"}, timeout=5)
    assert got.status_code == 200 and got.json()["result"]["message_id"] == 2
    # generic methods that only need to validate
    assert _raw(server, "setChatMenuButton", menu_button={"type": "commands"}).json() == {"ok": True, "result": True}
    assert _raw(server, "deleteMessage", chat_id=5, message_id=1).json()["result"] is True
    assert server.deleted_messages(5) == [1]
    assert len(server.violations) == len(cases) + 2


async def test_ptb_sees_validation_errors(server: TelegramStandIn, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="x" * 65)]])
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(1, "hi", reply_markup=keyboard)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(1, "长" * 4097)
    assert len(server.violations) == 2
    # limits count characters, not bytes
    await bot.send_message(1, "长" * 4096)
    assert len(server.violations) == 2


# ------------------------------------------------------------------------------------------------
# aiogram


async def test_aiogram_requests_pass(server: TelegramStandIn) -> None:
    from aiogram import Bot as AiogramBot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import TelegramBadRequest
    from aiogram.types import BufferedInputFile, InputMediaDocument, InputMediaPhoto, ReplyParameters
    from aiogram.types import InlineKeyboardButton as AButton
    from aiogram.types import InlineKeyboardMarkup as AMarkup

    session = AiohttpSession(api=TelegramAPIServer.from_base(server.root_url))
    abot = AiogramBot(server.token, session=session)
    try:
        assert (await abot.get_me()).id == 123456
        markup = AMarkup(inline_keyboard=[[AButton(text="好", callback_data="ok")]])
        first = await abot.send_message(9, "*粗体* 文本\\.", parse_mode="MarkdownV2", reply_markup=markup)
        assert first.text == "粗体 文本." and first.entities and first.entities[0].type == "bold"
        await abot.send_message(9, "reply", reply_parameters=ReplyParameters(message_id=first.message_id))
        photo = await abot.send_photo(9, BufferedInputFile(PNG, filename="p.png"), caption="图")
        assert photo.photo and photo.photo[-1].width == 2
        album = await abot.send_media_group(
            9,
            [
                InputMediaDocument(media=BufferedInputFile(b"doc a", filename="a.txt")),
                InputMediaDocument(media=BufferedInputFile(b"doc b", filename="b.txt"), caption="两份"),
            ],
        )
        assert len(album) == 2 and album[1].document is not None and album[1].caption == "两份"
        with pytest.raises(TelegramBadRequest, match="document can't be mixed with other media types"):
            await abot.send_media_group(
                9,
                [
                    InputMediaPhoto(media=BufferedInputFile(PNG, filename="a.png")),
                    InputMediaDocument(media=BufferedInputFile(b"doc", filename="b.txt")),
                ],
            )
        assert len(server.violations) == 1
        server.violations.clear()
        server.send_text(9, "hi")
        updates = await abot.get_updates(timeout=1, allowed_updates=["message", "callback_query"])
        assert [u.message.text for u in updates if u.message] == ["hi"]
    finally:
        await abot.session.close()
    assert server.violations == []
    assert [e["method"] for e in server.sent_messages(9)] == [
        "sendMessage",
        "sendMessage",
        "sendPhoto",
        "sendMediaGroup",
        "sendMediaGroup",
    ]


# ------------------------------------------------------------------------------------------------
# faults


@pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")
async def test_fail_next(server: TelegramStandIn, bot: Bot) -> None:
    server.fail_next("sendMessage", status=429, retry_after=1)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(3, "flood")
    retry_after = caught.value.retry_after
    seconds = retry_after.total_seconds() if isinstance(retry_after, dtm.timedelta) else retry_after
    assert seconds == 1
    assert server.sent_messages(3) == []  # the failed call had no effect

    server.fail_next("sendMessage", 2, status=500, retry_after=None)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(3, "boom")
    server.fail_next("*", status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_me()
    sent = await bot.send_message(3, "fine")
    assert sent.message_id == 1 and [e["text"] for e in server.sent_messages(3)] == ["fine"]

    server.fail_next("sendMessage")
    raw = _raw(server, "sendMessage", chat_id=3, text="x")
    assert raw.status_code == 429
    assert raw.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    server.block_user(4)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(4, "hello?")
    assert server.violations == []


# ------------------------------------------------------------------------------------------------
# webhook


class _Receiver:
    """A tiny HTTP server standing in for the bot's webhook endpoint."""

    def __init__(self, statuses: list[int], reply: dict[str, Any] | None = None) -> None:
        self.statuses = statuses
        self.reply = reply
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    with receiver.lock:
                        receiver.received.append((dict(self.headers), body))
                payload = json.dumps(receiver.reply if status == 200 and receiver.reply else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/telegram/webhook"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


async def test_a_late_answer_is_a_timeout_without_effect(server: TelegramStandIn, bot: Bot) -> None:
    server.fail_next("sendMessage", status=504, delay=1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(3, "slow", read_timeout=0.3)
    assert server.sent_messages(3) == []
    server.fail_next("sendMessage", status=502, delay=1.0)  # any error can come late:
    with pytest.raises(TimedOut):
        await bot.send_message(3, "late", read_timeout=0.3)  # a client that waits less gives up
    server.fail_next("sendMessage", status=502, delay=1.0)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(3, "late")  # one that waits long enough reads the error
    await bot.send_message(3, "fine")
    assert [e["text"] for e in server.sent_messages(3)] == ["fine"]
    assert server.violations == []


def test_updates_made_but_not_delivered(server: TelegramStandIn) -> None:
    update_id = server.send_text(5, "hello", deliver=False)
    assert server.pending_update_count() == 0
    assert server.update(update_id)["message"]["text"] == "hello"
    assert server.update(update_id)["update_id"] == update_id
    later = server.send_text(5, "delivered")
    assert later > update_id and server.pending_update_count() == 1


async def test_webhook_delivery_with_secret_and_retries(server: TelegramStandIn, bot: Bot) -> None:
    before = server.send_text(11, "queued before the webhook")
    receiver = _Receiver(statuses=[500])
    try:
        assert await bot.set_webhook(receiver.url, secret_token="s3cret-Token_1", allowed_updates=["message"])
        after = server.send_text(11, "after")
        third = server.send_text(11, "third")
        await asyncio.to_thread(server.wait_until, lambda: len(server.webhook_deliveries) >= 3, 5.0)
        assert [body["update_id"] for _, body in receiver.received] == [before, after, third]
        assert all(headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret-Token_1" for headers, _ in receiver.received)
        assert receiver.received[1][1]["message"]["text"] == "after"
        info = await bot.get_webhook_info()
        assert info.url == receiver.url and info.pending_update_count == 0
        assert info.last_error_message and "500" in info.last_error_message
        with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
            await bot.get_updates()
        # allowed_updates=["message"]: a callback query is not delivered
        server.press_button(11, "x", message_id=1)
        assert await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
        queued = server.send_text(11, "polling again")
        assert [u.update_id for u in await bot.get_updates()] == [queued]
    finally:
        receiver.close()
    assert server.violations == []


async def test_webhook_answer_with_a_method_is_executed(server: TelegramStandIn, bot: Bot) -> None:
    receiver = _Receiver(statuses=[], reply={"method": "sendMessage", "chat_id": 12, "text": "answered inline"})
    try:
        await bot.set_webhook(receiver.url)
        server.send_text(12, "hello")
        (entry,) = await asyncio.to_thread(server.wait_for_messages, 12, 1, 5.0)
        assert entry["text"] == "answered inline"
        assert "X-Telegram-Bot-Api-Secret-Token" not in receiver.received[0][0]
    finally:
        receiver.close()
    assert server.violations == []


# ------------------------------------------------------------------------------------------------
# what the stand-in produces conforms to the spec


async def test_updates_and_results_conform_to_spec(server: TelegramStandIn, bot: Bot) -> None:
    sent = await bot.send_message(
        21, "menu", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="a")]])
    )
    ids = [
        server.send_text(21, "/help@qinglian_test_bot now", first_name="王", username="wang"),
        server.send_text(-100123, "group text", user_id=77),
        server.press_button(21, "a"),
        server.press_button(21, "stale", message_id=999),
        server.send_photo(21, PNG),
        server.send_document(21, b"%PDF-1.4", "a.pdf", "application/pdf", caption="附件"),
        server.send_sticker(21),
        server.send_voice(21),
        server.send_location(21, 31.23, 121.47),
        *server.send_album(21, [PNG, PNG], caption="两张"),
        server.send_contact(21, "+8613812345678", "伟", contact_last_name="张", contact_user_id=21),
        server.send_contact(21, "13912345678", "Li"),
        server.push_raw_update({"my_chat_member": _chat_member_update()}),
    ]
    async with httpx.AsyncClient() as client:
        raw = await client.post(f"{server.root_url}/bot{server.token}/getUpdates", data={"limit": "100"})
    updates = raw.json()["result"]
    assert [u["update_id"] for u in updates] == ids
    for update in updates:
        assert server.spec.validate_object(update, "Update") == [], update
    message = server.message(21, sent.message_id)
    assert message is not None and server.spec.validate_object(message, "Message") == []
    for method in ("getMe", "getWebhookInfo"):
        async with httpx.AsyncClient() as client:
            result = (await client.get(f"{server.root_url}/bot{server.token}/{method}")).json()["result"]
        assert server.spec.validate_object(result, server.spec.returns(method)[0]) == []
    assert server.spec.validate_object({"update_id": 1, "message": {"text": "no id"}}, "Update") != []


def _chat_member_update() -> dict[str, Any]:
    user = {"id": 5, "is_bot": False, "first_name": "U"}
    bot_user = {"id": 123456, "is_bot": True, "first_name": "Qinglian"}
    return {
        "chat": {"id": 5, "type": "private", "first_name": "U"},
        "from": user,
        "date": 0,
        "old_chat_member": {"status": "member", "user": bot_user},
        "new_chat_member": {"status": "kicked", "user": bot_user, "until_date": 0},
    }


# ------------------------------------------------------------------------------------------------
# entity parsing


def test_entity_parsers() -> None:
    text, entities = parse_html('<b>粗</b> &lt;ok&gt; <a href="https://e.org/?a=1&amp;b=2">链接</a> 😀<i>i</i>')
    assert text == "粗 <ok> 链接 😀i"
    assert entities == [
        {"offset": 0, "length": 1, "type": "bold"},
        {"offset": 7, "length": 2, "type": "text_link", "url": "https://e.org/?a=1&b=2"},
        {"offset": 12, "length": 1, "type": "italic"},  # the emoji counts 2 UTF-16 units
    ]
    assert parse_html("a & b")[0] == "a & b"
    for bad, message in [
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
    ]:
        with pytest.raises(EntityParseError, match=message.replace("(", r"\(")):
            parse_html(bad)

    text, entities = parse_markdown_v2("*b* _i_ __u__ ~s~ ||sp|| `c\\`` [l](https://e.org/a\\)b) 1\\.5")
    assert text == "b i u s sp c` l 1.5"
    kinds = ["bold", "italic", "underline", "strikethrough", "spoiler", "code", "text_link"]
    assert [e["type"] for e in entities] == kinds
    assert entities[-1]["url"] == "https://e.org/a)b"
    text, entities = parse_markdown_v2("```python\nprint(1)\n```\n>quoted\n>lines")
    assert text == "print(1)\n\nquoted\nlines"
    assert {"type": "pre", "offset": 0, "length": 9, "language": "python"} in entities
    assert any(e["type"] == "blockquote" for e in entities)
    for bad in ["a-b", "(x)", "*open", "[x](https://e.org"]:
        with pytest.raises(EntityParseError):
            parse_markdown_v2(bad)


# ------------------------------------------------------------------------------------------------
# as a separate process, with the control API


def test_cli_process_and_control_api(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.telegram_server", "--port", str(port), "--token", "42:abc"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert f"127.0.0.1:{port}" in process.stdout.readline()
        root = f"http://127.0.0.1:{port}"
        ids = httpx.post(
            f"{root}/_standin/updates",
            json=[{"message": {"message_id": 1, "date": 0, "chat": {"id": 8, "type": "private"}, "text": "hi"}}],
        ).json()["result"]
        assert httpx.post(f"{root}/_standin/send_text", json={"chat_id": 8, "text": "/start"}).json()["ok"]
        updates = httpx.get(f"{root}/bot42:abc/getUpdates").json()["result"]
        assert len(updates) == 2 and updates[0]["update_id"] == ids[0]
        assert httpx.post(f"{root}/bot42:abc/sendMessage", data={"chat_id": "8", "text": "reply"}).status_code == 200
        assert httpx.post(f"{root}/bot42:abc/sendMessage", data={"chat_id": "8"}).status_code == 400
        sent = httpx.get(f"{root}/_standin/sent", params={"chat_id": 8}).json()
        assert [e["text"] for e in sent] == ["reply"] and sent[0]["message_id"] == 3
        stats = httpx.get(f"{root}/_standin/stats").json()
        assert stats["sent"] == 1 and len(stats["violations"]) == 1
        httpx.post(f"{root}/_standin/fail_next", json={"method": "getMe", "status": 502})
        assert httpx.get(f"{root}/bot42:abc/getMe").status_code == 502
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
