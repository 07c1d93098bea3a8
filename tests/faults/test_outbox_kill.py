"""kill -9 between a message's send and its settle: the messages Telegram accepted but the outbox had not
yet recorded go out again soon after the restart (a short lease, not a minute), and only those: every
message settled right after its own send is not sent twice."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from tests.conftest import LiveService
from tests.faults.conftest import Database, eventually, service_env
from tests.faults.test_delivery_faults import _staff_answer
from tests.standins.telegram_server import TelegramStandIn

ANSWER = re.compile(r"第(\d)次答复")


def test_a_kill_between_send_and_settle_resends_only_the_unsettled_and_soon(
        telegram: TelegramStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    service = services(tmp_path / "service", service_env(None, telegram=telegram))
    service.start()
    url = f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}"
    chats = [7101, 7102, 7103, 7104]
    telegram.wait_for_request("setMyCommands", count=3)

    def delivered(chat: int) -> list[int]:
        return [int(m.group(1)) for m in (ANSWER.search(x["text"]) for x in telegram.sent_messages(chat)) if m]

    # The first answer to each resident goes out and is settled; then Telegram keeps accepting messages
    # but holds its answers, and the service is killed while it waits for them.
    asyncio.run(_staff_answer(url, "telegram", [str(chat) for chat in chats]))
    telegram.wait_until(lambda: all(len(delivered(chat)) == 3 for chat in chats), timeout=30,
                        what="every answer delivered once")
    database = Database(url)
    try:
        eventually(lambda: database.pending_outbox() == 0, what="the outbox settled")
    finally:
        database.close()
    telegram.hold_responses("sendMessage")
    asyncio.run(_staff_answer(url, "telegram", [str(chat) for chat in chats]))  # three more rounds each
    telegram.wait_until(lambda: telegram.held_responses() == len(chats), timeout=20,
                        what="one message per resident accepted, its answer held")
    service.kill()
    telegram.release_responses()
    service.start()
    # each resident's held message goes out again (its send was never recorded), then the rest once
    telegram.wait_until(lambda: all(set(delivered(chat)[3:]) == {1, 2, 3} for chat in chats), timeout=35,
                        what="every answer delivered after the restart")
    database = Database(url)
    try:
        eventually(lambda: database.pending_outbox() == 0, what="the outbox settled")
    finally:
        database.close()
    for chat in chats:
        rounds = delivered(chat)
        assert rounds[:3] == [1, 2, 3]
        assert sorted(set(rounds[3:])) == [1, 2, 3], rounds
        assert len(rounds) <= 7, rounds  # at most the one held message twice
