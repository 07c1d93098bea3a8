"""Benchmark of the Telegram path: complete reports through the stand-in Bot API server.

    .venv/bin/python -m benchmarks.telegram_path [--reports 500] [--concurrency 50] [--drafts 10000]
                                                 [--skip-plain] [--json results.json]

A script, not a timed test; the results and how to read them are in docs/benchmarks-telegram.md.
For each bot under test — Qinglian (`python -m bot.cli serve`, SQLite in a fresh temporary data
directory, every step one database transaction, replies through the outbox) and two minimal plain
bots with in-memory state (a python-telegram-bot `ConversationHandler` bot and an aiogram 3 FSM bot,
benchmarks/plain_bots/) — it:

1. starts a fresh stand-in Bot API server (tests/standins/telegram_server.py) in this process and
   the bot as a separate process doing long polling against it; waits for /healthz (Qinglian) and
   the bot's first getUpdates, waits until the bot is idle, and reads its resident set size (RSS).
   Qinglian is started twice: once on the empty data directory (database migrations; the
   classifier trains its default model there) and, measured, again on the now prepared directory,
   as a service restarts in production; both RSS figures are reported;
2. warms up with `--warmup` complete reports (not measured);
3. throughput run: `--reports` complete reports (8 updates each) by `--concurrency` residents in a
   closed loop: a resident sends its next answer as soon as the reply carrying the next question
   has arrived; a resident who has submitted is replaced by a new one (a new chat) until all
   reports are started. Measured: updates/s; the latency of every step (the update is pushed into
   the stand-in → the stand-in receives the sendMessage carrying the next question); the CPU time
   (user + system) of the bot process per update; the CPU used meanwhile by the stand-in with the
   simulated residents (this process) and by every other process of the machine;
4. latency run: `--latency-reports` complete reports whose residents arrive at a fixed rate (open
   loop, `--latency-rate` updates/s), so the step latency is also known at a load below saturation;
5. Qinglian only: `--drafts` residents each send /report, pick a district and type the place (a
   half-filed draft; `--drafts-concurrency` at a time), then the RSS is read again.

The stand-in and the simulated residents share this process: the residents react inside the
stand-in's event loop when it records a message the bot sent, so nothing polls. Qinglian runs with
QINGLIAN_TELEGRAM_MAX_RATE=100000 (its default, 30 messages/s, is Telegram's own limit and would cap
the benchmark); the plain bots have no rate limiter.

Everything binds to 127.0.0.1; every wait is bounded (no progress for `--stall` seconds, or the
whole run past `--timeout`, stops it); the bot processes are always stopped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.standins.telegram_server import JSONDict, TelegramStandIn, Validated

REPO = Path(__file__).resolve().parent.parent
TOKEN = "424242:BENCH-qinglian"
PLACE = "岳麓区政务服务中心3号窗口"
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"
#: what Qinglian tells a resident whose update failed (bot/channels/telegram.py, `_apologise`)
APOLOGY = "抱歉，系统繁忙"
RECEIPT = re.compile(r"\d{4} \d{4} \d{4} \d{4}")


@dataclass(frozen=True)
class Step:
    kind: str  # "text" or "press"
    value: str
    #: a fragment of the reply that carries the next question (the last message of the step's reply)
    marker: str
    name: str


REPORT = (
    Step("text", "/report", "第1步", "/report"),
    Step("press", "district:yuelu", "第2步", "district"),
    Step("text", PLACE, "第3步", "place"),
    Step("press", "when:today", "第4步", "when"),
    Step("text", DESCRIPTION, "第5步", "description"),
    Step("press", "evidence:done", "第6步", "evidence"),
    Step("press", "identity:anonymous", "请核对举报内容", "identity"),
    Step("press", "summary:submit", "请选择您要办理的事项", "submit"),  # after "举报已提交 … 查询码"
)
HALF_REPORT = REPORT[:3]


# --------------------------------------------------------------------------------------------
# the stand-in, with a hook on every message the bot sends, and the simulated residents


class BenchStandIn(TelegramStandIn):
    """The stand-in, telling a listener (on its own event loop) about every message the bot sends."""

    listener: Callable[[int, str, float], None] | None = None

    def _record(self, chat_id: int, message: JSONDict, v: Validated) -> None:
        super()._record(chat_id, message, v)
        listener = self.listener
        if listener is not None and self._loop is not None:
            # called with the stand-in's lock held: react after this request is answered
            self._loop.call_soon(listener, chat_id, message.get("text") or "", time.perf_counter())

    def call(self, function: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(function)


class Workload:
    """Residents filing `steps`, driven inside the stand-in's event loop.

    Closed loop (`concurrency`): that many residents at a time, each answering as soon as the next
    question has arrived; a finished one is replaced by a new chat. Open loop (`rate`, updates/s):
    a new resident arrives every len(steps)/rate seconds, whatever the bot's progress.
    """

    def __init__(self, standin: BenchStandIn, steps: tuple[Step, ...], residents: int, chat_ids: Iterator[int],
                 *, concurrency: int | None = None, rate: float | None = None) -> None:
        assert (concurrency is None) != (rate is None)
        self.standin = standin
        self.steps = steps
        self.total = residents
        self.chat_ids = chat_ids
        self.concurrency = concurrency
        self.interval = len(steps) / rate if rate else 0.0
        self.latencies: list[list[float]] = [[] for _ in steps]
        self.active: dict[int, list[Any]] = {}  # chat → [step index, pushed at]
        self.started = self.finished = self.updates = self.receipts = self.failed_updates = 0
        self.peak_active = 0
        self.t_first = self.t_last = 0.0
        self.problems: list[str] = []
        self.done = threading.Event()

    # all below run on the stand-in's loop
    def start(self) -> None:
        self.standin.listener = self.on_message
        self.t_first = self.t_last = time.perf_counter()
        if self.total <= 0:
            self.done.set()
            return
        if self.concurrency is not None:
            for _ in range(min(self.concurrency, self.total)):
                self._begin()
        else:
            self._arrive()

    def _arrive(self) -> None:
        if self.done.is_set():
            return
        self._begin()
        if self.started < self.total:
            loop = self.standin._loop
            assert loop is not None
            delay = self.t_first + self.started * self.interval - time.perf_counter()
            loop.call_later(max(0.0, delay), self._arrive)

    def _begin(self) -> None:
        self.started += 1
        self._push(next(self.chat_ids), 0)
        self.peak_active = max(self.peak_active, len(self.active))

    def _push(self, chat_id: int, index: int, since: float | None = None) -> None:
        step = self.steps[index]
        self.active[chat_id] = [index, since or time.perf_counter()]
        self.updates += 1
        try:
            if step.kind == "text":
                self.standin.send_text(chat_id, step.value)
            else:
                self.standin.press_button(chat_id, step.value)
        except AssertionError as exc:  # no such button: the bot answered something else
            self._fail(f"chat {chat_id} step {step.name}: {exc}")

    def _fail(self, problem: str) -> None:
        self.problems.append(problem)
        self.done.set()

    def on_message(self, chat_id: int, text: str, arrived: float) -> None:
        state = self.active.get(chat_id)
        if state is None or self.done.is_set():
            return
        index, pushed = state
        step = self.steps[index]
        if step.name == "submit" and "举报已提交" in text:
            if RECEIPT.search(text):
                self.receipts += 1
            else:
                self._fail(f"chat {chat_id}: confirmation without a receipt code: {text!r}")
        if APOLOGY in text:
            # Qinglian could not handle the update (its transaction failed) and said so: the resident
            # sends the same answer again, as a person would; the step's latency runs on
            self.failed_updates += 1
            self._push(chat_id, index, since=pushed)
            return
        if step.marker not in text:
            return
        self.latencies[index].append(arrived - pushed)
        self.t_last = arrived
        if index + 1 < len(self.steps):
            self._push(chat_id, index + 1)
            return
        del self.active[chat_id]
        self.finished += 1
        if self.finished == self.total:
            self.done.set()
        elif self.concurrency is not None and self.started < self.total:
            self._begin()

    # from the main thread
    def run(self, deadline: float, stall: float = 30.0) -> Workload:
        """Drive the residents until all are done; fail on the global deadline or when no step
        completes for `stall` seconds."""
        self.standin.call(self.start)
        progress, last_change = -1, time.monotonic()
        while not self.done.wait(0.25):
            now = time.monotonic()
            answered = sum(len(x) for x in self.latencies)
            if answered != progress:
                progress, last_change = answered, now
            if now > deadline or now - last_change > stall:
                why = "the global timeout" if now > deadline else f"no progress for {stall:.0f} s"
                stuck = {chat: self.steps[index].name for chat, (index, _) in list(self.active.items())[:5]}
                problem = f"{why}; waiting residents (chat: step): {stuck}"
                self.standin.call(lambda problem=problem: self._fail(problem))  # type: ignore[misc]
                self.done.wait(5)
                break
        self.standin.listener = None
        if self.problems:
            raise RuntimeError(f"workload failed after {self.finished}/{self.total} residents: {self.problems[:3]}")
        return self

    @property
    def wall(self) -> float:
        return self.t_last - self.t_first

    def all_latencies(self) -> list[float]:
        return sorted(x for per_step in self.latencies for x in per_step)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


# --------------------------------------------------------------------------------------------
# the bots under test


@dataclass
class BotUnderTest:
    key: str
    title: str
    command: list[str]  # "{root}" stands for the stand-in's URL
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    #: start once on the fresh data directory (migrations, first-start work) before the measured start
    first_start: bool = False


def select_bots(args: argparse.Namespace, workdir: Path) -> list[BotUnderTest]:
    port = _free_port()
    ours = BotUnderTest(
        "qinglian", "Qinglian",
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        {"QINGLIAN_DATA_DIR": str(workdir / "qinglian-data"), "QINGLIAN_TELEGRAM_TOKEN": TOKEN,
         "QINGLIAN_TELEGRAM_API_URL": "{root}", "QINGLIAN_TELEGRAM_MAX_RATE": "100000"},
        f"http://127.0.0.1:{port}/healthz",
        first_start=True,
    )
    ptb = BotUnderTest("ptb", "PTB ConversationHandler",
                       [sys.executable, "-m", "benchmarks.plain_bots.ptb_conversation_bot",
                        "--api-url", "{root}", "--token", TOKEN])
    aiogram = BotUnderTest("aiogram", "aiogram FSM",
                           [sys.executable, "-m", "benchmarks.plain_bots.aiogram_fsm_bot",
                            "--api-url", "{root}", "--token", TOKEN])
    if args.only:
        wanted = set(args.only.split(","))
        return [b for b in (ours, ptb, aiogram) if b.key in wanted]
    return [ours] if args.skip_plain else [ours, ptb, aiogram]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BotProcess:
    def __init__(self, bot: BotUnderTest, root_url: str, log_path: Path) -> None:
        self.bot = bot
        self.command = [root_url if part == "{root}" else part for part in bot.command]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("QINGLIAN_")}
        self.env.update({k: root_url if v == "{root}" else v for k, v in bot.env.items()})
        self.env["PYTHONUNBUFFERED"] = "1"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._ps = psutil.Process(self.process.pid)

    @property
    def ps(self) -> psutil.Process:
        assert self._ps is not None, "not started"
        return self._ps

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"{self.bot.key} exited ({code}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def main_thread_cpu(self) -> float:
        """CPU seconds of the main thread (its OS thread id is the process id): the event loop."""
        return next((t.user_time + t.system_time for t in self.ps.threads() if t.id == self.ps.pid), 0.0)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None


def _machine_busy() -> float:
    """CPU seconds all processes of the machine have used so far (busy time of every CPU)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # already in user/nice
    return float(sum(times) - idle - guest)


