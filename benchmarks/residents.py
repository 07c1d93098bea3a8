"""Simulated residents on the stand-in Telegram server, and the bot processes they talk to.

Shared by the Telegram-path benchmark (`benchmarks.telegram_path`, one bot doing long polling) and
the load test (`benchmarks.load_test`, one or several Qinglian processes, polling or webhook):

* `REPORT`, the eight updates of one complete report, each with a fragment of the reply that carries
  the next question;
* `BenchStandIn`, the stand-in Bot API server (tests/standins/telegram_server.py, which validates
  every request against the Bot API spec) telling a listener about every message the bot sends;
* `Workload`, residents filing the steps inside the stand-in's event loop, closed or open loop,
  recording the latency of every step and the receipt code each resident was shown;
* `BotProcess`, a bot or service as a child process with its CPU time and resident set size, and
  `ProcessGroup`, several of them measured as one bot (two `serve` and a `worker` on PostgreSQL);
* CPU meters of the machine and this process, latency percentiles, a description of the machine.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
    #: the text to send for a chat, when it differs per resident (e.g. `/status <their code>`)
    value_for: Callable[[int], str] | None = None


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
                 *, concurrency: int | None = None, rate: float | None = None,
                 error_markers: tuple[str, ...] = ()) -> None:
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
        #: the receipt code (16 digits, as shown) each resident got when submitting
        self.receipt_codes: dict[int, str] = {}
        #: messages to residents containing one of `error_markers`: (chat, text)
        self.error_markers = error_markers
        self.error_messages: list[tuple[int, str]] = []
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
                self.standin.send_text(chat_id, step.value_for(chat_id) if step.value_for else step.value)
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
        if any(marker in text for marker in self.error_markers):
            self.error_messages.append((chat_id, text))
        if step.name == "submit" and "举报已提交" in text:
            if found := RECEIPT.search(text):
                self.receipts += 1
                self.receipt_codes[chat_id] = found.group().replace(" ", "")
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




@dataclass
class BotUnderTest:
    key: str
    title: str
    command: list[str]  # "{root}" stands for the stand-in's URL
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    #: a process without a health URL is ready when its log holds this line (`qinglian worker`)
    ready_line: str | None = None



def free_port() -> int:
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


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used so far (busy time of every CPU)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # already in user/nice
    return float(sum(times) - idle - guest)


def own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)



class Measured(Protocol):
    """What the waits and meters need of a bot: a `BotProcess` or a `ProcessGroup`."""

    def check_alive(self) -> None: ...
    def log_tail(self, chars: int = 3000) -> str: ...
    def cpu(self) -> float: ...
    def main_thread_cpu(self) -> float: ...


class ProcessGroup:
    """Several processes measured as one bot: CPU summed over them, RSS read per process."""

    def __init__(self, procs: dict[str, BotProcess]) -> None:
        self.procs = procs

    def start(self, name: str) -> None:
        self.procs[name].start()

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            proc.stop()

    def check_alive(self) -> None:
        for proc in self.procs.values():
            proc.check_alive()

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name}:\n{proc.log_tail(chars)}" for name, proc in self.procs.items())

    def cpu(self) -> float:
        return sum(proc.cpu() for proc in self.procs.values())

    def main_thread_cpu(self) -> float:
        return sum(proc.main_thread_cpu() for proc in self.procs.values())

    def cpu_by_process(self) -> dict[str, float]:
        return {name: proc.cpu() for name, proc in self.procs.items()}

    def rss_by_process(self) -> dict[str, float]:
        return {name: proc.rss_mb() for name, proc in self.procs.items()}


def wait_for(condition: Callable[[], bool], deadline: float, what: str, proc: Measured) -> None:
    while not condition():
        proc.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached in time:\n{proc.log_tail()}")
        time.sleep(0.1)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_quiet(proc: Measured, deadline: float, window: float = 1.0, limit: float = 60.0) -> None:
    """Wait (at most `limit` s) until the bot (all its processes together) uses under 5 % of a core for
    `window` seconds."""
    give_up = min(deadline, time.monotonic() + limit)
    while time.monotonic() < give_up:
        before = proc.cpu()
        time.sleep(window)
        if proc.cpu() - before < 0.05 * window:
            return


class Meter:
    """CPU of the bot (all its processes), of this process (stand-in + residents, and the proxy when there
    is one), of a database server when `server_cpu` reads it (PostgreSQL: its processes, apart from the
    bot's), and of the rest of the machine."""

    def __init__(self, proc: Measured, server_cpu: Callable[[], float] | None = None) -> None:
        self.proc = proc
        self.server_cpu = server_cpu
        self.bot, self.main, self.own, self.machine = proc.cpu(), proc.main_thread_cpu(), own_cpu(), machine_busy()
        self.server = server_cpu() if server_cpu else 0.0
        self.began = time.monotonic()

    def read(self, work: Workload) -> dict[str, float]:
        bot = self.proc.cpu() - self.bot
        main = self.proc.main_thread_cpu() - self.main
        own = own_cpu() - self.own
        server = self.server_cpu() - self.server if self.server_cpu else 0.0
        others = max(0.0, machine_busy() - self.machine - bot - own - server)
        elapsed = time.monotonic() - self.began  # a little longer than the run: the bot settles
        figures = {
            "cpu_s": bot,
            "cpu_ms_per_update": bot / work.updates * 1000,
            "main_thread_cpu_ms_per_update": main / work.updates * 1000,
            "bot_cpu_share": bot / work.wall,
            "standin_cpu_share": own / work.wall,
            "standin_cpu_ms_per_update": own / work.updates * 1000,
            "others_cpu_share": others / elapsed,
        }
        if self.server_cpu:
            figures.update(server_cpu_ms_per_update=server / work.updates * 1000, server_cpu_share=server / elapsed)
        return figures


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
