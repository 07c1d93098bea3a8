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
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import Attachment, Case, CaseTerm, ExtensionRequest, InternalNote, TraceEvent

ERASED_TEXT = "〔已删除〕"
"""What stands where the reporter's name or phone was."""

_WIDE = str.maketrans("０１２３４５６７８９＋", "0123456789+")
"""Full-width digits and plus (a Chinese keyboard's) as ASCII: one character for one, so positions stay."""
_NUMBER = re.compile(r"(?<![0-9])\+?[0-9](?:[\s\-－–—.·]?[0-9])*(?![0-9])")
"""A number as people type it: digits, with a space, dash or dot between some of them (138 1234 5678, 138-1234-5678),
perhaps +86 in front."""
_GROUP = re.compile(r"\+?[0-9]+")
MIN_NAME = 2
"""A shorter name (one character) would take that character out of every word that has it."""
MIN_DIGITS = 7


@dataclass(frozen=True)
class OwnContact:
    """The reporter's own name and phone as they may appear in a text (`scrub`)."""

    name: str
    digits: str  # the phone's digits, without +86

    @classmethod
    def of(cls, name: str | None, phone: str | None) -> OwnContact | None:
        """None when neither is long enough to be told from other words."""
        digits = re.sub(r"\D", "", phone or "")
        if digits.startswith("86") and len(digits) == 13:
            digits = digits[2:]
        name = (name or "").strip()
        contact = cls(name if len(name) >= MIN_NAME else "", digits if len(digits) >= MIN_DIGITS else "")
        return contact if contact.name or contact.digits else None

    def _phone_spans(self, text: str) -> list[tuple[int, int]]:
        """Where the phone is in `text`: in ASCII or full-width digits, with the separators people type, an optional
        +86, not part of a longer number (a number typed next to it, "13812345678 3次", is not part of it)."""
        spans = []
        wanted = (self.digits, "86" + self.digits)
        for number in _NUMBER.finditer(text.translate(_WIDE)):
            groups = [(number.start() + group.start(), number.start() + group.end(), group.group().lstrip("+"))
                      for group in _GROUP.finditer(number.group())]
            first = 0
            while first < len(groups):
                joined, last = "", first
                for last in range(first, len(groups)):
                    joined += groups[last][2]
                    if joined in wanted or len(joined) >= len(wanted[1]):
                        break
                if joined in wanted:
                    spans.append((groups[first][0], groups[last][1]))
                    first = last + 1
                else:
                    first += 1
        return spans

    def scrub(self, text: str) -> str:
        """`text` with the name and the phone replaced by `ERASED_TEXT`."""
        if self.digits:
            pieces, at = [], 0
            for start, end in self._phone_spans(text):
                pieces += [text[at:start], ERASED_TEXT]
                at = end
            text = "".join(pieces) + text[at:]
        return text.replace(self.name, ERASED_TEXT) if self.name else text

    def names(self, term: str) -> bool:
        """Whether a key term is the name or the phone (or holds either)."""
        return self.scrub(term) != term


def _without_terms(terms: list[Any] | None, contact: OwnContact) -> list[Any] | None:
    """The key terms (`[term, weight]` pairs) that are not the name or the phone."""
    if not terms:
        return terms
    return [term for term in terms if not contact.names(str(term[0] if isinstance(term, list | tuple) else term))]


async def _scrub_rows(session: AsyncSession, model: Any, column: InstrumentedAttribute[Any],
                      patterns: dict[int, OwnContact]) -> set[int]:
    """`column` of `model`'s rows of these cases with the patterns replaced, the changed rows in one executemany;
    the cases whose rows changed."""
    changed: set[int] = set()
    updates = []
    rows = await session.execute(select(model.id, model.case_id, column).where(
        model.case_id.in_(list(patterns)), column.is_not(None)))
    for row_id, case_id, text in rows.all():
        scrubbed = patterns[case_id].scrub(text)
        if scrubbed != text:
            updates.append({"b_id": row_id, "b_value": scrubbed})
            changed.add(case_id)
    if updates:
        table = model.__table__
        await session.execute(update(table).where(table.c.id == bindparam("b_id"))
                              .values({column.key: bindparam("b_value")}), updates)
    return changed


_CASE_TEXTS = ("place", "occurred", "description", "label_terms", "label_contrast_terms")


async def scrub_own_contacts(session: AsyncSession, case_ids: Sequence[int]) -> int:
    """Before these cases' contact fields are cleared: their reporter's own name and phone out of the case's place,
    time and description, its key terms, every trace entry's text (the reporter's follow-ups and staff answers),
    the staff notes, the extension reasons and the evidence files' original names. Returns how many cases
    changed (and were taken out of the search index until housekeeping indexes them again).

    Each table's changed rows are written by one executemany, not a statement a row: the batch is one write
    transaction, and on SQLite residents' steps wait for it (`python -m benchmarks.retention_round`)."""
    known = await session.execute(select(Case.id, Case.reporter_name, Case.reporter_phone).where(
        Case.id.in_(list(case_ids)), or_(Case.reporter_name.is_not(None), Case.reporter_phone.is_not(None))))
    patterns = {case_id: contact for case_id, name, phone in known.all()
                if (contact := OwnContact.of(name, phone)) is not None}
    if not patterns:
        return 0
    changed: set[int] = set()
    case_updates = []
    cases = await session.execute(select(Case.id, *(getattr(Case, key) for key in _CASE_TEXTS))
                                  .where(Case.id.in_(list(patterns))))
    for case_id, *values in cases.all():
        pattern = patterns[case_id]
        before = dict(zip(_CASE_TEXTS, values, strict=True))
        after = {key: pattern.scrub(text) if text else text for key, text in before.items()
                 if key in ("place", "occurred", "description")}
        after["label_terms"] = _without_terms(before["label_terms"], pattern)
        after["label_contrast_terms"] = _without_terms(before["label_contrast_terms"], pattern)
        if after != before:
            case_updates.append({"b_id": case_id, **{f"b_{key}": value for key, value in after.items()}})
            changed.add(case_id)
    if case_updates:
        table = cast(Table, Case.__table__)
        await session.execute(update(table).where(table.c.id == bindparam("b_id"))
                              .values({key: bindparam(f"b_{key}") for key in _CASE_TEXTS}), case_updates)
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
