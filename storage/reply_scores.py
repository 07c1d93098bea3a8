"""The quality scores of staff answers (`ReplyScore`), kept with the answer they were computed for, and their
averages (per queue or over several) for the statistics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
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
class Quality:
    """Average reply-quality scores (0–1) of `answers` answers; timeliness None when none had a deadline."""

    answers: int
    score: float
    relevance: float
    completeness: float
    clarity: float
    timeliness: float | None


_AVERAGES = (func.count(), func.avg(ReplyScore.score), func.avg(ReplyScore.relevance),
             func.avg(ReplyScore.completeness), func.avg(ReplyScore.clarity), func.avg(ReplyScore.timeliness))


def _quality(answers: Any, score: Any, relevance: Any, completeness: Any, clarity: Any, timeliness: Any) -> Quality:
    return Quality(int(answers), float(score), float(relevance), float(completeness), float(clarity),
                   None if timeliness is None else float(timeliness))


def _answered(since: datetime, until: datetime, queues: Iterable[str] | None) -> list[ColumnElement[bool]]:
    where = [ReplyScore.created_at >= since, ReplyScore.created_at < until]
    if queues is not None:
        where.append(ReplyScore.queue.in_(sorted(queues)))
    return where


async def by_queue(session: AsyncSession, since: datetime, until: datetime, *,
                   queues: Iterable[str] | None = None) -> dict[str, Quality]:
    """Average scores of the answers sent in [since, until), per queue (the queue the case was in then); queues
    without answers are absent."""
    statement = (select(ReplyScore.queue, *_AVERAGES).where(*_answered(since, until, queues))
                 .group_by(ReplyScore.queue))
    return {queue: _quality(*row) for queue, *row in await session.execute(statement)}


async def overall(session: AsyncSession, since: datetime, until: datetime, *,
                  queues: Iterable[str] | None = None) -> Quality | None:
    """Average scores of all the answers sent in [since, until) from `queues` (every queue when None); None
    without any."""
    row = (await session.execute(select(*_AVERAGES).where(*_answered(since, until, queues)))).one()
    return _quality(*row) if row[0] else None
