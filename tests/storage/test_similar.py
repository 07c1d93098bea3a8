"""Problems that group cases (issue 15), and the bounded read of candidates, against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from storage import similar
from storage.models import Case, Problem, TraceEvent, TraceKind, utcnow
from tests.factories import file_case


async def _cases(session: Any, count: int) -> list[Case]:
    return [(await file_case(session, reporter_ref=str(number)))[0] for number in range(count)]


async def _problem_of(sessionmaker: Any, case_ids: list[int]) -> list[int | None]:
    async with sessionmaker() as session:
        rows = dict((await session.execute(select(Case.id, Case.problem_id).where(Case.id.in_(case_ids)))).all())
    return [rows[case_id] for case_id in case_ids]


async def test_linking_two_cases_makes_a_problem_and_a_third_joins_it(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        first, second, third = await _cases(session, 3)
        problem = await similar.join_problem(session, [first, second], actor="staff:1", created_by_id=None)
        again = await similar.join_problem(session, [third, first], actor="staff:1", created_by_id=None)
    assert again.id == problem.id
    assert await _problem_of(sessionmaker, [first.id, second.id, third.id]) == [problem.id] * 3
    async with sessionmaker() as session:
        linked = (await session.execute(select(TraceEvent.case_id).where(TraceEvent.kind == TraceKind.LINKED)
                                        .order_by(TraceEvent.case_id))).scalars().all()
    assert linked == [first.id, second.id, third.id]  # each case once: the link to a problem it was in is no news


async def test_linking_cases_of_two_problems_merges_them(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        a, b, c, d = await _cases(session, 4)
        left = await similar.join_problem(session, [a, b], actor="staff:1", created_by_id=None, title="搅拌站")
        right = await similar.join_problem(session, [c, d], actor="staff:1", created_by_id=None)
        merged = await similar.join_problem(session, [d, a], actor="staff:1", created_by_id=None)
    assert merged.id == left.id
    assert await _problem_of(sessionmaker, [a.id, b.id, c.id, d.id]) == [left.id] * 4
    async with sessionmaker() as session:
        assert await session.get(Problem, right.id) is None
        kept = await session.get(Problem, left.id)
        assert kept is not None and kept.title == "搅拌站"


async def test_a_problem_left_with_one_case_is_dissolved(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        a, b, c = await _cases(session, 3)
        problem = await similar.join_problem(session, [a, b, c], actor="staff:1", created_by_id=None)
        await similar.leave_problem(session, c, actor="staff:1")
    assert await _problem_of(sessionmaker, [a.id, b.id, c.id]) == [problem.id, problem.id, None]
    async with sessionmaker.begin() as session:
        b_loaded = await session.get(Case, b.id)
        assert b_loaded is not None
        await similar.leave_problem(session, b_loaded, actor="staff:1")
    assert await _problem_of(sessionmaker, [a.id, b.id, c.id]) == [None, None, None]
    async with sessionmaker() as session:
        assert await session.get(Problem, problem.id) is None


async def test_a_common_key_reads_only_the_newest_cases_with_it(sessionmaker: Any) -> None:
    """A key thousands of cases share (a formulaic text) costs a bounded read: the newest PER_KEY cases."""
    async with sessionmaker.begin() as session:
        cases = await _cases(session, 5)
        await similar.store_signatures(session, [(case.id, similar.StoredSignature(
            minhash=b"\x01\x00\x00\x00" * 4, terms=b"", band_keys=[7], place_keys=[-9])) for case in cases])
        found = await similar.candidates(session, band_keys=[7], place_keys=[], since=utcnow() - timedelta(days=1),
                                         per_key=3)
        by_place = await similar.candidates(session, band_keys=[], place_keys=[-9],
                                            since=utcnow() - timedelta(days=1), exclude=cases[-1].id,
                                            per_key=3)
    assert [candidate.case_id for candidate in found] == [case.id for case in reversed(cases[2:])]
    assert all(candidate.shared_bands == 1 and not candidate.same_place for candidate in found)
    assert [candidate.case_id for candidate in by_place] == [cases[3].id, cases[2].id]
    assert all(candidate.same_place and candidate.shared_bands == 0 for candidate in by_place)


async def test_signing_again_replaces_a_batch_of_signatures_and_their_keys(sessionmaker: Any) -> None:
    """The backfill stores a batch at once; a case signed before (an older signature version) keeps only its new
    keys, so a lookup by an old key no longer finds it."""
    async with sessionmaker.begin() as session:
        cases = await _cases(session, 3)
        old = similar.StoredSignature(minhash=b"\x01" * 16, terms=b"old", band_keys=[1, 2], place_keys=[-1])
        await similar.store_signatures(session, [(case.id, old) for case in cases])
    async with sessionmaker.begin() as session:
        new = similar.StoredSignature(minhash=b"\x02" * 16, terms=b"new", band_keys=[3], place_keys=[-3, -4])
        await similar.store_signatures(session, [(cases[0].id, new), (cases[1].id, new)])
    since = utcnow() - timedelta(days=1)
    async with sessionmaker() as session:
        stored = await similar.signature_of(session, cases[0].id)
        assert stored is not None
        assert (stored.minhash, stored.terms, sorted(stored.band_keys), sorted(stored.place_keys)) == (
            b"\x02" * 16, b"new", [3], [-4, -3])
        by_old = await similar.candidates(session, band_keys=[1], place_keys=[-1], since=since)
        by_new = await similar.candidates(session, band_keys=[3], place_keys=[], since=since)
    assert [candidate.case_id for candidate in by_old] == [cases[2].id]
    assert sorted(candidate.case_id for candidate in by_new) == [cases[0].id, cases[1].id]
