"""Statistics of the back office: counts over a period, times to accept and close, overdue cases.

Everything here only reads (SELECTs of plain columns) and works the same on SQLite and PostgreSQL: counts
and medians are computed in Python, not with dialect-specific SQL. The caller (the edge) owns the session,
a read-only one where it has the choice.
"""

from __future__ import annotations

import statistics as pystats
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, CaseStatus, utcnow
from storage.queries import NOT_ACCEPTED

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


def aware(value: datetime, name: str) -> datetime:
    """`value` in UTC; a naive datetime is refused."""
    if value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _hours(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 3600


def _by_count(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


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
            late = status in NOT_ACCEPTED if first_response is None else first_response > accept_due
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
