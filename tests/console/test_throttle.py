"""The login throttle: failed logins per address in a sliding window, counted where every process sees them
(the database, or Redis), on a clock the test moves."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from console.throttle import DatabaseLoginThrottle, RedisLoginThrottle
from storage.models import LoginFailure, utcnow

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


async def test_an_address_waits_after_too_many_failures_until_the_window_passes(database: Any) -> None:
    clock = Clock()
    throttle = DatabaseLoginThrottle(database, b"s" * 32, 3, 60.0, clock=clock)
    for _ in range(2):
        await throttle.fail("203.0.113.7")
    assert not await throttle.blocked("203.0.113.7")
    clock.now += timedelta(seconds=30)
    await throttle.fail("203.0.113.7")
    assert await throttle.blocked("203.0.113.7")
    assert not await throttle.blocked("198.51.100.1")  # other addresses are not affected
    clock.now += timedelta(seconds=31)  # the first two failures have left the window; the third has not
    assert not await throttle.blocked("203.0.113.7")
    await throttle.fail("203.0.113.7")
    await throttle.fail("203.0.113.7")
    assert await throttle.blocked("203.0.113.7")
    # a second throttle on the same database (another process) sees the same failures
    assert await DatabaseLoginThrottle(database, b"s" * 32, 3, 60.0, clock=clock).blocked("203.0.113.7")


async def test_an_unknown_address_is_never_blocked_and_old_failures_are_deleted(database: Any) -> None:
    clock = Clock()
    throttle = DatabaseLoginThrottle(database, b"s" * 32, 1, 60.0, clock=clock)
    await throttle.fail(None)
    assert not await throttle.blocked(None)
    for _ in range(3):
        await throttle.fail("192.0.2.1")
        clock.now += timedelta(seconds=61)
    async with database.read_sessionmaker() as session:
        stored = list((await session.execute(select(LoginFailure.client_key))).scalars())
        assert await session.scalar(select(func.count()).select_from(LoginFailure)) == 1
    assert "192.0.2.1" not in stored[0]  # only the keyed hash of the address


async def _require_redis() -> None:
    """Skip the test where no Redis answers on 127.0.0.1:6379 (a laptop; CI has one)."""
    import redis.asyncio as redis

    probe = redis.Redis.from_url(REDIS_URL)
    try:
        await probe.ping()
    except (OSError, redis.ConnectionError):
        pytest.skip("no Redis on 127.0.0.1:6379")
    finally:
        await probe.aclose()


async def test_redis_throttle_counts_in_redis(database: Any) -> None:
    await _require_redis()
    moment = [1_000_000.0]
    secret = secrets.token_bytes(32)  # keys of its own: a run never sees another run's failures
    fallback = DatabaseLoginThrottle(database, secret, 3, 60.0)
    first = RedisLoginThrottle(REDIS_URL, secret, 3, 60.0, fallback=fallback, clock=lambda: moment[0])
    second = RedisLoginThrottle(REDIS_URL, secret, 3, 60.0, fallback=fallback, clock=lambda: moment[0])
    try:
        await first.fail("203.0.113.9")
        await second.fail("203.0.113.9")
        assert not await first.blocked("203.0.113.9")
        moment[0] += 30
        await first.fail("203.0.113.9")
        assert (await first.blocked("203.0.113.9"), await second.blocked("203.0.113.9")) == (True, True)
        assert not await second.blocked("198.51.100.9")
        moment[0] += 31
        assert not await second.blocked("203.0.113.9")
    finally:
        await first.close()
        await second.close()


async def test_with_redis_down_failures_are_counted_in_the_database_and_count_after_it_is_back(
        database: Any) -> None:
    secret = secrets.token_bytes(32)
    down = RedisLoginThrottle("redis://127.0.0.1:1/0", secret, 3, 60.0,  # nothing listens: a refused connection
                              fallback=DatabaseLoginThrottle(database, secret, 3, 60.0))
    try:
        assert not await down.blocked("203.0.113.5")
        for _ in range(2):
            await down.fail("203.0.113.5")
        assert not await down.blocked("203.0.113.5")
        await down.fail("203.0.113.5")
        assert await down.blocked("203.0.113.5") and not await down.blocked("198.51.100.5")
        # another process, on the database alone, sees the same failures
        assert await DatabaseLoginThrottle(database, secret, 3, 60.0).blocked("203.0.113.5")
    finally:
        await down.close()

    await _require_redis()
    # Redis answering again: what was counted during the outage still counts, so an outage is no fresh start
    back = RedisLoginThrottle(REDIS_URL, secret, 3, 60.0, fallback=DatabaseLoginThrottle(database, secret, 3, 60.0))
    try:
        assert await back.blocked("203.0.113.5")
        await back.fail("198.51.100.5")
        async with database.read_sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(LoginFailure)) == 3  # into Redis, not here
    finally:
        await back.close()
