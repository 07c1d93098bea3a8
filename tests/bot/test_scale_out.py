"""Two `qinglian serve` processes on one PostgreSQL: no state in process memory, each outbox
message delivered once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveService, create_postgres_database, drop_postgres_database, make_test_keyring
from tests.factories import file_case
from tests.standins.telegram_server import TelegramStandIn

TOKEN = "777001:SCALE-out"
SECRET = "s" * 48


@pytest.fixture
def two_services(postgres_server: str, tmp_path: Path) -> Iterator[tuple[TelegramStandIn, LiveService, LiveService]]:
    name, url = create_postgres_database(postgres_server)
    standin = TelegramStandIn(token=TOKEN)
    standin.start()
    env = {"QINGLIAN_DATABASE_URL": url, "QINGLIAN_SECRET_KEY": SECRET, "QINGLIAN_TELEGRAM_TOKEN": TOKEN,
           "QINGLIAN_TELEGRAM_API_URL": standin.root_url, "QINGLIAN_TELEGRAM_WEBHOOK_SECRET": "hook-123"}
    first = LiveService(tmp_path / "a", env)
    second = LiveService(tmp_path / "b", env)
    for service in (first, second):
        service.env["QINGLIAN_TELEGRAM_WEBHOOK_URL"] = f"{first.url}/telegram/webhook"
    first.start()
    second.start()
    try:
        yield standin, first, second
    finally:
        second.stop()
        first.stop()
        standin.stop()
        drop_postgres_database(postgres_server, name)
    assert standin.violations == []


def test_a_report_alternating_between_workers_and_outbox_delivered_once(
        two_services: tuple[TelegramStandIn, LiveService, LiveService]) -> None:
    standin, first, second = two_services
    cookies = httpx.Client(base_url=first.url).get("/").cookies
    steps = [{"command": "report"}, {"choice": "district:yuhua"}, {"text": "雨花区政务服务中心"},
             {"choice": "when:today"}, {"text": "窗口工作人员上班时间离岗一个多小时，群众排长队无人办理。"},
             {"choice": "evidence:done"}, {"choice": "identity:anonymous"}, {"choice": "summary:submit"}]
    replies = []
    for index, body in enumerate(steps):
        service = (first, second)[index % 2]
        response = httpx.post(f"{service.url}/chat/api/message", json=body, cookies=cookies,
                              headers={"X-Qinglian-Chat": "1"})
        assert response.status_code == 200, response.text
        replies.append(response.json()["messages"][0]["text"])
    assert re.search(r"QL-\d{4}-\d{6}", replies[-1])

    # 120 staff answers to 40 Telegram reporters; both processes run outbox workers
    asyncio.run(_answer_many(first.env["QINGLIAN_DATABASE_URL"], reporters=40, answers=3))
    chats = range(9000, 9040)
    standin.wait_until(lambda: sum(len(standin.sent_messages(c)) for c in chats) >= 120, timeout=60,
                       what="120 answers delivered")
    first.stop()  # a stopping service finishes its round first: after this nothing more can arrive
    second.stop()
    for chat in chats:
        texts = [m["text"] for m in standin.sent_messages(chat)]
        assert len(texts) == 3, texts
        assert [t.split("答复 #")[1].split("\n")[0] for t in texts] == ["0", "1", "2"]


async def _answer_many(url: str, *, reporters: int, answers: int) -> None:
    from storage import actions
    from storage.db import create_engine, create_sessionmaker

    engine = create_engine(url, make_test_keyring())
    sessionmaker = create_sessionmaker(engine)
    cases = []
    async with sessionmaker.begin() as session:
        for n in range(reporters):
            case, _ = await file_case(
                session, secret_key=SECRET.encode(), case_number_prefix="QL", year=2026, channel="telegram",
                reporter_ref=str(9000 + n), locale="zh", district=None, place="某处", occurred="今天",
                description="窗口工作人员态度恶劣。", anonymous=True, reporter_name=None, reporter_phone=None,
                attachment_ids=[], queue="triage", label=None)
            cases.append(case)
    for round_ in range(answers):
        async with sessionmaker.begin() as session:
            for case in cases:
                loaded = await actions.get_case(session, case.id)
                assert loaded is not None
                await actions.reply_to_reporter(session, loaded, f"答复 #{round_}", actor="staff:test")
    await engine.dispose()