def _own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


# --------------------------------------------------------------------------------------------
# one bot, all phases


def _wait(condition: Callable[[], bool], deadline: float, what: str, proc: BotProcess) -> None:
    while not condition():
        proc.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached in time:\n{proc.log_tail()}")
        time.sleep(0.1)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _quiet(proc: BotProcess, deadline: float, window: float = 1.0, limit: float = 60.0) -> None:
    """Wait (at most `limit` s) until the bot uses under 5 % of a core for `window` seconds."""
    give_up = min(deadline, time.monotonic() + limit)
    while time.monotonic() < give_up:
        before = proc.cpu()
        time.sleep(window)
        if proc.cpu() - before < 0.05 * window:
            return


class Meter:
    """CPU of the bot, of this process (stand-in + residents) and of the rest of the machine."""

    def __init__(self, proc: BotProcess) -> None:
        self.proc = proc
        self.bot, self.main, self.own, self.machine = proc.cpu(), proc.main_thread_cpu(), _own_cpu(), _machine_busy()
        self.began = time.monotonic()

    def read(self, work: Workload) -> dict[str, float]:
        bot = self.proc.cpu() - self.bot
        main = self.proc.main_thread_cpu() - self.main
        own = _own_cpu() - self.own
        others = max(0.0, _machine_busy() - self.machine - bot - own)
        elapsed = time.monotonic() - self.began  # a little longer than the run: the bot settles
        return {
            "cpu_s": bot,
            "cpu_ms_per_update": bot / work.updates * 1000,
            "main_thread_cpu_ms_per_update": main / work.updates * 1000,
            "bot_cpu_share": bot / work.wall,
            "standin_cpu_share": own / work.wall,
            "standin_cpu_ms_per_update": own / work.updates * 1000,
            "others_cpu_share": others / elapsed,
        }


