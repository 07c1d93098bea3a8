"""Labelled examples: the seed corpus with its fixed evaluation split, the boundary split, and external
JSONL/CSV datasets.

The evaluation split is the list of ids in `nlp/data/seed/eval_ids.txt` (20 % of each label, drawn by
`draw_eval_split`). The boundary split (`nlp/data/boundary.jsonl`) is a separate file of reports at
the boundaries of the taxonomy, each tagged with the boundary rule that decides it; it is never part of the
seed corpus. Training on the seed corpus only ever sees `split="train"`; `exclude_held_out_texts` removes
evaluation and boundary texts from any other dataset before training.

`python -m nlp.corpus check` runs the corpus checks (format, labels, language share, near-duplicates).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nlp.errors import DatasetError
from nlp.labels import LABELS, label_code

SEED_DIR = Path(__file__).with_name("data") / "seed"
EVAL_IDS_FILE = SEED_DIR / "eval_ids.txt"
BOUNDARY_FILE = Path(__file__).with_name("data") / "boundary.jsonl"
EVAL_FRACTION = 0.2
EVAL_SALT = "qinglian-eval:"
NEAR_DUPLICATE_JACCARD = 0.6
# simplified Chinese, traditional Chinese, English, Chinese and English mixed in one report
SEED_LANGUAGES = ("zh", "zh-hant", "en", "mixed")
ENGLISH_SHARE = (0.07, 0.25)
# The taxonomy's boundary rules (taxonomy.md) a boundary report is decided by.
BOUNDARY_RULES = {
    "sector": "rule 1: set in a sector (project, village, hospital/medical insurance, school), whatever the conduct",
    "show_project": "rule 1: a project merely wasteful or built for show, nothing irregular in it: formalism",
    "window": "rule 1: social-insurance, household-register and licensing counters are windows, not a sector",
    "money": "rule 2: money, gifts, banquets or official cars outside the sectors: bribery_gifts",
    "conduct": "rule 3: by conduct: at a counter, left undone over time, done for show",
    "other": "rule 4: praise, consultations, spam, private disputes: other",
}

Split = Literal["train", "eval", "all"]


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    id: str = ""
    lang: str = ""
    rule: str = ""  # boundary split only: the key of BOUNDARY_RULES that decides it


def _seed_files(seed_dir: Path) -> list[Path]:
    return sorted(seed_dir.glob("*.jsonl"))


def read_seed_records(seed_dir: Path = SEED_DIR) -> list[dict[str, str]]:
    """Every record of the seed corpus, in file order (files sorted by name)."""
    return [record for path in _seed_files(seed_dir) for _, record in _json_lines(path)]


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSONL file (a UTF-8 byte-order mark is allowed); a line that
    is not a JSON object is a DatasetError naming the file and the line."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as problem:
            raise DatasetError(f"{path.name} line {number}: not JSON ({problem.msg})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path.name} line {number}: not a JSON object")
        yield number, record


def eval_ids(seed_dir: Path = SEED_DIR) -> frozenset[str]:
    path = seed_dir / EVAL_IDS_FILE.name
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def load_seed_corpus(split: Split = "train", seed_dir: Path = SEED_DIR) -> list[Example]:
    """The seed corpus: `train` (80 %), the fixed `eval` split (20 %), or `all`."""
    if split not in ("train", "eval", "all"):
        raise ValueError(f"split must be train, eval or all, not {split!r}")
    held_out = eval_ids(seed_dir)
    examples = []
    for record in read_seed_records(seed_dir):
        in_eval = record["id"] in held_out
        if split == "all" or (split == "eval") == in_eval:
            examples.append(Example(text=record["text"], label=record["label"], id=record["id"],
                                    lang=record.get("lang", "")))
    return examples


def load_boundary_split(path: Path = BOUNDARY_FILE) -> list[Example]:
    """The boundary split: reports at the taxonomy's boundaries, never trained on."""
    examples = []
    for _, record in _json_lines(path):
        examples.append(Example(text=record["text"], label=record["label"], id=record["id"],
                                lang=record.get("lang", ""), rule=record.get("rule", "")))
    return examples


