"""The export links of the case lists (`/console/export.csv`, `/console/export.xlsx`), as a supervisor's browser
uses them, against SQLite and the PostgreSQL on 127.0.0.1: the list's filter in the query picks the cases (the
whole filter, never only the page the list was on), the file comes as an attachment with the console's security
headers, identity columns only for `identity=1`, the audit entry records the filter as the list showed it, and a
reviewer, a bad filter value or an unknown format is refused with the reason. (What a row holds, the formula
neutralising and the 10,000 cap are tests/console/test_exports.py's.)"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from console import operations
from storage import queries
from storage.models import Case, StaffRole, utcnow
from tests.console.conftest import make_context
from tests.console.routes.office import Office, invalid_fields, page_message

FILENAME = re.compile(r'attachment; filename="qinglian-cases-\d{8}-\d{4}\.(csv|xlsx)"')
LIST_ROW = re.compile(r'<td class="nowrap"><a href="/console/case/([^"]+)">')
CSV_LINK = re.compile(r'<a href="(/console/export\.csv\?[^"]*)">CSV</a>')
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REASON_FORM = re.compile(r'<form method="post" action="([^"]*)" class="[^"]*export-identity"')


@pytest.fixture
async def office(database: Any, tmp_path: Path) -> AsyncIterator[Office]:
    async with AsyncExitStack() as stack:
        yield Office(make_context(database, tmp_path), stack)


def _rows(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text[:500]
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def _numbers(response: httpx.Response) -> list[str]:
    """The case numbers of an exported CSV, in the file's order."""
    return [row[0] for row in _rows(response)[1:]]


