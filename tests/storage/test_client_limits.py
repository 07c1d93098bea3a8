"""Per-address event counts (storage/client_limits.py) against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from storage import actions, client_limits, housekeeping
from storage.models import ClientEvent, ClientEventKind
from tests.factories import file_case

KEY = b"k" * 32


def test_addresses_are_keyed_hashes_and_ipv6_counts_by_its_64_network() -> None:
    key = client_limits.client_key
    assert key(KEY, "203.0.113.7") == key(KEY, " 203.0.113.7 ") == key(KEY, "::ffff:203.0.113.7")
    assert key(KEY, "203.0.113.7") != key(KEY, "203.0.113.8")
    assert key(KEY, "203.0.113.7") != key(b"another key" * 3, "203.0.113.7")
    network = key(KEY, "2001:db8:1:2::1")
    assert network == key(KEY, "2001:db8:1:2:ffff:eeee:dddd:cccc") == key(KEY, "2001:db8:1:2::1%eth0")
    assert key(KEY, "2001:db8:1:2::1") != key(KEY, "2001:db8:1:3::1")
    assert key(KEY, "unknown") == key(KEY, "unknown") != key(KEY, "other")
    assert key(KEY, "  ") is None
    digest = key(KEY, "203.0.113.7")
    assert digest is not None and "203" not in digest and len(digest) == 40


async def test_recent_counts_within_the_window_and_prune_forgets(sessionmaker: Any) -> None:
    now = datetime(2026, 11, 25, 12, 30, 45, tzinfo=UTC)
    office = client_limits.client_key(KEY, "203.0.113.7")
    home = client_limits.client_key(KEY, "198.51.100.9")
    assert office and home
    async with sessionmaker.begin() as session:
        for minutes_ago in (1, 5, 30):
            at = now - timedelta(minutes=minutes_ago)
            await actions.record_wrong_code(session, "web", "resident-1", at, client_key=office)
        await file_case(session, channel="web", now=now - timedelta(hours=2), client_key=office)
        await actions.record_wrong_code(session, "web", "resident-2", now, client_key=home)
    async with sessionmaker.begin() as session:
        await client_limits.serialise(session, ClientEventKind.WRONG_CODE, office)
        count, oldest = await client_limits.recent(session, ClientEventKind.WRONG_CODE, office,
                                                   now - timedelta(minutes=10))
        stored = set((await session.execute(select(ClientEvent.created_at))).scalars())
    assert count == 2
    assert oldest == datetime(2026, 11, 25, 12, 25, tzinfo=UTC)  # stored to the minute only
    assert all(at.second == 0 and at.microsecond == 0 for at in stored)
    assert client_limits.wait_minutes(oldest, timedelta(minutes=10), now) == 5
    async with sessionmaker.begin() as session:
        await housekeeping.prune_bookkeeping(
            session, updates_before=now, guesses_before=now - timedelta(minutes=11),
            reports_before=now - timedelta(hours=24), wrong_codes_before=now - timedelta(minutes=11))
        left = (await session.execute(select(ClientEvent.kind, func.count()).group_by(ClientEvent.kind))).all()
    assert dict(left) == {"report": 1, "wrong_code": 3}  # the wrong code of 30 minutes ago is forgotten


async def test_concurrent_steps_of_one_address_count_one_after_the_other(sessionmaker: Any) -> None:
    """Check and record in one transaction, serialised per address: never more than the limit."""
    office = client_limits.client_key(KEY, "203.0.113.7")
    assert office
    limit = 3

    async def step() -> bool:
        async with sessionmaker.begin() as session:
            await client_limits.serialise(session, ClientEventKind.REPORT, office)
            count, _ = await client_limits.recent(session, ClientEventKind.REPORT, office,
                                                  datetime.now(UTC) - timedelta(hours=24))
            if count >= limit:
                return False
            await asyncio.sleep(0.05)  # the dialog's work between the check and the record
            await file_case(session, channel="web", client_key=office)
            return True

    accepted = await asyncio.gather(*(step() for _ in range(8)))
    assert sum(accepted) == limit
