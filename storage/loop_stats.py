"""The closed loop's figures of a period (issue 13.5), per queue and per week, counted in SQL.

Per queue, over the cases *received* in [start, end) (the cohort; the queue is the case's queue now):

- on-time acceptance: a case answered its acceptance deadline in time when it was accepted (or closed without
  being accepted) by `accept_due_at`; it was late when that deadline passed (by the end of the period, or now if
  earlier) without that. Cases whose deadline is still ahead and that are not accepted yet are not counted.
  The late ones are exactly `storage.statistics`' overdue count, so the two pages agree. A case handled,
  answered or closed without "accept" first was accepted then, no later (`storage.actions.TAKEN_ON`): its
  `accepted_at` says so, and the statistics' median time to accept counts the same moment.
- on-time resolution: the same with `closed_at` against `resolve_due_at` (the extended date, after an extension);
- median and 90th percentile of the hours from receipt to acceptance and to closing (PostgreSQL's
  `percentile_cont`; on SQLite, which lacks it, over the one duration per case the database computes for it,
  interpolated the same);
- extensions approved for these cases; the re-handling rate (cases reopened after a poor rating, of the cases
  closed at least once); satisfaction (ratings of 4 or 5, of the rated cases);
- the delivery state of the notices to their reporters (not the staff groups' notices): delivered, waiting for
  the resident's next message, given up, still queued. Delivered and given-up rows pruned from the outbox are
  counted by the tallies their cases keep (`storage.outbox.prune_delivered`).

Per queue, over the answers *sent* in the period: the average reply-quality score and its parts
(`storage.reply_scores.by_queue`; the queue the case was in when it was answered).

Per ISO week of the city's time zone (weeks cut to the period at its ends): cases received that week, and of the
cases closed that week how many, how many by their deadline and how many rated 4–5 of those rated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, and_, case, func, literal, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from storage import reply_scores
from storage.models import Case, OutboxMessage, OutboxStatus, utcnow
from storage.outbox import to_reporter
from storage.queries import NOT_ACCEPTED, late_to_accept, late_to_close, status_in
from storage.statistics import aware, seconds_between

MAX_WEEKS = 160
"""The longest period with a weekly series (about three years): one CASE branch per week."""
ALL_QUEUES = "*"


@dataclass(frozen=True)
class Share:
    """`hits` of `of`; `rate` is None without any."""

    hits: int = 0
    of: int = 0

    @property
    def rate(self) -> float | None:
        return self.hits / self.of if self.of else None


@dataclass(frozen=True)
class Spread:
    """Hours from receipt to an event: median and 90th percentile of `count` cases (None without any)."""

    count: int = 0
    median: float | None = None
    p90: float | None = None


@dataclass(frozen=True)
class Notices:
    delivered: int = 0
    waiting: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True)
class QueueLoop:
    queue: str  # ALL_QUEUES for the total over the queues shown
    received: int = 0
    accepted_on_time: Share = Share()
    resolved_on_time: Share = Share()
    to_accept: Spread = Spread()
    to_resolve: Spread = Spread()
    extensions: int = 0
    rehandled: Share = Share()
    satisfied: Share = Share()
    average_rating: float | None = None
    notices: Notices = Notices()
    quality: reply_scores.Quality | None = None


@dataclass(frozen=True)
class Week:
    """One ISO week (`iso_year`, `iso_week`) of the city, [start, end) in UTC, cut to the period."""

    iso_year: int
    iso_week: int
    first_day: date  # its local Monday (or the period's first day, for a week cut at the start)
    start: datetime
    end: datetime
    received: int = 0
    resolved: int = 0
    resolved_on_time: Share = Share()  # of the cases closed this week with a resolve-by date
    satisfied: Share = Share()  # of the cases closed this week and rated

    @property
    def label(self) -> str:
        return f"{self.iso_year}-W{self.iso_week:02d}"

    @property
    def days(self) -> int:
        """How many of its days the period holds: under 7 for a week cut at the period's start or end."""
        return round((self.end - self.start) / timedelta(days=1))


@dataclass
class LoopStatistics:
    start: datetime
    end: datetime
    queues: frozenset[str] | None
    by_queue: list[QueueLoop] = field(default_factory=list)  # by queue code
    total: QueueLoop = QueueLoop(ALL_QUEUES)
    weeks: list[Week] = field(default_factory=list)


