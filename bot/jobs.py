"""Housekeeping that runs in the background of `qinglian serve`: expired drafts, old bookkeeping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from console.stats import digest_message
from handlers import hotspots as hot_issues
from handlers import similar as similar_cases
from handlers.city import CityConfig, Limits
from handlers.routing import staff_channels, warning_horizon
from nlp.search import index_terms
from nlp.similarity import SimilarityHasher
from storage import digests, housekeeping, login_failures, loop, outbox, search, similar
from storage.db import DATABASE_UNAVAILABLE, disk_full, unwritable
from storage.models import utcnow

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 3600.0
DEADLINE_INTERVAL_SECONDS = 600.0
LOGIN_FAILURES_KEPT = timedelta(days=7)
"""Failed console logins older than this are forgotten (the throttle's window is console.login_lock_minutes)."""
UPDATE_MEMORY = timedelta(days=7)
NONCE_MEMORY = timedelta(minutes=15)
"""Longer than a signed callback stays fresh (its timestamp ± the allowed clock skew)."""


async def expire_drafts(sessionmaker: async_sessionmaker[AsyncSession], evidence_dir: Path, limits: Limits) -> int:
    """Delete drafts (and their evidence files) untouched for longer than the configured lifetime."""
    now = utcnow()
    cutoff = now - timedelta(days=limits.draft_ttl_days)
    files_cutoff = now - timedelta(hours=limits.draft_with_files_ttl_hours)
    expired = 0
    while True:
        async with sessionmaker.begin() as session:
            count, files = await housekeeping.expire_drafts(session, cutoff, with_files_older_than=files_cutoff)
        await asyncio.to_thread(_unlink, evidence_dir, files)
        expired += count
        if not count:
            return expired


def _unlink(evidence_dir: Path, names: list[str]) -> None:
    for name in names:
        (evidence_dir / name).unlink(missing_ok=True)


def _terms_of(texts: list[list[str]]) -> list[set[str]]:
    return [index_terms(case_texts) for case_texts in texts]


async def index_for_search(sessionmaker: async_sessionmaker[AsyncSession], batch: int = 200) -> int:
    """Index the cases filed before the search index existed, or under an older version of its terms."""
    indexed = 0
    while True:
        async with sessionmaker() as session:
            cases = await search.unindexed(session, batch)
        terms = await asyncio.to_thread(_terms_of, [case_texts for _, case_texts in cases])
        async with sessionmaker.begin() as session:  # words found off the loop, outside the write lock
            await search.reindex(session, [(case_id, case_terms)
                                           for (case_id, _), case_terms in zip(cases, terms, strict=True)])
        indexed += len(cases)
        if len(cases) < batch:
            return indexed


def _signatures(hasher: SimilarityHasher, cases: list[tuple[int, str, str]]) -> list[similar.StoredSignature]:
    signatures = []
    for _, place, description in cases:
        terms = hasher.term_hashes(description)
        signatures.append(similar_cases.stored(hasher.signature_of_terms(terms, place), terms))
    return signatures


async def sign_for_similarity(sessionmaker: async_sessionmaker[AsyncSession], batch: int = 200) -> int:
    """Store the similarity signatures of the cases filed before signatures existed (or under an older
    version), so they are found as similar cases and counted in hot issues."""
    signed = last = 0
    while True:
        async with sessionmaker() as session:
            cases = await similar.unsigned(session, batch, after=last)
            hasher = similar_cases.hasher_for(session)
        signatures = await asyncio.to_thread(_signatures, hasher, cases)
        async with sessionmaker.begin() as session:
            await similar.store_signatures(session, [(case_id, signature) for (case_id, _, _), signature
                                                     in zip(cases, signatures, strict=True)])
        signed += len(cases)
        if len(cases) < batch:
            return signed
        last = cases[-1][0]


async def housekeeping_once(sessionmaker: async_sessionmaker[AsyncSession], evidence_dir: Path,
                            limits: Limits) -> None:
    expired = await expire_drafts(sessionmaker, evidence_dir, limits)
    if indexed := await index_for_search(sessionmaker):
        log.info("search index: %d cases indexed", indexed)
    if signed := await sign_for_similarity(sessionmaker):
        log.info("similar cases: %d cases signed", signed)
    async with sessionmaker.begin() as session:  # each address's own failures are dropped when it fails again
        await login_failures.prune(session, utcnow() - LOGIN_FAILURES_KEPT)
    now = utcnow()
    erased = 0
    while True:
        async with sessionmaker.begin() as session:
            batch = await housekeeping.erase_old_contacts(session, now - timedelta(days=limits.contact_retention_days))
        erased += batch
        if not batch:
            break
    async with sessionmaker.begin() as session:  # a conversation busy during its case's batch forgets it now
        erased_in_chats = await housekeeping.forget_erased_cases(session)
    if erased or erased_in_chats:
        log.info("retention: erased the contact details of %d closed cases (%d conversations forgot an erased "
                 "case)", erased, erased_in_chats)
    forgotten = 0
    while True:
        async with sessionmaker.begin() as session:
            batch = await housekeeping.erase_idle_conversations(
                session, now - timedelta(days=limits.conversation_retention_days))
        forgotten += batch
        if not batch:
            break
    if forgotten:
        log.info("retention: deleted %d idle conversations with their messages", forgotten)
    async with sessionmaker.begin() as session:
        await housekeeping.prune_bookkeeping(
            session, updates_before=now - UPDATE_MEMORY,
            guesses_before=now - timedelta(minutes=limits.status_window_minutes * 2),
            reports_before=now - timedelta(hours=24, minutes=1),
            wrong_codes_before=now - timedelta(minutes=limits.status_window_minutes + 1),
            nonces_before=now - NONCE_MEMORY,
        )
        await outbox.prune_delivered(session, sent_before=now - timedelta(hours=limits.outbox_retention_hours),
                                     failed_before=now - timedelta(days=limits.outbox_failed_retention_days))
    if expired:
        log.info("expired %d unfinished drafts", expired)
    async with sessionmaker.begin() as session:  # the planner's statistics, at a city's scale (SQLite)
        await housekeeping.optimize(session)



async def send_digests(sessionmaker: async_sessionmaker[AsyncSession], city: CityConfig, now: datetime) -> int:
    """Write each queue's digest to the outbox for each of its staff channels, in one transaction; returns
    how many messages were enqueued. Queues without a staff channel are skipped."""
    enqueued = 0
    async with sessionmaker.begin() as session:
        for queue in city.queues:
            targets = staff_channels(city, queue.code)
            if targets:
                facts = await digests.digest_facts(session, queue.code, now, soon_until=warning_horizon(city, now))
                enqueued += await digests.enqueue_digest(session, targets=targets, text=digest_message(city, facts))
    return enqueued


async def digest_once(sessionmaker: async_sessionmaker[AsyncSession], city: CityConfig) -> int:
    """Send the daily digest to every queue's staff channel once a day, after the configured hour,
    whichever worker gets there first."""
    now = utcnow()
    local = now.astimezone(ZoneInfo(city.timezone))
    if local.hour < city.console.digest_hour:
        return 0
    period_start = local.replace(hour=city.console.digest_hour, minute=0, second=0, microsecond=0)
    async with sessionmaker.begin() as session:
        if not await housekeeping.claim_scheduled_run(session, "daily_digest", period_start.astimezone(UTC)):
            return 0
    return await send_digests(sessionmaker, city, now)



async def deadlines_once(sessionmaker: async_sessionmaker[AsyncSession], city: CityConfig,
                         now: datetime | None = None, *,
                         batch: int = loop.DEADLINE_BATCH) -> tuple[int, int]:
    """Warn the queues' staff of cases whose deadline is within `loop.warn_working_days` working days, and
    escalate the overdue ones to the supervisor; each once per deadline. The round reads only the cases still to
    be told (`loop.untold_deadline_case_ids`), then tells them in transactions of `batch` cases. Returns (warned,
    escalated)."""
    now = now or utcnow()
    horizon = warning_horizon(city, now)
    warned = escalated = 0
    async with sessionmaker() as session:
        untold = await loop.untold_deadline_case_ids(session, horizon, now)
    for first in range(0, len(untold), batch):
        async with sessionmaker.begin() as session:
            # each case is read again here: another worker may have told of it since (warn and escalate then
            # do nothing), or it may have been accepted or closed meanwhile
            for case in await loop.cases_by_id(session, untold[first:first + batch]):
                current = loop.deadline_of(case)
                if current is None:
                    continue
                targets = staff_channels(city, case.queue)
                if current[1] < now:
                    escalated += await loop.escalate(session, case, staff_targets=targets,
                                                     staff_locale=city.default_locale)
                else:
                    warned += await loop.warn(session, case, staff_targets=targets, staff_locale=city.default_locale)
    return warned, escalated


async def hotspots_once(sessionmaker: async_sessionmaker[AsyncSession], city: CityConfig,
                        now: datetime | None = None, *, force: bool = False,
                        read_sessionmaker: async_sessionmaker[AsyncSession] | None = None) -> bool:
    """Refresh the hot issues when the newest refresh is older than `similarity.hotspot_refresh_minutes` (or
    `force`), reading the period through `read_sessionmaker` where given. Returns whether it refreshed."""
    run = await hot_issues.refresh(sessionmaker, city.similarity, now or utcnow(), force=force,
                                   tz=ZoneInfo(city.timezone),
                                   read_sessionmaker=read_sessionmaker)
    if run is not None:
        log.info("hot issues: %d cases grouped in %.1f s, %d groups kept", run.cases, run.seconds, len(run.groups))
    return run is not None



STOP_GRACE_SECONDS = 30.0
"""How long a stop waits for a round in progress (a housekeeping batch, a digest) to commit."""


class BackgroundJobs:
    """Periodic jobs that stop between rounds, never in one: a round's transactions commit or roll back on
    their own terms, so a stopping process leaves no write transaction half-way and no SQLite write lock
    held by a connection abandoned in mid-statement (which made the next writer wait for its busy timeout
    and fail with "database is locked")."""

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, name: str, seconds: float, round_: Callable[[], Awaitable[object]], *,
              delay: float = 0.0) -> None:
        """Run `round_` every `seconds` (the first time after `delay`) until `stop`; a failed round is logged and
        the next one runs on time."""
        self._tasks.append(asyncio.create_task(self._run(name, seconds, round_, delay), name=name))

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds` or until a stop is asked for; True when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass
        return self._stopping.is_set()

    async def _run(self, name: str, seconds: float, round_: Callable[[], Awaitable[object]], delay: float) -> None:
        if delay and await self._pause(delay):
            return
        full = False  # the rounds fail on a full disk: said once, not with a traceback every round
        while not self._stopping.is_set():
            try:
                await round_()
            except Exception as problem:
                if not (isinstance(problem, DATABASE_UNAVAILABLE) and disk_full(problem)):
                    log.exception("background job %s failed; it runs again in %.0f s", name, seconds)
                elif not full:
                    full = True
                    log.error("background job %s: %s; it tries again every %.0f s", name, unwritable(problem), seconds)
            else:
                if full:
                    log.warning("background job %s: the disk has room again", name)
                full = False
            if await self._pause(seconds):
                return

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Ask every job to stop after its current round and wait for them; a round still running after
        `grace` seconds is cancelled (and logged)."""
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            log.warning("background job %s did not finish its round within %.0f s; cancelled", task.get_name(),
                        grace)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def background_jobs(sessionmaker: async_sessionmaker[AsyncSession], city: CityConfig, evidence_dir: Path,
                    wake: Callable[[], None],
                    read_sessionmaker: async_sessionmaker[AsyncSession] | None = None) -> BackgroundJobs:
    """The periodic jobs every serving or worker process runs: housekeeping, daily digests, deadline warnings
    and the hot issues' refresh (each does nothing when another process has just done it). The hot issues'
    period is read through `read_sessionmaker` where given."""

    async def digests() -> None:
        if await digest_once(sessionmaker, city):
            wake()

    async def deadlines() -> None:
        warned, escalated = await deadlines_once(sessionmaker, city)
        if warned or escalated:
            log.info("deadlines: %d cases near a deadline, %d overdue escalated", warned, escalated)
            wake()

    jobs = BackgroundJobs()
    jobs.every("housekeeping", INTERVAL_SECONDS, lambda: housekeeping_once(sessionmaker, evidence_dir, city.limits))
    jobs.every("digests", 60, digests)
    jobs.every("deadlines", DEADLINE_INTERVAL_SECONDS, deadlines)
    jobs.every("hotspots", 60, lambda: hotspots_once(sessionmaker, city, read_sessionmaker=read_sessionmaker))
    return jobs
