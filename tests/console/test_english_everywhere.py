"""Every text of the console that is not a resident's or a colleague's own words is readable in English: the
console shows Chinese with the English beside it, so each piece of Chinese on a page (text, button, option,
placeholder, tooltip, page title) either carries English itself or is followed by its English (`<span
class="en">`). Checked on the main pages of an administrator's console with cases, statistics, a note, an answer
and a label correction present; the Chinese that may stand alone is exactly the data the test put in."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from sqlalchemy import select

from storage.models import Case, ExtensionRequest, StaffRole, StaffUser
from tests.console.conftest import ConsoleHarness, answer_on_page
from tests.factories import console_session
from tests.storage.test_loop_stats import seed_loop

CJK = re.compile(r"[\u3400-\u9fff]")
LATIN = re.compile(r"[A-Za-z]{2,}")
ATTRIBUTES = ("placeholder", "title", "aria-label", "alt")
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
INLINE = frozenset({"b", "strong", "em", "i", "mark", "code"})
"""Text in these is part of the phrase around it (清廉长沙<b>监督工作台</b>, a report with its key terms marked)."""
NOTE = "先电话核实窗口排班"
ANSWER = "经核查，已对窗口人员批评教育并调整排班。"
TITLE = "办证窗口长时间无人"
PAGES = ("/console", "/console/cases", "/console/overdue", "/console/queue/clean_hall", "/console/labelling",
         "/console/hotspots", "/console/replies", "/console/stats?start=2026-03-01&end=2026-03-20",
         "/console/models", "/console/staff", "/console/staff/rev", "/console/audit", "/console/notices",
         "/console/account", "/console/export.xlsx?identity=1", "/console/case/QL-2026-999999")
"""The main pages, the identity export's form and an error page (a case that does not exist); the test adds a
ticket, a problem page, the bulk action's confirmation and the login page."""


class _Texts(HTMLParser):
    """The page's visible texts in document order (whether each is English beside Chinese) and its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, bool, int]] = []  # (tag, is an English span, the element's number)
        self.elements = 0
        self.hidden = 0
        self.texts: list[tuple[tuple[str, ...], bool, str]] = []  # (the phrase's pieces, inside .en, where)
        self.phrase: int | None = None  # the element the last text's phrase is in
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.attributes += [(f"{tag}@{name}", values[name]) for name in ATTRIBUTES if values.get(name)]
        if tag in VOID:
            return
        self.elements += 1
        self.open.append((tag, "en" in values.get("class", "").split(), self.elements))
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            closed, _, _ = self.open.pop()
            self.hidden -= closed in ("script", "style")
            if closed == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.hidden or not data.strip():
            return
        text, english = " ".join(data.split()), any(english for _, english, _ in self.open)
        phrase = next((number for tag, _, number in reversed(self.open) if tag not in INLINE), 0)
        if self.texts and not english and not self.texts[-1][1] and phrase == self.phrase:
            self.texts[-1] = ((*self.texts[-1][0], text), False, self.texts[-1][2])  # one phrase, marked up inside
        else:
            self.texts.append(((text,), english, "/".join(tag for tag, _, _ in self.open[-3:])))
        self.phrase = phrase


def chinese_alone(page: str, data: tuple[str, ...]) -> list[str]:
    """Each Chinese text of `page` with no English in it or right after it, unless it is (part of) `data`."""
    parsed = _Texts()
    parsed.feed(page)

    def is_data(text: str) -> bool:  # (part of) the data, or the data with figures or signs around it ("#1 标题")
        if any(text in words for words in data):
            return True
        for words in sorted(data, key=len, reverse=True):
            text = text.replace(words, "") if words else text
        return not CJK.search(text)

    alone = [f"{where}: {text}" for where, text in parsed.attributes
             if CJK.search(text) and not LATIN.search(text) and not is_data(text)]
    for index, (pieces, english, where) in enumerate(parsed.texts):
        text = "".join(pieces)
        if english or not CJK.search(text) or LATIN.search(text) or all(is_data(piece) for piece in pieces):
            continue
        following = parsed.texts[index + 1] if index + 1 < len(parsed.texts) else None
        if following is not None and following[1]:
            continue
        alone.append(f"{where}: {text}")
    return alone


def test_the_check_finds_chinese_without_its_english_and_lets_both_and_data_pass() -> None:
    page = ('<p>已办结</p><p><span class="bi">已办结<span class="en">closed</span></span></p><p>全部 all</p>'
            '<input placeholder="说明"><input placeholder="说明 note"><p>张三 同志</p><p>窗口</p>'
            '<h1>#1 · 张三 同志</h1><h1>#1 · 张三 同志 说</h1>')
    assert chinese_alone(page, data=("张三 同志", "办证窗口")) == ["input@placeholder: 说明", "p: 已办结",
                                                                 "h1: #1 · 张三 同志 说"]


async def test_every_main_page_says_in_english_whatever_it_says_in_chinese(console: ConsoleHarness) -> None:
    await seed_loop(console.database.sessionmaker)
    await console.case(overdue=True)
    number = await console.case("clean_medical", label="medical")
    await console.user("rev", StaffRole.REVIEWER, ("clean_hall",))
    admin = await console.user("adm", StaffRole.ADMIN)
    cookies, csrf = await console_session(console.context, admin)
    async with console.client() as client:
        client.cookies.update(cookies)
        for action, form in (("accept", {}), ("note", {"body": NOTE}), ("correct-label", {"label": "slow_service"})):
            done = await client.post(f"/console/case/{number}/{action}", data={"csrf": csrf, **form})
            assert done.status_code == 303, (action, done.text[:300])
        await answer_on_page(client, csrf, f"/console/case/{number}/answer", ANSWER)
        other = await console.case("clean_medical", label="medical")
        made = await client.post("/console/problems", data={"csrf": csrf, "cases": [number, other], "title": TITLE})
        assert made.status_code == 303, made.text[:300]
        pages = {path: await client.get(path) for path in (*PAGES, f"/console/case/{number}", made.headers["location"])}
        pages["bulk"] = await client.post("/console/cases/bulk", data={"csrf": csrf, "action": "status",
                                                                       "status": "in_handling", "cases": [number]})
    async with console.client() as client:
        pages["/console/login"] = await client.get("/console/login")
    async with console.database.read_sessionmaker() as session:
        cases = (await session.execute(select(Case))).scalars().all()
        names = (await session.execute(select(StaffUser.display_name))).scalars().all()
    data = (*(case.description for case in cases), *(case.place or "" for case in cases),
            *(case.occurred or "" for case in cases), *names, NOTE, ANSWER, TITLE)
    alone = {}
    for path, response in pages.items():
        assert response.status_code == (404 if path.endswith("999999") else 200), (path, response.text[:300])
        if found := chinese_alone(response.text, data):
            alone[path] = found
    assert alone == {}



async def test_the_statistics_and_loop_exports_in_english_say_nothing_in_chinese(console: ConsoleHarness) -> None:
    """The statistics page's two CSV files, like the case export, come in English too (`lang=en`, the page's "in
    English" links): every name in them is English; by default they name things in Chinese."""
    await seed_loop(console.database.sessionmaker)
    await console.case(overdue=True)
    admin = await console.user("adm", StaffRole.ADMIN)
    cookies, _ = await console_session(console.context, admin)
    period = {"start": "2026-03-01", "end": "2026-03-20"}
    exports = ("/console/stats.csv", "/console/stats/loop.csv")
    async with console.client() as client:
        client.cookies.update(cookies)
        page = (await client.get("/console/stats", params=period)).text
        english = {path: await client.get(path, params={**period, "lang": "en"}) for path in exports}
        chinese = {path: await client.get(path, params=period) for path in exports}
    for path in exports:
        assert f'href="{path}?start=2026-03-01&amp;end=2026-03-20&amp;lang=en"' in page
        assert english[path].status_code == chinese[path].status_code == 200
        assert CJK.findall(english[path].text) == [], path
        assert "Clean Hall supervision" in english[path].text and "清廉大厅监督组" in chinese[path].text


