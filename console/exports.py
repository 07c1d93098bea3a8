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

COLUMNS = ("case_number", "received", "queue", "district", "label", "label_review", "confidence", "status",
           "assignee", "accepted", "accept_by", "resolve_by", "closed", "overdue", "rating", "real_name", "channel",
           "place", "summary")
"""The columns by their texts `export_column.<name>`."""
IDENTITY_COLUMNS = ("reporter_name", "reporter_phone")
TIME_COLUMNS = frozenset({"received", "accepted", "accept_by", "resolve_by", "closed"})
PERCENT_COLUMNS = frozenset({"confidence"})
"""Columns of fractions (0–1) that the console shows as percentages: their names say "(%)"; in XLSX the fraction
in a percent format (the cell shows 88%, and counts as the number), in CSV, which has no formats, the percentage."""
XLSX_PERCENT = "0%"  # whole percents, as the pages show them; the cell keeps the exact fraction
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
    percent_columns: frozenset[int] = frozenset()  # the positions of the columns of `PERCENT_COLUMNS`


def header(city: CityConfig, identity: bool, locale: str = "zh") -> list[str]:
    names = []
    for column in COLUMNS + (IDENTITY_COLUMNS if identity else ()):
        zh, en = texts.pair(f"export_column.{column}")
        names.append((en if locale == "en" else f"{zh} {en}")
                     + (f" ({city.timezone})" if column in TIME_COLUMNS else "")
                     + (" (%)" if column in PERCENT_COLUMNS else ""))
    return names


def sheet(cases: Sequence[Case], assignees: dict[int, str], city: CityConfig, *, identity: bool,
          now: datetime | None = None, locale: str = "zh") -> Sheet:
    zone = ZoneInfo(city.timezone)
    now = now or utcnow()
    language = 1 if locale == "en" else 0

    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else None

    def yes(value: bool) -> str:
        return texts.get(locale, "export_value.yes" if value else "export_value.no")

    rows: list[list[Cell]] = []
    for case in cases:
        review = f"export_value.label_{case.label_status}"
        row: list[Cell] = [
            case.case_number, local(case.created_at), city.queue_name(case.queue, locale),
            city.district_name(case.district, locale) if case.district else "",
            LABEL_NAMES.get(case.label, (case.label, case.label))[language] if case.label else "",
            texts.get(locale, review) if texts.has(review) else "",
            round(case.label_confidence, 4) if case.label_confidence is not None else None,
            texts.pair_or(f"status.{case.status}", case.status)[language],
            assignees.get(case.assigned_to_id, "") if case.assigned_to_id else "",
            local(case.accepted_at), local(case.accept_due_at), local(case.resolve_due_at), local(case.closed_at),
            yes(is_overdue(case, now)), case.rating, yes(not case.anonymous), case.channel,
            case.place, " ".join(case.description.split())[:200],
        ]
        if identity:
            row += [case.reporter_name if not case.anonymous else None,
                    case.reporter_phone if not case.anonymous else None]
        rows.append(row)
    return Sheet(header(city, identity, locale), rows,
                 frozenset(index for index, column in enumerate(COLUMNS) if column in PERCENT_COLUMNS))


def _percentage(value: Cell) -> Cell:
    """A fraction as a percentage for CSV, to two decimals (0.8765 → "87.65", 1.0 → "100")."""
    return f"{round(value * 100, 2):g}" if isinstance(value, float | int) else value


