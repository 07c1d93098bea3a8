"""What a resident of a WeChat Official Account noticed, typing every answer (WeChat has no buttons): a receipt
code typed with a Chinese keyboard's commas, a sentence written to the language question, and whether she is told
that WeChat stops the account's messages after 48 hours of her silence. In-process (`WeChatChannel`, the stand-in
WeChat platform), on SQLite."""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.wechat.channel import WeChatChannel
from bot.config import Settings
from bot.runtime import Runtime
from storage.models import TraceEvent, TraceKind
from tests.conftest import free_port
from tests.standins.wechat_server import WeChatStandIn

TOKEN = "QinglianResident2026"
APP_ID = "wx51a0c7e2d4b3f6a8"
APP_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SECRET_KEY = "wechat-resident-test-secret-" + "k" * 40
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"

_openids = itertools.count(1)
_message_ids = itertools.count(26_000_000_000_000_001)
_seconds = itertools.count()


@pytest.fixture(scope="module")
def standin() -> Iterator[WeChatStandIn]:
    running = WeChatStandIn(token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET, retries=0, retry_interval=0.05,
                            push_sent_events=False)
    running.start()
    running.callback_url = f"http://127.0.0.1:{free_port()}/wechat"  # nothing listens: the tests call back
    yield running
    running.stop()


class Resident:
    def __init__(self, channel: WeChatChannel, standin: WeChatStandIn) -> None:
        self.channel, self.standin = channel, standin
        self.openid = f"oQL_res1dent_{next(_openids):04d}_Wq7pL2xZ"

    async def send(self, msg_type: str = "text", **content: Any) -> str:
        """The message as WeChat calls back with it; what the resident reads in reply (the passive answer)."""
        fields = {"ToUserName": self.standin.account_id, "FromUserName": self.openid,
                  "CreateTime": int(time.time()) + next(_seconds), "MsgType": msg_type, **content}
        if msg_type != "event":
            fields["MsgId"] = next(_message_ids)
        query, body = self.standin.callback_request(fields)
        _xml, reply = await self.channel.handle_callback(query, body, asyncio.get_running_loop().time())
        assert reply is not None and reply.later is None
        return reply.text

    async def say(self, text: str) -> str:
        return await self.send(Content=text)

    async def click(self, key: str) -> str:
        return await self.send("event", Event="CLICK", EventKey=key)

    async def submit_a_report(self) -> tuple[str, str]:
        """(the receipt code, the submission as she read it)."""
        for answer in ("/report", "3", "岳麓区政务服务中心3号窗口", "1", DESCRIPTION, "跳过", "匿名"):
            await self.say(answer)
        submitted = await self.say("提交")
        code = re.search(r"\d{4} \d{4} \d{4} \d{4}", submitted)
        assert code is not None, submitted
        return code.group(0), submitted


@asynccontextmanager
async def _resident(tmp_path: Path, migrated_sqlite: Path, standin: WeChatStandIn) -> AsyncIterator[
        tuple[Resident, Runtime]]:
    shutil.copyfile(migrated_sqlite, tmp_path / "resident.db")
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'resident.db'}",
                        secret_key=SECRET_KEY, public_url="https://qinglian.example", wechat_token=TOKEN,
                        wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET, wechat_api_url=standin.root_url)
    runtime = Runtime.build(settings)
    channel = WeChatChannel(settings, runtime)
    try:
        await channel.start()
        yield Resident(channel, standin), runtime
    finally:
        await channel.stop()
        await runtime.close()


async def _follow_ups(runtime: Runtime) -> list[str | None]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(select(TraceEvent.body).where(TraceEvent.kind == TraceKind.FOLLOW_UP))
        return list(rows.scalars())


async def test_a_receipt_code_typed_with_chinese_commas_opens_the_case_and_is_never_kept_as_information(
        standin: WeChatStandIn, tmp_path: Path, migrated_sqlite: Path) -> None:
    async with _resident(tmp_path, migrated_sqlite, standin) as (resident, runtime):
        code, _submitted = await resident.submit_a_report()
        groups = code.split()
        await resident.click("STATUS")
        at_the_question = await resident.say("查询码：" + "，".join(groups) + "。")
        # the case is open now: the code typed again, with enumeration commas, opens it again
        in_the_case = await resident.say("、".join(groups))
        with_the_command = await resident.say("/status " + "，".join(groups))
        follow_ups = await _follow_ups(runtime)
    for reply in (at_the_question, in_the_case, with_the_command):
        assert reply.startswith("案件编号：QL-2026-000001\n当前状态：已分派"), reply
    assert follow_ups == []


async def test_a_sentence_written_to_the_language_question_is_answered_in_both_languages(
        standin: WeChatStandIn, tmp_path: Path, migrated_sqlite: Path) -> None:
    async with _resident(tmp_path, migrated_sqlite, standin) as (resident, _runtime):
        await resident.send("event", Event="subscribe", EventKey="")
        question = await resident.say("4")  # "🌐 English" on the welcome menu
        refused = await resident.say("Hello, I want to report a problem at the tax office")
        chosen = await resident.say("2")
    assert question == "请选择语言 / Choose your language:\n1. 中文\n2. English\n（回复数字选择）"
    assert refused == ("请回复 1 选择中文，或回复 2 选择英文。\nReply 2 for English, or 1 for Chinese.\n\n"
                       "请选择语言 / Choose your language:\n1. 中文\n2. English\n（回复数字选择）")
    assert chosen.startswith("Language set to English.")


async def test_the_submission_tells_the_resident_of_wechats_48_hours_when_no_notice_can_be_subscribed(
        standin: WeChatStandIn, tmp_path: Path, migrated_sqlite: Path) -> None:
    async with _resident(tmp_path, migrated_sqlite, standin) as (resident, _runtime):
        _code, submitted = await resident.submit_a_report()
        status = await resident.say("/status " + _code)
    note = ("提示：您超过48小时没有给本公众号发消息时，微信不允许我们主动通知您；这期间的进展会在您下次发消息时告诉您，"
            "也可以随时发送 /status 加查询码查询。")
    assert submitted.count(note) == 1 and submitted.index(note) < submitted.index("请选择您要办理的事项")
    assert status.count(note) == 1
