"""`qinglian worker` in-process against the stand-in Telegram Bot API: it delivers what staff wrote to a
reporter while it runs, receives no updates itself (the web workers do), and stops when asked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import Settings
from bot.worker import run_worker
from storage import actions
from storage.db import Database
from storage.migrate import upgrade
from storage.models import OutboxMessage
from tests.conftest import make_test_keyring
from tests.factories import file_case
from tests.standins.telegram_server import TelegramStandIn

TOKEN = "555777:WORKER-qinglian"
CHAT = 9100


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    standin = TelegramStandIn(token=TOKEN)
    standin.start()
    yield standin
    standin.stop()
    assert standin.violations == []


async def _statuses(database: Database) -> list[str]:
    async with database.read_sessionmaker() as session:
        return list((await session.execute(select(OutboxMessage.status).order_by(OutboxMessage.id))).scalars())


async def test_the_worker_delivers_answers_while_it_runs_and_stops_when_asked(
        telegram: TelegramStandIn, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
    await asyncio.to_thread(upgrade, url, make_test_keyring())
    settings = Settings(data_dir=tmp_path, database_url=url, secret_key="worker-secret-" + "w" * 40,
                        telegram_token=TOKEN, telegram_api_url=telegram.root_url, wechat_token=None)
    database = Database.connect(url, make_test_keyring())
    try:
        async with database.sessionmaker.begin() as session:
            case, _ = await file_case(session, channel="telegram", reporter_ref=str(CHAT))
            await actions.reply_to_reporter(session, case, "经核查，已责令窗口整改。", actor="staff:1")
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop))

        await asyncio.to_thread(telegram.wait_until, lambda: bool(telegram.sent_messages(CHAT)), 30,
                                "the answer delivered")
        for _ in range(3000):  # until the delivery is recorded: a stop before that leaves it to go out again
            if await _statuses(database) == ["sent"]:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(worker, 60)
        async with database.sessionmaker.begin() as session:
            loaded = await actions.get_case(session, case.id)
            assert loaded is not None
            await actions.reply_to_reporter(session, loaded, "worker 停止后写下的答复", actor="staff:1")
        statuses = await _statuses(database)
    finally:
        await database.dispose()

    assert [message["text"] for message in telegram.sent_messages(CHAT)] == [
        f"您的举报 {case.case_number} 收到办理答复：\n经核查，已责令窗口整改。\n\n"
        "发送 /status 加查询码可查看完整轨迹：问题已解决的，在那里选“问题已解决，谢谢”并评价；"
        "没有解决的，选“补充材料”说明情况。"]
    assert statuses == ["sent", "pending"]  # nothing leaves once the worker has stopped
    assert telegram.requests_for("getUpdates") == [] and telegram.requests_for("setWebhook") == []
