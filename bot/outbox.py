"""Delivery of outbox messages to residents' channels, retried until delivered.

A batch is claimed in one short transaction (a lease: `next_attempt_at` moves into the future, rows
locked with SKIP LOCKED on PostgreSQL) and sent outside any transaction. Each message is settled as
soon as its own send returns (sends that finish together share one short transaction), and the lease
of the messages still in flight is renewed while the batch runs, so a short lease suffices: a process
killed between a send and its settle leaves only that message to go out again, `LEASE` later. A
recipient's messages go out in order: while one is leased or waiting for a retry, the later ones wait
too. (Telegram's and WeChat's send APIs take no idempotency key: a message whose answer was lost can
be shown twice; settling per message keeps that to the one message in flight.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.city import CityConfig
from handlers.notices import render
from handlers.texts import Texts
from handlers.types import Outbound
from storage import outbox

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=15)
RENEW_EVERY = LEASE / 3
WAITING = "waiting behind an earlier message"
MAX_ATTEMPTS = 50
STOP_GRACE_SECONDS = 20.0


class TemporaryFailure(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    pass


class WaitForResident(Exception):
    """The platform will not take the message now, but will once the resident writes again (WeChat's
    48-hour window, with no consent to notices): it waits, and the resident's next message is answered
    with the newest state of the case first."""


@dataclass(frozen=True)
class Delivery:
    """One message for a sender: the rendered message, and what it was rendered from (a notice's fields
    let a sender use a platform's notice templates)."""

    recipient: str
    message: Outbound
    payload: dict[str, object]
    case_id: int | None = None


Sender = Callable[[Delivery], Awaitable[None]]


def plain(send: Callable[[str, Outbound], Awaitable[None]]) -> Sender:
    """A sender for a channel that sends every message the same way (recipient and rendered message)."""
    async def deliver(delivery: Delivery) -> None:
        await send(delivery.recipient, delivery.message)

    return deliver


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(300.0, 0.5 * 2 ** min(attempts, 10)))


@dataclass
class _Outcome:
    message_id: int
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False
    waiting: bool = False


