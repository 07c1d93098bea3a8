"""Classifier speed: latency of one 200-character report, batch throughput, model load, training.

    .venv/bin/python -m benchmarks.classifier_speed [--cpu N] [--reports 5000] [--json OUT]

Runs pinned to one CPU (default: the last one) with single-threaded BLAS. Steps:
  1. jieba warm-up (dictionary cache in a temporary data directory; cold, then from the cache in a subprocess);
  2. training the default model on the seed corpus's training split (`nlp.training.train`);
  3. saving it to a temporary registry and loading it back (`Classifier.load`: format and scikit-learn version
     check, sha256, unpickling the scikit-learn pipeline), best and median of 5;
  4. latency of `classify` on 200-character reports (the seed corpus's reports of ≥ 200 characters, cut to
     200) after 500 warm-up calls: p50, p90, p99, max over N calls, as wall-clock time and as the thread's CPU
     time (the latter is what one core costs when other processes share the machine);
  5. throughput of `classify_many` on N such reports (with key terms, and without as `qinglian classify`
     does unless --explain), and on the evaluation split as written (mixed lengths), per wall-clock second
     and per CPU second.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _cached_warm_up_seconds(cache_dir: Path) -> float:
    script = ("import sys, time; from pathlib import Path; from nlp.tokenizer import warm_up; "
              "t = time.perf_counter(); warm_up(Path(sys.argv[1])); print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", script, str(cache_dir)], capture_output=True, text=True,
                            cwd=REPO, check=True)
    return float(result.stdout.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    parser.add_argument("--reports", type=int, default=5000, help="timed calls and batch size")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu} of {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")

    started = time.perf_counter()
    from nlp.artifact import MODEL_FILE
    from nlp.classifier import Classifier
    from nlp.corpus import load_seed_corpus
    from nlp.registry import ModelRegistry, eval_split_metrics
    from nlp.tokenizer import warm_up
    from nlp.training import train

    results: dict[str, Any] = {"import_seconds": round(time.perf_counter() - started, 3)}
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        started = time.perf_counter()
        warm_up(data_dir)
        results["warm_up_cold_seconds"] = round(time.perf_counter() - started, 3)
        results["warm_up_cached_seconds"] = round(_cached_warm_up_seconds(data_dir), 3)

        train_split = load_seed_corpus("train")
        started = time.perf_counter()
        trained = train(train_split)
        results["training_seconds"] = round(time.perf_counter() - started, 3)
        results["training_examples"] = len(train_split)

        registry = ModelRegistry(data_dir / "models")
        info = registry.add(trained, eval_split_metrics(Classifier(trained.pipeline)), source="benchmark")
        results["artifact_megabytes"] = round((info.path / MODEL_FILE).stat().st_size / 1e6, 2)
        load_times = []
        for _ in range(5):
            started = time.perf_counter()
            classifier = Classifier.load(info.path)
            load_times.append(time.perf_counter() - started)
        results["load_seconds_best"] = round(min(load_times), 3)
        results["load_seconds_median"] = round(statistics.median(load_times), 3)

    everything = load_seed_corpus("all")
    reports = [e.text[:200] for e in everything if len(e.text) >= 200]
    results["distinct_200_char_reports"] = len(reports)
    for text in reports * (500 // len(reports) + 1):
        classifier.classify(text)
    wall, cpu = [], []
    for number in range(args.reports):
        text = reports[number % len(reports)]
        started, started_cpu = time.perf_counter(), time.thread_time()
        classifier.classify(text)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    for name, values in (("latency_ms", wall), ("latency_cpu_ms", cpu)):
        results[name] = {"p50": round(_percentile(values, 50), 3), "p90": round(_percentile(values, 90), 3),
                         "p99": round(_percentile(values, 99), 3), "max": round(max(values), 3),
                         "calls": len(values)}

    batch = [reports[number % len(reports)] for number in range(args.reports)]
    mixed = [e.text for e in load_seed_corpus("eval")] * 10
    for name, texts, terms in (("batch_200_char", batch, True), ("batch_200_char_no_terms", batch, False),
                               ("batch_eval_split", mixed, True)):
        started, started_cpu = time.perf_counter(), time.process_time()
        classifier.classify_many(texts, terms=terms)
        results[f"{name}_reports_per_second"] = round(len(texts) / (time.perf_counter() - started))
        results[f"{name}_reports_per_cpu_second"] = round(len(texts) / (time.process_time() - started_cpu))
    results["eval_split_mean_chars"] = round(statistics.mean(len(t) for t in mixed), 1)
    results["load_average_after"] = round(os.getloadavg()[0], 2)

    latency, latency_cpu = results["latency_ms"], results["latency_cpu_ms"]
    print(f"import of the nlp modules           {results['import_seconds']:.2f} s")
    print(f"jieba warm-up: cold / from cache    {results['warm_up_cold_seconds']:.2f} s / "
          f"{results['warm_up_cached_seconds']:.2f} s")
    print(f"training on the seed corpus         {results['training_seconds']:.2f} s "
          f"({results['training_examples']} reports)")
    print(f"model load (checks + unpickling)    best {results['load_seconds_best']:.3f} s, median "
          f"{results['load_seconds_median']:.3f} s ({results['artifact_megabytes']} MB {MODEL_FILE})")
    print(f"classify, 200-character report      wall p50 {latency['p50']:.3f} ms, p90 {latency['p90']:.3f} ms, "
          f"p99 {latency['p99']:.3f} ms, max {latency['max']:.3f} ms ({latency['calls']} calls, "
          f"{results['distinct_200_char_reports']} distinct reports)")
    print(f"                                    CPU  p50 {latency_cpu['p50']:.3f} ms, p90 {latency_cpu['p90']:.3f} ms, "
          f"p99 {latency_cpu['p99']:.3f} ms, max {latency_cpu['max']:.3f} ms")
    print(f"batch, 200-character reports        {results['batch_200_char_reports_per_second']} reports/s wall, "
          f"{results['batch_200_char_reports_per_cpu_second']} per CPU second")
    no_terms = "batch_200_char_no_terms_reports_per"
    print(f"batch, 200-character, terms=False   {results[no_terms + '_second']} reports/s wall, "
          f"{results[no_terms + '_cpu_second']} per CPU second (as `qinglian classify`)")
    print(f"batch, evaluation split as written  {results['batch_eval_split_reports_per_second']} reports/s wall, "
          f"{results['batch_eval_split_reports_per_cpu_second']} per CPU second "
          f"(mean {results['eval_split_mean_chars']} characters)")
    print(f"load average at the end             {results['load_average_after']:.2f} (machine of {os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
