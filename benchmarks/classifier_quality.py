"""Classifier quality: the teddy2020 protocol and the seed corpus's fixed evaluation split.

    .venv/bin/python -m benchmarks.classifier_quality [TEDDY_DIR] [--only seed|raw|full ...] [--json OUT]

TEDDY_DIR defaults to ../shared/benchmarks/teddy2020 relative to the repository. The teddy data has no
licence: it is only read from there, to measure; nothing of it is written anywhere (only figures are printed).

teddy2020 protocol (its README): 5-fold stratified cross-validation shuffled with seed 42; accuracy and
macro-F1 of the pooled out-of-fold predictions (the mean ± sd over folds too). `full_segmented.jsonl` as
given, `raw.jsonl` as `title + "。" + text`. Rows:

- ours: `nlp.training.train(examples)`, exactly the product's pipeline: on the outer training fold it is
  given, `train` itself chooses whether to add the opening block (`lead_chars` 0 or 30: character n-grams of
  the first 30 characters, where a message's title is) by a seeded 3-fold stratified cross-validation of that
  fold alone, then fits the choice on the whole fold. The outer test fold is never seen by the choice, so
  the outer cross-validation is a nested one;
- ours, lead_chars=0 / 30 fixed: for information (choosing between them by these rows would be choosing on
  the test folds);
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
from nlp.tokenizer import DICTIONARY_MIN_FREQUENCY, normalise, tokenize_normalised, warm_up  # noqa: E402
from nlp.training import TrainingParams, train  # noqa: E402

DEFAULT_TEDDY_DIR = REPO.parent / "shared" / "benchmarks" / "teddy2020"
FOLDS = 5
INNER_FOLDS = 3
SEED = 42
FIXED: dict[str, dict[str, Any]] = {"lead_chars=0": {"lead_chars": 0}, "lead_chars=30": {"lead_chars": 30}}

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
        self.selection: dict[str, Any] | None = None
        self.chosen: int | None = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Ours:
        examples = [Example(text=text, label=str(label)) for text, label in zip(texts, labels, strict=True)]
        trained = train(examples, params=self.params)
        self.pipeline, self.selection, self.chosen = trained.pipeline, trained.selection, trained.params["lead_chars"]
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
    predictions = {name: np.empty(len(texts), dtype=object) for name in ("ours", *FIXED, "baseline")}
    seconds = dict.fromkeys(predictions, 0.0)
    chosen: list[int | None] = []
    inner_scores: list[dict[str, float]] = []
    test_folds = []
    for train_rows, test_rows in splitter.split(text_array, truth):
        test_folds.append(test_rows)
        train_texts, train_labels = list(text_array[train_rows]), truth[train_rows]
        test_texts = list(text_array[test_rows])
        makers: dict[str, Callable[[], Any]] = {
            "ours": ours, **{name: functools.partial(ours, **overrides) for name, overrides in FIXED.items()},
            "baseline": lambda: baseline(plain)}
        for name, make in makers.items():
            started = time.perf_counter()
            model = make().fit(train_texts, train_labels)
            predictions[name][test_rows] = model.predict(test_texts)
            seconds[name] += time.perf_counter() - started
            if name == "ours":
                chosen.append(model.chosen)
                inner_scores.append(dict(model.selection["scores"]) if model.selection else {})
    result = {name: _scores(truth, predicted, test_folds, seconds[name]) for name, predicted in predictions.items()}
    result["ours"]["choices"] = [f"lead_chars={value}" for value in chosen]
    result["ours"]["inner_scores"] = inner_scores
    return result


def seed_holdout() -> dict[str, Any]:
    train_split, held_out = load_seed_corpus("train"), load_seed_corpus("eval")
    truth = np.array([e.label for e in held_out])
    results = {}
    models: dict[str, Callable[[], Any]] = {
        "ours": ours,
        "baseline": lambda: baseline(_plain_jieba_tokens),
        "baseline, normalised text": lambda: baseline(_normalised_jieba_tokens),
    }
    for name, make in models.items():
        started = time.perf_counter()
        model = make().fit([e.text for e in train_split], [e.label for e in train_split])
        predicted = np.array(model.predict([e.text for e in held_out]), dtype=object)
        if isinstance(model, Ours):
            results["selection"] = model.selection
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
    parser.add_argument("--only", choices=("seed", "raw", "full", "full_segmented"), action="append",
                        help="run only these parts (repeatable; default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    parts = ["full" if part == "full_segmented" else part for part in args.only or ["seed", "raw", "full"]]
    warm_up(None)
    results: dict[str, Any] = {"params": TrainingParams().as_dict(), "folds": FOLDS, "seed": SEED,
                               "dictionary_min_frequency": DICTIONARY_MIN_FREQUENCY}
    print(f"our pipeline's defaults: {TrainingParams()}")
    print(f"tokenizer: jieba's dictionary reduced to frequency >= {DICTIONARY_MIN_FREQUENCY} + domain terms")

    if "seed" in parts:
        print("\nseed corpus: trained on the training split, scored on the fixed evaluation split")
        results["seed_eval"] = seed_holdout()
        print(_line("ours (nlp.training.train)", results["seed_eval"]["ours"]))
        print(f"  its choice by inner CV: {results['seed_eval']['selection']}")
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
        print(_line("ours (nlp.training.train)", results[key]["ours"]))
        print(f"  inner-CV scores per outer fold: {results[key]['ours']['inner_scores']}")
        print(_line("ours, lead_chars=0 fixed (information)", results[key]["lead_chars=0"]))
        print(_line("ours, lead_chars=30 fixed (information)", results[key]["lead_chars=30"]))
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