def latency_figures(work: Workload, prefix: str = "") -> dict[str, Any]:
    latencies = work.all_latencies()
    return {
        f"{prefix}p50_ms": percentile(latencies, 50) * 1000,
        f"{prefix}p95_ms": percentile(latencies, 95) * 1000,
        f"{prefix}p99_ms": percentile(latencies, 99) * 1000,
        f"{prefix}max_ms": latencies[-1] * 1000,
        f"{prefix}step_p50_ms": {s.name: percentile(sorted(v), 50) * 1000
                                 for s, v in zip(work.steps, work.latencies, strict=True)},
        f"{prefix}step_p99_ms": {s.name: percentile(sorted(v), 99) * 1000
                                 for s, v in zip(work.steps, work.latencies, strict=True)},
    }


def measure_bot(bot: BotUnderTest, args: argparse.Namespace, workdir: Path, deadline: float,
                chat_ids: Iterator[int]) -> dict[str, Any]:
    standin = BenchStandIn(token=TOKEN)
    standin.start()
    proc = BotProcess(bot, standin.root_url, workdir / f"{bot.key}.log")
    result: dict[str, Any] = {"bot": bot.key, "title": bot.title}
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"  [{time.monotonic() - started:5.0f} s] {bot.key}: {text}", flush=True)

    def start() -> float:
        """Start the bot and wait until it polls and is idle; returns the seconds until it polled."""
        began, polls = time.monotonic(), len(standin.requests_for("getUpdates"))
        proc.start()
        if bot.health_url:
            _wait(lambda: _healthy(bot.health_url or ""), deadline, "/healthz", proc)
        _wait(lambda: len(standin.requests_for("getUpdates")) > polls, deadline, "the first getUpdates", proc)
        polling = time.monotonic() - began
        _quiet(proc, deadline)
        time.sleep(args.settle)
        return polling

    try:
        if bot.first_start:
            result["first_start_s"] = start()
            result["rss_first_start_mb"] = proc.rss_mb()
            say(f"first start on an empty data directory: polling after {result['first_start_s']:.1f} s, "
                f"RSS {result['rss_first_start_mb']:.1f} MB; restarting")
            proc.stop()
        result["start_s"] = start()
        result["rss_start_mb"] = proc.rss_mb()
        say(f"polling after {result['start_s']:.1f} s; RSS {result['rss_start_mb']:.1f} MB; "
            f"warm-up: {args.warmup} reports")
        Workload(standin, REPORT, args.warmup, chat_ids, concurrency=args.concurrency).run(deadline, args.stall)
        _quiet(proc, deadline)

        say(f"throughput run: {args.reports} reports × {len(REPORT)} updates, {args.concurrency} at a time")
        spy = _start_profiler(args, proc, bot.key)
        try:
            meter, requests_before = Meter(proc), len(standin.requests)
            work = Workload(standin, REPORT, args.reports, chat_ids, concurrency=args.concurrency)
            work.run(deadline, args.stall)
            _quiet(proc, deadline, window=0.5)  # Qinglian's outbox settles the last batch after sending it
            result.update(meter.read(work))
            calls: dict[str, int] = {}
            for method, _ in standin.requests[requests_before:]:
                calls[method] = calls.get(method, 0) + 1
            result["bot_api_calls_per_update"] = {m: round(n / work.updates, 3) for m, n in sorted(calls.items())}
        finally:
            _stop_profiler(spy)
        if work.receipts != args.reports:
            raise RuntimeError(f"{bot.key}: {work.receipts} receipt codes for {args.reports} reports")
        result.update(profiled=spy is not None, updates=work.updates, failed_updates=work.failed_updates,
                      wall_s=work.wall,
                      updates_per_s=work.updates / work.wall, **latency_figures(work))
        say(f"{result['updates_per_s']:.0f} updates/s; step latency p50 {result['p50_ms']:.0f} ms, "
            f"p99 {result['p99_ms']:.0f} ms; CPU {result['cpu_ms_per_update']:.2f} ms/update "
            f"({result['main_thread_cpu_ms_per_update']:.2f} in the event-loop thread); bot at "
            f"{result['bot_cpu_share']:.0%} of a core, stand-in {result['standin_cpu_share']:.0%}, "
            f"other processes {result['others_cpu_share']:.0%}"
            + (f"; {work.failed_updates} updates failed and were repeated" if work.failed_updates else ""))

        if args.latency_reports:
            say(f"latency run: {args.latency_reports} reports, residents arriving at {args.latency_rate:g} "
                "updates/s")
            paced = Workload(standin, REPORT, args.latency_reports, chat_ids, rate=args.latency_rate)
            meter = Meter(proc)
            paced.run(deadline, args.stall)
            others = meter.read(paced)["others_cpu_share"]
            result.update(paced_rate=args.latency_rate, paced_updates_per_s=paced.updates / paced.wall,
                          paced_failed_updates=paced.failed_updates,
                          paced_peak_residents=paced.peak_active, paced_others_cpu_share=others,
                          **latency_figures(paced, "paced_"))
            say(f"at {args.latency_rate:g} updates/s: step latency p50 {result['paced_p50_ms']:.0f} ms, "
                f"p99 {result['paced_p99_ms']:.0f} ms (other processes {others:.0%})")
            _quiet(proc, deadline)
        result["rss_after_runs_mb"] = proc.rss_mb()

        if bot.key == "qinglian" and args.drafts:
            say(f"{args.drafts} half-filed drafts, {args.drafts_concurrency} at a time")
            drafts = Workload(standin, HALF_REPORT, args.drafts, chat_ids, concurrency=args.drafts_concurrency)
            try:
                drafts.run(deadline, args.stall)
            except RuntimeError as exc:  # keep the other figures; say how far it got
                result["drafts_problem"] = str(exc)
                say(f"drafts incomplete: {exc}")
            _quiet(proc, deadline)
            time.sleep(args.settle)
            result.update(drafts=drafts.finished, drafts_failed_updates=drafts.failed_updates,
                          drafts_updates_per_s=drafts.updates / max(drafts.wall, 1e-9),
                          rss_after_drafts_mb=proc.rss_mb())
            say(f"RSS after {drafts.finished} drafts: {result['rss_after_drafts_mb']:.1f} MB "
                f"({result['drafts_updates_per_s']:.0f} updates/s while filing them)")
        proc.check_alive()
        result["violations"] = list(standin.violations)
        result["standin_errors"] = list(standin.errors)
        result["seconds"] = time.monotonic() - started
        if standin.violations:
            say(f"{len(standin.violations)} Bot API violations, first: {standin.violations[0]}")
        return result
    finally:
        proc.stop()
        standin.stop()


