"""Per-client-address limits: reports filed and wrong receipt codes per IP address.

Where a channel knows the client's address (the web chat), each counted event is a row: the kind,
a keyed hash of the address and the time rounded down to the minute. The address itself is never
stored, an IPv6 address counts by its /64 network (one subscriber's allocation), and a row is
deleted once no window looks at it any more (`storage.housekeeping.prune_bookkeeping`). The rows live
in the database, so the limits hold across every process.

The check happens in the dialog step's transaction, and the action that counts (a submitted report, a
wrong receipt code) records the event in it. On PostgreSQL a transaction-level
advisory lock on (kind, address) makes concurrent steps from one address count one after the other;
SQLite runs every transaction with BEGIN IMMEDIATE, which already serialises them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ClientEvent, ClientEventKind


def client_key(secret_key: bytes, address: str) -> str | None:
    """The keyed hash an address is counted by (a value that is not an IP address counts as itself)."""
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return _digest(secret_key, "other:" + address.strip()[:200]) if address.strip() else None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            network = ipaddress.IPv6Network((ip, 64), strict=False)
            return _digest(secret_key, f"{network.network_address}/64")
    return _digest(secret_key, str(ip))


def _digest(secret_key: bytes, value: str) -> str:
    return hmac.new(secret_key, b"client-ip:" + value.encode(), hashlib.sha256).hexdigest()[:40]


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def serialise(session: AsyncSession, kind: ClientEventKind, key: str) -> None:
    """Make concurrent transactions counting the same address wait for each other (PostgreSQL)."""
    await hold_until_commit(session, f"{kind}:{key}")


async def hold_until_commit(session: AsyncSession, name: str) -> None:
    """Wait for, then hold until the transaction ends, the lock called `name`: on PostgreSQL a transaction-level
    advisory lock; SQLite's BEGIN IMMEDIATE transactions already run one at a time."""
    if session.get_bind().dialect.name == "postgresql":
        lock_id = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": lock_id})


async def recent(
    session: AsyncSession, kind: ClientEventKind, key: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many events of this kind the address has since `since`, and when the oldest of them was."""
    query = select(func.count(), func.min(ClientEvent.created_at)).where(
        ClientEvent.kind == kind, ClientEvent.client_key == key, ClientEvent.created_at >= _minute(since)
    )
    count, oldest = (await session.execute(query)).one()
    if oldest is not None and oldest.tzinfo is None:  # func.min bypasses the column type on SQLite
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    return int(count or 0), oldest


def wait_minutes(oldest: datetime | None, window: timedelta, now: datetime) -> int:
    """Whole minutes until the oldest counted event leaves the window (at least 1)."""
    if oldest is None:
        return max(1, int(window.total_seconds() // 60))
    return max(1, int((oldest + window - now).total_seconds() // 60) + 1)
