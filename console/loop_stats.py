"""The closed loop's figures for people (issue 13.5, with the reply-quality averages of 15.3): the period's figures
for a member of staff (their own queues only), the API's shape of them, the weekly line charts (standalone SVG,
like the bar charts of `console.stats`) and the CSV export. The counting is `storage.loop_stats`."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from console import charts, stats, texts
from console.auth import Principal, visible_queues
from console.operations import OperationError
from handlers.city import CityConfig
from storage import loop_stats
from storage.loop_stats import ALL_QUEUES, LoopStatistics, QueueLoop, Share, Spread, Week


async def figures(principal: Principal, first: date, last: date) -> LoopStatistics:
    """The loop's figures of the city's days `first` to `last` (inclusive) in the queues the user sees."""
    city = principal.context.city
    if first > last:
        raise OperationError(422, "period_reversed")
    weeks = ((last - timedelta(days=last.weekday())) - (first - timedelta(days=first.weekday()))).days // 7 + 1
    if weeks > loop_stats.MAX_WEEKS:  # said in each language, with the earliest start that does
        earliest = last - timedelta(days=last.weekday()) - timedelta(weeks=loop_stats.MAX_WEEKS - 1)
        raise OperationError(422, "loop_period_too_long", weeks=loop_stats.MAX_WEEKS, earliest=earliest)
    since, until = stats.local_period(city, first, last)
    try:
        async with principal.context.database.heavy_read() as session:
            return await loop_stats.compute(session, start=since, end=until, queues=visible_queues(principal.user),
                                            timezone=city.timezone)
    except ValueError as refused:
        raise OperationError(422, "figures_refused", detail=refused) from None


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


class QualityOut(BaseModel):
    """The API's view of `storage.reply_scores.Quality` (the contract stays when storage changes)."""

    model_config = ConfigDict(from_attributes=True)

    answers: int = Field(description="Answers scored.")
    score: float = Field(description="The weighted mean of the four parts (nlp/reply_quality.py), 0–1.")
    relevance: float = Field(description="How much of the report's key phrases the answer takes up, 0–1.")
    completeness: float = Field(description="Says what was found, what was done, on which basis, whom to call; 0–1.")
    clarity: float = Field(description="Length, sentence length and courtesy phrases, 0–1.")
    timeliness: float | None = Field(description="Working days to the answer against the deadline, 0–1; null when "
                                                 "no answer's times were known.")


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
    reply_quality: QualityOut | None = Field(description=(
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
            reply_quality=None if loop.quality is None else QualityOut.model_validate(loop.quality))


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


def weekly_charts(result: LoopStatistics) -> list[str]:
    """Two line charts of the weeks: cases received and resolved; shares on time and satisfied."""
    # a week the period cuts says how many days it holds, so that its lower counts do not read as a fall
    labels = [f"{week.first_day:%m-%d}" + (f" ({week.days}/7)" if week.days < 7 else "") for week in result.weeks]
    say = texts.joined
    counts = charts.line_chart_svg(say("loop.chart_cases"), labels, [
        (say("loop.received"), [float(week.received) for week in result.weeks]),
        (say("loop.resolved"), [float(week.resolved) for week in result.weeks]),
    ], y_title=say("loop.axis_cases"), x_title=say("loop.axis_week"))
    shares = charts.line_chart_svg(say("loop.chart_shares"), labels, [
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


def to_csv(result: LoopStatistics, city: CityConfig, locale: str = "zh") -> str:
    """The loop's figures as tidy CSV (`section,key,name,metric,metric_name,value`), UTF-8 with a BOM for Excel;
    the names in Chinese, or in English with `locale` "en".

    Sections: `period` (the first and the last day in the city, the last included; its time zone; the queues),
    `queue` (one block per queue, by code), `total` (key `*`), `week` (key the ISO week, name its first day). Rates
    are fractions (0–1), times in hours, reply scores 0–1; an empty value where nothing was counted."""
    def metric_name(metric: str) -> str:
        return texts.get(locale, f"loop_csv.{metric}")

    rows: list[tuple[str, str, str, str, str, str]] = [
        ("period", key, name, "", "", value) for key, name, value in stats.period_rows(city, result.start, result.end,
                                                                                      locale)]
    rows += [
        ("period", "queues", texts.get(locale, "csv.queues"), "", "",
         " ".join(sorted(result.queues)) if result.queues is not None else "all"),
    ]
    for section, loops in (("queue", result.by_queue), ("total", [result.total])):
        for loop in loops:
            name = queue_name(city, loop.queue, locale)
            rows += [(section, loop.queue, name, metric, metric_name(metric), value)
                     for metric, value in _queue_metrics(loop)]
    for week in result.weeks:
        rows += [("week", week.label, week.first_day.isoformat(), metric, metric_name(f"week_{metric}"), value)
                 for metric, value in _week_metrics(week)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((section, stats.csv_cell(key), stats.csv_cell(name), metric, stats.csv_cell(label), value)
                     for section, key, name, metric, label, value in rows)
    return "\ufeff" + buffer.getvalue()
