"""Reads for the classifier's lifecycle: the reports staff labelled (training data), how many there are, and
the "needs labelling" list of the console."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case

EXCERPT_CHARS = 80
STAFF_LABEL_STATUSES = ("confirmed", "corrected")


@dataclass(frozen=True)
class LabellingItem:
    case_number: str
    queue: str
    status: str
    label: str | None
    predicted_label: str | None
    confidence: float | None
    label_status: str | None  # None, "confirmed" or "corrected"
    reason: str  # "unclassified", "low_confidence" or "corrected"
    created_at: datetime
    excerpt: str  # the start of the report text (staff-only; no reporter identity)


def needs_labelling_condition(threshold: float) -> ColumnElement[bool]:
    """Corrected by staff, or not reviewed yet and unclassified or below the confidence threshold."""
    return or_(
        Case.label_status == "corrected",
        (Case.label_status.is_(None)
         & or_(Case.label_confidence.is_(None), Case.label_confidence < threshold)),
    )


async def needs_labelling(session: AsyncSession, *, threshold: float, queues: Collection[str] | None = None,
                          limit: int = 50, offset: int = 0) -> tuple[list[LabellingItem], int]:
    """Cases to label first, and how many there are: unclassified and low-confidence ones nobody confirmed
    yet (least confident first), then those whose label staff corrected (to double-check before training)."""
    condition = needs_labelling_condition(threshold)
    scope = [Case.queue.in_(sorted(queues))] if queues is not None else []
    total = int(await session.scalar(select(func.count()).select_from(Case).where(condition, *scope)) or 0)
    query = (
        select(Case.case_number, Case.queue, Case.status, Case.label, Case.predicted_label, Case.label_confidence,
               Case.label_status, Case.created_at, Case.description)
        .where(condition, *scope)
        .order_by(sql_case((Case.label_status == "corrected", 1), else_=0),
                  sql_case((Case.label_confidence.is_(None), 0), else_=1),
                  Case.label_confidence.asc(), Case.created_at.desc(), Case.id.desc())
        .offset(offset).limit(limit))
    items = []
    for number, queue, status, label, predicted, confidence, label_status, created_at, excerpt in (
            await session.execute(query)).all():
        reason = "corrected" if label_status == "corrected" else "unclassified" if confidence is None \
            else "low_confidence"
        items.append(LabellingItem(number or "-", queue, status, label, predicted, confidence, label_status,
                                   reason, created_at, (excerpt or "")[:EXCERPT_CHARS]))
    return items, total


async def staff_label_counts(session: AsyncSession) -> dict[str, int]:
    """How many staff-labelled reports the next run will add: {"confirmed": n, "corrected": m}."""
    rows = await session.execute(
        select(Case.label_status, func.count())
        .where(Case.label_status.in_(STAFF_LABEL_STATUSES), Case.label.is_not(None))
        .group_by(Case.label_status))
    counts = {"confirmed": 0, "corrected": 0}
    counts.update({str(status): int(count) for status, count in rows.all()})
    return counts


async def training_examples(session: AsyncSession) -> list[tuple[str, str]]:
    """(text, label) of every case whose label staff confirmed or corrected."""
    query = select(Case.description, Case.label).where(Case.label_status.in_(STAFF_LABEL_STATUSES),
                                                       Case.label.is_not(None))
    return [(text, label) for text, label in (await session.execute(query)).all() if label is not None]
