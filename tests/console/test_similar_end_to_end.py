"""Issue 15 end to end: two residents report the same concrete plant through the Telegram stand-in to a real
`qinglian serve`; the second is told after submit that others reported it too; in headless Chromium a
supervisor finds the first case among the similar cases of the second's ticket, makes one problem of them in one
click, checks an off-topic answer (scored low, with reasons), revises it, sends it once, and both residents get
the answer in their Telegram chats."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.test_telegram import JPEG, TOKEN, Chat
from tests.conftest import LiveService, make_test_keyring
from tests.console.conftest import PASSWORD, fresh_data_dir, make_settings
from tests.console.test_browser import CHROMIUM_ARGS
from tests.console.test_problems import OFF_TOPIC, ON_TOPIC
from tests.handlers.test_similar import PLANT, PLANT_AGAIN
from tests.standins.telegram_server import TelegramStandIn

pytestmark = pytest.mark.browser
SECRET = "similar-test-secret-" + "s" * 40


async def _seed_supervisor(data_dir: Path) -> None:
    from storage import staff_actions
    from storage.db import create_engine, create_sessionmaker
    from storage.models import StaffRole
    from tests.conftest import staff_password_hashing

    passwords = staff_password_hashing()

    settings = make_settings(data_dir, secret_key=SECRET)
    engine = create_engine(settings.resolved_database_url, make_test_keyring())
    try:
        async with create_sessionmaker(engine).begin() as session:
            await staff_actions.create_staff(session, username="zhao.min", display_name="赵敏",
                                             role=StaffRole.SUPERVISOR, password_hash=passwords.hash(PASSWORD))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, data_template: Path) -> Iterator[tuple[TelegramStandIn,
                                                                                          LiveService]]:
    standin = TelegramStandIn(token=TOKEN)
    standin.start()
    data_dir = fresh_data_dir(data_template, tmp_path_factory.mktemp("similar-e2e") / "data")
    asyncio.run(_seed_supervisor(data_dir))
    service = LiveService(data_dir, {"QINGLIAN_SECRET_KEY": SECRET, "QINGLIAN_TELEGRAM_TOKEN": TOKEN,
                                     "QINGLIAN_TELEGRAM_API_URL": standin.root_url})
    service.start()
    yield standin, service
    service.stop()
    standin.stop()
    assert standin.violations == []


def _report(chat: Chat, description: str, place: str) -> str:
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say(place, expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say(description, expect="第5步")
    chat.standin.send_photo(chat.chat_id, JPEG)
    chat.expect("已收到第 1 个文件")
    chat.press("evidence:done", expect="第6步")
    chat.press("identity:anonymous", expect="请核对举报内容")
    return chat.press("summary:submit", expect="举报已提交")


def _case_numbers(service: LiveService) -> list[str]:
    with sqlite3.connect(service.data_dir / "qinglian.db") as db:
        return [row[0] for row in db.execute("SELECT case_number FROM cases ORDER BY id")]


def test_a_duplicate_from_telegram_is_similar_on_the_ticket_and_one_answer_reaches_both_residents(
        live: tuple[TelegramStandIn, LiveService]) -> None:
    from playwright.sync_api import expect, sync_playwright

    standin, service = live
    first_resident, second_resident = Chat(standin, 7101), Chat(standin, 7102)
    submitted = _report(first_resident, PLANT, "岳麓区丽发新城小区")
    assert "类似问题" not in submitted  # nothing similar yet
    submitted = _report(second_resident, PLANT_AGAIN, "丽发新城")
    assert "其他群众反映了类似问题" in submitted
    assert "搅拌站每天夜里" not in submitted  # never another resident's text
    first, second = _case_numbers(service)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.goto(f"{service.url}/console/case/{second}")
        page.fill("input[name=username]", "zhao.min")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/console/login'] button[type=submit]")
        expect(page.locator(".case-head h1")).to_contain_text(second)

        similar = page.locator("#similar table.similar tbody tr")
        expect(similar).to_have_count(1)
        expect(similar.first).to_contain_text(first)
        expect(similar.first).to_contain_text("同一地点")
        similar.first.locator("form[action$='/link'] button").click()
        expect(page.locator(".flash.ok")).to_contain_text("归并为同一问题")
        expect(page.locator("#cases tbody tr")).to_have_count(2)

        page.fill("#answer-problem textarea", OFF_TOPIC)
        page.click("#answer-problem button[value=check]")
        expect(page.locator("#answer-check .reasons")).to_contain_text("未说明调查核实的情况")
        low = float(re.sub(r"[^0-9.]", "", page.locator("#answer-check .score").inner_text()))
        page.fill("#answer-problem textarea", ON_TOPIC)
        page.click("#answer-problem button[value=check]")  # revised: checked again before it can be sent
        high = float(re.sub(r"[^0-9.]", "", page.locator("#answer-check .score").inner_text()))
        assert high > low
        page.click("#answer-problem button[value=send]")
        expect(page.locator(".flash.ok")).to_contain_text("已答复该问题的每位举报人")
        browser.close()

    for resident in (first_resident, second_resident):
        resident.expect("依据《中华人民共和国噪声污染防治法》", timeout=30)
