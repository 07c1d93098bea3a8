"""The edge every channel calls with an inbound message, against SQLite and the PostgreSQL on 127.0.0.1: one
transaction per step, a redelivered update does nothing, one resident's updates in the order they came,
attachments downloaded before the transaction, replies queued for the channel in the step's transaction."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bot.config import Settings
from bot.outbox import plain
from bot.runtime import Runtime
from handlers.routing import RouteDecision
from handlers.types import Attachment, Inbound, Outbound
from storage import outbox
from storage.models import Case, OutboxMessage, ProcessedUpdate
from tests.conftest import make_test_keyring
from tests.factories import one_payload_each, plain_photo

DESCRIPTION = "区行政审批局的工作人员让群众反复补交同一份材料，来回跑了五趟。"
JPEG = plain_photo()
RESIDENT = "5150"


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key="runtime-secret-" + "r" * 30,
                        telegram_token=None, wechat_token=None, environment="development")
    built = Runtime.build(settings)
    yield built
    await built.close()


def _message(update_key: str | None = None, user_ref: str = RESIDENT, **fields: Any) -> Inbound:
    return Inbound("telegram", user_ref, "zh-hans", update_key=update_key, **fields)


TO_SUMMARY: list[dict[str, Any]] = [
    {"command": "report"},
    {"choice": "district:kaifu"},
    {"text": "开福区行政审批服务局"},
    {"choice": "when:week"},
    {"text": DESCRIPTION},
    {"choice": "evidence:done"},
    {"choice": "identity:anonymous"},
]


async def _texts(runtime: Runtime, user_ref: str = RESIDENT) -> list[str]:
    """The texts queued for a resident, in the order the outbox sends them."""
    async with runtime.read_sessionmaker() as session:
        rows = await session.execute(select(OutboxMessage.recipient, OutboxMessage.payload)
                                     .order_by(OutboxMessage.id))
        return [str(payload["text"]) for recipient, payload in rows if recipient == user_ref]


async def _count(runtime: Runtime, model: Any) -> int:
    async with runtime.read_sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_step_that_fails_leaves_nothing_behind_and_its_redelivery_is_handled(runtime: Runtime) -> None:
    for number, fields in enumerate(TO_SUMMARY):
        await runtime.handle(_message(f"u{number}", **fields), queue=one_payload_each)
    queued = len(await _texts(runtime))
    updates = await _count(runtime, ProcessedUpdate)

    async def classifier_down(text: str, district: str | None) -> RouteDecision:
        raise ConnectionError("the classifier is not answering")

    failing = replace(runtime, dialog_context=replace(runtime.dialog_context, route=classifier_down))
    with pytest.raises(ConnectionError):
        await failing.handle(_message("u-submit", choice="summary:submit"), queue=one_payload_each)

    assert await _count(runtime, Case) == 0
    assert len(await _texts(runtime)) == queued  # none of the failed step's replies
    assert await _count(runtime, ProcessedUpdate) == updates  # nor its claim on the update
    step = await runtime.handle(_message("u-submit", choice="summary:submit"), queue=one_payload_each)
    assert step is not None and "举报已提交" in step.messages[0].text
    assert await _count(runtime, Case) == 1


async def test_a_redelivered_update_does_nothing(runtime: Runtime) -> None:
    first = await runtime.handle(_message("update-77", command="report"), queue=one_payload_each)
    again = await runtime.handle(_message("update-77", command="report"), queue=one_payload_each)
    later = await runtime.handle(_message("update-78", choice="district:kaifu"), queue=one_payload_each)

    assert first is not None and again is None and later is not None
    texts = await _texts(runtime)
    assert [bool(re.search(r"第1步", text)) for text in texts] == [False, True, False]
    assert "第2步" in texts[-1]


async def test_one_residents_updates_are_handled_in_the_order_they_arrived(runtime: Runtime) -> None:
    other = "6160"
    steps = [runtime.handle(_message(f"{who}-{number}", user_ref=who, **fields), queue=one_payload_each)
             for number, fields in enumerate(TO_SUMMARY) for who in (RESIDENT, other)]

    await asyncio.gather(*steps)  # all at once, as a webhook delivers a burst

    for who in (RESIDENT, other):
        texts = await _texts(runtime, who)
        markers = [marker for text in texts for marker in re.findall(r"第(\d)步", text)]
        assert markers == ["1", "2", "3", "4", "5", "6"]
        assert texts[-1].startswith("请核对举报内容") and "开福区行政审批服务局" in texts[-1]


async def test_a_nul_character_in_a_message_is_dropped(runtime: Runtime) -> None:
    for fields in TO_SUMMARY[:2]:
        await runtime.handle(_message(**fields))
    step = await runtime.handle(_message(text="开福区\x00行政审批服务局"))
    for fields in TO_SUMMARY[3:]:
        step = await runtime.handle(_message(**fields))

    assert step is not None and "地点/单位：开福区行政审批服务局\n" in step.messages[0].text


class Download:
    """A channel's download of a file the resident sent: counts how often it ran."""

    def __init__(self, content: bytes | None) -> None:
        self.content = content
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.content is None:
            raise ConnectionError("the platform's file server hung up")
        return self.content