def _start_profiler(args: argparse.Namespace, proc: BotProcess, key: str) -> subprocess.Popen[bytes] | None:
    """py-spy on the bot during the throughput run (`--profile-dir`): samples of the thread holding
    the GIL, as collapsed stacks. The figures of a profiled run are distorted by the sampling."""
    if args.profile_dir is None or proc.process is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    out = args.profile_dir / f"{key}.collapsed"
    spy = subprocess.Popen([py_spy, "record", "--pid", str(proc.process.pid), "--rate", "100", "--gil",
                            "--format", "raw", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    return spy


def _stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# report


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                 capture_output=True, text=True, timeout=10).stdout.count("\n")
    except (OSError, subprocess.SubprocessError):
        commit, changed = "", 0
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "commit": commit, "changed_files": changed,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform()}


ROWS: list[tuple[str, str, str]] = [
    ("updates/s (closed loop)", "updates_per_s", ".0f"),
    ("updates that failed (apology sent, answer repeated)", "failed_updates", "d"),
    ("step latency p50, ms", "p50_ms", ".0f"),
    ("step latency p95, ms", "p95_ms", ".0f"),
    ("step latency p99, ms", "p99_ms", ".0f"),
    ("step latency at the fixed rate p50, ms", "paced_p50_ms", ".0f"),
    ("step latency at the fixed rate p99, ms", "paced_p99_ms", ".0f"),
    ("bot CPU per update, ms", "cpu_ms_per_update", ".2f"),
    ("… of it in the event-loop thread, ms", "main_thread_cpu_ms_per_update", ".2f"),
    ("bot CPU, share of one core", "bot_cpu_share", ".0%"),
    ("stand-in + residents CPU, share of one core", "standin_cpu_share", ".0%"),
    ("other processes' CPU meanwhile, cores", "others_cpu_share", ".0%"),
    ("RSS after the first start (empty data directory), MB", "rss_first_start_mb", ".1f"),
    ("RSS after start, MB", "rss_start_mb", ".1f"),
    ("RSS after the runs, MB", "rss_after_runs_mb", ".1f"),
    ("RSS after the half-filed drafts, MB", "rss_after_drafts_mb", ".1f"),
]


