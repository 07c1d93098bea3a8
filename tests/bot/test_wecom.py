"""WeCom group-robot notices against a local stand-in of the webhook endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.channels.wecom import CHANNEL as WECOM_CHANNEL
from bot.channels.wecom import WeComSender
from bot.jobs import deadlines_once
from bot.outbox import OutboxWorker, PermanentFailure, TemporaryFailure, plain
from handlers.city import load_city_config
from handlers.routing import add_working_days
from handlers.texts import Texts
from handlers.types import Outbound
from tests.factories import file_case


class RobotStandIn:
    """Answers like WeCom's robot endpoint: POST /cgi-bin/webhook/send?key=… with a JSON body."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        self.answers: list[dict[str, object]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.path.partition("key=")[2]
                if key != "robot-key":
                    answer: dict[str, object] = {"errcode": 93000, "errmsg": "invalid webhook url"}
                else:
                    stand_in.received.append(body)
                    answer = stand_in.answers.pop(0) if stand_in.answers else {"errcode": 0, "errmsg": "ok"}
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/cgi-bin/webhook/send?key={key}"


@pytest.fixture
def robot() -> Iterator[RobotStandIn]:
    stand_in = RobotStandIn()
    yield stand_in
    stand_in.server.shutdown()


def _city():  # type: ignore[no-untyped-def]
    city = load_city_config(None)
    queue = city.queue("clean_hall")
    assert queue is not None
    queue.wecom_webhook_env = "QINGLIAN_TEST_WECOM_HALL"
    return city


async def test_notice_is_posted_as_a_text_message(robot: RobotStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QINGLIAN_TEST_WECOM_HALL", robot.url("robot-key"))
    sender = WeComSender(_city())
    assert sender.enabled()
    await sender.send("clean_hall", Outbound("新案件 QL-2026-000001"))
    await sender.close()
    assert robot.received == [{"msgtype": "text", "text": {"content": "新案件 QL-2026-000001"}}]


async def test_rate_limit_is_temporary_and_a_bad_key_is_permanent(robot: RobotStandIn,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QINGLIAN_TEST_WECOM_HALL", robot.url("robot-key"))
    sender = WeComSender(_city())
    robot.answers.append({"errcode": 45009, "errmsg": "api freq out of limit"})
    with pytest.raises(TemporaryFailure) as limited:
        await sender.send("clean_hall", Outbound("x"))
    assert limited.value.retry_after == 60
    monkeypatch.setenv("QINGLIAN_TEST_WECOM_HALL", robot.url("wrong"))
    with pytest.raises(PermanentFailure, match="93000"):
        await sender.send("clean_hall", Outbound("x"))
    monkeypatch.delenv("QINGLIAN_TEST_WECOM_HALL")
    with pytest.raises(PermanentFailure, match="QINGLIAN_TEST_WECOM_HALL"):
        await sender.send("clean_hall", Outbound("x"))
    await sender.close()


async def test_a_deadline_warning_reaches_the_queues_robot_a_working_day_before(
        robot: RobotStandIn, monkeypatch: pytest.MonkeyPatch, sessionmaker: Any) -> None:
    """The deadline job and the outbox as the worker runs them, the robot's group as staff read it."""
    monkeypatch.setenv("QINGLIAN_TEST_WECOM_HALL", robot.url("robot-key"))
    city = _city()
    city.loop.warn_working_days = 1
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # Tuesday 17:00 in Changsha
    tomorrow = add_working_days(city, now, 1)  # the end of Wednesday, as routing sets an accept-by date
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, reporter_ref="1", queue="clean_hall", accept_due_at=tomorrow,
                                  resolve_due_at=tomorrow + timedelta(days=50))
    assert await deadlines_once(sessionmaker, city, now) == (1, 0)
    sender = WeComSender(city)
    worker = OutboxWorker(sessionmaker, Texts(), public_url="https://qinglian.example", city=city)
    worker.register(WECOM_CHANNEL, plain(sender.send))
    assert await worker.deliver_once() == 1
    await sender.close()
    assert robot.received == [{"msgtype": "text", "text": {"content": (
        f"案件 {case.case_number} 的受理期限 2026-12-02 即将到期，请及时办理"
        "（队列：清廉大厅监督组（市行政审批服务局））。\n"
        f"https://qinglian.example/console/case/{case.case_number}")}}]
