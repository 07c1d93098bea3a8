"""Telegram and WeChat failing on the way out — flood control (429 with retry_after), server errors
and timeouts: afterwards every outbound message has arrived exactly once, in order for each
resident. Staff answer several residents three times each (the way the console does, through the
actions), so every resident has a queue of messages while the platform fails."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from tests.conftest import LiveService, make_test_keyring
from tests.factories import file_case
from tests.faults.conftest import SECRET_KEY, Database, eventually, service_env
from tests.standins.telegram_server import TelegramStandIn
from tests.standins.wechat_server import WeChatStandIn

ROUNDS = 3
ANSWER = re.compile(r"第(\d)次答复")


async def _staff_answer(database_url: str, channel: str, reporters: list[str]) -> None:
    """One case per reporter, then ROUNDS answers to each (one transaction per round)."""
    from storage import actions
    from storage.db import create_engine, create_sessionmaker

    engine = create_engine(database_url, make_test_keyring())
    sessionmaker = create_sessionmaker(engine)
    cases = []
    async with sessionmaker.begin() as session:
        for reporter in reporters:
            case, _code = await file_case(
                session, secret_key=SECRET_KEY.encode(), case_number_prefix="QL", year=2026, channel=channel,
                reporter_ref=reporter, locale="zh", district=None, place="某处", occurred="今天",
                description="窗口工作人员态度恶劣，推诿扯皮。", anonymous=True, reporter_name=None,
                reporter_phone=None, attachment_ids=[], queue="triage", label=None)
            cases.append(case.id)
    for number in range(1, ROUNDS + 1):
        async with sessionmaker.begin() as session:
            for case_id in cases:
                answered = await actions.get_case(session, case_id)
                assert answered is not None
                await actions.reply_to_reporter(session, answered, f"第{number}次答复：正在核查。",
                                                actor="staff:test")
    await engine.dispose()


def _in_order_once(texts: list[str]) -> bool:
    return [int(m.group(1)) for m in map(ANSWER.search, texts) if m] == list(range(1, ROUNDS + 1))


def test_telegram_flood_control_server_errors_and_a_timeout(
        telegram: TelegramStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    service = services(tmp_path / "service", service_env(None, telegram=telegram))
    service.start()
    url = f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}"
    chats = [7001, 7002, 7003]
    telegram.wait_for_request("setMyCommands", count=3)
    sent_before = len(telegram.requests_for("sendMessage"))
    telegram.fail_next("sendMessage", status=429, retry_after=1)
    telegram.fail_next("sendMessage", status=500)
    telegram.fail_next("sendMessage", status=502)
    telegram.fail_next("sendMessage", status=504, delay=6)  # the bot gives up after 5 s (PTB's read timeout)
    asyncio.run(_staff_answer(url, "telegram", [str(chat) for chat in chats]))

    def texts(chat: int) -> list[str]:
        return [m["text"] for m in telegram.sent_messages(chat)]

    telegram.wait_until(lambda: all(len(texts(chat)) >= ROUNDS for chat in chats), timeout=40,
                        what="every answer delivered")
    attempts = _attempts_once_settled(url)
    for chat in chats:
        assert _in_order_once(texts(chat)), (chat, texts(chat))
        assert len(texts(chat)) == ROUNDS
    # The four failures happened: four more calls than messages, and the outbox counted them.
    assert len(telegram.requests_for("sendMessage")) - sent_before == len(chats) * ROUNDS + 4
    assert attempts == len(chats) * ROUNDS + 4
    assert telegram.early_retries == []  # nothing went out while Telegram's flood control lasted


def _attempts_once_settled(url: str) -> int:
    """Wait until the outbox has nothing pending; the delivery attempts of the sent messages."""
    database = Database(url)
    try:
        eventually(lambda: database.pending_outbox() == 0, what="the outbox settled")
        return int(database.scalar("SELECT sum(attempts) FROM outbox WHERE status = 'sent'"))
    finally:
        database.close()


def test_wechat_rate_limit_server_errors_and_a_timeout(
        wechat: WeChatStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    service = services(tmp_path / "service", service_env(None, wechat=wechat))
    service.start()
    wechat.callback_url = f"{service.url}/wechat"
    url = f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}"
    users = ["oQL_delivery_1_x2kT9aYw8b", "oQL_delivery_2_x2kT9aYw8b"]
    for openid in users:
        wechat.interacted(openid)  # each wrote to the account, so customer-service messages may follow
    path = "/cgi-bin/message/custom/send"
    wechat.fail_next(path, status=429)
    wechat.fail_next(path, status=500)
    wechat.fail_next(path, errcode=-1, errmsg="system error")
    wechat.fail_next(path, status=504, delay=16)  # the service's WeChat client gives up after 15 s
    asyncio.run(_staff_answer(url, "wechat", users))

    def texts(openid: str) -> list[str]:
        return [m["text"]["content"] for m in wechat.custom_messages(openid)]

    wechat.wait_until(lambda: all(len(texts(openid)) >= ROUNDS for openid in users), timeout=45,
                      what="every answer delivered")
    attempts = _attempts_once_settled(url)
    for openid in users:
        assert _in_order_once(texts(openid)), (openid, texts(openid))
        assert [m.via for m in wechat.inbox(openid)] == ["custom"] * ROUNDS
    sends = [r for r in wechat.api_requests if r["path"] == path]
    assert len(sends) == len(users) * ROUNDS + 4
    assert attempts == len(users) * ROUNDS + 4
