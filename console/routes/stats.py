"""Statistics of a period (supervisors and administrators): the page with its charts, and the CSV export."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup

from console import charts, exports, loop_stats, operations, stats, texts
from console.auth import Principal, visible_queues
from console.operations import OperationError, require_supervisor
from console.rendering import Names, render
from console.routes.common import PagePrincipal, page_router, parse_day
from storage import queries, statistics
from storage.loop_stats import LoopStatistics
from storage.models import utcnow

CHARTS = ("label", "queue", "district", "status")
PRESET_DAYS = (7, 30, 90, 365)
DEFAULT_DAYS = 30

router = page_router()


def _period(principal: Principal, start: str, end: str) -> tuple[date, date]:
    """The local days of `start` and `end` (default: the last 30 days up to today in the city)."""
    today = utcnow().astimezone(ZoneInfo(principal.context.city.timezone)).date()
    last = parse_day(end, "end") or today
    first = parse_day(start, "start") or (last - timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise OperationError(422, "period_reversed")
    return first, last


async def _statistics(principal: Principal, first: date, last: date) -> statistics.Statistics:
    """The statistics of the city's days `first` to `last` (inclusive) in the queues the user sees."""
    since, until = stats.local_period(principal.context.city, first, last)
    async with principal.context.database.heavy_read() as session:
        return await statistics.compute(session, start=since, end=until, queues=visible_queues(principal.user))


@router.get("/console/stats")
async def statistics_page(request: Request, principal: PagePrincipal, start: str = "", end: str = "") -> Response:
    require_supervisor(principal)
    city = principal.context.city
    first, last = _period(principal, start, end)

    async def loop_figures() -> tuple[LoopStatistics | None, tuple[str, str] | None]:
        try:  # the loop's figures have a weekly series, so a bounded period; the page's other figures do not
            return await loop_stats.figures(principal, first, last), None
        except OperationError as refused:
            return None, Names(city).refusal(refused)

    # the page's two parts read in sessions of their own, each in a heavy-read slot: at the same time when the
    # process has two free, one after the other when it runs one heavy read at a time (the default)
    result, (loop, loop_refused) = await asyncio.gather(_statistics(principal, first, last), loop_figures())
    bar_charts = [Markup(charts.bar_chart_svg(texts.joined(f"chart.by_{dimension}"),
                                             stats.bilingual_chart_items(result, city, dimension)))
                  for dimension in CHARTS]
    presets = [(days, urlencode({"start": (last - timedelta(days=days - 1)).isoformat(), "end": last.isoformat()}))
               for days in PRESET_DAYS]
    period = urlencode({"start": first.isoformat(), "end": last.isoformat()})
    overdue = [(queue, counts) for queue, counts in result.overdue.items() if counts.accept or counts.resolve]
    return render(request, principal, "stats.html", stats=result, charts=bar_charts, start=first.isoformat(),
                  end=last.isoformat(), presets=presets, csv_url=f"/console/stats.csv?{period}",
                  loop_figures=loop, loop_refused=loop_refused, loop_csv_url=f"/console/stats/loop.csv?{period}",
                  english=urlencode({"lang": "en"}),
                  loop_charts=[Markup(chart) for chart in loop_stats.weekly_charts(loop)] if loop else [],
                  overdue=overdue, still_overdue=await _still_overdue(principal, first, last, overdue))


async def _still_overdue(principal: Principal, first: date, last: date,
                         overdue: list[tuple[str, statistics.OverdueCounts]]) -> dict[str, tuple[str, str]]:
    """For each queue of the overdue table: how many of the period's cases are overdue now (open, past a deadline)
    and the list of exactly those. The table's counts include the cases dealt with late, which the list does not
    show: the link says its own number."""
    tz = ZoneInfo(principal.context.city.timezone)
    since, until = stats.local_period(principal.context.city, first, last)
    found = {}
    for queue, _counts in overdue:
        count = await operations.count_cases(principal, queries.CaseFilter(
            queues={queue}, overdue=True, created_from=since, created_to=until))
        query = urlencode({"overdue": "1", "from": since.astimezone(tz).date().isoformat(),
                           "to": last.isoformat()})
        found[queue] = (str(count), f"/console/queue/{queue}?{query}")
    return found


@router.get("/console/stats.csv")
async def statistics_csv(principal: PagePrincipal, start: str = "", end: str = "", lang: str = "zh") -> Response:
    """The statistics of the period as CSV, the names in Chinese or with `lang=en` in English."""
    require_supervisor(principal)
    locale = exports.check_language(lang)
    first, last = _period(principal, start, end)
    result = await _statistics(principal, first, last)
    return Response(stats.to_csv(result, principal.context.city, locale), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="qinglian-{first}-{last}.csv"'})


@router.get("/console/stats/loop.csv")
async def loop_csv(principal: PagePrincipal, start: str = "", end: str = "", lang: str = "zh") -> Response:
    """The closed loop's figures of the period (the statistics page's loop section) as CSV, the names in Chinese or
    with `lang=en` in English."""
    require_supervisor(principal)
    locale = exports.check_language(lang)
    first, last = _period(principal, start, end)
    result = await loop_stats.figures(principal, first, last)
    return Response(loop_stats.to_csv(result, principal.context.city, locale), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="qinglian-loop-{first}-{last}.csv"'})
