"""The console in headless Chromium at a phone's width (390 px) and a laptop's (1366 px): no page scrolls
sideways, the navigation collapses behind a menu button on the phone, a ticket is readable, and nothing the
console, the API documentation or the web chat loads comes from outside the service (issues 14.8, 14.9)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveService
from tests.console.conftest import PASSWORD, fresh_data_dir
from tests.console.test_browser import CHROMIUM_ARGS, SECRET, _seed, _shot

pytestmark = pytest.mark.browser

PAGES = ("/console", "/console/cases", "/console/queue/triage", "/console/overdue", "/console/labelling",
         "/console/stats", "/console/models", "/console/staff", "/console/staff/wang.fang", "/console/audit",
         "/console/account", "/console/replies", "/console/notices")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, data_template: Path) -> Iterator[tuple[LiveService, str]]:
    data_dir = fresh_data_dir(data_template, tmp_path_factory.mktemp("console-layout") / "data")
    seeded = asyncio.run(_seed(data_dir))
    live = LiveService(data_dir, {"QINGLIAN_SECRET_KEY": SECRET})
    live.start()
    yield live, seeded["flow"]
    live.stop()


def _sideways(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scroll)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


@pytest.mark.parametrize("width", [390, 1366])
def test_every_page_fits_the_width_and_loads_nothing_from_outside(service: tuple[LiveService, str],
                                                                  width: int) -> None:
    from playwright.sync_api import expect, sync_playwright

    live, flow_number = service
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 844 if width < 500 else 800}, locale="zh-CN")
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))

        page.goto(f"{live.url}/")  # the web chat
        assert _sideways(page) == 0
        page.goto(f"{live.url}/console/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/console/login'] button[type=submit]")
        expect(page.locator("main h1")).to_contain_text("全部队列")  # an administrator works every queue

        nav, button = page.locator("header nav"), page.locator("header .nav-button")
        if width < 700:
            expect(nav).to_be_hidden()
            expect(button).to_be_visible()
            button.click()
            expect(nav).to_be_visible()
            nav.locator("a[href='/console/cases']").click()
            expect(page).to_have_url(re.compile(r"/console/cases$"))
            expect(nav).to_be_hidden()  # a new page starts with the menu closed
        else:
            expect(nav).to_be_visible()
            expect(button).to_be_hidden()

        # every ticket of the list: the link back to a queue with a long name (信访室（市纪委监委）Letters and
        # Visits office (Discipline Inspection Commission)) wraps instead of widening the page
        page.goto(f"{live.url}/console/cases")
        tickets = page.eval_on_selector_all("main a[href^='/console/case/']",
                                            "links => links.map(a => a.getAttribute('href'))")
        assert len(tickets) > 5
        wide = {}
        for path in (*PAGES, *dict.fromkeys(tickets), f"/console/case/{flow_number}"):
            response = page.goto(f"{live.url}{path}")
            assert response is not None and response.status == 200, path
            wide[path] = _sideways(page)
        assert wide == dict.fromkeys(wide, 0)

        # the ticket: its text at a readable size, inside the window; the action forms below it on a phone
        text = page.locator(".report-text")
        box = text.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        assert float(text.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 14
        _shot(page, f"ticket-{width}")

        page.goto(f"{live.url}/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Qinglian", timeout=20_000)
        browser.close()
    outside = sorted({url for url in requested if not url.startswith((live.url, "data:", "blob:"))})
    assert outside == []
    assert problems == []


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_at_1280_px_every_navigation_link_shows_without_scrolling(service: tuple[LiveService, str],
                                                                  locale: str) -> None:
    """A common laptop width: an administrator (who has the most links) sees every link of the top navigation —
    Chinese with its English beside it — whole inside the window; neither the page nor the navigation scrolls."""
    from playwright.sync_api import expect, sync_playwright

    live, _ = service
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale=locale)
        page.goto(f"{live.url}/console/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/console/login'] button[type=submit]")
        expect(page.locator("main h1")).to_contain_text("全部队列")  # an administrator works every queue
        nav = page.locator("header nav")
        expect(nav).to_be_visible()
        links = nav.locator("a")
        names = [" ".join(name.split()) for name in links.all_inner_texts()]
        assert len(names) == 10 and any("常用答复" in name and "Canned replies" in name for name in names)
        outside = []
        for index, name in enumerate(names):
            link = links.nth(index)
            box = link.bounding_box()
            visible = bool(link.evaluate(
                "a => { const r = a.getBoundingClientRect(), n = a.closest('nav').getBoundingClientRect();"
                " return r.left >= n.left && r.right <= n.right && r.left >= 0 && r.right <= window.innerWidth; }"))
            if box is None or not visible:
                outside.append(name)
        assert outside == []
        assert int(nav.evaluate("n => n.scrollWidth - n.clientWidth")) == 0  # the navigation does not scroll
        assert _sideways(page) == 0
        _shot(page, f"nav-1280-{locale}")
        browser.close()


def test_a_keyboard_user_skips_the_navigation_to_the_list_and_its_first_case(service: tuple[LiveService, str]) -> None:
    """The first Tab on a page shows the skip link (hidden until focused); Enter on it moves the focus to the
    main content, and the next Tab reaches the list's filters, not the navigation again."""
    from playwright.sync_api import expect, sync_playwright

    live, _ = service
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="en-US")
        page.goto(f"{live.url}/console/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/console/login'] button[type=submit]")
        expect(page.locator("main h1")).to_be_visible()
        page.goto(f"{live.url}/console/cases")
        skip = page.locator("a.skip")
        assert not skip.evaluate("a => a.getBoundingClientRect().bottom > 0")  # out of sight until focused
        page.keyboard.press("Tab")
        expect(skip).to_be_focused()
        expect(skip).to_be_in_viewport()
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('form.filters') !== null")
        browser.close()
