"""The pages of a working day beyond one ticket, as staff browsers use them, against SQLite and the PostgreSQL on
127.0.0.1: the notices page (one's own notices, newest first, unread until the case is opened), the canned
replies page (a reviewer reads their queues' replies, a supervisor adds, edits and deletes them, configured ones
are read-only), and the result page of an action on a selection (each case done or the reason why, a way back to
a console page only). Refusals: no CSRF token (403), a reviewer changing replies (403), malformed fields (422
naming the field), unknown replies (404). (tests/console/test_workday.py tests console.workday itself.)"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from handlers.city import load_city_config
from storage import actions, canned_replies, staff_actions
from storage.models import AuditEntry, CannedReply, Case, StaffRole
from tests.conftest import city_file
from tests.console.conftest import location, make_context
from tests.console.routes.office import Office, flash, invalid_fields, page_message

CSRF_REFUSED = "the form has expired or did not come from this site (CSRF check failed)"
NOT_SUPERVISOR = "only supervisors and administrators may do this"
TABLE_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
TAGS = re.compile(r"<[^>]+>")
ENGLISH = re.compile(r'<span class="en(?: sub)?">[^<]*</span>')


class Day(Office):
    """The office of tests/console/routes/office.py with what a working day adds: follow-ups from
    reporters, canned replies kept in the database."""

    async def follow_up(self, case_number: str) -> None:
        """What the dialog does when the reporter adds information to the case."""
        async with self.database.sessionmaker.begin() as session:
            case = (await session.execute(select(Case).where(Case.case_number == case_number))).scalar_one()
            await actions.add_follow_up(session, case, text="补充：今天下午又去了一次，还是没人。")

    async def reply(self, queue: str, title: str, body: str) -> int:
        """A canned reply kept by the first supervisor."""
        async with self.database.sessionmaker.begin() as session:
            author = await staff_actions.get_staff_by_username(session, "wang")
            assert author is not None
            return (await canned_replies.save(session, queue=queue, title=title, body=body, actor=author)).id

    async def replies(self) -> list[tuple[str, str, str]]:
        async with self.database.read_sessionmaker() as session:
            return [(r.queue, r.title, r.body) for r in await canned_replies.for_queues(session, None)]

    async def reply_ids(self) -> list[int]:
        async with self.database.read_sessionmaker() as session:
            return list((await session.execute(select(CannedReply.id))).scalars())

    async def get_case(self, case_number: str) -> Case:
        async with self.database.read_sessionmaker() as session:
            return (await session.execute(select(Case).where(Case.case_number == case_number))).scalar_one()

    async def audit_count(self, prefix: str) -> int:
        async with self.database.read_sessionmaker() as session:
            return int((await session.execute(select(func.count()).select_from(AuditEntry)
                                              .where(AuditEntry.action.startswith(prefix)))).scalar_one())


@pytest.fixture
async def day(database: Any, tmp_path: Path) -> AsyncIterator[Day]:
    async with AsyncExitStack() as stack:
        yield Day(make_context(database, tmp_path), stack)


def _text(fragment: str) -> str:
    """What a Chinese reader sees of a fragment: the tags and the English halves left out."""
    return re.sub(r"\s+", " ", html.unescape(TAGS.sub(" ", ENGLISH.sub("", fragment)))).strip()


def _table(page: str, marker: str = '<table class="grid"') -> list[list[str]]:
    """The body rows of the page's table as a reader sees their cells."""
    table = page[page.index(marker):]
    body = table[table.index("<tbody>"):table.index("</tbody>")]
    return [[_text(cell) for cell in CELL.findall(row)] for row in TABLE_ROW.findall(body)]


# --- notices ------------------------------------------------------------------------------------------------


