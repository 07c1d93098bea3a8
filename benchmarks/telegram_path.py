"""Benchmark of the Telegram path: complete reports through the stand-in Bot API server.

    .venv/bin/python -m benchmarks.telegram_path [--database both|sqlite|postgres] [--reports 500]
                                                 [--concurrency 50] [--drafts 10000] [--skip-plain]
                                                 [--only KEYS] [--json results.json] [--keep-logs]

A script, not a timed test; the results and how to read them are in docs/benchmarks-telegram.md.
The bots under test, measured side by side in one run (`--database` chooses Qinglian's setups,
`--only` any subset by key):

* **qinglian-sqlite** — one `python -m bot.cli serve` on SQLite in a fresh temporary data directory,
  long polling;
* **qinglian-postgres** — the production layout of docs/deploy.md on a fresh PostgreSQL database
  (created on `--postgres`, 127.0.0.1:5432 by default, and dropped at the end): `qinglian db upgrade`,
  then two `serve` processes and one `qinglian worker` sharing one data directory. Two processes
  cannot both long-poll one bot, so Telegram runs in webhook mode: the stand-in POSTs every update to
  a round-robin reverse proxy in this process (benchmarks/load_test.py's `RoundRobinProxy`), which
  alternates between the two `serve` processes; every process also delivers the outbox, the worker
  only sends. Its CPU per update is the sum over the three processes; its RSS is read per process;
  the CPU of the PostgreSQL server is measured apart and not counted in the bot's;
* **ptb** and **aiogram** — two minimal plain bots with in-memory state (a python-telegram-bot
  `ConversationHandler` bot and an aiogram 3 FSM bot, benchmarks/plain_bots/), long polling.

Every Qinglian setup handles each update as one dialog step in one database transaction and sends
its replies through the outbox. For each bot the script:

1. starts a fresh stand-in Bot API server (tests/standins/telegram_server.py) in this process and
   the bot's processes one after the other, each waited for (/healthz for `serve`, its "worker
   running" log line for the worker); then waits for the bot's first getUpdates (long polling) or
   for every `serve` process's setWebhook (webhook), waits until the bot is idle, and reads the
   resident set size (RSS) of each process. Qinglian is started twice: once on the empty data
   directory and database (migrations; the classifier trains its default model there) and,
   measured, again on the now prepared ones, as a service restarts in production; both RSS figures
   are reported;
2. warms up with `--warmup` complete reports (not measured);
3. throughput run: `--reports` complete reports (8 updates each) by `--concurrency` residents in a
   closed loop: a resident sends its next answer as soon as the reply carrying the next question
   has arrived; a resident who has submitted is replaced by a new one (a new chat) until all
   reports are started. Measured: updates/s; the latency of every step (the update is pushed into
   the stand-in → the stand-in receives the sendMessage carrying the next question); the CPU time
   (user + system) of the bot's processes per update; the CPU used meanwhile by the stand-in with
   the simulated residents and the proxy (this process), by the PostgreSQL server, and by every
   other process of the machine;
4. latency run: `--latency-reports` complete reports whose residents arrive at a fixed rate (open
   loop, `--latency-rate` updates/s), so the step latency is also known at a load below saturation;
5. Qinglian only: `--drafts` residents each send /report, pick a district and type the place (a
   half-filed draft; `--drafts-concurrency` at a time), then the RSS is read again;
6. when every bot has been measured, `--cpu-rounds` − 1 more throughput runs per bot (each bot started
   afresh, after its own warm-up), the bots taking turns, so that a slower or faster spell of the
   machine falls on all of them: the CPU comparison uses each bot's median over the rounds.

The stand-in and the simulated residents share this process: the residents react inside the
stand-in's event loop when it records a message the bot sent, so nothing polls. Qinglian runs with
QINGLIAN_TELEGRAM_MAX_RATE=100000 (its default, 30 messages/s, is Telegram's own limit and would cap
the benchmark); the plain bots have no rate limiter.

Everything binds to 127.0.0.1; every wait is bounded (no progress for `--stall` seconds, or the
whole run past `--timeout`, stops it); the bot processes are always stopped and the PostgreSQL
database dropped at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.load_test import (
    POSTGRES_ADMIN_DSN,
    WEBHOOK_PATH,
    RoundRobinProxy,
    create_database,
    drop_database,
    log_problems,
    postgres_cpu,
)
from benchmarks.residents import (
    HALF_REPORT,
    REPO,
    REPORT,
    TOKEN,
    BenchStandIn,
    BotProcess,
    BotUnderTest,
    Meter,
    ProcessGroup,
    Workload,
    latency_figures,
    machine,
)
from benchmarks.residents import free_port as _free_port
from benchmarks.residents import healthy as _healthy
from benchmarks.residents import wait_for as _wait
from benchmarks.residents import wait_quiet as _quiet

QINGLIAN_KEYS = ("qinglian-sqlite", "qinglian-postgres")
PLAIN_KEYS = ("ptb", "aiogram")
#: the targets of issue 11, point 8
TARGET_UPDATES_PER_S = 300.0
TARGET_PACED_P99_MS = 50.0
TARGET_RSS_START_MB = 250.0
#: stands for the proxy's webhook URL in a process's environment (it is known only when the proxy starts)
WEBHOOK_PLACEHOLDER = "{webhook}"

# --------------------------------------------------------------------------------------------
# the bots under test


@dataclasses.dataclass(frozen=True)
class Rig:
    """A bot under test: its processes (started in this order), how updates reach them, what it is measured
    against."""

    key: str
    title: str
    processes: tuple[BotUnderTest, ...]
    setup: str  # one line for the table
    qinglian: bool = False
    #: the ports of the `serve` processes behind the round-robin webhook proxy; empty: long polling
    webhook_ports: tuple[int, ...] = ()
    #: run `qinglian db upgrade` on this database before the first start (as deploy/ does)
    database_url: str | None = None
    #: CPU seconds of the database server so far (PostgreSQL), measured apart from the bot's
    server_cpu: Callable[[], float] | None = None
    #: start once on the empty data directory and database (migrations, training) before the measured start
    first_start: bool = False
    #: target: CPU per update at most this many times the faster plain bot's
    cpu_target: float | None = None

    @property
    def webhook(self) -> bool:
        return bool(self.webhook_ports)


def qinglian_rigs(args: argparse.Namespace, workdir: Path, postgres: tuple[str, str] | None) -> list[Rig]:
    """Qinglian's setups that `--database` chooses; `postgres` is the fresh database's name and URL."""
    cli = [sys.executable, "-m", "bot.cli"]
    common = {"QINGLIAN_SECRET_KEY": secrets.token_urlsafe(48), "QINGLIAN_TELEGRAM_TOKEN": TOKEN,
              "QINGLIAN_TELEGRAM_API_URL": "{root}", "QINGLIAN_TELEGRAM_MAX_RATE": "100000"}
    rigs = []
    if args.database in ("both", "sqlite"):
        port = _free_port()
        env = {**common, "QINGLIAN_DATA_DIR": str(workdir / "qinglian-sqlite-data")}
        serve = BotUnderTest("serve", "qinglian serve", [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
                             env, f"http://127.0.0.1:{port}/healthz")
        rigs.append(Rig("qinglian-sqlite", "Qinglian, SQLite", (serve,), "1 × serve, long polling, SQLite",
                        qinglian=True, first_start=True, cpu_target=2.0))
    if args.database in ("both", "postgres"):
        assert postgres is not None
        database, postgres_url = postgres
        env = {**common, "QINGLIAN_DATA_DIR": str(workdir / "qinglian-postgres-data"),
               "QINGLIAN_DATABASE_URL": postgres_url,
               "QINGLIAN_TELEGRAM_WEBHOOK_URL": WEBHOOK_PLACEHOLDER,
               "QINGLIAN_TELEGRAM_WEBHOOK_SECRET": secrets.token_urlsafe(24)}
        ports = (_free_port(), _free_port())
        processes = [BotUnderTest(f"serve-{n}", f"qinglian serve #{n}",
                                  [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env,
                                  f"http://127.0.0.1:{port}/healthz")
                     for n, port in enumerate(ports, 1)]
        processes.append(BotUnderTest("worker", "qinglian worker", [*cli, "worker"], env,
                                      ready_line="worker running"))
        rigs.append(Rig("qinglian-postgres", "Qinglian, PostgreSQL", tuple(processes),
                        "2 × serve + worker, webhook via a round-robin proxy, PostgreSQL",
                        qinglian=True, webhook_ports=ports, database_url=postgres_url,
                        server_cpu=functools.partial(postgres_cpu, database),
                        first_start=True, cpu_target=3.0))
    return rigs


def plain_rigs() -> list[Rig]:
    ptb = BotUnderTest("ptb", "PTB ConversationHandler",
                       [sys.executable, "-m", "benchmarks.plain_bots.ptb_conversation_bot",
                        "--api-url", "{root}", "--token", TOKEN])
    aiogram = BotUnderTest("aiogram", "aiogram FSM",
                           [sys.executable, "-m", "benchmarks.plain_bots.aiogram_fsm_bot",
                            "--api-url", "{root}", "--token", TOKEN])
    return [Rig(bot.key, bot.title, (bot,), "1 process, long polling, state in memory") for bot in (ptb, aiogram)]


def wanted_keys(args: argparse.Namespace) -> list[str]:
    """The keys of the bots to measure, in order; `--only` may say `qinglian` for both of its setups."""
    ours = [key for key in QINGLIAN_KEYS if args.database in ("both", key.removeprefix("qinglian-"))]
    if not args.only:
        return ours if args.skip_plain else [*ours, *PLAIN_KEYS]
    wanted: list[str] = []
    for key in (part.strip() for part in args.only.split(",") if part.strip()):
        expanded = ours if key == "qinglian" else [key]
        for one in expanded:
            if one not in (*QINGLIAN_KEYS, *PLAIN_KEYS):
                raise SystemExit(f"--only: unknown bot {one!r} (qinglian, {', '.join((*QINGLIAN_KEYS, *PLAIN_KEYS))})")
            if one in QINGLIAN_KEYS and one not in ours:
                raise SystemExit(f"--only {one} needs --database {one.removeprefix('qinglian-')} or both")
            if one not in wanted:
                wanted.append(one)
    return [key for key in (*QINGLIAN_KEYS, *PLAIN_KEYS) if key in wanted]


# --------------------------------------------------------------------------------------------
# one bot


def _with_webhook(spec: BotUnderTest, url: str) -> BotUnderTest:
    return dataclasses.replace(spec, env={k: url if v == WEBHOOK_PLACEHOLDER else v for k, v in spec.env.items()})


def _ready(proc: BotProcess) -> Callable[[], bool]:
    url, line = proc.bot.health_url, proc.bot.ready_line
    if url:
        return lambda: _healthy(url)
    if line:
        return lambda: line in proc.log_tail(10**6)
    return lambda: True  # a plain bot: ready when it polls


def _rss(group: ProcessGroup) -> float | dict[str, float]:
    """One figure for a one-process bot, one per process otherwise."""
    readings = group.rss_by_process()
    if len(readings) == 1:
        return next(iter(readings.values()))
    return {name: round(mb, 1) for name, mb in readings.items()}


def _mb(value: float | dict[str, float]) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{name} {mb:.1f}" for name, mb in value.items()) + " MB"
    return f"{value:.1f} MB"


def _migrate(rig: Rig, root_url: str) -> None:
    spec = rig.processes[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGLIAN_")}
    env.update({k: root_url if v == "{root}" else v for k, v in spec.env.items() if v != WEBHOOK_PLACEHOLDER})
    done = subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{rig.key}: qinglian db upgrade failed:\n{done.stdout}{done.stderr}")


def measure_bot(rig: Rig, args: argparse.Namespace, workdir: Path, deadline: float,
                chat_ids: Iterator[int]) -> dict[str, Any]:
    # Qinglian remembers the update ids it has handled: each stand-in of a run numbers its updates afresh.
    standin = BenchStandIn(token=TOKEN, first_update_id=next(chat_ids) * 1000)
    standin.start()
    proxy = RoundRobinProxy([("127.0.0.1", port) for port in rig.webhook_ports]) if rig.webhook else None
    if proxy is not None:
        proxy.start()
    webhook_url = proxy.url + WEBHOOK_PATH if proxy is not None else ""
    def log(spec: BotUnderTest) -> Path:
        return workdir / (f"{rig.key}.log" if len(rig.processes) == 1 else f"{rig.key}-{spec.key}.log")

    procs = {spec.key: BotProcess(_with_webhook(spec, webhook_url), standin.root_url, log(spec))
             for spec in rig.processes}
    group = ProcessGroup(procs)
    result: dict[str, Any] = {"bot": rig.key, "title": rig.title, "setup": rig.setup, "processes": list(procs),
                              "qinglian": rig.qinglian, "cpu_target": rig.cpu_target}
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"  [{time.monotonic() - started:5.0f} s] {rig.key}: {text}", flush=True)

    def start() -> float:
        """Start the bot's processes one after the other and wait until it takes updates (its first getUpdates,
        or every `serve` process's setWebhook) and is idle; returns the seconds until it took updates."""
        began = time.monotonic()
        polls, hooks = len(standin.requests_for("getUpdates")), len(standin.requests_for("setWebhook"))
        for name, proc in procs.items():
            group.start(name)
            _wait(_ready(proc), deadline, f"{name} ready", proc)
        if rig.webhook:
            _wait(lambda: len(standin.requests_for("setWebhook")) >= hooks + len(rig.webhook_ports), deadline,
                  "setWebhook of every serve process", group)
        else:
            _wait(lambda: len(standin.requests_for("getUpdates")) > polls, deadline, "the first getUpdates", group)
        ready = time.monotonic() - began
        _quiet(group, deadline)
        time.sleep(args.settle)
        return ready

    try:
        if rig.first_start:
            if rig.database_url:
                _migrate(rig, standin.root_url)
            result["first_start_s"] = start()
            result["rss_first_start_mb"] = _rss(group)
            say(f"first start on an empty data directory: taking updates after {result['first_start_s']:.1f} s, "
                f"RSS {_mb(result['rss_first_start_mb'])}; restarting")
            group.stop()
        result["start_s"] = start()
        result["rss_start_mb"] = _rss(group)
        say(f"taking updates after {result['start_s']:.1f} s; RSS {_mb(result['rss_start_mb'])}; "
            f"warm-up: {args.warmup} reports")
        Workload(standin, REPORT, args.warmup, chat_ids, concurrency=args.concurrency).run(deadline, args.stall)
        _quiet(group, deadline)

        say(f"throughput run: {args.reports} reports × {len(REPORT)} updates, {args.concurrency} at a time")
        spies = _start_profiler(args, procs, rig.key)
        try:
            meter, requests_before = Meter(group, rig.server_cpu), len(standin.requests)
            cpu_before = group.cpu_by_process()
            work = Workload(standin, REPORT, args.reports, chat_ids, concurrency=args.concurrency)
            work.run(deadline, args.stall)
            _quiet(group, deadline, window=0.5)  # Qinglian's outbox settles the last messages after sending them
            result.update(meter.read(work))
            if len(procs) > 1:
                result["cpu_ms_per_update_by_process"] = {
                    name: round((cpu - cpu_before[name]) / work.updates * 1000, 3)
                    for name, cpu in group.cpu_by_process().items()}
            calls: dict[str, int] = {}
            for method, _ in standin.requests[requests_before:]:
                calls[method] = calls.get(method, 0) + 1
            result["bot_api_calls_per_update"] = {m: round(n / work.updates, 3) for m, n in sorted(calls.items())}
        finally:
            _stop_profiler(spies)
        if work.receipts != args.reports:
            raise RuntimeError(f"{rig.key}: {work.receipts} receipt codes for {args.reports} reports")
        result.update(profiled=bool(spies), updates=work.updates, failed_updates=work.failed_updates,
                      wall_s=work.wall, updates_per_s=work.updates / work.wall, **latency_figures(work))
        server = (f", PostgreSQL server {result['server_cpu_ms_per_update']:.2f} ms/update apart"
                  if "server_cpu_ms_per_update" in result else "")
        say(f"{result['updates_per_s']:.0f} updates/s; step latency p50 {result['p50_ms']:.0f} ms, "
            f"p99 {result['p99_ms']:.0f} ms; CPU {result['cpu_ms_per_update']:.2f} ms/update "
            f"({result['main_thread_cpu_ms_per_update']:.2f} in the event-loop threads"
            + (f"; by process {result['cpu_ms_per_update_by_process']}" if len(procs) > 1 else "")
            + f"){server}; bot at {result['bot_cpu_share']:.0%} of a core, stand-in {result['standin_cpu_share']:.0%}, "
            f"other processes {result['others_cpu_share']:.0%}"
            + (f"; {work.failed_updates} updates failed and were repeated" if work.failed_updates else ""))

        if args.latency_reports:
            say(f"latency run: {args.latency_reports} reports, residents arriving at {args.latency_rate:g} "
                "updates/s")
            paced = Workload(standin, REPORT, args.latency_reports, chat_ids, rate=args.latency_rate)
            meter = Meter(group, rig.server_cpu)
            paced.run(deadline, args.stall)
            others = meter.read(paced)["others_cpu_share"]
            result.update(paced_rate=args.latency_rate, paced_updates_per_s=paced.updates / paced.wall,
                          paced_failed_updates=paced.failed_updates,
                          paced_peak_residents=paced.peak_active, paced_others_cpu_share=others,
                          **latency_figures(paced, "paced_"))
            say(f"at {args.latency_rate:g} updates/s: step latency p50 {result['paced_p50_ms']:.0f} ms, "
                f"p99 {result['paced_p99_ms']:.0f} ms (other processes {others:.0%})")
            _quiet(group, deadline)
        result["rss_after_runs_mb"] = _rss(group)

        if rig.qinglian and args.drafts:
            say(f"{args.drafts} half-filed drafts, {args.drafts_concurrency} at a time")
            drafts = Workload(standin, HALF_REPORT, args.drafts, chat_ids, concurrency=args.drafts_concurrency)
            try:
                drafts.run(deadline, args.stall)
            except RuntimeError as exc:  # keep the other figures; say how far it got
                result["drafts_problem"] = str(exc)
                say(f"drafts incomplete: {exc}")
            _quiet(group, deadline)
            time.sleep(args.settle)
            result.update(drafts=drafts.finished, drafts_failed_updates=drafts.failed_updates,
                          drafts_updates_per_s=drafts.updates / max(drafts.wall, 1e-9),
                          rss_after_drafts_mb=_rss(group))
            say(f"RSS after {drafts.finished} drafts: {_mb(result['rss_after_drafts_mb'])} "
                f"({result['drafts_updates_per_s']:.0f} updates/s while filing them)")
        group.check_alive()
        if proxy is not None:
            result["webhook_non_2xx"] = sum(n for status, n in proxy.stats.statuses.items() if not 200 <= status < 300)
            result["proxy_requests"] = dict(proxy.stats.requests)
            result["proxy_failures"] = dict(proxy.stats.failures)
        problems = log_problems(procs)
        result["log_problems"] = problems
        result["log_problem_lines"] = sum(len(lines) for lines in problems.values())
        result["violations"] = list(standin.violations)
        result["standin_errors"] = list(standin.errors)
        result["seconds"] = time.monotonic() - started
        if standin.violations:
            say(f"{len(standin.violations)} Bot API violations, first: {standin.violations[0]}")
        if problems:
            say(f"ERROR lines or tracebacks in the logs (the first of each process): {problems}")
        return result
    finally:
        group.stop()
        if proxy is not None:
            proxy.stop()
        standin.stop()


