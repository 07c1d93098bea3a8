"""Statistics of a period: counts of every dimension, medians, overdue cases and ratings, on SQLite and the
PostgreSQL on 127.0.0.1. The seeded cases here serve the console's tests of the export and digest too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import actions, staff_actions, statistics
from storage.models import Case, CaseStatus, StaffRole, StaffUser
from storage.statistics import OverdueCounts
from tests.factories import file_case

KEY = b"k" * 32
T0 = datetime(2026, 3, 2, tzinfo=UTC)  # the period is [T0, T0 + 7 days)
PERIOD_END = T0 + timedelta(days=7)
NOW = T0 + timedelta(days=10)  # 2026-03-12 08:00 in Changsha


async def staff_member(session: Any) -> StaffUser:
    return await staff_actions.create_staff(session, username="sup", display_name="主管", role=StaffRole.SUPERVISOR,
                                            password_hash="not-a-hash")


async def make_case(session: Any, *, queue: str, label: str | None, district: str | None, created: datetime,
                    accept_due: datetime | None = None, resolve_due: datetime | None = None,
                    anonymous: bool = True) -> Case:
    case, _ = await file_case(
        session, secret_key=KEY, case_number_prefix="QL", year=2026, channel="telegram", reporter_ref="4242",
        locale="zh", district=district, place="某单位", occurred="上周",
        description="窗口工作人员推诿扯皮，让群众多次跑腿",
        anonymous=anonymous, reporter_name=None if anonymous else "张三",
        reporter_phone=None if anonymous else "13800138000", attachment_ids=[], queue=queue, label=label,
        confidence=0.9, top=[], accept_due_at=accept_due, resolve_due_at=resolve_due)
    case.created_at = created
    return case


async def _accept(session: Any, case: Case, staff: StaffUser, at: datetime) -> None:
    await staff_actions.accept_case(session, case, actor=staff)
    case.accepted_at = at


async def _close(session: Any, case: Case, staff: StaffUser, at: datetime, *, status: CaseStatus = CaseStatus.CLOSED,
                 rating: int | None = None) -> None:
    await staff_actions.set_status(session, case, status, actor=staff, body="经核查，已办结。")
    case.closed_at = at
    if rating is not None:
        await actions.rate_case(session, case, rating)


async def seed(sessionmaker: Any) -> dict[str, str]:
    """Five reports in the period, one before it (accepted and closed in it), one after it."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    numbers: dict[str, str] = {}
    async with sessionmaker.begin() as session:
        staff = await staff_member(session)
        a = await make_case(session, queue="clean_hall", label="slow_service", district="yuelu", created=T0 + hour,
                            accept_due=T0 + 5 * day, resolve_due=T0 + 30 * day)
        await _accept(session, a, staff, a.created_at + 2 * hour)
        await _close(session, a, staff, a.created_at + 10 * hour, rating=4)
        b = await make_case(session, queue="clean_hall", label="slow_service", district="furong", created=T0 + day,
                            accept_due=T0 + 6 * day, resolve_due=T0 + 60 * day)
        await _accept(session, b, staff, b.created_at + 4 * hour)
        c = await make_case(session, queue="clean_medical", label="medical", district=None, created=T0 + 2 * day,
                            accept_due=T0 + 3 * day, resolve_due=T0 + 60 * day, anonymous=False)
        d = await make_case(session, queue="clean_medical", label="medical", district="yuelu", created=T0 + 3 * day,
                            accept_due=T0 + 3 * day + hour, resolve_due=T0 + 3 * day + 20 * hour)
        await _accept(session, d, staff, d.created_at + 8 * hour)
        await _close(session, d, staff, d.created_at + 30 * hour, rating=2)
        e = await make_case(session, queue="triage", label=None, district="kaifu", created=T0 + 4 * day,
                            accept_due=T0 + 10 * day, resolve_due=T0 + 60 * day)
        await _close(session, e, staff, e.created_at + 6 * hour, status=CaseStatus.REJECTED)
        f = await make_case(session, queue="clean_schools", label="education", district="tianxin", created=T0 - day,
                            accept_due=T0 + 10 * day, resolve_due=T0 + 60 * day)
        await _accept(session, f, staff, T0 + hour)
        await _close(session, f, staff, T0 + 2 * day, rating=5)
        await make_case(session, queue="clean_medical", label="medical", district="yuelu", created=T0 + 8 * day,
                        accept_due=T0 + 9 * day)
        for name, case in zip("abcdef", (a, b, c, d, e, f), strict=True):
            assert case.case_number is not None
            numbers[name] = case.case_number
    return numbers


