"""The audit log page."""

from __future__ import annotations

import csv
import io
import re

from console.texts import get as console_text
from storage import staff_actions
from storage.models import StaffRole
from tests.console.conftest import ConsoleHarness


async def test_audit_log_page_filters_by_user_and_case(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    first = await console.case("clean_hall")
    second = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        await client.post(f"/console/case/{first}/accept", data={"csrf": csrf})
        await client.post(f"/console/case/{second}/note", data={"csrf": csrf, "body": "备注"})
    async with console.client() as client:
        await console.login(client, "boss")
        by_case = (await client.get(f"/console/audit?case={first}")).text
        assert "case.accept" in by_case and "case.note" not in by_case
        by_user = (await client.get("/console/audit?user=rev")).text
        assert "case.accept" in by_user and "case.note" in by_user and "login.success" in by_user
        assert "boss" not in by_user.split("<table", 1)[1]
        # who: by name, as the rest of the console names colleagues, with the username beside it for the auditor
        assert '<a href="/console/audit?user=rev" title="rev">rev 同志</a> <span class="dim">rev</span>' in by_user
        # actions and the filter's groups are named in both languages, as the rest of the console is
        accept_zh, accept_en = console_text("zh", "audit.case.accept"), console_text("en", "audit.case.accept")
        assert accept_zh in by_case and accept_en in by_case
        assert "案件 · cases (case.*)" in by_case and "模型 · models (model.*)" in by_case


async def test_the_details_of_an_entry_are_named_in_both_languages_not_by_their_codes(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        assert (await client.get("/console/export.csv", params={"queue": "clean_hall"})).status_code == 200
        await client.post(f"/console/case/{number}/note", data={"csrf": csrf, "body": "备注"})
        page = (await client.get("/console/audit")).text
    export = page[page.index("case.export</code>"):]
    export = export[:export.index("</tr>")]
    assert ('<span class="bi">格式：csv · 数量：1 · 含身份信息：否 · 筛选条件：队列=清廉大厅监督组'
            '<span class="en">format: csv · count: 1 · with identities: no · filter: queue=Clean Hall supervision'
            '</span></span>') in export
    async with console.client() as client:
        await console.login(client, "boss")
        assert (await client.get("/console/export.csv", params={"from": "2026-01-01"})).status_code == 200
        page = (await client.get("/console/audit")).text
    assert "筛选条件：收到日期自=2026-01-01" in page and "filter: received from=2026-01-01" in page
    [note] = await console.audit("case.note")
    assert f"备注编号：{note.detail['note_id']}" in page and f"note: {note.detail['note_id']}" in page


async def test_entries_of_a_bulk_action_are_marked_with_its_id_and_selection_on_the_page_and_in_the_export(
        console: ConsoleHarness) -> None:
    """An action on a selection of cases (the lists' bulk form) is told apart from the same action on one ticket:
    each case's entry carries the bulk action's id and how many cases were selected, and one entry sums it up."""
    await console.user("boss", StaffRole.ADMIN)
    await console.user("sup", StaffRole.SUPERVISOR)
    first, second, single = [await console.case("clean_hall") for _ in range(3)]
    elsewhere = await console.case("petitions")
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        done = await client.post("/console/cases/bulk", data={
            "csrf": csrf, "action": "move", "queue": "petitions", "reason": "属于信访", "reason_code": "",
            "cases": [first, elsewhere, second]})
        assert done.status_code == 200
        moved = await client.post(f"/console/case/{single}/move", data={"csrf": csrf, "queue": "petitions",
                                                                       "reason": "属于信访"})
        assert moved.status_code == 303
    moves = {entry.case_id: entry.detail for entry in await console.audit("case.move")}
    assert len(moves) == 3
    [summary] = await console.audit("case.bulk")
    bulk_id = summary.detail["bulk"]
    assert summary.detail == {"bulk_action": "move", "to": "petitions", "done": 2, "refused": 1, "bulk": bulk_id,
                              "selection": 3}
    for number in (first, second):
        assert moves[(await console.get_case(number)).id] == {
            "from": "clean_hall", "to": "petitions", "reason": "属于信访", "transfers": 1, "bulk": bulk_id,
            "selection": 3}
    assert "bulk" not in moves[(await console.get_case(single)).id]
    async with console.client() as client:
        await console.login(client, "boss")
        page = (await client.get("/console/audit", params={"action": "case."})).text
        exported = (await client.get("/console/audit.csv", params={"action": "case.", "lang": "en"})).text
    linked = f'<a href="/console/audit?bulk={bulk_id}">{bulk_id}</a>'  # the log of this bulk action alone
    marked = f"批量操作：{linked} · 选中案件：3"
    assert page.count(marked) == 3 and page.count(f"bulk action: {linked} · cases selected: 3") == 3
    assert ("操作：转办 · 改为：信访室 · 完成：2 · 未完成：1 · " + marked) in page
    assert (f"action: move · to: Letters and Visits office · done: 2 · not done: 1 · bulk action: {linked} · "
            "cases selected: 3") in page
    rows = list(csv.reader(io.StringIO(exported.removeprefix("\ufeff"))))
    assert rows[0][-2:] == ["action name", "detail, readable"]
    by_case = {row[3]: row[-1] for row in rows[1:] if row[2] == "case.move"}
    assert by_case[first].endswith(f"bulk action: {bulk_id} · cases selected: 3")
    assert "bulk" not in by_case[single]


async def test_an_auditor_selects_every_entry_of_one_bulk_action_on_the_page_in_the_export_and_in_the_api(
        console: ConsoleHarness) -> None:
    """Reviewing a bulk move: the bulk id an entry shows links to the log of that bulk action alone — its cases'
    entries and its summary, not another bulk action's nor the same action on one ticket — and the export and the
    API's audit endpoint filter by it the same way."""
    admin = await console.user("boss", StaffRole.ADMIN)
    await console.user("sup", StaffRole.SUPERVISOR)
    first, second, third, single = [await console.case("clean_hall") for _ in range(4)]
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        for selection in ([first, second], [third]):
            moved = await client.post("/console/cases/bulk", data={
                "csrf": csrf, "action": "move", "queue": "petitions", "reason": "属于信访", "reason_code": "",
                "cases": selection})
            assert moved.status_code == 200
        assert (await client.post(f"/console/case/{single}/move", data={
            "csrf": csrf, "queue": "petitions", "reason": "属于信访"})).status_code == 303
    first_bulk, second_bulk = [entry.detail["bulk"] for entry in await console.audit("case.bulk")]
    async with console.database.sessionmaker.begin() as session:
        token, _ = await staff_actions.create_api_token(session, admin, "auditing", actor=admin)
    async with console.client() as client:
        await console.login(client, "boss")
        everything = (await client.get("/console/audit")).text
        link = f'<a href="/console/audit?bulk={first_bulk}">{first_bulk}</a>'
        assert f"批量操作：{link} · 选中案件：2" in everything
        assert f"bulk action: {link} · cases selected: 2" in everything
        page = await client.get("/console/audit", params={"bulk": first_bulk})
        exported = (await client.get("/console/audit.csv", params={"bulk": first_bulk, "lang": "en"})).text
        api = (await client.get("/api/v1/audit", params={"bulk": first_bulk},
                                headers={"Authorization": f"Bearer {token}"})).json()
        api_export = (await client.get("/api/v1/audit.csv", params={"bulk": first_bulk, "lang": "en"},
                                       headers={"Authorization": f"Bearer {token}"})).text
    assert page.status_code == 200
    shown = page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert [(action, number) for action, number in re.findall(
        r'<code class="dim">([a-z_.]+)</code></td>\s*<td class="nowrap">(?:<a href="/console/case/([^"]+)")?',
        shown)] == [("case.bulk", ""), ("case.move", second), ("case.move", first)]
    assert f'name="bulk" value="{first_bulk}"' in page.text and "共 3 条" in page.text
    assert second_bulk not in shown
    for sheet in (exported, api_export):
        rows = list(csv.reader(io.StringIO(sheet.removeprefix("\ufeff"))))
        assert [(row[2], row[3]) for row in rows[1:]] == [("case.bulk", ""), ("case.move", second),
                                                          ("case.move", first)]
    assert api["total"] == 3
    assert [(item["action"], item["case_number"]) for item in api["items"]] == [
        ("case.bulk", None), ("case.move", second), ("case.move", first)]
    assert {item["detail"]["bulk"] for item in api["items"]} == {first_bulk}


async def test_a_bulk_assignment_is_called_an_assignment_not_a_routing(console: ConsoleHarness) -> None:
    """The summary of a selection assigned to a colleague read "操作：分派" — 分派 is what the trace calls the
    routing of a case to its queue; the ticket, the bulk form and the single assignment's entry say 分配."""
    await console.user("boss", StaffRole.ADMIN)
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    cases = [await console.case("clean_hall") for _ in range(2)]
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        done = await client.post("/console/cases/bulk", data={"csrf": csrf, "action": "assign", "username": "rev",
                                                              "cases": cases})
        assert done.status_code == 200
    async with console.client() as client:
        await console.login(client, "boss")
        page = (await client.get("/console/audit", params={"action": "case."})).text
    assert "操作：分配 · 改为：rev · 完成：2" in page and "操作：分派" not in page
    assert console_text("zh", "audit.case.assign") == "分配"