def to_csv(table: Sheet) -> bytes:
    """UTF-8 with a byte-order mark, so that Excel opens the Chinese text as such."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralised(name) for name in table.header])
    writer.writerows(["" if cell is None else neutralised(_percentage(cell) if index in table.percent_columns else cell)
                      for index, cell in enumerate(row)] for row in table.rows)
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(table: Sheet) -> bytes:
    """One sheet; every text cell is stored as text, exactly (openpyxl would otherwise take "=…" for a formula),
    with the quote prefix where it looks like a formula."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet("cases")

    def cells(values: Sequence[Cell], percent_columns: frozenset[int] = frozenset()) -> list[Any]:
        row = []
        for index, value in enumerate(values):
            cell = WriteOnlyCell(worksheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text, even when it looks like a formula or a number
                cell.quotePrefix = value.startswith(FORMULA_STARTS)  # and stays text when edited in Excel
            elif index in percent_columns and value is not None:
                cell.number_format = XLSX_PERCENT
            row.append(cell)
        return row

    worksheet.append(cells(table.header))
    for values in table.rows:
        worksheet.append(cells(values, table.percent_columns))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _spreadsheet(cases: Sequence[Case], assignees: dict[int, str], city: CityConfig, identity: bool,
                 fmt: Format, locale: str) -> bytes:
    table = sheet(cases, assignees, city, identity=identity, locale=locale)
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


def check_language(locale: str) -> str:
    """The language an export was asked in, one of the console's (`texts.LOCALES`); 422 with the languages there are
    otherwise. An export is in Chinese (the columns named in Chinese and English, the values in Chinese) or English
    (both in English); the residents' own words (place, summary) stay as they were written."""
    if locale not in texts.LOCALES:
        raise OperationError(422, "export_language", known=", ".join(texts.LOCALES))
    return locale


async def export_cases(principal: Principal, flt: queries.CaseFilter, *, fmt: Format, identity: bool,
                       ip: str | None, described: dict[str, str], reason: str | None = None,
                       locale: str = "zh", refuse_empty: bool = False) -> Export:
    """The cases of the filter in the user's queues as a spreadsheet; with `identity` (the roles that may reveal
    identities only: 403 otherwise; with a `reason` that says something, as a reveal on a ticket needs: 422
    otherwise) the reporters' names and phones too. Audited, with the filter; an export with identities also as a
    reveal of each case whose reporter's identity it holds (`case.reveal_identity`, with the reason and
    `"via": "export"`), so that the case's activity and the audit log's reveals show it. `locale`: one of
    `texts.LOCALES` (422 otherwise). A filter that matches no case of the user's queues gives a file of nothing but
    its header — what a script's weekly export of a quiet week expects — or, with `refuse_empty` (the console's
    pages, where a person asked), nothing (404, `export_empty`, not audited), so that the page can say why."""
    check_language(locale)
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
        if not cases and refuse_empty:  # a file of nothing but its header would not say why: the page says so
            raise OperationError(404, "export_empty")
        async with principal.context.database.read_sessionmaker() as session:
            # the assignee by name, as the list names them (the audit log keeps the username)
            assignees = {user.id: user.display_name for user in await staff_actions.list_staff(session)}
        async with principal.write() as session:  # the export and its reveals: one transaction
            export_id = await audit.record(session, principal.user, "case.export", ip=ip, detail={
                "format": fmt, "count": len(cases), "identity": identity, "filter": described,
                **({"reason": reason} if identity else {})})
            # each case's own record says which export took its report out of the console, as a view of its ticket
            # does (one INSERT for up to MAX_EXPORT_ROWS entries)
            await audit.record_many(session, principal.user, "case.in_export", [case.id for case in cases],
                                    detail={"export_id": export_id, "format": fmt}, ip=ip)
            if identity:  # one INSERT for up to MAX_EXPORT_ROWS entries
                await audit.record_many(session, principal.user, "case.reveal_identity", revealed_case_ids(cases),
                                        detail={"reason": reason, "via": "export", "export_id": export_id}, ip=ip)
        stamp = utcnow().astimezone(ZoneInfo(principal.context.city.timezone)).strftime("%Y%m%d-%H%M")
        # formatting ten thousand rows is a few hundred milliseconds of Python: off the event loop, so that the
        # residents' and other staff's requests are served meanwhile
        content = await asyncio.to_thread(_spreadsheet, cases, assignees, principal.context.city, identity, fmt,
                                          locale)
    return Export(content, f"qinglian-cases-{stamp}.{fmt}", MEDIA_TYPES[fmt])