async def test_the_notices_page_lists_ones_own_notices_newest_first_unread_until_the_case_is_opened(
        day: Day) -> None:
    li = await day.browser("li", StaffRole.REVIEWER, ["clean_hall"])
    wang = await day.browser("wang", StaffRole.SUPERVISOR)
    await day.browser("zhao", StaffRole.REVIEWER, ["clean_hall"])
    first, second, colleagues = [await day.case("clean_hall", str(n)) for n in (1, 2, 3)]
    for number, assignee in ((first, "li"), (second, "li"), (colleagues, "zhao")):
        await day.assign(number, assignee)
    unassigned = await day.case("clean_hall", "4")
    for number in (first, colleagues, second, unassigned):
        await day.follow_up(number)

    page = (await li.get("/console/notices")).text
    assert [row[1:] for row in _table(page)] == [[second, "举报人补充了信息", "未读"],
                                                 [first, "举报人补充了信息", "未读"]]
    assert '<b class="count">2</b>' in page  # the header's count
    assert f'<a href="/console/case/{first}">{first}</a>' in page

    assert (await li.get(f"/console/case/{first}")).status_code == 200
    page = (await li.get("/console/notices")).text
    assert [row[1:] for row in _table(page)] == [[second, "举报人补充了信息", "未读"],
                                                 [first, "举报人补充了信息", "已读"]]
    assert '<b class="count">1</b>' in page

    nothing = await wang.get("/console/notices")  # a case assigned to nobody notifies nobody
    assert nothing.status_code == 200
    assert _table(nothing.text) == [["没有通知"]] and 'class="count"' not in nothing.text


async def test_a_notice_of_a_case_moved_out_of_ones_queues_does_not_stay_unread_for_ever(day: Day) -> None:
    """The reporter added information to 李's case, then a supervisor moved it to another office: 李's header kept
    "通知 1" and the notices page an unread row whose link answered "not in your queues" — opening the case is
    what reads a notice, so nothing could clear it."""
    li = await day.browser("li", StaffRole.REVIEWER, ["clean_hall"])
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)
    moved, kept = [await day.case("clean_hall", str(n)) for n in (1, 2)]
    for number in (moved, kept):
        await day.assign(number, "li")
        await day.follow_up(number)
    assert '<b class="count">2</b>' in (await li.get("/console/notices")).text
    done = await wang.post(f"/console/case/{moved}/move", data={"csrf": csrf, "queue": "work_style",
                                                                "reason": "属于作风问题", "reason_code": ""})
    assert done.status_code == 303

    page = (await li.get("/console/notices")).text
    assert [row[1:] for row in _table(page)] == [[kept, "举报人补充了信息", "未读"]]
    assert '<b class="count">1</b>' in page
    assert (await li.get(f"/console/case/{kept}")).status_code == 200
    assert 'class="count"' not in (await li.get("/console")).text


# --- canned replies: the page --------------------------------------------------------------------------------


async def test_a_reviewer_reads_the_replies_of_their_queues_and_has_no_form_to_change_them(day: Day) -> None:
    await day.browser("wang", StaffRole.SUPERVISOR)
    li = await day.browser("li", StaffRole.REVIEWER, ["clean_hall"])
    hall = await day.reply("clean_hall", "已转交核查", "您反映的问题已转交大厅负责人核查。")
    await day.reply("petitions", "信访件", "已转信访室办理。")

    for address in ("/console/replies", f"/console/replies?edit={hall}"):
        page = (await li.get(address)).text
        assert _table(page) == [["清廉大厅监督组", "已转交核查", "您反映的问题已转交大厅负责人核查。", ""]]
        assert 'action="/console/replies"' not in page and "/delete" not in page and "?edit=" not in page
        assert "常用答复由主管维护。" in _text(page)


