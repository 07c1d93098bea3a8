"""Retention's second half: a real-name reporter's own name and phone taken out of what was written about the case.

Residents who report under their name often write it, and their phone number, into the report itself
("我王秀英跑了三趟，请打 138 1234 5678 找我") and into what they add later; staff write them into notes
("已电话联系王秀英"). Erasing the contact fields alone left the case saying who filed it, and the search index
finding it by the phone number. When retention erases a case's contact (`storage.housekeeping.erase_old_contacts`),
the same transaction replaces every occurrence of that name and number in the case's texts by `ERASED_TEXT`. Only
real-name cases are read (their texts decrypted): an anonymous case's numbers and names are not known to be the
reporter's, and may be the evidence.

A case whose texts changed leaves the search index at once and is marked unindexed; the shell's housekeeping
indexes it again from its texts as they are now (`storage.search.unindexed`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import Attachment, Case, CaseTerm, ExtensionRequest, InternalNote, TraceEvent

ERASED_TEXT = "〔已删除〕"
"""What stands where the reporter's name or phone was."""

_BETWEEN_DIGITS = r"[\s\-－–—.·]*"  # what people type between a phone's digits: 138 1234 5678, 138-1234-5678
_DIGIT = "[{ascii}{wide}]"  # a digit as typed on either keyboard: 1 or １
_NOT_A_DIGIT_BEFORE, _NOT_A_DIGIT_AFTER = r"(?<![0-9０-９])", r"(?![0-9０-９])"
MIN_NAME = 2
"""A shorter name (one character) would take that character out of every word that has it."""
MIN_DIGITS = 7


def own_contact_pattern(name: str | None, phone: str | None) -> re.Pattern[str] | None:
    """What the reporter's `name` and `phone` look like in a text: the name as given; the phone's digits in ASCII
    or full width, with spaces or dashes between them and an optional +86 in front, not part of a longer number.
    None when neither is long enough to be told from other words."""
    parts = []
    digits = re.sub(r"\D", "", phone or "")
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) >= MIN_DIGITS:
        spelled = _BETWEEN_DIGITS.join(_DIGIT.format(ascii=d, wide=chr(0xFF10 + int(d))) for d in digits)
        parts.append(f"{_NOT_A_DIGIT_BEFORE}(?:[+＋]?(?:86|８６){_BETWEEN_DIGITS})?{spelled}{_NOT_A_DIGIT_AFTER}")
    name = (name or "").strip()
    if len(name) >= MIN_NAME:
        parts.append(re.escape(name))
    return re.compile("|".join(parts)) if parts else None


def _without_terms(terms: list[Any] | None, pattern: re.Pattern[str]) -> list[Any] | None:
    """The key terms (`[term, weight]` pairs) that are not the name or the phone."""
    if not terms:
        return terms
    return [term for term in terms if not pattern.search(str(term[0] if isinstance(term, list | tuple) else term))]


async def _scrub_rows(session: AsyncSession, model: Any, column: InstrumentedAttribute[Any],
                      patterns: dict[int, re.Pattern[str]]) -> set[int]:
    """`column` of `model`'s rows of these cases with the patterns replaced; the cases whose rows changed."""
    changed: set[int] = set()
    rows = await session.execute(select(model.id, model.case_id, column).where(
        model.case_id.in_(list(patterns)), column.is_not(None)))
    for row_id, case_id, text in rows.all():
        scrubbed = patterns[case_id].sub(ERASED_TEXT, text)
        if scrubbed != text:
            await session.execute(update(model).where(model.id == row_id).values({column.key: scrubbed})
                                  .execution_options(synchronize_session=False))
            changed.add(case_id)
    return changed


async def scrub_own_contacts(session: AsyncSession, case_ids: Sequence[int]) -> int:
    """Before these cases' contact fields are cleared: their reporter's own name and phone out of the case's place,
    time and description, its key terms, every trace entry's text (the reporter's follow-ups and staff answers),
    the staff notes, the extension reasons and the evidence files' original names. Returns how many cases
    changed (and were taken out of the search index until housekeeping indexes them again)."""
    known = await session.execute(select(Case.id, Case.reporter_name, Case.reporter_phone).where(
        Case.id.in_(list(case_ids)), or_(Case.reporter_name.is_not(None), Case.reporter_phone.is_not(None))))
    patterns = {case_id: pattern for case_id, name, phone in known.all()
                if (pattern := own_contact_pattern(name, phone)) is not None}
    if not patterns:
        return 0
    changed: set[int] = set()
    cases = await session.execute(select(Case.id, Case.place, Case.occurred, Case.description, Case.label_terms,
                                         Case.label_contrast_terms).where(Case.id.in_(list(patterns))))
    for case_id, place, occurred, description, terms, contrast in cases.all():
        pattern = patterns[case_id]
        texts = {"place": place, "occurred": occurred, "description": description}
        values: dict[str, Any] = {key: pattern.sub(ERASED_TEXT, text) for key, text in texts.items()
                                  if text and pattern.search(text)}
        for key, listed in (("label_terms", terms), ("label_contrast_terms", contrast)):
            if (kept := _without_terms(listed, pattern)) != listed:
                values[key] = kept
        if values:
            await session.execute(update(Case).where(Case.id == case_id).values(values)
                                  .execution_options(synchronize_session=False))
            changed.add(case_id)
    scrubbed: Iterable[tuple[Any, InstrumentedAttribute[Any]]] = (
        (TraceEvent, TraceEvent.body), (InternalNote, InternalNote.body), (ExtensionRequest, ExtensionRequest.reason),
        (Attachment, Attachment.original_name))
    for model, column in scrubbed:
        changed |= await _scrub_rows(session, model, column, patterns)
    if changed:
        await session.execute(delete(CaseTerm).where(CaseTerm.case_id.in_(sorted(changed)))
                              .execution_options(synchronize_session=False))
        await session.execute(update(Case).where(Case.id.in_(sorted(changed))).values(search_version=None)
                              .execution_options(synchronize_session=False))
    return len(changed)
