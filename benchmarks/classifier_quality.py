"""Classifier quality: the product's pipeline against two strong baselines, with bootstrap intervals, on the
seed corpus's evaluation split, the boundary split and teddy2020.

    .venv/bin/python -m benchmarks.classifier_quality [TEDDY_DIR] [--only seed|raw|full ...] [--json OUT]

TEDDY_DIR defaults to ../shared/benchmarks/teddy2020 relative to the repository. The teddy data has no
licence: it is only read from there, to measure; nothing of it is written anywhere (only figures are printed).

Models, each trained on exactly the same training data:
- ours: `nlp.training.train(examples)`, the product's pipeline as `qinglian model train` runs it (its own
  choice of the opening block from the training data it is given included);
- words + LinearSVC: TF-IDF (scikit-learn's defaults) over plain `jieba.lcut` words — for
  `full_segmented.jsonl` over the data's own words — into LinearSVC with its defaults;
- chars + LogReg: TF-IDF of character 1–3-grams (sublinear tf) into logistic regression (C=10, liblinear,
  one-vs-rest: on the seed corpus as good as the multinomial lbfgs fit and five times faster).
Both baselines read the text after the product's `normalise` (traditional → simplified, full-width →
half-width, one form of quotation marks), which removes a punctuation artefact of the seed corpus that would
otherwise flatter them (docs/classifier.md) and lets them read traditional Chinese.

Seed corpus: trained on the training split, scored on the fixed evaluation split and on the boundary split
(never trained on). teddy2020 (its README's protocol): 5-fold stratified cross-validation shuffled with seed
42, scores of the pooled out-of-fold predictions. Every score comes with a 95 % bootstrap interval (1,000
resamples of the scored reports, seed 0) and every baseline with the paired bootstrap interval of ours minus
it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nlp.corpus import Example, load_boundary_split, load_seed_corpus  # noqa: E402
from nlp.tokenizer import DICTIONARY_MIN_FREQUENCY, normalise, warm_up  # noqa: E402
from nlp.training import TrainingParams, train  # noqa: E402

DEFAULT_TEDDY_DIR = REPO.parent / "shared" / "benchmarks" / "teddy2020"
FOLDS = 5
SEED = 42
BOOTSTRAP = 1000
MODELS = ("ours", "words + LinearSVC", "chars + LogReg")

PUBLISHED = [  # from the teddy2020 README: full 9,210 messages, random splits (not these folds)
    ("TF-IDF + linear SVC (Rollbear-bot, 30 % test split)", 0.904, 0.90),
    ("TF-IDF 1–2-grams + SVD 150 + RBF SVC (Syucryingstar, 10 % split)", 0.914, 0.912),
    ("TF-IDF + RBF SVM (jesHrz, 20 % split)", 0.920, None),
    ("fastText (write-up, validation; split not reproducible)", None, 0.93),
]


def _jieba_words(text: str) -> list[str]:
    import jieba

    return [token for token in jieba.lcut(text) if token.strip()]


def _given_words(text: str) -> list[str]:
    return text.split()


class Baseline:
    """A baseline pipeline fed normalised text."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Baseline:
        self.pipeline.fit([normalise(text) for text in texts], list(labels))
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.pipeline.predict([normalise(text) for text in texts]))


def words_svc(tokenizer: Callable[[str], list[str]]) -> Baseline:
    return Baseline(make_pipeline(TfidfVectorizer(tokenizer=tokenizer, token_pattern=None, lowercase=False),
                                  LinearSVC()))


def chars_logreg() -> Baseline:
    return Baseline(make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True),
                                  OneVsRestClassifier(LogisticRegression(C=10, solver="liblinear"))))


class Ours:
    """The product's pipeline, trained as the product trains it (with `lead_chars` fixed: without its choice)."""

    lead_chars: int | None = None  # set by --lead-chars

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.chosen: int | None = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Ours:
        examples = [Example(text=text, label=str(label)) for text, label in zip(texts, labels, strict=True)]
        trained = train(examples, params=None if self.lead_chars is None else {"lead_chars": self.lead_chars})
        self.pipeline, self.chosen = trained.pipeline, trained.params["lead_chars"]
        return self

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        assert self.pipeline is not None
        return np.asarray(self.pipeline.predict(list(texts)))


def _macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(f1_score(truth, predicted, average="macro", labels=sorted(set(truth))))


