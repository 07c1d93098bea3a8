"""Benchmark of the WeChat callback in safe mode: callbacks per second on one process, and latency.

    .venv/bin/python -m benchmarks.wechat_callback [--reports 300] [--concurrency 32]
        [--latency-rate 40 80 120] [--latency-reports 100] [--mode safe] [--database-url URL] [--json out.json]

A script, not a timed test. It starts the stand-in WeChat platform (tests/standins/wechat_server.py)
for the API side and `python -m bot.cli serve` as a separate process (SQLite in a fresh temporary data
directory unless `--database-url`; log level WARNING), then plays WeChat itself: every callback is a
user's message built as WeChat's XML, encrypted (AES-256-CBC) and signed with `msg_signature` like
WeChat does, POSTed to `/wechat?encrypt_type=aes&...`; the passive reply is checked (signature,
decryption, app id) and must carry the next question of the report. A complete report is 8
callbacks (/report, district, place, when, description, no evidence, anonymous, submit), each one
dialog step in one database transaction.

1. warm-up: `--warmup` complete reports (not measured);
2. throughput: `--reports` complete reports by `--concurrency` users in a closed loop (a user sends
   the next message as soon as the passive reply to the previous one arrived); callbacks/s, latency
   of each callback (POST sent → passive reply received and decrypted), the service's CPU time;
3. latency at known loads: for each `--latency-rate`, `--latency-reports` reports whose callbacks
   arrive at that many callbacks/s (open loop: on a timer, whatever the server's speed), so the
   latency is that of a server under a given load rather than of a saturated one.

Everything binds to 127.0.0.1, every loop is bounded by its count and `--timeout`, and the service is
stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil

from tests.conftest import LiveService
from tests.standins.wechat_server import WeChatStandIn, build_callback, open_reply

TOKEN = "QinglianBench2026"
APP_ID = "wx0be1c2d3e4f5a6b7"
APP_SECRET = "b" * 32
AES_KEY = "BenchKey0123456789abcdefghijklmnopqrstuvwxy"
ACCOUNT = "gh_bench0000001"
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"
REPORT = (("/report", "第1步"), ("3", "第2步"), ("岳麓区政务服务中心3号窗口", "第3步"), ("1", "第4步"),
          (DESCRIPTION, "第5步"), ("1", "第6步"), ("1", "请核对举报内容"), ("1", "举报已提交"))
RECEIPT = re.compile(r"\d{4} \d{4} \d{4} \d{4}")


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    receipts: int = 0

    @property
    def callbacks(self) -> int:
        return len(self.latencies)

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else 0.0

        seconds = self.finished - self.started
        return {"callbacks": self.callbacks, "reports": self.receipts, "failures": len(self.failures),
                "seconds": round(seconds, 2), "callbacks_per_s": round(self.callbacks / seconds, 1) if seconds else 0,
                "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
                "max_ms": round(1000 * max(ordered), 1) if ordered else 0.0,
                "mean_ms": round(1000 * statistics.fmean(ordered), 1) if ordered else 0.0}


class Connection:
    """A bare HTTP/1.1 keep-alive connection: httpx costs the client more CPU than the server spends
    on a callback, which on a small machine would measure the client."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"POST {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: text/xml\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


class Client:
    def __init__(self, url: str, mode: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.mode = mode

    async def callback(self, connection: Connection, openid: str, text: str, run: Run) -> str:
        fields: dict[str, str | int] = {"ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": int(time.time()),
                                        "MsgType": "text", "Content": text,
                                        "MsgId": secrets.randbelow(2**62) + 10**18}
        params, body = build_callback(fields, token=TOKEN, mode=self.mode, encoding_aes_key=AES_KEY, app_id=APP_ID)
        started = time.perf_counter()
        status, answer = await connection.post(f"{self.path}?{urlencode(params)}", body)
        if status != 200:
            raise ValueError(f"HTTP {status}: {answer[:100]!r}")
        reply = open_reply(answer.decode(), token=TOKEN, safe=self.mode == "safe", encoding_aes_key=AES_KEY,
                           app_id=APP_ID)
        run.latencies.append(time.perf_counter() - started)
        return reply.get("Content", "")

    async def report(self, openid: str, run: Run, pace: asyncio.Queue[None] | None = None) -> None:
        connection = Connection(self.host, self.port)
        try:
            for text, marker in REPORT:
                if pace is not None:
                    await pace.get()
                try:
                    content = await self.callback(connection, openid, text, run)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    run.failures.append(f"{openid} {text[:10]!r}: {type(exc).__name__}: {exc}")
                    return
                if marker not in content:
                    run.failures.append(f"{openid} {text[:10]!r}: expected {marker!r}, got {content[:80]!r}")
                    return
            run.receipts += bool(RECEIPT.search(content))
        finally:
            await connection.close()


async def closed_loop(client: Client, reports: int, concurrency: int, prefix: str) -> Run:
    run = Run()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(reports):
        queue.put_nowait(number)

    async def user() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            await client.report(f"o{prefix}{number:06d}{secrets.token_hex(6)}", run)

    run.started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    run.finished = time.perf_counter()
    return run


async def open_loop(client: Client, reports: int, rate: float) -> Run:
    """Callbacks released at `rate` per second, spread over `reports` users."""
    run = Run()
    pace: asyncio.Queue[None] = asyncio.Queue()
    users = [asyncio.ensure_future(client.report(f"oL{n:06d}{secrets.token_hex(6)}", run, pace))
             for n in range(reports)]
    run.started = time.perf_counter()
    for tick in range(reports * len(REPORT)):
        delay = run.started + tick / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pace.put_nowait(None)
    await asyncio.gather(*users)
    run.finished = time.perf_counter()
    return run


async def measure(args: argparse.Namespace, url: str, process: psutil.Process) -> dict[str, object]:
    client = Client(url, args.mode)
    await closed_loop(client, args.warmup, min(args.concurrency, args.warmup), "W")
    cpu_before = sum(process.cpu_times()[:2])
    throughput = await closed_loop(client, args.reports, args.concurrency, "T")
    cpu_used = sum(process.cpu_times()[:2]) - cpu_before
    latency = [await open_loop(client, args.latency_reports, rate) for rate in args.latency_rate]
    result: dict[str, object] = {
        "throughput": {**throughput.summary(), "concurrency": args.concurrency,
                       "service_cpu_ms_per_callback": round(1000 * cpu_used / max(1, throughput.callbacks), 2)},
        "latency_at_rate": [{"rate": rate, **run.summary()} for rate, run in zip(args.latency_rate, latency,
                                                                                  strict=True)],
        "failures": (throughput.failures + [f for run in latency for f in run.failures])[:10],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--latency-reports", type=int, default=100)
    parser.add_argument("--latency-rate", type=float, nargs="+", default=[40.0, 80.0, 120.0])
    parser.add_argument("--mode", choices=["safe", "plaintext"], default="safe")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="qinglian-wechat-bench-"))
    standin = WeChatStandIn(token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET, encoding_aes_key=AES_KEY,
                            account_id=ACCOUNT)
    standin.start()
    env = {"QINGLIAN_WECHAT_TOKEN": TOKEN, "QINGLIAN_WECHAT_APP_ID": APP_ID, "QINGLIAN_WECHAT_APP_SECRET": APP_SECRET,
           "QINGLIAN_WECHAT_AES_KEY": AES_KEY, "QINGLIAN_WECHAT_API_URL": standin.root_url,
           "QINGLIAN_LOG_LEVEL": "WARNING"}
    if args.database_url:
        env["QINGLIAN_DATABASE_URL"] = args.database_url
    service = LiveService(data_dir, env)
    try:
        service.start()
        assert service.process is not None
        process = psutil.Process(service.process.pid)
        result = asyncio.run(asyncio.wait_for(measure(args, f"{service.url}/wechat", process), args.timeout))
        result["rss_mb"] = round(process.memory_info().rss / 2**20, 1)
    finally:
        service.stop()
        standin.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    result["setup"] = {"mode": args.mode, "database": "postgresql" if args.database_url else "sqlite",
                       "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if result["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