def table(results: list[dict[str, Any]]) -> str:
    def cell(result: dict[str, Any], key: str, fmt: str) -> str:
        value = result.get(key)
        return "—" if value is None else format(value, fmt)

    lines = ["| | " + " | ".join(r["title"] for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(r, key, fmt) for r in results) + " |" for label, key, fmt in ROWS]
    ours = next((r for r in results if r["bot"] == "qinglian"), None)
    plain = [r for r in results if r["bot"] != "qinglian"]
    if ours and plain:
        lines.append("")
        for r in plain:
            ratio = ours["cpu_ms_per_update"] / r["cpu_ms_per_update"]
            lines.append(f"CPU per update, Qinglian / {r['title']}: {ratio:.2f}×")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark of the Telegram path (see the module docstring).")
    parser.add_argument("--reports", type=int, default=500, help="complete reports in the throughput run")
    parser.add_argument("--concurrency", type=int, default=50, help="residents at a time in the throughput run")
    parser.add_argument("--warmup", type=int, default=50, help="complete reports before measuring")
    parser.add_argument("--latency-reports", type=int, default=100,
                        help="complete reports in the fixed-rate latency run (0: skip it)")
    parser.add_argument("--latency-rate", type=float, default=50.0, help="updates/s in the latency run")
    parser.add_argument("--drafts", type=int, default=10_000, help="half-filed drafts before the last RSS reading")
    parser.add_argument("--drafts-concurrency", type=int, default=200)
    parser.add_argument("--skip-plain", action="store_true", help="only Qinglian")
    parser.add_argument("--only", default="", help="comma-separated subset of qinglian,ptb,aiogram")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before an RSS reading")
    parser.add_argument("--stall", type=float, default=30.0, help="give up after this long without a reply")
    parser.add_argument("--timeout", type=float, default=1200.0, help="limit for the whole run, seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile-dir", type=Path,
                        help="record each bot with py-spy during the throughput run (collapsed stacks here); "
                             "the figures of such a run are distorted by the sampling")
    args = parser.parse_args(argv)

    began = time.monotonic()
    deadline = began + args.timeout
    workdir = Path(tempfile.mkdtemp(prefix="qinglian-bench-"))
    chat_ids = itertools.count(10_000_001)
    info = machine()
    print(f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, commit {info['commit'] or '?'}"
          f" ({info['changed_files']} files changed); bot logs in {workdir}", flush=True)
    results: list[dict[str, Any]] = []
    failed = True
    try:
        for bot in select_bots(args, workdir):
            print(f"{bot.title}:", flush=True)
            results.append(measure_bot(bot, args, workdir, deadline, chat_ids))
        failed = False
    finally:
        if failed:
            print(f"failed; bot logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{table(results)}\n\n(whole run {time.monotonic() - began:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, ensure_ascii=False, indent=2))
    return 0 if all(not r["violations"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