async def test_a_supervisor_sees_every_queues_replies_with_edit_and_delete_and_edit_fills_the_form(
        day: Day) -> None:
    wang = await day.browser("wang", StaffRole.SUPERVISOR)
    hall = await day.reply("clean_hall", "已转交核查", "您反映的问题已转交大厅负责人核查。")
    petition = await day.reply("petitions", "信访件", "已转信访室办理。")

    listing = (await wang.get("/console/replies")).text
    assert [row[:3] for row in _table(listing)] == [
        ["清廉大厅监督组", "已转交核查", "您反映的问题已转交大厅负责人核查。"],
        ["信访室", "信访件", "已转信访室办理。"]]
    for reply_id in (hall, petition):
        assert f'href="/console/replies?edit={reply_id}#reply-form"' in listing
        assert f'action="/console/replies/{reply_id}/delete"' in listing
    form = listing[listing.index('id="reply-form"'):]
    assert "新增常用答复" in form and 'name="reply_id" value="0"' in form and "selected" not in form
    assert len(re.findall(r'<option value="(\w+)"', form)) == len(day.context.city.queues)  # every queue

    editing = (await wang.get("/console/replies", params={"edit": petition})).text
    form = editing[editing.index('id="reply-form"'):]
    assert "修改常用答复" in form and f'name="reply_id" value="{petition}"' in form
    assert re.findall(r'<option value="(\w+)" selected>', form) == ["petitions"]
    assert 'name="title" required maxlength="80" value="信访件"' in form
    assert re.search(r'<textarea name="body"[^>]*>已转信访室办理。</textarea>', form)

    unknown = (await wang.get("/console/replies", params={"edit": petition + 100})).text
    assert 'name="reply_id" value="0"' in unknown and "新增常用答复" in unknown
    for value in ("-1", "abc", "1e3"):
        assert invalid_fields(await wang.get("/console/replies", params={"edit": value})) == [["query", "edit"]]


async def test_replies_of_the_citys_configuration_come_first_and_are_read_only(day: Day, tmp_path: Path) -> None:
    path = city_file(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(
        '{ code = "clean_hall", zh',
        '{ code = "clean_hall", canned_replies = [{ title = "转办说明", body = "已转交大厅负责人核查。" }], zh', 1),
        encoding="utf-8")
    configured = Day(dataclasses.replace(day.context, city=load_city_config(path)), day.stack)
    wang = await configured.browser("wang", StaffRole.SUPERVISOR)
    kept = await configured.reply("clean_hall", "已受理", "您的举报已受理。")

    page = (await wang.get("/console/replies")).text

    assert _table(page) == [["清廉大厅监督组", "转办说明", "已转交大厅负责人核查。", "配置文件"],
                            ["清廉大厅监督组", "已受理", "您的举报已受理。", "修改 删除"]]
    assert page.count("?edit=") == 1 and f"?edit={kept}#" in page


# --- canned replies: saving and deleting ---------------------------------------------------------------------


async def test_a_supervisor_adds_and_then_changes_a_reply_and_the_page_says_saved(day: Day) -> None:
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)

    added = await wang.post("/console/replies", data={"csrf": csrf, "queue": "clean_hall", "title": " 已受理 ",
                                                      "body": "您的举报已受理。"})
    assert location(added) == "/console/replies?done=saved"
    assert flash((await wang.get(location(added))).text) == "已保存。"
    [reply_id] = await day.reply_ids()

    changed = await wang.post("/console/replies", data={"csrf": csrf, "queue": "petitions", "title": "已受理",
                                                        "body": "已受理，十五个工作日内答复。", "reply_id": reply_id})
    assert location(changed) == "/console/replies?done=saved"
    assert await day.replies() == [("petitions", "已受理", "已受理，十五个工作日内答复。")]  # changed, not added
    assert await day.audit_count("canned_reply.save") == 2


async def test_a_reply_of_invisible_characters_is_refused_and_a_kept_one_loses_them(day: Day) -> None:
    """A title of a zero-width space was kept as a reply whose link in the list showed nothing; the reviewer who
    started an answer from a reply got its invisible characters in the draft."""
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)
    blank = await wang.post("/console/replies", data={"csrf": csrf, "queue": "clean_hall", "title": "\u200b\u2060",
                                                      "body": "您的举报已受理。"})
    assert (blank.status_code, page_message(blank)) == (422, "a canned reply needs a title and a text")
    kept = await wang.post("/console/replies", data={"csrf": csrf, "queue": "clean_hall", "title": "已受理\u200b",
                                                     "body": "\u202e您的举报\x07已受理。"})
    assert location(kept) == "/console/replies?done=saved"
    assert await day.replies() == [("clean_hall", "已受理", "您的举报已受理。")]


