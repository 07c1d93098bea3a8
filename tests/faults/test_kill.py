"""kill -9 of the service in the middle of a submission: after a restart on the same database the
case exists once and the resident has one valid receipt, or the draft is intact and submitting it
again gives one. A resident never gets two receipts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.channels.test_telegram import Chat
from tests.conftest import LiveService
from tests.faults.conftest import (
    SUBMITTED,
    Database,
    eventually,
    message_id_with,
    receipt_code,
    service_env,
    texts_with,
    to_summary,
)
from tests.standins.telegram_server import TelegramStandIn

BLOCKED_SUBMIT = """
    SELECT a.pid FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
      AND a.wait_event_type = 'Lock' AND a.query ILIKE 'INSERT INTO outbox%'
"""
LOCKS_OF = """
    SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
    WHERE l.pid = :pid AND l.mode = 'RowExclusiveLock' AND l.granted
"""


def _after_restart(chat: Chat, standin: TelegramStandIn, database: Database, summary_id: int, cases: int) -> None:
    """What the resident sees after the restart: the receipt of a submission that survived (or whose
    update is delivered again), else — the draft being intact — a receipt for submitting once more.
    Then a second press of the old submit button is refused, and only one case and one receipt exist.
    `cases`: how many cases there were before this resident's submission."""
    if database.cases() == cases + 1 or standin.pending_update_count() > 0:
        chat.expect(SUBMITTED, timeout=20)
    else:
        chat.standin.wait_until(lambda: "summary:submit" in chat.buttons(), what="the summary's buttons")
        chat.press("summary:submit", expect=SUBMITTED)
    receipts = texts_with(chat, SUBMITTED)
    assert len(receipts) == 1, receipts
    code = receipt_code(receipts[0])
    chat.standin.press_button(chat.chat_id, "summary:submit", message_id=summary_id)
    chat.expect("已失效")
    chat.say(f"/status {code}", expect="当前状态")
    assert database.cases() == cases + 1
    assert len(texts_with(chat, SUBMITTED)) == 1


@pytest.mark.parametrize("mode", ["polling", "webhook"])
def test_kill_inside_the_submit_transaction_on_postgres(
        mode: str, postgres_url: str, telegram: TelegramStandIn, tmp_path: Path,
        services: Callable[..., LiveService]) -> None:
    """The test holds `LOCK TABLE outbox IN EXCLUSIVE MODE`: the submit transaction inserts the case
    and then waits to write the receipt to the outbox. Seen in pg_stat_activity and pg_locks, the
    service is killed exactly there; the orphaned transaction is rolled back, and the restart finds
    the draft (or the update again, in webhook mode)."""
    service = services(tmp_path / "service", service_env(postgres_url, telegram=telegram), webhook=mode == "webhook")
    service.start()
    database = Database(postgres_url)
    try:
        chat = Chat(telegram, 4101)
        to_summary(chat)
        summary_id = message_id_with(chat, "请核对举报内容")
        eventually(lambda: database.pending_outbox() == 0, what="the outbox settled")

        database.hold("LOCK TABLE outbox IN EXCLUSIVE MODE")
        telegram.press_button(chat.chat_id, "summary:submit")
        eventually(lambda: database.scalar(BLOCKED_SUBMIT) is not None, what="the submit transaction blocked")
        pid = database.scalar(BLOCKED_SUBMIT)
        written = {row[0] for row in database.rows(LOCKS_OF, pid=pid)}
        assert {"processed_updates", "cases", "trace_events"} <= written, written  # the case is written
        service.kill()
        database.release()
        eventually(lambda: database.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", pid=pid) == 0,
                   what="the killed service's transaction ended")
        assert database.cases() == 0  # rolled back, never committed
        assert texts_with(chat, SUBMITTED) == []

        service.start()
        _after_restart(chat, telegram, database, summary_id, cases=0)
    finally:
        database.release()
        database.close()


def test_kill_while_the_submit_transaction_holds_the_sqlite_write_lock(
        telegram: TelegramStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    """Every transaction of the service starts with BEGIN IMMEDIATE, so the first moment a probe from
    the test cannot take SQLite's write lock after the press is the submit transaction running; the
    service is killed right then (three residents, one restart each)."""
    service = services(tmp_path / "service", service_env(None, telegram=telegram))
    service.start()
    path = service.data_dir / "qinglian.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    landed_inside = 0
    try:
        for number in range(3):
            chat = Chat(telegram, 4201 + number)
            to_summary(chat)
            summary_id = message_id_with(chat, "请核对举报内容")
            eventually(lambda: database.pending_outbox() == 0, what="the outbox settled")
            telegram.press_button(chat.chat_id, "summary:submit")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    probe.execute("BEGIN IMMEDIATE")
                    probe.execute("ROLLBACK")
                except sqlite3.OperationalError:  # "database is locked": the service is inside a transaction
                    break
            else:
                raise AssertionError("the service never took the write lock after the press")
            service.kill()
            landed_inside += database.cases() == number
            service.start()
            _after_restart(chat, telegram, database, summary_id, cases=number)
        assert landed_inside >= 1, "no kill landed before the submit transaction committed"
        # A message sent by a killed process but not marked sent would stay leased, to go out again later.
        eventually(lambda: database.pending_outbox() == 0, timeout=10, what="every outbox message settled")
    finally:
        probe.close()
        database.close()
