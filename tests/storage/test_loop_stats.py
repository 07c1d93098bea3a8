"""The closed loop's figures of a period, per queue and per week of the city, on SQLite and the PostgreSQL on
127.0.0.1, over cases whose figures are worked out by hand below. The seeded cases serve the console's tests too."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storage import loop, loop_stats, outbox, reply_scores, staff_actions, statistics
from storage.loop_stats import Notices, Share, Spread
from storage.models import Case, CaseStatus, OutboxMessage, StaffRole, StaffUser, utcnow
from storage.reply_scores import Quality
from tests.factories import file_case

ZONE = "Asia/Shanghai"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
START = datetime(2026, 3, 2, 16, tzinfo=UTC)  # 2026-03-03 00:00 in the city: a Tuesday of ISO week 10
END = START + 13 * DAY  # 2026-03-16 00:00 in the city; week 11 begins at START + 6 days (Monday 03-09 00:00)
NOW = START + 20 * DAY
STAFF_GROUP = ("telegram", "-100200300")  # a staff group on the reporters' channel: its notices are not counted


async def _case(session: Any, queue: str, created: datetime, accept_due: datetime,
                resolve_due: datetime) -> Case:
    case, _ = await file_case(session, queue=queue, label="slow_service" if queue == "clean_hall" else "medical",
                              accept_due_at=accept_due, resolve_due_at=resolve_due, reporter_ref=f"r{created:%d%H}")
    case.created_at = created
    return case


async def _accept(session: Any, case: Case, staff: StaffUser, at: datetime) -> None:
    await staff_actions.accept_case(session, case, actor=staff)
    case.accepted_at = at


async def _close(session: Any, case: Case, staff: StaffUser, at: datetime, rating: int | None) -> None:
    await staff_actions.set_status(session, case, CaseStatus.CLOSED, actor=staff, body="经核查，已办结。")
    case.closed_at = at
    if rating is not None:
        await loop.rate(session, case, rating, rehandle_limit=1, staff_targets=[STAFF_GROUP])


async def _answer(session: Any, case: Case, staff: StaffUser, scores: tuple[float, ...], at: datetime) -> None:
    event = await staff_actions.answer_reporter(session, case, "经核实，已整改。", actor=staff)
    await session.flush()
    score, relevance, completeness, clarity, timeliness = scores
    row = await reply_scores.record(session, event, case, reply_scores.Scores(
        score, relevance, completeness, clarity, None if timeliness < 0 else timeliness, []))
    row.created_at = at


async def _reporter_notices(session: Any, case: Case) -> list[OutboxMessage]:
    rows = await session.execute(select(OutboxMessage).where(OutboxMessage.case_id == case.id)
                                 .order_by(OutboxMessage.id))
    return [message for message in rows.scalars() if message.kind not in outbox.STAFF_NOTICES]


async def seed_loop(sessionmaker: Any) -> dict[str, str]:
    """Cases A–E in clean_hall and F in clean_medical received in the period; G before it (closed in it), H after.

    A accepted in 2 h, closed after 24 h, rated 5, answered twice;          notices: 4 delivered
    B accepted in 48 h (late), closed after 141 h (Sunday 23:00, week 10), rated 4;  notices: 1 waiting, 1 queued
    C accepted in 4 h, closed after 24 h, rated 2: re-handled; extended to START + 9 d, closed again after
      216 h (late), rated 2 again (no second re-handling);                 notices: 4 given up (+ 1 to staff)
    D never accepted, its acceptance deadline passed; E not accepted, deadline ahead
    F received Monday 01:00 of week 11 (Sunday in UTC), accepted in 10 h, answered, its resolve-by date passed
    """
    numbers: dict[str, str] = {}
    async with sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="sup", display_name="主管",
                                                 role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        a = await _case(session, "clean_hall", START + HOUR, START + 5 * DAY, START + 10 * DAY)
        await _accept(session, a, staff, START + 3 * HOUR)
        await _close(session, a, staff, START + DAY + HOUR, rating=5)
        await _answer(session, a, staff, (0.8, 0.9, 0.7, 0.6, 1.0), START + DAY)
        await _answer(session, a, staff, (0.6, 0.5, 0.5, 0.8, -1), START + 2 * DAY)
        b = await _case(session, "clean_hall", START + 2 * HOUR, START + DAY, START + 10 * DAY)
        await _accept(session, b, staff, START + 2 * DAY + 2 * HOUR)
        await _close(session, b, staff, START + 6 * DAY - HOUR, rating=4)
        c = await _case(session, "clean_hall", START + 3 * HOUR, START + 5 * DAY, START + 6 * DAY)
        await _accept(session, c, staff, START + 7 * HOUR)
        await _close(session, c, staff, START + DAY + 3 * HOUR, rating=2)
        assert (c.status, c.rehandle_count) == (CaseStatus.IN_HANDLING, 1)
        request = await loop.request_extension(session, c, actor=staff, reason="需要现场核查",
                                               resolve_due_at=START + 9 * DAY)
        await loop.decide_extension(session, request, c, actor=staff, approve=True)
        await _close(session, c, staff, START + 9 * DAY + 3 * HOUR, rating=2)
        assert (c.status, c.rating, c.extension_count) == (CaseStatus.CLOSED, 2, 1)
        d = await _case(session, "clean_hall", START + 4 * HOUR, START + DAY, START + 30 * DAY)
        e = await _case(session, "clean_hall", START + 5 * HOUR, START + 20 * DAY, START + 60 * DAY)
        f = await _case(session, "clean_medical", START + 6 * DAY + HOUR, START + 8 * DAY, START + 10 * DAY)
        await _accept(session, f, staff, START + 6 * DAY + 11 * HOUR)
        await _answer(session, f, staff, (0.4, 0.3, 0.2, 0.5, 0.5), START + 7 * DAY)
        g = await _case(session, "clean_hall", START - DAY, START, START + DAY)
        await _accept(session, g, staff, START - DAY + HOUR)
        await _close(session, g, staff, START + 2 * DAY, rating=5)
        h = await _case(session, "clean_hall", END + HOUR, END + 5 * DAY, END + 30 * DAY)
        for name, case in zip("abcdefgh", (a, b, c, d, e, f, g, h), strict=True):
            assert case.case_number is not None
            numbers[name] = case.case_number
    async with sessionmaker.begin() as session:
        cases = {case.case_number: case for case in (await session.execute(select(Case))).scalars()}
        delivered = [*await _reporter_notices(session, cases[numbers["a"]]),
                     *await _reporter_notices(session, cases[numbers["g"]])]
        staff_notices = (await session.execute(select(OutboxMessage).where(
            OutboxMessage.kind.in_(outbox.STAFF_NOTICES)))).scalars().all()
        assert [message.kind for message in staff_notices] == ["rehandle"]
        await outbox.mark_sent(session, [message.id for message in [*delivered, *staff_notices]])
        first_of_b, _second = await _reporter_notices(session, cases[numbers["b"]])
        outbox.mark_waiting(first_of_b, reason="48 hours passed")
        of_c = await _reporter_notices(session, cases[numbers["c"]])
        assert len(of_c) == 4
        for message in of_c:
            outbox.mark_failed(message, error="blocked by the user")
    return numbers


HALL = loop_stats.QueueLoop(
    "clean_hall", received=5, accepted_on_time=Share(2, 4), resolved_on_time=Share(2, 3),
    to_accept=Spread(3, 4.0, pytest.approx(39.2)), to_resolve=Spread(3, 141.0, pytest.approx(201.0)),  # type: ignore[arg-type]
    extensions=1, rehandled=Share(1, 3), satisfied=Share(2, 3), average_rating=pytest.approx(11 / 3),  # type: ignore[arg-type]
    notices=Notices(delivered=4, waiting=1, failed=4, pending=1),
    quality=Quality(2, pytest.approx(0.7), pytest.approx(0.7), pytest.approx(0.6), pytest.approx(0.7), 1.0))  # type: ignore[arg-type]
MEDICAL = loop_stats.QueueLoop(
    "clean_medical", received=1, accepted_on_time=Share(1, 1), resolved_on_time=Share(0, 1),
    to_accept=Spread(1, 10.0, 10.0), to_resolve=Spread(), extensions=0, rehandled=Share(0, 0),
    satisfied=Share(0, 0), average_rating=None, notices=Notices(pending=2),
    quality=Quality(1, pytest.approx(0.4), pytest.approx(0.3), pytest.approx(0.2), pytest.approx(0.5), 0.5))  # type: ignore[arg-type]


async def test_loop_figures_per_queue_and_in_total(sessionmaker: Any) -> None:
    await seed_loop(sessionmaker)
    async with sessionmaker() as session:
        result = await loop_stats.compute(session, start=START, end=END, queues=None, timezone=ZONE, now=NOW)
    assert result.by_queue == [HALL, MEDICAL]
    assert result.total == loop_stats.QueueLoop(
        "*", received=6, accepted_on_time=Share(3, 5), resolved_on_time=Share(2, 4),
        to_accept=Spread(4, 7.0, pytest.approx(36.6)), to_resolve=HALL.to_resolve, extensions=1,  # type: ignore[arg-type]
        rehandled=Share(1, 3), satisfied=Share(2, 3), average_rating=pytest.approx(11 / 3),  # type: ignore[arg-type]
        notices=Notices(delivered=4, waiting=1, failed=4, pending=3),
        quality=Quality(3, pytest.approx(0.6), pytest.approx(1.7 / 3), pytest.approx(1.4 / 3),  # type: ignore[arg-type]
                        pytest.approx(1.9 / 3), pytest.approx(0.75)))  # type: ignore[arg-type]
    assert (HALL.accepted_on_time.rate, HALL.satisfied.rate, MEDICAL.satisfied.rate) == (0.5, 2 / 3, None)


async def test_notices_count_after_the_outbox_forgets_them(sessionmaker: Any) -> None:
    await seed_loop(sessionmaker)
    async with sessionmaker.begin() as session:
        pruned = await outbox.prune_delivered(session, sent_before=utcnow() + DAY, failed_before=utcnow() + DAY)
        left = sorted((await session.execute(select(OutboxMessage.status))).scalars())
    # A's four and G's two notices, the staff group's one and C's four given up; B's waiting one and the queued
    # ones of B and F stay
    assert (pruned, left) == (11, ["pending", "pending", "pending", "waiting"])
    async with sessionmaker() as session:
        result = await loop_stats.compute(session, start=START, end=END, queues=None, timezone=ZONE, now=NOW)
        tallies = sorted((await session.execute(select(Case.notices_delivered, Case.notices_failed)
                                                 .where(Case.notices_delivered + Case.notices_failed > 0))).all())
    assert [loop.notices for loop in result.by_queue] == [HALL.notices, MEDICAL.notices]
    assert result.total.notices == Notices(delivered=4, waiting=1, failed=4, pending=3)
    assert tallies == [(0, 4), (2, 0), (4, 0)]  # C, G, A


async def test_weeks_of_the_city_cut_to_the_period(sessionmaker: Any) -> None:
    await seed_loop(sessionmaker)
    async with sessionmaker() as session:
        result = await loop_stats.compute(session, start=START, end=END, queues=None, timezone=ZONE, now=NOW)
    week_10, week_11 = result.weeks
    # week 10: A–E received; A, B (Sunday 23:00 in the city) and G closed, G after its deadline; rated 5, 4, 5
    assert (week_10.label, week_10.first_day, week_10.start, week_10.end) == (
        "2026-W10", date(2026, 3, 3), START, START + 6 * DAY)
    assert (week_10.received, week_10.resolved, week_10.resolved_on_time, week_10.satisfied) == (
        5, 3, Share(2, 3), Share(3, 3))
    # week 11: F received (a Sunday in UTC, Monday in the city); C closed late and rated 2
    assert (week_11.label, week_11.first_day, week_11.end) == ("2026-W11", date(2026, 3, 9), END)
    assert (week_11.received, week_11.resolved, week_11.resolved_on_time, week_11.satisfied) == (
        1, 1, Share(0, 1), Share(0, 1))


async def test_over_a_quarter_each_case_is_counted_in_its_own_week_at_the_weeks_edges(sessionmaker: Any) -> None:
    """Thirteen weeks and a cut one (the weekly series is a search over the weeks' starts): a case received at the
    first instant of a week belongs to it, one a microsecond earlier to the week before."""
    start, end = START, START + 13 * 7 * DAY
    weeks = loop_stats.weeks_of(start, end, ZONE)
    edges = [weeks[index].start for index in (1, 2, 5, 8, 13)]
    moments = [start, *edges, *(edge - timedelta(microseconds=1) for edge in edges), end - timedelta(microseconds=1)]
    async with sessionmaker.begin() as session:
        for moment in moments:
            await _case(session, "clean_hall", moment, moment + DAY, moment + 10 * DAY)
    async with sessionmaker() as session:
        result = await loop_stats.compute(session, start=start, end=end, queues=None, timezone=ZONE, now=NOW)
    expected = [sum(week.start <= moment < week.end for moment in moments) for week in weeks]
    assert [week.received for week in result.weeks] == expected
    assert (len(weeks), sum(expected), expected[:3], expected[-1]) == (14, 12, [2, 2, 1], 2)
    assert result.total.received == 12


async def test_loop_figures_keep_to_the_chosen_queues(sessionmaker: Any) -> None:
    await seed_loop(sessionmaker)
    async with sessionmaker() as session:
        medical = await loop_stats.compute(session, start=START, end=END, queues={"clean_medical"}, timezone=ZONE,
                                           now=NOW)
        empty = await loop_stats.compute(session, start=END + 2 * DAY, end=END + 3 * DAY, queues=None,
                                         timezone=ZONE, now=NOW)
    assert medical.by_queue == [MEDICAL]
    assert (medical.total.received, medical.total.notices, medical.total.quality) == (1, Notices(pending=2),
                                                                                    MEDICAL.quality)
    assert [(week.received, week.resolved) for week in medical.weeks] == [(0, 0), (1, 0)]
    assert (empty.by_queue, empty.total, [week.received for week in empty.weeks]) == (
        [], loop_stats.QueueLoop("*"), [0])


async def test_a_deadline_counts_once_it_has_passed(sessionmaker: Any) -> None:
    await seed_loop(sessionmaker)
    async with sessionmaker() as session:
        early = await loop_stats.compute(session, start=START, end=END, queues={"clean_hall"}, timezone=ZONE,
                                         now=START + 5 * HOUR)
    # by then no deadline had passed: A and C were accepted and A and B closed by theirs (as recorded); B's late
    # acceptance, C's late closing and D's missed acceptance were not due yet
    hall, = early.by_queue
    assert (hall.accepted_on_time, hall.resolved_on_time) == (Share(2, 2), Share(2, 2))


async def test_a_period_needs_aware_times_in_order_and_a_bounded_length() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await loop_stats.compute(None, start=datetime(2026, 3, 1), end=END, queues=None,  # type: ignore[arg-type]
                                 timezone=ZONE)
    with pytest.raises(ValueError, match="must end after"):
        await loop_stats.compute(None, start=END, end=START, queues=None, timezone=ZONE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 160 weeks"):
        loop_stats.weeks_of(START, START + 1200 * DAY, ZONE)


def _percentile(values: list[float], fraction: float) -> float | None:
    """percentile_cont by its definition (`loop_stats.percentile`, pinned to hand-worked values below)."""
    return loop_stats.percentile(sorted(values), fraction)


async def test_medians_and_90th_percentiles_of_many_cases_are_percentile_conts(sessionmaker: Any) -> None:
    """On both databases (PostgreSQL's percentile_cont; on SQLite the statistics' middle rows and the loop's
    durations sorted here) the loop's spreads and the statistics' medians are the same numbers, per queue and in
    total, for odd and even counts, ties and a queue of one case."""
    generator = random.Random(7)
    sizes = {"clean_hall": 23, "clean_medical": 2, "work_style": 1}
    to_accept: dict[str, list[float]] = {queue: [] for queue in sizes}
    to_close: dict[str, list[float]] = {queue: [] for queue in sizes}
    async with sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="spread", display_name="Spread",
                                                 role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        for queue, size in sizes.items():
            for number in range(size):
                created = START + number * HOUR
                case = await _case(session, queue, created, created + 30 * DAY, created + 60 * DAY)
                seconds = generator.choice([600, 3600, 3600, generator.randrange(60, 172_800)])
                await _accept(session, case, staff, created + timedelta(seconds=seconds))
                to_accept[queue].append(seconds / 3600)
                if number % 3 != 1:  # some stay open
                    closing = seconds + generator.randrange(60, 400_000)
                    await _close(session, case, staff, created + timedelta(seconds=closing), None)
                    to_close[queue].append(closing / 3600)
    async with sessionmaker() as session:
        loops = await loop_stats.compute(session, start=START, end=END, queues=None, timezone=ZONE, now=NOW)
        year = await statistics.compute(session, start=START, end=END, queues=None, now=NOW)

    def spread(values: list[float]) -> Spread:
        if not values:
            return Spread()
        return Spread(len(values), pytest.approx(_percentile(values, 0.5)),  # type: ignore[arg-type]
                      pytest.approx(_percentile(values, 0.9)))  # type: ignore[arg-type]

    every_accept = [hours for values in to_accept.values() for hours in values]
    every_close = [hours for values in to_close.values() for hours in values]
    assert {row.queue: (row.to_accept, row.to_resolve) for row in loops.by_queue} == {
        queue: (spread(to_accept[queue]), spread(to_close[queue])) for queue in sizes}
    assert (loops.total.to_accept, loops.total.to_resolve) == (spread(every_accept), spread(every_close))
    assert (year.accepted_count, year.median_hours_to_accept) == (26, pytest.approx(_percentile(every_accept, 0.5)))
    assert (year.closed_count, year.median_hours_to_close) == (len(every_close),
                                                               pytest.approx(_percentile(every_close, 0.5)))


def test_percentiles_interpolate_as_percentile_cont() -> None:
    assert loop_stats.percentile([], 0.5) is None
    assert loop_stats.percentile([3.0], 0.9) == 3.0
    assert loop_stats.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert loop_stats.percentile([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0], 0.9) == 90.0


async def test_a_case_answered_without_being_accepted_was_accepted_by_its_answer_on_both_pages(
        sessionmaker: Any) -> None:
    """Staff may answer a routed case without pressing "accept" first. The case was taken on no later than its
    answer: both the statistics page (median time to accept, overdue) and the loop's table (on-time share and
    spread) count it as accepted when it was answered — late when that was after its acceptance deadline."""
    now = utcnow()
    async with sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="sup", display_name="主管",
                                                 role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        late = await _case(session, "clean_hall", now - 30 * HOUR, now - 6 * HOUR, now + 10 * DAY)
        in_time = await _case(session, "clean_hall", now - 2 * HOUR, now + 22 * HOUR, now + 10 * DAY)
        for case in (late, in_time):
            await staff_actions.answer_reporter(session, case, "经核实，已整改。", actor=staff)
    start, end = now - 2 * DAY, now + DAY
    async with sessionmaker() as session:
        figures = await statistics.compute(session, start=start, end=end, queues=None, now=now + HOUR)
        table = await loop_stats.compute(session, start=start, end=end, queues=None, timezone=ZONE, now=now + HOUR)
    # answered 30 h and 2 h after receipt (give or take the moments the test itself takes)
    assert figures.accepted_count == 2 and figures.median_hours_to_accept == pytest.approx(16, abs=0.05)
    assert figures.overdue_accept_total == 1
    assert table.total.accepted_on_time == Share(1, 2)
    assert (table.total.to_accept.count, table.total.to_accept.median) == (2, pytest.approx(16, abs=0.05))
