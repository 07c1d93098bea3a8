"""Long polling acknowledges an update only after its step has committed: a kill -9 while a step waits
for the database loses nothing, because Telegram still holds the update and delivers it again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.channels.test_telegram import Chat
from tests.conftest import LiveService
from tests.faults.conftest import Database, eventually, service_env
from tests.standins.telegram_server import TelegramStandIn


def test_an_update_whose_step_did_not_commit_is_not_acknowledged_and_survives_a_kill(
        telegram: TelegramStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    service = services(tmp_path / "service", service_env(None, telegram=telegram))
    service.start()
    database = Database(f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}")
    try:
        chat = Chat(telegram, 4301)
        chat.say("/report", expect="第1步")
        eventually(lambda: database.pending_outbox() == 0, what="the outbox settled")
        database.hold("BEGIN IMMEDIATE")  # the next step waits for the write lock
        polls = len(telegram.requests_for("getUpdates"))
        pressed = telegram.press_button(chat.chat_id, "district:yuelu")
        # the pending long poll returned the update: the bot answers the button press, then its step waits
        # for the lock
        telegram.wait_until(lambda: telegram.callback_answer(pressed) is not None, timeout=20,
                            what="the bot received the press")
        assert len(telegram.requests_for("getUpdates")) >= polls  # (the service kept polling or waited)
        assert not telegram.is_confirmed(pressed)  # Telegram still holds it: nothing committed yet
        service.kill()
        database.release()
        service.start()
        chat.expect("第2步", timeout=20)  # delivered again and handled after the restart
        assert [m["text"] for m in telegram.sent_messages(chat.chat_id)].count(
            next(t for t in (m["text"] for m in telegram.sent_messages(chat.chat_id)) if "第2步" in t)) == 1
    finally:
        database.close()
