"""Hot issues and similarity parameters measured on the Teddy Cup 2020 task-2 messages; refresh time at scale.

    python -m benchmarks.hotspots_quality [--data /work/shared/benchmarks/teddy2020] [--top 5] [--without-user]
    python -m benchmarks.hotspots_quality --similarity-grid
    python -m benchmarks.hotspots_quality --scale 1000000
    python -m benchmarks.hotspots_quality --database-url postgresql+asyncpg://… [--windows 30,365] [--now ISO]

Default: `find_hotspots` on `hot_messages.jsonl` (with the `user` field as the author), timed; for each of our
top issues its rank, heat, time range, place/people, size and purity, and for each team's published top 5
(`hot_issues_<team>.jsonl`) the best Jaccard similarity of message-id sets between their issue and ours.
`--without-user` drops the `user` field, as input with exactly the issue's fields {id, title, text, time, likes}
would be read (docs/mining.md: why the agreed top 5 needs it); for each of our groups it then also prints how many
messages its most frequent (hidden) user wrote.

Purity is judged with the five problems two or more teams agree on (`PROBLEMS` below: patterns written for this
benchmark only; nothing in the product knows them): a group's problem is the one whose pattern matches most of its
messages (title and text), and its purity is the share of its messages that match that pattern. A group that
matches none has purity "-" (not one of the five).

--similarity-grid: pairs of messages that at least two different teams put in one issue ("same problem") against
20,000 random pairs: the exact Jaccard similarity of the shingle sets, the MinHash estimate's error, the share of
pairs that the LSH bands make candidates for several (permutations, bands), and the recall and false-positive rate
of `combined_score` at several thresholds (place: the first place name in the title, see `_place_of`).

--scale N [--windows 30,365]: N synthetic cases (benchmarks/similarity_speed.py's word lists, with 40 injected hot
problems) over a year; the term hashes once per case in the longest window (what intake does), then `group_cases`
on the last 30 and the last 365 days.

--database-url URL [--windows 30,365] [--now 2026-12-05T12:00:00+00:00]: the product's own refresh against an
existing, migrated database with signed cases (e.g. one `benchmarks.console_scale --keep DIR` built): for each
window, `handlers.hotspots.refresh` end to end (the SQL read of the period's signatures, the grouping in a thread,
storing the run), then its three steps one by one with the same functions — `storage.similar.period_records` (SQL),
`group` (CPU and wall) and `store` (one transaction). The windows end at `--now`, by default just after the newest
signed case, so a database built days ago still has full windows. Each refresh stores a run in `hot_issue_runs` as
the service would (the table keeps the newest 5). No key is needed: the refresh reads and writes no encrypted
column, so the connection gets a throwaway key ring.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from nlp.hotspots import CaseRecord, Message, find_hotspots, group_cases
from nlp.similarity import SimilarityHasher, combined_score, place_names, shingles, similarity
from nlp.tokenizer import warm_up

DATA = Path("/work/shared/benchmarks/teddy2020")
TEAMS = ["jesHrz", "jesHrz-program", "Syucryingstar", "MarsW20", "ai04", "CJAY-art", "Kcraft-dashu"]
PROBLEMS = {
    "丽发新城 concrete plant": r"丽发.*(搅拌|噪音|粉尘|灰尘|扰民|污染)|(搅拌|噪音|粉尘|灰尘|扰民|污染).*丽发",
    "伊景园滨河苑 parking sales": r"伊景园|滨河苑|滨河院",
    "A市人才购房补贴": r"人才.*(补贴|购房|新政)|(补贴|购房).*人才",
    "五矿万境 K9县 housing": r"五矿|万境",
    "58车贷": r"58车[贷货]",
}
_PLACE_IN_TITLE = re.compile(
    r"[\u4e00-\u9fff0-9A-Za-z]{2,8}?(?:小区|花园|家园|新村|新城|苑|园|府|湾|城|公馆|广场|大厦|学校|小学|中学|大学|"
    r"学院|幼儿园|医院|公司|集团|路|街|村|镇|社区)"
)


def load_messages(data: Path, *, with_user: bool = True) -> list[Message]:
    messages = []
    with (data / "hot_messages.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            messages.append(Message(row["id"], row["title"], row["text"], datetime.fromisoformat(row["time"]),
                                    int(row.get("likes") or 0), None, row.get("user") if with_user else None))
    return messages


def load_teams(data: Path) -> dict[str, list[dict[str, object]]]:
    teams = {}
    for team in TEAMS:
        path = data / f"hot_issues_{team}.jsonl"
        if path.is_file():
            teams[team] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return teams


def purity(ids: list[int], by_id: dict[int, Message]) -> tuple[str | None, float]:
    matches = {name: sum(1 for i in ids if re.search(pattern, by_id[i].title + by_id[i].text))
               for name, pattern in PROBLEMS.items()}
    name, count = max(matches.items(), key=lambda item: item[1])
    return (name, count / len(ids)) if count else (None, 0.0)


def jaccard(first: set[Hashable], second: set[Hashable]) -> float:
    return len(first & second) / len(first | second) if first | second else 0.0


def hot_issues(arguments: argparse.Namespace) -> None:
    messages = load_messages(arguments.data, with_user=not arguments.without_user)
    by_id = {message.id: message for message in messages}
    users = {message.id: message.author for message in load_messages(arguments.data)}
    began_cpu, began = time.process_time(), time.perf_counter()
    hotspots = find_hotspots(messages, top=arguments.top)
    cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
    print(f"find_hotspots on {len(messages):,} messages{' without their user field' if arguments.without_user else ''}"
          f": {cpu:.1f} s CPU, {wall:.1f} s wall\n")
    print("| rank | heat | time range | place/people | messages | residents | likes | problem | purity | "
          "most by one user |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    found = set()
    for hotspot in hotspots:
        problem, share = purity(list(hotspot.message_ids), by_id)  # type: ignore[arg-type]
        found.add(problem)
        start, end = hotspot.time_range
        judged = f"{problem} | {share:.0%}" if problem else "- | -"
        most = Counter(users[i] for i in hotspot.message_ids).most_common(1)[0][1]
        print(f"| {hotspot.rank} | {hotspot.heat:.1f} | {start.date()}–{end.date()} | {hotspot.place_people} | "
              f"{len(hotspot.message_ids)} | {hotspot.residents} | {hotspot.likes} | {judged} | {most} |")
    missing = [name for name in PROBLEMS if name not in found]
    print(f"\nagreed problems in our top {arguments.top}: {len(PROBLEMS) - len(missing)}/{len(PROBLEMS)}"
          + (f" (missing: {', '.join(missing)})" if missing else ""))
    ours = [set(hotspot.message_ids) for hotspot in hotspots]
    print("\n| team | their rank → our rank (Jaccard of message ids) |\n|---|---|")
    for team, issues in load_teams(arguments.data).items():
        cells = []
        for issue in sorted(issues, key=lambda issue: int(issue["rank"])):  # type: ignore[call-overload]
            theirs = set(issue["message_ids"])  # type: ignore[call-overload]
            scores = [jaccard(theirs, group) for group in ours]
            best = int(np.argmax(scores)) if scores else 0
            cells.append(f"{issue['rank']}→{best + 1} ({scores[best]:.2f})" if scores and scores[best] > 0
                         else f"{issue['rank']}→- (0)")
        print(f"| {team} | {', '.join(cells)} |")


_LEADING = re.compile(r"^(?:关于|咨询|反映|投诉|举报|请问|建议|希望|恳请|请求|请|我要|强烈|再次|为什么|为何)+")


def _place_of(message: Message) -> str | None:
    """The first place name in the title, after coded administrative units and a leading verb (a stand-in for
    the place field of a product report)."""
    for piece in re.split(r"[A-Za-z]\d*[省市区县]|[^\u4e00-\u9fff0-9A-Za-z]+", message.title):
        found = _PLACE_IN_TITLE.search(_LEADING.sub("", piece))
        if found:
            return found.group(0)
    return None


def _pairs(messages: list[Message], data: Path) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    together: Counter[tuple[int, int]] = Counter()
    for team, issues in load_teams(data).items():
        if team == "jesHrz-program":  # the same team as jesHrz
            continue
        team_pairs: set[tuple[int, int]] = set()
        for issue in issues:
            ids = sorted(set(issue["message_ids"]))  # type: ignore[call-overload]
            team_pairs.update(itertools.combinations(ids, 2))
        together.update(team_pairs)
    positive = sorted(pair for pair, teams in together.items() if teams >= 2)
    rng = random.Random(1)
    ids = [message.id for message in messages]
    negative = [tuple(rng.sample(ids, 2)) for _ in range(20_000)]
    return positive, negative  # type: ignore[return-value]


def similarity_grid(arguments: argparse.Namespace) -> None:
    messages = load_messages(arguments.data)
    by_id = {message.id: message for message in messages}
    positive, negative = _pairs(messages, arguments.data)
    print(f"{len(positive)} same-problem pairs (≥ 2 teams) over "
          f"{len({i for pair in positive for i in pair})} messages; {len(negative)} random pairs\n")
    texts = {message.id: f"{message.title}。{message.text}" for message in messages}
    sets = {identifier: shingles(text) for identifier, text in texts.items()}

    def exact(pair: tuple[int, int]) -> float:
        first, second = sets[pair[0]], sets[pair[1]]
        return len(first & second) / max(1, len(first | second))

    exact_positive = np.array([exact(pair) for pair in positive])
    exact_negative = np.array([exact(pair) for pair in negative])
    quantiles = [0.1, 0.25, 0.5, 0.75, 0.9]
    print("exact Jaccard of shingle sets, quantiles 10/25/50/75/90 %:")
    print(f"  same problem: {' '.join(f'{v:.3f}' for v in np.quantile(exact_positive, quantiles))}")
    print(f"  random pairs: {' '.join(f'{v:.3f}' for v in np.quantile(exact_negative, quantiles))}; "
          f"99 % {np.quantile(exact_negative, 0.99):.3f}, 99.9 % {np.quantile(exact_negative, 0.999):.3f}\n")
    print("| permutations | bands × rows | bytes/case | mean abs. error of J | candidates: same problem | "
          "candidates: random pairs | J at 50 % candidate chance |")
    print("|---|---|---|---|---|---|---|")
    for num_perm, bands in [(64, 16), (64, 32), (128, 16), (128, 32), (128, 64), (256, 64)]:
        hasher = SimilarityHasher(b"grid key, not a secret.........", num_perm=num_perm, bands=bands)
        signatures = {identifier: hasher.signature(text, _place_of(by_id[identifier]))
                      for identifier, text in texts.items()}
        errors = [abs(similarity(signatures[a], signatures[b]) - exact((a, b))) for a, b in positive + negative]

        def candidate(pair: tuple[int, int], signatures: dict = signatures) -> bool:  # type: ignore[type-arg]
            return not set(signatures[pair[0]].band_keys).isdisjoint(signatures[pair[1]].band_keys)

        rows = num_perm // bands
        half = (1 - 0.5 ** (1 / bands)) ** (1 / rows)
        print(f"| {num_perm} | {bands} × {rows} | {4 * num_perm + 8 * bands} | {np.mean(errors):.3f} | "
              f"{np.mean([candidate(p) for p in positive]):.1%} | {np.mean([candidate(p) for p in negative]):.3%} | "
              f"{half:.2f} |")
    hasher = SimilarityHasher(b"grid key, not a secret.........")
    signatures = {identifier: hasher.signature(text, _place_of(by_id[identifier]))
                  for identifier, text in texts.items()}

    def score(pair: tuple[int, int]) -> float:
        first, second = by_id[pair[0]], by_id[pair[1]]
        same = not set(signatures[pair[0]].place_keys).isdisjoint(signatures[pair[1]].place_keys)
        district = _district(first) is not None and _district(first) == _district(second)
        days = abs((first.time - second.time).total_seconds()) / 86400
        return combined_score(similarity(signatures[pair[0]], signatures[pair[1]]), same, district, days)

    positive_scores = np.array([score(pair) for pair in positive])
    negative_scores = np.array([score(pair) for pair in negative])
    print("\ncombined_score (128 permutations): threshold → recall of same-problem pairs, false-positive rate of "
          "random pairs")
    recent = np.array([abs((by_id[a].time - by_id[b].time).days) <= 90 for a, b in positive])
    for threshold in [0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]:
        print(f"  {threshold:.2f}: recall {np.mean(positive_scores >= threshold):.1%} "
              f"(pairs ≤ 90 days apart: {np.mean(positive_scores[recent] >= threshold):.1%}), "
              f"false positives {np.mean(negative_scores >= threshold):.3%}")
    print(f"{recent.sum()} of the same-problem pairs are ≤ 90 days apart")
    same_place = np.mean([not set(signatures[a].place_keys).isdisjoint(signatures[b].place_keys)
                          for a, b in positive])
    print(f"same place name (first place in the title, `place_names`) for {same_place:.0%} of same-problem pairs; "
          f"place names found for {np.mean([bool(s.place_keys) for s in signatures.values()]):.0%} of messages")
    print("place names of the first messages:", [place_names(_place_of(m)) for m in messages[:5]])


_DISTRICT = re.compile(r"[A-Z]\d+[区县]")


def _district(message: Message) -> str | None:
    found = _DISTRICT.search(message.title + message.text[:100])
    return found.group(0) if found else None


def scale(arguments: argparse.Namespace) -> None:
    from benchmarks.similarity_speed import synthetic_report, synthetic_reports

    count = arguments.scale
    end = datetime(2025, 1, 1, tzinfo=UTC)
    reports = synthetic_reports(count, seed=3, end=end)
    rng = random.Random(5)
    for _ in range(40):  # hot problems: 30 to 300 reports of one problem at one place within three weeks
        first = synthetic_report(rng, end - timedelta(days=rng.randint(0, 330)))
        for _ in range(rng.randint(30, 300)):
            moment = first.created_at + timedelta(seconds=rng.randrange(21 * 86400))
            reports.append(synthetic_report(rng, min(moment, end), site=first.site, problem=first.problem,
                                            district=first.district))
    hasher = SimilarityHasher(b"benchmark key, not a secret....")
    oldest = end - timedelta(days=max(arguments.windows))
    began = time.perf_counter()
    records = [CaseRecord(number, report.created_at, hasher.term_hashes(report.text), rng.randint(0, 3), None,
                          f"resident {rng.randrange(len(reports))}")
               for number, report in enumerate(reports) if report.created_at > oldest]
    intake = time.perf_counter() - began
    terms = sum(record.terms.shape[0] for record in records)
    print(f"{len(reports):,} cases, {len(records):,} in the longest window: intake features "
          f"{intake / len(records) * 1000:.2f} ms per case, "
          f"{terms / len(records):.0f} term hashes ({4 * terms / len(records):.0f} bytes) per case")
    for days in sorted(arguments.windows):
        window = [record for record in records if record.time > end - timedelta(days=days)]
        began_cpu, began = time.process_time(), time.perf_counter()
        groups = group_cases(window, now=end, top=10)
        print(f"refresh of the last {days} days ({len(window):,} cases): {time.process_time() - began_cpu:.1f} s "
              f"CPU, {time.perf_counter() - began:.1f} s wall; top group {len(groups[0].case_ids)} cases, "
              f"heat {groups[0].heat:.1f}")


def _throwaway_keyring() -> Any:
    from storage.crypto import DataKey, KeyRing, generate_key, parse_key

    return KeyRing(DataKey(parse_key(generate_key()), "benchmark"), pseudonym_key=parse_key(generate_key()))


async def database_refresh(url: str, windows: list[int], now: datetime | None = None) -> list[dict[str, Any]]:
    """The product's refresh of each window against the database at `url`, end to end and step by step; the
    figures of each window (also printed)."""
    from sqlalchemy import func, select

    from handlers import hotspots as product
    from handlers.city import Similarity
    from storage import similar
    from storage.db import Database
    from storage.models import Case, CaseSignature

    database = Database.connect(url, _throwaway_keyring())
    figures: list[dict[str, Any]] = []
    try:
        async with database.sessionmaker() as session:
            stored = int(await session.scalar(select(func.count()).select_from(Case)) or 0)
            signed = int(await session.scalar(select(func.count()).select_from(CaseSignature)) or 0)
            newest = await session.scalar(select(func.max(Case.created_at))
                                          .join(CaseSignature, CaseSignature.case_id == Case.id))
        if newest is None:
            raise SystemExit("no signed case in the database: nothing to refresh")
        if newest.tzinfo is None:  # SQLite gives the stored UTC time without its zone
            newest = newest.replace(tzinfo=UTC)
        if now is not None and now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        until = now or newest + timedelta(seconds=1)
        print(f"{stored:,} cases stored, {signed:,} signed; windows end at {until.isoformat()}", flush=True)
        for days in sorted(windows):
            settings = Similarity(hotspot_days=days)
            began_cpu, began = time.process_time(), time.perf_counter()
            run = await product.refresh(database.sessionmaker, settings, until, force=True)
            total, total_cpu = time.perf_counter() - began, time.process_time() - began_cpu
            assert run is not None
            since = until - timedelta(days=days)
            began = time.perf_counter()
            async with database.sessionmaker() as session:
                records = await similar.period_records(session, since, until)
            read = time.perf_counter() - began
            began_cpu = time.process_time()
            groups, grouping = product.group(records, until, product.GROUPS_KEPT)
            grouping_cpu = time.process_time() - began_cpu
            began = time.perf_counter()
            async with database.sessionmaker.begin() as session:
                await product.store(session, computed_at=until, since=since, until=until, cases=len(records),
                                    seconds=grouping, groups=groups)
            write = time.perf_counter() - began
            top = run.groups[0] if run.groups else None
            figures.append({"days": days, "cases": run.cases, "groups": len(run.groups), "refresh_wall": total,
                            "refresh_cpu": total_cpu, "run_grouping_seconds": run.seconds, "read_wall": read,
                            "grouping_wall": grouping, "grouping_cpu": grouping_cpu, "store_wall": write,
                            "top_cases": len(top["case_ids"]) if top else 0})
            print(f"last {days} days, {run.cases:,} signed cases: refresh end to end {total:.2f} s wall "
                  f"({total_cpu:.2f} s CPU of this process), {len(run.groups)} groups kept, top group "
                  f"{figures[-1]['top_cases']} cases; step by step: SQL read {read:.2f} s, grouping "
                  f"{grouping_cpu:.2f} s CPU / {grouping:.2f} s wall, storing the run {write * 1000:.0f} ms",
                  flush=True)
    finally:
        await database.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--without-user", action="store_true", help="read the messages without their user field")
    parser.add_argument("--similarity-grid", action="store_true")
    parser.add_argument("--scale", type=int, default=0, help="refresh time on N synthetic cases")
    parser.add_argument("--windows", type=lambda value: [int(days) for days in value.split(",")],
                        default=[30, 365], help="refresh windows in days (with --scale or --database-url)")
    parser.add_argument("--database-url", help="time the product's refresh against this existing database")
    parser.add_argument("--now", type=datetime.fromisoformat,
                        help="end of the windows (with --database-url; default: just after the newest signed case)")
    arguments = parser.parse_args()
    if arguments.database_url:
        import asyncio

        asyncio.run(database_refresh(arguments.database_url, arguments.windows, arguments.now))
        return
    warm_up()
    if arguments.scale:
        scale(arguments)
    elif arguments.similarity_grid:
        similarity_grid(arguments)
    else:
        hot_issues(arguments)


if __name__ == "__main__":
    main()
