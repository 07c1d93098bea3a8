"""Shared pieces of the fault tests: stand-ins, a service on a chosen database, direct access to that
database from the test, a TCP proxy that can cut the service off PostgreSQL, and residents' steps.

Everything is real: `qinglian serve` runs in its own process (`LiveService`), the stand-ins speak the
Telegram Bot API and WeChat's protocol over HTTP, and the database is SQLite or the PostgreSQL on
127.0.0.1. The test reads the database directly only to check what a resident cannot see.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tests.channels.test_telegram import Chat
from tests.conftest import LiveService, create_postgres_database, drop_postgres_database
from tests.standins.telegram_server import TelegramStandIn
from tests.standins.wechat_server import WeChatStandIn

TOKEN = "555001:FAULTS-qinglian"
SECRET_KEY = "f" * 48
WEBHOOK_SECRET = "fault-hook-secret-123"
WECHAT_TOKEN = "QinglianFaults2026"
WECHAT_APP_ID = "wx51a0c7e2d4b3f6a8"
WECHAT_APP_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"
SUBMITTED = "举报已提交"
BUSY = "请稍后再试"
"""The end of the "service busy, your answers are kept, try again shortly" answer, in Chinese."""
RECEIPT = re.compile(r"\d{4} \d{4} \d{4} \d{4}")


def eventually(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.05) -> None:
    """Poll `predicate` until it holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


def receipt_code(message: str) -> str:
    match = RECEIPT.search(message)
    assert match, message
    return match.group(0)


# --- the database, seen from the test ----------------------------------------------------------


