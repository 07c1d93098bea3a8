"""The console at a city's scale: page latency over 10k … 1M cases, and residents' latency while staff read.

    .venv/bin/python -m benchmarks.console_scale [--sizes 10000,100000] [--backend both|postgres|sqlite]
                                                 [--samples 20] [--json results.json]
                                                 [--keep DIR | --reuse DIR]

A script, not a timed test; the figures and the plans are in docs/benchmarks.md ("Console at scale"). For each
backend and size it makes a fresh database (PostgreSQL: a new database on 127.0.0.1:5432, dropped afterwards;
SQLite: a file), migrates it, and builds `size` realistic cases with bulk inserts through the product's models
and key ring: every reporter field encrypted, trace events (received, routed and the handling steps of the
case's status), a reporter's follow-up on one case in twenty, an internal note on one in ten, staff answers
on the answered and closed ones, the search index (keyed hashes of the jieba terms of place and description)
and the similarity signatures (by the housekeeping job that signs cases, so the service does not sign the
backlog while it is measured). Dates spread over two years; most cases are closed, the rest open, many of
those overdue. Then it starts a real `qinglian serve` and, with httpx, logged in as an administrator (every
queue) and as a reviewer of one queue, requests each page `--samples` times and prints p50 / p95 in
milliseconds: the overview, a queue list (first page and one 90 % deep, by cursor), a ticket, search by
description text, filters, the 365-day statistics, the case export (one week), the API's case list (first
and deep page), and for residents `/status <code>` and a whole report through the web chat, /metrics and
/healthz. Last, residents send `/status` while two administrators load the 365-day statistics page in a
loop. The plans of the main reads close each run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table, event, func, insert, select, text

from benchmarks.load_test import create_database, drop_database
from benchmarks.residents import BotProcess, BotUnderTest, free_port, healthy, percentile, wait_for
from bot.config import Settings
from bot.jobs import sign_for_similarity
from console.auth import SESSION_COOKIE, session_serializer
from console.operations import LABELS, cursor_param
from handlers.city import DEFAULT_CITY_CONFIG
from nlp.search import index_terms, query_terms
from storage import loop_stats, queries, search, staff_actions, staff_notices
from storage import statistics as stats_module
from storage.crypto import generate_key
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Case, CaseTerm, InternalNote, StaffRole, TraceEvent
from storage.queries import CaseCursor

POSTGRES_ADMIN = os.environ.get("QINGLIAN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 2000
PLACES = ("岳麓区政务服务中心", "开福区不动产登记中心", "天心区社保局窗口", "芙蓉区第一人民医院", "雨花区某街道办事处",
          "望城区某村委会", "长沙县市场监管所", "浏阳市某中学", "宁乡市公积金中心", "湘江新区税务大厅")
PROBLEMS = ("工作人员要求提供清单上没有的证明材料，来回跑了四趟", "窗口人员态度冷漠，推诿扯皮", "医生收受患者红包",
            "村干部优亲厚友，低保名单不公示", "学校乱收费，强制订购教辅资料", "办事需要找关系才能加快",
            "公车私用，周末开到景区", "执法人员吃拿卡要", "项目验收走过场，资金去向不明", "上班时间玩手机打游戏")
SEARCH_WORD = "红包"
STATUS_MIX = (("closed", 60), ("rejected", 8), ("duplicate", 4), ("answered", 6), ("in_handling", 8),
              ("accepted", 6), ("routed", 8))


def _texts(rng: random.Random) -> tuple[str, str]:
    place = rng.choice(PLACES)
    return place, f"{place}{rng.choice(PROBLEMS)}，{rng.choice(PROBLEMS)}。编号{rng.randrange(10**6)}"


async def build(url: str, settings: Settings, size: int, seed: int = 14) -> dict[str, Any]:
    """`size` cases with their trace, notes, answers and search index; the figures the requests need."""
    rng = random.Random(seed)
    city = settings.city
    queues = [queue.code for queue in city.queues]
    districts = [district.code for district in city.districts]
    labels = sorted(LABELS)
    database = Database.connect(url, settings.resolved_keyring())
    ring = database.keyring
    term_hashes: dict[str, list[int]] = {}
    now = datetime.now(UTC)
    span = timedelta(days=730).total_seconds()
    statuses = [status for status, weight in STATUS_MIX for _ in range(weight)]
    started = time.perf_counter()
    cases_t, trace_t, notes_t, terms_t = (cast(Table, model.__table__) for model in (Case, TraceEvent, InternalNote,
                                                                                      CaseTerm))
    try:
        for first in range(1, size + 1, BATCH):
            cases: list[dict[str, Any]] = []
            trace: list[dict[str, Any]] = []
            notes: list[dict[str, Any]] = []
            terms: list[dict[str, Any]] = []
            for case_id in range(first, min(first + BATCH, size + 1)):
                created = now - timedelta(seconds=span * (1 - case_id / (size + 1)))  # ids follow time
                status = rng.choice(statuses)
                place, description = _texts(rng)
                accepted = created + timedelta(hours=rng.uniform(1, 60)) if status not in ("routed", "rejected") \
                    else None
                closed = created + timedelta(days=rng.uniform(2, 40)) if status in ("closed", "rejected",
                                                                                    "duplicate") else None
                if closed is not None and closed > now:
                    closed = now
                queue = queues[case_id % len(queues)]
                # an open case's current deadline was warned about and escalated as it came, as a live service
                # does (storage.loop.warn / escalate), so the first deadline round does not write about every one
                accept_due, resolve_due = created + timedelta(days=2), created + timedelta(days=15)
                told_kind, told_due = (None, None) if closed is not None else (
                    ("accept", accept_due) if accepted is None else ("resolve", resolve_due))
                cases.append({
                    "id": case_id, "case_number": f"QL-{created.year}-{case_id:07d}",
                    "receipt_code_hash": secrets.token_hex(32), "channel": rng.choice(("telegram", "wechat", "web")),
                    "reporter_ref": str(100000 + case_id), "reporter_key": secrets.token_hex(16), "locale": "zh",
                    "district": rng.choice(districts), "place": place, "occurred": "上周", "description": description,
                    "anonymous": case_id % 3 != 0, "reporter_name": None if case_id % 3 else "张三",
                    "reporter_phone": None if case_id % 3 else "13800138000", "status": status, "queue": queue,
                    "label": rng.choice(labels), "label_confidence": rng.uniform(0.2, 0.99), "label_top": [],
                    "label_terms": [], "model_version": "bench", "rating": rng.choice((None, 3, 4, 5)) if closed
                    else None, "rehandle_count": 0, "appeal_count": 0, "transfer_count": 0, "extension_count": 0,
                    "appeal_pending": False, "created_at": created, "updated_at": closed or accepted or created,
                    "routed_at": created, "accepted_at": accepted, "accept_due_at": accept_due,
                    "resolve_due_at": resolve_due, "closed_at": closed,
                    # indexed below with the terms of this version: the service finds nothing to re-index
                    "search_version": search.INDEX_VERSION,
                    "warned_kind": told_kind, "warned_due_at": told_due, "escalated_kind": told_kind,
                    "escalated_due_at": told_due,
                    # the follow-up below, which no one has opened (storage.staff_notices keeps the mark)
                    "unread_since": created + timedelta(hours=5) if case_id % 20 == 7 else None})
                trace.append({"case_id": case_id, "kind": "received", "body": None, "detail": {}, "actor": "system",
                              "created_at": created})
                trace.append({"case_id": case_id, "kind": "routed", "body": None, "detail": {"queue": queue},
                              "actor": "system", "created_at": created})
                if accepted is not None:
                    trace.append({"case_id": case_id, "kind": "accepted", "body": None, "detail": {},
                                  "actor": "staff:1", "created_at": accepted})
                if status in ("answered", "closed"):
                    trace.append({"case_id": case_id, "kind": "answered", "body": "经核查，已责成相关单位整改。",
                                  "detail": {}, "actor": "staff:1", "created_at": closed or now})
                if closed is not None:
                    trace.append({"case_id": case_id, "kind": status, "body": None, "detail": {},
                                  "actor": "staff:1", "created_at": closed})
                if case_id % 20 == 7:  # the reporter added something: unread for staff
                    trace.append({"case_id": case_id, "kind": "follow_up", "body": "补充：今天又去了一次，还是没办成。",
                                  "detail": {}, "actor": "reporter", "created_at": created + timedelta(hours=5)})
                if case_id % 10 == 0:
                    notes.append({"case_id": case_id, "author_id": None, "body": "已电话联系经办单位，待回复。",
                                  "created_at": created + timedelta(hours=3)})
                key = place + description.split("。")[0]
                if key not in term_hashes:
                    term_hashes[key] = sorted({ring.search_hash(term) for term in index_terms([place, description])})
                terms.extend({"term": term, "case_id": case_id, "created_at": created} for term in term_hashes[key])
            async with database.sessionmaker.begin() as session:
                await session.execute(insert(cases_t), cases)
                await session.execute(insert(trace_t), trace)
                if notes:
                    await session.execute(insert(notes_t), notes)
                await session.execute(insert(terms_t), terms)
        async with database.sessionmaker.begin() as session:
            if not database.is_sqlite:
                await session.execute(text("SELECT setval('cases_id_seq', (SELECT max(id) FROM cases))"))
            admin = await staff_actions.create_staff(session, username="admin", display_name="管理员",
                                                     role=StaffRole.ADMIN, password_hash="not-a-hash")
            reviewer = await staff_actions.create_staff(session, username="reviewer", display_name="审核员",
                                                        role=StaffRole.REVIEWER, password_hash="not-a-hash")
            await staff_actions.set_queues(session, reviewer, [queues[0]], actor=admin)
            logins = {}
            for user in (admin, reviewer):
                token, record = await staff_actions.start_session(session, user, hours=8, ip=None,
                                                                  second_factor_done=True)
                api_token, _ = await staff_actions.create_api_token(session, user, "bench", actor=user)
                logins[user.username] = {"session": token, "csrf": record.csrf_token, "api": api_token}
        # the similarity signatures a live service computes at intake, by the product's own job, so that the
        # service measured is not signing the whole backlog in the background meanwhile
        signing = time.perf_counter()
        await sign_for_similarity(database.sessionmaker, batch=1000)
        signed = time.perf_counter() - signing
        built = time.perf_counter() - started
        await settle(database)
        async with database.sessionmaker() as session:
            deep: dict[str, str] = {}
            for name, queue_filter in (("admin", None), ("reviewer", queues[0])):
                scope = [Case.queue == queue_filter] if queue_filter else []
                count = int(await session.scalar(select(func.count()).select_from(Case).where(*scope)) or 0)
                row = (await session.execute(select(Case.created_at, Case.id).where(*scope)
                                             .order_by(Case.created_at.desc(), Case.id.desc())
                                             .offset(int(count * 0.9)).limit(1))).one()
                deep[name] = cursor_param(CaseCursor(row[0], row[1]))
            numbers = {name: str(await session.scalar(select(Case.case_number).where(
                *([Case.queue == queues[0]] if name == "reviewer" else [])).order_by(Case.id.desc()).limit(1)))
                for name in ("admin", "reviewer")}
        return {"build_seconds": built, "sign_seconds": signed, "logins": logins, "deep": deep, "queue": queues[0],
                "numbers": numbers, "label": labels[0], "district": districts[0]}
    finally:
        await database.dispose()


async def settle(database: Database) -> None:
    """What autovacuum does soon after a bulk load or a migration that rewrote a table, done now so that the
    pages are measured on a settled database: `VACUUM ANALYZE` on PostgreSQL (the statistics, and the visibility
    map index-only scans need), `ANALYZE` on SQLite."""
    if database.is_sqlite:
        async with database.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
        return
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE"))


async def _settle(url: str, settings: Settings) -> None:
    database = Database.connect(url, settings.resolved_keyring())
    try:
        await settle(database)
    finally:
        await database.dispose()


async def _statements(database: Database, read: Callable[[Any], Awaitable[Any]]) -> list[tuple[str, Any]]:
    """The statements `read` sends to the driver, with their parameters."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with database.sessionmaker() as session:
            await read(session)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
    return captured


