"""The console's main pages (overview, a case list with its selection, a ticket) for keyboard and screen-reader
users, read from their HTML: a skip link to the main content first, a name in both languages on every form
control, and a deadline's or a confidence's state said in words, not by colour alone."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

from handlers.routing import add_working_days
from storage.models import Case, StaffRole, utcnow
from tests.console.conftest import ConsoleHarness

CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")
CONTROLS = {"input", "select", "textarea"}


class Controls(HTMLParser):
    """Each form control with the name a screen reader gives it (aria-label, a <label for>, or the <label> it
    sits in, first of its kind there), and the first link or control a Tab reaches."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[tuple[dict[str, str | None], str]] = []  # (attributes, how it is named)
        self.label_for: set[str] = set()
        self.ids: set[str] = set()
        self.open_label: list[bool] = []  # per open <label>: whether a control in it took its name already
        self.first_focusable: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "label":
            if values.get("for"):
                self.label_for.add(str(values["for"]))
            self.open_label.append(bool(values.get("for")))
        focusable = (tag == "a" and values.get("href")) or tag in CONTROLS | {"button"}
        if focusable and values.get("type") != "hidden" and self.first_focusable is None:
            self.first_focusable = {"tag": tag, **values}
        if tag not in CONTROLS or values.get("type") in ("hidden", "submit", "button"):
            return
        if values.get("aria-label"):
            named = "aria-label"
        elif values.get("aria-labelledby"):
            named = "aria-labelledby"
        elif self.open_label and not self.open_label[-1]:
            self.open_label[-1] = True
            named = "label"
        else:
            named = "for" if values.get("id") else ""
        self.controls.append((values, named))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self.open_label:
            self.open_label.pop()

    def unnamed(self) -> list[str]:
        found = []
        for values, named in self.controls:
            if named == "for" and values.get("id") not in self.label_for:
                named = ""
            label = values.get("aria-label") or ""
            if not named or (named == "aria-label" and not (CJK.search(label) and LATIN.search(label))):
                found.append(f"{values.get('name')} ({label or 'no name'})")
        return found


def read(page: str) -> Controls:
    parser = Controls()
    parser.feed(page)
    return parser


async def test_the_main_pages_have_a_skip_link_and_every_control_a_name_in_both_languages(
        console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall", anonymous=False, name="张三", phone="13800000000")
    async with console.client() as client:
        await console.login(client, "boss")
        for address in ("/console", "/console/cases", f"/console/case/{number}"):
            page = await client.get(address)
            assert page.status_code == 200
            found = read(page.text)
            first = found.first_focusable
            assert first is not None and first["tag"] == "a" and first.get("href") == "#main", (address, first)
            assert "main" in found.ids, address
            assert found.unnamed() == [], address


async def test_a_deadline_that_is_soon_and_a_low_confidence_are_said_in_words(console: ConsoleHarness) -> None:
    city = console.settings.city
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall", "triage"])
    soon = await console.case("clean_hall")
    unsure = await console.case("triage", label="other", confidence=0.31)
    async with console.database.sessionmaker.begin() as session:
        from sqlalchemy import select

        case = (await session.execute(select(Case).where(Case.case_number == soon))).scalar_one()
        case.accept_due_at = add_working_days(city, utcnow(), 1)
    async with console.client() as client:
        await console.login(client, "rev")
        listing = (await client.get("/console/cases")).text
        ticket = (await client.get(f"/console/case/{soon}")).text
    for page in (listing, ticket):
        shown = re.search(r'<time class="due due-soon"[^>]*>(.*?)</time>', page, re.S)
        assert shown is not None
        assert "将到期" in shown.group(1) and "soon:" in shown.group(1)
    row = re.search(rf'href="/console/case/{unsure}">.*?<td class="num low">(.*?)</td>', listing, re.S)
    assert row is not None
    assert "31%" in row.group(1) and "低于" in row.group(1) and "below" in row.group(1)


VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


class Links(HTMLParser):
    """Each link with the name a screen reader's list of links gives it: its aria-label, else its text (hidden
    text of class "sr" included, text marked aria-hidden left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (name, href)
        self.open: list[tuple[str, list[str], str | None]] = []  # per open <a>: href, its text, its aria-label
        self.hidden_depth: list[bool] = []  # per open element inside a link: whether it is aria-hidden

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.open.append((str(values["href"]), [], values.get("aria-label")))
        elif self.open and tag not in VOID:
            self.hidden_depth.append(values.get("aria-hidden") == "true")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.open:
            href, text, label = self.open.pop()
            self.links.append((" ".join((label or "".join(text)).split()), href))
        elif self.open and self.hidden_depth:
            self.hidden_depth.pop()

    def handle_data(self, data: str) -> None:
        if self.open and not any(self.hidden_depth):
            self.open[-1][1].append(data)



def same_name_elsewhere(page: str) -> dict[str, list[str]]:
    """The link names that lead to more than one place: in a screen reader's list of links they cannot be told
    apart (WCAG 2.4.9)."""
    parser = Links()
    parser.feed(page)
    places: dict[str, set[str]] = {}
    for name, href in parser.links:
        places.setdefault(name, set()).add(href)
    return {name: sorted(hrefs) for name, hrefs in places.items() if len(hrefs) > 1}


async def test_no_two_links_of_the_main_pages_share_a_name_but_lead_elsewhere(console: ConsoleHarness) -> None:
    """The overview ended each queue's row in the same "打开 open →": a screen reader's list of links read nine
    identical "open" links (and the same counts, "1", "1", for different queues). Every link now says where it
    leads, with the queue's name where the row's is needed."""
    await console.user("boss", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    for queue in ("clean_hall", "clean_medical", "petitions"):
        await console.case(queue, overdue=True)
        await console.case(queue)
    async with console.client() as client:
        await console.login(client, "boss")
        start = (utcnow() - timedelta(days=120)).date().isoformat()
        pages = {address: (await client.get(address)).text for address in (
            "/console", "/console/cases", "/console/queue/clean_hall", f"/console/case/{number}",
            f"/console/stats?start={start}")}
    assert "打开" in pages["/console"]
    assert {address: same_name_elsewhere(page) for address, page in pages.items()} == {
        address: {} for address in pages}
