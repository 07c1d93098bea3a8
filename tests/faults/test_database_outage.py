"""The database unavailable for a while: residents writing meanwhile — on Telegram, in the web chat
and on WeChat — are told to try again shortly, their drafts are kept, and when the database is back
the service recovers by itself: the next answer continues the draft, the outbox delivers what it
held, and /healthz says unavailable during the outage and ok after it.

PostgreSQL is cut off by a TCP proxy between the service and 127.0.0.1:5432 (open connections
dropped, new ones refused); SQLite is locked from the test (`BEGIN EXCLUSIVE`), with a busy timeout
of one second (`?timeout=1` in the database URL)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.channels.test_telegram import Chat
from tests.channels.test_wechat import User
from tests.conftest import LiveService
from tests.faults.conftest import (
    BUSY,
    Database,
    TcpProxy,
    WebResident,
    eventually,
    service_env,
    texts_with,
    through_proxy,
)
from tests.standins.telegram_server import TelegramStandIn
from tests.standins.wechat_server import WeChatStandIn


class Outage:
    """Makes the service's database unavailable and available again."""

    def __init__(self, cut: Callable[[], None], restore: Callable[[], None]) -> None:
        self.cut = cut
        self.restore = restore


@pytest.fixture(params=["sqlite", "postgres"])
def outage_setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Database, Outage]]:
    """(the service's database URL, the database seen directly, the outage switch)."""
    if request.param == "sqlite":
        direct = f"sqlite+aiosqlite:///{tmp_path / 'qinglian.db'}"
        database = Database(direct)
        yield f"{direct}?timeout=1", database, Outage(lambda: database.hold("BEGIN EXCLUSIVE"), database.release)
        database.close()
        return
    direct = request.getfixturevalue("postgres_url")
    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.start()
    database = Database(direct)
    try:
        yield through_proxy(direct, proxy), database, Outage(proxy.cut, proxy.restore)
    finally:
        database.close()
        proxy.stop()


def _health(service: LiveService) -> tuple[int, str]:
    response = httpx.get(f"{service.url}/healthz", timeout=30)
    return response.status_code, response.json()["status"]


def test_residents_are_asked_to_retry_and_everything_resumes(
        outage_setup: tuple[str, Database, Outage], telegram: TelegramStandIn, wechat: WeChatStandIn,
        tmp_path: Path, services: Callable[..., LiveService]) -> None:
    url, database, outage = outage_setup
    service = services(tmp_path / "service", service_env(url, telegram=telegram, wechat=wechat))
    service.start()
    wechat.callback_url = f"{service.url}/wechat"

    # Before the outage: three residents at the second step of a report.
    chat = Chat(telegram, 6101)
    chat.say("/report", expect="第1步")
    chat.press("district:yuhua", expect="第2步")
    web = WebResident(service)
    web.send(command="report")
    assert "第2步" in web.send(choice="district:kaifu")
    user = User(wechat, "oQL_outage_x2kT9aYw8bVc")
    user.say("/report", expect="第1步")
    user.say("3", expect="第2步")

    # A fourth resident's next question is in the outbox, waiting out Telegram's flood control.
    waiting = Chat(telegram, 6102)
    waiting.say("/report", expect="第1步")
    telegram.fail_next("sendMessage", status=429, retry_after=2)
    telegram.press_button(waiting.chat_id, "district:furong")
    eventually(lambda: database.scalar("SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts = 1") == 1,
               what="the question waiting in the outbox after a 429")
    due = time.monotonic() + 2

    outage.cut()
    try:
        assert _health(service) == (503, "unavailable")
        # Telegram: the answer is lost with the failed transaction; the resident is told so at once.
        chat.say("雨花区政务服务中心", expect=BUSY)
        # The web chat: 503 with Retry-After and the same words; the page offers to send again.
        refused = web.post(text="开福区不动产登记中心")
        assert refused.status_code == 503, refused.text
        assert BUSY in refused.json()["detail"] and refused.headers["Retry-After"].isdigit()
        # WeChat: the passive reply says so, within WeChat's five seconds.
        user.say("岳麓区政务服务中心", expect=BUSY)
        assert user.last is not None and user.last.wait().outcome == "passive"
        # The outage outlasts the flood control: the waiting question is due while nothing can be read.
        eventually(lambda: time.monotonic() > due, what="the 429's retry_after passed")
        assert texts_with(waiting, "第2步") == []
    finally:
        outage.restore()

    eventually(lambda: _health(service) == (200, "ok"), what="healthz ok again")
    waiting.expect("第2步", timeout=15)
    # Each draft continues where it was: the district chosen before the outage is still there.
    chat.say("雨花区政务服务中心", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say("窗口工作人员上班时间离岗一个多小时，群众排长队无人办理。", expect="第5步")
    chat.press("evidence:done", expect="第6步")
    summary = chat.press("identity:anonymous", expect="请核对举报内容")
    assert "雨花区" in summary and "雨花区政务服务中心" in summary
    assert "第3步" in web.send(text="开福区不动产登记中心")
    user.say("岳麓区政务服务中心", expect="第3步")
    # Nothing was delivered twice.
    eventually(lambda: database.pending_outbox() == 0, what="the outbox settled")
    assert len(texts_with(waiting, "第2步")) == 1
    assert len(texts_with(chat, "第2步")) == 1 and len(texts_with(chat, "第3步")) == 1
    # The failures were logged without what the residents wrote.
    log = service.log()
    assert "could not be handled" in log or "unavailable" in log
    for written in ("雨花区政务服务中心", "开福区不动产登记中心", "岳麓区政务服务中心", "离岗一个多小时"):
        assert written not in log
