"""Memory and time of `qinglian db backup` and `qinglian db restore` at scale.

    python -m benchmarks.backup_memory --cases 10000 [--database sqlite|postgres|both] \
        [--postgres postgresql://postgres@127.0.0.1/postgres] [--work DIR] [--repo DIR]

It builds N cases as residents and staff would leave them. The first `--template` (400) are filed through the
product's own actions (storage.actions, storage.staff_actions): a synthetic report text (the word lists of
benchmarks/similarity_speed.py) with its receipt code, the received/routed trace events and search terms; one in
four with an evidence file (8–48 KB of random bytes, stored encrypted as the bot stores it, under
`evidence/YYYY/MM/`); one in two accepted, one in four answered, one in five with a follow-up, one in three with an
internal note (and its audit record), one in ten marked a duplicate of an earlier case. The rest are copies of
those rows inserted in bulk (filing a million cases one by one would take hours): each copy has its own ids,
case number, receipt-code hash, reporter and report text, and its own evidence file, every encrypted field
encrypted anew through the same column types. Then it runs, each in its own process as an operator would,
`qinglian db backup` of that database and data directory, and `qinglian db restore` of the archive into an empty
database of the same kind and an empty data directory, and prints each child's peak resident memory (its VmHWM
as it exits) and wall time, the archive's size and whether the restored row counts and files match. `--repo` runs
the commands of another checkout (for a before/after). It first prints the peak RSS of `qinglian db --help`, what
loading the command line costs before any work; with --library it also calls `storage.backup` directly from
processes that import nothing else, which shows what the streaming itself needs. The copied cases' search terms
are the template's (the index is not rebuilt for the new texts). The databases and files are removed at the end
unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from benchmarks.load_test import create_database, drop_database
from benchmarks.similarity_speed import synthetic_report
from storage import actions, evidence_rows, staff_actions
from storage.crypto import DataKey, KeyRing, generate_key, parse_key
from storage.db import create_engine, create_sessionmaker
from storage.evidence_files import encrypted_chunks, purpose_of, write_encrypted
from storage.migrate import upgrade
from storage.models import Base, CaseStatus, StaffRole

REPO = Path(__file__).resolve().parent.parent
SECRET_KEY = "benchmark secret key, not a real one, 40+ chars"
BATCH = 250


def _keyring(encryption_key: str, pseudonym_key: str) -> KeyRing:
    return KeyRing(DataKey(parse_key(encryption_key), "QINGLIAN_ENCRYPTION_KEY"),
                   pseudonym_key=parse_key(pseudonym_key))


async def build(url: str, data_dir: Path, cases: int, keyring: KeyRing, seed: int, template: int) -> None:
    """N cases with their trace, notes, attachments and evidence files: `template` filed through the actions,
    the rest copied from them in bulk."""
    from tests.factories import create_staff, file_case

    rng = random.Random(seed)
    engine = create_engine(url, keyring)
    sessionmaker = create_sessionmaker(engine)
    evidence_dir = data_dir / "evidence"
    async with sessionmaker.begin() as session:
        staff = await create_staff(session, "reviewer", StaffRole.REVIEWER, ["triage"])
    began = time.perf_counter()
    case_ids: list[int] = []
    filed = min(cases, template)
    try:
        for start in range(0, filed, BATCH):
            async with sessionmaker.begin() as session:
                staff = await session.merge(staff)
                for number in range(start, min(filed, start + BATCH)):
                    created_at = datetime(2026, 1, 1, tzinfo=UTC).replace(month=1 + number * 12 // filed)
                    report = synthetic_report(rng, created_at)
                    reporter = f"user-{rng.randrange(cases)}"
                    attachment_ids: list[int] = []
                    if number % 4 == 0:
                        content = os.urandom(rng.randint(8, 48) * 1024)
                        stored_name = f"{created_at:%Y/%m}/{uuid.UUID(int=rng.getrandbits(128)).hex}.jpg"
                        write_encrypted(keyring, evidence_dir / stored_name, content, purpose=purpose_of(stored_name))
                        conversation = await actions.load_conversation(session, "telegram", reporter)
                        attachment = await evidence_rows.add_draft_attachment(
                            session, conversation, stored_name=stored_name, original_name="照片.jpg",
                            media_type="image/jpeg", size_bytes=len(content),
                            sha256=hashlib.sha256(content).hexdigest())
                        attachment_ids.append(attachment.id)
                    case, _code = await file_case(
                        session, reporter_ref=reporter, place=report.place, description=report.text,
                        anonymous=number % 3 != 0, reporter_name=None if number % 3 else "王某",
                        reporter_phone=None if number % 3 else f"1380000{number % 10000:04d}",
                        attachment_ids=attachment_ids, queue="triage", now=created_at,
                        secret_key=SECRET_KEY.encode())
                    case_ids.append(case.id)
                    if number % 2 == 0:
                        await actions.change_status(session, case, CaseStatus.ACCEPTED, actor="staff:1", body="已受理")
                    if number % 5 == 0:
                        follow_up = "补充：" + synthetic_report(rng, created_at).text
                        await actions.add_follow_up(session, case, text=follow_up)
                    if number % 3 == 0:
                        await staff_actions.add_note(session, case, "核实中：" + report.place, actor=staff)
                    if number % 4 == 0:
                        await actions.reply_to_reporter(session, case, "经核查，已责成有关单位整改。", actor="staff:1")
                    if number % 10 == 9 and len(case_ids) > 1:
                        case.duplicate_of_id = case_ids[rng.randrange(len(case_ids) - 1)]
        print(f"  {filed:,} cases filed through the actions ({time.perf_counter() - began:.0f} s)", flush=True)
        await replicate(engine, evidence_dir, cases, keyring, rng, began)
    finally:
        await engine.dispose()
    print(f"built {cases:,} cases in {time.perf_counter() - began:.0f} s", flush=True)


def case_family() -> list[Table]:
    """The cases table and the tables whose rows belong to a case, parents first."""
    return [table for table in Base.metadata.sorted_tables if table.name == "cases" or "case_id" in table.c]


async def replicate(engine: AsyncEngine, evidence_dir: Path, total: int, keyring: KeyRing, rng: random.Random,
                    began: float) -> None:
    """Copies of the filed cases' rows until there are `total` cases (see the module's docstring)."""
    family = case_family()
    names = {table.name for table in family}
    async with engine.connect() as connection:
        rows = {table.name: [dict(row._mapping) for row in await connection.execute(
            select(table).order_by(*table.primary_key.columns))] for table in family}
    filed = len(rows["cases"])
    # each copy shifts every id (and every reference to a copied row) by the template's largest id
    offsets = {table.name: max((row["id"] for row in rows[table.name]), default=0)
               for table in family if "id" in table.c and len(table.primary_key.columns) == 1}
    references = {table.name: {column.name: fk.column.table.name for column in table.columns
                               for fk in column.foreign_keys if fk.column.table.name in names}
                  for table in family}
    copy = 0
    while filed * (copy + 1) < total:
        copy += 1
        wanted = min(filed, total - filed * copy)
        kept_cases = {row["id"] for row in rows["cases"][:wanted]}
        batch: dict[str, list[dict[str, Any]]] = {}
        for table in family:
            copied = []
            for row in rows[table.name]:
                case_id = row["id"] if table.name == "cases" else row["case_id"]
                if case_id not in kept_cases:
                    continue  # rows of no case (a conversation's replies) or of cases past the total
                new = dict(row)
                if table.name in offsets:
                    new["id"] += offsets[table.name] * copy
                for column_name, target in references[table.name].items():
                    if new[column_name] is not None and target in offsets:
                        new[column_name] += offsets[target] * copy
                copied.append(new)
            batch[table.name] = copied
        for case in batch["cases"]:
            report = synthetic_report(rng, case["created_at"])
            case.update(case_number=f"QL-2026-{case['id']:06d}", receipt_code_hash=secrets.token_hex(32),
                        reporter_ref=f"user-{rng.randrange(total)}", place=report.place, description=report.text)
        for attachment in batch["attachments"]:
            content = os.urandom(rng.randint(8, 48) * 1024)
            stored_name = f"{attachment['created_at']:%Y/%m}/{secrets.token_hex(16)}.jpg"
            path = evidence_dir / stored_name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:  # as write_encrypted, without its fsync per file
                for piece in encrypted_chunks(keyring.current, content, purpose=purpose_of(stored_name)):
                    out.write(piece)
            attachment.update(stored_name=stored_name, size_bytes=len(content),
                              sha256=hashlib.sha256(content).hexdigest())
        async with engine.begin() as connection:
            for table in family:
                copied = batch[table.name]
                for start in range(0, len(copied), 5000):
                    await connection.execute(insert(table), copied[start:start + 5000])
        if copy % 25 == 0:
            print(f"  {filed * copy + wanted:>9,} cases ({time.perf_counter() - began:.0f} s)", flush=True)


async def row_counts(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return {table.name: int((await connection.execute(select(func.count()).select_from(table))).scalar_one())
                    for table in Base.metadata.sorted_tables}
    finally:
        await engine.dispose()


PEAK_WRAPPER = """
import atexit, os, runpy, sys
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["BACKUP_BENCHMARK_PEAK_FILE"], "w") as out:
        out.write(peak)