async def test_an_attachment_is_downloaded_once_and_one_over_the_limit_not_at_all(runtime: Runtime) -> None:
    for fields in TO_SUMMARY[:5]:
        await runtime.handle(_message(**fields))
    limit = runtime.settings.city.limits.max_attachment_bytes
    photo, oversized, broken = Download(JPEG), Download(JPEG), Download(None)

    accepted = await runtime.handle(_message(attachment=Attachment("photo", "image/jpeg", len(JPEG), None, photo)))
    refused = await runtime.handle(_message(attachment=Attachment("photo", "image/jpeg", limit + 1, None, oversized)))
    failed = await runtime.handle(_message(attachment=Attachment("photo", "image/jpeg", len(JPEG), None, broken)))

    assert accepted is not None and refused is not None and failed is not None
    assert "已收到第 1 个文件" in accepted.messages[0].text
    assert refused.messages[0].text == f"文件太大了，每个文件不能超过{limit // (1024 * 1024)}MB。"
    assert failed.messages[0].text == "文件接收失败，请重新发送一次。"
    assert (photo.calls, oversized.calls) == (1, 0)


async def test_replies_queued_for_the_channel_go_out_when_the_worker_is_woken(runtime: Runtime) -> None:
    arrived: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def send(recipient: str, message: Outbound) -> None:
        await arrived.put((recipient, message.text))

    runtime.outbox.register("telegram", plain(send))
    runtime.outbox.start()
    step = await runtime.handle(_message(command="report"), queue=one_payload_each)
    first = await asyncio.wait_for(arrived.get(), 30)
    second = await asyncio.wait_for(arrived.get(), 30)

    assert step is not None and len(step.outbox_ids) == 2
    assert (first, second) == ((RESIDENT, step.messages[0].text), (RESIDENT, step.messages[1].text))


async def test_held_replies_wait_for_the_channel_and_are_not_due_yet(runtime: Runtime) -> None:
    step = await runtime.handle(_message(command="report"), queue=one_payload_each, hold=timedelta(minutes=5))

    assert step is not None and len(step.outbox_ids) == 2
    async with runtime.sessionmaker.begin() as session:
        due_now = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=15))
    assert due_now == []
    async with runtime.sessionmaker.begin() as session:
        await outbox.release(session, step.outbox_ids)  # the channel could not answer in its HTTP response
    async with runtime.sessionmaker.begin() as session:
        released = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=15))
    assert [payload["text"] for _, _, _, payload, _ in released] == [message.text for message in step.messages]


async def test_a_redelivered_update_is_logged_by_its_stored_hash_not_by_the_key_that_names_the_resident(
        runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    """A web chat's message key holds its cookie's reference, a WeChat event's the openid: the line that says a
    redelivery was ignored names the update as `processed_updates` keeps it (a keyed hash), never by its key."""
    caplog.set_level(logging.INFO, logger="bot")
    browser, openid = "3f1c9e0d2b7a4c6e8f0a1b2c3d4e5f60718293a4", "oQL_runtime_resident_7Hq2"
    web = Inbound("web", browser, "zh-hans", command="help", update_key=f"{browser}:message-0001")
    wechat = Inbound("wechat", openid, command="start", update_key=f"{openid}:1796650000:subscribe:")
    steps = [await runtime.handle(inbound, queue=one_payload_each) for inbound in (web, web, wechat, wechat)]
    async with runtime.read_sessionmaker() as session:
        stored = list((await session.execute(text("SELECT update_key FROM processed_updates"))).scalars())

    ring = make_test_keyring()
    web_hash, wechat_hash = (ring.pseudonym("update", str(inbound.update_key)) for inbound in (web, wechat))
    assert [step is not None for step in steps] == [True, False, True, False]
    assert sorted(stored) == sorted([web_hash, wechat_hash])  # what de-duplicates is what the line names
    ignored = [record.getMessage() for record in caplog.records if "duplicate update" in record.getMessage()]
    assert ignored == [f"duplicate update web/{web_hash} ignored", f"duplicate update wechat/{wechat_hash} ignored"]
    assert browser not in caplog.text and openid not in caplog.text
