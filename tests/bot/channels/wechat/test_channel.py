"""The WeChat Official Account channel in-process (`WeChatChannel`), against the stand-in WeChat platform (which
checks every API request as WeChat does): a safe-mode account needs its AppID; a callback's timestamp may be five
minutes off either way; each message is one dialog step answered passively, an image downloaded before its step
(a download WeChat refuses or one over the size limit is explained to the resident); a step that misses the passive
window, or a delivery WeChat gave up on, has its reply sent through the customer-service API instead, and of two
deliveries of one message waiting at once the newest carries the reply; while the database is down a message is
answered "busy" (sealed in safe mode); the sender cuts a long text into WeChat-sized messages and classifies
WeChat's refusals for the outbox; outside the 48-hour window a notice goes as a subscription notice where the
resident accepted one and otherwise waits for them. Tests that reach the database run on SQLite and the PostgreSQL
on 127.0.0.1. The HTTP routes are in test_router.py, the whole service end to end in tests/channels/test_wechat*.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.wechat.channel import PassiveReply, WeChatChannel
from bot.channels.wechat.messages import CallbackRejected
from bot.config import ConfigError, Settings
from bot.outbox import Delivery, PermanentFailure, TemporaryFailure, WaitForResident
from bot.runtime import Runtime
from handlers.types import Choice, Inbound, Outbound
from storage.models import Attachment, OutboxMessage
from tests.conftest import city_file, evidence_content, free_port
from tests.factories import picture_of, plain_photo
from tests.standins.wechat_server import WeChatStandIn, open_reply

TOKEN = "QinglianChannel2026"
APP_ID = "wx51a0c7e2d4b3f6a8"
APP_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SECRET_KEY = "wechat-channel-test-secret-" + "k" * 40
SUBSCRIBE_TEMPLATE = "tpl-case-progress-0001"
MAX_ATTACHMENT = 1024 * 1024
JPEG = plain_photo(320, 240)
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"
HELP = "使用说明：\n· /report 开始举报"
BUSY_ZH = "抱歉，系统繁忙，您已填写的内容不会丢失，请稍后再试。"
BUSY_EN = "Sorry, the service is busy. Your answers so far are kept; please try again shortly."
BUSY = f"{BUSY_ZH}\n{BUSY_EN}"
"""To a resident whose language is not known (WeChat does not say it): in both."""
NOBODY = f"http://127.0.0.1:{free_port()}/wechat"
"""Where the stand-in calls back: nothing listens; these tests hand callbacks to the channel themselves."""

_openids = itertools.count(1)
_message_ids = itertools.count(24_000_000_000_000_001)


def _openid() -> str:
    return f"oQL_ch4nnel_{next(_openids):04d}_5d9pX2kT9a"


@pytest.fixture(scope="module")
def server() -> Iterator[WeChatStandIn]:
    running = WeChatStandIn(token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET, encoding_aes_key=AES_KEY, retries=0,
                            retry_interval=0.05, push_sent_events=False)
    running.add_subscribe_template(SUBSCRIBE_TEMPLATE, {"character_string1": "character_string", "phrase2": "phrase",
                                                        "time3": "time", "thing4": "thing"}, long_term=True)
    running.start()
    running.callback_url = NOBODY
    yield running
    running.stop()


@pytest.fixture
def standin(server: WeChatStandIn) -> Iterator[WeChatStandIn]:
    """The module's stand-in (each test has its own residents); a test that passed broke none of WeChat's rules."""
    before = len(server.violations)
    yield server
    assert server.violations[before:] == []


def _settings(tmp_path: Path, database_url: str, standin: WeChatStandIn, **extra: Any) -> Settings:
    config = city_file(tmp_path, {"max_attachment_bytes": MAX_ATTACHMENT}, extra=f"""
