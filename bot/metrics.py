"""Prometheus metrics at /metrics: process counters, and database gauges read at scrape time."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import CLOSED_STATUSES, Case, OutboxMessage, utcnow

REGISTRY = CollectorRegistry()
UPDATES = Counter("qinglian_updates", "Inbound updates handled, by channel", ["channel"], registry=REGISTRY)
DUPLICATES = Counter("qinglian_duplicate_updates", "Redelivered updates ignored, by channel", ["channel"],
                     registry=REGISTRY)
STEP_SECONDS = Histogram("qinglian_dialog_step_seconds", "Time to handle one dialog step, by channel", ["channel"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=REGISTRY)
CLASSIFIER_SECONDS = Histogram("qinglian_classifier_seconds", "Time to classify one report",
                               buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1), registry=REGISTRY)
CASES = Gauge("qinglian_cases", "Cases in the database, by label and status", ["label", "status"], registry=REGISTRY)
QUEUE_OPEN = Gauge("qinglian_queue_open_cases", "Open cases per queue", ["queue"], registry=REGISTRY)
OUTBOX_PENDING = Gauge("qinglian_outbox_pending", "Outbox messages waiting, by channel", ["channel"],
                       registry=REGISTRY)
OUTBOX_FAILED = Gauge("qinglian_outbox_failed", "Outbox messages given up on, by channel", ["channel"],
                      registry=REGISTRY)
OUTBOX_LAG = Gauge("qinglian_outbox_lag_seconds", "Age of the oldest waiting outbox message", registry=REGISTRY)


async def render(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[bytes, str]:
    async with sessionmaker() as session:
        by_label = (await session.execute(
            select(Case.label, Case.status, func.count()).group_by(Case.label, Case.status))).all()
        open_by_queue = (await session.execute(
            select(Case.queue, func.count()).where(Case.status.not_in([str(s) for s in CLOSED_STATUSES]))
            .group_by(Case.queue))).all()
        outbox = (await session.execute(
            select(OutboxMessage.channel, OutboxMessage.status, func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status.in_(("pending", "failed")))
            .group_by(OutboxMessage.channel, OutboxMessage.status))).all()
    CASES.clear()
    for label, status, count in by_label:
        CASES.labels(label or "unlabelled", status).set(count)
    QUEUE_OPEN.clear()
    for queue, count in open_by_queue:
        QUEUE_OPEN.labels(queue).set(count)
    OUTBOX_PENDING.clear()
    OUTBOX_FAILED.clear()
    oldest = None
    for channel, status, count, first in outbox:
        (OUTBOX_PENDING if status == "pending" else OUTBOX_FAILED).labels(channel).set(count)
        if status == "pending" and first is not None:
            first = first if first.tzinfo else first.replace(tzinfo=utcnow().tzinfo)
            oldest = first if oldest is None else min(oldest, first)
    OUTBOX_LAG.set((utcnow() - oldest).total_seconds() if oldest else 0)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
