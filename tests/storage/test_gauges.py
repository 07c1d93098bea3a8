"""The database gauges /metrics exports, counted on SQLite and the PostgreSQL on 127.0.0.1: cases by label and
status (unlabelled ones under their own key), open cases per queue, the outbox's backlog per channel and the age
of its oldest waiting message."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from storage import gauges, outbox, staff_actions
from storage.models import CaseStatus, OutboxMessage, StaffRole, utcnow
from storage.statistics import NO_LABEL
from tests.factories import file_case


async def test_the_gauges_count_cases_open_queues_and_the_outboxs_backlog(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="gauge", display_name="Gauge",
                                                 role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        hall, _ = await file_case(session, reporter_ref="1", queue="clean_hall", label="slow_service")
        await file_case(session, reporter_ref="2", queue="clean_hall", label="slow_service")
        closed, _ = await file_case(session, reporter_ref="3", queue="clean_medical", label="medical")
        await file_case(session, reporter_ref="4", queue="triage", label=None)
        await staff_actions.set_status(session, closed, CaseStatus.CLOSED, actor=staff, body="经核查，已办结。")
        waiting = await outbox.enqueue(session, channel="telegram", recipient="1", payload={"text": "早"},
                                       case_id=hall.id)
        given_up = await outbox.enqueue(session, channel="wechat", recipient="o-2", payload={"text": "晚"})
        await session.flush()
        outbox.mark_failed(given_up, error="blocked")
        # the oldest waiting message was queued ten minutes ago
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == waiting.id)
                              .values(created_at=utcnow() - timedelta(minutes=10)))

    async with sessionmaker() as session:
        snapshot = await gauges.read_snapshot(session)

    by_status = snapshot.cases  # (label, status) → count
    assert sum(count for (label, _), count in by_status.items() if label == "slow_service") == 2
    assert by_status[("medical", CaseStatus.CLOSED)] == 1
    assert sum(count for (label, _), count in by_status.items() if label == NO_LABEL) == 1
    assert snapshot.open_by_queue == {"clean_hall": 2, "triage": 1}
    assert snapshot.outbox_pending.get("telegram", 0) >= 1 and snapshot.outbox_failed == {"wechat": 1}
    assert 600 <= snapshot.outbox_lag_seconds < 700