class OutboxWorker:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], texts: Texts, *, city: CityConfig,
                 public_url: str = "", batch_size: int = 200, idle_poll_seconds: float = 1.0) -> None:
        self._public_url = public_url
        self._city = city
        self._sessionmaker = sessionmaker
        self._texts = texts
        self._senders: dict[str, Sender] = {}
        self._wake = asyncio.Event()
        self._batch_size = batch_size
        self._idle_poll_seconds = idle_poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_round = False

    def register(self, channel: str, sender: Sender) -> None:
        self._senders[channel] = sender
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop between rounds: a round in progress finishes — its sends are recorded, so nothing a platform
        already took goes out again after a restart — unless it takes longer than `grace` seconds."""
        if self._task is None:
            return
        self._stopping = True
        if not self._in_round:
            self._task.cancel()
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the round, so a wake-up that arrives during it starts the next round at once.
            self._wake.clear()
            self._in_round = True
            try:
                delivered = await self.deliver_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox delivery round failed")
                delivered = 0
            finally:
                self._in_round = False
            if self._stopping:
                return
            if delivered == 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._idle_poll_seconds)
                except TimeoutError:
                    pass

    async def deliver_once(self) -> int:
        """Claim one batch, send it, settle it. Returns how many messages were attempted."""
        if not self._senders:
            return 0
        async with self._sessionmaker.begin() as session:
            batch = await outbox.lease(session, channels=list(self._senders), limit=self._batch_size, lease=LEASE)
        if not batch:
            return 0
        by_recipient: dict[tuple[str, str], list[tuple[int, dict[str, object], int | None]]] = defaultdict(list)
        for message_id, channel, recipient, payload, case_id in batch:
            by_recipient[(channel, recipient)].append((message_id, payload, case_id))
        settler = _Settler(self._settle, {message_id for message_id, _, _, _, _ in batch})
        renewing = asyncio.create_task(self._renew(settler))
        try:
            await asyncio.gather(*(self._send_in_order(channel, recipient, items, settler.add)
                                   for (channel, recipient), items in by_recipient.items()))
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await settler.drain()
        return len(batch)

    async def _renew(self, settler: _Settler) -> None:
        """Keep the lease of the batch's unsettled messages while their sends run (one may wait out a
        long flood-control pause), so no other worker takes them meanwhile."""
        while True:
            await asyncio.sleep(RENEW_EVERY.total_seconds())
            if settler.unsettled:
                async with self._sessionmaker.begin() as session:
                    await outbox.renew_lease(session, sorted(settler.unsettled), LEASE)

    async def _send_in_order(self, channel: str, recipient: str,
                             items: list[tuple[int, dict[str, object], int | None]],
                             settle: Callable[[list[_Outcome]], None]) -> None:
        sender = self._senders[channel]
        outcomes: list[_Outcome] = []
        for position, (message_id, payload, case_id) in enumerate(items):
            try:
                message = render(payload, self._texts, self._public_url, city=self._city, channel=channel)
                await sender(Delivery(recipient, message, payload, case_id))
                settle([_Outcome(message_id)])  # settled now, not when the whole batch is done
                continue
            except WaitForResident as waiting:
                outcomes.append(_Outcome(message_id, str(waiting), waiting=True))
            except TemporaryFailure as failure:
                outcomes.append(_Outcome(message_id, str(failure), failure.retry_after))
                # The rest wait behind this one, so the resident reads them in order.
                outcomes.extend(_Outcome(later_id, WAITING, failure.retry_after)
                                for later_id, _, _ in items[position + 1:])
                break
            except PermanentFailure as failure:
                outcomes.append(_Outcome(message_id, str(failure), permanent=True))
            except Exception as exc:
                log.exception("sending outbox message %s failed", message_id)
                outcomes.append(_Outcome(message_id, f"{type(exc).__name__}: {exc}"))
                outcomes.extend(_Outcome(later_id, WAITING)
                                for later_id, _, _ in items[position + 1:])
                break
        settle(outcomes)

    async def _settle(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        async with self._sessionmaker.begin() as session:
            await outbox.mark_sent(session, [o.message_id for o in outcomes if o.error is None])
            failed = [o for o in outcomes if o.error is not None]
            if not failed:
                return
            by_id = await outbox.messages(session, [o.message_id for o in failed])
            for outcome in failed:
                message = by_id[outcome.message_id]
                error = outcome.error or ""
                if outcome.waiting:
                    log.info("outbox message %s waits for the resident: %s", message.id, error)
                    outbox.mark_waiting(message, reason=error)
                elif outcome.permanent or message.attempts + 1 >= MAX_ATTEMPTS:
                    log.warning("outbox message %s failed for good: %s", message.id, error)
                    outbox.mark_failed(message, error=error)
                elif error == WAITING:
                    outbox.postpone(message, timedelta(seconds=outcome.retry_after or 0))
                else:
                    delay = (timedelta(seconds=outcome.retry_after) if outcome.retry_after is not None
                             else backoff(message.attempts))
                    outbox.mark_retry(message, error=error, delay=delay)


class _Settler:
    """Records outcomes as sends finish: one settle transaction runs at a time and takes every outcome that
    arrived meanwhile, so a message is recorded moments after its send, and a busy batch still settles in
    few transactions."""

    def __init__(self, settle: Callable[[list[_Outcome]], Awaitable[None]], message_ids: set[int]) -> None:
        self._settle = settle
        self.unsettled = set(message_ids)
        self._waiting: list[_Outcome] = []
        self._running: asyncio.Task[None] | None = None

    def add(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        self._waiting.extend(outcomes)
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._waiting:
            taken, self._waiting = self._waiting, []
            try:
                await self._settle(taken)
            except Exception:
                log.exception("settling %d outbox messages failed; their lease runs out and they go again",
                              len(taken))
                continue
            self.unsettled.difference_update(outcome.message_id for outcome in taken)

    async def drain(self) -> None:
        while self._running is not None and not self._running.done():
            await self._running
        if self._waiting:
            await self._flush()
