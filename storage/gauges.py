"""The database gauges `/metrics` exports (bot/metrics.py): cases by label and status, open cases per queue, the
outbox's backlog per channel and its age. Counted by one process at a time, every few seconds, on a read-only
session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, OutboxMessage, OutboxStatus, utcnow
from storage.queries import OPEN_STATUSES, status_in
from storage.statistics import NO_LABEL


@dataclass
class Snapshot:
    cases: dict[tuple[str, str], int] = field(default_factory=dict)  # (label, status) → count
    open_by_queue: dict[str, int] = field(default_factory=dict)
    outbox_pending: dict[str, int] = field(default_factory=dict)
    outbox_failed: dict[str, int] = field(default_factory=dict)
    outbox_lag_seconds: float = 0.0


async def read_snapshot(session: AsyncSession) -> Snapshot:
    snapshot = Snapshot()
    for label, status, count in await session.execute(
            select(Case.label, Case.status, func.count()).group_by(Case.label, Case.status)):
        key = (label or NO_LABEL, status)
        snapshot.cases[key] = snapshot.cases.get(key, 0) + count
    for queue, count in await session.execute(
            select(Case.queue, func.count()).where(status_in(OPEN_STATUSES))
            .group_by(Case.queue)):
        snapshot.open_by_queue[queue] = count
    oldest: datetime | None = None
    for channel, status, count, first in await session.execute(
            select(OutboxMessage.channel, OutboxMessage.status, func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.FAILED)))
            .group_by(OutboxMessage.channel, OutboxMessage.status)):
        (snapshot.outbox_pending if status == OutboxStatus.PENDING else snapshot.outbox_failed)[channel] = count
        if status == OutboxStatus.PENDING and first is not None:
            oldest = first if oldest is None else min(oldest, first)
    snapshot.outbox_lag_seconds = (utcnow() - oldest).total_seconds() if oldest else 0.0
    return snapshot