class Database:
    """Direct access to the service's database (bypassing the service and any proxy), from sync tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._runner = asyncio.Runner()
        self._engine: AsyncEngine = create_async_engine(url, connect_args={"timeout": 5} if self.sqlite else {})
        self._held: AsyncConnection | None = None
        self._held_sqlite: sqlite3.Connection | None = None

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async def run() -> list[tuple[Any, ...]]:
            async with self._engine.connect() as connection:
                result = await connection.execute(text(sql), params)
                return [tuple(row) for row in result]

        return self._runner.run(run())

    def execute(self, *statements: str) -> None:
        """Run `statements` in one transaction and commit it (the test's own additions, e.g. a trigger)."""
        async def run() -> None:
            async with self._engine.begin() as connection:
                for statement in statements:
                    await connection.exec_driver_sql(statement)

        self._runner.run(run())

    def scalar(self, sql: str, **params: Any) -> Any:
        found = self.rows(sql, **params)
        return found[0][0] if found else None

    def hold(self, *statements: str) -> None:
        """Open a transaction, run `statements` in it (taking locks) and keep it open until `release`."""
        assert self._held is None and self._held_sqlite is None, "already holding a transaction"
        if self.sqlite:
            path = make_url(self.url).database
            assert path
            connection = sqlite3.connect(path, isolation_level=None, timeout=10)
            for statement in statements:
                connection.execute(statement)
            self._held_sqlite = connection
            return

        async def run() -> AsyncConnection:
            connection = await self._engine.connect()
            await connection.begin()
            for statement in statements:
                await connection.exec_driver_sql(statement)
            return connection

        self._held = self._runner.run(run())

    def release(self) -> None:
        if self._held_sqlite is not None:
            self._held_sqlite.execute("ROLLBACK")
            self._held_sqlite.close()
            self._held_sqlite = None
        held, self._held = self._held, None
        if held is not None:
            self._runner.run(held.close())  # closing rolls the transaction back

    def close(self) -> None:
        self.release()
        self._runner.run(self._engine.dispose())
        self._runner.close()

    def pending_outbox(self) -> int:
        return int(self.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'"))

    def cases(self) -> int:
        """All cases (a reporter's channel address is stored encrypted, so tests count them all)."""
        return int(self.scalar("SELECT count(*) FROM cases"))


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the service migrates it when it starts)."""
    name, url = create_postgres_database(postgres_server)
    try:
        yield url
    finally:
        drop_postgres_database(postgres_server, name)


# --- a TCP proxy between the service and PostgreSQL ------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a target in a background event loop. `cut()` drops every open
    connection and refuses new ones (the port is closed) until `restore()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def _call(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def start(self) -> None:
        self._thread.start()
        self.restore()

    def restore(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

        self._call(listen())

    def cut(self) -> None:
        async def cut() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._open):
                writer.transport.abort()
            self._open.clear()

        self._call(cut())

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections += 1
        self._open.update((client_writer, server_writer))

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.transport.abort()
                self._open.discard(writer)

        await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))


def through_proxy(url: str, proxy: TcpProxy) -> str:
    """The same PostgreSQL URL, with the proxy's port."""
    return re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{proxy.port}/", url)


# --- stand-ins and the service --------------------------------------------------------------


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    server = TelegramStandIn(token=TOKEN)
    server.start()
    yield server
    server.stop()
    assert server.violations == []


@pytest.fixture
def wechat() -> Iterator[WeChatStandIn]:
    server = WeChatStandIn(token=WECHAT_TOKEN, app_id=WECHAT_APP_ID, app_secret=WECHAT_APP_SECRET)
    server.start()
    yield server
    server.stop()
    assert server.violations == []


def service_env(database_url: str | None, *, telegram: TelegramStandIn | None = None,
                wechat: WeChatStandIn | None = None) -> dict[str, str]:
    env = {"QINGLIAN_SECRET_KEY": SECRET_KEY}
    if database_url is not None:
        env["QINGLIAN_DATABASE_URL"] = database_url
    if telegram is not None:
        env.update(QINGLIAN_TELEGRAM_TOKEN=TOKEN, QINGLIAN_TELEGRAM_API_URL=telegram.root_url)
    if wechat is not None:
        env.update(QINGLIAN_WECHAT_TOKEN=WECHAT_TOKEN, QINGLIAN_WECHAT_APP_ID=WECHAT_APP_ID,
                   QINGLIAN_WECHAT_APP_SECRET=WECHAT_APP_SECRET, QINGLIAN_WECHAT_API_URL=wechat.root_url)
    return env


@pytest.fixture
def services() -> Iterator[Callable[..., LiveService]]:
    """Make `LiveService`s (not started); every one is stopped at the end of the test."""
    made: list[LiveService] = []

    def make(data_dir: Path, env: dict[str, str], *, webhook: bool = False) -> LiveService:
        live = LiveService(data_dir, env)
        if webhook:
            live.env["QINGLIAN_TELEGRAM_WEBHOOK_URL"] = f"{live.url}/telegram/webhook"
            live.env["QINGLIAN_TELEGRAM_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        made.append(live)
        return live

    yield make
    for live in made:
        live.stop()


def post_update(service: LiveService, update: dict[str, Any], secret: str = WEBHOOK_SECRET) -> httpx.Response:
    """Deliver a Telegram update to the service's webhook as Telegram does."""
    return httpx.post(f"{service.url}/telegram/webhook", json=update,
                      headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=30)


# --- residents ----------------------------------------------------------------------------------


def to_summary(chat: Chat) -> str:
    """A Telegram resident fills in a report up to the summary; returns the summary text."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(DESCRIPTION, expect="第5步")
    chat.press("evidence:done", expect="第6步")
    return chat.press("identity:anonymous", expect="请核对举报内容")


def texts_with(chat: Chat, fragment: str) -> list[str]:
    return [m["text"] for m in chat.standin.sent_messages(chat.chat_id) if fragment in (m.get("text") or "")]


def message_id_with(chat: Chat, fragment: str) -> int:
    """The id of the newest message to the resident containing `fragment` (to press its buttons later)."""
    found = [m for m in chat.standin.sent_messages(chat.chat_id) if fragment in (m.get("text") or "")]
    assert found, f"no message with {fragment!r}"
    return int(found[-1]["message_id"])


class WebResident:
    """A resident in the web chat (the JSON API the page calls)."""

    def __init__(self, service: LiveService) -> None:
        self.client = httpx.Client(base_url=service.url, timeout=30,
                                   headers={"X-Qinglian-Chat": "1", "Accept-Language": "zh-CN"})
        assert self.client.get("/").status_code == 200  # the page sets the chat cookie

    def post(self, **body: str) -> httpx.Response:
        return self.client.post("/chat/api/message", json=body)

    def send(self, **body: str) -> str:
        response = self.post(**body)
        assert response.status_code == 200, response.text
        return "\n".join(m["text"] for m in response.json()["messages"])
