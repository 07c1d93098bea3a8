"""A WeChat resident's openid reaches neither the log nor the table of handled updates. The key that makes a
message WeChat delivers twice the same message holds the openid where WeChat gives no `MsgId` (every event; a
message without one): `processed_updates` keeps a keyed hash of it, and every log line that names an update names
it by that hash — the value an operator finds in the table — never by the key. In-process (`WeChatChannel`, the
stand-in WeChat platform), on SQLite and the PostgreSQL on 127.0.0.1; a step's failures on SQLite."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.channels.wechat.channel import PassiveReply, WeChatChannel
from bot.config import Settings
from bot.runtime import Runtime
from tests.bot.channels.wechat.test_channel import _channel as serving
from tests.conftest import free_port
from tests.standins.wechat_server import WeChatStandIn

TOKEN = "QinglianIdentity2026"
APP_ID = "wx51a0c7e2d4b3f6a8"
APP_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SECRET_KEY = "wechat-identity-test-secret-" + "k" * 40
NOBODY = f"http://127.0.0.1:{free_port()}/wechat"
"""Where the stand-in calls back: nothing listens; these tests hand callbacks to the channel themselves."""

_numbers = iter(range(1, 10_000))


def _openid() -> str:
    return f"oQL_1dent1ty_{next(_numbers):04d}_Zr8wK3pq"


@pytest.fixture(scope="module")
def standin() -> Iterator[WeChatStandIn]:
    running = WeChatStandIn(token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET, retries=0, retry_interval=0.05,
                            push_sent_events=False)
    running.start()
    running.callback_url = NOBODY
    yield running
    running.stop()


def _channel(tmp_path: Path, database_url: str, standin: WeChatStandIn) -> AbstractAsyncContextManager[
        tuple[WeChatChannel, Runtime]]:
    return serving(Settings(data_dir=tmp_path, database_url=database_url, secret_key=SECRET_KEY,
                            public_url="https://qinglian.example", wechat_token=TOKEN, wechat_app_id=APP_ID,
                            wechat_app_secret=APP_SECRET, wechat_api_url=standin.root_url))


def _fields(standin: WeChatStandIn, openid: str, msg_type: str, **content: Any) -> dict[str, Any]:
    """A message as WeChat calls back with it, without a `MsgId` (as every event comes)."""
    return {"ToUserName": standin.account_id, "FromUserName": openid, "CreateTime": int(time.time()),
            "MsgType": msg_type, **content}


async def _deliver(channel: WeChatChannel, standin: WeChatStandIn, fields: dict[str, Any]) -> PassiveReply | None:
    query, body = standin.callback_request(fields)
    _xml, reply = await channel.handle_callback(query, body, asyncio.get_running_loop().time())
    return reply


async def _stored_update_keys(runtime: Runtime) -> list[str]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(text("SELECT update_key FROM processed_updates WHERE channel = 'wechat'"))
        return [str(key) for key in rows.scalars()]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every line logged, with the tracebacks, as the log file would hold them."""
    return caplog.text


async def test_events_and_messages_delivered_twice_are_handled_once_and_leave_no_openid_in_log_or_table(
        standin: WeChatStandIn, tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # as the service logs by default; libraries that log what they carry stay there
    caplog.set_level(logging.DEBUG, logger="bot")
    openid = _openid()
    subscribe = _fields(standin, openid, "event", Event="subscribe", EventKey="")
    help_click = _fields(standin, openid, "event", Event="CLICK", EventKey="HELP")
    greeting = _fields(standin, openid, "text", Content="你好")  # a message WeChat gave no MsgId
    # in the same second as the greeting: without a MsgId, a message is known by its second and its content
    photo = {**_fields(standin, openid, "image", PicUrl="http://mmbiz.example/x", MediaId="media-WeChat-no-longer-has"),
             "CreateTime": greeting["CreateTime"]}
    async with _channel(tmp_path, database_url, standin) as (channel, runtime):
        replies = [await _deliver(channel, standin, fields)
                   for fields in (subscribe, subscribe, help_click, help_click, greeting, greeting, photo)]
        stored = await _stored_update_keys(runtime)
    # handled once each: the second delivery of each is answered `success` (nothing more sent)
    assert [reply is not None for reply in replies[:6]] == [True, False, True, False, True, False]
    assert len(stored) == 4 and len(set(stored)) == 4
    assert [key for key in stored if openid in key] == []
    assert openid not in _logged(caplog)
    duplicates = [record.getMessage() for record in caplog.records if "duplicate update" in record.getMessage()]
    assert len(duplicates) == 3
    # each names the update as the table keeps it: an operator can find the row, not the resident
    assert all(any(key in line for key in stored) for line in duplicates), duplicates
    assert "media of message" in _logged(caplog)  # the photo WeChat no longer has was logged, by its key


async def _break(runtime: Runtime, *statements: str) -> None:
    async with runtime.sessionmaker.begin() as session:
        for statement in statements:
            await session.execute(text(statement))


async def test_a_step_that_fails_is_logged_without_the_residents_openid(
        standin: WeChatStandIn, tmp_path: Path, migrated_sqlite: str, caplog: pytest.LogCaptureFixture) -> None:
    """The three ways a step's failure is logged: a concurrent delivery claimed the message first, a constraint
    refused a write, the database's disk is full (SQLite capped at the pages it has)."""
    caplog.set_level(logging.INFO)  # as the service logs by default; libraries that log what they carry stay there
    caplog.set_level(logging.DEBUG, logger="bot")
    shutil.copyfile(migrated_sqlite, tmp_path / "failing.db")
    openids = [_openid() for _ in range(3)]
    async with _channel(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'failing.db'}", standin) as (channel, runtime):
        await _break(runtime, "CREATE TRIGGER claimed BEFORE INSERT ON processed_updates BEGIN "
                               "SELECT RAISE(ABORT, 'UNIQUE constraint failed: processed_updates.update_key'); END")
        claimed = await _deliver(channel, standin, _fields(standin, openids[0], "text", Content="/help"))
        await _break(runtime, "DROP TRIGGER claimed",
                      "CREATE TRIGGER refused BEFORE INSERT ON conversations BEGIN "
                      "SELECT RAISE(ABORT, 'refused by a constraint'); END")
        refused = await _deliver(channel, standin, _fields(standin, openids[1], "text", Content="/help"))
        await _break(runtime, "DROP TRIGGER refused")
        async with runtime.sessionmaker.begin() as session:
            pages = (await session.execute(text("PRAGMA page_count"))).scalar_one()
            await session.execute(text(f"PRAGMA max_page_count = {pages}"))
        long_report = "/report " + "窗口人员推诿扯皮，让群众来回跑了四趟。" * 150  # more pages than the disk has
        full = await _deliver(channel, standin, _fields(standin, openids[2], "text", Content=long_report))
    assert claimed is None  # the other delivery answers
    assert refused is not None and refused.text.startswith("抱歉，系统繁忙")
    assert full is not None and full.text.startswith("抱歉，系统繁忙")
    logged = _logged(caplog)
    assert "claimed by a concurrent delivery" in logged
    assert logged.count("could not be handled") == 2
    assert [openid for openid in openids if openid in logged] == []