async def test_statistics_of_a_period_count_every_dimension_with_medians_and_overdue(
        sessionmaker: Any) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session:
        result = await statistics.compute(session, start=T0, end=PERIOD_END, queues=None, now=NOW)
    assert result.total == 5
    assert result.by_label == {"medical": 2, "slow_service": 2, "unlabelled": 1}
    assert result.by_district == {"yuelu": 2, "furong": 1, "kaifu": 1, "unsure": 1}
    assert result.by_queue == {"clean_hall": 2, "clean_medical": 2, "triage": 1}
    assert list(result.by_status.items()) == [("routed", 1), ("accepted", 1), ("closed", 2), ("rejected", 1)]
    # accepted in the period: 2 h, 4 h, 8 h and 25 h (filed the day before the period)
    assert (result.median_hours_to_accept, result.accepted_count) == (6.0, 4)
    # closed in the period: 10 h, 30 h, 6 h (rejected) and 48 h
    assert (result.median_hours_to_close, result.closed_count) == (20.0, 4)
    assert result.overdue == {"clean_hall": OverdueCounts(0, 0), "clean_medical": OverdueCounts(2, 1),
                              "triage": OverdueCounts(0, 0)}
    assert (result.overdue_accept_total, result.overdue_resolve_total) == (2, 1)
    assert (result.average_rating, result.rating_count) == (11 / 3, 3)


async def test_statistics_keep_to_the_chosen_queues_and_say_none_without_data(
        sessionmaker: Any) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session:
        medical = await statistics.compute(session, start=T0, end=PERIOD_END, queues={"clean_medical"}, now=NOW)
        empty = await statistics.compute(session, start=T0 + timedelta(days=20), end=T0 + timedelta(days=21),
                                         queues=None, now=NOW)
    assert (medical.total, medical.by_queue) == (2, {"clean_medical": 2})
    assert medical.by_district == {"unsure": 1, "yuelu": 1}
    assert (medical.median_hours_to_accept, medical.median_hours_to_close, medical.average_rating) == (8.0, 30.0, 2.0)
    assert medical.overdue == {"clean_medical": OverdueCounts(2, 1)}
    assert (empty.total, empty.by_label, empty.median_hours_to_accept, empty.median_hours_to_close,
            empty.average_rating, empty.overdue) == (0, {}, None, None, None, {})


async def test_overdue_counts_only_deadlines_passed_by_the_end_of_the_period(
        sessionmaker: Any) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session:
        early = await statistics.compute(session, start=T0, end=PERIOD_END, queues=None,
                                         now=T0 + 3 * timedelta(days=1) + timedelta(minutes=30))
    # by then only c's deadline to accept (T0 + 3 days) had passed
    assert early.overdue["clean_medical"] == OverdueCounts(1, 0)


async def test_a_period_needs_aware_times_in_order() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await statistics.compute(None, start=datetime(2026, 3, 1), end=PERIOD_END, queues=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must end after"):
        await statistics.compute(None, start=PERIOD_END, end=T0, queues=None)  # type: ignore[arg-type]


def test_counts_of_an_unknown_dimension_are_refused() -> None:
    result = statistics.Statistics(start=T0, end=PERIOD_END, queues=None, by_queue={"triage": 2})
    assert result.counts("queue") == {"triage": 2}
    with pytest.raises(ValueError, match="unknown dimension"):
        result.counts("colour")
