"""One Telegram send rate for every process, end to end (issue 12.7): two `qinglian serve` on one PostgreSQL
database deliver a burst of notices to one Telegram, which counts what arrives in every one-second window.
Together they stay within the configured budget, and every notice arrives once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveService, create_postgres_database, drop_postgres_database, make_test_keyring
from tests.factories import file_case
from tests.standins.telegram_server import TelegramStandIn

TOKEN = "777002:SHARED-rate"
SECRET = "r" * 48
RATE = 4  # QINGLIAN_TELEGRAM_MAX_RATE: messages a second, for both processes together
ANSWERS = 2  # notices to each reporter
FIRST_CHATS = range(9100, 9110)
SECOND_CHATS = range(9200, 9210)


@pytest.fixture
def two_services(postgres_server: str, tmp_path: Path
                 ) -> Iterator[tuple[TelegramStandIn, str, LiveService, LiveService]]:
    """Two services on one database and one Telegram; the second reaches Telegram as `localhost`, so the
    stand-in can tell (by the Host header) which process sent a message. Updates go to the first's webhook."""
    name, url = create_postgres_database(postgres_server)
    standin = TelegramStandIn(token=TOKEN)
    standin.start()
    env = {"QINGLIAN_DATABASE_URL": url, "QINGLIAN_SECRET_KEY": SECRET, "QINGLIAN_TELEGRAM_TOKEN": TOKEN,
           "QINGLIAN_TELEGRAM_MAX_RATE": str(RATE), "QINGLIAN_TELEGRAM_WEBHOOK_SECRET": "hook-rate-123"}
    first = LiveService(tmp_path / "a", {**env, "QINGLIAN_TELEGRAM_API_URL": standin.root_url})
    second = LiveService(tmp_path / "b", {**env, "QINGLIAN_TELEGRAM_API_URL": f"http://localhost:{standin.port}"})
    for service in (first, second):
        service.env["QINGLIAN_TELEGRAM_WEBHOOK_URL"] = f"{first.url}/telegram/webhook"
    try:
        first.start()  # migrates the database
        second.start()
        yield standin, url, first, second
    finally:
        second.stop()
        first.stop()
        standin.stop()
        drop_postgres_database(postgres_server, name)
    assert standin.violations == []


@pytest.mark.postgres
def test_two_processes_share_one_send_rate_and_deliver_every_notice_once(
        two_services: tuple[TelegramStandIn, str, LiveService, LiveService]) -> None:
    standin, url, first, second = two_services
    chats = [*FIRST_CHATS, *SECOND_CHATS]
    cases = asyncio.run(_file_cases(url, chats))
    sends_before = len(standin.requests_for("sendMessage"))

    # The first burst: one process takes it all (a batch is leased whole) and is still sending it when the
    # second burst is written, which the other process, idle, takes.
    asyncio.run(_answer(url, [cases[chat] for chat in FIRST_CHATS]))
    standin.wait_until(lambda: len(standin.requests_for("sendMessage")) > sends_before, timeout=30,
                       what="the first burst being sent")
    asyncio.run(_answer(url, [cases[chat] for chat in SECOND_CHATS]))
    standin.wait_until(lambda: sum(len(standin.sent_messages(chat)) for chat in chats) >= ANSWERS * len(chats),
                       timeout=120, what="every notice delivered")
    first.stop()  # a stopping service finishes its round: after this nothing more can arrive
    second.stop()

    for chat in chats:  # nothing lost, nothing twice, each reporter's in order
        texts = [message["text"] for message in standin.sent_messages(chat)]
        assert [text.split("答复 #")[1].split("\n")[0] for text in texts] == [str(n) for n in range(ANSWERS)], texts

    sends = [(at, host) for at, method, host, _ in standin.arrivals if method == "sendMessage"]
    assert len(sends) == ANSWERS * len(chats)  # (no failures: each notice took one request)
    by_process: dict[str, list[float]] = {}
    for at, host in sends:
        by_process.setdefault(host, []).append(at)
    assert sorted(by_process) == sorted([f"127.0.0.1:{standin.port}", f"localhost:{standin.port}"])
    one, other = by_process.values()
    assert min(one) < max(other) and min(other) < max(one)  # both were sending at the same time
    # The budget gives each message a slot 1/RATE s after the one before; it reaches Telegram a few
    # milliseconds after its slot (a database round trip, the network), not always the same few, so a
    # window may catch one slot's message late and the next window's on time: one more than RATE. Two
    # processes each keeping their own budget would send twice RATE.
    times = sorted(at for at, _ in sends)
    busiest = max(sum(1 for later in times if start <= later < start + 1.0) for start in times)
    assert busiest <= RATE + 1, f"{busiest} messages reached Telegram within one second (the budget is {RATE})"


async def _file_cases(url: str, chats: list[int]) -> dict[int, int]:
    """A case of each reporter (filing one sends nothing); returns chat → case id."""
    from storage.db import create_engine, create_sessionmaker

    engine = create_engine(url, make_test_keyring())
    try:
        async with create_sessionmaker(engine).begin() as session:
            cases = {}
            for chat in chats:
                case, _ = await file_case(session, secret_key=SECRET.encode(), channel="telegram",
                                          reporter_ref=str(chat), queue="triage")
                cases[chat] = case.id
            return cases
    finally:
        await engine.dispose()


async def _answer(url: str, case_ids: list[int]) -> None:
    """Staff answer each case `ANSWERS` times, in one transaction: the notices wait in the outbox together."""
    from storage import actions
    from storage.db import create_engine, create_sessionmaker

    engine = create_engine(url, make_test_keyring())
    try:
        async with create_sessionmaker(engine).begin() as session:
            loaded: list[Any] = [await actions.get_case(session, case_id) for case_id in case_ids]
            for number in range(ANSWERS):
                for case in loaded:
                    await actions.reply_to_reporter(session, case, f"答复 #{number}", actor="staff:test")
    finally:
        await engine.dispose()
