"""Classifier quality: the teddy2020 protocol and the seed corpus's fixed evaluation split.

    .venv/bin/python -m benchmarks.classifier_quality [TEDDY_DIR] [--only seed|raw|full ...] [--json OUT]

TEDDY_DIR defaults to ../shared/benchmarks/teddy2020 relative to the repository. The teddy data has no
licence: it is only read from there, to measure; nothing of it is written anywhere (only figures are printed).

teddy2020 protocol (its README): 5-fold stratified cross-validation shuffled with seed 42; accuracy and
macro-F1 of the pooled out-of-fold predictions (the mean ± sd over folds too). `full_segmented.jsonl` as
given, `raw.jsonl` as `title + "。" + text`. Rows:

- ours, defaults: `nlp.training.train()`, exactly as the product trains (its parameters were chosen by
  cross-validation on the seed corpus's training split);
- ours, selected: inside every outer training fold, a 3-fold stratified cross-validation of that fold
  chooses between the defaults and the defaults plus the opening block (`lead_chars=30`, character n-grams
  of the first 30 characters, where a message's title is); the choice is refitted on the whole outer
  training fold. The outer test fold is never seen by the choice (nested cross-validation);
- ours, lead_chars=30 always: for information (fixing it for every fold would be choosing on the test folds);
- baseline: TF-IDF with scikit-learn's defaults over the data's own segmentation (full_segmented) or plain
  `jieba.lcut` (raw, seed) into LinearSVC with its defaults, on the same folds.

Seed corpus: trained on the training split, scored once on the fixed evaluation split; the baseline also
on punctuation-normalised text, because the raw seed text carries a writing artefact (see docs/classifier.md).

Segmentation is memoised across folds within this process (identical results, less time). Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import nlp.training  # noqa: E402
from nlp.corpus import Example, load_seed_corpus  # noqa: E402
from nlp.tokenizer import normalise, tokenize_normalised, warm_up  # noqa: E402
from nlp.training import TrainingParams, train  # noqa: E402

DEFAULT_TEDDY_DIR = REPO.parent / "shared" / "benchmarks" / "teddy2020"
FOLDS = 5
INNER_FOLDS = 3
SEED = 42
CANDIDATES: dict[str, dict[str, Any]] = {"defaults": {}, "lead_chars=30": {"lead_chars": 30}}

PUBLISHED = [  # from the teddy2020 README: full 9,210 messages, random splits (not these folds)
    ("TF-IDF + linear SVC (Rollbear-bot, 30 % test split)", 0.904, 0.90),
    ("TF-IDF 1–2-grams + SVD 150 + RBF SVC (Syucryingstar, 10 % split)", 0.914, 0.912),
    ("TF-IDF + RBF SVM (jesHrz, 20 % split)", 0.920, None),
    ("counts + linear SVM (jesHrz)", 0.894, None),
    ("fastText (write-up, validation; split not reproducible)", None, 0.93),
    ("TF-IDF + multinomial NB (Rollbear-bot)", 0.742, 0.67),
]


def _whitespace_tokens(text: str) -> list[str]:
    return text.split()


def _plain_jieba_tokens(text: str) -> list[str]:
    import jieba

    return [token for token in jieba.lcut(text) if token.strip()]


def _normalised_jieba_tokens(text: str) -> list[str]:
    return _plain_jieba_tokens(normalise(text))


def baseline(tokenizer: Callable[[str], list[str]]) -> Pipeline:
    return make_pipeline(TfidfVectorizer(tokenizer=tokenizer, token_pattern=None, lowercase=False), LinearSVC())


class Ours:
    """Our pipeline trained exactly as the product trains it (`nlp.training.train`: canonical order etc.)."""

    def __init__(self, **overrides: Any) -> None:
        self.params = TrainingParams.from_mapping(overrides)
        self.pipeline: Pipeline | None = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Ours:
        examples = [Example(text=text, label=str(label)) for text, label in zip(texts, labels, strict=True)]
        self.pipeline = train(examples, params=self.params).pipeline
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        assert self.pipeline is not None
        return np.asarray(self.pipeline.predict(list(texts)))


def ours(**overrides: Any) -> Ours:
    return Ours(**overrides)


def _memoise_segmentation() -> None:
    """The pipelines built from here on segment each distinct text once per process."""
    nlp.training.tokenize_normalised = functools.lru_cache(maxsize=None)(tokenize_normalised)  # type: ignore[assignment]


def _scores(truth: np.ndarray, predicted: np.ndarray, folds: list[np.ndarray], seconds: float) -> dict[str, Any]:
    per_fold = [f1_score(truth[rows], list(predicted[rows]), average="macro") for rows in folds]
    per_fold_accuracy = [accuracy_score(truth[rows], list(predicted[rows])) for rows in folds]
    return {
        "accuracy": float(accuracy_score(truth, list(predicted))),
        "macro_f1": float(f1_score(truth, list(predicted), average="macro")),
        "fold_mean_accuracy": float(np.mean(per_fold_accuracy)),
        "fold_mean_macro_f1": float(np.mean(per_fold)),
        "fold_macro_f1_std": float(np.std(per_fold)),
        "seconds": round(seconds, 1),
        "n": len(truth),
    }


def teddy_cross_validation(texts: Sequence[str], labels: Sequence[str],
                           plain: Callable[[str], list[str]]) -> dict[str, Any]:
    text_array, truth = np.array(texts, dtype=object), np.array(labels)
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    predictions = {name: np.empty(len(texts), dtype=object) for name in (*CANDIDATES, "selected", "baseline")}
    seconds = dict.fromkeys(predictions, 0.0)
    chosen: list[str] = []
    test_folds = []
    for train_rows, test_rows in splitter.split(text_array, truth):
        test_folds.append(test_rows)
        train_texts, train_labels = list(text_array[train_rows]), truth[train_rows]
        started = time.perf_counter()
        inner_scores = dict.fromkeys(CANDIDATES, 0.0)
        inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=SEED)
        for inner_train, inner_test in inner.split(train_texts, train_labels):
            for name, overrides in CANDIDATES.items():
                model = ours(**overrides).fit([train_texts[i] for i in inner_train], train_labels[inner_train])
                guess = model.predict([train_texts[i] for i in inner_test])
                inner_scores[name] += f1_score(train_labels[inner_test], guess, average="macro") / INNER_FOLDS
        selection_seconds = time.perf_counter() - started
        choice = max(CANDIDATES, key=lambda name: (inner_scores[name], name == "defaults"))
        chosen.append(choice)
        for name, overrides in CANDIDATES.items():
            started = time.perf_counter()
            model = ours(**overrides).fit(train_texts, train_labels)
            predictions[name][test_rows] = model.predict(list(text_array[test_rows]))
            seconds[name] += time.perf_counter() - started
            if name == choice:
                predictions["selected"][test_rows] = predictions[name][test_rows]
                seconds["selected"] += selection_seconds + time.perf_counter() - started
        started = time.perf_counter()
        model = baseline(plain).fit(train_texts, train_labels)
        predictions["baseline"][test_rows] = model.predict(list(text_array[test_rows]))
        seconds["baseline"] += time.perf_counter() - started
    result = {name: _scores(truth, predicted, test_folds, seconds[name]) for name, predicted in predictions.items()}
    result["selected"]["choices"] = chosen
    return result


def seed_holdout() -> dict[str, Any]:
    train_split, held_out = load_seed_corpus("train"), load_seed_corpus("eval")
    truth = np.array([e.label for e in held_out])
    results = {}
    models: dict[str, Callable[[], Any]] = {
        "defaults": ours,
        "baseline": lambda: baseline(_plain_jieba_tokens),
        "baseline, normalised text": lambda: baseline(_normalised_jieba_tokens),
    }
    for name, make in models.items():
        started = time.perf_counter()
        model = make().fit([e.text for e in train_split], [e.label for e in train_split])
        predicted = np.array(model.predict([e.text for e in held_out]), dtype=object)
        results[name] = {"accuracy": float(accuracy_score(truth, list(predicted))),
                         "macro_f1": float(f1_score(truth, list(predicted), average="macro")),
                         "seconds": round(time.perf_counter() - started, 1), "n": len(held_out),
                         "n_train": len(train_split)}
    return results


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _line(name: str, result: dict[str, Any]) -> str:
    extra = ""
    if "fold_mean_macro_f1" in result:
        extra = (f"  (fold mean: accuracy {result['fold_mean_accuracy']:.4f}, macro-F1 "
                 f"{result['fold_mean_macro_f1']:.4f} ± {result['fold_macro_f1_std']:.4f})")
    if "choices" in result:
        extra += f"  chose: {', '.join(result['choices'])}"
    return (f"  {name:<46} accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}{extra}  "
            f"[{result['seconds']:.0f} s]")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teddy_dir", nargs="?", type=Path, default=DEFAULT_TEDDY_DIR,
                        help="directory of full_segmented.jsonl and raw.jsonl")
    parser.add_argument("--only", choices=("seed", "raw", "full"), action="append",
                        help="run only these parts (repeatable; default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    parts = args.only or ["seed", "raw", "full"]
    warm_up(None)
    results: dict[str, Any] = {"params": TrainingParams().as_dict(), "folds": FOLDS, "seed": SEED}
    print(f"our pipeline's defaults: {TrainingParams()}")

    if "seed" in parts:
        print("\nseed corpus: trained on the training split, scored on the fixed evaluation split")
        results["seed_eval"] = seed_holdout()
        print(_line("ours, defaults", results["seed_eval"]["defaults"]))
        print(_line("baseline: TF-IDF (jieba) + LinearSVC", results["seed_eval"]["baseline"]))
        print(_line("baseline on normalised text", results["seed_eval"]["baseline, normalised text"]))

    _memoise_segmentation()
    for key, filename in (("raw", "raw.jsonl"), ("full", "full_segmented.jsonl")):
        if key not in parts:
            continue
        path = args.teddy_dir / filename
        if not path.is_file():
            print(f"\n{path} not found: skipping {key}", file=sys.stderr)
            continue
        rows = _read_jsonl(path)
        if key == "raw":
            texts = [f"{row.get('title', '')}。{row['text']}" for row in rows]
            plain: Callable[[str], list[str]] = _plain_jieba_tokens
            plain_name = "baseline: TF-IDF (jieba) + LinearSVC"
        else:
            texts = [row["text"] for row in rows]
            plain, plain_name = _whitespace_tokens, "baseline: TF-IDF (given words) + LinearSVC"
        labels = [row["label"] for row in rows]
        print(f"\nteddy2020 {filename}: {len(rows)} messages, {len(set(labels))} labels, "
              f"{FOLDS}-fold stratified CV (seed {SEED}), pooled out-of-fold predictions")
        results[key] = teddy_cross_validation(texts, labels, plain)
        print(_line("ours, defaults", results[key]["defaults"]))
        print(_line("ours, selected by nested CV", results[key]["selected"]))
        print(_line("ours, lead_chars=30 always (information)", results[key]["lead_chars=30"]))
        print(_line(plain_name, results[key]["baseline"]))
        if key == "full":
            print("  published (full data, other splits):")
            for name, accuracy, macro_f1 in PUBLISHED:
                shown_accuracy = f"{accuracy:.3f}" if accuracy is not None else "  —  "
                shown_f1 = f"{macro_f1:.3f}" if macro_f1 is not None else "  —  "
                print(f"    {name:<66} accuracy {shown_accuracy}  macro-F1 {shown_f1}")

    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
