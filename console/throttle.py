"""Failed logins per client address: after too many in a sliding window, an address must wait.

The account lock (`staff_actions.record_login`, in the account's row) stops guessing one account's
password; this stops one address from trying many accounts. Both live where every `serve` process sees
them: the failures of an address are rows of the database (`storage.login_failures`), or, when the shell
hands in a Redis URL (`QINGLIAN_REDIS_URL`), a sorted set in Redis. Addresses are counted by their keyed
hash (`storage.client_limits.client_key`), never stored.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from fastapi import Request

from storage import login_failures
from storage.client_limits import client_key
from storage.db import Database
from storage.models import utcnow

IP_FAILURE_LIMIT = 20  # failed logins from one address within the lock window before it must wait
THROTTLE_STATE = "console_login_throttle"
REDIS_PREFIX = "qinglian:login-failures:"


class LoginThrottle(Protocol):
    limit: int
    window_seconds: float

    async def blocked(self, ip: str | None) -> bool: ...

    async def fail(self, ip: str | None) -> None: ...


class DatabaseLoginThrottle:
    """The failures of each address as rows of the service's database."""

    def __init__(self, database: Database, secret_key: bytes, limit: int, window_seconds: float, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self.limit = limit
        self.window_seconds = window_seconds
        self._secret_key = secret_key
        self._clock = clock

    def _key(self, ip: str | None) -> str | None:
        return client_key(self._secret_key, ip) if ip else None

    async def blocked(self, ip: str | None) -> bool:
        key = self._key(ip)
        if key is None:
            return False
        since = self._clock() - timedelta(seconds=self.window_seconds)
        async with self.database.read_sessionmaker() as session:
            return await login_failures.count_since(session, key, since) >= self.limit

    async def fail(self, ip: str | None) -> None:
        key = self._key(ip)
        if key is None:
            return
        now = self._clock()
        async with self.database.sessionmaker.begin() as session:
            await login_failures.record(session, key, now, forget_before=now - timedelta(seconds=self.window_seconds))


class RedisLoginThrottle:
    """The failures of each address as a sorted set in Redis (member: a random id, score: the time), which
    expires when the window has passed since the last failure."""

    def __init__(self, url: str, secret_key: bytes, limit: int, window_seconds: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        import redis.asyncio as redis

        self.limit = limit
        self.window_seconds = window_seconds
        self._redis: Any = redis.Redis.from_url(url)
        self._secret_key = secret_key
        self._clock = clock

    def _key(self, ip: str | None) -> str | None:
        hashed = client_key(self._secret_key, ip) if ip else None
        return REDIS_PREFIX + hashed if hashed else None

    async def blocked(self, ip: str | None) -> bool:
        key = self._key(ip)
        if key is None:
            return False
        count = await self._redis.zcount(key, self._clock() - self.window_seconds, "+inf")
        return int(count) >= self.limit

    async def fail(self, ip: str | None) -> None:
        key = self._key(ip)
        if key is None:
            return
        now = self._clock()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now - self.window_seconds)
            pipe.zadd(key, {secrets.token_hex(8): now})
            pipe.expire(key, int(self.window_seconds) + 1)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


def build_throttle(database: Database, secret_key: bytes, window_seconds: float, *,
                   redis_url: str | None) -> LoginThrottle:
    if redis_url:
        return RedisLoginThrottle(redis_url, secret_key, IP_FAILURE_LIMIT, window_seconds)
    return DatabaseLoginThrottle(database, secret_key, IP_FAILURE_LIMIT, window_seconds)


def login_throttle(request: Request) -> LoginThrottle:
    """The FastAPI dependency: the throttle `mount_console` put in the app's state."""
    throttle: LoginThrottle = getattr(request.app.state, THROTTLE_STATE)
    return throttle
