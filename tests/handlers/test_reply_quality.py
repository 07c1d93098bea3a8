"""The check of a staff answer before it is sent, as a reviewer sees its verdict: timeliness counted in the city's
working days (its time zone, holidays and make-up days) from the day the case arrived, against the working days
the case was given to be resolved (15 when it has no deadline); and the score as it is kept with the answer,
its reasons as codes with their parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.city import load_city_config
from handlers.reply_quality import score_answer, stored
from handlers.routing import add_working_days
from nlp.reply_quality import ReplyScore
from storage.models import Case

CITY = load_city_config(None)
REPORT = "我去区政务服务中心的社保窗口跑了四次，每次窗口工作人员都说材料不全，却不一次性告知缺什么。"
ANSWER = ("经查，区政务服务中心社保窗口工作人员未一次性告知所需材料，跑了四次情况属实。根据《首问负责制规定》，"
          "已责令整改。如有疑问请拨打联系电话0731-84561234咨询。")


def _case(created_at: datetime, resolve_due_at: datetime | None = None, description: str = REPORT) -> Case:
    return Case(description=description, created_at=created_at, resolve_due_at=resolve_due_at)


def _late(score: ReplyScore) -> tuple[int, int] | None:
    """(working days taken, deadline) of the "late" reason, None when the answer is on time."""
    late = [reason for reason in score.reasons if reason.code == "late"]
    return (late[0].params["days"], late[0].params["deadline"]) if late else None


def test_days_are_counted_between_the_citys_calendar_days() -> None:
    # 17:00 UTC on Monday 2 November is 01:00 on Tuesday in Changsha: the case arrived on Tuesday
    case = _case(datetime(2026, 11, 2, 17, 0, tzinfo=UTC))
    same_day = score_answer(CITY, case, ANSWER, datetime(2026, 11, 3, 15, 59, tzinfo=UTC))  # 23:59 on Tuesday
    next_day = score_answer(CITY, case, ANSWER, datetime(2026, 11, 3, 16, 0, tzinfo=UTC))  # 00:00 on Wednesday
    assert (same_day.working_days, next_day.working_days) == (0, 1)


def test_the_citys_holidays_and_weekends_do_not_count() -> None:
    # received Thursday 24 September; Friday 25 September is a holiday, then the weekend
    case = _case(datetime(2026, 9, 24, 2, 0, tzinfo=UTC))
    assert score_answer(CITY, case, ANSWER, datetime(2026, 9, 28, 2, 0, tzinfo=UTC)).working_days == 1


def test_a_case_without_a_deadline_is_given_fifteen_working_days() -> None:
    case = _case(datetime(2026, 11, 2, 2, 0, tzinfo=UTC))  # a Monday
    on_time = score_answer(CITY, case, ANSWER, datetime(2026, 11, 23, 2, 0, tzinfo=UTC))  # 15 working days later
    late = score_answer(CITY, case, ANSWER, datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    assert (on_time.timeliness, _late(on_time)) == (1.0, None)
    assert _late(late) == (16, 15)
    assert late.timeliness == pytest.approx(1 - 1 / 15)
    assert "用时16个工作日，超过期限15个工作日" in late.reason_texts("zh")


def test_the_cases_own_deadline_sets_the_working_days_it_was_given() -> None:
    received = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # Monday
    case = _case(received, add_working_days(CITY, received, 5))  # resolve by the end of Monday 9 November
    assert _late(score_answer(CITY, case, ANSWER, datetime(2026, 11, 9, 15, 0, tzinfo=UTC))) is None
    late = score_answer(CITY, case, ANSWER, datetime(2026, 11, 12, 2, 0, tzinfo=UTC))  # Thursday
    assert _late(late) == (8, 5)
    assert late.timeliness == pytest.approx(1 - 3 / 5)
    twice = score_answer(CITY, case, ANSWER, datetime(2026, 11, 16, 2, 0, tzinfo=UTC))  # 10 working days
    assert twice.timeliness == 0.0


def test_a_deadline_on_the_day_of_receipt_still_gives_one_working_day() -> None:
    received = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    case = _case(received, datetime(2026, 11, 2, 15, 59, 59, tzinfo=UTC))
    assert _late(score_answer(CITY, case, ANSWER, datetime(2026, 11, 3, 2, 0, tzinfo=UTC))) is None
    assert _late(score_answer(CITY, case, ANSWER, datetime(2026, 11, 4, 2, 0, tzinfo=UTC))) == (2, 1)


def test_an_answer_is_checked_against_the_cases_own_report() -> None:
    now = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
    on_topic = score_answer(CITY, _case(datetime(2026, 11, 2, 2, 0, tzinfo=UTC)), ANSWER, now)
    elsewhere = score_answer(CITY, _case(datetime(2026, 11, 2, 2, 0, tzinfo=UTC),
                                         description="某小学老师在校外开办收费补习班，要求学生参加。"), ANSWER, now)
    assert on_topic.relevance > elsewhere.relevance and on_topic.score > elsewhere.score
    assert on_topic.completeness == pytest.approx(1.0)
    assert "missing_phrases" in {reason.code for reason in elsewhere.reasons}


def test_the_score_is_kept_with_its_reasons_as_codes_and_parameters() -> None:
    score = score_answer(CITY, _case(datetime(2026, 11, 2, 2, 0, tzinfo=UTC)), "已收悉。",
                         datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    kept = stored(score)
    assert (kept.score, kept.relevance, kept.completeness, kept.clarity, kept.timeliness) == (
        score.score, score.relevance, score.completeness, score.clarity, score.timeliness)
    reasons = {reason["code"]: reason["params"] for reason in kept.reasons}
    assert reasons["late"] == {"days": 16, "deadline": 15}
    assert reasons["too_short"] == {"chars": 4}
    assert reasons["no_contact"] == {} and reasons["no_findings"] == {}
    assert "四次" in reasons["missing_phrases"]["phrases"]
    assert [reason["code"] for reason in kept.reasons] == [reason.code for reason in score.reasons]
    assert all(type(reason["params"]) is dict for reason in kept.reasons)  # plain JSON for the database


def test_make_up_working_days_count_as_the_deadline_counts_them() -> None:
    # From Friday 18 September 2026 the eleventh working day is Saturday 10 October: Sunday 20 September and
    # Saturday 10 October are make-up working days; 25 September and 1–7 October are holidays
    received = datetime(2026, 9, 18, 2, 0, tzinfo=UTC)
    case = _case(received, add_working_days(CITY, received, 11))
    late = score_answer(CITY, case, ANSWER, datetime(2026, 10, 12, 2, 0, tzinfo=UTC))  # Monday 12 October
    assert _late(late) == (12, 11)  # it said "took 10 working days, deadline 9"
