"""Load test: many residents filing complete reports at once through the stand-in Telegram server.

    .venv/bin/python -m benchmarks.load_test [--residents 1000] [--backend both|postgres|sqlite]
                                             [--concurrency N] [--no-worker] [--json results.json]

A script, not a timed test; the method and the figures are in docs/benchmarks-load.md. For each
backend it starts a fresh stand-in Bot API server (tests/standins/telegram_server.py, which checks
every request against the Bot API spec) in this process and Qinglian in child processes on a fresh
database and data directory:

* **postgres** — the production layout of docs/deploy.md: a fresh database on the PostgreSQL at
  127.0.0.1:5432 (user postgres, created for the run and dropped afterwards), `qinglian db upgrade`
  once, then two `qinglian serve` processes and one `qinglian worker` (`--no-worker`: without it)
  sharing one data directory. Two processes cannot both long-poll one bot, so Telegram runs in
  webhook mode: the stand-in POSTs every update, with the secret-token header, to
  `QINGLIAN_TELEGRAM_WEBHOOK_URL`, which points at a small round-robin reverse proxy in this script
  (`RoundRobinProxy`, like an nginx `upstream` with keep-alive connections: every request goes to
  the next process, with `X-Forwarded-For` replaced). A webhook answer that is not 2xx makes the
  stand-in deliver the update again, as Telegram does.
* **sqlite** — the pilot layout: one `qinglian serve` on SQLite in its data directory, long polling.

Then `--residents` residents (default 1,000) each file one complete report (the 8 updates of
`benchmarks.residents.REPORT`), `--concurrency` at a time (default: all of them at once). A resident
sends its next answer as soon as the reply carrying the next question has arrived (closed loop).

Checked at the end, each a failure of the run if it does not hold:

* every resident was shown a receipt code, and the database holds exactly one case per resident:
  as many cases as residents, one per reporter, and the set of receipt-code hashes in the database
  equals the HMAC (storage/receipts.py, the run's secret key) of the codes the residents were shown;
* `--status-sample` of the residents (default 50) send `/status <their code>` through the bot and
  get their case back;
* no message to a resident is an apology or an error text of the dialog (every `error_*` text of
  handlers/locales/zh.toml, up to its first placeholder), no Bot API request broke the spec, every
  resident received the same number of messages (none lost, none delivered twice), the outbox is
  empty, and the logs of the processes hold no ERROR line and no traceback.

Measured: reports/s and updates/s over the run; the step latency (update pushed into the stand-in →
the stand-in receives the message carrying the next question), p50/p95/p99 overall and per step; the
peak resident set size of each Qinglian process (sampled every 0.25 s) and of this process; CPU time
of each process; the load average of the machine before, during (peak of the 1-minute figure) and
after; webhook answers that were not 2xx (retried).

Qinglian runs with QINGLIAN_TELEGRAM_MAX_RATE=100000: its default, 30 messages/s, is Telegram's own
limit for one bot, which the stand-in does not impose; left at 30 it would cap the run at roughly
20 updates/s and measure the limiter, not the service. (The limiter lives in each process's memory,
so two processes would each send 30/s — see docs/benchmarks-load.md.)

Everything binds to 127.0.0.1; every wait is bounded (`--stall` seconds without progress, or
`--timeout` for a backend); the processes are always stopped and the database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.residents import (
    APOLOGY,
    REPO,
    REPORT,
    TOKEN,
    BenchStandIn,
    BotProcess,
    BotUnderTest,
    Step,
    Workload,
    free_port,
    healthy,
    latency_figures,
    machine,
    machine_busy,
    own_cpu,
    wait_for,
    wait_quiet,
)

POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
WEBHOOK_PATH = "/telegram/webhook"
#: a log line of an error: ours ("… ERROR name: …"), uvicorn's ("ERROR:    …") or a traceback
LOG_PROBLEM = re.compile(r"(^|\s)(ERROR|CRITICAL)[:\s]|^Traceback")


def error_markers() -> tuple[str, ...]:
    """The apology and every error text of the dialog, each up to its first placeholder."""
    texts = tomllib.loads((REPO / "handlers" / "locales" / "zh.toml").read_text(encoding="utf-8"))
    fragments = {APOLOGY}
    for key, value in texts.items():
        if key.startswith("error_") and isinstance(value, str):
            fragment = value.split("{", 1)[0].strip()
            if len(fragment) >= 4:
                fragments.add(fragment)
    return tuple(sorted(fragments))


# --------------------------------------------------------------------------------------------
# the reverse proxy in front of the web processes


@dataclass
class ProxyStats:
    requests: Counter[str] = field(default_factory=Counter)  # per backend
    statuses: Counter[int] = field(default_factory=Counter)
    #: why the proxy itself answered 502: the backend refused the connection, or closed it unanswered
    failures: Counter[str] = field(default_factory=Counter)
    #: pooled connections the backend had closed meanwhile (the request went on a fresh one)
    stale_reused: int = 0


class RoundRobinProxy:
    """A minimal HTTP/1.1 reverse proxy on its own thread: each request goes to the next backend.

    Keep-alive on both sides (idle backend connections are pooled per backend), `Content-Length`
    or chunked bodies, `X-Forwarded-For` replaced with the client's address (as deploy/nginx does).
    Idle backend connections are dropped after `KEEPALIVE_SECONDS` (uvicorn closes them after 5 s);
    a request that finds a pooled connection closed anyway goes on a fresh one (nginx does the
    same); one whose fresh connection cannot be opened, or is closed unanswered, answers 502.
    """

    KEEPALIVE_SECONDS = 4.0

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.port = free_port()
        self.stats = ProxyStats()
        self._next = itertools.cycle(range(len(backends)))
        self._idle: list[list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]]] = [[] for _ in backends]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="round-robin-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self._ready.set()
        await self._stopping.wait()
        self._server.close()
        for pool in self._idle:
            for _, writer, _ in pool:
                writer.close()
        for task in self._clients:
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else "127.0.0.1"
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, headers = _parse_head(head)
                body = await _read_body(reader, headers)
                forwarded = [f"{name}: {value}" for name, value in headers
                             if name.lower() not in ("x-forwarded-for", "connection", "transfer-encoding",
                                                     "content-length")]
                forwarded += [f"X-Forwarded-For: {client_ip}", f"Content-Length: {len(body)}",
                              "Connection: keep-alive"]
                request = ("\r\n".join([request_line, *forwarded]) + "\r\n\r\n").encode("latin-1") + body
                status, answer = await self._forward(request)
                self.stats.statuses[status] += 1
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _pooled(self, index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        pool = self._idle[index]
        while pool:
            reader, writer, since = pool.pop()
            if time.monotonic() - since < self.KEEPALIVE_SECONDS and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def _forward(self, request: bytes) -> tuple[int, bytes]:
        index = next(self._next)
        host, port = self.backends[index]
        self.stats.requests[f"{host}:{port}"] += 1
        bad_gateway = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
        while True:
            connection = self._pooled(index)
            pooled = connection is not None
            if connection is None:
                try:
                    connection = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
                except (OSError, TimeoutError) as exc:
                    self.stats.failures[f"connect: {type(exc).__name__}"] += 1
                    return 502, bad_gateway
            reader, writer = connection
            try:
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                writer.close()
                unanswered = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
                if pooled and unanswered:
                    self.stats.stale_reused += 1
                    continue  # the backend had closed the idle connection: nothing was processed
                self.stats.failures[f"exchange: {type(exc).__name__}"] += 1
                return 502, bad_gateway
            status_line, headers = _parse_head(head)
            status = int(status_line.split(" ", 2)[1])
            body = await _read_body(reader, headers, response=True)
            close = any(n.lower() == "connection" and v.lower() == "close" for n, v in headers)
            if close:
                writer.close()
            else:
                self._idle[index].append((reader, writer, time.monotonic()))
            kept = [f"{n}: {v}" for n, v in headers
                    if n.lower() not in ("connection", "transfer-encoding", "content-length")]
            kept += [f"Content-Length: {len(body)}", "Connection: keep-alive"]
            return status, ("\r\n".join([status_line, *kept]) + "\r\n\r\n").encode("latin-1") + body


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]], *, response: bool = False) -> bytes:
    values = {name.lower(): value for name, value in headers}
    if values.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        return b"".join(chunks)
    if "content-length" in values:
        return await reader.readexactly(int(values["content-length"]))
    return b"" if not response else await reader.read()


# --------------------------------------------------------------------------------------------
# one backend


@dataclass
class Layout:
    backend: str
    database_url: str
    serve: int
    worker: bool
    webhook: bool


class ProcessWatch:
    """Peak RSS of every process (sampled), the machine's peak 1-minute load average."""

    def __init__(self, procs: dict[str, BotProcess], interval: float = 0.25) -> None:
        self.procs = procs
        self.interval = interval
        self.peak_rss_mb: dict[str, float] = {name: 0.0 for name in [*procs, "load-test script"]}
        self.peak_load1 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        import psutil

        readings = {name: proc.rss_mb() for name, proc in self.procs.items() if proc.process is not None}
        readings["load-test script"] = float(psutil.Process().memory_info().rss) / 2**20
        for name, rss in readings.items():
            self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), rss)
        self.peak_load1 = max(self.peak_load1, os.getloadavg()[0])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with suppress(Exception):
                self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with suppress(Exception):
            self.sample()


