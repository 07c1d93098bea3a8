"""The outbox's storage actions against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from storage import outbox
from storage.models import OutboxMessage


async def test_outbox_claims_in_order_and_holds_a_recipients_later_messages(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for n in range(3):
            await outbox.enqueue(session, channel="telegram", recipient="A", payload={"text": f"a{n}"})
        await outbox.enqueue(session, channel="telegram", recipient="B", payload={"text": "b0"})
        await outbox.enqueue(session, channel="web", recipient="C", payload={"text": "c0"})
    async with sessionmaker.begin() as session:
        leased = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(0))
        assert [payload["text"] for _, _, _, payload in leased] == ["a0", "a1", "a2", "b0"]
        ids = {payload["text"]: message_id for message_id, _, _, payload in leased}
        await outbox.mark_sent(session, [ids["b0"]])
        first = await session.get(OutboxMessage, ids["a0"])
        assert first is not None
        outbox.mark_retry(first, error="flood", delay=timedelta(seconds=30))
    async with sessionmaker.begin() as session:
        again = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    assert again == []
    async with sessionmaker.begin() as session:
        await outbox.enqueue(session, channel="telegram", recipient="D", payload={"text": "d0"})
    async with sessionmaker.begin() as session:
        taken = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    async with sessionmaker.begin() as session:
        taken_again = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    assert [payload["text"] for _, _, _, payload in taken] == ["d0"] and taken_again == []  # leased: not taken twice
    async with sessionmaker.begin() as session:
        web = await outbox.take_web_messages(session, "C")
        web_again = await outbox.take_web_messages(session, "C")
    assert [m.payload["text"] for m in web] == ["c0"] and web_again == []
