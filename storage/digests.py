"""Each queue's daily digest for its staff channels: what it says (a read) and its messages in the outbox
(an action). The wording is the console's (`console.digest`); the schedule is the shell's (`bot.jobs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox
from storage.models import Case
from storage.queries import NOT_ACCEPTED, OPEN_STATUSES, overdue_condition

DIGEST_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class OverdueCase:
    """A case past a deadline: only the deadlines that have passed are set."""

    case_number: str
    accept_due_at: datetime | None
    resolve_due_at: datetime | None

    @property
    def since(self) -> datetime:
        passed = [due for due in (self.accept_due_at, self.resolve_due_at) if due is not None]
        return min(passed)


@dataclass(frozen=True)
class DueSoonCase:
    """An open case whose next deadline ("accept" or "resolve") has not passed but is near."""

    case_number: str
    kind: str
    due: datetime


@dataclass
class DigestFacts:
    """One queue at `now`: cases filed in the last 24 hours, open cases by status, every overdue case, most
    overdue first, and — when asked with `soon_until` — every case due soon (not overdue, a deadline at or
    before `soon_until`), soonest first. Case numbers and deadlines only — never anything about the reporter."""

    queue: str
    now: datetime
    new_cases: int = 0
    open_by_status: dict[str, int] = field(default_factory=dict)
    overdue: list[OverdueCase] = field(default_factory=list)
    soon_until: datetime | None = None
    due_soon: list[DueSoonCase] = field(default_factory=list)

    @property
    def open_cases(self) -> int:
        return sum(self.open_by_status.values())

    @property
    def waiting(self) -> int:
        """Open cases not accepted yet."""
        return sum(count for status, count in self.open_by_status.items() if status in NOT_ACCEPTED)


async def digest_facts(session: AsyncSession, queue: str, now: datetime,
                       soon_until: datetime | None = None) -> DigestFacts:
    """The facts of a queue's digest; with `soon_until` (the loop's warning horizon) also its cases due soon."""
    facts = DigestFacts(queue=queue, now=now, soon_until=soon_until)
    facts.new_cases = int(await session.scalar(select(func.count()).select_from(Case).where(
        Case.queue == queue, Case.created_at >= now - DIGEST_WINDOW, Case.created_at < now)) or 0)
    open_rows = await session.execute(select(Case.status, func.count()).where(
        Case.queue == queue, Case.status.in_(OPEN_STATUSES)).group_by(Case.status))
    facts.open_by_status = {status: int(count) for status, count in open_rows.all()}
    overdue_rows = await session.execute(
        select(Case.case_number, Case.status, Case.accept_due_at, Case.resolve_due_at)
        .where(Case.queue == queue, overdue_condition(now)))
    for number, status, accept_due, resolve_due in overdue_rows.all():
        accept_passed = status in NOT_ACCEPTED and accept_due is not None and accept_due < now
        resolve_passed = status in OPEN_STATUSES and resolve_due is not None and resolve_due < now
        facts.overdue.append(OverdueCase(number or "-", accept_due if accept_passed else None,
                                         resolve_due if resolve_passed else None))
    facts.overdue.sort(key=lambda case: (case.since, case.case_number))
    if soon_until is not None:
        facts.due_soon = await _due_soon(session, queue, now, soon_until)
    return facts


async def _due_soon(session: AsyncSession, queue: str, now: datetime, soon_until: datetime) -> list[DueSoonCase]:
    rows = await session.execute(
        select(Case.case_number, Case.status, Case.accept_due_at, Case.resolve_due_at)
        .where(Case.queue == queue, Case.status.in_(OPEN_STATUSES),
               Case.accept_due_at.between(now, soon_until) | Case.resolve_due_at.between(now, soon_until)))
    found = []
    for number, status, accept_due, resolve_due in rows.all():
        not_accepted = status in NOT_ACCEPTED
        if (not_accepted and accept_due is not None and accept_due < now) or (
                resolve_due is not None and resolve_due < now):
            continue  # overdue: listed as such
        near = [(due, kind) for due, kind, counts in ((accept_due, "accept", not_accepted),
                                                       (resolve_due, "resolve", True))
                if counts and due is not None and now <= due <= soon_until]
        if near:
            due, kind = min(near)
            found.append(DueSoonCase(number or "-", kind, due))
    found.sort(key=lambda case: (case.due, case.case_number))
    return found


async def enqueue_digest(session: AsyncSession, *, targets: Sequence[tuple[str, str]], text: str) -> int:
    """The digest `text` to each (channel, recipient) of a queue's staff channels; returns how many."""
    for channel, recipient in targets:
        await outbox.enqueue(session, channel=channel, recipient=recipient, payload={"text": text})
    return len(targets)
