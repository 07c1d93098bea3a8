"""Similar cases and problems (issue 15): each case's keyed similarity signature, the lookup of the cases that
share a band key or a place key with a report, and problems that group cases.

The room above computes the signatures (`nlp.similarity`, under `KeyRing.similarity_key`) and ranks what
`candidates` returns; this module stores integers and reads them back. One lookup is one statement on both
backends: for each of the report's keys the newest `PER_KEY` cases with it (a read of the (key, case_id) primary
key), so a key thousands of cases share costs no more than a rare one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, delete, func, insert, literal, select, union_all, update
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Case,
    CaseSignature,
    Problem,
    SimilarityBand,
    SimilarityPlace,
    TraceEvent,
    TraceKind,
)

PER_KEY = 200
"""How many of the newest cases with one band or place key a lookup reads."""

SIGNATURE_VERSION = 1
_SIGNATURES = cast(Table, CaseSignature.__table__)
_BANDS = cast(Table, SimilarityBand.__table__)
_PLACES = cast(Table, SimilarityPlace.__table__)


@dataclass(frozen=True)
class StoredSignature:
    """What intake stores for a case: the MinHash and term hashes as bytes, band and place keys as integers."""

    minhash: bytes
    terms: bytes
    band_keys: Sequence[int]
    place_keys: Sequence[int]


@dataclass(frozen=True)
class Candidate:
    """A case that shares a band key (`shared_bands` > 0) or a place key (`same_place`) with a report."""

    case_id: int
    case_number: str | None
    created_at: datetime
    district: str | None
    status: str
    queue: str
    problem_id: int | None
    minhash: bytes
    shared_bands: int
    same_place: bool


async def store_signatures(session: AsyncSession, signed: Sequence[tuple[int, StoredSignature]]) -> None:
    """Store (or replace) the signatures of a batch of cases, with their band and place keys: six statements for
    the batch (the old rows deleted, the new ones inserted, each table once), so that signing a city's backlog —
    after an upgrade, or when the signature changes version — costs statements per batch, not per case."""
    if not signed:
        return
    ids = [case_id for case_id, _ in signed]
    for table in (_SIGNATURES, _BANDS, _PLACES):
        await session.execute(delete(table).where(table.c.case_id.in_(ids)))
    await _insert(session, signed)


async def add_signature(session: AsyncSession, case_id: int, signature: StoredSignature) -> None:
    """The signature of a case that has none yet (one just filed): inserted, with nothing to replace."""
    await _insert(session, [(case_id, signature)])


async def _insert(session: AsyncSession, signed: Sequence[tuple[int, StoredSignature]]) -> None:
    await session.execute(insert(_SIGNATURES), [
        {"case_id": case_id, "minhash": signature.minhash, "terms": signature.terms, "version": SIGNATURE_VERSION}
        for case_id, signature in signed])
    bands = [{"band_key": key, "case_id": case_id} for case_id, signature in signed
             for key in sorted(set(signature.band_keys))]
    places = [{"place_key": key, "case_id": case_id} for case_id, signature in signed
              for key in sorted(set(signature.place_keys))]
    if bands:
        await session.execute(insert(_BANDS), bands)
    if places:
        await session.execute(insert(_PLACES), places)


def _newest(table: Table, column: str, key: str, limit: int) -> Select[tuple[int]]:
    return (select(table.c.case_id).where(table.c[column] == bindparam(key))
            .order_by(table.c.case_id.desc()).limit(limit))


@lru_cache(maxsize=64)
def _statement(bands: int, places: int, per_key: int, exclude: bool, limit: int | None,
               exclude_author: bool = False) -> Select[Any]:
    """The lookup for a report with `bands` band keys and `places` place keys, the keys as parameters b0…, p0…:
    built once per shape (a signature has a fixed number of bands), so a lookup only binds its keys."""
    parts = [select(literal(1).label("band"), literal(0).label("place"), newest.c.case_id)
             for newest in (_newest(_BANDS, "band_key", f"b{index}", per_key).subquery() for index in range(bands))]
    parts += [select(literal(0).label("band"), literal(1).label("place"), newest.c.case_id)
              for newest in (_newest(_PLACES, "place_key", f"p{index}", per_key).subquery()
                             for index in range(places))]
    hits = union_all(*parts).subquery("hits")
    shared = (select(hits.c.case_id, func.sum(hits.c.band).label("bands"), func.max(hits.c.place).label("place"))
              .group_by(hits.c.case_id).subquery("shared"))
    statement = (select(Case.id, Case.case_number, Case.created_at, Case.district, Case.status, Case.queue,
                        Case.problem_id, CaseSignature.minhash, shared.c.bands, shared.c.place)
                 .join(shared, shared.c.case_id == Case.id)
                 .join(CaseSignature, CaseSignature.case_id == Case.id)
                 .where(Case.created_at >= bindparam("since")))
    if exclude:
        statement = statement.where(Case.id != bindparam("exclude"))
    if exclude_author:
        statement = statement.where((Case.channel != bindparam("author_channel"))
                                    | (Case.reporter_key != bindparam("author_key")))
    if limit is None:
        return statement.order_by(Case.id.desc())
    return statement.order_by(shared.c.bands.desc(), shared.c.place.desc(), Case.id.desc()).limit(limit)


async def candidates(session: AsyncSession, *, band_keys: Iterable[int], place_keys: Iterable[int],
                     since: datetime, exclude: int | None = None, per_key: int = PER_KEY,
                     limit: int | None = None, exclude_author: tuple[str, str] | None = None) -> list[Candidate]:
    """The cases created since `since` that share a band key or a place key with a report, newest first, each
    once, with how many band keys it shares and whether it shares a place key. Of each key only the newest
    `per_key` cases are read. With `limit`, only the `limit` cases that share the most band keys (then a place
    key, then the newest) come back, in that order: the statement does the cheap pre-ranking. `exclude_author`
    (channel, reporter pseudonym) leaves out that resident's own cases."""
    bands = sorted(set(band_keys))
    places = sorted(set(place_keys))
    if not bands and not places:
        return []
    parameters: dict[str, object] = {f"b{index}": key for index, key in enumerate(bands)}
    parameters |= {f"p{index}": key for index, key in enumerate(places)}
    parameters["since"] = since
    if exclude is not None:
        parameters["exclude"] = exclude
    if exclude_author is not None:
        parameters["author_channel"], parameters["author_key"] = exclude_author
    rows = await session.execute(_statement(len(bands), len(places), per_key, exclude is not None, limit,
                                            exclude_author is not None), parameters)
    return [Candidate(case_id=row[0], case_number=row[1], created_at=row[2], district=row[3], status=row[4],
                      queue=row[5], problem_id=row[6], minhash=row[7], shared_bands=int(row[8] or 0),
                      same_place=bool(row[9]))
            for row in rows]