def weeks_of(start: datetime, end: datetime, timezone: str) -> list[Week]:
    """The city's ISO weeks that [start, end) touches, each cut to the period; ValueError beyond MAX_WEEKS."""
    zone = ZoneInfo(timezone)
    first_local = start.astimezone(zone).date()
    monday = first_local - timedelta(days=first_local.weekday())
    weeks: list[Week] = []
    while True:
        begins = datetime.combine(monday, time(0), zone).astimezone(UTC)
        if begins >= end:
            break
        ends = datetime.combine(monday + timedelta(days=7), time(0), zone).astimezone(UTC)
        iso = monday.isocalendar()
        weeks.append(Week(iso.year, iso.week, max(monday, first_local), max(begins, start), min(ends, end)))
        if len(weeks) > MAX_WEEKS:
            raise ValueError(f"a weekly series covers at most {MAX_WEEKS} weeks; choose a shorter period")
        monday += timedelta(days=7)
    return weeks


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """As PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def _spreads(session: AsyncSession, scope: list[Any]) -> tuple[dict[str, Spread], dict[str, Spread]]:
    """Median and p90 hours from receipt to acceptance and to closing, per queue and over them all under
    ALL_QUEUES: one pass over the cases of `scope`."""
    accepted, closed = Case.accepted_at.is_not(None), Case.closed_at.is_not(None)
    chosen = [*scope, or_(accepted, closed)]
    if session.get_bind().dialect.name == "postgresql":
        # both percentiles of a duration from one sort of it: percentile_cont over an array of fractions
        both = postgresql.array([0.5, 0.9])
        to_accept = seconds_between(Case.accepted_at, Case.created_at) / 3600.0
        to_close = seconds_between(Case.closed_at, Case.created_at) / 3600.0
        figures = [func.count(Case.accepted_at), func.percentile_cont(both).within_group(to_accept).filter(accepted),
                   func.count(Case.closed_at), func.percentile_cont(both).within_group(to_close).filter(closed)]

        def spread(count: int, median_and_p90: Sequence[float] | None) -> Spread:
            if median_and_p90 is None:
                return Spread(int(count))
            median, p90 = median_and_p90
            return Spread(int(count), float(median), float(p90))

        accept_spreads, close_spreads = {}, {}
        # ROLLUP: a row per queue and the grand total (queue NULL) from the same pass
        for queue, *row in await session.execute(select(Case.queue, *figures).where(*chosen)
                                                 .group_by(func.rollup(Case.queue))):
            key = ALL_QUEUES if queue is None else queue
            accept_spreads[key], close_spreads[key] = spread(*row[:2]), spread(*row[2:])
        accept_spreads.setdefault(ALL_QUEUES, Spread())
        close_spreads.setdefault(ALL_QUEUES, Spread())
        return accept_spreads, close_spreads
    # SQLite has no percentile_cont: two numbers per case (its durations, computed by the database: no timestamps
    # to convert), sorted here
    hours: tuple[dict[str, list[float]], dict[str, list[float]]] = (defaultdict(list), defaultdict(list))
    for queue, *seconds in await session.execute(
            select(Case.queue, seconds_between(Case.accepted_at, Case.created_at),
                   seconds_between(Case.closed_at, Case.created_at)).where(*chosen)):
        for by_queue, value in zip(hours, seconds, strict=True):
            if value is not None:
                by_queue[queue].append(float(value) / 3600)
    result: tuple[dict[str, Spread], dict[str, Spread]] = ({}, {})
    for by_queue, spreads in zip(hours, result, strict=True):
        by_queue[ALL_QUEUES] = [value for values in list(by_queue.values()) for value in values]
        for queue, values in by_queue.items():
            values.sort()
            spreads[queue] = Spread(len(values), percentile(values, 0.5), percentile(values, 0.9))
    return result


def _week_index(column: Any, weeks: Sequence[Week]) -> Any:
    """The index of the week `column` falls in (the column lies within the period): a binary search over the
    weeks' starts in nested CASEs, so that each row is compared about log2(weeks) times, not once per week."""

    def within(low: int, high: int) -> Any:  # the index among weeks[low:high]
        if high - low == 1:
            return literal(low, Integer)
        middle = (low + high) // 2
        return case((column >= weeks[middle].start, within(middle, high)), else_=within(low, middle))

    return within(0, len(weeks))