async def _plan(database: Database, statement: str, parameters: Any) -> list[str]:
    """The plan of `statement`, run under EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on SQLite."""
    prefix = "EXPLAIN QUERY PLAN " if database.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
    async with database.engine.connect() as connection:
        rows = (await connection.exec_driver_sql(prefix + statement, parameters)).all()
    return [" | ".join(str(value) for value in row) for row in rows]


async def explain(url: str, settings: Settings, facts: dict[str, Any]) -> dict[str, str]:
    """The plans of the main reads, as the product's own functions emit them: each statement is captured as
    it goes to the driver and run again under EXPLAIN; for the statistics page, every statement with its time."""
    database = Database.connect(url, settings.resolved_keyring())
    plans: dict[str, str] = {}
    today = datetime.now(UTC)
    queue = facts["queue"]
    reads: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "one queue's list, first page": lambda session: queries.list_cases(
            session, queries.CaseFilter(queues={queue}), per_page=50),
        "every queue's list, capped count": lambda session: queries.count_cases(session, queries.CaseFilter()),
        "every queue's unread marks (overview)": lambda session: staff_notices.unread_by_queue(session, None),
        "every queue's open cases (overview)": lambda session: queries.queue_counts(session, None),
        "overdue cases, capped count (overview)": lambda session: queries.count_cases(
            session, queries.CaseFilter(overdue=True)),
        "cases to label, capped count (overview)": lambda session: queries.count_cases(
            session, queries.CaseFilter(needs_labelling=True), threshold=0.5),
        "filters (status, label, district), first page": lambda session: queries.list_cases(
            session, queries.CaseFilter(status="routed", label=facts["label"], district=facts["district"]),
            per_page=50),
        "search for a common word, first page": lambda session: queries.list_cases(
            session, queries.CaseFilter(text=SEARCH_WORD, terms=tuple(query_terms(SEARCH_WORD))), per_page=50),
        "one queue's search for a common word, first page": lambda session: queries.list_cases(
            session, queries.CaseFilter(queues={queue}, text=SEARCH_WORD, terms=tuple(query_terms(SEARCH_WORD))),
            per_page=50),
    }
    # the statistics page's two computations (read at the same time), every statement of each
    every_statement: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "365-day statistics, every statement": lambda session: stats_module.compute(
            session, start=today - timedelta(days=365), end=today, queues=None),
        "365-day closed-loop figures, every statement": lambda session: loop_stats.compute(
            session, start=today - timedelta(days=365), end=today, queues=None, timezone="Asia/Shanghai"),
    }
    try:
        for name, read in every_statement.items():
            summaries = []
            for statement, parameters in await _statements(database, read):
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                lines = await _plan(database, statement, parameters)
                scans = [line.strip() for line in lines if "Scan" in line or line.startswith(("SCAN", "SEARCH"))]
                took = next((line for line in lines if line.startswith("Execution Time")), "")
                summaries.append(f"{took or 'plan'}: {' / '.join(scans[:3])}\n    {' '.join(statement.split())[:160]}")
            plans[name] = "\n".join(summaries)
        for name, read in reads.items():
            statement, parameters = next((s, p) for s, p in await _statements(database, read)
                                         if "FROM cases" in s and "BEGIN" not in s)
            plans[name] = statement.strip() + "\n\n" + "\n".join(await _plan(database, statement, parameters))
    finally:
        await database.dispose()
    return plans


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(percentile(ordered, 50) * 1000, 1), "p95": round(percentile(ordered, 95) * 1000, 1),
            "p99": round(percentile(ordered, 99) * 1000, 1), "n": len(ordered)}


