"""The database gauges `/metrics` exports (bot/metrics.py): cases by label and status, open cases per queue, the
outbox's backlog per channel and its age. Counted by one process at a time, every few seconds, on a read-only
session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import CLOSED_STATUSES, Case, OutboxMessage, utcnow


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
        key = (label or "unlabelled", status)
        snapshot.cases[key] = snapshot.cases.get(key, 0) + count
    for queue, count in await session.execute(
            select(Case.queue, func.count()).where(Case.status.not_in([str(s) for s in CLOSED_STATUSES]))
            .group_by(Case.queue)):
        snapshot.open_by_queue[queue] = count
    oldest: datetime | None = None
    for channel, status, count, first in await session.execute(
            select(OutboxMessage.channel, OutboxMessage.status, func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status.in_(("pending", "failed")))
            .group_by(OutboxMessage.channel, OutboxMessage.status)):
        (snapshot.outbox_pending if status == "pending" else snapshot.outbox_failed)[channel] = count
        if status == "pending" and first is not None:
            oldest = first if oldest is None else min(oldest, first)
    snapshot.outbox_lag_seconds = (utcnow() - oldest).total_seconds() if oldest else 0.0
    return snapshot
