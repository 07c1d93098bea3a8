"""The quality scores of staff answers (`storage.reply_scores`), on SQLite and the PostgreSQL on 127.0.0.1: a
score is kept once with its answer, under the queue the case was in when it was answered, its reasons unreadable
at rest; the averages per queue and over the chosen queues count the answers sent in [since, until) and leave
out a missing timeliness. The averages below are worked out by hand from values exact in binary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from storage import loop, reply_scores, staff_actions
from storage.models import StaffRole, StaffUser
from storage.reply_scores import Quality, Scores
from tests.factories import create_staff, file_case

SINCE = datetime(2026, 3, 2, 16, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=7)
REASON = {"code": "missing_point", "params": {"phrase": "排队无人办理"}}


async def test_a_score_is_kept_once_with_its_answer_under_the_queue_the_case_was_in_then(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        staff = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        case, _ = await file_case(session, queue="clean_hall")
        first = await staff_actions.answer_reporter(session, case, "经核实，已责令整改。", actor=staff)
        await session.flush()
        await reply_scores.record(session, first, case, Scores(0.5, 0.75, 0.25, 1.0, None, [REASON]))
        await loop.transfer(session, case, "clean_medical", actor=staff, reason="属卫健委管辖")
        second = await staff_actions.answer_reporter(session, case, "已转卫健委。", actor=staff)  # sent unscored
        await session.flush()
    async with sessionmaker() as session:
        scores = await reply_scores.of_events(session, [first.id, second.id])
        assert await reply_scores.of_events(session, []) == {}
        raw = (await session.execute(text("SELECT reasons FROM reply_scores"))).scalars().all()
    assert list(scores) == [first.id]
    row = scores[first.id]
    assert (row.case_id, row.queue, row.score, row.relevance, row.completeness, row.clarity, row.timeliness,
            row.reasons) == (case.id, "clean_hall", 0.5, 0.75, 0.25, 1.0, None, [REASON])
    assert len(raw) == 1 and "排队" not in str(raw) and "missing_point" not in str(raw)  # quotes the report
    with pytest.raises(IntegrityError):  # an answer is scored once
        async with sessionmaker.begin() as session:
            await reply_scores.record(session, first, case, Scores(1.0, 1.0, 1.0, 1.0, 1.0, []))


async def _scored(session: Any, staff: StaffUser, queue: str, at: datetime,
                  values: tuple[float, float, float, float, float | None]) -> None:
    """An answer in a case of `queue`, scored `values` (score, relevance, completeness, clarity, timeliness)."""
    case, _ = await file_case(session, queue=queue, reporter_ref=f"{queue}-{at:%d%H%M%S}")
    event = await staff_actions.answer_reporter(session, case, "经核实，已整改。", actor=staff)
    await session.flush()
    row = await reply_scores.record(session, event, case, Scores(*values, reasons=[]))
    row.created_at = at


async def _seed(sessionmaker: Any) -> None:
    """Two answers of clean_hall and one of clean_medical in [SINCE, UNTIL), and one just outside at each end."""
    async with sessionmaker.begin() as session:
        staff = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        await _scored(session, staff, "clean_hall", SINCE, (0.5, 0.5, 0.25, 1.0, 1.0))  # the first instant counts
        await _scored(session, staff, "clean_hall", SINCE + timedelta(days=1), (1.0, 0.75, 0.75, 0.5, None))
        await _scored(session, staff, "clean_medical", SINCE + timedelta(days=2), (0.0, 0.25, 0.5, 0.0, 0.5))
        await _scored(session, staff, "clean_hall", SINCE - timedelta(seconds=1), (0.0, 0.0, 0.0, 0.0, 0.0))
        await _scored(session, staff, "clean_hall", UNTIL, (0.0, 0.0, 0.0, 0.0, 0.0))  # the end is not in it


HALL = Quality(answers=2, score=0.75, relevance=0.625, completeness=0.5, clarity=0.75, timeliness=1.0)
MEDICAL = Quality(answers=1, score=0.0, relevance=0.25, completeness=0.5, clarity=0.0, timeliness=0.5)


async def test_averages_per_queue_count_the_answers_of_the_period_and_leave_out_a_missing_timeliness(
        sessionmaker: Any) -> None:
    await _seed(sessionmaker)
    async with sessionmaker() as session:
        assert await reply_scores.by_queue(session, SINCE, UNTIL) == {"clean_hall": HALL, "clean_medical": MEDICAL}
        assert await reply_scores.by_queue(session, SINCE, UNTIL, queues={"clean_medical", "triage"}) == {
            "clean_medical": MEDICAL}
        assert await reply_scores.by_queue(session, SINCE, UNTIL, queues=["triage"]) == {}
        assert await reply_scores.by_queue(session, UNTIL + timedelta(seconds=1), UNTIL + timedelta(days=1)) == {}
        unmeasured = await reply_scores.by_queue(session, SINCE + timedelta(hours=1), SINCE + timedelta(days=2))
    assert unmeasured == {"clean_hall": Quality(1, 1.0, 0.75, 0.75, 0.5, None)}  # no deadline: no timeliness


async def test_the_overall_average_spans_the_chosen_queues_and_is_none_without_answers(sessionmaker: Any) -> None:
    await _seed(sessionmaker)
    async with sessionmaker() as session:
        assert await reply_scores.overall(session, SINCE, UNTIL) == Quality(3, 0.5, 0.5, 0.5, 0.5, 0.75)
        assert await reply_scores.overall(session, SINCE, UNTIL, queues=["clean_hall"]) == HALL
        assert await reply_scores.overall(session, SINCE, UNTIL, queues=["triage"]) is None
        assert await reply_scores.overall(session, SINCE, UNTIL, queues=[]) is None
        assert await reply_scores.overall(session, UNTIL + timedelta(seconds=1), UNTIL + timedelta(days=1)) is None
