"""The delivery worker against SQLite and the PostgreSQL on 127.0.0.1, with a sender passed in as a channel
would pass its own: what each recipient receives, in which order, and what is recorded when a send fails."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from sqlalchemy import select, update

from bot.outbox import MAX_ATTEMPTS, OutboxWorker, PermanentFailure, TemporaryFailure, plain
from handlers.city import load_city_config
from handlers.texts import Texts
from handlers.types import Outbound
from storage import actions, outbox
from storage.models import CaseStatus, OutboxMessage
from tests.factories import file_case

CITY = load_city_config(None)


class Recipients:
    """A channel's send function that records what each recipient received; a failure planned for a text
    is raised instead of delivering it (once)."""

    def __init__(self) -> None:
        self.received: dict[str, list[str]] = defaultdict(list)
        self.failures: dict[str, Exception] = {}

    async def send(self, recipient: str, message: Outbound) -> None:
        await asyncio.sleep(0)  # a real send awaits the network: let other recipients' sends interleave
        for fragment, failure in list(self.failures.items()):
            if fragment in message.text:
                del self.failures[fragment]
                raise failure
        self.received[recipient].append(message.text)


async def _answers(sessionmaker: Any, answers: dict[str, list[str]], *, locale: str = "zh") -> dict[str, str]:
    """A case filed by each reporter and staff's answers to it, in order; returns reporter → case number."""
    numbers = {}
    async with sessionmaker.begin() as session:
        for reporter, texts in answers.items():
            case, _ = await file_case(session, reporter_ref=reporter, locale=locale)
            for text in texts:
                await actions.reply_to_reporter(session, case, text, actor="staff:1")
            assert case.case_number is not None
            numbers[reporter] = case.case_number
    return numbers


async def _rows(sessionmaker: Any) -> list[tuple[str, str, int, str | None]]:
    """(recipient, status, attempts, last error) of every outbox message, oldest first."""
    async with sessionmaker() as session:
        rows = await session.execute(select(OutboxMessage.recipient, OutboxMessage.status, OutboxMessage.attempts,
                                            OutboxMessage.last_error).order_by(OutboxMessage.id))
        return [(recipient, status, attempts, error) for recipient, status, attempts, error in rows]


def _answer_texts(received: list[str]) -> list[str]:
    return [text.split("\n")[1] for text in received]


async def test_each_recipient_gets_their_messages_once_and_in_order(sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"1001": ["第一次答复", "第二次答复", "第三次答复"], "1002": ["只有一次答复"]})
    recipients = Recipients()
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(recipients.send))

    attempted = await worker.deliver_once()

    assert attempted == 4
    assert {who: _answer_texts(texts) for who, texts in recipients.received.items()} == {
        "1001": ["第一次答复", "第二次答复", "第三次答复"], "1002": ["只有一次答复"]}
    assert await _rows(sessionmaker) == [("1001", "sent", 1, None)] * 3 + [("1002", "sent", 1, None)]
    assert await worker.deliver_once() == 0  # nothing is sent twice
    assert sum(len(texts) for texts in recipients.received.values()) == 4


async def test_notices_are_rendered_in_the_reporters_language(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        english, _ = await file_case(session, reporter_ref="2001", locale="en")
        chinese, _ = await file_case(session, reporter_ref="2002", locale="zh")
        for case in (english, chinese):
            await actions.change_status(session, case, CaseStatus.IN_HANDLING, actor="staff:1")
            await actions.reply_to_reporter(session, case, "Checked: the counter now opens on time.", actor="staff:1")
    recipients = Recipients()
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(recipients.send))

    await worker.deliver_once()

    assert recipients.received["2001"] == [
        f"Your report {english.case_number} has an update: In handling. "
        "Send /status with your receipt code for details.",
        f"Your report {english.case_number} has an answer:\nChecked: the counter now opens on time.\n\n"
        "Send /status with your receipt code to see the full trace: if the problem is solved, "
        "choose \"Solved, thank you\" there and rate the handling; if it is not, "
        "choose \"Add information\" and say what is still wrong.",
    ]
    assert recipients.received["2002"] == [
        f"您的举报 {chinese.case_number} 有新进展：办理中。发送 /status 加查询码查看详情。",
        f"您的举报 {chinese.case_number} 收到办理答复：\nChecked: the counter now opens on time.\n\n"
        "发送 /status 加查询码可查看完整轨迹：问题已解决的，在那里选“问题已解决，谢谢”并评价；"
        "没有解决的，选“补充材料”说明情况。",
    ]