async def compute(session: AsyncSession, *, start: datetime, end: datetime, queues: Iterable[str] | None,
                  timezone: str, now: datetime | None = None) -> LoopStatistics:
    """The loop's figures of [start, end) in `queues` (every queue when None); `now` (default: the current time)
    bounds which deadlines have passed. ValueError for naive times, an empty period or too many weeks."""
    start, end = aware(start, "start"), aware(end, "end")
    if end <= start:
        raise ValueError("the period must end after it starts")
    cutoff = min(end, aware(now, "now") if now is not None else utcnow())
    weeks = weeks_of(start, end, timezone)
    chosen = frozenset(queues) if queues is not None else None
    scope: list[Any] = [Case.queue.in_(sorted(chosen))] if chosen is not None else []
    received = [*scope, Case.created_at >= start, Case.created_at < end]

    first_response = func.coalesce(Case.accepted_at, Case.closed_at)
    accept_due = Case.accept_due_at.is_not(None)
    accepted_in_time = and_(accept_due, or_(first_response <= Case.accept_due_at,
                                            and_(first_response.is_(None), ~status_in(NOT_ACCEPTED))))
    accepted_late = late_to_accept(cutoff)
    resolve_due = Case.resolve_due_at.is_not(None)
    resolved_in_time = and_(resolve_due, Case.closed_at.is_not(None), Case.closed_at <= Case.resolve_due_at)
    resolved_late = late_to_close(cutoff)
    rehandled = Case.rehandle_count > 0
    figures = (func.count(), _count(accepted_in_time), _count(accepted_late), _count(resolved_in_time),
               _count(resolved_late), func.coalesce(func.sum(Case.extension_count), 0), _count(rehandled),
               _count(or_(Case.closed_at.is_not(None), rehandled)), _count(Case.rating >= 4),
               func.count(Case.rating), func.coalesce(func.sum(Case.rating), 0),
               func.coalesce(func.sum(Case.notices_delivered), 0), func.coalesce(func.sum(Case.notices_failed), 0))

    def queue_loop(queue: str, row: Sequence[Any]) -> QueueLoop:
        (count, accept_ok, accept_late, resolve_ok, resolve_late, extensions, reopened, closed, happy, rated,
         rating_sum, delivered, failed) = (int(value) for value in row)
        return QueueLoop(queue, count, Share(accept_ok, accept_ok + accept_late),
                         Share(resolve_ok, resolve_ok + resolve_late), extensions=extensions,
                         rehandled=Share(reopened, closed), satisfied=Share(happy, rated),
                         average_rating=rating_sum / rated if rated else None,
                         notices=Notices(delivered=delivered, failed=failed))  # pruned rows' tallies

    rows = [tuple(row) for row in
            await session.execute(select(Case.queue, *figures).where(*received).group_by(Case.queue))]
    loops = {row[0]: queue_loop(row[0], row[1:]) for row in rows}
    # every figure is a count or a sum: the total is the queues' added up
    total = queue_loop(ALL_QUEUES, [sum(int(row[column]) for row in rows) for column in range(1, len(figures) + 1)])

    to_accept, to_resolve = await _spreads(session, received)

    notice_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for queue, status, count in await session.execute(
            select(Case.queue, OutboxMessage.status, func.count())
            .join(Case, Case.id == OutboxMessage.case_id)
            .where(*received, to_reporter())
            .group_by(Case.queue, OutboxMessage.status)):
        notice_counts[queue][status] += int(count)
        notice_counts[ALL_QUEUES][status] += int(count)

    qualities = await reply_scores.by_queue(session, start, end, queues=chosen)

    def completed(loop: QueueLoop, quality: reply_scores.Quality | None) -> QueueLoop:
        counts = notice_counts.get(loop.queue, {})
        return replace(loop, to_accept=to_accept.get(loop.queue, Spread()),
                       to_resolve=to_resolve.get(loop.queue, Spread()), quality=quality,
                       notices=Notices(loop.notices.delivered + counts.get(OutboxStatus.SENT, 0),
                                       counts.get(OutboxStatus.WAITING, 0),
                                       loop.notices.failed + counts.get(OutboxStatus.FAILED, 0),
                                       counts.get(OutboxStatus.PENDING, 0)))

    result = LoopStatistics(start=start, end=end, queues=chosen)
    result.by_queue = [completed(loops.get(queue, QueueLoop(queue)), qualities.get(queue))
                       for queue in sorted(set(loops) | set(qualities))]
    result.total = completed(total, await reply_scores.overall(session, start, end, queues=chosen))
    result.weeks = await _weekly(session, scope, weeks, start, end)
    return result


async def _weekly(session: AsyncSession, scope: list[Any], weeks: list[Week], start: datetime,
                  end: datetime) -> list[Week]:
    # by week alone, in a subquery: grouped by queue as well, PostgreSQL expects as many groups as cases (it knows
    # nothing of the week expression's values but that they come from created_at) and sorts them all on disk
    received_in = select(_week_index(Case.created_at, weeks).label("week")).where(
        *scope, Case.created_at >= start, Case.created_at < end).subquery()
    received: dict[int, int] = {int(week): int(count) for week, count in await session.execute(
        select(received_in.c.week, func.count()).group_by(received_in.c.week))}
    due = Case.resolve_due_at.is_not(None)
    closed_in = select(
        _week_index(Case.closed_at, weeks).label("week"),
        case((due, 1), else_=0).label("due"),
        case((and_(due, Case.closed_at <= Case.resolve_due_at), 1), else_=0).label("in_time"),
        case((Case.rating.is_not(None), 1), else_=0).label("rated"),
        case((Case.rating >= 4, 1), else_=0).label("happy"),
    ).where(*scope, Case.closed_at.is_not(None), Case.closed_at >= start, Case.closed_at < end).subquery()
    closed = {int(week): (int(count), int(with_due), int(in_time), int(rated), int(happy)) for
              week, count, with_due, in_time, rated, happy in await session.execute(
                  select(closed_in.c.week, func.count(), func.sum(closed_in.c.due), func.sum(closed_in.c.in_time),
                         func.sum(closed_in.c.rated), func.sum(closed_in.c.happy)).group_by(closed_in.c.week))}
    series = []
    for index, week in enumerate(weeks):
        count, with_due, in_time, rated, happy = closed.get(index, (0, 0, 0, 0, 0))
        series.append(replace(week, received=received.get(index, 0), resolved=count,
                              resolved_on_time=Share(in_time, with_due), satisfied=Share(happy, rated)))
    return series
