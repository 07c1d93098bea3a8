"""What tests/bot/test_wecom.py leaves out of the WeCom group-robot sender: WeCom counts as enabled only when a
queue names its robot's variable; a recipient that is no queue, a queue without a robot and a variable set empty
fail for good before any request; WeCom's server errors, an answer that is not JSON, a robot that cannot be reached
or does not answer in time are retried; an answer without an error code is not taken for success. Against a local
stand-in of the robot's endpoint (`POST /cgi-bin/webhook/send?key=…`, a JSON answer)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bot.channels.wecom import WeComSender
from bot.outbox import PermanentFailure, TemporaryFailure
from handlers.city import CityConfig, load_city_config
from handlers.types import Outbound
from tests.conftest import free_port

VARIABLE = "QINGLIAN_TEST_WECOM_CHANNEL_HALL"


class Robot:
    """WeCom's robot endpoint: records each posted body and answers with the next planned answer (status, content
    type, body, delay), by default `{"errcode": 0, "errmsg": "ok"}`."""

    def __init__(self) -> None:
        self.received: list[object] = []
        self.answers: list[tuple[int, str, bytes, float]] = []
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                robot.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status, kind, body, delay = robot.answers.pop(0) if robot.answers else (
                    200, "application/json", b'{"errcode":0,"errmsg":"ok"}', 0.0)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/cgi-bin/webhook/send?key=hall-robot-key"


@pytest.fixture
def robot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Robot]:
    stand_in = Robot()
    monkeypatch.setenv(VARIABLE, stand_in.url)
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def _city(*, robots: bool = True) -> CityConfig:
    """The default city; with `robots`, its clean_hall queue has a robot whose URL is in `VARIABLE`."""
    city = load_city_config(None)
    if not robots:
        return city
    queues = [queue.model_copy(update={"wecom_webhook_env": VARIABLE}) if queue.code == "clean_hall" else queue
              for queue in city.queues]
    return city.model_copy(update={"queues": queues})


async def test_wecom_is_enabled_only_when_some_queue_names_its_robots_variable() -> None:
    without, with_robot = WeComSender(_city(robots=False)), WeComSender(_city())
    try:
        assert (without.enabled(), with_robot.enabled()) == (False, True)
    finally:
        await without.close()
        await with_robot.close()


async def test_no_queue_no_robot_or_an_empty_variable_fails_for_good_without_a_request(
        robot: Robot, monkeypatch: pytest.MonkeyPatch) -> None:
    sender = WeComSender(_city())
    refusals: dict[str, str] = {}
    try:
        for recipient in ("petitions_office", "clean_medical"):
            with pytest.raises(PermanentFailure) as refused:
                await sender.send(recipient, Outbound("新案件 QL-2026-000001"))
            refusals[recipient] = str(refused.value)
        monkeypatch.setenv(VARIABLE, "")
        with pytest.raises(PermanentFailure) as empty:
            await sender.send("clean_hall", Outbound("新案件 QL-2026-000001"))
    finally:
        await sender.close()
    assert refusals == {
        "petitions_office": "queue petitions_office has no WeCom webhook (set wecom_webhook_env)",
        "clean_medical": "queue clean_medical has no WeCom webhook (set wecom_webhook_env)",
    }
    assert str(empty.value) == f"queue clean_hall has no WeCom webhook (set {VARIABLE})"
    assert robot.received == []


async def test_server_errors_and_answers_that_are_not_json_are_retried_and_one_without_an_errcode_is_not_success(
        robot: Robot) -> None:
    robot.answers += [(502, "text/html", b"<html>502 Bad Gateway</html>", 0.0),
                      (200, "text/html", b"<html>maintenance</html>", 0.0),
                      (200, "application/json", b'{"errmsg":"ok"}', 0.0),
                      (200, "application/json", b'{"errcode":0,"errmsg":"ok"}', 0.0)]
    sender = WeComSender(_city())
    failures: list[tuple[str, str, float | None]] = []
    try:
        for _ in range(3):
            with pytest.raises((TemporaryFailure, PermanentFailure)) as failed:
                await sender.send("clean_hall", Outbound("案件 QL-2026-000001 的受理期限即将到期"))
            failures.append((type(failed.value).__name__, str(failed.value), getattr(failed.value, "retry_after", 0)))
        await sender.send("clean_hall", Outbound("案件 QL-2026-000001 的受理期限即将到期"))
    finally:
        await sender.close()
    assert failures == [("TemporaryFailure", "WeCom answered 502", None),
                        ("TemporaryFailure", "WeCom answered 200 without JSON", None),
                        ("PermanentFailure", "WeCom error -1: ok", 0)]
    assert robot.received == [{"msgtype": "text", "text": {"content": "案件 QL-2026-000001 的受理期限即将到期"}}] * 4


async def test_a_robot_that_cannot_be_reached_or_does_not_answer_in_time_is_retried(
        robot: Robot, monkeypatch: pytest.MonkeyPatch) -> None:
    robot.answers.append((200, "application/json", b'{"errcode":0,"errmsg":"ok"}', 1.0))
    sender = WeComSender(_city(), client=httpx.AsyncClient(timeout=0.3))
    try:
        with pytest.raises(TemporaryFailure) as slow:
            await sender.send("clean_hall", Outbound("新案件 QL-2026-000002"))
        monkeypatch.setenv(VARIABLE, f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=hall-robot-key")
        with pytest.raises(TemporaryFailure) as unreachable:
            await sender.send("clean_hall", Outbound("新案件 QL-2026-000002"))
    finally:
        await sender.close()
    assert str(slow.value).startswith("network: ") and slow.value.retry_after is None
    assert str(unreachable.value).startswith("network: ") and unreachable.value.retry_after is None
