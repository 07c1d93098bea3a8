"""A send rate shared through the database: each request's slot, a batch's slots in one round trip, an idle
budget that starts at now again, and a platform's pause that holds every later request — on SQLite and the
PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from storage import rate_budget


async def test_requests_go_out_one_interval_apart_and_a_batch_takes_its_slots_at_once(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        first = await rate_budget.take_slot(session, "telegram:global", now=1000.0, interval=0.05)
        second = await rate_budget.take_slot(session, "telegram:global", now=1000.0, interval=0.05)
        batch = await rate_budget.take_slot(session, "telegram:global", now=1000.0, interval=0.05, count=10)
        after_batch = await rate_budget.take_slot(session, "telegram:global", now=1000.0, interval=0.05)
        other = await rate_budget.take_slot(session, "wechat:global", now=1000.0, interval=1.0)
    assert (first, second, batch) == (1000.0, pytest.approx(1000.05), pytest.approx(1000.1))
    assert after_batch == pytest.approx(1000.6)  # after the batch's ten slots
    assert other == 1000.0  # each budget is its own


async def test_an_idle_budget_starts_at_now_and_a_pause_holds_every_later_request(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await rate_budget.take_slot(session, "telegram:chat:1", now=1000.0, interval=1.0)
        assert await rate_budget.take_slot(session, "telegram:chat:1", now=5000.0, interval=1.0) == 5000.0
        await rate_budget.hold(session, "telegram:chat:1", until=6000.0)  # the platform said: retry after
        assert await rate_budget.take_slot(session, "telegram:chat:1", now=5001.0, interval=1.0) == 6000.0
        await rate_budget.hold(session, "telegram:chat:1", until=5500.0)  # an earlier hold does not shorten it
        assert await rate_budget.take_slot(session, "telegram:chat:1", now=5002.0, interval=1.0) == 6001.0
        await rate_budget.hold(session, "telegram:chat:2", until=7000.0)  # a hold of a budget never used
        assert await rate_budget.take_slot(session, "telegram:chat:2", now=5000.0, interval=1.0) == 7000.0
