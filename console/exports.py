"""Cases of a filter as a spreadsheet (CSV or XLSX) for supervisors' reports: the columns they report on, times
in the city's time zone, the reporter's identity only for the roles that may reveal it, and every export in
the audit log. No cell can run as a formula: text that a spreadsheet would read as one (it starts with = + - @,
a tab or a carriage return) gets a leading apostrophe in CSV, which has no cell types; in XLSX it is a string cell
with the quote prefix (Excel keeps it text when edited), holding the text exactly as it was written."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from console import operations, texts
from console.auth import Principal, can_reveal_identity
from console.operations import OperationError
from console.schemas import is_overdue
from handlers.city import CityConfig
from nlp.labels import LABELS as LABEL_NAMES
from storage import audit, queries, staff_actions
from storage.models import Case, utcnow

MAX_EXPORT_ROWS = 10_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
Cell = str | int | float | None
Format = Literal["csv", "xlsx"]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}

COLUMNS: tuple[tuple[str, str], ...] = (
    ("编号", "case number"), ("收到时间", "received"), ("队列", "queue"), ("区县", "district"), ("分类", "label"),
    ("分类确认", "label review"), ("置信度", "confidence"), ("状态", "status"), ("承办人", "assignee"),
    ("受理时间", "accepted"), ("受理期限", "accept by"), ("办结期限", "resolve by"), ("办结时间", "closed"),
    ("超期", "overdue"), ("评价", "rating"), ("实名", "real name"), ("渠道", "channel"), ("地点", "place"),
    ("摘要", "summary"),
)
IDENTITY_COLUMNS: tuple[tuple[str, str], ...] = (("举报人姓名", "reporter's name"), ("举报人电话", "reporter's phone"))
TIME_COLUMNS = frozenset({"received", "accepted", "accept by", "resolve by", "closed"})
READ = (Case.case_number, Case.queue, Case.district, Case.label, Case.label_status, Case.label_confidence,
        Case.status, Case.assigned_to_id, Case.accepted_at, Case.accept_due_at, Case.resolve_due_at, Case.closed_at,
        Case.rating, Case.anonymous, Case.channel, Case.place, Case.description)
"""What `sheet` reads of a case (with the identity columns only when they are exported): the other encrypted
columns are not decrypted."""


def neutralised(value: Cell) -> Cell:
    """A text cell a spreadsheet will show as text, never evaluate (OWASP's CSV injection advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@dataclass(frozen=True)
class Sheet:
    header: list[str]
    rows: list[list[Cell]]


def header(city: CityConfig, identity: bool) -> list[str]:
    names = []
    for zh, en in COLUMNS + (IDENTITY_COLUMNS if identity else ()):
        names.append(f"{zh} {en}" + (f" ({city.timezone})" if en in TIME_COLUMNS else ""))
    return names


def sheet(cases: Sequence[Case], usernames: dict[int, str], city: CityConfig, *, identity: bool,
          now: datetime | None = None) -> Sheet:
    zone = ZoneInfo(city.timezone)
    now = now or utcnow()

    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else None

    rows: list[list[Cell]] = []
    for case in cases:
        queue = city.queue(case.queue)
        district = city.district(case.district) if case.district else None
        row: list[Cell] = [
            case.case_number, local(case.created_at), queue.zh if queue else case.queue,
            district.zh if district else (case.district or ""),
            LABEL_NAMES.get(case.label, (case.label, ""))[0] if case.label else "",
            {"confirmed": "已确认", "corrected": "已更正"}.get(case.label_status or "", ""),
            round(case.label_confidence, 4) if case.label_confidence is not None else None,
            texts.pair_or(f"status.{case.status}", case.status)[0],
            usernames.get(case.assigned_to_id, "") if case.assigned_to_id else "",
            local(case.accepted_at), local(case.accept_due_at), local(case.resolve_due_at), local(case.closed_at),
            "是" if is_overdue(case, now) else "否", case.rating, "否" if case.anonymous else "是", case.channel,
            case.place, " ".join(case.description.split())[:200],
        ]
        if identity:
            row += [case.reporter_name if not case.anonymous else None,
                    case.reporter_phone if not case.anonymous else None]
        rows.append(row)
    return Sheet(header(city, identity), rows)


def to_csv(table: Sheet) -> bytes:
    """UTF-8 with a byte-order mark, so that Excel opens the Chinese text as such."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralised(name) for name in table.header])
    writer.writerows(["" if cell is None else neutralised(cell) for cell in row] for row in table.rows)
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(table: Sheet) -> bytes:
    """One sheet; every text cell is stored as text, exactly (openpyxl would otherwise take "=…" for a formula),
    with the quote prefix where it looks like a formula."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet("cases")

    def cells(values: Sequence[Cell]) -> list[Any]:
        row = []
        for value in values:
            cell = WriteOnlyCell(worksheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text, even when it looks like a formula or a number
                cell.quotePrefix = value.startswith(FORMULA_STARTS)  # and stays text when edited in Excel
            row.append(cell)
        return row

    worksheet.append(cells(table.header))
    for values in table.rows:
        worksheet.append(cells(values))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _spreadsheet(cases: Sequence[Case], usernames: dict[int, str], city: CityConfig, identity: bool,
                 fmt: Format) -> bytes:
    table = sheet(cases, usernames, city, identity=identity)
    return to_csv(table) if fmt == "csv" else to_xlsx(table)


@dataclass(frozen=True)
class Export:
    content: bytes
    filename: str
    media_type: str


def revealed_case_ids(cases: Sequence[Case]) -> list[int]:
    """The cases whose reporter's identity an export with identity columns holds: real-name reporters with a name
    or phone still stored."""
    return [case.id for case in cases if not case.anonymous and (case.reporter_name or case.reporter_phone)]


async def export_cases(principal: Principal, flt: queries.CaseFilter, *, fmt: Format, identity: bool,
                       ip: str | None, described: dict[str, str], reason: str | None = None) -> Export:
    """The cases of the filter in the user's queues as a spreadsheet; with `identity` (the roles that may reveal
    identities only: 403 otherwise; with a `reason` that says something, as a reveal on a ticket needs: 422
    otherwise) the reporters' names and phones too. Audited, with the filter; an export with identities also as a
    reveal of each case whose reporter's identity it holds (`case.reveal_identity`, with the reason and
    `"via": "export"`), so that the case's activity and the audit log's reveals show it."""
    if identity and not can_reveal_identity(principal.user, principal.context.city):
        raise OperationError(403, "identity_forbidden")
    reason = reason.strip() if reason else ""
    if identity and not staff_actions.identity_reason_says_enough(reason):
        raise OperationError(422, "export_identity_needs_reason", chars=staff_actions.IDENTITY_REASON_MIN_CHARS)
    if len(reason) > 500:
        raise OperationError(422, "reason_too_long")
    # up to MAX_EXPORT_ROWS cases read, decrypted and formatted: a heavy read, which takes its turn
    async with principal.context.database.heavy_read_slot():
        listed = await operations.list_cases(principal, flt, per_page=MAX_EXPORT_ROWS, only=READ + (
            (Case.reporter_name, Case.reporter_phone) if identity else ()))
        if listed.older is not None:  # the page reads one row more than it holds: more cases match
            raise OperationError(422, "export_too_many", limit=MAX_EXPORT_ROWS)
        cases = listed.cases
        async with principal.context.database.read_sessionmaker() as session:
            usernames = {user.id: user.username for user in await staff_actions.list_staff(session)}
        async with principal.write() as session:  # the export and its reveals: one transaction
            entry = await audit.record(session, principal.user, "case.export", ip=ip, detail={
                "format": fmt, "count": len(cases), "identity": identity, "filter": described,
                **({"reason": reason} if identity else {})})
            # each case's own record says which export took its report out of the console, as a view of its ticket
            # does (one INSERT for up to MAX_EXPORT_ROWS entries)
            await audit.record_many(session, principal.user, "case.in_export", [case.id for case in cases],
                                    detail={"export_id": entry.id, "format": fmt}, ip=ip)
            if identity:  # one INSERT for up to MAX_EXPORT_ROWS entries
                await audit.record_many(session, principal.user, "case.reveal_identity", revealed_case_ids(cases),
                                        detail={"reason": reason, "via": "export", "export_id": entry.id}, ip=ip)
        stamp = utcnow().astimezone(ZoneInfo(principal.context.city.timezone)).strftime("%Y%m%d-%H%M")
        # formatting ten thousand rows is a few hundred milliseconds of Python: off the event loop, so that the
        # residents' and other staff's requests are served meanwhile
        content = await asyncio.to_thread(_spreadsheet, cases, usernames, principal.context.city, identity, fmt)
    return Export(content, f"qinglian-cases-{stamp}.{fmt}", MEDIA_TYPES[fmt])
