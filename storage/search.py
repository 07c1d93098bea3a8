"""The console's search index: keyed hashes of a case's words (`case_terms`), never the words.

The room above computes the terms (`nlp.search`); these functions hash them with the engine's key ring
and store or look them up. A case indexed with an older version of the terms (`INDEX_VERSION`), or from
before the index existed, is found by `unindexed` and indexed again by the shell's housekeeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from storage.crypto import session_keyring
from storage.models import Case, CaseTerm, TraceEvent, TraceKind

INDEX_VERSION = 2
"""1: jieba words and the two-character pieces of long Chinese words; 2: also the parts of a word mixing Chinese
with digits or letters (`nlp.search`)."""
RARE_ENOUGH = 1_000
"""A term with more cases than this counts as common when choosing which term's list a search reads."""
_TERMS = cast(Table, CaseTerm.__table__)


async def add_terms(session: AsyncSession, case_id: int, created_at: datetime, terms: Iterable[str]) -> None:
    """Index a case (or what was added to it) by `terms`; terms it has already are kept once. `created_at` is the
    case's: the index lists a term's cases newest first."""
    ring = session_keyring(session)
    hashes = {ring.search_hash(term) for term in terms}
    if not hashes:
        return
    known = set((await session.execute(select(CaseTerm.term).where(CaseTerm.case_id == case_id,
                                                                    CaseTerm.term.in_(hashes)))).scalars())
    new = sorted(hashes - known)
    if new:
        await session.execute(insert(_TERMS), [{"term": term, "case_id": case_id, "created_at": created_at}
                                               for term in new])


async def reindex(session: AsyncSession, cases: Sequence[tuple[int, Iterable[str]]]) -> None:
    """Replace these cases' terms (the terms' definition changed) and record the version, in four statements for
    the whole batch: the housekeeping that catches up after an upgrade holds SQLite's one write lock as briefly as
    it can, as residents' steps wait behind it (docs/benchmarks.md, "A million cases on SQLite"). A case erased
    meanwhile is skipped."""
    ids = [case_id for case_id, _ in cases]
    if not ids:
        return
    created = dict((await session.execute(select(Case.id, Case.created_at).where(Case.id.in_(ids)))).tuples().all())
    await session.execute(delete(CaseTerm).where(CaseTerm.case_id.in_(ids)))
    ring = session_keyring(session)
    rows = [{"term": term, "case_id": case_id, "created_at": created[case_id]}
            for case_id, terms in cases if case_id in created
            for term in sorted({ring.search_hash(word) for word in terms})]
    if rows:
        await session.execute(insert(_TERMS), rows)
    if created:
        await session.execute(update(Case).where(Case.id.in_(list(created))).values(search_version=INDEX_VERSION))


async def unindexed(session: AsyncSession, limit: int = 200) -> list[tuple[int, list[str]]]:
    """Cases indexed with an older version, or not at all, and their texts (place, description, follow-ups)."""
    stale = or_(Case.search_version.is_(None), Case.search_version < INDEX_VERSION)
    cases = (await session.execute(select(Case.id, Case.place, Case.description).where(stale)
                                   .order_by(Case.id).limit(limit))).all()
    if not cases:
        return []
    bodies: dict[int, list[str]] = {}
    rows = await session.execute(select(TraceEvent.case_id, TraceEvent.body).where(
        TraceEvent.case_id.in_([case_id for case_id, _, _ in cases]), TraceEvent.kind == TraceKind.FOLLOW_UP,
        TraceEvent.body.is_not(None)))
    for case_id, body in rows:
        bodies.setdefault(case_id, []).append(body or "")
    return [(case_id, [place, description, *bodies.get(case_id, [])]) for case_id, place, description in cases]


async def rarest_first(session: AsyncSession, terms: Sequence[str]) -> list[int]:
    """The keyed hashes of `terms`, the term with the fewest cases first (counted up to `RARE_ENOUGH` each, from
    the index alone), so that a search walks the shortest list of cases and checks the other terms on it."""
    ring = session_keyring(session)
    hashes = sorted({ring.search_hash(term) for term in terms})
    if len(hashes) < 2:
        return hashes
    counts: dict[int, int] = {}
    for term in hashes:
        listed = select(CaseTerm.case_id).where(CaseTerm.term == term).limit(RARE_ENOUGH).subquery()
        counts[term] = int(await session.scalar(select(func.count()).select_from(listed)) or 0)
    return sorted(hashes, key=lambda term: (counts[term], term))


def having(case_id: ColumnElement[int] | InstrumentedAttribute[int],
           hashes: Sequence[int]) -> list[ColumnElement[bool]]:
    """The case `case_id` has each of `hashes` (one index probe on (term, case_id) per term)."""
    return [exists().where(CaseTerm.term == term, CaseTerm.case_id == case_id) for term in hashes]


def cases_with(hashes: Sequence[int]) -> Select[Any]:
    """The ids of the cases that have every one of `hashes` (`rarest_first`'s order: the first one's list is read)."""
    first, *others = hashes
    listed = aliased(CaseTerm)  # not case_terms itself: `having`'s subqueries would correlate to it and test nothing
    return select(listed.case_id).where(listed.term == first, *having(listed.case_id, others))