atexit.register(report)
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, *sys.argv[3:]]
if kind == "module":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<benchmark>", "exec"), {"__name__": "__main__"})
"""


def run_measured(kind: str, target: str, arguments: list[str], env: dict[str, str], cwd: Path
                 ) -> tuple[float, float, str]:
    """Run `python -m target arguments` (kind "module") or `python -c target arguments` (kind "code"); its wall
    time in seconds, its peak RSS in MB and its output.

    The peak is the child's VmHWM, which it writes when it exits. Not ru_maxrss from wait4: Linux starts a
    child's ru_maxrss at the RSS of the process that spawned it (here the benchmark, which holds the template
    cases), so a lean child would report the parent's size."""
    began = time.perf_counter()
    with tempfile.TemporaryFile() as output, tempfile.NamedTemporaryFile("r") as peak_file:
        process = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, kind, target, *arguments], cwd=cwd,
                                 env={**env, "BACKUP_BENCHMARK_PEAK_FILE": peak_file.name}, stdout=output,
                                 stderr=subprocess.STDOUT, check=False)
        elapsed = time.perf_counter() - began
        output.seek(0)
        text_ = output.read().decode(errors="replace")
        peak_text = peak_file.read().strip()
    if process.returncode != 0 or not peak_text:
        raise SystemExit(f"{target} {' '.join(arguments)} failed ({process.returncode}):\n{text_[-3000:]}")
    return elapsed, int(peak_text) / 1024, text_


