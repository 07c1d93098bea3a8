"""The quality scores of staff answers (`ReplyScore`), kept with the answer they were computed for, and their
averages per queue for the statistics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, ReplyScore, TraceEvent


@dataclass(frozen=True)
class Scores:
    score: float
    relevance: float
    completeness: float
    clarity: float
    timeliness: float | None
    reasons: Sequence[Mapping[str, Any]]  # {"code": ..., "params": {...}}: rendered in the reader's language


async def record(session: AsyncSession, event: TraceEvent, answered: Case, scores: Scores) -> ReplyScore:
    row = ReplyScore(trace_event_id=event.id, case_id=answered.id, queue=answered.queue, score=scores.score,
                     relevance=scores.relevance, completeness=scores.completeness, clarity=scores.clarity,
                     timeliness=scores.timeliness, reasons=[dict(reason) for reason in scores.reasons])
    session.add(row)
    await session.flush()
    return row


async def of_events(session: AsyncSession, event_ids: Iterable[int]) -> dict[int, ReplyScore]:
    """The scores of answers, by trace event id (answers sent before scoring have none)."""
    ids = list(event_ids)
    if not ids:
        return {}
    rows = await session.execute(select(ReplyScore).where(ReplyScore.trace_event_id.in_(ids)))
    return {row.trace_event_id: row for row in rows.scalars()}


@dataclass(frozen=True)
class QueueQuality:
    queue: str
    answers: int
    score: float
    relevance: float
    completeness: float
    clarity: float
    timeliness: float | None
    below: int  # answers scored under the threshold


async def by_queue(session: AsyncSession, since: datetime, until: datetime, *, threshold: float,
                   queues: Iterable[str] | None = None) -> list[QueueQuality]:
    """Average scores of the answers sent in [since, until) per queue (the queue the case was in then)."""
    statement = (select(ReplyScore.queue, func.count(), func.avg(ReplyScore.score), func.avg(ReplyScore.relevance),
                        func.avg(ReplyScore.completeness), func.avg(ReplyScore.clarity),
                        func.avg(ReplyScore.timeliness),
                        func.sum(case((ReplyScore.score < threshold, 1), else_=0)))
                 .where(ReplyScore.created_at >= since, ReplyScore.created_at < until)
                 .group_by(ReplyScore.queue).order_by(ReplyScore.queue))
    if queues is not None:
        statement = statement.where(ReplyScore.queue.in_(list(queues)))
    rows = await session.execute(statement)
    return [QueueQuality(queue, int(count), float(score), float(relevance), float(completeness), float(clarity),
                         None if timeliness is None else float(timeliness), int(below or 0))
            for queue, count, score, relevance, completeness, clarity, timeliness, below in rows]
