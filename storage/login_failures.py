"""Failed console logins per client address, in the database so that every process counts them.

An address is stored only as its keyed hash (`storage.client_limits.client_key`); a row older than the
throttle's window is of no use and is deleted when the same address fails again, or by `prune`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import LoginFailure


async def count_since(session: AsyncSession, client_key: str, since: datetime) -> int:
    query = select(func.count()).select_from(LoginFailure).where(
        LoginFailure.client_key == client_key, LoginFailure.created_at >= since)
    return int(await session.scalar(query) or 0)


async def record(session: AsyncSession, client_key: str, at: datetime, *, forget_before: datetime) -> None:
    """Count one failure of the address at `at`; its failures before `forget_before` are dropped."""
    await session.execute(delete(LoginFailure).where(LoginFailure.client_key == client_key,
                                                     LoginFailure.created_at < forget_before))
    session.add(LoginFailure(client_key=client_key, created_at=at))
    await session.flush()


async def prune(session: AsyncSession, before: datetime) -> int:
    """Delete every failure older than `before` (of any address); returns how many."""
    result = await session.execute(delete(LoginFailure).where(LoginFailure.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
