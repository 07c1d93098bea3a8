from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import dialog
from handlers.city import load_city_config
from handlers.context import DialogContext
from handlers.routing import RouteDecision
from handlers.routing import route as decide
from handlers.texts import Texts
from handlers.types import Attachment, Inbound, Outbound
from storage import outbox
from storage.db import create_engine, create_sessionmaker
from storage.models import Conversation, OutboxMessage
from tests.conftest import make_test_keyring, sqlite_copy
from tests.factories import one_payload_each, plain_pdf, plain_photo

JPEG = plain_photo()
"""A real photo (evidence images are decoded and re-encoded when they are taken)."""
PDF = plain_pdf()
"""A real PDF (evidence PDFs are read and written anew when they are taken)."""
GATHER = timedelta(minutes=1)
"""A channel's `gather` (Telegram's is 2 s), long enough that no step of a test outlasts it."""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Resident:
    """One resident talking to the dialog directly, each message in its own transaction."""

    def __init__(self, harness: DialogHarness, user_ref: str, locale: str = "zh-hans",
                 client_ip: str | None = None) -> None:
        self.harness = harness
        self.user_ref = user_ref
        self.locale = locale
        self.client_ip = client_ip
        self.last: list[Outbound] = []

    async def _send(self, **fields: Any) -> list[Outbound]:
        inbound = Inbound("test", self.user_ref, self.locale, client_ip=self.client_ip, **fields)
        async with self.harness.sessionmaker.begin() as session:
            self.last = (await dialog.handle(session, inbound, self.harness.context)).messages
        return self.last

    async def say(self, text: str) -> list[Outbound]:
        return await self._send(text=text)

    async def in_one_go(self, *messages: dict[str, Any]) -> list[str]:
        """Messages the resident's app sent in one go, as a channel that gathers them hands them in (each its own
        step, replies queued and held for `GATHER`): the parts of a pasted text the app cut (`may_be_cut` on
        all but the last) or an album's files (one `group`). What an earlier burst left to send counts as sent
        (its window is over). Returns what the resident reads: the replies the steps left in the outbox."""
        async with self.harness.sessionmaker.begin() as session:
            await outbox.mark_sent(session, await self._waiting(session))
        for fields in messages:
            inbound = Inbound("test", self.user_ref, self.locale, client_ip=self.client_ip, **fields)
            async with self.harness.sessionmaker.begin() as session:
                await dialog.handle(session, inbound, self.harness.context, queue=one_payload_each, gather=GATHER)
        async with self.harness.sessionmaker() as session:
            waiting = await self._waiting(session)
            payloads = list((await session.execute(select(OutboxMessage.payload).where(
                OutboxMessage.id.in_(waiting)).order_by(OutboxMessage.id))).scalars())
        self.last = [Outbound.from_payload(payload) for payload in payloads]
        return [message.text for message in self.last]

    async def _waiting(self, session: AsyncSession) -> list[int]:
        """The replies to this resident still in the outbox."""
        user_key = make_test_keyring().pseudonym("test", self.user_ref)
        return list((await session.execute(
            select(OutboxMessage.id).join(Conversation, OutboxMessage.conversation_id == Conversation.id)
            .where(Conversation.user_key == user_key, OutboxMessage.status == "pending"))).scalars())

    async def paste(self, *parts: str) -> list[str]:
        """A text the resident's app sent cut into `parts`; returns what the resident reads (`in_one_go`)."""
        return await self.in_one_go(*({"text": part, "may_be_cut": position < len(parts) - 1}
                                      for position, part in enumerate(parts)))

    async def press(self, key: str) -> list[Outbound]:
        return await self._send(choice=key)

    async def command(self, name: str, argument: str | None = None) -> list[Outbound]:
        return await self._send(command=name, command_arg=argument)

    async def upload(self, content: bytes, kind: str = "document", media_type: str | None = "image/jpeg",
                     name: str | None = "photo.jpg", size: int | None = None,
                     caption: str | None = None) -> list[Outbound]:
        """A file sent, with the words written under it (`caption`) where given."""
        async def fetch() -> bytes:
            return content

        attachment = Attachment(kind, media_type, len(content) if size is None else size, name, fetch)  # type: ignore[arg-type]
        return await self._send(attachment=attachment, **({"text": caption} if caption is not None else {}))

    async def send_sticker(self) -> list[Outbound]:
        return await self._send(attachment=Attachment("sticker"))

    async def send_location(self, place: str | None) -> list[Outbound]:
        return await self._send(attachment=Attachment("location", place=place))

    def text(self) -> str:
        return "\n".join(m.text for m in self.last)

    def keys(self) -> list[str]:
        return [c.key for m in self.last for c in m.choices]


class DialogHarness:
    def __init__(self, sessionmaker: Any, context: DialogContext, clock: Clock) -> None:
        self.sessionmaker = sessionmaker
        self.context = context
        self.clock = clock

    def resident(self, user_ref: str = "r1", locale: str = "zh-hans", client_ip: str | None = None) -> Resident:
        return Resident(self, user_ref, locale, client_ip)


@pytest.fixture
async def harness(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[DialogHarness]:
    # a copy of the run's migrated database: what the migrations make of an empty one, without running them again
    # for every test (0.7 s of CPU each)
    url = sqlite_copy(migrated_sqlite, tmp_path / "dialog.db")
    engine = create_engine(url, make_test_keyring())
    city = load_city_config(None)
    clock = Clock()

    async def route(text: str, district: str | None) -> RouteDecision:
        return decide(city, None, district, clock())

    context = DialogContext(city=city, texts=Texts(), secret_key=b"s" * 32, evidence_dir=tmp_path / "evidence",
                            route=route, clock=clock)
    yield DialogHarness(create_sessionmaker(engine), context, clock)
    await engine.dispose()
