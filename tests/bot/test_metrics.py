"""What a Prometheus scrape reads from the database, against SQLite and the PostgreSQL on 127.0.0.1: cases by
label and status, open cases per queue, the outbox's backlog and its age, and no stale series."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from bot import metrics
from storage import actions, outbox
from storage.db import Database
from storage.models import CaseStatus, OutboxMessage, utcnow
from tests.factories import file_case

GAUGES = ("qinglian_cases", "qinglian_queue_open_cases", "qinglian_outbox_pending", "qinglian_outbox_failed",
          "qinglian_outbox_lag_seconds")


Scraped = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _parse(body: bytes) -> Scraped:
    return {family.name: {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}
            for family in text_string_to_metric_families(body.decode()) if family.name in GAUGES}


async def _scrape(database: Database, gauges: metrics.DatabaseGauges | None = None) -> Scraped:
    """A refresh of a process's database gauges (a new process unless `gauges` is given), then a scrape of them."""
    gauges = gauges or metrics.DatabaseGauges(database)
    await gauges.refresh()
    registry = CollectorRegistry()
    registry.register(gauges)
    return _parse(generate_latest(registry))


async def test_a_scrape_counts_cases_open_queues_and_the_outbox_backlog(database: Database) -> None:
    sessionmaker = database.sessionmaker
    async with sessionmaker.begin() as session:
        for reporter in ("1", "2"):
            await file_case(session, reporter_ref=reporter, queue="clean_hall", label="slow_service")
        await file_case(session, reporter_ref="3", queue="triage", label=None)
        closed, _ = await file_case(session, reporter_ref="4", queue="clean_hall", label="slow_service")
        await actions.change_status(session, closed, CaseStatus.CLOSED, actor="staff:1")  # a notice to telegram
        blocked = await outbox.enqueue(session, channel="wechat", recipient="o_user", payload={"text": "答复"})
        outbox.mark_failed(blocked, error="45015 response out of time limit")
        await session.execute(update(OutboxMessage).where(OutboxMessage.channel == "telegram")
                              .values(created_at=utcnow() - timedelta(hours=2)))

    scraped = await _scrape(database)

    assert scraped["qinglian_cases"] == {
        (("label", "slow_service"), ("status", "routed")): 2.0,
        (("label", "slow_service"), ("status", "closed")): 1.0,
        (("label", "unlabelled"), ("status", "routed")): 1.0,
    }
    assert scraped["qinglian_queue_open_cases"] == {(("queue", "clean_hall"),): 2.0, (("queue", "triage"),): 1.0}
    assert scraped["qinglian_outbox_pending"] == {(("channel", "telegram"),): 1.0}
    assert scraped["qinglian_outbox_failed"] == {(("channel", "wechat"),): 1.0}
    assert 2 * 3600 <= scraped["qinglian_outbox_lag_seconds"][()] < 3 * 3600


async def test_a_scrape_after_changes_shows_no_series_of_before(database: Database) -> None:
    sessionmaker = database.sessionmaker
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, queue="petitions", label="bribery_gifts")
    process = metrics.DatabaseGauges(database)
    first = await _scrape(database, process)
    async with sessionmaker.begin() as session:
        reloaded = await actions.get_case(session, case.id)
        assert reloaded is not None
        await actions.change_status(session, reloaded, CaseStatus.REJECTED, actor="staff:1")
        await session.execute(update(OutboxMessage).values(status="sent"))

    second = await _scrape(database, process)

    assert first["qinglian_queue_open_cases"] == {(("queue", "petitions"),): 1.0}
    assert second["qinglian_cases"] == {(("label", "bribery_gifts"), ("status", "rejected")): 1.0}
    assert second["qinglian_queue_open_cases"] == {}
    assert (second["qinglian_outbox_pending"], second["qinglian_outbox_lag_seconds"]) == ({}, {(): 0.0})


async def test_one_process_exports_the_database_gauges_and_a_scrape_reads_them_from_memory(
        database: Database) -> None:
    sessionmaker = database.sessionmaker
    async with sessionmaker.begin() as session:
        await file_case(session, queue="petitions", label="bribery_gifts")
    first, second = metrics.DatabaseGauges(database), metrics.DatabaseGauges(database)  # two serving processes

    assert await first.refresh() and not await second.refresh()
    assert await first.refresh()  # the holder keeps the lease, the other still exports nothing
    assert not await second.refresh()
    async with sessionmaker.begin() as session:
        await file_case(session, reporter_ref="2", queue="petitions", label="bribery_gifts")
    registry = CollectorRegistry()
    registry.register(first)
    before_refresh = _parse(generate_latest(registry))
    await first.refresh()

    assert before_refresh["qinglian_queue_open_cases"] == {(("queue", "petitions"),): 1.0}  # no query per scrape
    assert _parse(generate_latest(registry))["qinglian_queue_open_cases"] == {(("queue", "petitions"),): 2.0}
    assert list(second.collect()) == []
