"""Prometheus metrics at /metrics: process counters, and database gauges that one process exports.

A scrape only renders what is in memory. The database gauges (cases by label and status, open cases per queue,
the outbox's backlog) are read by a background refresh every `REFRESH_SECONDS` in the one process that holds
their lease (`storage.housekeeping.hold_lease`); the other processes export none, so a sum over the instances
counts each case once and N processes do not run N sets of queries per scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storage import gauges, housekeeping
from storage.db import Database
from storage.models import utcnow

log = logging.getLogger(__name__)

REFRESH_SECONDS = 15.0
LEASE = "metrics.database_gauges"

REGISTRY = CollectorRegistry()
UPDATES = Counter("qinglian_updates", "Inbound updates handled, by channel", ["channel"], registry=REGISTRY)
DUPLICATES = Counter("qinglian_duplicate_updates", "Redelivered updates ignored, by channel", ["channel"],
                     registry=REGISTRY)
STEP_SECONDS = Histogram("qinglian_dialog_step_seconds", "Time to handle one dialog step, by channel", ["channel"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=REGISTRY)
CLASSIFIER_SECONDS = Histogram("qinglian_classifier_seconds", "Time to classify one report",
                               buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1), registry=REGISTRY)


class DatabaseGauges(Collector):
    """The database gauges of this process: exported only while it holds the lease."""

    def __init__(self, database: Database, interval: float = REFRESH_SECONDS) -> None:
        self.database = database
        self.interval = interval
        self.held_at: datetime | None = None
        self.snapshot: gauges.Snapshot | None = None
        self.attempted_at: float | None = None  # time.monotonic() of the last refresh

    async def refresh(self) -> bool:
        """Read the gauges if this process holds (or may take) the lease; True when it exports them. The lease
        is a short write; the counting reads a snapshot on the read-only sessions (on SQLite: without holding
        the write lock the residents' steps need)."""
        database = self.database
        self.attempted_at = time.monotonic()
        async with database.sessionmaker.begin() as session:
            self.held_at = await housekeeping.hold_lease(
                session, LEASE, held_at=self.held_at, expired_before=utcnow() - timedelta(seconds=2 * self.interval))
        if self.held_at is None:
            self.snapshot = None
            return False
        # a count over every case: a heavy read, which takes its turn with the statistics and exports
        async with database.heavy_read() as session:
            self.snapshot = await gauges.read_snapshot(session)
        return True

    async def refresh_if_stale(self) -> None:
        """A refresh when the background one has not run for an interval (not started, or behind): a scrape
        costs at most one set of queries per interval, whatever the scrape rate."""
        if self.attempted_at is None or time.monotonic() - self.attempted_at >= self.interval:
            await self.refresh()

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        cases = GaugeMetricFamily("qinglian_cases", "Cases in the database, by label and status",
                                  labels=["label", "status"])
        for (label, status), count in sorted(snapshot.cases.items()):
            cases.add_metric([label, status], count)
        queues = GaugeMetricFamily("qinglian_queue_open_cases", "Open cases per queue", labels=["queue"])
        for queue, count in sorted(snapshot.open_by_queue.items()):
            queues.add_metric([queue], count)
        pending = GaugeMetricFamily("qinglian_outbox_pending", "Outbox messages waiting, by channel",
                                    labels=["channel"])
        for channel, count in sorted(snapshot.outbox_pending.items()):
            pending.add_metric([channel], count)
        failed = GaugeMetricFamily("qinglian_outbox_failed", "Outbox messages given up on, by channel",
                                   labels=["channel"])
        for channel, count in sorted(snapshot.outbox_failed.items()):
            failed.add_metric([channel], count)
        lag = GaugeMetricFamily("qinglian_outbox_lag_seconds", "Age of the oldest waiting outbox message",
                                value=snapshot.outbox_lag_seconds)
        yield from (cases, queues, pending, failed, lag)


def render(database_gauges: DatabaseGauges) -> tuple[bytes, str]:
    """The scrape: the process's counters and the app's last refresh of its database gauges, from memory."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(database_gauges)
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST
