"""Statistics for people: display names of what is counted, the charts (standalone SVG), the CSV export and
the wording of each queue's daily digest. The counting itself is `storage.statistics`, the digest's facts
`storage.digests`; everything here is pure (no database, no I/O).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from console import texts
from handlers.city import CityConfig
from nlp.labels import display_name as label_name
from storage.digests import DigestFacts
from storage.statistics import DIMENSIONS, NO_DISTRICT, NO_LABEL, Statistics

DIGEST_MAX_LISTED = 20


def local_period(city: CityConfig, first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local days `first_day` to `last_day` (inclusive) in the city's time zone."""
    if last_day < first_day:
        raise ValueError("the period ends before it starts")
    tz = ZoneInfo(city.timezone)
    start = datetime.combine(first_day, time(0), tz)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def period_rows(city: CityConfig, start: datetime, end: datetime, locale: str = "zh") -> list[tuple[str, str, str]]:
    """The period of a CSV file as the statistics page says it: (key, name, value) of its first and last day in the
    city (the last included) and the city's time zone. A period [start, end) of the city's days, as the console
    asks for, is exactly those days; any other covers the days it touches."""
    zone = ZoneInfo(city.timezone)
    first = start.astimezone(zone).date()
    last = (end.astimezone(zone) - timedelta(microseconds=1)).date()
    return [("start", texts.get(locale, "csv.start"), first.isoformat()),
            ("end", texts.get(locale, "csv.end"), max(first, last).isoformat()),
            ("timezone", texts.get(locale, "csv.timezone"), city.timezone)]


# --- names ------------------------------------------------------------------------------------


def display_name(city: CityConfig, dimension: str, key: str, locale: str = "zh") -> str:
    """The name staff read for a label, district, queue or status code (the code itself if unknown)."""
    locale = "en" if locale == "en" else "zh"
    if dimension == "label":
        if key == NO_LABEL:
            return texts.get(locale, "stats.unlabelled")
        return label_name(key, locale)
    if dimension == "district":
        if key == NO_DISTRICT:
            return texts.get(locale, "stats.no_district")
        return city.district_name(key, locale)
    if dimension == "queue":
        return city.queue_name(key, locale)
    if dimension == "status":  # as the case lists and the tickets name it
        return texts.get(locale, f"status.{key}") if texts.has(f"status.{key}") else key
    raise ValueError(f"unknown dimension {dimension!r}; one of {', '.join(DIMENSIONS)}")


def chart_items(stats: Statistics, city: CityConfig, dimension: str, locale: str = "zh") -> list[tuple[str, int]]:
    """(name, count) of one dimension, ready for `bar_chart_svg`."""
    return [(display_name(city, dimension, key, locale), count) for key, count in stats.counts(dimension).items()]


def bilingual_chart_items(stats: Statistics, city: CityConfig, dimension: str) -> list[tuple[str, int]]:
    """(name in Chinese and English, count) of one dimension: the statistics page's bars, read in either language
    (one name said the same in both is said once; a queue without the bodies in brackets, so that the bar's label
    has room for both)."""

    def name(key: str, locale: str) -> str:
        shown = display_name(city, dimension, key, locale)
        return shown.split("（")[0].split("(")[0].strip() if dimension == "queue" else shown

    return [(" ".join(dict.fromkeys(name(key, locale) for locale in ("zh", "en"))), count)
            for key, count in stats.counts(dimension).items()]


# --- CSV --------------------------------------------------------------------------------------

CSV_HEADER = ("dimension", "key", "name", "value")


def csv_cell(value: object) -> str:
    """A text cell that Excel will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float | None) -> str:
    """A number rounded to two decimals, without trailing zeros; empty for None."""
    if value is None:
        return ""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def to_csv(stats: Statistics, city: CityConfig, locale: str = "zh") -> str:
    """The statistics as tidy CSV (`dimension,key,name,value`), UTF-8 with a BOM so that Excel reads it; the names in
    Chinese, or in English with `locale` "en".

    Dimensions: `period` (the first and the last day in the city, the last included, as the page says them; its time
    zone; the queues), `summary` (total, medians in hours, rating), `label`, `district`, `queue`, `status` (counts),
    `overdue_accept` and `overdue_resolve` (counts per queue).
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
        ("period", key, name, value) for key, name, value in period_rows(city, stats.start, stats.end, locale)]
    rows += [
        ("period", "queues", texts.get(locale, "csv.queues"),
         " ".join(sorted(stats.queues)) if stats.queues is not None else "all"),
    ]
    rows += [("summary", key, texts.get(locale, f"csv.{key}"), value) for key, value in summary.items()]
    for dimension in DIMENSIONS:
        rows += [(dimension, key, display_name(city, dimension, key, locale), str(count))
                 for key, count in stats.counts(dimension).items()]
    for queue, counts in stats.overdue.items():
        rows.append(("overdue_accept", queue, display_name(city, "queue", queue, locale), str(counts.accept)))
    for queue, counts in stats.overdue.items():
        rows.append(("overdue_resolve", queue, display_name(city, "queue", queue, locale), str(counts.resolve)))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((dimension, csv_cell(key), csv_cell(name), value) for dimension, key, name, value in rows)
    return "\ufeff" + buffer.getvalue()


# --- daily digest -----------------------------------------------------------------------------


def digest_message(city: CityConfig, facts: DigestFacts) -> str:
    """The daily digest of one queue for its staff channel, in Chinese: new cases of the last 24 hours, open
    and overdue cases with the numbers of the overdue ones (at most 20, most overdue first), and — when the
    facts were read with the warning horizon — the cases due within `loop.warn_working_days` working days
    (at most 20, soonest first), so staff hear of a deadline before it breaks. Case numbers and deadlines
    only — never anything about the reporter."""
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
    if facts.soon_until is not None:
        lines.append(say("due_soon", days=city.loop.warn_working_days, count=len(facts.due_soon)))
        lines.extend(say("due_soon_case", number=case.case_number,
                         note=say(f"{case.kind}_due", date=f"{case.due.astimezone(tz):%Y-%m-%d}"))
                     for case in facts.due_soon[:DIGEST_MAX_LISTED])
        if len(facts.due_soon) > DIGEST_MAX_LISTED:
            lines.append(say("more_due_soon", count=len(facts.due_soon) - DIGEST_MAX_LISTED))
    lines.append(say("act") if facts.overdue or facts.due_soon or facts.open_by_status else say("quiet"))
    return "\n".join(lines)
