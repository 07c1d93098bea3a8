"""python-telegram-bot on the service's aiohttp backend, against the stand-in Bot API server: messages and
files arrive as sent, Telegram's refusals become PTB's errors, and a call that cannot be made or answered in
time is a timeout or a network error the outbox can retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from telegram import Bot
from telegram.error import Forbidden, NetworkError, RetryAfter, TimedOut

from bot.channels.telegram_http import AiohttpRequest
from tests.conftest import free_port
from tests.standins.telegram_server import TelegramStandIn

CHAT = 4242
PDF = b"%PDF-1.4\n" + b"1 0 obj\n" * 30

BotFactory = Callable[..., AbstractAsyncContextManager[Bot]]


@pytest.fixture
def server() -> Iterator[TelegramStandIn]:
    standin = TelegramStandIn()
    standin.start()
    yield standin
    standin.stop()
    assert standin.violations == []


@pytest.fixture
def bot(server: TelegramStandIn) -> BotFactory:
    @asynccontextmanager
    async def connected(root_url: str | None = None, **options: float | int) -> AsyncIterator[Bot]:
        root = root_url or server.root_url
        async with Bot(server.token, base_url=root + "/bot", base_file_url=root + "/file/bot",
                       request=AiohttpRequest(**options)) as client:  # type: ignore[arg-type]
            yield client

    return connected


async def test_a_message_with_buttons_arrives_as_sent(server: TelegramStandIn, bot: BotFactory) -> None:
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("芙蓉区", callback_data="district:furong")]])
    async with bot() as client:
        sent = await client.send_message(CHAT, "第1步：问题发生在长沙市哪个区县（市）？", reply_markup=keyboard)
    [shown] = server.sent_messages(CHAT)
    assert (shown["text"], shown["message_id"]) == ("第1步：问题发生在长沙市哪个区县（市）？", sent.message_id)
    assert shown["reply_markup"] == {"inline_keyboard": [[{"text": "芙蓉区", "callback_data": "district:furong"}]]}


async def test_a_file_is_uploaded_with_its_name_and_caption(server: TelegramStandIn, bot: BotFactory) -> None:
    async with bot() as client:
        await client.send_document(CHAT, PDF, filename="evidence-2026-11.pdf", caption="补充的证明材料")
    [shown] = server.sent_messages(CHAT)
    assert (shown["text"], shown["media"]["type"]) == ("补充的证明材料", "document")
    assert shown["media"]["value"]["file_name"] == "evidence-2026-11.pdf"
    assert shown["media"]["value"]["file_size"] == len(PDF)


async def test_telegrams_refusals_become_the_bot_librarys_errors(server: TelegramStandIn, bot: BotFactory) -> None:
    server.fail_next("sendMessage", status=429, retry_after=7)
    server.block_user(CHAT + 1)
    async with bot() as client:
        with pytest.raises(RetryAfter) as flood:
            await client.send_message(CHAT, "第一条")
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await client.send_message(CHAT + 1, "第二条")
        await client.send_message(CHAT, "第三条")
    assert "Retry in 7 seconds" in str(flood.value)
    assert [message["text"] for message in server.sent_messages(CHAT)] == ["第三条"]


async def test_an_answer_later_than_the_read_timeout_is_a_timeout(server: TelegramStandIn, bot: BotFactory) -> None:
    server.fail_next("sendMessage", status=504, delay=2.0)
    async with bot(read_timeout=0.5) as client:
        with pytest.raises(TimedOut):
            await client.send_message(CHAT, "迟到的答复")
    assert server.sent_messages(CHAT) == []


async def test_a_server_that_cannot_be_reached_is_a_network_error(bot: BotFactory) -> None:
    with pytest.raises(NetworkError) as refused:
        async with bot(root_url=f"http://127.0.0.1:{free_port()}") as client:  # connecting calls getMe
            await client.send_message(CHAT, "无法送达")
    assert not isinstance(refused.value, TimedOut) and "aiohttp.ClientConnectorError" in str(refused.value)


async def test_a_call_waiting_for_a_free_connection_gives_up_at_the_pool_timeout(
        server: TelegramStandIn, bot: BotFactory) -> None:
    server.hold_responses("sendMessage")
    async with bot(connection_pool_size=1, pool_timeout=0.2) as client:
        first = asyncio.create_task(client.send_message(CHAT, "占着连接的第一条"))
        await asyncio.to_thread(server.wait_until, lambda: server.held_responses() == 1, 10, "the first call held")
        with pytest.raises(TimedOut, match="Pool timeout"):
            await client.send_message(CHAT, "等不到连接的第二条")
        server.release_responses()
        await first
    assert [message["text"] for message in server.sent_messages(CHAT)] == ["占着连接的第一条"]
