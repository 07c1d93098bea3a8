"""Similar cases (issue 15): the signature a report gets at intake and the ranking of the cases that share a band
or place key with it. Shared by the dialog (submit), the console (ticket) and the housekeeping that signs cases
from before signatures.

The signature is computed under `KeyRing.similarity_key`, the engine's key ring's key for this purpose, so the
stored integers mean nothing without it (docs/mining.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.city import Similarity
from nlp.similarity import Signature, SimilarityHasher, combined_score, similarities
from storage import similar
from storage.crypto import session_keyring
from storage.models import Case


@lru_cache(maxsize=4)
def _hasher(key: bytes) -> SimilarityHasher:
    return SimilarityHasher(key)


def hasher_for(session: AsyncSession) -> SimilarityHasher:
    """The hasher under the key of the session's engine."""
    return _hasher(session_keyring(session).similarity_key)


def stored(signature: Signature, terms: np.ndarray) -> similar.StoredSignature:
    return similar.StoredSignature(minhash=signature.minhash_bytes(), terms=terms.astype("<u4").tobytes(),
                                   band_keys=signature.band_keys, place_keys=signature.place_keys)


def sign(session: AsyncSession, description: str, place: str | None) -> similar.StoredSignature:
    """The signature of a report's description at its place."""
    hasher = hasher_for(session)
    terms = hasher.term_hashes(description)
    return stored(hasher.signature_of_terms(terms, place), terms)


async def sign_new_case(session: AsyncSession, case_id: int, description: str,
                        place: str | None) -> similar.StoredSignature:
    """Sign a case just filed (it has no signature yet) and store the signature."""
    signature = sign(session, description, place)
    await similar.add_signature(session, case_id, signature)
    return signature


@dataclass(frozen=True)
class SimilarCase:
    case_id: int
    case_number: str | None
    score: float
    text_similarity: float
    same_place: bool
    same_district: bool
    status: str
    queue: str
    created_at: datetime
    problem_id: int | None


async def find(session: AsyncSession, signature: similar.StoredSignature, *, district: str | None,
               created_at: datetime, settings: Similarity, exclude: int | None = None,
               ranked: int | None = None, exclude_author: tuple[str, str] | None = None) -> list[SimilarCase]:
    """The cases of the last `settings.window_days` days (before or after `created_at`) that score at least
    `settings.threshold`, best first. With `ranked`, only that many candidates are scored: those sharing the
    most band keys with the report (the estimate of their text similarity that the statement can rank by) —
    enough to tell whether similar cases exist, where a common report may have hundreds. `exclude_author`
    (channel, reporter pseudonym) leaves out that resident's own cases."""
    since = created_at - timedelta(days=settings.window_days)
    found = await similar.candidates(session, band_keys=signature.band_keys, place_keys=signature.place_keys,
                                     since=since, exclude=exclude, limit=ranked, exclude_author=exclude_author)
    if not found:
        return []
    query = Signature.from_minhash_bytes(signature.minhash, signature.band_keys, signature.place_keys)
    minhashes = np.frombuffer(b"".join(candidate.minhash for candidate in found), dtype="<u4").reshape(len(found), -1)
    text_similarity = similarities(query, minhashes)
    result = []
    for candidate, text in zip(found, text_similarity, strict=True):
        days = abs((created_at - candidate.created_at).total_seconds()) / 86400
        same_district = district is not None and candidate.district == district
        score = combined_score(float(text), candidate.same_place, same_district, days)
        if score >= settings.threshold:
            result.append(SimilarCase(candidate.case_id, candidate.case_number, round(score, 3),
                                      round(float(text), 3), candidate.same_place, same_district, candidate.status,
                                      candidate.queue, candidate.created_at, candidate.problem_id))
    result.sort(key=lambda item: (-item.score, -item.case_id))
    return result


async def similar_to(session: AsyncSession, case: Case, settings: Similarity) -> list[SimilarCase]:
    """The similar cases of a stored case. A case from before signatures is signed here in memory (the read
    session stores nothing; housekeeping stores its signature)."""
    signature = await similar.signature_of(session, case.id)
    if signature is None:
        signature = sign(session, case.description, case.place)
    return await find(session, signature, district=case.district, created_at=case.created_at, settings=settings,
                      exclude=case.id)
