"""A send rate shared by every process through the database (`RateBudget`).

Requests take the next slots of their budget in one statement: for `count` requests the budget's `next_at`
moves to max(next_at, now) + count × interval, and the requests may go out one interval apart from the returned
time minus count × interval. The row lock of that UPDATE orders the processes; the slots one statement took are
that process's alone, so a process that sends a batch at once takes the batch's slots in one round trip. No
process keeps a count of its own. A `RetryAfter` from the platform pushes the budget past the pause for every
process (`hold`).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, case, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import upsert
from storage.models import RateBudget

_BUDGETS = cast(Table, RateBudget.__table__)


_TAKE = (update(_BUDGETS).where(_BUDGETS.c.name == bindparam("budget"))
         .values(next_at=case((_BUDGETS.c.next_at > bindparam("now"), _BUDGETS.c.next_at), else_=bindparam("now"))
                 + bindparam("span"))
         .returning(_BUDGETS.c.next_at))
"""Built once (a Core statement with parameters): taking a slot is on the path of every message sent."""


async def take_slot(session: AsyncSession, name: str, *, now: float, interval: float, count: int = 1) -> float:
    """The time (seconds since the epoch) at which the first of `count` requests may go out (at `now` when the
    budget is idle); the others follow one `interval` apart."""
    span = interval * count
    parameters = {"budget": name, "now": now, "span": span}
    taken = (await session.execute(_TAKE, parameters)).scalar_one_or_none()
    if taken is None:  # the budget's first request
        await session.execute(upsert(session, _BUDGETS).values(name=name, next_at=0.0).on_conflict_do_nothing())
        taken = (await session.execute(_TAKE, parameters)).scalar_one()
    return float(taken) - span


async def hold(session: AsyncSession, name: str, until: float) -> None:
    """No request of the budget goes out before `until` (the platform asked to wait)."""
    await session.execute(upsert(session, _BUDGETS).values(name=name, next_at=until).on_conflict_do_nothing())
    await session.execute(update(RateBudget).where(RateBudget.name == name, RateBudget.next_at < until)
                          .values(next_at=until))
