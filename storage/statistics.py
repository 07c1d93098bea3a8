"""Statistics of the back office: counts over a period, times to accept and close, overdue cases.

Everything here only reads and works the same on SQLite and PostgreSQL: the counts are GROUP BY queries, the
durations one SQL expression compiled for each database (`seconds_between`), and a median is PostgreSQL's
`percentile_cont` in the same pass as its count (SQLite, which lacks it, reads only the middle rows of the ordered
durations), so no period's cases are loaded into Python. The caller (the edge) owns the
session, a read-only one where it has the choice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, func, select
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from storage.models import Case, CaseStatus, utcnow
from storage.queries import late_to_accept, late_to_close

DIMENSIONS = ("label", "district", "queue", "status")
NO_DISTRICT = "unsure"  # the reporter did not know the district (same key as `CaseFilter.district`)
NO_LABEL = "unlabelled"  # not classified (no model answer and no staff label)
STATUS_ORDER = tuple(status.value for status in CaseStatus)


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
    in the period, whenever they were filed; None without such cases. A case handled, answered or closed without
    "accept" first was accepted then (`actions.TAKEN_ON`), as the loop's on-time acceptance counts it.
    `overdue` counts, per queue, the cases of the period that missed a deadline that had passed by the end of the
    period (or now, if earlier): not accepted (nor closed) by `accept_due_at`, not closed by `resolve_due_at` —
    late ones count too. The average rating is over the rated cases closed in the period.
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


def aware(value: datetime, name: str) -> datetime:
    """`value` in UTC; a naive datetime is refused."""
    if value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


class seconds_between(FunctionElement[float]):
    """`later - earlier` in seconds, as SQL on either database (PostgreSQL: the interval's epoch as a double —
    `date_part`, not `EXTRACT`, which answers an exact numeric that takes twice as long to compute and to sort for
    the same microseconds; SQLite: Julian days, rounded to the millisecond, which is as exact as its floating point
    allows)."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between)
def _seconds_between_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"date_part('epoch', {compiler.process(later, **kw)} - {compiler.process(earlier, **kw)})"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (f"ROUND((julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}))"
            " * 86400.0, 3)")


def _by_count(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


async def _median_hours(session: AsyncSession, duration: ColumnElement[float], where: list[ColumnElement[bool]],
                        count: int) -> float | None:
    """The median of `duration` (seconds) over `count` rows, read from the database: the middle one or two."""
    if not count:
        return None
    middle = (await session.execute(select(duration).where(*where).order_by(duration)
                                    .offset((count - 1) // 2).limit(2 - count % 2))).scalars().all()
    return sum(float(seconds) for seconds in middle) / len(middle) / 3600


async def _count_and_median(session: AsyncSession, duration: ColumnElement[float], where: list[ColumnElement[bool]],
                            *sums: ColumnElement[Any]) -> tuple[int, float | None, list[Any]]:
    """How many rows, the median of `duration` over them in hours, and the aggregates `sums` — one pass with
    PostgreSQL's percentile_cont (the mean of the middle two for an even count, as `_median_hours`), a count and
    the middle rows on SQLite, which lacks it."""
    if session.get_bind().dialect.name == "postgresql":
        count, median, *rest = (await session.execute(
            select(func.count(), func.percentile_cont(0.5).within_group(duration), *sums).where(*where))).one()
        return int(count or 0), None if median is None else float(median) / 3600, rest
    count, *rest = (await session.execute(select(func.count(), *sums).where(*where))).one()
    return int(count or 0), await _median_hours(session, duration, where, int(count or 0)), rest


def _sum_of(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(sql_case((condition, 1), else_=0))


async def compute(session: AsyncSession, *, start: datetime, end: datetime,
                  queues: set[str] | frozenset[str] | None, now: datetime | None = None) -> Statistics:
    """The statistics of [start, end); `now` (default: the current time) only bounds the overdue check."""
    start, end = aware(start, "start"), aware(end, "end")
    if end <= start:
        raise ValueError("the period must end after it starts")
    cutoff = min(end, aware(now, "now") if now is not None else utcnow())
    chosen = frozenset(queues) if queues is not None else None
    stats = Statistics(start=start, end=end, queues=chosen)

    scope = [Case.queue.in_(sorted(chosen))] if chosen is not None else []

    # Everything is aggregated by the database (GROUP BY and sums; the medians read only the middle rows), so a
    # year at a city's scale costs the server a scan of the period's index range and the process a few rows.
    # Late means as `queries.late_to_accept` / `late_to_close` say.
    created = await session.execute(
        select(Case.label, Case.district, Case.queue, Case.status, func.count(), _sum_of(late_to_accept(cutoff)),
               _sum_of(late_to_close(cutoff)))
        .where(*scope, Case.created_at >= start, Case.created_at < end)
        .group_by(Case.label, Case.district, Case.queue, Case.status))
    labels: Counter[str] = Counter()
    districts: Counter[str] = Counter()
    queue_counts: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    overdue_accept: Counter[str] = Counter()
    overdue_resolve: Counter[str] = Counter()
    for label, district, queue, status, count, late_accept, late_close in created.all():
        stats.total += count
        labels[label or NO_LABEL] += count
        districts[district or NO_DISTRICT] += count
        queue_counts[queue] += count
        statuses[status] += count
        overdue_accept[queue] += int(late_accept or 0)
        overdue_resolve[queue] += int(late_close or 0)
    stats.by_label = _by_count(labels)
    stats.by_district = _by_count(districts)
    stats.by_queue = _by_count(queue_counts)
    stats.by_status = {status: statuses[status] for status in
                       [*STATUS_ORDER, *sorted(set(statuses) - set(STATUS_ORDER))] if statuses[status]}
    stats.overdue = {queue: OverdueCounts(overdue_accept[queue], overdue_resolve[queue]) for queue in stats.by_queue}

    accepted_in = [*scope, Case.accepted_at.is_not(None), Case.accepted_at >= start, Case.accepted_at < end]
    stats.accepted_count, stats.median_hours_to_accept, _ = await _count_and_median(
        session, seconds_between(Case.accepted_at, Case.created_at), accepted_in)

    closed_in = [*scope, Case.closed_at.is_not(None), Case.closed_at >= start, Case.closed_at < end]
    stats.closed_count, stats.median_hours_to_close, (rating_sum, rating_count) = await _count_and_median(
        session, seconds_between(Case.closed_at, Case.created_at), closed_in, func.sum(Case.rating),
        func.count(Case.rating))
    stats.rating_count = int(rating_count or 0)
    stats.average_rating = int(rating_sum or 0) / stats.rating_count if stats.rating_count else None
    return stats