def create_database(admin_dsn: str, prefix: str = "qinglian_load") -> tuple[str, str]:
    """A fresh database on the server of `admin_dsn`: its name and its SQLAlchemy URL (asyncpg)."""
    import asyncpg

    name = f"{prefix}_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


@contextmanager
def migrated_database(kind: str, admin_dsn: str, keyring: Any, prefix: str) -> Iterator[str]:
    """A fresh database of `kind` ("sqlite": a file in a temporary directory; "postgres": a database on the server of
    `admin_dsn`, dropped afterwards) migrated to the newest schema: its URL."""
    from storage.migrate import upgrade

    name = None
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as work:
        if kind == "postgres":
            name, url = create_database(admin_dsn, prefix=prefix)
        else:
            url = f"sqlite+aiosqlite:///{Path(work) / 'qinglian.db'}"
        try:
            upgrade(url, keyring)
            yield url
        finally:
            if name is not None:
                drop_database(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


#: the process title of a client backend: "postgres: 15/main: USER DATABASE HOST(PORT) STATE" ([local]: a socket)
_BACKEND_TITLE = re.compile(r":\s\S+\s(\S+)\s(?:\S+\(\d+\)|\[local\])")


def postgres_cpu(database: str | None = None) -> float:
    """CPU seconds of the PostgreSQL server processes on this machine: all of them, or with `database` the
    server's own (postmaster, writers, checkpointer, …) and the client backends of that database only."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        if not (process.info.get("name") or "").startswith("postgres"):
            continue
        if database is not None:
            backend = _BACKEND_TITLE.search(" ".join(process.info.get("cmdline") or []))
            if backend is not None and backend.group(1) != database:
                continue
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class Verification:
    cases: int = 0
    receipts_matched: int = 0
    outbox_not_sent: int = 0
    problems: list[str] = field(default_factory=list)


def verify_database(url: str, secret_key: bytes, codes: dict[int, str], residents: int) -> Verification:
    """Exactly one case per resident: as many cases as residents, and the receipt codes shown to the
    residents (all different) are, by their keyed hashes, exactly the codes of the stored cases."""
    from sqlalchemy import func, select

    from storage.db import create_engine
    from storage.models import Case, OutboxMessage
    from storage.receipts import receipt_code_hash

    async def read() -> tuple[list[tuple[str, str]], int]:
        engine = create_engine(url, None)  # no encrypted column is read: no key needed
        try:
            async with engine.connect() as connection:
                rows = (await connection.execute(select(Case.channel, Case.receipt_code_hash))).all()
                unsent = await connection.scalar(select(func.count()).where(OutboxMessage.status != "sent"))
        finally:
            await engine.dispose()
        return [(str(c), str(h)) for c, h in rows], int(unsent or 0)

    rows, unsent = asyncio.run(read())
    result = Verification(cases=len(rows), outbox_not_sent=unsent)
    stored = Counter(h for _, h in rows)
    shown = Counter(receipt_code_hash(secret_key, code) for code in codes.values())
    result.receipts_matched = sum(1 for digest in shown if stored.get(digest) == 1)
    if len(rows) != residents:
        result.problems.append(f"{len(rows)} cases stored for {residents} residents")
    if len(codes) != residents:
        result.problems.append(f"{len(codes)} of {residents} residents were shown a receipt code")
    if any(n != 1 for n in shown.values()):
        result.problems.append("the same receipt code was shown to two residents")
    if result.receipts_matched != len(shown) or set(stored) != set(shown):
        result.problems.append(f"{result.receipts_matched} of {len(shown)} receipt codes shown match a stored case; "
                               f"{len(set(stored) - set(shown))} stored cases have a code no resident was shown")
    if {c for c, _ in rows} - {"telegram"}:
        result.problems.append("cases from another channel")
    if unsent:
        result.problems.append(f"{unsent} outbox messages not sent")
    return result


def log_problems(procs: dict[str, BotProcess]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, proc in procs.items():
        lines = [line for line in proc.log_tail(10**8).splitlines() if LOG_PROBLEM.search(line)]
        if lines:
            found[name] = lines[:5]
    return found


def _ready_check(proc: BotProcess) -> Callable[[], bool]:
    """A web process answers /healthz; the worker says so in its log."""
    url = proc.bot.health_url
    if url:
        return lambda: healthy(url)
    return lambda: "worker running" in proc.log_tail(10**6)


def run_backend(layout: Layout, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + args.timeout
    markers = error_markers()

    def say(text: str) -> None:
        print(f"  [{time.monotonic() - started:5.0f} s] {layout.backend}: {text}", flush=True)

    data_dir = workdir / f"{layout.backend}-data"
    secret_key = secrets.token_urlsafe(48)
    standin = BenchStandIn(token=TOKEN)
    standin.start()
    ports = [free_port() for _ in range(layout.serve)]
    proxy = RoundRobinProxy([("127.0.0.1", port) for port in ports]) if layout.webhook else None
    env = {
        "QINGLIAN_DATA_DIR": str(data_dir),
        "QINGLIAN_DATABASE_URL": layout.database_url,
        "QINGLIAN_SECRET_KEY": secret_key,
        "QINGLIAN_TELEGRAM_TOKEN": TOKEN,
        "QINGLIAN_TELEGRAM_API_URL": "{root}",
        "QINGLIAN_TELEGRAM_MAX_RATE": "100000",
    }
    if proxy is not None:
        env["QINGLIAN_TELEGRAM_WEBHOOK_URL"] = proxy.url + WEBHOOK_PATH
    cli = [sys.executable, "-m", "bot.cli"]
    procs: dict[str, BotProcess] = {}
    for number, port in enumerate(ports, 1):
        bot = BotUnderTest(f"serve-{number}", f"qinglian serve #{number}",
                           [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env,
                           f"http://127.0.0.1:{port}/healthz")
        procs[bot.key] = BotProcess(bot, standin.root_url, workdir / f"{layout.backend}-{bot.key}.log")
    if layout.worker:
        bot = BotUnderTest("worker", "qinglian worker", [*cli, "worker"], env)
        procs[bot.key] = BotProcess(bot, standin.root_url, workdir / f"{layout.backend}-worker.log")
    result: dict[str, Any] = {"backend": layout.backend, "residents": args.residents,
                              "serve_processes": layout.serve, "worker_process": layout.worker,
                              "telegram": "webhook via round-robin proxy" if layout.webhook else "long polling"}
    watch = ProcessWatch(procs)
    try:
        if proxy is not None:
            proxy.start()
        # as deploy/ does: migrate once, then start the processes
        migrate = subprocess.run([*cli, "db", "upgrade"], cwd=REPO, capture_output=True, text=True, timeout=300,
                                 env={**{k: v for k, v in os.environ.items() if not k.startswith("QINGLIAN_")},
                                      **{k: standin.root_url if v == "{root}" else v for k, v in env.items()}})
        if migrate.returncode != 0:
            raise RuntimeError(f"qinglian db upgrade failed:\n{migrate.stdout}{migrate.stderr}")
        first = True
        for name, proc in procs.items():
            proc.start()
            wait_for(_ready_check(proc), deadline, f"{name} ready", proc)
            if first:  # the first one trained the classifier's default model in the shared data directory
                say(f"{name} ready after {time.monotonic() - started:.0f} s")
                first = False
        if layout.webhook:
            wait_for(lambda: len(standin.requests_for("setWebhook")) >= layout.serve, deadline, "setWebhook",
                     next(iter(procs.values())))
        else:
            wait_for(lambda: len(standin.requests_for("getUpdates")) > 0, deadline, "getUpdates",
                     next(iter(procs.values())))
        for proc in procs.values():
            wait_quiet(proc, deadline)
        watch.sample()
        result["rss_start_mb"] = {name: round(proc.rss_mb(), 1) for name, proc in procs.items()}
        result["load_before"] = [round(x, 2) for x in os.getloadavg()]
        say(f"ready ({', '.join(procs)}); RSS {result['rss_start_mb']}; load average {result['load_before']}; "
            f"{args.residents} residents, {args.concurrency or args.residents} at a time")

        chat_ids = itertools.count(20_000_001)
        concurrency = args.concurrency or args.residents
        cpu_before = {name: proc.cpu() for name, proc in procs.items()}
        own_before, machine_before, pg_before = own_cpu(), machine_busy(), postgres_cpu()
        metered_since = time.monotonic()
        requests_before = len(standin.requests)
        watch.start()
        work = Workload(standin, REPORT, args.residents, chat_ids, concurrency=concurrency, error_markers=markers)
        work.run(deadline, args.stall)
        for proc in procs.values():
            wait_quiet(proc, deadline, window=0.5)
        watch.stop()
        elapsed = work.wall
        metered = time.monotonic() - metered_since  # the run and the processes settling afterwards
        cpu = {name: proc.cpu() - cpu_before[name] for name, proc in procs.items()}
        own = own_cpu() - own_before
        busy = machine_busy() - machine_before
        pg = postgres_cpu() - pg_before if layout.backend == "postgres" else 0.0
        calls = Counter(method for method, _ in standin.requests[requests_before:])
        result.update(
            updates=work.updates, wall_s=round(elapsed, 2),
            reports_per_s=args.residents / elapsed, updates_per_s=work.updates / elapsed,
            failed_updates=work.failed_updates, peak_residents=work.peak_active,
            **latency_figures(work),
            cpu_s={name: round(v, 1) for name, v in cpu.items()},
            cpu_ms_per_update=sum(cpu.values()) / work.updates * 1000,
            script_cpu_s=round(own, 1), postgres_cpu_s=round(pg, 1),
            machine_busy_cores=busy / metered,
            others_cpu_cores=max(0.0, busy - sum(cpu.values()) - own - pg) / metered,
            peak_rss_mb={name: round(v, 1) for name, v in watch.peak_rss_mb.items()},
            peak_load1=round(watch.peak_load1, 2), load_after=[round(x, 2) for x in os.getloadavg()],
            bot_api_calls=dict(sorted(calls.items())),
        )
        if proxy is not None:
            result["proxy_requests"] = dict(proxy.stats.requests)
            result["webhook_answers"] = {str(k): v for k, v in sorted(proxy.stats.statuses.items())}
            result["webhook_non_2xx"] = sum(v for k, v in proxy.stats.statuses.items() if not 200 <= k < 300)
            result["proxy_failures"] = dict(proxy.stats.failures)
            result["proxy_stale_connections"] = proxy.stats.stale_reused
        say(f"{result['reports_per_s']:.1f} reports/s ({result['updates_per_s']:.0f} updates/s) over "
            f"{elapsed:.0f} s; step latency p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms; "
            f"peak RSS {result['peak_rss_mb']}; peak load {result['peak_load1']}")

        # receipts through the bot: a sample of residents ask for their case
        sample = sorted(work.receipt_codes)[: args.status_sample]
        if sample:
            codes = work.receipt_codes
            status_step = Step("text", "/status", "您还可以", "status",
                               value_for=lambda chat: f"/status {codes[chat]}")
            check = Workload(standin, (status_step,), len(sample), iter(sample), concurrency=len(sample),
                             error_markers=markers)
            check.run(deadline, args.stall)
            answered = sum(1 for chat in sample
                           if any("案件编号" in m.get("text", "") for m in standin.sent_messages(chat)[-3:]))
            result["status_checked"] = answered
            result["status_errors"] = len(check.error_messages)
            say(f"/status with the receipt code: {answered} of {len(sample)} residents got their case")
            for proc in procs.values():
                wait_quiet(proc, deadline, window=0.5)
        else:
            result["status_checked"] = 0
            result["status_errors"] = 0

        verification = verify_database(layout.database_url, secret_key.encode(), work.receipt_codes, args.residents)
        per_chat = Counter(len(standin.sent_messages(chat)) for chat in work.receipt_codes if chat not in sample)
        problems = list(verification.problems)
        if result["status_checked"] != len(sample) or result["status_errors"]:
            problems.append(f"/status answered {result['status_checked']} of {len(sample)} residents with their case")
        if work.error_messages:
            problems.append(f"{len(work.error_messages)} error messages to residents, first: "
                            f"{work.error_messages[0][1][:80]!r}")
        if len(per_chat) > 1:
            problems.append(f"residents received different numbers of messages: {dict(per_chat)}")
        if standin.violations:
            problems.append(f"{len(standin.violations)} Bot API violations, first: {standin.violations[0]}")
        if standin.errors:
            problems.append(f"{len(standin.errors)} stand-in errors, first: {standin.errors[0]}")
        logs = log_problems(procs)
        if logs:
            problems.append(f"ERROR lines in the logs: {logs}")
        for proc in procs.values():
            proc.check_alive()
        result.update(cases=verification.cases,
                      receipts_valid=verification.receipts_matched, outbox_not_sent=verification.outbox_not_sent,
                      messages_per_resident=dict(per_chat), error_messages=len(work.error_messages),
                      violations=len(standin.violations), problems=problems,
                      seconds=round(time.monotonic() - started, 1))
        say(f"{verification.cases} cases for {args.residents} residents, {verification.receipts_matched} receipt "
            f"codes valid; " + ("all checks passed" if not problems else f"PROBLEMS: {problems}"))
        return result
    finally:
        watch.stop()
        for proc in procs.values():
            proc.stop()
        if proxy is not None:
            proxy.stop()
        standin.stop()


# --------------------------------------------------------------------------------------------
# report


def summary(results: list[dict[str, Any]]) -> str:
    def rss(r: dict[str, Any]) -> str:
        return ", ".join(f"{name} {mb:.0f}" for name, mb in r["peak_rss_mb"].items())

    rows: list[tuple[str, Any]] = [
        ("layout", lambda r: f"{r['serve_processes']} × serve" + (" + worker" if r["worker_process"] else "")
         + f", {r['telegram']}"),
        ("residents (each one complete report, 8 updates)", lambda r: f"{r['residents']:,}"),
        ("reports/s", lambda r: f"{r['reports_per_s']:.1f}"),
        ("updates/s", lambda r: f"{r['updates_per_s']:.0f}"),
        ("wall time of the run, s", lambda r: f"{r['wall_s']:.0f}"),
        ("step latency p50 / p95 / p99, ms",
         lambda r: f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} / {r['p99_ms']:.0f}"),
        ("step latency max, ms", lambda r: f"{r['max_ms']:.0f}"),
        ("CPU per update, all Qinglian processes, ms", lambda r: f"{r['cpu_ms_per_update']:.1f}"),
        ("CPU of PostgreSQL (all its processes), s", lambda r: f"{r['postgres_cpu_s']:.1f}"),
        ("CPU of the script (stand-in, residents, proxy), s", lambda r: f"{r['script_cpu_s']:.1f}"),
        ("other processes' CPU meanwhile, cores", lambda r: f"{r['others_cpu_cores']:.2f}"),
        ("peak RSS, MB", rss),
        ("load average before → peak (1 min) → after",
         lambda r: f"{r['load_before'][0]} → {r['peak_load1']} → {r['load_after'][0]}"),
        ("cases stored / receipt codes valid", lambda r: f"{r['cases']} / {r['receipts_valid']}"),
        ("/status through the bot answered", lambda r: f"{r['status_checked']}"),
        ("error or apology messages", lambda r: f"{r['error_messages'] + r['status_errors']}"),
        ("webhook answers not 2xx (retried)", lambda r: "—" if "webhook_non_2xx" not in r else
         f"{r['webhook_non_2xx']}" + (f" {r['proxy_failures']}" if r["proxy_failures"] else "")),
        ("problems", lambda r: "none" if not r["problems"] else "; ".join(r["problems"])),
    ]
    lines = ["| | " + " | ".join(r["backend"] for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |" for label, cell in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load test through the stand-in Telegram server "
                                                 "(see the module docstring).")
    parser.add_argument("--residents", type=int, default=1000, help="residents, one complete report each")
    parser.add_argument("--concurrency", type=int, default=0, help="residents at a time (default: all)")
    parser.add_argument("--backend", choices=("both", "postgres", "sqlite"), default="both")
    parser.add_argument("--postgres", default=POSTGRES_ADMIN_DSN,
                        help="admin DSN; a fresh database is created there and dropped afterwards")
    parser.add_argument("--no-worker", action="store_true",
                        help="PostgreSQL: two serve processes only, without the `qinglian worker`")
    parser.add_argument("--status-sample", type=int, default=50,
                        help="residents who check their receipt code with /status afterwards")
    parser.add_argument("--stall", type=float, default=60.0, help="give up after this long without a reply")
    parser.add_argument("--timeout", type=float, default=420.0, help="limit for one backend, seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with the logs")
    args = parser.parse_args(argv)

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="qinglian-load-"))
    info = machine()
    print(f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, commit {info['commit'] or '?'}"
          f" ({info['changed_files']} files changed); load average {os.getloadavg()}; logs in {workdir}",
          flush=True)
    results: list[dict[str, Any]] = []
    failed = True
    try:
        if args.backend in ("both", "postgres"):
            name, url = create_database(args.postgres)
            try:
                results.append(run_backend(Layout("postgres", url, serve=2, worker=not args.no_worker, webhook=True),
                                           args, workdir))
            finally:
                drop_database(args.postgres, name)
        if args.backend in ("both", "sqlite"):
            url = f"sqlite+aiosqlite:///{workdir / 'sqlite-data' / 'qinglian.db'}"
            (workdir / "sqlite-data").mkdir(parents=True, exist_ok=True)
            results.append(run_backend(Layout("sqlite", url, serve=1, worker=False, webhook=False), args, workdir))
        failed = any(r["problems"] for r in results)
    finally:
        if failed or args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if results:
        print(f"\n{summary(results)}\n\n(whole run {time.monotonic() - began:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, ensure_ascii=False, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