async def signature_of(session: AsyncSession, case_id: int) -> StoredSignature | None:
    """A stored case's signature, or None for a case from before signatures (housekeeping computes it)."""
    stored = await session.get(CaseSignature, case_id)
    if stored is None:
        return None
    bands = (await session.execute(select(SimilarityBand.band_key).where(SimilarityBand.case_id == case_id))).scalars()
    places = (await session.execute(select(SimilarityPlace.place_key)
                                    .where(SimilarityPlace.case_id == case_id))).scalars()
    return StoredSignature(stored.minhash, stored.terms, list(bands), list(places))


async def unsigned(session: AsyncSession, limit: int = 200, after: int = 0) -> list[tuple[int, str, str]]:
    """Cases without a signature of the current version, in id order from `after` on: (id, place, description)
    for the room above. A backfill passes the last id of its previous batch, so each batch starts where the last
    one stopped instead of passing every case signed so far again."""
    rows = await session.execute(
        select(Case.id, Case.place, Case.description)
        .outerjoin(CaseSignature, CaseSignature.case_id == Case.id)
        .where(Case.id > after, (CaseSignature.case_id.is_(None)) | (CaseSignature.version < SIGNATURE_VERSION))
        .order_by(Case.id).limit(limit))
    return [(row[0], row[1], row[2]) for row in rows]


@dataclass(frozen=True)
class PeriodRecord:
    """One case of a period for hot-issue grouping: integers and labels, no text."""

    case_id: int
    created_at: datetime
    terms: bytes
    #: the pseudonym of a report's author under their name; None for an anonymous report, which must never be
    #: counted together with another report (that would tell staff the two share an author)
    reporter_key: str | None
    label: str | None
    queue: str
    status: str