async def timed(call: Callable[[], Awaitable[httpx.Response]], samples: int) -> dict[str, float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        response = await call()
        times.append(time.perf_counter() - start)
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.url} answered {response.status_code}: {response.text[:300]}")
    return percentiles(times)


async def file_report(chat: httpx.AsyncClient) -> str:
    """A whole report through the web chat; its receipt code."""
    steps: list[dict[str, str]] = [{"command": "report"}, {"choice": "district:yuelu"}, {"text": PLACES[0]},
                                   {"choice": "when:today"}, {"text": "窗口工作人员推诿扯皮，让群众来回跑了四趟。"},
                                   {"choice": "evidence:done"}, {"choice": "identity:anonymous"},
                                   {"choice": "summary:submit"}]
    reply = ""
    for body in steps:
        response = await chat.post("/chat/api/message", json=body)
        response.raise_for_status()
        reply = " ".join(message["text"] for message in response.json()["messages"])
    found = re.search(r"\d{4} \d{4} \d{4} \d{4}", reply)
    if not found:
        raise RuntimeError(f"no receipt code in {reply[:300]!r}")
    return found.group(0).replace(" ", "")


async def measure(base: str, facts: dict[str, Any], samples: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    today = datetime.now(UTC).date()
    year = {"start": str(today - timedelta(days=364)), "end": str(today)}
    week = {"from": str(today - timedelta(days=6)), "to": str(today)}
    async with httpx.AsyncClient(base_url=base, timeout=120) as plain:
        results["healthz"] = await timed(lambda: plain.get("/healthz"), samples)
        results["metrics"] = await timed(lambda: plain.get("/metrics"), samples)
        chat = httpx.AsyncClient(base_url=base, timeout=60, headers={"X-Qinglian-Chat": "1",
                                                                       "Accept-Language": "zh-CN"})
        async with chat:
            (await chat.get("/")).raise_for_status()
            report_times, codes = [], []
            for _ in range(min(samples, 10)):  # the web chat takes 30 reports a day from one address
                start = time.perf_counter()
                codes.append(await file_report(chat))
                report_times.append(time.perf_counter() - start)
            results["resident: file a report (8 steps)"] = percentiles(report_times)
            status_times: list[float] = []

            async def status_once() -> None:
                start = time.perf_counter()
                response = await chat.post("/chat/api/message", json={"command": "status",
                                                                       "argument": random.choice(codes)})
                response.raise_for_status()
                status_times.append(time.perf_counter() - start)

            for _ in range(samples):
                await status_once()
            results["resident: /status <code>"] = percentiles(status_times)
            for role in ("admin", "reviewer"):
                login = facts["logins"][role]
                console = httpx.AsyncClient(base_url=base, timeout=120,
                                            cookies={SESSION_COOKIE: login["cookie"]})
                api = httpx.AsyncClient(base_url=base, timeout=120,
                                        headers={"Authorization": f"Bearer {login['api']}"})
                lists = "/console/cases" if role == "admin" else f"/console/queue/{facts['queue']}"
                deep = facts["deep"][role]
                pages: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
                    "overview": partial(console.get, "/console"),
                    "queue list, first page": partial(console.get, lists),
                    "queue list, 90 % deep": partial(console.get, lists, params={"after": deep}),
                    "ticket": partial(console.get, f"/console/case/{facts['numbers'][role]}"),
                    "search (description text)": partial(console.get, "/console/cases", params={"q": SEARCH_WORD}),
                    "filters (status, label, district)": partial(console.get, "/console/cases", params={
                        "status": "routed", "label": facts["label"], "district": facts["district"]}),
                    "API case list, first page": partial(api.get, "/api/v1/cases"),
                    "API case list, 90 % deep": partial(api.get, "/api/v1/cases", params={"after": deep}),
                }
                if role == "admin":
                    pages["statistics (365 days)"] = partial(console.get, "/console/stats", params=year)
                    pages["export (one week, CSV)"] = partial(console.get, "/console/export.csv", params=week)
                for name, call in pages.items():
                    try:
                        results[f"{role}: {name}"] = await timed(call, samples)
                    except httpx.TimeoutException as error:
                        raise RuntimeError(f"{role}: {name} took longer than the client's timeout") from error
                await console.aclose()
                await api.aclose()
            # residents while an administrator loads the year's statistics again and again
            admin = httpx.AsyncClient(base_url=base, timeout=300,
                                      cookies={SESSION_COOKIE: facts["logins"]["admin"]["cookie"]})
            stop = asyncio.Event()
            staff_loads = 0

            async def staff() -> None:
                nonlocal staff_loads
                while not stop.is_set():
                    (await admin.get("/console/stats", params=year)).raise_for_status()
                    staff_loads += 1

            status_times.clear()
            heavy = [asyncio.create_task(staff()) for _ in range(2)]
            await asyncio.sleep(0.2)
            for _ in range(samples * 2):
                await status_once()
            stop.set()
            await asyncio.gather(*heavy)
            await admin.aclose()
            results["resident: /status while 2 staff load 365-day statistics"] = {
                **percentiles(status_times), "statistics pages meanwhile": staff_loads}
    return results


