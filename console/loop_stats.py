"""The closed loop's figures for people (issue 13.5, with the reply-quality averages of 15.3): the period's figures
for a member of staff (their own queues only), the API's shape of them, the weekly line charts (standalone SVG,
like the bar charts of `console.stats`) and the CSV export. The counting is `storage.loop_stats`."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import date, datetime

from pydantic import BaseModel, Field

from console import stats, texts
from console.auth import Principal, visible_queues
from console.operations import OperationError
from handlers.city import CityConfig
from storage import loop_stats
from storage.loop_stats import ALL_QUEUES, LoopStatistics, QueueLoop, Share, Spread, Week
from storage.reply_scores import Quality

SERIES_COLOURS = ("#2f6fb0", "#2e8540", "#c05621", "#6b46c1")


async def figures(principal: Principal, first: date, last: date) -> LoopStatistics:
    """The loop's figures of the city's days `first` to `last` (inclusive) in the queues the user sees."""
    city = principal.context.city
    if first > last:
        raise OperationError(422, "the period starts after it ends")
    since, until = stats.local_period(city, first, last)
    try:
        async with principal.context.database.read_sessionmaker() as session:
            return await loop_stats.compute(session, start=since, end=until, queues=visible_queues(principal.user),
                                            timezone=city.timezone)
    except ValueError as refused:
        raise OperationError(422, str(refused)) from None


def queue_name(city: CityConfig, queue: str, locale: str = "zh") -> str:
    if queue == ALL_QUEUES:
        return texts.get(locale, "loop.all_queues")
    return stats.display_name(city, "queue", queue, locale)


# --- the API's shape ----------------------------------------------------------------------------


class ShareOut(BaseModel):
    hits: int = Field(description="The cases that meet the mark.")
    of: int = Field(description="The cases counted.")
    rate: float | None = Field(description="hits / of; null when none were counted.")

    @classmethod
    def of_share(cls, share: Share) -> ShareOut:
        return cls(hits=share.hits, of=share.of, rate=share.rate)


class SpreadOut(BaseModel):
    count: int
    median_hours: float | None
    p90_hours: float | None

    @classmethod
    def of_spread(cls, spread: Spread) -> SpreadOut:
        return cls(count=spread.count, median_hours=spread.median, p90_hours=spread.p90)


class NoticesOut(BaseModel):
    delivered: int
    waiting: int = Field(description="Waiting for the resident's next message (the platform's window had closed).")
    failed: int = Field(description="Given up, with the platform's reason on the ticket.")
    pending: int = Field(description="Queued or being retried.")


class QueueLoopOut(BaseModel):
    queue: str = Field(description="The queue's code; `*` for the total over the queues listed.")
    name_zh: str
    name_en: str
    received: int
    accepted_on_time: ShareOut = Field(description=(
        "Accepted (or closed unaccepted) by the acceptance deadline, of those accepted in time or whose deadline "
        "has passed."))
    resolved_on_time: ShareOut = Field(description=(
        "Closed by the resolve-by date (as extended), of those closed in time or whose date has passed."))
    hours_to_accept: SpreadOut
    hours_to_resolve: SpreadOut
    extensions: int = Field(description="Extensions of the resolve-by date approved for these cases.")
    rehandled: ShareOut = Field(description="Reopened after a poor rating, of the cases closed at least once.")
    satisfied: ShareOut = Field(description="Rated 4 or 5, of the rated cases.")
    average_rating: float | None
    notices: NoticesOut = Field(description="The delivery state of the notices to these cases' reporters.")
    reply_quality: Quality | None = Field(description=(
        "Average quality scores (0–1) of the answers sent in the period from this queue; null without any."))

    @classmethod
    def of_loop(cls, city: CityConfig, loop: QueueLoop) -> QueueLoopOut:
        return cls(
            queue=loop.queue, name_zh=queue_name(city, loop.queue, "zh"), name_en=queue_name(city, loop.queue, "en"),
            received=loop.received, accepted_on_time=ShareOut.of_share(loop.accepted_on_time),
            resolved_on_time=ShareOut.of_share(loop.resolved_on_time),
            hours_to_accept=SpreadOut.of_spread(loop.to_accept), hours_to_resolve=SpreadOut.of_spread(loop.to_resolve),
            extensions=loop.extensions, rehandled=ShareOut.of_share(loop.rehandled),
            satisfied=ShareOut.of_share(loop.satisfied), average_rating=loop.average_rating,
            notices=NoticesOut(delivered=loop.notices.delivered, waiting=loop.notices.waiting,
                               failed=loop.notices.failed, pending=loop.notices.pending),
            reply_quality=loop.quality)


class WeekOut(BaseModel):
    week: str = Field(description="The ISO week in the city's time zone, e.g. 2026-W10.")
    first_day: date = Field(description="Its Monday, or the period's first day for a week cut at the start.")
    start: datetime
    end: datetime
    received: int
    resolved: int
    resolved_on_time: ShareOut = Field(description="Of the cases closed this week with a resolve-by date.")
    satisfied: ShareOut = Field(description="Rated 4 or 5, of the cases closed this week and rated.")


class LoopStatsOut(BaseModel):
    """Per queue: the cases received in the period (and the answers sent in it, for reply quality)."""

    start_day: date
    end_day: date
    start: datetime
    end: datetime
    timezone: str
    queues: list[str] | None = Field(description="The queues counted; null for every queue.")
    by_queue: list[QueueLoopOut]
    total: QueueLoopOut
    weeks: list[WeekOut]

    @classmethod
    def build(cls, city: CityConfig, first: date, last: date, result: LoopStatistics) -> LoopStatsOut:
        return cls(
            start_day=first, end_day=last, start=result.start, end=result.end, timezone=city.timezone,
            queues=sorted(result.queues) if result.queues is not None else None,
            by_queue=[QueueLoopOut.of_loop(city, loop) for loop in result.by_queue],
            total=QueueLoopOut.of_loop(city, result.total),
            weeks=[WeekOut(week=week.label, first_day=week.first_day, start=week.start, end=week.end,
                           received=week.received, resolved=week.resolved,
                           resolved_on_time=ShareOut.of_share(week.resolved_on_time),
                           satisfied=ShareOut.of_share(week.satisfied)) for week in result.weeks])


# --- the weekly line charts ---------------------------------------------------------------------------

Series = tuple[str, Sequence[float | None]]


def _tick_values(largest: float, as_share: bool) -> list[float]:
    if as_share:
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    step = 1
    while largest / step > 5:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    top = max(step, -(-int(largest) // step) * step)
    return [float(value) for value in range(0, top + 1, step)]


def line_chart_svg(title: str, x_labels: Sequence[str], series: Sequence[Series], *, y_title: str,
                   x_title: str, as_share: bool = False, width: int = 640, height: int = 300) -> str:
    """A line chart as standalone SVG markup (no script, no external references): one line per series over the
    x labels, a point at each value with its value in a tooltip, a gap where a value is missing (None), axes with
    their ticks and titles, and a legend. `as_share` draws values of 0–1 as percentages. Every text is escaped."""
    font_size, margin, top, bottom = 12, 12, 58, 58
    fit, safe = stats._fit, stats._xml_safe
    values = [value for _, points in series for value in points if value is not None]
    ticks = _tick_values(max(values, default=0.0), as_share)
    y_top = ticks[-1] or 1.0

    def shown(value: float) -> str:
        return f"{value * 100:.0f}%" if as_share else f"{value:g}"

    left = margin + 18 + max(stats._text_width(shown(tick), font_size) for tick in ticks) + 6
    right = width - margin
    plot_bottom = height - bottom
    step = (right - left) / max(len(x_labels), 1)

    def x_of(index: int) -> float:
        return left + step * (index + 0.5)

    def y_of(value: float) -> float:
        return plot_bottom - (plot_bottom - top) * value / y_top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" font-family="{stats.CJK_FONTS}" font-size="{font_size}">',
        f"<title>{safe(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{margin}" y="22" font-size="15" font-weight="bold" fill="#1f2933">'
        f"{safe(fit(title, width - 2 * margin, 15))}</text>",
    ]
    legend_x = float(margin)
    for number, (name, _) in enumerate(series):
        colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
        parts.append(f'<g><rect x="{legend_x:.1f}" y="33" width="14" height="4" fill="{colour}"/>'
                     f'<text x="{legend_x + 18:.1f}" y="39" fill="#1f2933">{safe(name)}</text></g>')
        legend_x += 18 + stats._text_width(name, font_size) + 16
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
                     f'<text x="{left - 6:.1f}" y="{y:.1f}" text-anchor="end" dominant-baseline="central" '
                     f'fill="#616e7c">{safe(shown(tick))}</text>')
    parts.append(f'<line x1="{left:.1f}" y1="{plot_bottom}" x2="{right:.1f}" y2="{plot_bottom}" stroke="#616e7c"/>')
    every = max(1, -(-len(x_labels) * 46 // int(right - left)))  # one label per 46 pixels at most
    for index, label in enumerate(x_labels):
        if index % every == 0:
            parts.append(f'<text x="{x_of(index):.1f}" y="{plot_bottom + 16}" text-anchor="middle" '
                         f'fill="#616e7c">{safe(label)}</text>')
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{height - 10}" text-anchor="middle" '
                 f'fill="#1f2933">{safe(x_title)}</text>')
    middle = (top + plot_bottom) / 2
    parts.append(f'<text x="{margin + 4}" y="{middle:.1f}" text-anchor="middle" fill="#1f2933" '
                 f'transform="rotate(-90 {margin + 4} {middle:.1f})">{safe(y_title)}</text>')
    if not values:
        parts.append(f'<text x="{(left + right) / 2:.1f}" y="{middle:.1f}" text-anchor="middle" fill="#616e7c">'
                     f'{safe(texts.joined("chart.no_data"))}</text>')
    for number, (name, points) in enumerate(series):
        colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
        runs: list[list[tuple[float, float]]] = [[]]
        marks = []
        for index, value in enumerate(points):
            if value is None:
                runs.append([])
                continue
            x, y = x_of(index), y_of(value)
            runs[-1].append((x, y))
            marks.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{safe(name)} '
                         f'{safe(x_labels[index])}: {safe(shown(value))}</title></circle>')
        lines = [f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in run)}" fill="none" '
                 f'stroke="{colour}" stroke-width="2"/>' for run in runs if len(run) > 1]
        parts.append(f'<g class="series">{"".join(lines)}{"".join(marks)}</g>')
    parts.append("</svg>")
    return "\n".join(parts)


def weekly_charts(result: LoopStatistics) -> list[str]:
    """Two line charts of the weeks: cases received and resolved; shares on time and satisfied."""
    labels = [f"{week.first_day:%m-%d}" for week in result.weeks]
    say = texts.joined
    counts = line_chart_svg(say("loop.chart_cases"), labels, [
        (say("loop.received"), [float(week.received) for week in result.weeks]),
        (say("loop.resolved"), [float(week.resolved) for week in result.weeks]),
    ], y_title=say("loop.axis_cases"), x_title=say("loop.axis_week"))
    shares = line_chart_svg(say("loop.chart_shares"), labels, [
        (say("loop.on_time"), [week.resolved_on_time.rate for week in result.weeks]),
        (say("loop.satisfied"), [week.satisfied.rate for week in result.weeks]),
    ], y_title=say("loop.axis_share"), x_title=say("loop.axis_week"), as_share=True)
    return [counts, shares]


# --- CSV --------------------------------------------------------------------------------------

CSV_HEADER = ("section", "key", "name", "metric", "metric_name", "value")


def _decimal(places: int) -> Callable[[float | None], str]:
    def shown(value: float | None) -> str:
        return "" if value is None else f"{value:.{places}f}".rstrip("0").rstrip(".")
    return shown


_rate, _hours = _decimal(4), _decimal(2)


def _queue_metrics(loop: QueueLoop) -> list[tuple[str, str]]:
    quality = loop.quality
    metrics = [("received", str(loop.received))]
    for name, share in (("accepted_on_time", loop.accepted_on_time), ("resolved_on_time", loop.resolved_on_time)):
        metrics += [(name, str(share.hits)), (f"{name}_counted", str(share.of)), (f"{name}_rate", _rate(share.rate))]
    for name, spread in (("hours_to_accept", loop.to_accept), ("hours_to_resolve", loop.to_resolve)):
        metrics += [(f"{name}_count", str(spread.count)), (f"{name}_median", _hours(spread.median)),
                    (f"{name}_p90", _hours(spread.p90))]
    metrics += [("extensions", str(loop.extensions)), ("rehandled", str(loop.rehandled.hits)),
                ("rehandled_counted", str(loop.rehandled.of)), ("rehandled_rate", _rate(loop.rehandled.rate)),
                ("satisfied", str(loop.satisfied.hits)), ("rated", str(loop.satisfied.of)),
                ("satisfied_rate", _rate(loop.satisfied.rate)), ("average_rating", _hours(loop.average_rating)),
                ("notices_delivered", str(loop.notices.delivered)), ("notices_waiting", str(loop.notices.waiting)),
                ("notices_failed", str(loop.notices.failed)), ("notices_pending", str(loop.notices.pending)),
                ("reply_answers", str(quality.answers if quality else 0))]
    for part in ("score", "relevance", "completeness", "clarity", "timeliness"):
        metrics.append((f"reply_{part}", _rate(getattr(quality, part) if quality else None)))
    return metrics


def _week_metrics(week: Week) -> list[tuple[str, str]]:
    return [("received", str(week.received)), ("resolved", str(week.resolved)),
            ("resolved_on_time", str(week.resolved_on_time.hits)),
            ("resolved_on_time_counted", str(week.resolved_on_time.of)),
            ("resolved_on_time_rate", _rate(week.resolved_on_time.rate)), ("satisfied", str(week.satisfied.hits)),
            ("rated", str(week.satisfied.of)), ("satisfied_rate", _rate(week.satisfied.rate))]


def to_csv(result: LoopStatistics, city: CityConfig) -> str:
    """The loop's figures as tidy CSV (`section,key,name,metric,metric_name,value`), UTF-8 with a BOM for Excel.

    Sections: `period` (start and end, ISO 8601 UTC; the queues), `queue` (one block per queue, by code), `total`
    (key `*`), `week` (key the ISO week, name its first day). Rates are fractions (0–1), times in hours, reply
    scores 0–1; an empty value where nothing was counted."""
    def metric_name(metric: str) -> str:
        return texts.get("zh", f"loop_csv.{metric}")

    rows: list[tuple[str, str, str, str, str, str]] = [
        ("period", "start", texts.get("zh", "csv.start"), "", "", result.start.isoformat()),
        ("period", "end", texts.get("zh", "csv.end"), "", "", result.end.isoformat()),
        ("period", "queues", texts.get("zh", "csv.queues"), "", "",
         " ".join(sorted(result.queues)) if result.queues is not None else "all"),
    ]
    for section, loops in (("queue", result.by_queue), ("total", [result.total])):
        for loop in loops:
            name = queue_name(city, loop.queue)
            rows += [(section, loop.queue, name, metric, metric_name(metric), value)
                     for metric, value in _queue_metrics(loop)]
    for week in result.weeks:
        rows += [("week", week.label, week.first_day.isoformat(), metric, metric_name(f"week_{metric}"), value)
                 for metric, value in _week_metrics(week)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((section, stats._cell(key), stats._cell(name), metric, stats._cell(label), value)
                     for section, key, name, metric, label, value in rows)
    return "\ufeff" + buffer.getvalue()
