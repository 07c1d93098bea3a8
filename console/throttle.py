"""Failed logins per client address: after too many in a sliding window, an address must wait.

The account lock (`staff_actions.record_login`, in the account's row) stops guessing one account's
password; this stops one address from trying many accounts. Both live where every `serve` process sees
them: the failures of an address are rows of the database (`storage.login_failures`), or, when the shell
hands in a Redis URL (`QINGLIAN_REDIS_URL`), a sorted set in Redis. Addresses are counted by their keyed
hash (`storage.client_limits.client_key`), never stored.

What the audit log keeps of it (bounded writes): every failed login is an entry of its own (`login.failure`, with
the username tried and the address), and the failure that brings an address to the limit writes one more,
`login.throttled` (the username tried, the failures counted and how long the address waits). The requests refused
while the address waits write nothing: they are not tried at all (no password is checked), and a database write
for each would let an attacker fill the audit log and load the database at the rate they can send requests. So an
address writes at most `IP_FAILURE_LIMIT` failures and one `login.throttled` per window; attempts that race at
the limit may each write one (they all passed the check before it). A locked account is audited the same way: the
first attempt that meets the lock writes `login.locked`, the others during that lock nothing
(`storage.staff_actions.record_locked_attempt`).

Redis not answering does not stop staff from logging in, nor lift the throttle: the failures are then counted
in the database, which every process sees as well (a warning is logged once per outage, and Redis is tried
again after `REDIS_RETRY_SECONDS`), and an address's failures in the database count together with those in
Redis, so the failures of an outage still count after it.
"""

from __future__ import annotations

import logging
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
REDIS_TIMEOUT_SECONDS = 2.0
"""How long a login waits for Redis to connect or answer before the database counts instead."""
REDIS_RETRY_SECONDS = 10.0
"""After Redis failed to answer, how long the throttle counts in the database before trying Redis again."""

log = logging.getLogger(__name__)


class LoginThrottle(Protocol):
    limit: int
    window_seconds: float

    async def blocked(self, ip: str | None) -> bool: ...

    async def fail(self, ip: str | None) -> int:
        """Count a failed login of the address; returns its failures within the window, this one included (0 for
        no address): at `limit` or more, this failure throttled it."""


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
        return await self.count(ip) >= self.limit

    async def count(self, ip: str | None) -> int:
        """The address's failures within the window."""
        key = self._key(ip)
        if key is None:
            return 0
        since = self._clock() - timedelta(seconds=self.window_seconds)
        async with self.database.read_sessionmaker() as session:
            return int(await login_failures.count_since(session, key, since))

    async def fail(self, ip: str | None) -> int:
        key = self._key(ip)
        if key is None:
            return 0
        now = self._clock()
        since = now - timedelta(seconds=self.window_seconds)
        async with self.database.sessionmaker.begin() as session:
            await login_failures.record(session, key, now, forget_before=since)
            return await login_failures.count_since(session, key, since)


class RedisLoginThrottle:
    """The failures of each address as a sorted set in Redis (member: a random id, score: the time), which
    expires when the window has passed since the last failure; in `fallback`, the database, while Redis does
    not answer."""

    def __init__(self, url: str, secret_key: bytes, limit: int, window_seconds: float, *,
                 fallback: DatabaseLoginThrottle, clock: Callable[[], float] = time.time) -> None:
        import redis.asyncio as redis

        self.limit = limit
        self.window_seconds = window_seconds
        self._redis: Any = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                                socket_timeout=REDIS_TIMEOUT_SECONDS)
        self._fallback = fallback
        self._secret_key = secret_key
        self._clock = clock
        self._retry_at: float | None = None  # monotonic time; set while Redis is taken for down

    def _key(self, ip: str | None) -> str | None:
        hashed = client_key(self._secret_key, ip) if ip else None
        return REDIS_PREFIX + hashed if hashed else None

    def _redis_down(self) -> bool:
        return self._retry_at is not None and time.monotonic() < self._retry_at

    def _went_down(self, problem: Exception) -> None:
        if self._retry_at is None:
            log.warning("Redis (QINGLIAN_REDIS_URL) does not answer: %s; the console's login throttle counts failed "
                        "logins in the database until it does", problem)
        self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS

    def _answered(self) -> None:
        if self._retry_at is not None:
            log.info("Redis (QINGLIAN_REDIS_URL) answers again; the login throttle counts there")
            self._retry_at = None

    async def blocked(self, ip: str | None) -> bool:
        from redis.exceptions import RedisError

        key = self._key(ip)
        if key is None:
            return False
        in_redis = 0
        if not self._redis_down():
            try:
                in_redis = int(await self._redis.zcount(key, self._clock() - self.window_seconds, "+inf"))
            except RedisError as problem:
                self._went_down(problem)
            else:
                self._answered()
        if in_redis >= self.limit:
            return True
        return in_redis + await self._fallback.count(ip) >= self.limit

    async def fail(self, ip: str | None) -> int:
        from redis.exceptions import RedisError

        key = self._key(ip)
        if key is None:
            return 0
        if not self._redis_down():
            now = self._clock()
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zremrangebyscore(key, "-inf", now - self.window_seconds)
                    pipe.zadd(key, {secrets.token_hex(8): now})
                    pipe.expire(key, int(self.window_seconds) + 1)
                    pipe.zcard(key)
                    in_redis = int((await pipe.execute())[-1])
            except RedisError as problem:
                self._went_down(problem)
            else:
                self._answered()
                # the failures counted in the database during an outage count too, as in `blocked`
                return in_redis if in_redis >= self.limit else in_redis + await self._fallback.count(ip)
        return await self._fallback.fail(ip)  # what Redis counted before it went down cannot be read meanwhile

    async def close(self) -> None:
        await self._redis.aclose()


def build_throttle(database: Database, secret_key: bytes, window_seconds: float, *,
                   redis_url: str | None) -> LoginThrottle:
    in_database = DatabaseLoginThrottle(database, secret_key, IP_FAILURE_LIMIT, window_seconds)
    if redis_url:
        return RedisLoginThrottle(redis_url, secret_key, IP_FAILURE_LIMIT, window_seconds, fallback=in_database)
    return in_database


def login_throttle(request: Request) -> LoginThrottle:
    """The FastAPI dependency: the throttle `mount_console` put in the app's state."""
    throttle: LoginThrottle = getattr(request.app.state, THROTTLE_STATE)
    return throttle
