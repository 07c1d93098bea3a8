"""The Telegram stand-in on delivery: users who block the bot, answers lost after a call took effect,
what the user's chat shows, and the exact getUpdates offset rule — called as clients call it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from telegram import Bot
from telegram.error import Forbidden, NetworkError

from tests.standins.telegram_server import TelegramStandIn


@pytest.fixture
def server() -> Iterator[TelegramStandIn]:
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


def _call(server: TelegramStandIn, method: str, **params: Any) -> httpx.Response:
    return httpx.post(f"{server.root_url}/bot{server.token}/{method}", json=params, timeout=5)


def _update_ids(response: httpx.Response) -> list[int]:
    return [u["update_id"] for u in response.json()["result"]]


# --- users who block the bot ---------------------------------------------------------------------------


def test_a_user_who_blocked_the_bot(server: TelegramStandIn) -> None:
    assert _call(server, "sendMessage", chat_id=4, text="您好").status_code == 200
    blocked = server.block_user(4)
    assert blocked is not None
    answer = _call(server, "sendMessage", chat_id=4, text="您的举报已受理")
    assert (answer.status_code, answer.json()) == (
        403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
    assert _call(server, "sendChatAction", chat_id=4, action="typing").status_code == 403
    assert server.is_blocked(4) and [m["text"] for m in server.inbox(4)] == ["您好"]

    (update,) = _call(server, "getUpdates").json()["result"]
    assert update["update_id"] == blocked and server.spec.validate_object(update, "Update") == []
    member = update["my_chat_member"]
    assert (member["old_chat_member"]["status"], member["new_chat_member"]["status"]) == ("member", "kicked")
    assert member["new_chat_member"]["user"]["id"] == 123456

    unblocked = server.unblock_user(4)
    assert unblocked is not None and unblocked > blocked
    (update,) = _call(server, "getUpdates", offset=blocked + 1).json()["result"]
    assert update["my_chat_member"]["new_chat_member"]["status"] == "member"
    assert _call(server, "sendMessage", chat_id=4, text="欢迎回来").status_code == 200
    assert server.block_user(-100123) is None  # no my_chat_member for a group
    assert server.violations == []


async def test_the_bot_library_sees_forbidden(server: TelegramStandIn, bot: Bot) -> None:
    server.block_user(5)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(5, "hello?")
    assert server.inbox(5) == [] and server.violations == []


# --- answers lost after the call took effect -----------------------------------------------------------


async def test_a_send_whose_answer_was_lost_shows_twice_when_sent_again(server: TelegramStandIn, bot: Bot) -> None:
    server.drop_response_after_processing("sendMessage")
    with pytest.raises(NetworkError):
        await bot.send_message(6, "答复：已转交区纪委")
    ((method, result),) = server.dropped_responses
    assert method == "sendMessage" and result["text"] == "答复：已转交区纪委"
    assert [m["text"] for m in server.inbox(6)] == ["答复：已转交区纪委"]  # it went through

    again = await bot.send_message(6, "答复：已转交区纪委")  # a naive retry
    assert again.message_id == result["message_id"] + 1
    assert [m["text"] for m in server.inbox(6)] == ["答复：已转交区纪委", "答复：已转交区纪委"]
    await bot.send_message(6, "第三条")  # the fault was used up
    assert len(server.inbox(6)) == 3 and server.violations == []


def test_a_dropped_answer_is_a_hang_up_for_any_client(server: TelegramStandIn) -> None:
    server.drop_response_after_processing("sendmessage", count=2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            _call(server, "sendMessage", chat_id=7, text="x")
    assert _call(server, "sendMessage", chat_id=7, text="y").status_code == 200
    # an invalid call is refused as always and does not use up the fault
    server.drop_response_after_processing("sendMessage")
    assert _call(server, "sendMessage", chat_id=7).status_code == 400
    with pytest.raises(httpx.RemoteProtocolError):
        _call(server, "sendMessage", chat_id=7, text="z")
    assert [m["text"] for m in server.inbox(7)] == ["x", "x", "y", "z"]
    assert len(server.violations) == 1 and "message text is empty" in server.violations[0]


def test_the_inbox_shows_edits_and_not_deleted_messages(server: TelegramStandIn) -> None:
    first = _call(server, "sendMessage", chat_id=8, text="处理中").json()["result"]
    second = _call(server, "sendMessage", chat_id=8, text="临时").json()["result"]
    server.send_text(8, "用户的话")
    _call(server, "editMessageText", chat_id=8, message_id=first["message_id"], text="已办结")
    _call(server, "deleteMessage", chat_id=8, message_id=second["message_id"])
    assert [(m["message_id"], m["text"]) for m in server.inbox(8)] == [(first["message_id"], "已办结")]
    assert [e["method"] for e in server.sent_messages(8)] == ["sendMessage", "sendMessage", "editMessageText"]


# --- the getUpdates offset rule ------------------------------------------------------------------------


def test_an_update_is_forgotten_only_when_a_later_call_passes_a_higher_offset(server: TelegramStandIn) -> None:
    first, second, third = (server.send_text(9, text) for text in ("一", "二", "三"))
    assert _update_ids(_call(server, "getUpdates")) == [first, second, third]
    assert _update_ids(_call(server, "getUpdates")) == [first, second, third]  # served, not confirmed
    assert not server.is_confirmed(first) and server.confirmed_below() == 0

    assert _update_ids(_call(server, "getUpdates", offset=first)) == [first, second, third]
    assert not server.is_confirmed(first)  # offset equal to the id confirms nothing
    assert _update_ids(_call(server, "getUpdates", offset=second)) == [second, third]
    assert server.is_confirmed(first) and not server.is_confirmed(second)
    assert server.pending_update_ids() == [second, third]

    # an older offset does not bring a forgotten update back
    assert _update_ids(_call(server, "getUpdates", offset=first)) == [second, third]
    assert _update_ids(_call(server, "getUpdates", offset=third + 1)) == []
    assert server.is_confirmed(third) and server.pending_update_ids() == []

    fourth, fifth, sixth = (server.send_text(9, text) for text in ("四", "五", "六"))
    assert _update_ids(_call(server, "getUpdates", offset=-1)) == [sixth]  # "-offset from the end"
    assert server.is_confirmed(fourth) and server.is_confirmed(fifth) and not server.is_confirmed(sixth)
    assert server.violations == []


def test_a_lost_getupdates_answer_loses_no_update(server: TelegramStandIn) -> None:
    update_id = server.send_text(10, "我要举报")
    server.drop_response_after_processing("getUpdates")
    with pytest.raises(httpx.RemoteProtocolError):
        _call(server, "getUpdates", timeout=0)
    assert [u["update_id"] for u in server.dropped_responses[0][1]] == [update_id]
    assert _update_ids(_call(server, "getUpdates", offset=update_id)) == [update_id]
    assert not server.is_confirmed(update_id)


async def test_a_long_poll_confirms_with_its_offset_before_it_waits(server: TelegramStandIn, bot: Bot) -> None:
    update_id = server.send_text(11, "你好")
    assert [u.update_id for u in await bot.get_updates()] == [update_id]
    poll = asyncio.create_task(bot.get_updates(offset=update_id + 1, timeout=5))
    await asyncio.to_thread(server.wait_until, lambda: server.is_confirmed(update_id), 5.0)
    later = await asyncio.to_thread(server.send_text, 11, "还有")
    assert [u.update_id for u in await poll] == [later]
    assert not server.is_confirmed(later)