PERIOD_READ_BATCH = 2000
"""Rows of a period read at a time: between two batches the event loop serves other requests (a month at a
million cases is 40,000 rows, which read at once held the loop for about half a second)."""


async def period_records(session: AsyncSession, since: datetime, until: datetime, *,
                         queues: Iterable[str] | None = None) -> list[PeriodRecord]:
    """The signed cases created in [since, until), optionally only those in `queues`, oldest first; streamed
    from the database in batches of `PERIOD_READ_BATCH`."""
    author = sql_case((Case.anonymous, None), else_=Case.reporter_key)
    statement = (select(Case.id, Case.created_at, CaseSignature.terms, author, Case.label, Case.queue, Case.status)
                 .join(CaseSignature, CaseSignature.case_id == Case.id)
                 .where(Case.created_at >= since, Case.created_at < until)
                 .order_by(Case.id))
    if queues is not None:
        statement = statement.where(Case.queue.in_(list(queues)))
    records: list[PeriodRecord] = []
    result = await session.stream(statement.execution_options(yield_per=PERIOD_READ_BATCH))
    async for rows in result.partitions():
        records.extend(PeriodRecord(*row) for row in rows)
    return records


# Problems ------------------------------------------------------------------------------------------------


async def problem_cases(session: AsyncSession, problem_id: int) -> list[Case]:
    """The cases of a problem, oldest first."""
    return list((await session.execute(select(Case).where(Case.problem_id == problem_id)
                                       .order_by(Case.id))).scalars())


async def join_problem(session: AsyncSession, cases: Sequence[Case], *, actor: str, created_by_id: int | None,
                       title: str | None = None) -> Problem:
    """Put `cases` into one problem: the problem one of them is in already (the oldest such), with the other
    cases' problems merged into it, or a new one. Each case that changes problem gets an internal trace event."""
    if not cases:
        raise ValueError("a problem needs cases")
    existing = sorted({case.problem_id for case in cases if case.problem_id is not None})
    if existing:
        problem = await session.get(Problem, existing[0])
        assert problem is not None
        if len(existing) > 1:  # merging problems: every case of the others moves along
            merged = await session.execute(
                update(Case).where(Case.problem_id.in_(existing[1:])).values(problem_id=problem.id)
                .returning(Case.id))
            for case_id in merged.scalars():
                session.add(TraceEvent(case_id=case_id, kind=TraceKind.LINKED, actor=actor,
                                       detail={"problem": problem.id, "internal": True}))
            for case in cases:
                if case.problem_id in existing[1:]:
                    case.problem_id = problem.id
            for other in existing[1:]:
                stale = await session.get(Problem, other)
                if stale is not None:
                    await session.delete(stale)
    else:
        problem = Problem(title=title, created_by_id=created_by_id)
        session.add(problem)
        await session.flush()
    if title and not problem.title:
        problem.title = title
    for case in cases:
        if case.problem_id != problem.id:
            case.problem_id = problem.id
            session.add(TraceEvent(case_id=case.id, kind=TraceKind.LINKED, actor=actor,
                                   detail={"problem": problem.id, "internal": True}))
    await session.flush()
    return problem


async def leave_problem(session: AsyncSession, case: Case, *, actor: str) -> list[Case]:
    """Take a case out of its problem; a problem left with fewer than two cases is dissolved. Returns the cases
    taken out with it (the one left alone in a dissolved problem), each with its internal trace event too."""
    problem_id = case.problem_id
    if problem_id is None:
        return []
    case.problem_id = None
    session.add(TraceEvent(case_id=case.id, kind=TraceKind.LINKED, actor=actor,
                           detail={"problem": None, "left": problem_id, "internal": True}))
    await session.flush()
    rest = await problem_cases(session, problem_id)
    if len(rest) >= 2:
        return []
    for other in rest:
        other.problem_id = None
        session.add(TraceEvent(case_id=other.id, kind=TraceKind.LINKED, actor=actor,
                               detail={"problem": None, "left": problem_id, "internal": True}))
    problem = await session.get(Problem, problem_id)
    if problem is not None:
        await session.delete(problem)
    await session.flush()
    return rest
