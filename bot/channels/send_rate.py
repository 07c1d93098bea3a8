"""One Telegram send rate for every delivering process (issue 12.7).

Telegram allows a bot about 30 messages a second overall and 20 a minute in one group; PTB's `AIORateLimiter`
counts them per process, so two `serve` processes would send twice the rate. `SharedRateLimiter` is a PTB
`BaseRateLimiter` whose budgets live where every process sees them: the database (`storage.rate_budget`) or,
with `QINGLIAN_REDIS_URL`, Redis. A request with a `chat_id` takes the next slot of the overall budget (and of
its group's, for a group chat) and waits for it; a `RetryAfter` pauses the budget for every process.

When the shared budget cannot be reached (the database is down or locked, Redis is gone), the limiter paces this
process alone rather than holding the message: telling a resident that the service is unavailable must not wait
for the service's database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from storage import rate_budget
from storage.db import Database

log = logging.getLogger(__name__)

OVERALL = "telegram:overall"
GROUP_PREFIX = "telegram:group:"


class Budget(Protocol):
    async def take(self, name: str, interval: float) -> float:
        """Seconds to wait before this request may go out."""
        ...

    async def hold(self, name: str, seconds: float) -> None: ...

    async def close(self) -> None: ...


class DatabaseBudget:
    """The budgets in the database. Requests of this process that ask for a budget's slot while another round
    trip for it is under way wait for the next one, which takes all their slots in one statement: a batch of
    outbox messages costs one transaction, not one each. The slots one statement took belong to this process
    alone, so the rate across processes is kept."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._clock = clock
        self._waiting: dict[str, list[asyncio.Future[float]]] = {}
        self._taking: dict[str, asyncio.Task[None]] = {}

    async def take(self, name: str, interval: float) -> float:
        slot: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, []).append(slot)
        if name not in self._taking:
            self._taking[name] = asyncio.create_task(self._take_rounds(name, interval))
        return await slot

    async def _take_rounds(self, name: str, interval: float) -> None:
        """Round trips for the requests waiting for `name`, until none is left."""
        slots: list[asyncio.Future[float]] = []
        try:
            while self._waiting.get(name):
                slots = self._waiting.pop(name)
                try:
                    async with self._database.sessionmaker.begin() as session:
                        first = await rate_budget.take_slot(session, name, now=self._clock(), interval=interval,
                                                            count=len(slots))
                except Exception as error:  # noqa: BLE001 - each request handles it (SharedRateLimiter)
                    for slot in slots:
                        if not slot.done():
                            slot.set_exception(error)
                    continue
                now = self._clock()  # from after the round trip: the slots are kept, not overshot
                for position, slot in enumerate(slots):
                    if not slot.done():  # a request cancelled meanwhile leaves its slot unused
                        slot.set_result(max(0.0, first + position * interval - now))
        finally:
            del self._taking[name]
            for slot in slots + self._waiting.pop(name, []):  # stopped (the loop is closing): nobody waits on
                if not slot.done():
                    slot.cancel()

    async def hold(self, name: str, seconds: float) -> None:
        async with self._database.sessionmaker.begin() as session:
            await rate_budget.hold(session, name, self._clock() + seconds)

    async def close(self) -> None:
        return None


# KEYS[1]: the budget; ARGV: now, interval. The same rule as the database's UPDATE, atomic in Redis.
_TAKE = """
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
if next_at < now then next_at = now end
redis.call('SET', KEYS[1], tostring(next_at + tonumber(ARGV[2])), 'EX', 3600)
return tostring(next_at)
"""
_HOLD = """
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_at < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'EX', 3600) end
return 1
"""


class RedisBudget:
    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.Redis.from_url(url)
        self._take = self._redis.register_script(_TAKE)
        self._hold = self._redis.register_script(_HOLD)
        self._clock = clock

    async def take(self, name: str, interval: float) -> float:
        now = self._clock()
        at = float(await self._take(keys=[f"qinglian:rate:{name}"], args=[repr(now), repr(interval)]))
        return max(0.0, at - now)

    async def hold(self, name: str, seconds: float) -> None:
        await self._hold(keys=[f"qinglian:rate:{name}"], args=[repr(self._clock() + seconds)])

    async def close(self) -> None:
        await self._redis.aclose()


class SharedRateLimiter(BaseRateLimiter[None]):
    """PTB's rate limiter interface over a shared `Budget`."""

    def __init__(self, budget: Budget, *, overall_per_second: float = 30.0, group_per_minute: float = 20.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._budget = budget
        self._overall_interval = 1.0 / overall_per_second
        self._group_interval = 60.0 / group_per_minute
        self._clock = clock
        self._local: dict[str, float] = {}  # this process's own pacing while the shared budget is unreachable
        self._unreachable_since: float | None = None
        self._paused_until = 0.0  # Telegram's last RetryAfter to this process

    async def _wait(self, name: str, interval: float) -> float:
        try:
            delay = await self._budget.take(name, interval)
        except Exception as error:  # noqa: BLE001 - any failure of the shared store: pace locally
            now = self._clock()
            if self._unreachable_since is None:
                self._unreachable_since = now
                log.warning("the shared Telegram send budget is unreachable (%s); pacing this process alone",
                            type(error).__name__)
            at = max(self._local.get(name, 0.0), now)
            self._local[name] = at + interval
            return at - now
        if self._unreachable_since is not None:
            self._unreachable_since = None
            log.info("the shared Telegram send budget is reachable again")
        return delay

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        await self._budget.close()

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, Any]], args: Any,
                              kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                              rate_limit_args: None) -> Any:
        chat_id = data.get("chat_id")
        if chat_id is None:  # not a message to someone (getMe, setWebhook, …): not counted
            return await callback(*args, **kwargs)
        group = _is_group(chat_id)
        if group:
            await asyncio.sleep(await self._wait(f"{GROUP_PREFIX}{chat_id}", self._group_interval))
        await asyncio.sleep(await self._wait(OVERALL, self._overall_interval))
        paused = self._paused_until - self._clock()
        if paused > 0:  # Telegram asked this process to pause while this message waited for its slot
            await asyncio.sleep(paused)
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as error:  # every process pauses, then the outbox sends it again
            seconds = _seconds(error.retry_after)
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._local[OVERALL] = max(self._local.get(OVERALL, 0.0), self._paused_until)
            try:
                await self._budget.hold(OVERALL, seconds)
            except Exception:  # noqa: BLE001 - the outbox retries after retry_after anyway
                log.warning("could not share a Telegram flood-control pause of %.0f s", seconds)
            raise


def _is_group(chat_id: object) -> bool:
    """Group and channel chats have negative ids, or are named by @username."""
    if isinstance(chat_id, int):
        return chat_id < 0
    text = str(chat_id)
    return text.startswith(("-", "@"))


def _seconds(retry_after: Any) -> float:
    return float(retry_after.total_seconds()) if hasattr(retry_after, "total_seconds") else float(retry_after)