def run(backend: str, size: int, samples: int, workdir: Path, keep: Path | None = None,
        reuse: Path | None = None) -> dict[str, Any]:
    """Build (or, with `reuse`, take a database `keep` left), serve and measure. `keep` leaves the database, the
    data directory, the settings and the build's facts in that directory, so a later run can measure again
    without the build (an hour at 1,000,000 cases); a reused database is migrated to the newest schema first."""
    name = None
    if reuse is not None:
        kept = json.loads((reuse / "kept.json").read_text())
        data_dir, env, facts = Path(kept["data_dir"]), kept["env"], kept["facts"]
        url = env["QINGLIAN_DATABASE_URL"]
        backend, size = kept["backend"], kept["cases"]
    else:
        data_dir = (keep or workdir) / f"{backend}-{size}"
        data_dir.mkdir(parents=True)
        if backend == "postgres":
            name, url = create_database(POSTGRES_ADMIN, prefix="qinglian_scale")
        else:
            url = f"sqlite+aiosqlite:///{data_dir / 'qinglian.db'}"
        env = {"QINGLIAN_DATA_DIR": str(data_dir), "QINGLIAN_DATABASE_URL": url,
               "QINGLIAN_SECRET_KEY": secrets.token_urlsafe(48), "QINGLIAN_ENCRYPTION_KEY": generate_key(),
               "QINGLIAN_PSEUDONYM_KEY": generate_key(), "QINGLIAN_LOG_LEVEL": "WARNING"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    process = None
    try:
        settings = Settings()
        started = time.perf_counter()
        upgrade(url, settings.resolved_keyring())
        migrated = time.perf_counter() - started
        if reuse is None:
            kept = {"backend": backend, "cases": size, "env": env, "data_dir": str(data_dir), "facts": None}
            if keep is not None:  # the keys first: without them an interrupted build's data cannot be read
                (keep / "kept.json").write_text(json.dumps(kept))
                name = None  # kept: not dropped below
            print(f"[{backend} {size:,}] building …", flush=True)
            facts = asyncio.run(build(url, settings, size))
            print(f"[{backend} {size:,}] built in {facts['build_seconds']:.0f} s, of which the similarity "
                  f"signatures (the product's housekeeping job) {facts['sign_seconds']:.0f} s", flush=True)
            if keep is not None:
                (keep / "kept.json").write_text(json.dumps({**kept, "facts": facts}))
        else:
            settling = time.perf_counter()
            asyncio.run(_settle(url, settings))
            print(f"[{backend} {size:,}] reusing {reuse}, migrated in {migrated:.0f} s, vacuumed and analysed in "
                  f"{time.perf_counter() - settling:.0f} s", flush=True)
        signer = session_serializer(settings.resolved_secret_key())
        for login in facts["logins"].values():
            login["cookie"] = signer.dumps(login["session"])
        # the default city's configuration but for the daily reports per address: every report the benchmark
        # files comes from 127.0.0.1, and a reused database remembers the runs of the last 24 hours
        config = data_dir / "city-benchmark.toml"
        city_text, found = re.subn(r"(?m)^reports_per_ip_per_day = \d+$", "reports_per_ip_per_day = 1000000",
                                   DEFAULT_CITY_CONFIG.read_text(encoding="utf-8"))
        assert found == 1, "the default configuration sets reports_per_ip_per_day"
        config.write_text(city_text, encoding="utf-8")
        port = free_port()
        bot = BotUnderTest("serve", "qinglian serve", [sys.executable, "-m", "bot.cli", "serve", "--host",
                                                       "127.0.0.1", "--port", str(port)],
                           {**env, "QINGLIAN_CONFIG_FILE": str(config)},
                           f"http://127.0.0.1:{port}/healthz")
        process = BotProcess(bot, "", data_dir / "serve.log")
        process.start()
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), time.monotonic() + 600,
                 "qinglian serve healthy", process)
        pages = asyncio.run(measure(f"http://127.0.0.1:{port}", facts, samples))
        plans = asyncio.run(explain(url, settings, facts))
        return {"backend": backend, "cases": size, "build_seconds": round(facts["build_seconds"]), "pages": pages,
                "plans": plans}
    finally:
        if process is not None:
            process.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if name is not None:
            drop_database(POSTGRES_ADMIN, name)


