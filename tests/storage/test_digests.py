"""A queue's daily digest: the facts it reports (new, open by status, overdue with only the passed
deadlines, most overdue first) and its messages in the outbox; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from storage import digests
from storage.digests import DueSoonCase, OverdueCase
from storage.models import CaseStatus, OutboxMessage
from tests.storage.test_statistics import NOW, T0, make_case, seed


async def test_the_facts_of_a_queue(sessionmaker: Any) -> None:
    numbers = await seed(sessionmaker)
    async with sessionmaker.begin() as session:
        fresh = await make_case(session, queue="clean_medical", label="medical", district="yuelu",
                                created=NOW - timedelta(hours=2), accept_due=NOW + timedelta(days=20),
                                resolve_due=NOW + timedelta(days=60))
        await make_case(session, queue="clean_medical", label="medical", district="yuelu",
                        created=NOW - timedelta(hours=30))  # filed before the last 24 hours
    async with sessionmaker() as session:
        facts = await digests.digest_facts(session, "clean_medical", NOW)
        quiet = await digests.digest_facts(session, "petitions", NOW)
    assert (facts.queue, facts.now, facts.new_cases) == ("clean_medical", NOW, 1)
    assert (facts.open_by_status, facts.open_cases, facts.waiting) == ({"routed": 4}, 4, 4)
    # c: not accepted by its deadline; the one filed after the period: likewise; d is closed
    assert facts.overdue == [OverdueCase(numbers["c"], T0 + timedelta(days=3), None),
                             OverdueCase("QL-2026-000007", T0 + timedelta(days=9), None)]
    assert fresh.case_number not in {case.case_number for case in facts.overdue}
    assert (quiet.new_cases, quiet.open_by_status, quiet.overdue) == (0, {}, [])


async def test_an_overdue_case_since_its_first_passed_deadline(sessionmaker: Any) -> None:
    both = OverdueCase("QL-2026-000001", NOW - timedelta(days=2), NOW - timedelta(days=5))
    assert both.since == NOW - timedelta(days=5)
    day = timedelta(days=1)
    async with sessionmaker.begin() as session:
        late_both = await make_case(session, queue="petitions", label="bribery_gifts", district="yuhua",
                                    created=T0, accept_due=NOW - day, resolve_due=NOW - 2 * day)
        late_accept = await make_case(session, queue="petitions", label="bribery_gifts", district="yuhua",
                                      created=T0, accept_due=NOW - 3 * day, resolve_due=NOW + 2 * day)
    async with sessionmaker() as session:
        facts = await digests.digest_facts(session, "petitions", NOW)
    assert [(case.case_number, case.since) for case in facts.overdue] == [
        (late_accept.case_number, NOW - timedelta(days=3)), (late_both.case_number, NOW - timedelta(days=2))]
    assert facts.overdue[1].accept_due_at == NOW - timedelta(days=1)


async def test_the_cases_due_soon_are_open_not_overdue_and_due_by_the_horizon(sessionmaker: Any) -> None:
    day = timedelta(days=1)
    horizon = NOW + 4 * day
    async with sessionmaker.begin() as session:
        def case(**dues: Any) -> Any:
            return make_case(session, queue="petitions", label="bribery_gifts", district="yuhua", created=T0, **dues)

        accept_soon = await case(accept_due=NOW + 3 * day, resolve_due=NOW + 50 * day)
        at_horizon = await case(accept_due=horizon, resolve_due=NOW + 50 * day)
        resolve_soon = await case(accept_due=NOW - 5 * day, resolve_due=NOW + 2 * day)
        resolve_soon.status, resolve_soon.accepted_at = CaseStatus.IN_HANDLING, NOW - 6 * day  # accepted in time
        await case(accept_due=NOW - day, resolve_due=NOW + 2 * day)  # overdue (not accepted): listed as such
        await case(accept_due=horizon + timedelta(seconds=1), resolve_due=NOW + 50 * day)  # not yet
        closed = await case(accept_due=NOW + day, resolve_due=NOW + 2 * day)
        closed.status = CaseStatus.CLOSED
    async with sessionmaker() as session:
        facts = await digests.digest_facts(session, "petitions", NOW, soon_until=horizon)
        without = await digests.digest_facts(session, "petitions", NOW)
    assert facts.due_soon == [DueSoonCase(resolve_soon.case_number, "resolve", NOW + 2 * day),
                              DueSoonCase(accept_soon.case_number, "accept", NOW + 3 * day),
                              DueSoonCase(at_horizon.case_number, "accept", horizon)]
    assert len(facts.overdue) == 1
    assert (without.soon_until, without.due_soon) == (None, [])


async def test_the_digest_goes_to_each_staff_channel_of_the_queue(sessionmaker: Any) -> None:
    targets = [("telegram", "-100777"), ("wecom", "petitions")]
    async with sessionmaker.begin() as session:
        assert await digests.enqueue_digest(session, targets=targets, text="今日无待办案件。") == 2
        assert await digests.enqueue_digest(session, targets=[], text="无人接收") == 0
    async with sessionmaker() as session:
        messages = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
    assert [(m.channel, m.recipient, m.payload, m.status, m.case_id) for m in messages] == [
        ("telegram", "-100777", {"text": "今日无待办案件。"}, "pending", None),
        ("wecom", "petitions", {"text": "今日无待办案件。"}, "pending", None)]
