"""Reply quality on the Teddy Cup 2020 task-3 data: the score distribution, the 10 best and worst, runtime.

    python -m benchmarks.reply_quality [--data /work/shared/benchmarks/teddy2020/replies.jsonl] [--show 10]

Scores every (message, government reply) pair with `score_reply` (title and text as the report; deadline 15
working days, weekends only — the data has no holiday calendar) and prints quantiles and a text histogram of each
part, how often each reason occurs, and the ids, scores and reasons of the best and worst replies (only ids and
reasons: the residents' texts stay out of the output, so it can go into docs).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np

from nlp.reply_quality import ReplyScore, score_reply
from nlp.tokenizer import warm_up

DATA = Path("/work/shared/benchmarks/teddy2020/replies.jsonl")
PARTS = ("score", "relevance", "completeness", "clarity", "timeliness")


def histogram(values: np.ndarray, bins: int = 10, width: int = 50) -> list[str]:
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    top = max(1, counts.max())
    return [f"  {edges[i]:.1f}–{edges[i + 1]:.1f} {counts[i]:>5} {'#' * round(width * counts[i] / top)}"
            for i in range(bins)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--show", type=int, default=10)
    arguments = parser.parse_args()
    warm_up()
    rows = [json.loads(line) for line in arguments.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    began_cpu, began = time.process_time(), time.perf_counter()
    scores: list[tuple[object, ReplyScore]] = []
    for row in rows:
        report = f"{row['title']}。{row['text']}" if row.get("title") else row["text"]
        scores.append((row["id"], score_reply(report, row["reply"], received=datetime.fromisoformat(row["time"]),
                                              replied=datetime.fromisoformat(row["reply_time"]))))
    cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
    print(f"{len(rows):,} replies scored: {cpu:.1f} s CPU ({cpu / len(rows) * 1000:.1f} ms per reply), "
          f"{wall:.1f} s wall\n")
    print("| part | min | 10 % | 25 % | median | 75 % | 90 % | max | mean |\n|---|---|---|---|---|---|---|---|---|")
    for part in PARTS:
        values = np.array([getattr(result, part) for _, result in scores if getattr(result, part) is not None])
        quantiles = np.quantile(values, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1])
        print(f"| {part} | " + " | ".join(f"{value:.2f}" for value in quantiles) + f" | {values.mean():.2f} |")
    print("\noverall score:")
    print("\n".join(histogram(np.array([result.score for _, result in scores]))))
    reasons = Counter(reason.code for _, result in scores for reason in result.reasons)
    print("\n| reason | replies |\n|---|---|")
    for code, count in reasons.most_common():
        print(f"| {code} | {count} ({count / len(scores):.0%}) |")
    days = np.array([result.working_days for _, result in scores if result.working_days is not None])
    print(f"\nworking days to reply: median {np.median(days):.0f}, 90 % {np.quantile(days, 0.9):.0f}, "
          f"over 15: {np.mean(days > 15):.0%}")
    ordered = sorted(scores, key=lambda item: (item[1].score, str(item[0])))
    for title, chosen in (("best", ordered[::-1][:arguments.show]), ("worst", ordered[:arguments.show])):
        print(f"\n{arguments.show} {title}:\n| id | score | relevance | completeness | clarity | timeliness | "
              "reasons |\n|---|---|---|---|---|---|---|")
        for identifier, result in chosen:
            timeliness = "-" if result.timeliness is None else f"{result.timeliness:.2f}"
            named = [reason for reason in result.reasons if reason.code == "missing_phrases"]
            reason_text = "; ".join(reason.text("en") for reason in result.reasons if reason not in named)
            missing = sum(len(reason.params["phrases"]) for reason in named)
            if missing:
                reason_text = f"misses {missing} key phrases" + (f"; {reason_text}" if reason_text else "")
            print(f"| {identifier} | {result.score:.2f} | {result.relevance:.2f} | {result.completeness:.2f} | "
                  f"{result.clarity:.2f} | {timeliness} | {reason_text or '-'} |")


if __name__ == "__main__":
    main()
