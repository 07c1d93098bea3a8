"""The dialog's statements run straight on SQLite's connection must store exactly what the session would."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import OperationalError

from storage import actions, direct
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import Conversation, OutboxMessage

DRAFT = {"place": "岳麓区政务服务中心", "description": "窗口工作人员上班时间玩手机，群众排队一个多小时。"}


async def test_only_a_sqlite_file_is_run_directly(sessionmaker: Any, database_url: str, tmp_path: Path) -> None:
    async with sessionmaker.begin() as session:
        found = await direct.sqlite_connection(session)
        assert (found is not None) == database_url.startswith("sqlite")
        assert await direct.sqlite_connection(session) is found  # remembered for the transaction
    memory = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with create_sessionmaker(memory).begin() as session:
            assert await direct.sqlite_connection(session) is None  # aiosqlite: through the session
    finally:
        await memory.dispose()


async def test_what_is_written_directly_reads_back_through_the_orm(sessionmaker: Any) -> None:
    """Same encryption, JSON and date format as the session's own statements (run on PostgreSQL)."""
    written_at = datetime(2026, 11, 24, 8, 30, 15, 123456, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        assert await actions.claim_update(session, "telegram", "9001")
        conversation = await actions.load_conversation(session, "telegram", "5550001")
        conversation.state, conversation.locale = "description", "en"
        conversation.draft, conversation.context = DRAFT, {"choices": [["when:today", "今天"]]}
        conversation.draft_updated_at = written_at
        await actions.save_conversation(session, conversation)
        await actions.enqueue_messages(session, channel="telegram", recipient="5550001",
                                       payloads=[{"text": "第1条"}, {"text": "第2条", "choices": [["a", "甲"]]}])
    async with sessionmaker() as session:
        stored = await session.get(Conversation, conversation.id)
        assert stored is not None
        assert (stored.state, stored.locale, stored.draft, stored.context) == (
            "description", "en", DRAFT, {"choices": [["when:today", "今天"]]})
        assert stored.draft_updated_at == written_at and stored.user_ref == "5550001"
        outbox = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
        assert [(m.recipient, m.payload, m.status, m.attempts) for m in outbox] == [
            ("5550001", {"text": "第1条"}, "pending", 0),
            ("5550001", {"text": "第2条", "choices": [["a", "甲"]]}, "pending", 0)]
        raw_draft = (await session.execute(text("SELECT draft FROM conversations"))).scalar_one()
        assert "岳麓区" not in raw_draft  # encrypted, as the column type says
    async with sessionmaker.begin() as session:
        assert not await actions.claim_update(session, "telegram", "9001")
        again = await actions.load_conversation(session, "telegram", "5550001")
    assert (again.id, again.state, again.draft, again.draft_updated_at) == (
        conversation.id, "description", DRAFT, written_at)


async def test_a_driver_error_surfaces_as_sqlalchemys(tmp_path: Path) -> None:
    """A caller that handles SQLAlchemy's errors (the web chat's 503) sees the same family from the direct path."""
    path = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{path}?timeout=0.2"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(OperationalError, match="locked"):
            async with create_sessionmaker(engine).begin() as session:
                await actions.claim_update(session, "telegram", "1")
        other.execute("ROLLBACK")
        async with create_sessionmaker(engine).begin() as session:
            sqlite = await direct.sqlite_connection(session)
            assert sqlite is not None
            with pytest.raises(OperationalError, match="no such table"):
                direct.Prepared(text("SELECT * FROM missing_table")).first(sqlite, {})
    finally:
        other.close()
        await engine.dispose()


async def test_sessionmaker_begin_commits_in_the_calling_task_and_rolls_back_on_error(
        sessionmaker: Any) -> None:
    """The edge's `sessionmaker.begin()`: commit on success, roll back on an error, close either way; the
    COMMIT runs in the caller's task (not a turn of the event loop later, holding SQLite's write lock)."""
    committed_in: list[asyncio.Task[Any] | None] = []
    engine = sessionmaker.kw["bind"].sync_engine

    def on_commit(_connection: Any) -> None:
        committed_in.append(asyncio.current_task())

    event.listen(engine, "commit", on_commit)
    try:
        async with sessionmaker.begin() as session:
            assert await actions.claim_update(session, "telegram", "77")
        assert committed_in == [asyncio.current_task()]
        assert not session.in_transaction()
        with pytest.raises(RuntimeError, match="dialog failed"):
            async with sessionmaker.begin() as session:
                assert await actions.claim_update(session, "telegram", "78")
                raise RuntimeError("dialog failed")
        assert committed_in == [asyncio.current_task()] and not session.in_transaction()
    finally:
        event.remove(engine, "commit", on_commit)
    async with sessionmaker.begin() as session:
        assert not await actions.claim_update(session, "telegram", "77")  # committed
        assert await actions.claim_update(session, "telegram", "78")  # rolled back
    assert engine.pool.checkedout() == 0