def load_dataset(path: Path, text_field: str = "text", label_field: str = "label") -> list[Example]:
    """Labelled examples from a JSONL file (one object a line) or a CSV file with a header (by extension). A label
    is a taxonomy code or its display name (the console's export writes names); anything else is refused."""
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows: Iterable[tuple[int, dict[str, Any]]] = list(enumerate(csv.DictReader(handle), start=2))
    else:
        rows = list(_json_lines(path))
    examples = []
    for number, row in rows:
        text, label = row.get(text_field), row.get(label_field)
        if not isinstance(text, str) or not isinstance(label, str) or not label.strip():
            raise DatasetError(f"{path.name} line {number}: needs string fields {text_field!r} and {label_field!r}")
        code = label_code(label)
        if code is None:  # a tenth label would be learnt, pass the promotion gate and send its reports to triage
            raise DatasetError(f"{path.name} line {number}: label {label.strip()!r} is not one of the taxonomy's "
                               f"labels ({', '.join(LABELS)}, or their names)")
        example_id = row.get("id")
        examples.append(Example(text=text, label=code,
                                id=str(example_id) if example_id is not None else f"{path.name}:{number}"))
    if not examples:
        raise DatasetError(f"dataset {path} has no examples")
    return examples


def text_key(text: str) -> str:
    """What makes two texts 'the same' for the evaluation-split guard: whitespace-insensitive, case-folded."""
    return "".join(text.split()).casefold()


def held_out_text_keys(seed_dir: Path = SEED_DIR, boundary_file: Path = BOUNDARY_FILE) -> frozenset[str]:
    """`text_key`s of the evaluation split and the boundary split."""
    held_out = [*load_seed_corpus("eval", seed_dir), *load_boundary_split(boundary_file)]
    return frozenset(text_key(example.text) for example in held_out)


def exclude_held_out_texts(examples: Sequence[Example], seed_dir: Path = SEED_DIR,
                           boundary_file: Path = BOUNDARY_FILE) -> tuple[list[Example], int]:
    """Drop examples whose text is an evaluation-split or boundary-split text; returns the rest and how many
    were dropped."""
    held_out = held_out_text_keys(seed_dir, boundary_file)
    kept = [example for example in examples if text_key(example.text) not in held_out]
    return kept, len(examples) - len(kept)


def draw_eval_split(records: Sequence[dict[str, str]], fraction: float = EVAL_FRACTION) -> list[str]:
    """The rule that drew `eval_ids.txt`: per label, ids ordered by sha256(salt + id), the first round(f·n)."""
    by_label: dict[str, list[str]] = {}
    for record in records:
        by_label.setdefault(record["label"], []).append(record["id"])
    chosen: list[str] = []
    for label in sorted(by_label):
        ids = sorted(by_label[label], key=lambda i: hashlib.sha256((EVAL_SALT + i).encode()).hexdigest())
        chosen.extend(sorted(ids[: round(fraction * len(ids))]))
    return chosen


