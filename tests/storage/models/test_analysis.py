"""The models of what is computed from cases, written and read directly on SQLite and the PostgreSQL on
127.0.0.1: the search index and the similarity keys hold any signed 64-bit hash, once per case; a signature keeps
its bytes and starts at version 1; all of them and a case's answer scores go when the case goes; a problem's title
is ciphertext, the problem outlives its creator and its cases outlive the problem; an answer is scored once, its
reasons ciphertext; a hot-issue run keeps its ranked groups."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from storage.models import (
    Case,
    CaseSignature,
    CaseTerm,
    HotIssueRun,
    Problem,
    ReplyScore,
    SimilarityBand,
    SimilarityPlace,
    StaffRole,
    StaffUser,
    TraceEvent,
    TraceKind,
    utcnow,
)
from tests.conftest import stored_value

LARGEST = 2 ** 63 - 1
SMALLEST = -(2 ** 63)
TITLE = "五一路工地夜间施工扰民"
REASON = "答复未回应“夜间施工”"


def a_case(code: str, **values: Any) -> Case:
    return Case(receipt_code_hash=code, channel="telegram", reporter_ref="tg-1", locale="zh", place="五一路",
                occurred="昨晚", description="工地夜间施工噪音很大。", queue="clean_hall", **values)


async def answered(session: Any, case: Case) -> TraceEvent:
    event = TraceEvent(case_id=case.id, kind=TraceKind.ANSWERED, body="已责令停工。")
    session.add(event)
    await session.flush()
    return event


def a_score(case: Case, event: TraceEvent, **values: Any) -> ReplyScore:
    return ReplyScore(trace_event_id=event.id, case_id=case.id, queue="clean_hall", score=0.8, relevance=0.9,
                      completeness=0.7, clarity=0.8, **values)


async def test_the_search_and_similarity_keys_hold_any_signed_64_bit_hash_once_per_case(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        first, second = a_case("h1", created_at=datetime(2026, 11, 2, tzinfo=UTC)), a_case("h2")
        session.add_all([first, second])
        await session.flush()
        session.add_all([CaseTerm(term=LARGEST, case_id=first.id, created_at=first.created_at),
                         CaseTerm(term=LARGEST, case_id=second.id, created_at=utcnow()),
                         SimilarityBand(band_key=SMALLEST, case_id=first.id),
                         SimilarityPlace(place_key=LARGEST, case_id=first.id)])
        first_id = first.id
    for again in (CaseTerm(term=LARGEST, case_id=first_id, created_at=utcnow()),
                  SimilarityBand(band_key=SMALLEST, case_id=first_id),
                  SimilarityPlace(place_key=LARGEST, case_id=first_id)):
        with pytest.raises(IntegrityError):
            async with sessionmaker.begin() as session:
                session.add(again)
    async with sessionmaker() as session:
        term = (await session.execute(select(CaseTerm).where(CaseTerm.case_id == first_id))).scalar_one()
        band = (await session.execute(select(SimilarityBand.band_key))).scalar_one()
        place = (await session.execute(select(SimilarityPlace.place_key))).scalar_one()
    assert (term.term, term.created_at, band, place) == (LARGEST, datetime(2026, 11, 2, tzinfo=UTC), SMALLEST, LARGEST)


async def test_a_signature_keeps_its_bytes_and_starts_at_version_one(sessionmaker: Any) -> None:
    minhash, terms = bytes(range(256)) * 2, b"\x00\xff" * 16
    async with sessionmaker.begin() as session:
        case = a_case("h1")
        session.add(case)
        await session.flush()
        session.add(CaseSignature(case_id=case.id, minhash=minhash, terms=terms))
    async with sessionmaker() as session:
        signature = (await session.execute(select(CaseSignature))).scalar_one()
    assert (signature.minhash, signature.terms, signature.version) == (minhash, terms, 1)


async def test_a_removed_case_takes_its_index_signature_keys_and_answer_scores_along(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        gone, kept = a_case("h1"), a_case("h2")
        session.add_all([gone, kept])
        await session.flush()
        for number, case in enumerate((gone, kept)):
            session.add_all([CaseTerm(term=number, case_id=case.id, created_at=utcnow()),
                             CaseSignature(case_id=case.id, minhash=b"m", terms=b"t"),
                             SimilarityBand(band_key=number, case_id=case.id),
                             SimilarityPlace(place_key=number, case_id=case.id),
                             a_score(case, await answered(session, case))])
        gone_id, kept_id = gone.id, kept.id
    async with sessionmaker.begin() as session:
        await session.execute(delete(Case).where(Case.id == gone_id))
    async with sessionmaker() as session:
        for model in (CaseTerm, CaseSignature, SimilarityBand, SimilarityPlace, ReplyScore):
            owners = list((await session.execute(select(model.case_id))).scalars())  # type: ignore[attr-defined]
            assert owners == [kept_id], model.__name__


async def test_a_problems_title_is_ciphertext_and_its_cases_outlive_it_as_it_outlives_its_creator(
        sessionmaker: Any) -> None:
    before = utcnow()
    async with sessionmaker.begin() as session:
        creator = StaffUser(username="wang", display_name="王", role=StaffRole.SUPERVISOR, password_hash="x")
        session.add(creator)
        await session.flush()
        problem = Problem(title=TITLE, created_by_id=creator.id)
        session.add(problem)
        await session.flush()
        session.add_all([a_case("h1", problem_id=problem.id), a_case("h2", problem_id=problem.id)])
        creator_id, problem_id = creator.id, problem.id
    async with sessionmaker.begin() as session:
        await session.execute(delete(StaffUser).where(StaffUser.id == creator_id))
    async with sessionmaker() as session:
        raw_title = (await session.execute(text("SELECT title FROM problems"))).scalar_one()
        problem = (await session.execute(select(Problem))).scalar_one()
    assert raw_title.startswith("g1.") and stored_value(raw_title, "problems.title") == TITLE
    assert (problem.title, problem.created_by_id, problem.answered_at) == (TITLE, None, None)
    assert problem.created_at >= before and problem.created_at.utcoffset() == timedelta(0)
    async with sessionmaker.begin() as session:
        await session.execute(delete(Problem).where(Problem.id == problem_id))
    async with sessionmaker() as session:
        assert list((await session.execute(select(Case.problem_id))).scalars()) == [None, None]


async def test_an_answer_is_scored_once_with_its_reasons_as_ciphertext(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case = a_case("h1")
        session.add(case)
        await session.flush()
        first, second = await answered(session, case), await answered(session, case)
        session.add_all([a_score(case, first, timeliness=1.0, reasons=[["relevance", REASON]]),
                         a_score(case, second)])
        case_id, first_id = case.id, first.id
    with pytest.raises(IntegrityError):
        async with sessionmaker.begin() as session:
            session.add(ReplyScore(trace_event_id=first_id, case_id=case_id, queue="clean_hall", score=0.1,
                                   relevance=0.1, completeness=0.1, clarity=0.1))
    async with sessionmaker() as session:
        raw = list((await session.execute(text("SELECT reasons FROM reply_scores ORDER BY id"))).scalars())
        scores = list((await session.execute(select(ReplyScore).order_by(ReplyScore.id))).scalars())
    assert all(value.startswith("g1.") for value in raw)
    assert json.loads(stored_value(raw[0], "reply_scores.reasons") or "") == [["relevance", REASON]]
    assert [(s.reasons, s.timeliness) for s in scores] == [([["relevance", REASON]], 1.0), ([], None)]
    assert scores[0].created_at.utcoffset() == timedelta(0)


async def test_a_hot_issue_run_keeps_its_ranked_groups_and_its_period(sessionmaker: Any) -> None:
    since, until = datetime(2026, 10, 26, 16, 0, tzinfo=UTC), datetime(2026, 11, 2, 16, 0, tzinfo=UTC)
    groups = [{"cases": [3, 1, 2], "heat": 4.5, "count": 3}, {"cases": [7], "heat": 1.0, "count": 1}]
    async with sessionmaker.begin() as session:
        session.add_all([HotIssueRun(since=since, until=until, cases=4, seconds=0.25, groups=groups),
                         HotIssueRun(since=since, until=until, cases=0, seconds=0.01)])
    async with sessionmaker() as session:
        runs = list((await session.execute(select(HotIssueRun).order_by(HotIssueRun.id))).scalars())
    assert [(run.since, run.until, run.cases, run.groups) for run in runs] == [
        (since, until, 4, groups), (since, until, 0, [])]
    assert runs[0].seconds == 0.25 and runs[0].computed_at.utcoffset() == timedelta(0)
