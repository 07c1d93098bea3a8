"""The long-lived parts of a running service, and the edge every channel calls with an inbound message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.classification import ClassifierService
from bot.config import Settings
from bot.outbox import OutboxWorker
from handlers import dialog
from handlers.context import DialogContext
from handlers.routing import RouteDecision
from handlers.routing import route as decide
from handlers.texts import LOCALES, Texts
from handlers.types import Inbound, Packer
from storage import actions
from storage.crypto import update_key_pseudonym
from storage.db import Database
from storage.evidence_files import SealedFiles
from storage.models import utcnow

log = logging.getLogger(__name__)


class KeyedLocks:
    """One asyncio lock per key (a resident), so one resident's updates are handled in order."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._locks: OrderedDict[str, asyncio.Lock] = OrderedDict()
        self._capacity = capacity

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._locks.move_to_end(key)
        async with lock:
            yield
        while len(self._locks) > self._capacity:
            oldest_key, oldest = next(iter(self._locks.items()))
            if oldest.locked():
                break
            del self._locks[oldest_key]


class KnownLocales:
    """The language each resident's last step was answered in, as far as this process saw it (the newest
    `capacity` residents): what the service says in when it cannot take a message, the database that keeps
    the resident's language being out of reach, or the step failing (`Runtime.busy_text`)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._locales: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def remember(self, key: str, locale: str) -> None:
        self._locales[key] = locale
        self._locales.move_to_end(key)
        while len(self._locales) > self._capacity:
            self._locales.popitem(last=False)

    def get(self, key: str) -> str | None:
        return self._locales.get(key)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    texts: Texts
    dialog_context: DialogContext
    outbox: OutboxWorker
    locks: KeyedLocks
    classifier: ClassifierService
    locales: KnownLocales = field(default_factory=KnownLocales)

    def busy_text(self, channel: str, user_ref: str, client_locale: str | None = None,
                  text_key: str = "service_busy") -> str:
        """"Busy, try again shortly" (or another word sent without storage, `text_key`) in the language the
        resident was last answered in; where this process has not answered them, in the language their client gives
        (`client_locale`, as a first step would answer), else in both languages, Chinese first."""
        locale = self.locales.get(f"{channel}:{user_ref}") or client_locale
        if locale is None:
            return "\n".join(self.texts.get(each, text_key) for each in LOCALES)
        return self.texts.get(locale, text_key)

    def update_name(self, update_key: str | None) -> str:
        """How a log line names an update: as `processed_updates` keeps it (`update_key_pseudonym`), never by its
        key, which can hold the resident's channel address."""
        return "-" if update_key is None else update_key_pseudonym(self.database.keyring, update_key)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        ring = settings.resolved_keyring()
        database = Database.connect(settings.resolved_database_url, ring, read_timeout=settings.read_timeout_seconds,
                                    heavy_reads=settings.heavy_reads)
        texts = Texts(settings.city.texts)
        city = settings.city

        classifier = ClassifierService(settings.data_dir, check_seconds=settings.model_check_seconds,
                                       cipher=SealedFiles(ring))

        async def route(text: str, district: str | None) -> RouteDecision:
            with metrics.CLASSIFIER_SECONDS.time():
                tag = classifier.classify(text)
            return decide(city, tag, district, utcnow())

        context = DialogContext(
            city=city,
            texts=texts,
            secret_key=settings.resolved_secret_key(),
            evidence_dir=settings.evidence_dir,
            route=route,
        )
        outbox = OutboxWorker(database.sessionmaker, texts, public_url=settings.public_url, city=city)
        return cls(settings, database, texts, context, outbox, KeyedLocks(), classifier)

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """For work that writes."""
        return self.database.sessionmaker

    @property
    def read_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """For pages, statistics and metrics: never waits for the write lock."""
        return self.database.read_sessionmaker

    async def handle(self, inbound: Inbound, *, queue: Packer | None = None, hold: timedelta | None = None,
                     gather: timedelta | None = None, restate: bool = False) -> dialog.Step | None:
        """Run one dialog step in one transaction.

        With `queue`, the replies are written to the outbox in that same transaction (so a reply is never
        lost between the state change and the send) and the worker is woken; `hold` keeps them back that
        long for a channel that may still deliver them itself; `gather` is how long the channel's residents'
        messages sent in one go take to arrive (`dialog.handle`). Returns None for an update that was handled
        before — or, with `restate` (a channel whose answer to the first delivery may never have arrived), a step
        that says it was received and asks the current question again (`dialog.restate`).
        """
        if inbound.text is not None and "\x00" in inbound.text:
            inbound = replace(inbound, text=inbound.text.replace("\x00", ""))  # PostgreSQL refuses NUL in text
        # the download starts at once (an album's files come down side by side), but the step waits its turn:
        # the resident's lock is asked for before anything is awaited, so their messages are handled in the order
        # the channel handed them in (an album's photos stored in the order sent, however fast each came down)
        download = asyncio.ensure_future(self._prefetch(inbound))
        started = time.perf_counter()
        async with self.locks.hold(f"{inbound.channel}:{inbound.user_ref}"):
            inbound = await download
            async with self.sessionmaker.begin() as session:
                if inbound.update_key is not None and not await actions.claim_update(
                    session, inbound.channel, inbound.update_key
                ):
                    log.info("duplicate update %s/%s ignored", inbound.channel, self.update_name(inbound.update_key))
                    metrics.DUPLICATES.labels(inbound.channel).inc()
                    return await dialog.restate(session, inbound, self.dialog_context) if restate else None
                step = await dialog.handle(session, inbound, self.dialog_context, queue=queue, hold=hold,
                                           gather=gather)
        answered_in = next((message.locale for message in reversed(step.messages) if message.locale), None)
        if answered_in is not None:
            self.locales.remember(f"{inbound.channel}:{inbound.user_ref}", answered_in)
        if step.outbox_ids and hold is None and not step.held:
            self.outbox.wake()
        metrics.UPDATES.labels(inbound.channel).inc()
        metrics.STEP_SECONDS.labels(inbound.channel).observe(time.perf_counter() - started)
        return step

    async def _prefetch(self, inbound: Inbound) -> Inbound:
        """Download an attachment before the transaction starts, so no database lock waits on the network.

        Files larger than the configured limit are not downloaded: the dialog refuses them by their size.
        """
        attachment = inbound.attachment
        if attachment is None or attachment.fetch is None:
            return inbound
        if (attachment.size_bytes or 0) > self.settings.city.limits.max_attachment_bytes:
            return inbound
        try:
            content = await attachment.fetch()
        except Exception as problem:  # noqa: BLE001 - the dialog tells the resident to send it again
            log.warning("downloading an attachment from %s failed (%s)", inbound.channel, type(problem).__name__)
            failure = problem

            async def failed() -> bytes:  # not downloaded again inside the transaction
                raise failure

            return replace(inbound, attachment=replace(attachment, fetch=failed))

        async def cached() -> bytes:
            return content

        return replace(inbound, attachment=replace(attachment, fetch=cached))

    async def close(self) -> None:
        await self.outbox.stop()
        await self.database.dispose()