def near_duplicates(texts: Sequence[str], threshold: float = NEAR_DUPLICATE_JACCARD) -> list[tuple[int, int, float]]:
    """Pairs (i, j, Jaccard) whose character 5-gram sets overlap more than `threshold`."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    shingles = CountVectorizer(analyzer="char", ngram_range=(5, 5), lowercase=False, binary=True)
    try:
        matrix = shingles.fit_transform(list(texts)).astype(np.int32)
    except ValueError:  # no text has 5 characters
        return []
    intersections = (matrix @ matrix.T).tocoo()
    sizes = np.asarray(matrix.sum(axis=1)).ravel()
    pairs = []
    for i, j, shared in zip(intersections.row, intersections.col, intersections.data, strict=True):
        if i < j:
            jaccard = float(shared) / float(sizes[i] + sizes[j] - shared)
            if jaccard > threshold:
                pairs.append((int(i), int(j), jaccard))
    return sorted(pairs)


def check_seed_corpus(seed_dir: Path = SEED_DIR) -> list[str]:
    """Problems of the seed corpus (empty list: it passes): format, labels, ids, split, language, duplicates."""
    problems: list[str] = []
    records = read_seed_records(seed_dir)
    for path in _seed_files(seed_dir):
        label = path.stem
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            record = json.loads(line) if line.strip() else None
            if record is None or set(record) != {"id", "label", "lang", "text"}:
                problems.append(f"{path.name}:{number}: fields must be exactly id, label, lang, text")
                continue
            if record["label"] != label:
                problems.append(f"{path.name}:{number}: label {record['label']!r} in the file of {label!r}")
            if record["lang"] not in SEED_LANGUAGES:
                problems.append(f"{path.name}:{number}: lang {record['lang']!r}")
            if not isinstance(record["text"], str) or not record["text"].strip():
                problems.append(f"{path.name}:{number}: empty text")
    ids = Counter(record.get("id") for record in records)
    problems += [f"duplicate id {i!r}" for i, count in ids.items() if count > 1]
    labels = Counter(record.get("label") for record in records)
    problems += [f"label {label!r} is not in the taxonomy" for label in labels if label not in LABELS]
    problems += [f"label {label!r} has {labels[label]} examples, fewer than 100" for label in LABELS
                 if labels[label] < 100]
    held_out = eval_ids(seed_dir)
    problems += [f"eval id {i!r} is not in the corpus" for i in sorted(held_out - set(ids))]
    for label in LABELS:
        total = labels[label]
        in_eval = sum(1 for r in records if r.get("label") == label and r.get("id") in held_out)
        if total and abs(in_eval / total - EVAL_FRACTION) > 0.02:
            problems.append(f"label {label!r}: {in_eval} of {total} in the evaluation split, not 20 %")
    english = sum(1 for record in records if record.get("lang") == "en") / max(len(records), 1)
    low, high = ENGLISH_SHARE
    if not low <= english <= high:
        problems.append(f"English share {english:.1%} is outside {low:.0%}–{high:.0%}")
    texts = [str(record.get("text", "")) for record in records]
    for i, j, jaccard in near_duplicates(texts):
        problems.append(f"near-duplicates {records[i]['id']} and {records[j]['id']} (5-gram Jaccard {jaccard:.2f})")
    return problems


def check_boundary_split(path: Path = BOUNDARY_FILE, seed_dir: Path = SEED_DIR) -> list[str]:
    """Problems of the boundary split: format, labels, rules, ids, and any text too close to a seed report
    (the split must be new to every model trained on the seed corpus)."""
    problems: list[str] = []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        record = json.loads(line) if line.strip() else None
        if not isinstance(record, dict) or set(record) != {"id", "label", "lang", "rule", "text"}:
            problems.append(f"{path.name}:{number}: fields must be exactly id, label, lang, rule, text")
            continue
        if record["label"] not in LABELS:
            problems.append(f"{path.name}:{number}: label {record['label']!r} is not in the taxonomy")
        if record["rule"] not in BOUNDARY_RULES:
            problems.append(f"{path.name}:{number}: rule {record['rule']!r}")
        if record["lang"] not in SEED_LANGUAGES:
            problems.append(f"{path.name}:{number}: lang {record['lang']!r}")
        records.append(record)
    ids = Counter(record["id"] for record in records)
    problems += [f"duplicate id {i!r}" for i, count in ids.items() if count > 1]
    labels = Counter(record["label"] for record in records)
    problems += [f"label {label!r} has no boundary report" for label in LABELS if not labels[label]]
    rules = Counter(record["rule"] for record in records)
    problems += [f"rule {rule!r} has no boundary report" for rule in BOUNDARY_RULES if not rules[rule]]
    seed = read_seed_records(seed_dir)
    texts = [str(record["text"]) for record in records] + [str(record.get("text", "")) for record in seed]
    names = [record["id"] for record in records] + [record.get("id", "?") for record in seed]
    for i, j, jaccard in near_duplicates(texts):
        if i < len(records):
            problems.append(f"near-duplicates {names[i]} and {names[j]} (5-gram Jaccard {jaccard:.2f})")
    return problems


def main(argv: Sequence[str]) -> int:
    if list(argv) == ["check"]:
        problems = check_seed_corpus() + check_boundary_split()
        records = read_seed_records()
        for problem in problems:
            print(problem)
        print(f"{len(records)} seed records, {len(load_boundary_split())} boundary records, "
              f"{len(problems)} problems")
        return 1 if problems else 0
    if list(argv) == ["draw-eval-split"]:
        print("\n".join(draw_eval_split(read_seed_records())))
        return 0
    print("usage: python -m nlp.corpus check | draw-eval-split", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
