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
   half-filed draft; `--drafts-concurrency` at a time), then the RSS is read again;
6. when every bot has been measured, `--cpu-rounds` − 1 more throughput runs per bot (each bot started
   afresh, after its own warm-up), the bots taking turns, so that a slower or faster spell of the
   machine falls on all of them: the CPU comparison uses each bot's median over the rounds.

The stand-in and the simulated residents share this process: the residents react inside the
stand-in's event loop when it records a message the bot sent, so nothing polls. Qinglian runs with
QINGLIAN_TELEGRAM_MAX_RATE=100000 (its default, 30 messages/s, is Telegram's own limit and would cap
the benchmark); the plain bots have no rate limiter.

Everything binds to 127.0.0.1; every wait is bounded (no progress for `--stall` seconds, or the
whole run past `--timeout`, stops it); the bot processes are always stopped at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.residents import (
    HALF_REPORT,
    REPORT,
    TOKEN,
    BenchStandIn,
    BotProcess,
    BotUnderTest,
    Meter,
    Workload,
    latency_figures,
    machine,
)
from benchmarks.residents import free_port as _free_port
from benchmarks.residents import healthy as _healthy
from benchmarks.residents import wait_for as _wait
from benchmarks.residents import wait_quiet as _quiet

# --------------------------------------------------------------------------------------------
# the bots under test


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



def measure_bot(bot: BotUnderTest, args: argparse.Namespace, workdir: Path, deadline: float,
                chat_ids: Iterator[int]) -> dict[str, Any]:
    # Qinglian remembers the update ids it has handled: each stand-in of a run numbers its updates afresh.
    standin = BenchStandIn(token=TOKEN, first_update_id=next(chat_ids) * 1000)
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
    rate = os.environ.get("PYSPY_RATE", "100")  # samples per second
    spy = subprocess.Popen([py_spy, "record", "--pid", str(proc.process.pid), "--rate", rate, "--gil",
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



ROWS: list[tuple[str, str, str]] = [
    ("updates/s (closed loop)", "updates_per_s", ".0f"),
    ("updates that failed (apology sent, answer repeated)", "failed_updates", "d"),
    ("step latency p50, ms", "p50_ms", ".0f"),
    ("step latency p95, ms", "p95_ms", ".0f"),
    ("step latency p99, ms", "p99_ms", ".0f"),
    ("step latency at the fixed rate p50, ms", "paced_p50_ms", ".0f"),
    ("step latency at the fixed rate p99, ms", "paced_p99_ms", ".0f"),
    ("bot CPU per update, ms", "cpu_ms_per_update", ".2f"),
    ("bot CPU per update, every round, ms", "cpu_rounds", ""),
    ("bot CPU per update, median of the rounds, ms", "cpu_median", ".2f"),
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
        if isinstance(value, list):
            return " / ".join(f"{v:.2f}" for v in value)
        return "—" if value is None else format(value, fmt)

    lines = ["| | " + " | ".join(r["title"] for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(r, key, fmt) for r in results) + " |" for label, key, fmt in ROWS]
    ours = next((r for r in results if r["bot"] == "qinglian"), None)
    plain = [r for r in results if r["bot"] != "qinglian"]
    if ours and plain:
        lines.append("")
        for r in plain:
            rounds = ", ".join(f"{q / p:.2f}×" for q, p in zip(ours["cpu_rounds"], r["cpu_rounds"], strict=True))
            lines.append(f"CPU per update, Qinglian / {r['title']}: {ours['cpu_median'] / r['cpu_median']:.2f}× "
                         f"(medians; round by round {rounds})")
    return "\n".join(lines)


def cpu_round(bot: BotUnderTest, args: argparse.Namespace, workdir: Path, deadline: float,
              chat_ids: Iterator[int]) -> float:
    """One more throughput run of a bot (started afresh; Qinglian on its prepared data directory):
    its CPU per update. The rounds of the bots alternate, so a slower or faster spell of the machine
    falls on all of them."""
    light = argparse.Namespace(**{**vars(args), "latency_reports": 0, "drafts": 0, "profile_dir": None})
    result = measure_bot(dataclasses.replace(bot, first_start=False), light, workdir, deadline, chat_ids)
    if result["violations"]:
        raise RuntimeError(f"{bot.key}: Bot API violations in a CPU round: {result['violations'][:3]}")
    return float(result["cpu_ms_per_update"])


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
    parser.add_argument("--cpu-rounds", type=int, default=3,
                        help="throughput runs per bot for the CPU comparison, alternating between the bots "
                             "(the first is the full measurement)")
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
        bots = select_bots(args, workdir)
        for bot in bots:
            print(f"{bot.title}:", flush=True)
            results.append(measure_bot(bot, args, workdir, deadline, chat_ids))
        for result in results:
            result["cpu_rounds"] = [result["cpu_ms_per_update"]]
        for number in range(2, args.cpu_rounds + 1):
            for bot, result in zip(bots, results, strict=True):
                print(f"{bot.title}, CPU round {number}:", flush=True)
                result["cpu_rounds"].append(cpu_round(bot, args, workdir, deadline, chat_ids))
        for result in results:
            result["cpu_median"] = statistics.median(result["cpu_rounds"])
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