def measure(kind: str, arguments: argparse.Namespace, work: Path) -> None:
    encryption_key, pseudonym_key = generate_key(), generate_key()
    keyring = _keyring(encryption_key, pseudonym_key)
    source_dir, target_dir = work / f"{kind}-source", work / f"{kind}-target"
    databases: list[str] = []
    try:
        if kind == "sqlite":
            source_url = f"sqlite+aiosqlite:///{source_dir / 'qinglian.db'}"
            target_url = f"sqlite+aiosqlite:///{target_dir / 'qinglian.db'}"
        else:
            name, source_url = create_database(arguments.postgres, prefix="qinglian_backupbench")
            databases.append(name)
            name, target_url = create_database(arguments.postgres, prefix="qinglian_backupbench")
            databases.append(name)
        source_dir.mkdir(parents=True)
        upgrade(source_url, keyring)
        print(f"{kind}: building {arguments.cases:,} cases", flush=True)
        asyncio.run(build(source_url, source_dir, arguments.cases, keyring, arguments.seed, arguments.template))
        before = asyncio.run(row_counts(source_url))
        evidence = [path for path in (source_dir / "evidence").rglob("*") if path.is_file()]
        print(f"{kind}: {sum(before.values()):,} rows ({', '.join(f'{n} {c:,}' for n, c in before.items() if c)}); "
              f"{len(evidence):,} evidence files, {sum(p.stat().st_size for p in evidence) / 2**20:,.0f} MB",
              flush=True)
        env = {**os.environ, "QINGLIAN_SECRET_KEY": SECRET_KEY, "QINGLIAN_ENCRYPTION_KEY": encryption_key,
               "QINGLIAN_PSEUDONYM_KEY": pseudonym_key}
        archive = work / f"{kind}.qlbak"
        seconds, peak, _ = run_measured(
            "module", "bot.cli", ["db", "backup", str(archive)], cwd=arguments.repo,
            env={**env, "QINGLIAN_DATA_DIR": str(source_dir), "QINGLIAN_DATABASE_URL": source_url})
        print(f"{kind}: backup  {seconds:7.1f} s, peak RSS {peak:7.1f} MB, archive "
              f"{archive.stat().st_size / 2**20:,.0f} MB", flush=True)
        target_dir.mkdir(parents=True)
        seconds, peak, _ = run_measured(
            "module", "bot.cli", ["db", "restore", str(archive)], cwd=arguments.repo,
            env={**env, "QINGLIAN_DATA_DIR": str(target_dir), "QINGLIAN_DATABASE_URL": target_url})
        after = asyncio.run(row_counts(target_url))
        restored = [path for path in (target_dir / "evidence").rglob("*") if path.is_file()]
        same = after == before and len(restored) == len(evidence)
        print(f"{kind}: restore {seconds:7.1f} s, peak RSS {peak:7.1f} MB, rows and files "
              f"{'match' if same else 'DIFFER'}", flush=True)
        if arguments.library:
            if kind == "sqlite":
                second_url = f"sqlite+aiosqlite:///{work / f'{kind}-second' / 'qinglian.db'}"
            else:
                name, second_url = create_database(arguments.postgres, prefix="qinglian_backupbench")
                databases.append(name)
            measure_library(kind, arguments, work, env, source_url, source_dir, second_url, before)
    finally:
        if not arguments.keep:
            for name in databases:
                drop_database(arguments.postgres, name)
            shutil.rmtree(source_dir, ignore_errors=True)
            shutil.rmtree(target_dir, ignore_errors=True)
            shutil.rmtree(work / f"{kind}-second", ignore_errors=True)
            (work / f"{kind}.qlbak").unlink(missing_ok=True)
            (work / f"{kind}-library.qlbak").unlink(missing_ok=True)
        else:
            print(f"kept {source_dir}, {target_dir}, {databases}")