def table(results: list[dict[str, Any]]) -> str:
    columns = [f"{r['backend']} {r['cases']:,}" for r in results]
    names = list(dict.fromkeys(name for r in results for name in r["pages"]))
    lines = ["| page (ms, p50 / p95; a resident's /status also p99) | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]

    def cell(figures: dict[str, float], name: str) -> str:
        spread = f"{figures['p50']} / {figures['p95']}"
        # issue 14.2 compares the residents' latency under staff load with its idle p99
        return spread + f" / {figures['p99']}" if name.startswith("resident: /status") and "p99" in figures else spread

    for name in names:
        cells = [cell(r["pages"][name], name) if name in r["pages"] else "–" for r in results]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| build (s) | " + " | ".join(str(r["build_seconds"]) for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The console's pages and residents' steps over many cases")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated case counts")
    parser.add_argument("--backend", choices=("both", "postgres", "sqlite"), default="both")
    parser.add_argument("--samples", type=int, default=20, help="requests per page")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the database built (one size, one backend) and what measuring it needs in DIR")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="measure the database a run with --keep DIR left, without building")
    args = parser.parse_args(argv)
    backends = ["postgres", "sqlite"] if args.backend == "both" else [args.backend]
    sizes = [int(part) for part in args.sizes.split(",")]
    if args.keep and (len(sizes) > 1 or len(backends) > 1):
        parser.error("--keep takes one size and one backend")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    runs = [("", 0)] if args.reuse else [(backend, size) for size in sizes for backend in backends]
    results = []
    with tempfile.TemporaryDirectory(prefix="qinglian-scale-") as workdir:
        for backend, size in runs:
            results.append(run(backend, size, args.samples, Path(workdir), keep=args.keep, reuse=args.reuse))
            print(table(results[-1:]), flush=True)
            for name, plan in results[-1]["plans"].items():
                print(f"\n-- {name}\n{plan}\n", flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
