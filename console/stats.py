"""Statistics of the back office: counts over a period, times to accept and close, overdue cases, the
charts (standalone SVG), the CSV export and each queue's daily digest.

Everything here only reads (SELECTs of plain columns) and works the same on SQLite and PostgreSQL: counts
and medians are computed in Python, not with dialect-specific SQL. The caller (the edge) owns the session.
"""

from __future__ import annotations

import csv
import io
import statistics as pystats
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.city import CityConfig
from handlers.routing import staff_channels
from handlers.texts import Texts
from nlp.labels import LABELS
from storage import outbox, queries
from storage.models import Case, CaseStatus, utcnow

DIMENSIONS = ("label", "district", "queue", "status")
NO_DISTRICT = "unsure"  # the reporter did not know the district (same key as `CaseFilter.district`)
NO_LABEL = "unlabelled"  # not classified (no model answer and no staff label)
DIGEST_MAX_LISTED = 20
DIGEST_WINDOW = timedelta(hours=24)
STATUS_ORDER = tuple(status.value for status in CaseStatus)
CJK_FONTS = ("'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei',"
             "'Noto Sans',Arial,sans-serif")


@dataclass(frozen=True)
class OverdueCounts:
    accept: int = 0  # not accepted by `accept_due_at`
    resolve: int = 0  # not closed by `resolve_due_at`