LIBRARY_BACKUP = """
import sys
from pathlib import Path
from storage.backup import create_backup
create_backup(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
"""
LIBRARY_RESTORE = """
import os, sys
from pathlib import Path
from storage.backup import restore_backup
from storage.crypto import DataKey, KeyRing, parse_key
ring = KeyRing(DataKey(parse_key(os.environ["QINGLIAN_ENCRYPTION_KEY"]), "key"),
               pseudonym_key=parse_key(os.environ["QINGLIAN_PSEUDONYM_KEY"]))
restore_backup(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), ring)
"""


def measure_library(kind: str, arguments: argparse.Namespace, work: Path, env: dict[str, str], source_url: str,
                    source_dir: Path, target_url: str, before: dict[str, int]) -> None:
    """The same backup and restore called from a process that imports only storage/, not the whole command
    line: what the streaming itself adds to a process."""
    archive, target_dir = work / f"{kind}-library.qlbak", work / f"{kind}-second"
    target_dir.mkdir(parents=True)
    seconds, peak, _ = run_measured("code", "import storage.backup, storage.migrate", [],
                                    cwd=arguments.repo, env=env)
    print(f"{kind}: importing storage.backup alone: peak RSS {peak:7.1f} MB", flush=True)
    seconds, peak, _ = run_measured("code", LIBRARY_BACKUP, [source_url, str(source_dir), str(archive)],
                                    cwd=arguments.repo, env=env)
    print(f"{kind}: create_backup  {seconds:7.1f} s, peak RSS {peak:7.1f} MB", flush=True)
    seconds, peak, _ = run_measured("code", LIBRARY_RESTORE, [target_url, str(target_dir), str(archive)],
                                    cwd=arguments.repo, env=env)
    same = asyncio.run(row_counts(target_url)) == before
    print(f"{kind}: restore_backup {seconds:7.1f} s, peak RSS {peak:7.1f} MB, rows {'match' if same else 'DIFFER'}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1/postgres",
                        help="an admin URL; the benchmark creates and drops its own databases next to it")
    parser.add_argument("--work", type=Path, help="where the databases, data directories and archive go")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose `qinglian db` commands to run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--template", type=int, default=400, help="cases filed through the actions; the rest are "
                        "copies of them")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--library", action="store_true", help="also run create_backup and restore_backup in "
                        "processes that import only storage/ (without the command line's own footprint)")
    arguments = parser.parse_args()
    work = arguments.work or Path(tempfile.mkdtemp(prefix="qinglian-backupbench-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds, peak, _ = run_measured("module", "bot.cli", ["db", "--help"], cwd=arguments.repo,
                                    env={**os.environ, "QINGLIAN_DATA_DIR": str(work / "empty")})
    print(f"for comparison, `qinglian db --help`: {seconds:.1f} s, peak RSS {peak:.1f} MB (loading the command line)",
          flush=True)
    for kind in (["sqlite", "postgres"] if arguments.database == "both" else [arguments.database]):
        measure(kind, arguments, work)


if __name__ == "__main__":
    main()
