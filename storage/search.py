"""The console's search index: keyed hashes of a case's words (`case_terms`), never the words.

The room above computes the terms (`nlp.search`); these functions hash them with the engine's key ring
and store or look them up. A case indexed with an older version of the terms (`INDEX_VERSION`), or from
before the index existed, is found by `unindexed` and indexed again by the shell's housekeeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.crypto import session_keyring
from storage.models import Case, CaseTerm, TraceEvent, TraceKind

INDEX_VERSION = 1
_TERMS = cast(Table, CaseTerm.__table__)


async def add_terms(session: AsyncSession, case_id: int, terms: Iterable[str]) -> None:
    """Index a case (or what was added to it) by `terms`; terms it has already are kept once."""
    ring = session_keyring(session)
    hashes = {ring.search_hash(term) for term in terms}
    if not hashes:
        return
    known = set((await session.execute(select(CaseTerm.term).where(CaseTerm.case_id == case_id,
                                                                    CaseTerm.term.in_(hashes)))).scalars())
    new = sorted(hashes - known)
    if new:
        await session.execute(insert(_TERMS), [{"term": term, "case_id": case_id} for term in new])


async def reindex(session: AsyncSession, case_id: int, terms: Iterable[str]) -> None:
    """Replace a case's terms (the terms' definition changed) and record the version."""
    await session.execute(delete(CaseTerm).where(CaseTerm.case_id == case_id))
    await add_terms(session, case_id, terms)
    await session.execute(update(Case).where(Case.id == case_id).values(search_version=INDEX_VERSION))


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


def matching(session: AsyncSession, terms: Sequence[str]) -> ColumnElement[bool]:
    """Cases that have every one of `terms` (a condition on `Case.id`).

    One `EXISTS` per term, each an index probe on the key (term, case_id): the database can walk a list in its
    order (newest first) and stop at the page's end, probing each case, when the terms are common, or start
    from the few cases that have a rare term. A set of every matching case (IN with GROUP BY) would be built
    in full before the first row of a page: 190,000 cases for a common word at a million."""
    ring = session_keyring(session)
    hashes = sorted({ring.search_hash(term) for term in terms})
    return and_(*[exists().where(CaseTerm.term == term, CaseTerm.case_id == Case.id) for term in hashes])
