"""What the background jobs cost the residents served by the same process: each job's round, run once on a
database that `benchmarks.console_scale --keep DIR` built, while a ticker measures how late the event loop wakes
up (a resident's request waits as long as the loop is held).

    python -m benchmarks.jobs_lag --reuse DIR [--rounds 3]

For each job (housekeeping, deadlines, the hot issues' refresh, forced) and round it prints the round's seconds
and the loop's lateness p50 / p99 / max in milliseconds. The jobs run as `serve` runs them: the same functions,
sessionmakers and city configuration (the one the build wrote).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.residents import percentile

TICK = 0.01  # seconds between two wake-ups the ticker asks for


async def _lateness(round_: Callable[[], Awaitable[object]]) -> tuple[float, list[float]]:
    """The round's seconds, and how late each of the ticker's wake-ups came meanwhile (seconds)."""
    late: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            asked = time.perf_counter()
            await asyncio.sleep(TICK)
            late.append(time.perf_counter() - asked - TICK)

    ticking = asyncio.create_task(ticker())
    began = time.perf_counter()
    try:
        await round_()
    finally:
        seconds = time.perf_counter() - began
        done.set()
        await ticking
    return seconds, late


async def measure(rounds: int) -> list[tuple[str, float, list[float]]]:
    from bot.config import Settings
    from bot.jobs import deadlines_once, hotspots_once, housekeeping_once
    from bot.runtime import Runtime

    settings = Settings()
    runtime = Runtime.build(settings)
    jobs: dict[str, Callable[[], Awaitable[object]]] = {
        "housekeeping": lambda: housekeeping_once(runtime.sessionmaker, settings.evidence_dir, settings.city.limits),
        "deadlines": lambda: deadlines_once(runtime.sessionmaker, settings.city),
        "hot issues (forced)": lambda: hotspots_once(runtime.sessionmaker, settings.city, force=True,
                                                     read_sessionmaker=runtime.read_sessionmaker),
    }
    results = []
    try:
        for _ in range(rounds):
            for name, round_ in jobs.items():
                seconds, late = await _lateness(round_)
                results.append((name, seconds, late))
    finally:
        await runtime.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Event-loop lateness while the background jobs run")
    parser.add_argument("--reuse", type=Path, required=True, metavar="DIR",
                        help="the directory a `benchmarks.console_scale --keep DIR` run left")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    kept = json.loads((args.reuse / "kept.json").read_text(encoding="utf-8"))
    os.environ.update(kept["env"])
    os.environ["QINGLIAN_CONFIG_FILE"] = str(Path(kept["data_dir"]) / "city-benchmark.toml")
    print(f"{kept['backend']}, {kept['cases']:,} cases")
    print("| job | round, s | loop late p50 / p99 / max, ms |\n|---|---|---|")
    for name, seconds, late in asyncio.run(measure(args.rounds)):
        late.sort()
        print(f"| {name} | {seconds:.1f} | {1000 * percentile(late, 50):.1f} / {1000 * percentile(late, 99):.1f} / "
              f"{1000 * max(late, default=0.0):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