async def test_a_temporary_failure_holds_the_recipients_later_messages_and_others_go_on(sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"3001": ["第一次答复", "第二次答复"], "3002": ["另一位举报人的答复"]})
    recipients = Recipients()
    recipients.failures["第一次答复"] = TemporaryFailure("Flood control exceeded", retry_after=60)
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(recipients.send))

    await worker.deliver_once()

    assert {who: _answer_texts(texts) for who, texts in recipients.received.items()} == {"3002": ["另一位举报人的答复"]}
    assert await _rows(sessionmaker) == [
        ("3001", "pending", 1, "Flood control exceeded"),
        ("3001", "pending", 0, None),  # not attempted: it waits behind the first
        ("3002", "sent", 1, None),
    ]
    assert await worker.deliver_once() == 0  # the platform asked for a minute: nothing goes before that
    assert "3001" not in recipients.received


async def test_after_a_temporary_failure_the_recipient_gets_everything_in_order(sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"4001": ["第一次答复", "第二次答复", "第三次答复"]})
    recipients = Recipients()
    recipients.failures["第二次答复"] = TemporaryFailure("Bad Gateway", retry_after=0)
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(recipients.send))

    await worker.deliver_once()
    assert _answer_texts(recipients.received["4001"]) == ["第一次答复"]
    await worker.deliver_once()

    assert _answer_texts(recipients.received["4001"]) == ["第一次答复", "第二次答复", "第三次答复"]
    assert await _rows(sessionmaker) == [("4001", "sent", 1, None), ("4001", "sent", 2, None),
                                         ("4001", "sent", 1, None)]


async def test_a_permanent_failure_is_recorded_with_its_reason_and_the_next_message_still_goes(
        sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"5001": ["第一次答复", "第二次答复"]})
    recipients = Recipients()
    recipients.failures["第一次答复"] = PermanentFailure("Forbidden: bot was blocked by the user")
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(recipients.send))

    await worker.deliver_once()

    assert _answer_texts(recipients.received["5001"]) == ["第二次答复"]
    assert await _rows(sessionmaker) == [("5001", "failed", 1, "Forbidden: bot was blocked by the user"),
                                         ("5001", "sent", 1, None)]
    assert await worker.deliver_once() == 0  # given up on: never sent again


async def test_an_unexpected_error_is_retried_later_with_its_reason_kept(sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"6001": ["第一次答复", "第二次答复"]})
    recipients = Recipients()
    recipients.failures["第一次答复"] = ConnectionResetError("connection reset by peer")
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(recipients.send))

    await worker.deliver_once()

    assert recipients.received == {}
    assert await _rows(sessionmaker) == [("6001", "pending", 1, "ConnectionResetError: connection reset by peer"),
                                         ("6001", "pending", 0, None)]


async def test_a_message_that_keeps_failing_is_given_up_after_the_last_attempt(sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"7001": ["一直发不出去的答复"]})
    async with sessionmaker.begin() as session:
        await session.execute(update(OutboxMessage).values(attempts=MAX_ATTEMPTS - 1))
    recipients = Recipients()
    recipients.failures["一直发不出去"] = TemporaryFailure("Internal Server Error", retry_after=0)
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(recipients.send))

    await worker.deliver_once()

    assert await _rows(sessionmaker) == [("7001", "failed", MAX_ATTEMPTS, "Internal Server Error")]


async def test_messages_of_a_channel_without_a_sender_wait_for_one(sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"8001": ["答复"]})
    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    assert await worker.deliver_once() == 0
    wechat = Recipients()
    worker.register("wechat", plain(wechat.send))
    assert await worker.deliver_once() == 0
    assert await _rows(sessionmaker) == [("8001", "pending", 0, None)]
    telegram = Recipients()
    worker.register("telegram", plain(telegram.send))
    assert await worker.deliver_once() == 1
    assert _answer_texts(telegram.received["8001"]) == ["答复"] and wechat.received == {}


