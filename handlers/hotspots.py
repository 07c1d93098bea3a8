"""Hot issues in the product (issue 15): the refresh that groups a period's signed cases into problems, and the
view of a refresh for one member of staff, described from the cases they may see.

The refresh works on integers only (`CaseSignature.terms`, keyed shingle hashes); the description of a group is
built when it is shown, from the decrypted reports of its cases in the viewer's queues, so neither the stored
refresh nor one reviewer's view holds text from cases the viewer may not read.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.city import Similarity
from nlp.hotspots import CaseRecord, HotGroup, Message, describe, group_cases, weekly_counts
from storage import hotspots, similar
from storage.models import Case, HotIssueRun


def group(rows: list[similar.PeriodRecord], now: datetime, top: int,
          tz: tzinfo | None = None) -> tuple[list[dict[str, Any]], float]:
    """The `top` groups of a period as stored in a run (JSON), and the seconds the grouping took. A report under a
    name is read with the reporter's pseudonym as author (one resident's repeated reports count once), an anonymous
    one without (it counts as a resident of its own, so that the heat tells nothing of who wrote it)."""
    began = time.perf_counter()
    records = [CaseRecord(row.case_id, row.created_at, np.frombuffer(row.terms, dtype="<u4").astype(np.uint32),
                          0, row.label, row.reporter_key) for row in rows]
    groups = group_cases(records, now=now, top=top, tz=tz)  # weeks in the city's time
    return [_stored(item) for item in groups], time.perf_counter() - began


def _stored(item: HotGroup) -> dict[str, Any]:
    return {"case_ids": [int(case_id) for case_id in item.case_ids],  # type: ignore[call-overload]
            "heat": round(item.heat, 3), "residents": item.residents, "volume": item.volume,
            "first": item.first.isoformat(), "last": item.last.isoformat(),
            "central_id": int(item.central_id),  # type: ignore[call-overload]
            "cohesion": round(item.cohesion, 4), "labels": item.labels,
            "weekly": [[week.isoformat(), count] for week, count in item.weekly]}


async def store(session: AsyncSession, *, computed_at: datetime, since: datetime, until: datetime, cases: int,
                seconds: float, groups: list[dict[str, Any]]) -> HotIssueRun:
    return await hotspots.store_run(session, computed_at=computed_at, since=since, until=until, cases=cases,
                                    seconds=seconds, groups=groups)


def due(run: HotIssueRun | None, now: datetime, every: timedelta) -> bool:
    return run is None or now - run.computed_at >= every


GROUPS_KEPT = 50
"""Groups kept per refresh: more than any page shows, so that a reviewer whose queues hold few of the top groups
still sees the groups of their own queues."""


async def refresh(sessionmaker: async_sessionmaker[AsyncSession], settings: Similarity, now: datetime, *,
                  force: bool = False, read_sessionmaker: async_sessionmaker[AsyncSession] | None = None,
                  tz: tzinfo | None = None) -> HotIssueRun | None:
    """Group the last `settings.hotspot_days` days when the newest refresh is older than
    `settings.hotspot_refresh_minutes` (or `force`); the grouping runs off the event loop, between a read
    (through `read_sessionmaker` where given: on SQLite it then takes no write lock) and a short write.
    Returns the new refresh, or None when none was due."""
    since = now - timedelta(days=settings.hotspot_days)
    async with (read_sessionmaker or sessionmaker)() as session:
        if not force and not due(await hotspots.latest_run(session), now,
                                 timedelta(minutes=settings.hotspot_refresh_minutes)):
            return None
        records = await similar.period_records(session, since, now)  # `group` turns them into arrays, off the loop
    groups, seconds = await asyncio.to_thread(group, records, now, GROUPS_KEPT, tz)
    async with sessionmaker.begin() as session:
        return await store(session, computed_at=now, since=since, until=now, cases=len(records), seconds=seconds,
                           groups=groups)


@dataclass(frozen=True)
class HotCase:
    case_id: int
    case_number: str | None
    queue: str
    status: str
    created_at: datetime
    problem_id: int | None


@dataclass(frozen=True)
class HotIssue:
    rank: int
    heat: float
    first: datetime
    last: datetime
    place_people: str
    description: str
    residents: int
    cases: list[HotCase]
    hidden: int  # cases of the group in queues the viewer does not work in
    queues: dict[str, int]
    statuses: dict[str, int]
    labels: dict[str, int]
    weekly: list[tuple[date, int]]
    problem_ids: list[int]


async def view(session: AsyncSession, run: HotIssueRun, queues: Iterable[str] | None,
               top: int | None = None, tz: tzinfo | None = None) -> list[HotIssue]:
    """A refresh as one member of staff sees it: only the cases in `queues` (None: every queue), each group
    described from those cases; groups left with fewer than two such cases are not shown."""
    allowed = None if queues is None else set(queues)
    wanted = {case_id for stored in run.groups for case_id in stored["case_ids"]}
    by_id = {case.id: case for case in await hotspots.cases_of(session, sorted(wanted))}
    issues: list[HotIssue] = []
    for stored in run.groups:
        present = [by_id[case_id] for case_id in stored["case_ids"] if case_id in by_id]
        visible = [case for case in present if allowed is None or case.queue in allowed]
        if len(visible) < 2:
            continue
        issues.append(_issue(len(issues) + 1, stored, visible, len(present) - len(visible), tz))
        if top is not None and len(issues) >= top:
            break
    return issues


def _residents(cases: list[Case]) -> int:
    """How many residents filed `cases`, as staff may be told: reports under a name count once per resident (by
    their pseudonym), and an anonymous report always counts as a resident of its own — counting it with another
    report of the same sender would tell staff that the two share an author, and revealing the named one would
    then name the anonymous one's author."""
    return len({("anonymous", case.id) if case.anonymous else ("named", case.reporter_key) for case in cases})


def _issue(rank: int, stored: dict[str, Any], visible: list[Case], hidden: int, tz: tzinfo | None) -> HotIssue:
    messages = [Message(case.id, "", case.description, case.created_at) for case in visible]
    central = stored["central_id"] if any(case.id == stored["central_id"] for case in visible) else visible[0].id
    place_people, description = describe(messages, central)
    if not place_people:
        place_people = Counter(case.place for case in visible).most_common(1)[0][0]
    return HotIssue(
        rank=rank, heat=float(stored["heat"]),
        first=min(case.created_at for case in visible), last=max(case.created_at for case in visible),
        place_people=place_people, description=description, residents=_residents(visible),
        cases=[HotCase(case.id, case.case_number, case.queue, case.status, case.created_at, case.problem_id)
               for case in visible],
        hidden=hidden,
        queues=dict(Counter(case.queue for case in visible)),
        statuses=dict(Counter(case.status for case in visible)),
        labels=dict(Counter(case.label for case in visible if case.label)),
        weekly=(weekly_counts([case.created_at for case in visible], tz) if hidden else
                [(date.fromisoformat(week), int(count)) for week, count in stored["weekly"]]),
        problem_ids=sorted({case.problem_id for case in visible if case.problem_id is not None}),
    )