def _start_profiler(args: argparse.Namespace, procs: dict[str, BotProcess], key: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on each process of the bot during the throughput run (`--profile-dir`): samples of the thread
    holding the GIL, as collapsed stacks. The figures of a profiled run are distorted by the sampling."""
    if args.profile_dir is None:
        return []
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    rate = os.environ.get("PYSPY_RATE", "100")  # samples per second
    spies = []
    for name, proc in procs.items():
        if proc.process is None:
            continue
        out = args.profile_dir / (f"{key}.collapsed" if len(procs) == 1 else f"{key}-{name}.collapsed")
        spies.append(subprocess.Popen([py_spy, "record", "--pid", str(proc.process.pid), "--rate", rate, "--gil",
                                       "--format", "raw", "--output", str(out)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # attached
    return spies


def _stop_profiler(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)


def cpu_round(rig: Rig, args: argparse.Namespace, workdir: Path, deadline: float,
              chat_ids: Iterator[int]) -> tuple[float, float]:
    """One more throughput run of a bot (started afresh; Qinglian on its prepared data directory and
    database): its CPU per update and updates/s. The rounds of the bots alternate, so a slower or faster
    spell of the machine falls on all of them."""
    light = argparse.Namespace(**{**vars(args), "latency_reports": 0, "drafts": 0, "profile_dir": None})
    result = measure_bot(dataclasses.replace(rig, first_start=False), light, workdir, deadline, chat_ids)
    if result["violations"]:
        raise RuntimeError(f"{rig.key}: Bot API violations in a CPU round: {result['violations'][:3]}")
    return float(result["cpu_ms_per_update"]), float(result["updates_per_s"])


# --------------------------------------------------------------------------------------------
# report


ROWS: list[tuple[str, str, str]] = [
    ("setup", "setup", "s"),
    ("updates/s (closed loop)", "updates_per_s", ".0f"),
    ("updates/s, every round", "updates_per_s_rounds", ".0f"),
    ("updates that failed (apology sent, answer repeated)", "failed_updates", "d"),
    ("step latency p50, ms", "p50_ms", ".0f"),
    ("step latency p95, ms", "p95_ms", ".0f"),
    ("step latency p99, ms", "p99_ms", ".0f"),
    ("step latency at the fixed rate p50, ms", "paced_p50_ms", ".0f"),
    ("step latency at the fixed rate p99, ms", "paced_p99_ms", ".0f"),
    ("bot CPU per update (sum over its processes), ms", "cpu_ms_per_update", ".2f"),
    ("… by process, ms", "cpu_ms_per_update_by_process", ".2f"),
    ("bot CPU per update, every round, ms", "cpu_rounds", ".2f"),
    ("bot CPU per update, median of the rounds, ms", "cpu_median", ".2f"),
    ("… of it in the event-loop threads, ms", "main_thread_cpu_ms_per_update", ".2f"),
    ("PostgreSQL server CPU per update (not in the bot's), ms", "server_cpu_ms_per_update", ".2f"),
    ("bot CPU, share of one core", "bot_cpu_share", ".0%"),
    ("stand-in + residents (+ proxy) CPU, share of one core", "standin_cpu_share", ".0%"),
    ("other processes' CPU meanwhile, cores", "others_cpu_share", ".0%"),
    ("webhook answers not 2xx (delivered again)", "webhook_non_2xx", "d"),
    ("ERROR lines or tracebacks in the logs", "log_problem_lines", "d"),
    ("Bot API calls per update", "bot_api_calls_per_update", ".3f"),
    ("RSS after the first start (empty data directory), MB", "rss_first_start_mb", ".1f"),
    ("RSS after start, MB", "rss_start_mb", ".1f"),
    ("RSS after the runs, MB", "rss_after_runs_mb", ".1f"),
    ("RSS after the half-filed drafts, MB", "rss_after_drafts_mb", ".1f"),
]


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return " / ".join(f"{name} {format(v, fmt)}" for name, v in value.items())
    if isinstance(value, list):
        return " / ".join(format(v, fmt) for v in value)
    return format(value, fmt)


def _per_process(value: float | dict[str, float]) -> dict[str, float]:
    return value if isinstance(value, dict) else {"bot": value}


def _largest(value: float | dict[str, float]) -> float:
    return max(_per_process(value).values())


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def targets(results: list[dict[str, Any]]) -> list[str]:
    """Each Qinglian setup against the targets of issue 11, point 8, from the figures of this run."""
    plain = [r for r in results if not r["qinglian"]]
    faster = min(plain, key=lambda r: r["cpu_median"]) if plain else None
    lines = []
    for ours in (r for r in results if r["qinglian"]):
        checks = []
        rate = statistics.median(ours["updates_per_s_rounds"])
        checks.append(f"updates/s {rate:.0f} (median of the rounds) ≥ {TARGET_UPDATES_PER_S:.0f}: "
                      f"{_verdict(rate >= TARGET_UPDATES_PER_S)}")
        if faster is not None and ours["cpu_target"]:
            ratio, limit = ours["cpu_median"] / faster["cpu_median"], ours["cpu_target"]
            checks.append(f"CPU per update {ratio:.2f} × {faster['title']} (medians) ≤ {limit:g} ×: "
                          f"{_verdict(ratio <= limit)}")
        if "paced_p99_ms" in ours:
            checks.append(f"step p99 at {ours['paced_rate']:g} updates/s {ours['paced_p99_ms']:.0f} ms ≤ "
                          f"{TARGET_PACED_P99_MS:.0f} ms: {_verdict(ours['paced_p99_ms'] <= TARGET_PACED_P99_MS)}")
        rss = _largest(ours["rss_start_mb"])
        checks.append(f"RSS after start {rss:.1f} MB (largest process) ≤ {TARGET_RSS_START_MB:.0f} MB: "
                      f"{_verdict(rss <= TARGET_RSS_START_MB)}")
        if "rss_after_drafts_mb" in ours:
            before = _per_process(ours["rss_after_runs_mb"])
            growth = {name: after - before[name] for name, after in _per_process(ours["rss_after_drafts_mb"]).items()}
            checks.append(f"RSS growth over {ours['drafts']:,} drafts: "
                          + ", ".join(f"{name} {mb:+.1f} MB" for name, mb in growth.items()))
        lines.append(f"{ours['title']}: " + "; ".join(checks))
    return lines


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| | " + " | ".join(r["title"] for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_cell(r.get(key), fmt) for r in results) + " |"
              for label, key, fmt in ROWS if any(key in r for r in results)]
    plain = [r for r in results if not r["qinglian"]]
    for ours in (r for r in results if r["qinglian"]):
        if plain:
            lines.append("")
        for r in plain:
            rounds = ", ".join(f"{q / p:.2f}×" for q, p in zip(ours["cpu_rounds"], r["cpu_rounds"], strict=True))
            lines.append(f"CPU per update, {ours['title']} / {r['title']}: "
                         f"{ours['cpu_median'] / r['cpu_median']:.2f}× (medians; round by round {rounds})")
    found = targets(results)
    if found:
        lines += ["", "Targets (issue 11, point 8):", *(f"- {line}" for line in found)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark of the Telegram path (see the module docstring).")
    parser.add_argument("--database", choices=("both", "sqlite", "postgres"), default="both",
                        help="Qinglian's setups: one serve on SQLite, two serve + worker on PostgreSQL, or both")
    parser.add_argument("--postgres", default=POSTGRES_ADMIN_DSN,
                        help="admin DSN; a fresh database is created there and dropped afterwards")
    parser.add_argument("--reports", type=int, default=500, help="complete reports in the throughput run")
    parser.add_argument("--concurrency", type=int, default=50, help="residents at a time in the throughput run")
    parser.add_argument("--warmup", type=int, default=50, help="complete reports before measuring")
    parser.add_argument("--latency-reports", type=int, default=100,
                        help="complete reports in the fixed-rate latency run (0: skip it)")
    parser.add_argument("--latency-rate", type=float, default=50.0, help="updates/s in the latency run")
    parser.add_argument("--drafts", type=int, default=10_000, help="half-filed drafts before the last RSS reading")
    parser.add_argument("--drafts-concurrency", type=int, default=200)
    parser.add_argument("--skip-plain", action="store_true", help="only Qinglian's setups")
    parser.add_argument("--only", default="",
                        help="comma-separated subset of qinglian-sqlite,qinglian-postgres,ptb,aiogram "
                             "(qinglian: the setups --database chooses)")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before an RSS reading")
    parser.add_argument("--stall", type=float, default=30.0, help="give up after this long without a reply")
    parser.add_argument("--timeout", type=float, default=2400.0, help="limit for the whole run, seconds")
    parser.add_argument("--cpu-rounds", type=int, default=3,
                        help="throughput runs per bot for the CPU comparison, alternating between the bots "
                             "(the first is the full measurement)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with the bots' logs")
    parser.add_argument("--profile-dir", type=Path,
                        help="record each bot process with py-spy during the throughput run (collapsed stacks "
                             "here); the figures of such a run are distorted by the sampling")
    args = parser.parse_args(argv)
    keys = wanted_keys(args)
    if not keys:
        parser.error("no bot to measure")

    began = time.monotonic()
    deadline = began + args.timeout
    workdir = Path(tempfile.mkdtemp(prefix="qinglian-bench-"))
    chat_ids = itertools.count(10_000_001)
    info = machine()
    print(f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, commit {info['commit'] or '?'}"
          f" ({info['changed_files']} files changed); bots: {', '.join(keys)}; logs in {workdir}", flush=True)
    results: list[dict[str, Any]] = []
    failed = True
    database: tuple[str, str] | None = None
    try:
        if "qinglian-postgres" in keys:
            database = create_database(args.postgres, prefix="qinglian_bench")
            print(f"PostgreSQL database {database[0]} created for the run", flush=True)
        everything = {rig.key: rig for rig in [*qinglian_rigs(args, workdir, database),
                                                *plain_rigs()]}
        rigs = [everything[key] for key in keys]
        for rig in rigs:
            print(f"{rig.title} ({rig.setup}):", flush=True)
            results.append(measure_bot(rig, args, workdir, deadline, chat_ids))
        for result in results:
            result["cpu_rounds"] = [result["cpu_ms_per_update"]]
            result["updates_per_s_rounds"] = [result["updates_per_s"]]
        for number in range(2, args.cpu_rounds + 1):
            for rig, result in zip(rigs, results, strict=True):
                print(f"{rig.title}, CPU round {number}:", flush=True)
                cpu, rate = cpu_round(rig, args, workdir, deadline, chat_ids)
                result["cpu_rounds"].append(cpu)
                result["updates_per_s_rounds"].append(rate)
        for result in results:
            result["cpu_median"] = statistics.median(result["cpu_rounds"])
        failed = False
    finally:
        if database is not None:
            drop_database(args.postgres, database[0])
            print(f"PostgreSQL database {database[0]} dropped", flush=True)
        if failed or args.keep_logs:
            print(("failed; " if failed else "") + f"bot logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{table(results)}\n\n(whole run {time.monotonic() - began:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, ensure_ascii=False, indent=2))
    return 0 if all(not r["violations"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
