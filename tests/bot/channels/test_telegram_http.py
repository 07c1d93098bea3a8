"""The aiohttp backend of python-telegram-bot (`AiohttpRequest`), against the stand-in Bot API server: it refuses
to send before `initialize` and after `shutdown` and can be started again; a timeout given for one call replaces
the default; an upload waits its write timeout on top of the read timeout; a call that waited for a free connection
goes out once one frees; a connection is given back after every kind of failure; a server that hangs up after
taking the call is a network error, not a timeout; a photo goes out as multipart with its keyboard. The end-to-end
behaviour (refusals, the read and pool timeouts, a server that cannot be reached) is in
tests/channels/test_telegram_http.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import NetworkError, RetryAfter, TimedOut

from bot.channels.telegram_http import AiohttpRequest
from tests.standins.telegram_server import TelegramStandIn

CHAT = 5151
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
PDF = b"%PDF-1.4\n" + b"1 0 obj\n" * 30

BotFactory = Callable[[AiohttpRequest], AbstractAsyncContextManager[Bot]]


@pytest.fixture
def server() -> Iterator[TelegramStandIn]:
    with TelegramStandIn() as standin:
        yield standin
    assert standin.violations == []


@pytest.fixture
def bot(server: TelegramStandIn) -> BotFactory:
    @asynccontextmanager
    async def connected(request: AiohttpRequest) -> AsyncIterator[Bot]:
        async with Bot(server.token, base_url=server.root_url + "/bot", base_file_url=server.root_url + "/file/bot",
                       request=request) as client:  # type: ignore[arg-type]
            yield client

    return connected


def _texts(server: TelegramStandIn) -> list[str]:
    return [str(message["text"]) for message in server.sent_messages(CHAT)]


async def test_a_request_is_refused_before_initialize_and_after_shutdown_and_works_again_after_initialize(
        server: TelegramStandIn) -> None:
    request = AiohttpRequest()
    get_me = f"{server.root_url}/bot{server.token}/getMe"
    with pytest.raises(RuntimeError, match="This AiohttpRequest is not initialized!"):
        await request.do_request(get_me, "POST")
    await request.initialize()
    status, body = await request.do_request(get_me, "POST")
    assert status == 200 and b'"ok":true' in body.replace(b" ", b"")
    await request.shutdown()
    await request.shutdown()  # a second shutdown is harmless
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request(get_me, "POST")
    await request.initialize()
    try:
        assert (await request.do_request(get_me, "POST"))[0] == 200
    finally:
        await request.shutdown()
    assert [method for method, _ in server.requests] == ["getMe", "getMe"]


def test_the_read_timeout_ptb_reads_is_the_configured_one() -> None:
    assert AiohttpRequest().read_timeout == 5.0
    assert AiohttpRequest(read_timeout=12.5).read_timeout == 12.5
    assert AiohttpRequest(read_timeout=None).read_timeout is None


async def test_a_read_timeout_given_for_one_call_replaces_the_default(server: TelegramStandIn,
                                                                      bot: BotFactory) -> None:
    server.fail_next("sendMessage", status=504, delay=1.0)
    async with bot(AiohttpRequest(read_timeout=30.0)) as client:
        with pytest.raises(TimedOut):
            await client.send_message(CHAT, "这一次只等0.3秒", read_timeout=0.3)
        await client.send_message(CHAT, "照常发送")
    assert _texts(server) == ["照常发送"]


async def test_an_upload_waits_its_write_timeout_on_top_of_the_read_timeout(server: TelegramStandIn,
                                                                            bot: BotFactory) -> None:
    """An answer 1 s late: a text message gives up at its 0.3 s read timeout; an upload waits the 5 s write
    timeout on top (aiohttp has no write timeout of its own) and gets the server's answer, a 504."""
    server.fail_next("sendMessage", status=504, delay=1.0)
    server.fail_next("sendDocument", status=504, delay=1.0)
    async with bot(AiohttpRequest(read_timeout=0.3, media_write_timeout=5.0)) as client:
        with pytest.raises(TimedOut):
            await client.send_message(CHAT, "等不到答复")
        with pytest.raises(NetworkError) as upload:
            await client.send_document(CHAT, PDF, filename="evidence.pdf")
    assert not isinstance(upload.value, TimedOut)
    assert "Gateway Timeout" in str(upload.value)