def bootstrap(truth: np.ndarray, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
    """Each model's macro-F1 and accuracy with 95 % percentile intervals, and ours minus each baseline, paired."""
    generator = np.random.default_rng(0)
    samples = [generator.integers(0, len(truth), len(truth)) for _ in range(BOOTSTRAP)]
    scores = {name: np.array([_macro_f1(truth[rows], predicted[rows]) for rows in samples])
              for name, predicted in predictions.items()}
    result: dict[str, Any] = {}
    for name, predicted in predictions.items():
        low, high = np.percentile(scores[name], [2.5, 97.5])
        result[name] = {"macro_f1": round(_macro_f1(truth, predicted), 4),
                        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
                        "macro_f1_95": [round(float(low), 4), round(float(high), 4)], "n": len(truth)}
        if name != "ours":
            difference = scores["ours"] - scores[name]
            low, high = np.percentile(difference, [2.5, 97.5])
            observed = _macro_f1(truth, predictions["ours"]) - _macro_f1(truth, predicted)
            result[name]["ours_minus_this"] = round(observed, 4)
            result[name]["ours_minus_this_95"] = [round(float(low), 4), round(float(high), 4)]
    return result


def _by_language(examples: Sequence[Example], truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    languages = np.array([e.lang for e in examples])
    return {str(lang): round(float((truth[languages == lang] == predicted[languages == lang]).mean()), 4)
            for lang in sorted(set(languages))}


def seed_splits() -> dict[str, Any]:
    train_split = load_seed_corpus("train")
    texts, labels = [e.text for e in train_split], [e.label for e in train_split]
    fitted: dict[str, Any] = {}
    seconds = {}
    for name, make in (("ours", Ours), ("words + LinearSVC", lambda: words_svc(_jieba_words)),
                       ("chars + LogReg", chars_logreg)):
        started = time.perf_counter()
        fitted[name] = make().fit(texts, labels)
        seconds[name] = round(time.perf_counter() - started, 1)
    results: dict[str, Any] = {"n_train": len(train_split), "train_seconds": seconds}
    for split, examples in (("eval", load_seed_corpus("eval")), ("boundary", load_boundary_split())):
        truth = np.array([e.label for e in examples])
        predictions = {name: model.predict([e.text for e in examples]) for name, model in fitted.items()}
        results[split] = bootstrap(truth, predictions)
        for name, predicted in predictions.items():
            results[split][name]["accuracy_by_language"] = _by_language(examples, truth, predicted)
    return results


def teddy_cross_validation(texts: Sequence[str], labels: Sequence[str],
                           words: Callable[[str], list[str]]) -> dict[str, Any]:
    text_array, truth = np.array(texts, dtype=object), np.array(labels)
    predictions = {name: np.empty(len(texts), dtype=object) for name in MODELS}
    seconds = dict.fromkeys(MODELS, 0.0)
    chosen = []
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    for number, (train_rows, test_rows) in enumerate(splitter.split(text_array, truth), start=1):
        makers: dict[str, Callable[[], Any]] = {"ours": Ours, "words + LinearSVC": lambda: words_svc(words),
                                                "chars + LogReg": chars_logreg}
        for name, make in makers.items():
            started = time.perf_counter()
            model = make().fit(list(text_array[train_rows]), truth[train_rows])
            predictions[name][test_rows] = model.predict(list(text_array[test_rows]))
            seconds[name] += time.perf_counter() - started
            if name == "ours":
                chosen.append(model.chosen)
        print(f"    fold {number} of {FOLDS} done", flush=True)
    result = bootstrap(truth, {name: predicted.astype(str) for name, predicted in predictions.items()})
    for name in MODELS:
        result[name]["seconds"] = round(seconds[name])
    result["ours"]["lead_chars_chosen"] = chosen
    return result


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _print(result: dict[str, Any]) -> None:
    for name in MODELS:
        row = result[name]
        low, high = row["macro_f1_95"]
        line = f"  {name:<20} macro-F1 {row['macro_f1']:.4f} [{low:.3f}, {high:.3f}]  accuracy {row['accuracy']:.4f}"
        if "ours_minus_this" in row:
            d_low, d_high = row["ours_minus_this_95"]
            line += f"  ours − this {row['ours_minus_this']:+.4f} [{d_low:+.3f}, {d_high:+.3f}]"
        if "accuracy_by_language" in row:
            line += f"  by language {row['accuracy_by_language']}"
        if "seconds" in row:
            line += f"  [{row['seconds']} s]"
        print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teddy_dir", nargs="?", type=Path, default=DEFAULT_TEDDY_DIR,
                        help="directory of full_segmented.jsonl and raw.jsonl")
    parser.add_argument("--only", choices=("seed", "raw", "full", "full_segmented"), action="append",
                        help="run only these parts (repeatable; default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--lead-chars", type=int, default=None,
                        help="train ours with the opening block fixed (0: none) instead of letting `train` choose it "
                             "from the training data")
    args = parser.parse_args(argv)
    Ours.lead_chars = args.lead_chars
    parts = ["full" if part == "full_segmented" else part for part in args.only or ["seed", "raw", "full"]]
    warm_up(None)
    results: dict[str, Any] = {"params": TrainingParams().as_dict(), "folds": FOLDS, "seed": SEED,
                               "bootstrap": BOOTSTRAP, "dictionary_min_frequency": DICTIONARY_MIN_FREQUENCY}
    print(f"our pipeline's defaults: {TrainingParams()}")
    if args.lead_chars is not None:
        print(f"ours with lead_chars fixed at {args.lead_chars} (not chosen by train)")
        results["lead_chars_fixed"] = args.lead_chars

    if "seed" in parts:
        results["seed"] = seed_splits()
        print(f"\nseed corpus: trained on the training split ({results['seed']['n_train']} reports; seconds "
              f"{results['seed']['train_seconds']})")
        for split, title in (("eval", "fixed evaluation split"), ("boundary", "boundary split (never trained on)")):
            print(f" {title}, {results['seed'][split]['ours']['n']} reports:")
            _print(results["seed"][split])

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
            words: Callable[[str], list[str]] = _jieba_words
        else:
            texts, words = [row["text"] for row in rows], _given_words
        labels = [row["label"] for row in rows]
        print(f"\nteddy2020 {filename}: {len(rows)} messages, {len(set(labels))} labels, {FOLDS}-fold stratified "
              f"CV (seed {SEED}), pooled out-of-fold predictions", flush=True)
        results[key] = teddy_cross_validation(texts, labels, words)
        _print(results[key])
        print(f"  ours chose lead_chars per fold: {results[key]['ours']['lead_chars_chosen']}")
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