[notices.wechat]
subscribe_template_id = "{SUBSCRIBE_TEMPLATE}"
subscribe_fields = {{ case_number = "character_string1", status = "phrase2", time = "time3", summary = "thing4" }}
""")
    return Settings(**{"data_dir": tmp_path, "database_url": database_url, "config_file": config,
                       "secret_key": SECRET_KEY, "public_url": "https://qinglian.example", "wechat_token": TOKEN,
                       "wechat_app_id": APP_ID, "wechat_app_secret": APP_SECRET, "wechat_api_url": standin.root_url,
                       "wechat_mp_url": standin.root_url, **extra})


@asynccontextmanager
async def _channel(settings: Settings, *, start: bool = True,
                   passive_budget: float = 4.0) -> AsyncIterator[tuple[WeChatChannel, Runtime]]:
    runtime = Runtime.build(settings)
    channel = WeChatChannel(settings, runtime, passive_budget=passive_budget)
    try:
        if start:
            await channel.start()
        yield channel, runtime
    finally:
        await channel.stop()
        await runtime.close()


def _fields(standin: WeChatStandIn, openid: str, msg_type: str, **content: Any) -> dict[str, Any]:
    fields = {"ToUserName": standin.account_id, "FromUserName": openid, "CreateTime": int(time.time()),
              "MsgType": msg_type, **content}
    if msg_type != "event":
        fields["MsgId"] = next(_message_ids)
    return fields


async def _say(channel: WeChatChannel, standin: WeChatStandIn, openid: str, msg_type: str = "text",
               **content: Any) -> PassiveReply | None:
    """A message from the resident as WeChat calls back with it, arrived just now; the passive reply."""
    query, body = standin.callback_request(_fields(standin, openid, msg_type, **content))
    _xml, reply = await channel.handle_callback(query, body, asyncio.get_running_loop().time())
    return reply


async def _text(channel: WeChatChannel, standin: WeChatStandIn, openid: str, text: str) -> str:
    reply = await _say(channel, standin, openid, Content=text)
    assert reply is not None and reply.recipient == openid and reply.later is None
    return reply.text


async def _deliver_outbox(runtime: Runtime) -> None:
    """Run the outbox until it has sent something (a step finishing in the background queues its reply)."""
    for _ in range(200):
        if await runtime.outbox.deliver_once():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("nothing reached the outbox")


async def _outbox_rows(runtime: Runtime, openid: str) -> list[tuple[str, str | None]]:
    async with runtime.sessionmaker() as session:
        rows = (await session.execute(select(OutboxMessage.recipient, OutboxMessage.status, OutboxMessage.last_error)
                                      .order_by(OutboxMessage.id))).all()
    return [(status, error) for recipient, status, error in rows if recipient == openid]


# --- setting up, checking callbacks -----------------------------------------------------------------


async def test_a_safe_mode_account_needs_its_app_id_and_safe_mode_is_there_only_with_an_aes_key(
        standin: WeChatStandIn, tmp_path: Path, never_opened: str) -> None:
    without_app_id = _settings(tmp_path, never_opened, standin, wechat_aes_key=AES_KEY, wechat_app_id=None)
    runtime = Runtime.build(without_app_id)
    try:
        with pytest.raises(ConfigError) as missing:
            WeChatChannel(without_app_id, runtime)
    finally:
        await runtime.close()
    assert str(missing.value) == "QINGLIAN_WECHAT_APP_ID is needed in safe mode (QINGLIAN_WECHAT_AES_KEY is set)"
    async with _channel(_settings(tmp_path, never_opened, standin), start=False) as (plain, _runtime):
        assert not plain.safe_mode_available
    async with _channel(_settings(tmp_path, never_opened, standin, wechat_aes_key=AES_KEY),
                        start=False) as (safe, _runtime):
        assert safe.safe_mode_available


def _signed(timestamp: str, nonce: str = "381927") -> dict[str, str]:
    digest = hashlib.sha1("".join(sorted((TOKEN, timestamp, nonce))).encode()).hexdigest()
    return {"timestamp": timestamp, "nonce": nonce, "signature": digest, "echostr": "7071520631947425913"}


async def test_a_callbacks_timestamp_may_be_five_minutes_off_either_way(
        standin: WeChatStandIn, tmp_path: Path, never_opened: str) -> None:
    now = int(time.time())
    async with _channel(_settings(tmp_path, never_opened, standin), start=False) as (channel, _runtime):
        accepted = [channel.verify_url(_signed(str(now + offset))) for offset in (-290, 0, 290)]
        refused = {}
        for name, stamp in (("late", str(now - 310)), ("early", str(now + 310)), ("in milliseconds", str(now) + "000"),
                            ("negative", str(-now))):
            with pytest.raises(CallbackRejected) as problem:
                channel.verify_url(_signed(stamp))
            refused[name] = (problem.value.status, problem.value.reason)
    assert accepted == ["7071520631947425913"] * 3
    assert refused == {"late": (403, "stale timestamp"), "early": (403, "stale timestamp"),
                       "in milliseconds": (403, "missing or malformed timestamp"),
                       "negative": (403, "missing or malformed timestamp")}


# --- dialog steps -------------------------------------------------------------------------------------


async def test_steps_are_answered_passively_and_an_image_is_downloaded_before_its_step(
        standin: WeChatStandIn, tmp_path: Path, database_url: str) -> None:
    openid = _openid()
    settings = _settings(tmp_path, database_url, standin)
    async with _channel(settings) as (channel, runtime):
        first = await _text(channel, standin, openid, "/report")
        for answer in ("3", "岳麓区政务服务中心3号窗口", "1", DESCRIPTION):
            evidence_step = await _text(channel, standin, openid, answer)
        refused = await _say(channel, standin, openid, "image", PicUrl="http://mmbiz.example/x",
                             MediaId="media-WeChat-no-longer-has")
        too_big = await _say(channel, standin, openid, "image", PicUrl="http://mmbiz.example/y",
                             MediaId=standin.add_media(JPEG + bytes(MAX_ATTACHMENT)))
        received = await _say(channel, standin, openid, "image", PicUrl="http://mmbiz.example/z",
                              MediaId=standin.add_media(JPEG))
        async with runtime.sessionmaker() as session:
            stored = list((await session.execute(select(Attachment.stored_name))).scalars())
    assert first.startswith("开始举报。") and "\n\n第1步：" in first
    assert "\n3. 岳麓区\n" in first and first.endswith("\n10. 不确定\n（回复数字选择）")
    assert evidence_step.startswith("第5步") and evidence_step.endswith("1. 跳过，没有证据\n（回复数字选择）")
    assert refused is not None and refused.text.startswith("文件接收失败，请重新发送一次。\n\n第5步")
    assert too_big is not None and too_big.text.startswith("文件太大了，每个文件不能超过1MB。")
    assert received is not None
    assert received.text.startswith("已收到第 1 个文件（最多5个），照片中的位置、文档中的作者等隐藏信息已删除。")
    assert len(stored) == 1 and picture_of(evidence_content(settings.evidence_dir, stored[0])) == picture_of(JPEG)


async def test_a_step_that_misses_the_passive_window_is_answered_through_the_customer_service_api(
        standin: WeChatStandIn, tmp_path: Path, database_url: str) -> None:
    openid = _openid()
    standin.interacted(openid)  # the resident wrote to the account: customer-service messages may follow
    async with _channel(_settings(tmp_path, database_url, standin), passive_budget=0) as (channel, runtime):
        query, body = standin.callback_request(_fields(standin, openid, "text", Content="/help"))
        answered = await channel.handle_callback(query, body, asyncio.get_running_loop().time())
        await _deliver_outbox(runtime)
        await channel.enqueue_text(openid, "请稍后再试。")  # a reply no step stored, e.g. after a failed step
        await _deliver_outbox(runtime)
        rows = await _outbox_rows(runtime, openid)
    assert answered == (None, None)  # WeChat is answered `success`
    inbox = standin.inbox(openid)
    assert [(m.via, m.text[:len(HELP)]) for m in inbox] == [("custom", HELP), ("custom", "请稍后再试。")]
    assert rows == [("sent", None), ("sent", None)]


async def test_of_two_deliveries_of_one_message_waiting_at_once_the_newest_carries_the_reply(
        standin: WeChatStandIn, tmp_path: Path, database_url: str) -> None:
    """WeChat delivers a message again when it got no answer in time; the step runs once."""
    openid = _openid()
    message = Inbound("wechat", openid, command="help", update_key=str(next(_message_ids)))
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, runtime):
        deadline = asyncio.get_running_loop().time() + 4.0
        older, newer = await asyncio.gather(channel.answer(message, deadline), channel.answer(message, deadline))
        again = await channel.answer(message, asyncio.get_running_loop().time() + 4.0)
        rows = await _outbox_rows(runtime, openid)
    assert older is None and again is None
    assert newer is not None and newer.recipient == openid and newer.text.startswith(HELP)
    assert rows == [("sent", None)]  # the one reply, recorded as delivered in the HTTP answer
    assert standin.custom_messages(openid) == []


async def test_a_delivery_whose_connection_wechat_dropped_leaves_the_reply_to_the_customer_service_api(
        standin: WeChatStandIn, tmp_path: Path, database_url: str) -> None:
    openid = _openid()
    standin.interacted(openid)
    message = Inbound("wechat", openid, command="help", update_key=str(next(_message_ids)))
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, runtime):
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.set_result(None)
        answered = await channel.answer(message, asyncio.get_running_loop().time() + 4.0, gone)
        await _deliver_outbox(runtime)
    assert answered is None
    assert [(m.via, m.text[:len(HELP)]) for m in standin.inbox(openid)] == [("custom", HELP)]


async def test_while_the_database_is_down_a_message_is_answered_busy_sealed_in_safe_mode_and_an_event_success(
        standin: WeChatStandIn, tmp_path: Path, never_opened: str) -> None:
    openid = _openid()
    settings = _settings(tmp_path, never_opened, standin, wechat_aes_key=AES_KEY)
    async with _channel(settings, start=False) as (channel, _runtime):
        query, body = standin.callback_request(_fields(standin, openid, "text", Content="/report"), mode="safe")
        xml, reply = await channel.handle_callback(query, body, asyncio.get_running_loop().time())
        query, body = standin.callback_request(_fields(standin, openid, "event", Event="VIEW",
                                                       EventKey="https://qinglian.example"), mode="safe")
        event = await channel.handle_callback(query, body, asyncio.get_running_loop().time())
    assert reply == PassiveReply(openid, BUSY)
    assert xml is not None and BUSY not in xml
    opened = open_reply(xml, token=TOKEN, safe=True, encoding_aes_key=AES_KEY, app_id=APP_ID)
    assert (opened["ToUserName"], opened["FromUserName"], opened["Content"]) == (openid, standin.account_id, BUSY)
    assert event == (None, None)


async def test_a_resident_who_chose_english_is_told_the_service_is_busy_in_english(
        standin: WeChatStandIn, tmp_path: Path, migrated_sqlite: str) -> None:
    """The "busy, try again" answer was always in the city's default language, Chinese: a resident who chose
    English got it in Chinese. A step fails here because the database's disk is full (SQLite capped at the size
    it has, `PRAGMA max_page_count`: a long description needs pages it cannot have)."""
    from sqlalchemy import text

    english, chinese = _openid(), _openid()
    shutil.copyfile(migrated_sqlite, tmp_path / "full.db")
    async with _channel(_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'full.db'}", standin)) as (
            channel, runtime):
        for openid in (english, chinese):
            await _text(channel, standin, openid, "你好")
        await _text(channel, standin, english, "/language")
        assert (await _text(channel, standin, english, "2")).startswith("Language set to English.")
        async with runtime.sessionmaker.begin() as session:
            pages = (await session.execute(text("PRAGMA page_count"))).scalar_one()
            await session.execute(text(f"PRAGMA max_page_count = {pages}"))
        busy = [await _text(channel, standin, openid, "/report " + "窗口人员推诿扯皮，让群众来回跑了四趟。" * 150)
                for openid in (english, chinese)]
    assert busy == [BUSY_EN, BUSY_ZH]


# --- sending ------------------------------------------------------------------------------------------


async def test_a_long_message_goes_out_as_customer_service_texts_of_at_most_2048_bytes_in_order(
        standin: WeChatStandIn, tmp_path: Path, database_url: str) -> None:
    openid = _openid()
    standin.interacted(openid)
    line = "举" * 200  # 600 bytes: three lines and their breaks (1802 bytes) fill one message
    summary = Outbound("\n".join([line] * 5), (Choice("summary:submit", "提交"), Choice("summary:edit", "修改")))
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, _runtime):
        await channel.send(openid, summary)
    sent = [message["text"]["content"] for message in standin.custom_messages(openid)]
    assert sent == [f"{line}\n{line}\n{line}", f"{line}\n{line}\n1. 提交\n2. 修改\n（回复数字选择）"]


async def test_wechats_refusals_are_classified_for_the_outbox(standin: WeChatStandIn, tmp_path: Path,
                                                             database_url: str) -> None:
    residents = {name: _openid() for name in ("unfollowed", "blocked", "quota", "limits", "window")}
    for openid in residents.values():
        standin.interacted(openid)
    standin.block(residents["unfollowed"], 43004)
    standin.block(residents["blocked"], 43019)
    standin.block(residents["quota"], 45047)
    standin.age_interaction(residents["window"], hours=49)
    path = "/cgi-bin/message/custom/send"
    outcomes: dict[str, tuple[str, str, float | None]] = {}

    def record(name: str, failure: Exception) -> None:
        outcomes[name] = (type(failure).__name__, str(failure), getattr(failure, "retry_after", None))

    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, _runtime):
        for name in ("unfollowed", "blocked", "quota", "window"):
            try:
                await channel.send(residents[name], Outbound("收到办理答复"))
            except Exception as failure:  # noqa: BLE001 - each kind is checked below
                record(name, failure)
        for name, fault in (("daily quota", {"errcode": 45009, "errmsg": "reach max api daily quota limit"}),
                            ("minute quota", {"errcode": 45011, "errmsg": "api minute-quota reach limit"}),
                            ("system error", {"errcode": -1, "errmsg": "system error"}),
                            ("bad gateway", {"status": 502})):
            standin.fail_next(path, **fault)  # type: ignore[arg-type]
            try:
                await channel.send(residents["limits"], Outbound("收到办理答复"))
            except Exception as failure:  # noqa: BLE001 - each kind is checked below
                record(name, failure)
        await channel.send(residents["limits"], Outbound("收到办理答复"))  # nothing else is wrong
    assert outcomes == {
        "unfollowed": ("PermanentFailure", "WeChat errcode 43004: the resident unfollowed the account", None),
        "blocked": ("PermanentFailure", "WeChat errcode 43019: the resident blocked the account", None),
        "quota": ("OutsideWindow", "errcode 45047", None),
        "window": ("OutsideWindow", "errcode 45015", None),
        "daily quota": ("TemporaryFailure", "WeChat errcode 45009: reach max api daily quota limit", 3600.0),
        "minute quota": ("TemporaryFailure", "WeChat errcode 45011: api minute-quota reach limit", 60.0),
        "system error": ("TemporaryFailure", "WeChat errcode -1: system error", None),
        "bad gateway": ("TemporaryFailure", "WeChat answered HTTP 502", None),
    }
    assert [m["text"]["content"] for m in standin.custom_messages(residents["limits"])] == ["收到办理答复"]


async def test_nothing_is_sent_before_the_channel_starts_or_without_the_accounts_credentials(
        standin: WeChatStandIn, tmp_path: Path, never_opened: str) -> None:
    calls_before = len(standin.api_requests)
    async with _channel(_settings(tmp_path, never_opened, standin), start=False) as (channel, _runtime):
        with pytest.raises(TemporaryFailure) as not_started:
            await channel.send(_openid(), Outbound("收到办理答复"))
    async with _channel(_settings(tmp_path, never_opened, standin, wechat_app_secret=None)) as (channel, _runtime):
        with pytest.raises(PermanentFailure) as unconfigured:
            await channel.send(_openid(), Outbound("收到办理答复"))
    assert str(not_started.value) == "the WeChat channel is not started"
    assert str(unconfigured.value) == "QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET are not set"
    assert len(standin.api_requests) == calls_before  # not even an access token was asked for


async def test_outside_the_window_a_notice_goes_as_the_subscription_notice_the_resident_accepted_or_waits(
        standin: WeChatStandIn, tmp_path: Path, database_url: str) -> None:
    subscriber, other = _openid(), _openid()
    popup = standin.user_subscribe(subscriber, accept=[SUBSCRIBE_TEMPLATE]).wait()  # opens no reply window
    for openid in (subscriber, other):
        standin.interacted(openid)
        standin.age_interaction(openid, hours=49)
    answer: dict[str, object] = {"notice": "answer", "case_number": "QL-2026-000123", "locale": "zh",
                                 "answer": "经核查，已责令整改。"}
    reply: dict[str, object] = {"text": "请选择：", "choices": []}
    waits: dict[str, str] = {}
    async with _channel(_settings(tmp_path, database_url, standin)) as (channel, _runtime):
        query, body = standin.callback_request(popup.fields)  # WeChat reports the accept to our callback
        assert await channel.handle_callback(query, body, asyncio.get_running_loop().time()) == (None, None)
        await channel.deliver(Delivery(subscriber, Outbound("您的举报收到办理答复"), answer, case_id=41))
        for name, recipient, payload in (("no consent", other, answer),
                                         ("not a notice", subscriber, reply)):
            with pytest.raises(WaitForResident) as waiting:
                await channel.deliver(Delivery(recipient, Outbound("您的举报收到办理答复"), payload, case_id=41))
            waits[name] = str(waiting.value)
        standin.fail_next("/cgi-bin/message/subscribe/bizsend", errcode=45009, errmsg="reach max api daily quota limit")
        with pytest.raises(TemporaryFailure) as limited:
            await channel.deliver(Delivery(subscriber, Outbound("您的举报收到办理答复"), answer, case_id=41))
    notices = [m for m in standin.inbox(subscriber) if m.via == "subscribe_notice"]
    assert [(n.template_id, n.data["character_string1"], n.data["phrase2"]) for n in notices] == [
        (SUBSCRIBE_TEMPLATE, "QL-2026-000123", "已答复")]
    assert standin.custom_messages(subscriber) == standin.custom_messages(other) == []
    assert waits == {
        "no consent": "outside WeChat's 48-hour window (errcode 45015); no consent to notices: "
                      "waits for the resident's next message",
        "not a notice": "outside WeChat's 48-hour window (errcode 45015); the city sends no notice for this message: "
                        "waits for the resident's next message",
    }
    assert (str(limited.value), limited.value.retry_after) == (
        "WeChat errcode 45009: reach max api daily quota limit", 3600.0)