async def test_a_message_is_recorded_as_sent_while_another_recipients_send_is_still_running(
        sessionmaker: Any) -> None:
    await _answers(sessionmaker, {"9001": ["慢的答复"], "9002": ["快的答复"]})
    slow_may_finish = asyncio.Event()
    received: list[str] = []

    async def send(recipient: str, message: Outbound) -> None:
        if recipient == "9001":
            await slow_may_finish.wait()
        received.append(recipient)

    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(send))
    delivering = asyncio.create_task(worker.deliver_once())

    for _ in range(3000):  # until the settle transaction of the fast send has committed
        if ("9002", "sent", 1, None) in await _rows(sessionmaker):
            break
        await asyncio.sleep(0.01)
    assert received == ["9002"]
    assert ("9002", "sent", 1, None) in await _rows(sessionmaker)
    assert ("9001", "pending", 0, None) in await _rows(sessionmaker)  # still being sent
    slow_may_finish.set()
    assert await delivering == 2
    assert received == ["9002", "9001"]
    assert [status for _, status, _, _ in await _rows(sessionmaker)] == ["sent", "sent"]


async def test_the_running_worker_sends_what_it_is_woken_for(sessionmaker: Any) -> None:
    arrived: asyncio.Queue[str] = asyncio.Queue()

    async def send(recipient: str, message: Outbound) -> None:
        await arrived.put(message.text)

    worker = OutboxWorker(sessionmaker, Texts(), city=CITY, idle_poll_seconds=3600)  # only a wake-up starts a round
    worker.register("web", plain(send))
    worker.start()
    try:
        async with sessionmaker.begin() as session:
            await outbox.enqueue(session, channel="web", recipient="browser-1", payload={"text": "第一条"})
        worker.wake()
        first = await asyncio.wait_for(arrived.get(), 30)
        async with sessionmaker.begin() as session:
            await outbox.enqueue(session, channel="web", recipient="browser-1", payload={"text": "第二条"})
        worker.wake()
        second = await asyncio.wait_for(arrived.get(), 30)
    finally:
        await worker.stop()
    assert (first, second) == ("第一条", "第二条")


async def test_a_new_case_notice_to_staff_links_to_the_ticket(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, queue="clean_hall", label="slow_service", district="yuelu",
                                  description="窗口工作人员擅离岗位两个小时。\n第二行不在通知里。",
                                  staff_targets=[("telegram", "-100777")], anonymous=False, reporter_name="王五",
                                  reporter_phone="13700001111")
    staff = Recipients()
    worker = OutboxWorker(sessionmaker, Texts(), public_url="https://qinglian.example.cn", city=CITY)
    worker.register("telegram", plain(staff.send))

    await worker.deliver_once()

    assert staff.received == {"-100777": [  # without the reporter's name or phone; the city's names, not codes
        f"新案件 {case.case_number}\n队列：清廉大厅监督组（市行政审批服务局） · 类别：窗口服务问题 · 区县：岳麓区\n"
        f"窗口工作人员擅离岗位两个小时。\nhttps://qinglian.example.cn/console/case/{case.case_number}"]}


async def test_stopping_lets_the_round_in_progress_record_its_sends(sessionmaker: Any) -> None:
    """A send the platform already took is recorded before the worker stops: nothing goes out twice after a
    restart."""
    await _answers(sessionmaker, {"42": ["经核查，已处理。"]})
    sending, release = asyncio.Event(), asyncio.Event()
    sent: list[str] = []

    async def slow_send(recipient: str, message: Outbound) -> None:
        sending.set()
        await release.wait()  # the platform answers late
        sent.append(recipient)

    worker = OutboxWorker(sessionmaker, Texts(), city=CITY)
    worker.register("telegram", plain(slow_send))
    worker.start()
    await asyncio.wait_for(sending.wait(), 30)
    stopping = asyncio.create_task(worker.stop())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert sent == ["42"]
    assert [status for _, status, _, _ in await _rows(sessionmaker)] == ["sent"]
