"""Statistics for people: display names of what is counted, the charts (standalone SVG), the CSV export and
the wording of each queue's daily digest. The counting itself is `storage.statistics`, the digest's facts
`storage.digests`; everything here is pure (no database, no I/O).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from html import escape
from zoneinfo import ZoneInfo

from console import texts
from handlers.city import CityConfig
from handlers.texts import Texts
from nlp.labels import LABELS
from storage.digests import DigestFacts
from storage.statistics import DIMENSIONS, NO_DISTRICT, NO_LABEL, Statistics

DIGEST_MAX_LISTED = 20
CJK_FONTS = ("'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei',"
             "'Noto Sans',Arial,sans-serif")


def local_period(city: CityConfig, first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local days `first_day` to `last_day` (inclusive) in the city's time zone."""
    if last_day < first_day:
        raise ValueError("the period ends before it starts")
    tz = ZoneInfo(city.timezone)
    start = datetime.combine(first_day, time(0), tz)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- names ------------------------------------------------------------------------------------


def display_name(city: CityConfig, dimension: str, key: str, locale: str = "zh") -> str:
    """The name staff read for a label, district, queue or status code (the code itself if unknown)."""
    english = locale == "en"
    locale = "en" if english else "zh"
    if dimension == "label":
        if key == NO_LABEL:
            return texts.get(locale, "stats.unlabelled")
        names = LABELS.get(key)
        return (names[1] if english else names[0]) if names else key
    if dimension == "district":
        if key == NO_DISTRICT:
            return texts.get(locale, "stats.no_district")
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


def _xml_safe(value: object) -> str:
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
        f"<title>{_xml_safe(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{margin}" y="24" font-size="15" font-weight="bold" fill="#1f2933">'
        f"{_xml_safe(_fit(title, width - 2 * margin, 15))}</text>",
    ]
    if not items:
        empty = _xml_safe(texts.joined("chart.no_data"))
        parts.append(f'<text x="{margin}" y="{top + 17}" fill="#616e7c">{empty}</text>')
    for index, (label, value) in enumerate(items):
        y = top + index * row_height
        middle = y + bar_height / 2
        bar = bar_space * max(value, 0) / largest if largest > 0 else 0
        parts.append(
            f"<g><title>{_xml_safe(label)}: {_xml_safe(value)}</title>"
            f'<text x="{bar_left - 6:.1f}" y="{middle:.1f}" text-anchor="end" dominant-baseline="central" '
            f'fill="#1f2933">{_xml_safe(_fit(label, label_width, font_size))}</text>'
            f'<rect x="{bar_left:.1f}" y="{y}" width="{bar:.1f}" height="{bar_height}" rx="2" fill="#2f6fb0"/>'
            f'<text x="{bar_left + bar + 5:.1f}" y="{middle:.1f}" dominant-baseline="central" '
            f'fill="#1f2933">{_xml_safe(value)}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def trend_svg(points: list[tuple[date, int]], *, title: str, width: int = 240, height: int = 64) -> str:
    """A small weekly trend as standalone SVG: one point per week (Monday), joined by a line, the first and last
    week and the largest count labelled; the title and every week's count are tooltips."""
    font_size, left, right, top, bottom = 10, 4, 4, 12, 14
    largest = max((count for _, count in points), default=0)
    inner_width, inner_height = width - left - right, height - top - bottom
    step = inner_width / max(len(points) - 1, 1)

    def xy(index: int, count: int) -> tuple[float, float]:
        y = top + inner_height - (inner_height * count / largest if largest else 0)
        return left + index * step, y

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" font-family="{CJK_FONTS}" font-size="{font_size}">',
        f"<title>{_xml_safe(title)}</title>",
        f'<line x1="{left}" y1="{top + inner_height}" x2="{width - right}" y2="{top + inner_height}" '
        'stroke="#cbd2d9"/>',
    ]
    if points:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, count) for i, (_, count) in enumerate(points)))
        parts.append(f'<polyline points="{line}" fill="none" stroke="#2f6fb0" stroke-width="1.5"/>')
        for index, (week, count) in enumerate(points):
            x, y = xy(index, count)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#2f6fb0">'
                         f"<title>{_xml_safe(week.isoformat())}: {count}</title></circle>")
        parts.append(f'<text x="{left}" y="{height - 2}" fill="#616e7c">{points[0][0].strftime("%m-%d")}</text>')
        parts.append(f'<text x="{width - right}" y="{height - 2}" text-anchor="end" fill="#616e7c">'
                     f'{points[-1][0].strftime("%m-%d")}</text>')
        parts.append(f'<text x="{left}" y="{top - 2}" fill="#616e7c">{largest}</text>')
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
    summary = {
        "total": str(stats.total),
        "median_hours_to_accept": _number(stats.median_hours_to_accept),
        "accepted_count": str(stats.accepted_count),
        "median_hours_to_close": _number(stats.median_hours_to_close),
        "closed_count": str(stats.closed_count),
        "overdue_accept": str(stats.overdue_accept_total),
        "overdue_resolve": str(stats.overdue_resolve_total),
        "average_rating": _number(stats.average_rating),
        "rating_count": str(stats.rating_count),
    }
    rows: list[tuple[str, str, str, str]] = [
        ("period", "start", texts.get("zh", "csv.start"), stats.start.isoformat()),
        ("period", "end", texts.get("zh", "csv.end"), stats.end.isoformat()),
        ("period", "queues", texts.get("zh", "csv.queues"),
         " ".join(sorted(stats.queues)) if stats.queues is not None else "all"),
    ]
    rows += [("summary", key, texts.get("zh", f"csv.{key}"), value) for key, value in summary.items()]
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


def digest_message(city: CityConfig, facts: DigestFacts) -> str:
    """The daily digest of one queue for its staff channel, in Chinese: new cases of the last 24 hours, open
    and overdue cases with the numbers of the overdue ones (at most 20, most overdue first). Case numbers
    and deadlines only — never anything about the reporter."""
    tz = ZoneInfo(city.timezone)
    queue = city.queue(facts.queue)

    def say(key: str, **values: object) -> str:
        return texts.get("zh", f"digest.{key}", **values)

    lines = [
        say("title", city=city.city_zh, queue=queue.zh if queue else facts.queue),
        say("as_of", time=f"{facts.now.astimezone(tz):%Y-%m-%d %H:%M}"),
        say("new", count=facts.new_cases),
        say("open", open=facts.open_cases, waiting=facts.waiting, handling=facts.open_cases - facts.waiting),
        say("overdue", count=len(facts.overdue)),
    ]
    for case in facts.overdue[:DIGEST_MAX_LISTED]:
        notes = [say(kind, date=f"{due.astimezone(tz):%Y-%m-%d}")
                 for kind, due in (("accept_overdue", case.accept_due_at), ("resolve_overdue", case.resolve_due_at))
                 if due is not None]
        lines.append(say("overdue_case", number=case.case_number, note=say("note_separator").join(notes)))
    if len(facts.overdue) > DIGEST_MAX_LISTED:
        lines.append(say("more", count=len(facts.overdue) - DIGEST_MAX_LISTED))
    lines.append(say("act") if facts.overdue or facts.open_by_status else say("quiet"))
    return "\n".join(lines)
