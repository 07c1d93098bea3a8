"""The retention round over a year's backlog of closed cases, on SQLite and PostgreSQL, through the product's own
function (`storage.housekeeping.erase_old_contacts`, which since 7 Dec 2026 also takes a real-name reporter's own
name and phone out of the case's texts, `storage.erasure`): how long its batches hold the write transaction.

    python -m benchmarks.retention_round [--database sqlite|postgres|both] [--cases 20000]
        [--real-name 0,0.3,1] [--postgres postgresql://postgres@127.0.0.1/postgres]

For each share of real-name reports a fresh database gets `cases` cases closed long ago (encrypted as the service
stores them), each with three trace entries: received, a follow-up of the reporter that repeats the name and phone
the real-name ones gave, and the staff answer. The round erases them batch after batch, as housekeeping does; it
prints the batches' median and longest time (each one write transaction: on SQLite, the lock residents' steps wait
for) and the round's total. A share of 0 is the erasure without anything to take out of the texts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, select, text

from benchmarks.load_test import migrated_database
from storage import housekeeping
from storage.crypto import DataKey, KeyRing, generate_key, parse_key
from storage.db import create_engine, create_sessionmaker
from storage.erasure import ERASED_TEXT
from storage.models import Case, TraceEvent

CLOSED = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
INSERT_BATCH = 2000
DESCRIPTION = ("岳麓区政务服务中心3号窗口的工作人员上班时间玩手机，让群众排队等了两个小时，"
               "我{name}去了三趟都没有办成。请打{phone}联系我。")


def _rows(cases: int, real_name_share: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    named = round(cases * real_name_share)
    case_rows, trace_rows = [], []
    for number in range(1, cases + 1):
        real = number <= named
        name, phone = (f"王秀{chr(0x4E00 + number % 500)}", f"139{number:08d}") if real else ("", "")
        shown_name, shown_phone = (name, f"{phone[:3]} {phone[3:7]} {phone[7:]}") if real else ("本人", "热线")
        case_rows.append({
            "id": number, "case_number": f"QL-2025-{number:07d}", "receipt_code_hash": f"bench-{number}",
            "channel": "telegram", "reporter_ref": f"{900000 + number}", "reporter_key": f"key-{number}",
            "locale": "zh", "place": "岳麓区政务服务中心", "occurred": "上周",
            "description": DESCRIPTION.format(name=shown_name, phone=shown_phone), "anonymous": not real,
            "reporter_name": name or None, "reporter_phone": phone or None, "status": "closed",
            "queue": "clean_hall", "created_at": CLOSED - timedelta(days=10), "closed_at": CLOSED,
            "label_terms": [["窗口", 0.9], ["推诿", 0.5], [phone or "排队", 0.2]]})
        trace_rows += [
            {"case_id": number, "kind": "received", "actor": "system", "body": None, "detail": {},
             "created_at": CLOSED - timedelta(days=10)},
            {"case_id": number, "kind": "follow_up", "actor": "reporter", "detail": {},
             "body": f"补充：又去了一次，还是没人管。{shown_name}，电话{shown_phone}",
             "created_at": CLOSED - timedelta(days=8)},
            {"case_id": number, "kind": "answered", "actor": "staff", "detail": {},
             "body": "经核查，该窗口工作人员已被批评教育，并调整了排队叫号办法。", "created_at": CLOSED}]
    return case_rows, trace_rows


async def _measure(url: str, keyring: KeyRing, cases: int, share: float) -> dict[str, float]:
    engine = create_engine(url, keyring)
    try:
        case_rows, trace_rows = _rows(cases, share)
        async with engine.begin() as connection:
            for table, rows in ((Case.__table__, case_rows), (TraceEvent.__table__, trace_rows)):
                for first in range(0, len(rows), INSERT_BATCH):
                    await connection.execute(insert(cast(Table, table)), rows[first:first + INSERT_BATCH])
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
        sessionmaker = create_sessionmaker(engine)
        batches, erased = [], 0
        started = time.perf_counter()
        while True:
            batch_started = time.perf_counter()
            async with sessionmaker.begin() as session:
                count = await housekeeping.erase_old_contacts(session, CLOSED + timedelta(days=1))
            if not count:
                break
            batches.append(time.perf_counter() - batch_started)
            erased += count
        total = time.perf_counter() - started
        async with sessionmaker() as session:  # the work was done: the named cases' texts say ERASED_TEXT
            scrubbed = sum(ERASED_TEXT in (description or "")
                           for description in (await session.execute(select(Case.description))).scalars())
    finally:
        await engine.dispose()
    return {"erased": erased, "scrubbed": scrubbed, "batches": len(batches),
            "median_ms": statistics.median(batches) * 1000 if batches else 0.0,
            "max_ms": max(batches) * 1000 if batches else 0.0, "total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--real-name", default="0,0.3,1", help="shares of real-name reports, comma-separated")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1/postgres")
    arguments = parser.parse_args()
    keyring = KeyRing(DataKey(parse_key(generate_key()), "benchmark"), pseudonym_key=parse_key(generate_key()))
    print("| database | closed cases | real-name share | erased / texts changed | batches | batch median, ms | "
          "longest batch, ms | round, s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in (["sqlite", "postgres"] if arguments.database == "both" else [arguments.database]):
        for share in (float(value) for value in arguments.real_name.split(",")):
            with migrated_database(kind, arguments.postgres, keyring, "qinglian_retention") as url:
                figures = asyncio.run(_measure(url, keyring, arguments.cases, share))
            print(f"| {kind} | {arguments.cases:,} | {share:.0%} | {figures['erased']:,.0f} / "
                  f"{figures['scrubbed']:,.0f} | {figures['batches']:.0f} | {figures['median_ms']:.0f} | "
                  f"{figures['max_ms']:.0f} | {figures['total_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