async def test_saving_a_reply_is_refused_with_the_reason_and_nothing_is_saved(day: Day) -> None:
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)
    li, li_csrf = await day.login("li", StaffRole.REVIEWER, ["clean_hall"])
    good = {"queue": "clean_hall", "title": "已受理", "body": "您的举报已受理。"}

    refusals = [
        (wang, good, 403, CSRF_REFUSED),
        (wang, {**good, "csrf": "forged"}, 403, CSRF_REFUSED),
        (li, {**good, "csrf": li_csrf}, 403, NOT_SUPERVISOR),
        (wang, {**good, "csrf": csrf, "queue": "mars"}, 422, "unknown queue 'mars'"),
        (wang, {**good, "csrf": csrf, "title": "  "}, 422, "a canned reply needs a title and a text"),
        (wang, {**good, "csrf": csrf, "reply_id": "999"}, 404, "no canned reply 999"),
    ]
    for browser, form, status, message in refusals:
        response = await browser.post("/console/replies", data=form)
        assert (response.status_code, page_message(response)) == (status, message), form

    malformed = [({"title": "题" * 81}, "title"), ({"body": "字" * 3001}, "body"), ({"reply_id": "-1"}, "reply_id"),
                 ({"reply_id": "two"}, "reply_id")]
    for change, field in malformed:
        response = await wang.post("/console/replies", data={**good, "csrf": csrf, **change})
        assert invalid_fields(response) == [["body", field]]
    without_body = await wang.post("/console/replies", data={"csrf": csrf, "queue": "clean_hall", "title": "t"})
    assert invalid_fields(without_body) == [["body", "body"]]

    assert await day.replies() == [] and await day.audit_count("canned_reply.") == 0


async def test_a_supervisor_deletes_a_reply_and_the_page_says_deleted(day: Day) -> None:
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)
    gone = await day.reply("clean_hall", "已受理", "您的举报已受理。")
    await day.reply("petitions", "信访件", "已转信访室办理。")

    deleted = await wang.post(f"/console/replies/{gone}/delete", data={"csrf": csrf})

    assert location(deleted) == "/console/replies?done=deleted"
    page = (await wang.get(location(deleted))).text
    assert flash(page) == "已删除。" and [row[1] for row in _table(page)] == ["信访件"]
    assert await day.replies() == [("petitions", "信访件", "已转信访室办理。")]


async def test_deleting_a_reply_is_refused_with_the_reason_and_the_reply_stays(day: Day) -> None:
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)
    li, li_csrf = await day.login("li", StaffRole.REVIEWER, ["clean_hall"])
    kept = await day.reply("clean_hall", "已受理", "您的举报已受理。")

    for browser, address, form, status, message in [
            (wang, f"/console/replies/{kept}/delete", {}, 403, CSRF_REFUSED),
            (li, f"/console/replies/{kept}/delete", {"csrf": li_csrf}, 403, NOT_SUPERVISOR),
            (wang, f"/console/replies/{kept + 1}/delete", {"csrf": csrf}, 404, f"no canned reply {kept + 1}")]:
        response = await browser.post(address, data=form)
        assert (response.status_code, page_message(response)) == (status, message), address
    for malformed in ("0", "-3", "x"):
        response = await wang.post(f"/console/replies/{malformed}/delete", data={"csrf": csrf})
        assert invalid_fields(response) == [["path", "reply_id"]]

    assert await day.replies() == [("clean_hall", "已受理", "您的举报已受理。")]
    assert await day.audit_count("canned_reply.delete") == 0


# --- actions on a selection -----------------------------------------------------------------------------------