async def test_the_apis_loop_and_audit_csv_in_english_say_nothing_in_chinese(console: ConsoleHarness) -> None:
    """The API's two CSV files take `lang=en` as the console's do: a tool fetching the English loop figures or
    audit log gets no Chinese names."""
    await seed_loop(console.database.sessionmaker)
    admin = await console.user("adm", StaffRole.ADMIN)
    cookies, csrf = await console_session(console.context, admin)
    loop = {"start": "2026-03-01", "end": "2026-03-20"}
    async with console.client() as client:
        client.cookies.update(cookies)
        await client.get("/console/stats", params=loop)  # something in the audit log to export: the page view
        english = {path: await client.get(path, params={**params, "lang": "en"}, headers={"x-csrf-token": csrf})
                   for path, params in (("/api/v1/stats/loop.csv", loop), ("/api/v1/audit.csv", {}))}
    async with console.database.read_sessionmaker() as session:  # what staff wrote stays as they wrote it
        written = tuple((await session.execute(select(ExtensionRequest.reason))).scalars())
    assert written
    for path, response in english.items():
        assert response.status_code == 200, (path, response.text[:300])
        text = response.text
        for words in written:
            text = text.replace(words, "")
        assert CJK.findall(text) == [], (path, [line for line in text.splitlines() if CJK.search(line)])
    assert "Clean Hall supervision" in english["/api/v1/stats/loop.csv"].text
    assert "time (Asia/Shanghai)" in english["/api/v1/audit.csv"].text


async def test_an_export_language_the_console_does_not_have_is_a_422_with_the_languages_it_has(
        console: ConsoleHarness) -> None:
    """`lang=fr` (or a typo) gave a Chinese file, as if asked for one; the case export already refused it."""
    admin = await console.user("adm", StaffRole.ADMIN)
    cookies, _ = await console_session(console.context, admin)
    async with console.client() as client:
        client.cookies.update(cookies)
        refused = {path: await client.get(path, params={"lang": "fr"}) for path in (
            "/console/stats.csv", "/console/stats/loop.csv", "/console/audit.csv")}
    for path, response in refused.items():
        assert response.status_code == 422, (path, response.status_code)
        assert "zh, en" in response.text, path

