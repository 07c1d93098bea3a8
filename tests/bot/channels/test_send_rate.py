"""One Telegram send rate for every process (issue 12.7): two processes' limiters share one budget in the
database (SQLite and PostgreSQL) or in Redis, so their requests are spaced as if one process sent them all; a
RetryAfter pauses every process. The clock is fixed: what is checked is when each request may go out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.channels.send_rate import OVERALL, DatabaseBudget, RedisBudget, SharedRateLimiter
from storage.db import Database
from tests.conftest import make_test_keyring

NOW = 1_800_000_000.0
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
async def two_processes(database_url: str) -> AsyncIterator[tuple[DatabaseBudget, DatabaseBudget]]:
    """Two budgets on two separate connections to one database, as two `serve` processes have."""
    first = Database.connect(database_url, make_test_keyring())
    second = Database.connect(database_url, make_test_keyring())
    try:
        yield DatabaseBudget(first, clock=lambda: NOW), DatabaseBudget(second, clock=lambda: NOW)
    finally:
        await first.dispose()
        await second.dispose()


async def test_two_processes_take_turns_in_one_budget(two_processes: tuple[DatabaseBudget, DatabaseBudget]) -> None:
    first, second = two_processes
    waits = [await (first if number % 2 else second).take("telegram:overall", 1 / 30) for number in range(60)]
    assert waits == pytest.approx([number / 30 for number in range(60)])  # 30 a second between them, not 60


async def test_a_burst_of_one_process_gets_one_slot_each_and_the_other_process_waits_behind_it(
        two_processes: tuple[DatabaseBudget, DatabaseBudget]) -> None:
    """An outbox batch asks for many slots at once: each request gets its own, 1/30 s apart, whichever round trip
    took them, and a request of another process comes after all of them."""
    first, second = two_processes
    burst = await asyncio.gather(*(first.take("telegram:overall", 1 / 30) for _ in range(12)))
    later = await second.take("telegram:overall", 1 / 30)
    assert sorted(burst) == pytest.approx([number / 30 for number in range(12)])
    assert later == pytest.approx(12 / 30)


async def test_a_pause_asked_by_telegram_holds_every_process(
        two_processes: tuple[DatabaseBudget, DatabaseBudget]) -> None:
    first, second = two_processes
    await first.hold("telegram:overall", 12.0)
    assert await second.take("telegram:overall", 1 / 30) == pytest.approx(12.0)
    assert await first.take("telegram:group:-100", 3.0) == 0.0  # another budget is not held


async def test_redis_budgets_are_shared_the_same_way() -> None:
    name = f"test:{uuid.uuid4().hex}"
    first, second = RedisBudget(REDIS_URL, clock=lambda: NOW), RedisBudget(REDIS_URL, clock=lambda: NOW)
    try:
        waits = [await (first if number % 2 else second).take(name, 0.5) for number in range(6)]
        await second.hold(name, 100.0)
        held = await first.take(name, 0.5)
    finally:
        await first.close()
        await second.close()
    assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert held == pytest.approx(100.0)


async def test_messages_to_groups_also_take_the_groups_budget_and_other_calls_take_none(database: Any) -> None:
    budget = DatabaseBudget(database, clock=lambda: NOW)
    limiter = SharedRateLimiter(budget, overall_per_second=30, group_per_minute=20)

    async def call(**_: Any) -> bool:
        return True

    await limiter.process_request(call, (), {}, "sendMessage", {"chat_id": 42, "text": "hi"}, None)
    await limiter.process_request(call, (), {}, "sendMessage", {"chat_id": -1001, "text": "hi"}, None)
    await limiter.process_request(call, (), {}, "getMe", {}, None)

    # the next request of each budget waits behind what the three calls took
    assert await budget.take(OVERALL, 1 / 30) == pytest.approx(2 / 30)  # two messages; getMe took nothing
    assert await budget.take("telegram:group:-1001", 3.0) == pytest.approx(3.0)  # the group's one message
    assert await budget.take("telegram:group:42", 3.0) == 0.0  # a private chat has no group budget


async def test_a_retry_after_pauses_the_shared_budget_and_reaches_the_outbox(database: Any) -> None:
    budget = DatabaseBudget(database, clock=lambda: NOW)
    limiter = SharedRateLimiter(budget)

    async def flooded(**_: Any) -> bool:
        raise RetryAfter(timedelta(seconds=7))

    with pytest.raises(RetryAfter):
        await limiter.process_request(flooded, (), {}, "sendMessage", {"chat_id": 42, "text": "hi"}, None)
    assert await budget.take(OVERALL, 1 / 30) == pytest.approx(7.0)


async def test_an_unreachable_budget_paces_the_process_alone_instead_of_holding_the_message(
        caplog: pytest.LogCaptureFixture) -> None:
    """The database is down: the resident must still be told so. Nothing listens on port 9 of 127.0.0.1."""
    down = Database.connect("postgresql+asyncpg://postgres@127.0.0.1:9/postgres", make_test_keyring())
    limiter = SharedRateLimiter(DatabaseBudget(down), overall_per_second=50)
    sent: list[str] = []

    async def send(**fields: Any) -> bool:
        sent.append(fields["text"])
        return True

    try:
        for number in range(3):
            await limiter.process_request(send, (), {"text": f"请稍后再试 {number}"}, "sendMessage",
                                          {"chat_id": 42, "text": f"请稍后再试 {number}"}, None)
    finally:
        await down.dispose()
    assert sent == ["请稍后再试 0", "请稍后再试 1", "请稍后再试 2"]
    assert sum("pacing this process alone" in record.message for record in caplog.records) == 1  # said once