async def test_a_supervisor_downloads_the_lists_filter_as_an_attached_csv_with_the_consoles_headers(
        office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    hall = await office.case("clean_hall", "1")
    medical = await office.case("clean_hall", "2", label="medical")
    petition = await office.case("petitions", "3", label="bribery_gifts")

    everything = await wang.get("/console/export.csv")
    filtered = await wang.get("/console/export.csv", params={"queue": "clean_hall", "label": "medical"})

    assert _numbers(everything) == [petition, medical, hall]  # every queue of a supervisor's, newest first
    assert _numbers(filtered) == [medical]
    assert filtered.headers["content-type"] == "text/csv; charset=utf-8"
    assert FILENAME.fullmatch(filtered.headers["content-disposition"])
    assert filtered.headers["content-disposition"].endswith('.csv"')
    assert (filtered.headers["cache-control"], filtered.headers["x-content-type-options"],
            filtered.headers["x-frame-options"]) == ("no-store", "nosniff", "DENY")
    assert _rows(filtered)[0][:2] == ["编号 case number", "收到时间 received (Asia/Shanghai)"]


async def test_the_export_holds_the_whole_filter_not_the_page_the_list_was_on_and_audits_the_filter_as_shown(
        office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    older = await office.case("clean_hall", "1")
    newer = await office.case("clean_hall", "2")
    await office.case("petitions", "3", label="bribery_gifts")

    async with office.database.read_sessionmaker() as session:
        newest = (await session.execute(select(Case).where(Case.case_number == newer))).scalar_one()
    page_two = operations.cursor_param(queries.CaseCursor(newest.created_at, newest.id))
    assert LIST_ROW.findall((await wang.get("/console/cases", params={"queue": "clean_hall", "after": page_two}
                                            )).text) == [older]  # the list's page after the newest case

    # the export links of a list's later page: its cursor, an empty field and a stray parameter are no filter
    for cursor in ({"after": page_two}, {"after": "not-a-cursor", "before": "x"}):
        response = await wang.get("/console/export.csv", params={
            "queue": "clean_hall", "status": "routed", **cursor, "district": " ", "colour": "red"})
        assert _numbers(response) == [newer, older]
    entries = await office.exports()
    assert [(entry.detail, entry.ip) for entry in entries] == [({
        "format": "csv", "count": 2, "identity": False, "filter": {"queue": "clean_hall", "status": "routed"}},
        "127.0.0.1")] * 2


async def test_the_lists_own_filters_mine_and_search_text_choose_the_exported_cases(office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    mine = await office.case("clean_hall", "1")
    await office.case("clean_hall", "2")
    medical = await office.case("clean_medical", "3", label="medical", description="医院收红包的问题，医生收受红包")
    await office.assign(mine, "wang")

    assert _numbers(await wang.get("/console/export.csv", params={"mine": "1"})) == [mine]
    assert _numbers(await wang.get("/console/export.csv", params={"q": "红包"})) == [medical]
    assert [entry.detail["filter"] for entry in await office.exports()] == [{"mine": "1"}, {"q": "红包"}]


async def test_xlsx_comes_as_an_attached_workbook_of_the_same_cases(office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    hall = await office.case("clean_hall", "1")
    await office.case("petitions", "2", label="bribery_gifts")

    response = await wang.get("/console/export.xlsx", params={"queue": "clean_hall"})

    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX
    assert FILENAME.fullmatch(response.headers["content-disposition"])
    assert response.headers["content-disposition"].endswith('.xlsx"')
    sheet = load_workbook(io.BytesIO(response.content))["cases"]
    assert [row[0].value for row in sheet.iter_rows()] == ["编号 case number", hall]
    assert [(e.detail["format"], e.detail["count"]) for e in await office.exports()] == [("xlsx", 1)]


async def test_a_format_other_than_csv_or_xlsx_is_refused_naming_the_formats(office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    await office.case()

    for fmt in ("pdf", "CSV", "csv.exe"):
        response = await wang.get(f"/console/export.{fmt}")
        assert invalid_fields(response) == [["path", "fmt"]], fmt  # a page naming the part of the address
        assert "&#39;csv&#39; or &#39;xlsx&#39;" in response.text or "'csv' or 'xlsx'" in response.text, fmt
    assert await office.exports() == []


async def test_identity_columns_come_only_with_identity_1_and_a_reason(office: Office) -> None:
    wang, csrf = await office.login("wang", StaffRole.SUPERVISOR)
    named = await office.case(anonymous=False, reporter_name="张三", reporter_phone="13800000000")

    plain, spelled = [
        _rows(await wang.get("/console/export.csv", params={"identity": value})) for value in ("0", "true")]
    for without in (plain, spelled):  # only "1" asks for them
        assert "举报人姓名 reporter's name" not in without[0] and "张三" not in without[1]

    # the identity link of a list asks why first: a form, nothing exported yet
    asked = await wang.get("/console/export.csv", params={"queue": "clean_hall", "identity": "1"})
    assert asked.status_code == 200 and "content-disposition" not in asked.headers and "张三" not in asked.text
    form = REASON_FORM.search(asked.text)
    assert form is not None and html.unescape(form.group(1)) == "/console/export.csv?queue=clean_hall&identity=1"
    assert [e.detail["identity"] for e in await office.exports()] == [False, False]

    action = html.unescape(form.group(1))
    for reason in ("", ".", "核实"):  # refused on the form again, with what was typed and why
        refused = await wang.post(action, data={"csrf": csrf, "reason": reason})
        assert refused.status_code == 422 and "张三" not in refused.text, reason
        assert page_message(refused) == (
            "an export with reporters' identities needs a reason of at least 4 letters or digits (it is recorded as "
            "a reveal of each case whose reporter's identity is exported)")
        again = REASON_FORM.search(refused.text)
        assert again is not None and html.unescape(again.group(1)) == action
        kept = re.search(r'<input name="reason"[^>]*value="([^"]*)"', refused.text)
        assert kept is not None and html.unescape(kept.group(1)) == reason
    assert len(await office.exports()) == 2

    revealed = _rows(await wang.post(action, data={"csrf": csrf, "reason": "季度回访核实"}))
    assert revealed[0][-2:] == ["举报人姓名 reporter's name", "举报人电话 reporter's phone"]
    assert revealed[1][0] == named and revealed[1][-2:] == ["张三", "13800000000"]
    assert [e.detail["identity"] for e in await office.exports()] == [False, False, True]

    # the ticket's activity says that its reporter's identity went out in an export, and why
    ticket = (await wang.get(f"/console/case/{named}")).text
    activity = ticket[ticket.index('id="activity"'):]
    assert "查看身份" in activity and "季度回访核实" in activity and "导出" in activity
    # the form is the console's: without its CSRF token nothing is exported
    assert (await wang.post(action, data={"reason": "季度回访核实"})).status_code == 403
    assert len(await office.exports()) == 3


async def test_a_reviewer_is_refused_with_a_page_saying_why_and_nothing_is_exported(office: Office) -> None:
    li = await office.browser("li", StaffRole.REVIEWER, ["clean_hall"])
    await office.case("clean_hall")

    for identity in ("0", "1"):
        response = await li.get("/console/export.csv", params={"queue": "clean_hall", "identity": identity})
        assert response.status_code == 403
        assert page_message(response) == "only supervisors and administrators may do this"
        assert "content-disposition" not in response.headers
    assert await office.exports() == []


BAD_FILTERS = [
    ({"status": "lost"}, 422, "unknown status 'lost'"),
    ({"label": "gossip"}, 422, "unknown label 'gossip'"),
    ({"district": "atlantis"}, 422, "unknown district 'atlantis'"),
    ({"from": "yesterday"}, 422, "from: a date like 2026-11-24, not 'yesterday'"),
    ({"conf_min": "200"}, 422, "conf_min: a percentage from 0 to 100"),
    ({"problem": "one"}, 422, "problem: not a problem number 'one'"),
    ({"queue": "mars"}, 404, "no queue mars"),
]


async def test_a_bad_filter_value_is_refused_with_the_reason_and_nothing_is_exported(office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    await office.case()

    for query, status, message in BAD_FILTERS:
        response = await wang.get("/console/export.xlsx", params=query)
        assert (response.status_code, page_message(response)) == (status, message)
    assert await office.exports() == []


async def test_without_a_login_the_export_link_leads_to_the_login_page(office: Office) -> None:
    await office.case()
    async with office.anonymous() as visitor:
        response = await visitor.get("/console/export.csv", params={"queue": "clean_hall"})
    assert (response.status_code, response.headers["location"]) == (303, "/console/login?next=/console/export.csv")
    assert await office.exports() == []


async def test_the_export_link_of_every_list_page_exports_the_cases_the_list_shows(office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    await office.case("clean_hall", "1", accept_due_at=utcnow() - timedelta(days=3))  # overdue
    await office.case("clean_hall", "2")
    await office.case("petitions", "3", label="bribery_gifts")

    differences = {}
    for page in ("/console/queue/clean_hall", "/console/overdue", "/console/cases?queue=petitions"):
        listing = await wang.get(page)
        link = CSV_LINK.search(listing.text)
        assert listing.status_code == 200 and link is not None, page
        shown, exported = LIST_ROW.findall(listing.text), _numbers(await wang.get(html.unescape(link.group(1))))
        if exported != shown:
            differences[page] = (shown, exported)
    assert differences == {}


ENGLISH_LINKS = re.compile(r'<a href="(/console/export\.(?:csv|xlsx)\?[^"]*)" hreflang="en"[^>]*>')


async def test_the_list_offers_the_export_in_english_with_english_headers_and_values(office: Office) -> None:
    wang = await office.browser("wang", StaffRole.SUPERVISOR)
    hall = await office.case("clean_hall", "1")
    await office.case("petitions", "2", label="bribery_gifts")

    listing = await wang.get("/console/cases", params={"queue": "clean_hall"})
    links = [html.unescape(link) for link in ENGLISH_LINKS.findall(listing.text)]
    assert links == ["/console/export.csv?queue=clean_hall&lang=en", "/console/export.xlsx?queue=clean_hall&lang=en"]
    header, row = _rows(await wang.get(links[0]))
    values = dict(zip(header, row, strict=True))
    assert (values["case number"], values["queue"], values["status"], values["overdue"], values["real name"]) == (
        hall, "Clean Hall supervision (Administrative Approval Bureau)", "Routed", "no", "no")
    workbook = load_workbook(io.BytesIO((await wang.get(links[1])).content))["cases"]
    assert [cell.value for cell in next(workbook.iter_rows())][:3] == ["case number", "received (Asia/Shanghai)",
                                                                       "queue"]
    chinese = _rows(await wang.get("/console/export.csv", params={"queue": "clean_hall"}))
    assert chinese[0][0] == "编号 case number" and "清廉大厅监督组（市行政审批服务局）" in chinese[1]
    refused = await wang.get("/console/export.csv", params={"lang": "fr"})
    assert refused.status_code == 422


async def test_the_identity_export_comes_in_english_too_after_the_same_reason_form(office: Office) -> None:
    wang, csrf = await office.login("wang", StaffRole.SUPERVISOR)
    await office.case(anonymous=False, reporter_name="张三", reporter_phone="13800000000")
    listing = await wang.get("/console/cases", params={"queue": "clean_hall"})
    link = re.search(r'<a href="(/console/export\.xlsx\?[^"]*identity=1[^"]*lang=en)"', listing.text)
    assert link is not None
    asked = await wang.get(html.unescape(link.group(1)))
    form = REASON_FORM.search(asked.text)
    assert asked.status_code == 200 and form is not None and "lang=en" in html.unescape(form.group(1))
    sent = await wang.post(html.unescape(form.group(1)), data={"csrf": csrf, "reason": "季度回访核实"})
    sheet = load_workbook(io.BytesIO(sent.content))["cases"]
    header, row = ([cell.value for cell in cells] for cells in sheet.iter_rows())
    assert header[-2:] == ["reporter's name", "reporter's phone"] and row[-2:] == ["张三", "13800000000"]
    assert dict(zip(header, row, strict=True))["real name"] == "yes"