def _results(page: str) -> list[tuple[str, str]]:
    """The result page's rows: (case number, "已完成" or "未处理 <the reason>")."""
    return [(row[0], row[1]) for row in _table(page, 'id="bulk-results"')]


async def test_the_result_page_lists_each_selected_case_as_done_or_with_the_reason(day: Day) -> None:
    li, csrf = await day.login("li", StaffRole.REVIEWER, ["clean_hall"])
    first, second = await day.case("clean_hall", "1"), await day.case("clean_hall", "2")
    elsewhere = await day.case("petitions", "3")
    too_long = "QL-2026-" + "9" * 40

    response = await li.post("/console/cases/bulk", data={
        "csrf": csrf, "action": "assign", "username": "li", "cases": [first, elsewhere, second, too_long],
        "back": "/console/queue/clean_hall?status=routed"})

    assert response.status_code == 200
    cut = too_long[:32]  # a case number is at most 32 characters
    assert _results(response.text) == [
        (first, "已完成"), (elsewhere, f"未处理 您负责的队列中没有案件 {elsewhere}"), (second, "已完成"),
        (cut, f"未处理 您负责的队列中没有案件 {cut}")]
    assert "成功 2 / 4 件" in _text(response.text)
    assert 'href="/console/queue/clean_hall?status=routed">' in response.text  # back to the list it came from
    li_id = (await day.get_case(first)).assigned_to_id
    assert li_id is not None and (await day.get_case(second)).assigned_to_id == li_id
    assert (await day.get_case(elsewhere)).assigned_to_id is None


async def test_the_way_back_from_the_result_page_leads_only_to_a_console_page(day: Day) -> None:
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)
    number = await day.case("clean_hall")

    for back, shown in [("/console/cases?problem=3", "/console/cases?problem=3"),
                        ("https://evil.example/console/", "/console/cases"),
                        ("//evil.example/console/", "/console/cases"), ("/console//evil.example", "/console/cases"),
                        ("/console/\\evil.example", "/console/cases"), ("/consolex", "/console/cases"),
                        ("javascript:alert(1)", "/console/cases"), ("/console", "/console/cases")]:
        response = await wang.post("/console/cases/bulk", data={"csrf": csrf, "action": "assign", "username": "",
                                                                "cases": [number], "back": back})
        assert response.status_code == 200 and _results(response.text) == [(number, "已完成")]
        assert re.findall(r'<p><a href="([^"]*)">← ', response.text) == [shown], back


async def test_a_selection_that_cannot_be_right_is_refused_as_a_whole_with_the_reason(day: Day) -> None:
    wang, csrf = await day.login("wang", StaffRole.SUPERVISOR)
    number = await day.case("clean_hall")

    refusals: list[tuple[dict[str, Any], int, str]] = [
        ({"action": "status", "status": "in_handling", "cases": [number]}, 403, CSRF_REFUSED),
        ({"csrf": csrf, "action": "status", "status": "in_handling"}, 422, "select at least one case"),
        ({"csrf": csrf, "action": "close", "cases": [number]}, 422, "unknown bulk action 'close'"),
        ({"csrf": csrf, "action": "status", "cases": [number]}, 422, "choose the new status"),
        ({"csrf": csrf, "action": "move", "queue": "petitions", "cases": [number]}, 422,
         "moving cases needs a reason")]
    for form, status, message in refusals:
        response = await wang.post("/console/cases/bulk", data=form)
        assert (response.status_code, page_message(response)) == (status, message), form

    too_many = await wang.post("/console/cases/bulk", data={
        "csrf": csrf, "action": "status", "status": "in_handling", "cases": [number] * 201})
    assert invalid_fields(too_many) == [["body", "cases"]]
    long_note = await wang.post("/console/cases/bulk", data={
        "csrf": csrf, "action": "status", "status": "in_handling", "note": "字" * 3001, "cases": [number]})
    assert invalid_fields(long_note) == [["body", "note"]]

    case = await day.get_case(number)
    assert (case.status, case.queue, case.assigned_to_id) == ("routed", "clean_hall", None)