async def test_a_call_waiting_for_a_free_connection_goes_out_once_one_frees(server: TelegramStandIn,
                                                                           bot: BotFactory) -> None:
    server.hold_responses("sendMessage")
    async with bot(AiohttpRequest(connection_pool_size=1, pool_timeout=10.0)) as client:
        first = asyncio.create_task(client.send_message(CHAT, "第一条"))
        await asyncio.to_thread(server.wait_until, lambda: server.held_responses() == 1, 10, "the first call held")
        second = asyncio.create_task(client.send_message(CHAT, "第二条"))
        await asyncio.sleep(0.2)  # the second call now waits for the one connection
        assert not second.done()
        server.release_responses()
        sent = await asyncio.gather(first, second)
    assert [message.text for message in sent] == ["第一条", "第二条"]
    assert _texts(server) == ["第一条", "第二条"]


async def test_the_connection_is_given_back_after_every_kind_of_failure(server: TelegramStandIn,
                                                                        bot: BotFactory) -> None:
    """One connection, and a pool timeout far shorter than any wait: after a flood refusal, a server error, a
    timeout and a server that hung up, the next call still gets the connection."""
    server.fail_next("sendMessage", status=429, retry_after=1)
    server.fail_next("sendMessage", status=502)
    server.fail_next("sendMessage", status=504, delay=1.0)
    server.drop_response_after_processing("sendMessage")
    async with bot(AiohttpRequest(connection_pool_size=1, pool_timeout=0.2, read_timeout=0.3)) as client:
        with pytest.raises(RetryAfter):
            await client.send_message(CHAT, "被限流")
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await client.send_message(CHAT, "网关错误")
        with pytest.raises(TimedOut):
            await client.send_message(CHAT, "超时")
        with pytest.raises(NetworkError):
            await client.send_message(CHAT, "已送达但连接被挂断")
        await client.send_message(CHAT, "最后一条")
    assert _texts(server) == ["已送达但连接被挂断", "最后一条"]


async def test_a_server_hanging_up_after_taking_the_call_is_a_network_error_not_a_timeout(
        server: TelegramStandIn, bot: BotFactory) -> None:
    server.drop_response_after_processing("sendMessage")
    async with bot(AiohttpRequest()) as client:
        with pytest.raises(NetworkError) as hung_up:
            await client.send_message(CHAT, "对方挂断")
    assert not isinstance(hung_up.value, TimedOut)
    assert "aiohttp.ServerDisconnectedError" in str(hung_up.value)
    assert _texts(server) == ["对方挂断"]  # it took effect: the outbox must not count on it being unsent


async def test_a_photo_goes_out_as_multipart_with_its_caption_and_keyboard(server: TelegramStandIn,
                                                                          bot: BotFactory) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("✅ 完成", callback_data="evidence:done"),
                                      InlineKeyboardButton("取消", callback_data="menu:cancel")]])
    async with bot(AiohttpRequest()) as client:
        await client.send_photo(CHAT, JPEG, caption="现场照片：排队的群众", reply_markup=keyboard)
    [shown] = server.sent_messages(CHAT)
    assert (shown["method"], shown["text"], shown["media"]["type"]) == ("sendPhoto", "现场照片：排队的群众", "photo")
    assert shown["reply_markup"] == {"inline_keyboard": [[{"text": "✅ 完成", "callback_data": "evidence:done"},
                                                          {"text": "取消", "callback_data": "menu:cancel"}]]}
