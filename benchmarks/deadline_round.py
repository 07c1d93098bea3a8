"""The deadline round against the backlog of overdue cases whose staff were told already: what one round reads and
how long it takes, on SQLite and PostgreSQL, through the product's own functions (`storage.loop`, `bot.jobs`).

    python -m benchmarks.deadline_round [--database sqlite|postgres|both] [--backlogs 0,20000,100000]
        [--untold 200] [--postgres postgresql://postgres@127.0.0.1/postgres]

For each backlog size a fresh database gets: `backlog` open cases past their deadline and already escalated for it
(half waiting to be accepted, half accepted and past their resolve-by date), as many closed cases, `untold` overdue
cases no one was told of and `untold` cases due within the warning horizon. It prints, per size: the cases the scan
finds (`storage.loop.untold_deadline_case_ids`) and its median time over 7 runs; the first round (`bot.jobs.
deadlines_once`, telling every untold case) and a second round (nothing left to tell).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, text

from benchmarks.load_test import migrated_database
from bot.jobs import deadlines_once
from handlers.city import load_city_config
from handlers.routing import warning_horizon
from storage import loop
from storage.crypto import DataKey, KeyRing, generate_key, parse_key
from storage.db import create_engine, create_sessionmaker
from storage.models import Case

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # a Tuesday
BATCH = 2000


def _case(case_id: int, *, status: str, accept_due: datetime, resolve_due: datetime, accepted: datetime | None,
          told: bool) -> dict[str, Any]:
    current = ("accept", accept_due) if accepted is None else ("resolve", resolve_due)
    kind, due = current if told else (None, None)
    return {"id": case_id, "case_number": f"QL-2026-{case_id:07d}", "receipt_code_hash": f"bench-{case_id}",
            "channel": "web", "reporter_ref": f"web-{case_id}", "reporter_key": f"key-{case_id}", "locale": "zh",
            "place": "政务服务中心", "occurred": "上周", "description": "窗口工作人员推诿", "anonymous": True,
            "status": status, "queue": "clean_hall", "created_at": accept_due - timedelta(days=2),
            "accepted_at": accepted, "accept_due_at": accept_due, "resolve_due_at": resolve_due,
            "warned_kind": kind, "warned_due_at": due, "escalated_kind": kind, "escalated_due_at": due}


def _rows(backlog: int, untold: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number in range(backlog):  # overdue and told: half to accept, half to resolve
        due = NOW - timedelta(days=3 + number % 300, minutes=number % 1440)
        accepted = due - timedelta(days=1) if number % 2 else None
        rows.append(_case(len(rows) + 1, status="accepted" if accepted else "routed", accept_due=due,
                          resolve_due=due + (timedelta(days=1) if accepted is None else timedelta()),
                          accepted=accepted, told=True))
    for number in range(backlog):  # closed long ago
        due = NOW - timedelta(days=20 + number % 300)
        rows.append(_case(len(rows) + 1, status="closed", accept_due=due, resolve_due=due + timedelta(days=13),
                          accepted=due - timedelta(days=1), told=True))
    for number in range(untold):  # overdue, no one told; due within the horizon, not warned
        rows.append(_case(len(rows) + 1, status="routed", accept_due=NOW - timedelta(hours=1 + number),
                          resolve_due=NOW + timedelta(days=13), accepted=None, told=False))
        rows.append(_case(len(rows) + 1, status="routed", accept_due=NOW + timedelta(hours=2, minutes=number),
                          resolve_due=NOW + timedelta(days=15), accepted=None, told=False))
    return rows


async def _measure(url: str, keyring: KeyRing, backlog: int, untold: int) -> dict[str, float]:
    city = load_city_config(None)
    engine = create_engine(url, keyring)
    try:
        rows = _rows(backlog, untold)
        async with engine.begin() as connection:
            for first in range(0, len(rows), BATCH):
                await connection.execute(insert(cast(Table, Case.__table__)), rows[first:first + BATCH])
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
        sessionmaker = create_sessionmaker(engine)
        horizon = warning_horizon(city, NOW)
        times, found = [], 0
        for _ in range(7):
            async with sessionmaker() as session:
                started = time.perf_counter()
                found = len(await loop.untold_deadline_case_ids(session, horizon, NOW))
                times.append(time.perf_counter() - started)
        started = time.perf_counter()
        warned, escalated = await deadlines_once(sessionmaker, city, NOW)
        first_round = time.perf_counter() - started
        started = time.perf_counter()
        again = await deadlines_once(sessionmaker, city, NOW + timedelta(minutes=10))
        second_round = time.perf_counter() - started
    finally:
        await engine.dispose()
    return {"found": found, "scan_ms": statistics.median(times) * 1000, "warned": warned, "escalated": escalated,
            "first_s": first_round, "second_s": second_round, "second_told": sum(again)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--backlogs", default="0,20000,100000", help="told overdue cases, comma-separated")
    parser.add_argument("--untold", type=int, default=200)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1/postgres")
    arguments = parser.parse_args()
    keyring = KeyRing(DataKey(parse_key(generate_key()), "benchmark"), pseudonym_key=parse_key(generate_key()))
    backlogs = [int(size) for size in arguments.backlogs.split(",")]
    print("| database | told overdue (+ as many closed) | scan finds | scan, ms (median of 7) | first round: warned "
          "/ escalated, s | second round, s (told) |")
    print("|---|---|---|---|---|---|")
    for kind in (["sqlite", "postgres"] if arguments.database == "both" else [arguments.database]):
        for backlog in backlogs:
            with migrated_database(kind, arguments.postgres, keyring, "qinglian_deadlines") as url:
                figures = asyncio.run(_measure(url, keyring, backlog, arguments.untold))
            print(f"| {kind} | {backlog:,} | {figures['found']:,} | {figures['scan_ms']:.1f} | "
                  f"{figures['warned']:.0f} / {figures['escalated']:.0f}, {figures['first_s']:.2f} | "
                  f"{figures['second_s']:.3f} ({figures['second_told']:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