@dataclass
class Statistics:
    """Reports created in [start, end) (in `queues`, or every queue when None).

    `by_*` map a code to a count (only codes that occur; labels, districts and queues by count, descending;
    statuses in lifecycle order). Cases without a district count under `NO_DISTRICT`, without a label under
    `NO_LABEL`. The medians are in hours, over the cases *accepted* / *closed* (closed, rejected or duplicate)
    in the period, whenever they were filed; None without such cases. `overdue` counts, per queue, the cases
    of the period that missed a deadline that had passed by the end of the period (or now, if earlier): not
    accepted (nor closed) by `accept_due_at`, not closed by `resolve_due_at` — late ones count too. The
    average rating is over the rated cases closed in the period.
    """

    start: datetime
    end: datetime
    queues: frozenset[str] | None
    total: int = 0
    by_label: dict[str, int] = field(default_factory=dict)
    by_district: dict[str, int] = field(default_factory=dict)
    by_queue: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    median_hours_to_accept: float | None = None
    accepted_count: int = 0
    median_hours_to_close: float | None = None
    closed_count: int = 0
    overdue: dict[str, OverdueCounts] = field(default_factory=dict)
    average_rating: float | None = None
    rating_count: int = 0

    @property
    def overdue_accept_total(self) -> int:
        return sum(counts.accept for counts in self.overdue.values())

    @property
    def overdue_resolve_total(self) -> int:
        return sum(counts.resolve for counts in self.overdue.values())

    def counts(self, dimension: str) -> dict[str, int]:
        if dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}; one of {', '.join(DIMENSIONS)}")
        by_dimension: dict[str, int] = getattr(self, f"by_{dimension}")
        return by_dimension


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _hours(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 3600


def _by_count(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def local_period(city: CityConfig, first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local days `first_day` to `last_day` (inclusive) in the city's time zone."""
    if last_day < first_day:
        raise ValueError("the period ends before it starts")
    tz = ZoneInfo(city.timezone)
    start = datetime.combine(first_day, time(0), tz)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


async def compute(session: AsyncSession, city: CityConfig, *, start: datetime, end: datetime,
                  queues: set[str] | frozenset[str] | None, now: datetime | None = None) -> Statistics:
    """The statistics of [start, end); `now` (default: the current time) only bounds the overdue check."""
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise ValueError("the period must end after it starts")
    cutoff = min(end, _aware(now, "now") if now is not None else utcnow())
    chosen = frozenset(queues) if queues is not None else None
    stats = Statistics(start=start, end=end, queues=chosen)

    scope = [Case.queue.in_(sorted(chosen))] if chosen is not None else []

    created = await session.execute(
        select(Case.label, Case.district, Case.queue, Case.status, Case.accept_due_at, Case.resolve_due_at,
               Case.accepted_at, Case.closed_at)
        .where(*scope, Case.created_at >= start, Case.created_at < end))
    labels: Counter[str] = Counter()
    districts: Counter[str] = Counter()
    queue_counts: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    overdue_accept: Counter[str] = Counter()
    overdue_resolve: Counter[str] = Counter()
    for label, district, queue, status, accept_due, resolve_due, accepted_at, closed_at in created.all():
        stats.total += 1
        labels[label or NO_LABEL] += 1
        districts[district or NO_DISTRICT] += 1
        queue_counts[queue] += 1
        statuses[status] += 1
        if accept_due is not None and accept_due < cutoff:
            # a case closed (rejected, merged) without being accepted first was dealt with when it closed;
            # one moved on past "accepted" without a timestamp counts as accepted in time
            first_response = accepted_at or closed_at
            late = status in queries.NOT_ACCEPTED if first_response is None else first_response > accept_due
            if late:
                overdue_accept[queue] += 1
        if resolve_due is not None and resolve_due < cutoff and (closed_at is None or closed_at > resolve_due):
            overdue_resolve[queue] += 1
    stats.by_label = _by_count(labels)
    stats.by_district = _by_count(districts)
    stats.by_queue = _by_count(queue_counts)
    stats.by_status = {status: statuses[status] for status in
                       [*STATUS_ORDER, *sorted(set(statuses) - set(STATUS_ORDER))] if statuses[status]}
    stats.overdue = {queue: OverdueCounts(overdue_accept[queue], overdue_resolve[queue]) for queue in stats.by_queue}

    accepted = await session.execute(
        select(Case.created_at, Case.accepted_at)
        .where(*scope, Case.accepted_at.is_not(None), Case.accepted_at >= start, Case.accepted_at < end))
    accept_hours = [_hours(accepted_at, created_at) for created_at, accepted_at in accepted.all()
                    if accepted_at is not None]
    stats.accepted_count = len(accept_hours)
    stats.median_hours_to_accept = pystats.median(accept_hours) if accept_hours else None

    closed = await session.execute(
        select(Case.created_at, Case.closed_at, Case.rating)
        .where(*scope, Case.closed_at.is_not(None), Case.closed_at >= start, Case.closed_at < end))
    close_hours: list[float] = []
    ratings: list[int] = []
    for created_at, closed_at, rating in closed.all():
        if closed_at is None:
            continue
        close_hours.append(_hours(closed_at, created_at))
        if rating is not None:
            ratings.append(rating)
    stats.closed_count = len(close_hours)
    stats.median_hours_to_close = pystats.median(close_hours) if close_hours else None
    stats.rating_count = len(ratings)
    stats.average_rating = sum(ratings) / len(ratings) if ratings else None
    return stats


# --- names ------------------------------------------------------------------------------------


def display_name(city: CityConfig, dimension: str, key: str, locale: str = "zh") -> str:
    """The name staff read for a label, district, queue or status code (the code itself if unknown)."""
    english = locale == "en"
    if dimension == "label":
        if key == NO_LABEL:
            return "Unclassified" if english else "未分类"
        names = LABELS.get(key)
        return (names[1] if english else names[0]) if names else key
    if dimension == "district":
        if key == NO_DISTRICT:
            return "Not sure" if english else "不确定"
        district = city.district(key)
        return (district.en if english else district.zh) if district else key
    if dimension == "queue":
        queue = city.queue(key)
        return (queue.en if english else queue.zh) if queue else key
    if dimension == "status":
        try:
            return Texts(city.texts).get("en" if english else "zh", f"status_{key}")
        except KeyError:
            return key
    raise ValueError(f"unknown dimension {dimension!r}; one of {', '.join(DIMENSIONS)}")


def chart_items(stats: Statistics, city: CityConfig, dimension: str, locale: str = "zh") -> list[tuple[str, int]]:
    """(name, count) of one dimension, ready for `bar_chart_svg`."""
    return [(display_name(city, dimension, key, locale), count) for key, count in stats.counts(dimension).items()]


# --- charts -----------------------------------------------------------------------------------


def _xml_text(value: object) -> str:
    """Text safe in XML content and attribute values: escaped, without characters XML 1.0 forbids."""
    text = "".join(char for char in str(value)
                   if char in "\t\n\r" or (" " <= char <= "\ud7ff") or ("\ue000" <= char <= "\ufffd")
                   or char >= "\U00010000")
    return escape(text, quote=True)


def _text_width(text: str, font_size: float) -> float:
    return sum(font_size if unicodedata.east_asian_width(char) in ("W", "F") else font_size * 0.6 for char in text)


def _fit(text: str, max_width: float, font_size: float) -> str:
    if _text_width(text, font_size) <= max_width:
        return text
    while text and _text_width(text + "…", font_size) > max_width:
        text = text[:-1]
    return text + "…"


def bar_chart_svg(title: str, items: list[tuple[str, int]], *, width: int = 560) -> str:
    """A horizontal bar chart as standalone SVG markup (no script, no external references).

    Every text comes from `title` and `items` and is XML-escaped; long labels are shortened with "…" and
    shown in full in each bar's tooltip. Fonts include the common CJK families.
    """
    font_size, row_height, bar_height, top, margin = 13, 26, 18, 44, 12
    value_width = max((_text_width(str(value), font_size) for _, value in items), default=0) + 10
    label_width = min(max((_text_width(label, font_size) for label, _ in items), default=0) + 8, width * 0.42)
    label_width = max(label_width, 40)
    bar_left = margin + label_width + 6
    bar_space = max(width - bar_left - value_width - margin, 20)
    largest = max((value for _, value in items), default=0)
    height = top + max(len(items), 1) * row_height + margin
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="{CJK_FONTS}" font-size="{font_size}">',
        f"<title>{_xml_text(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{margin}" y="24" font-size="15" font-weight="bold" fill="#1f2933">'
        f"{_xml_text(_fit(title, width - 2 * margin, 15))}</text>",
    ]
    if not items:
        parts.append(f'<text x="{margin}" y="{top + 17}" fill="#616e7c">无数据 (no data)</text>')
    for index, (label, value) in enumerate(items):
        y = top + index * row_height
        middle = y + bar_height / 2
        bar = bar_space * max(value, 0) / largest if largest > 0 else 0
        parts.append(
            f"<g><title>{_xml_text(label)}: {_xml_text(value)}</title>"
            f'<text x="{bar_left - 6:.1f}" y="{middle:.1f}" text-anchor="end" dominant-baseline="central" '
            f'fill="#1f2933">{_xml_text(_fit(label, label_width, font_size))}</text>'
            f'<rect x="{bar_left:.1f}" y="{y}" width="{bar:.1f}" height="{bar_height}" rx="2" fill="#2f6fb0"/>'
            f'<text x="{bar_left + bar + 5:.1f}" y="{middle:.1f}" dominant-baseline="central" '
            f'fill="#1f2933">{_xml_text(value)}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


# --- CSV --------------------------------------------------------------------------------------

CSV_HEADER = ("dimension", "key", "name", "value")


def _cell(value: object) -> str:
    """A text cell that Excel will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float | None) -> str:
    """A number rounded to two decimals, without trailing zeros; empty for None."""
    if value is None:
        return ""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def to_csv(stats: Statistics, city: CityConfig) -> str:
    """The statistics as tidy CSV (`dimension,key,name,value`), UTF-8 with a BOM so that Excel reads it.

    Dimensions: `period` (start and end, ISO 8601 UTC), `summary` (total, medians in hours, rating), `label`,
    `district`, `queue`, `status` (counts), `overdue_accept` and `overdue_resolve` (counts per queue).
    """
    rows: list[tuple[str, str, str, str]] = [
        ("period", "start", "开始", stats.start.isoformat()),
        ("period", "end", "结束", stats.end.isoformat()),
        ("period", "queues", "队列范围", " ".join(sorted(stats.queues)) if stats.queues is not None else "all"),
        ("summary", "total", "报告总数", str(stats.total)),
        ("summary", "median_hours_to_accept", "受理用时中位数（小时）", _number(stats.median_hours_to_accept)),
        ("summary", "accepted_count", "期间受理数", str(stats.accepted_count)),
        ("summary", "median_hours_to_close", "办结用时中位数（小时）", _number(stats.median_hours_to_close)),
        ("summary", "closed_count", "期间办结数", str(stats.closed_count)),
        ("summary", "overdue_accept", "受理超期数", str(stats.overdue_accept_total)),
        ("summary", "overdue_resolve", "办结超期数", str(stats.overdue_resolve_total)),
        ("summary", "average_rating", "平均评价", _number(stats.average_rating)),
        ("summary", "rating_count", "评价数", str(stats.rating_count)),
    ]
    for dimension in DIMENSIONS:
        rows += [(dimension, key, display_name(city, dimension, key), str(count))
                 for key, count in stats.counts(dimension).items()]
    for queue, counts in stats.overdue.items():
        rows.append(("overdue_accept", queue, display_name(city, "queue", queue), str(counts.accept)))
    for queue, counts in stats.overdue.items():
        rows.append(("overdue_resolve", queue, display_name(city, "queue", queue), str(counts.resolve)))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((dimension, _cell(key), _cell(name), value) for dimension, key, name, value in rows)
    return "\ufeff" + buffer.getvalue()


# --- daily digest -----------------------------------------------------------------------------


def _overdue_note(city: CityConfig, status: str, accept_due: datetime | None, resolve_due: datetime | None,
                  now: datetime) -> tuple[datetime, str]:
    tz = ZoneInfo(city.timezone)
    notes: list[str] = []
    passed: list[datetime] = []
    if status in queries.NOT_ACCEPTED and accept_due is not None and accept_due < now:
        notes.append(f"受理超期（期限 {accept_due.astimezone(tz):%Y-%m-%d}）")
        passed.append(accept_due)
    if status in queries.OPEN_STATUSES and resolve_due is not None and resolve_due < now:
        notes.append(f"办结超期（期限 {resolve_due.astimezone(tz):%Y-%m-%d}）")
        passed.append(resolve_due)
    return min(passed, default=now), "，".join(notes)


async def digest(session: AsyncSession, city: CityConfig, queue: str, now: datetime) -> str:
    """The daily digest of one queue for its staff channel, in Chinese: new cases of the last 24 hours, open
    and overdue cases with the numbers of the overdue ones (at most 20, most overdue first). Case numbers
    and deadlines only — never anything about the reporter."""
    now = _aware(now, "now")
    tz = ZoneInfo(city.timezone)
    new = int(await session.scalar(select(func.count()).select_from(Case).where(
        Case.queue == queue, Case.created_at >= now - DIGEST_WINDOW, Case.created_at < now)) or 0)
    open_rows = await session.execute(select(Case.status, func.count()).where(
        Case.queue == queue, Case.status.in_(queries.OPEN_STATUSES)).group_by(Case.status))
    by_status = {status: int(count) for status, count in open_rows.all()}
    waiting = sum(count for status, count in by_status.items() if status in queries.NOT_ACCEPTED)
    overdue_rows = await session.execute(
        select(Case.case_number, Case.status, Case.accept_due_at, Case.resolve_due_at)
        .where(Case.queue == queue, queries.overdue_condition(now)))
    overdue = []
    for number, status, accept_due, resolve_due in overdue_rows.all():
        since, note = _overdue_note(city, status, accept_due, resolve_due, now)
        overdue.append((since, number or "-", note))
    overdue.sort()
    queue_config = city.queue(queue)
    lines = [
        f"【{city.city_zh}·每日摘要】{queue_config.zh if queue_config else queue}",
        f"截至 {now.astimezone(tz):%Y-%m-%d %H:%M}",
        f"过去 24 小时新增：{new} 件",
        f"未办结：{sum(by_status.values())} 件（待受理 {waiting} 件，办理中 {sum(by_status.values()) - waiting} 件）",
        f"已超期：{len(overdue)} 件",
    ]
    lines += [f"· {number}　{note}" for _, number, note in overdue[:DIGEST_MAX_LISTED]]
    if len(overdue) > DIGEST_MAX_LISTED:
        lines.append(f"……另有 {len(overdue) - DIGEST_MAX_LISTED} 件超期案件未列出，请在后台查看。")
    lines.append("请登录后台处理。" if overdue or by_status else "今日无待办案件。")
    return "\n".join(lines)


async def send_digests(sessionmaker: async_sessionmaker[AsyncSession], city: CityConfig, now: datetime) -> int:
    """Write each queue's digest to the outbox for each of its staff channels, in one transaction; returns
    how many messages were enqueued. Queues without a staff channel are skipped."""
    enqueued = 0
    async with sessionmaker.begin() as session:
        for queue in city.queues:
            targets = staff_channels(city, queue.code)
            if not targets:
                continue
            text = await digest(session, city, queue.code, now)
            for channel, recipient in targets:
                await outbox.enqueue(session, channel=channel, recipient=recipient, payload={"text": text})
                enqueued += 1
    return enqueued
