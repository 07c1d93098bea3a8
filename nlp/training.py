"""The model: TF-IDF over jieba words and characters into a calibrated linear SVM; training and its metadata.

`build_pipeline(params)` is the whole model as a scikit-learn pipeline (what is saved, cross-validated and
benchmarked); `train(examples)` fits it deterministically — the examples are put in a canonical order first,
so the same data gives the same model and the same predictions, whatever the order it came in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from nlp.corpus import Example, load_dataset, load_seed_corpus
from nlp.errors import DatasetError
from nlp.tokenizer import normalise, tokenize_normalised, warm_up

__all__ = [
    "Example",
    "Progress",
    "TrainedModel",
    "TrainingParams",
    "build_pipeline",
    "data_fingerprint",
    "library_versions",
    "load_dataset",
    "load_seed_corpus",
    "train",
]

Progress = Callable[[str], None]


class LeadPreprocessor:
    """The normalised opening of a text: where a report usually says what it is about (its title, if any)."""

    def __init__(self, chars: int) -> None:
        self.chars = chars

    def __call__(self, text: str) -> str:
        return normalise(text)[: self.chars]

    def __repr__(self) -> str:
        return f"LeadPreprocessor({self.chars})"

# Steps `train` reports through `progress`, in order (the CLI sizes its progress bar with this).
TRAIN_STEPS = ("loading the tokenizer", "fitting features and the calibrated model")


@dataclass(frozen=True)
class TrainingParams:
    """The pipeline's choices (chosen by cross-validation on training data; see docs/classifier.md)."""

    word_ngram_max: int = 2
    char_analyzer: str = "char_wb"
    char_ngram_min: int = 1
    char_ngram_max: int = 3
    lead_chars: int = 0  # > 0: a third block, character n-grams of the text's first `lead_chars` characters
    min_df: int = 2
    sublinear_tf: bool = True
    C: float = 1.0
    class_weight: str | None = "balanced"
    calibration_method: str = "sigmoid"
    calibration_folds: int = 5
    calibration_ensemble: bool = True
    random_state: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> TrainingParams:
        if not values:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training parameters: {', '.join(unknown)}")
        return dataclasses.replace(cls(), **dict(values))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainedModel:
    pipeline: Pipeline
    labels: list[str]
    label_counts: dict[str, int]
    data_fingerprint: str
    params: dict[str, Any]
    library_versions: dict[str, str]
    n_examples: int
    training_seconds: float
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def build_pipeline(params: TrainingParams | None = None, *, calibration_folds: int | None = None) -> Pipeline:
    """The unfitted pipeline: FeatureUnion(TF-IDF of words, of characters, of the opening's characters) →
    CalibratedClassifierCV(LinearSVC)."""
    params = params or TrainingParams()
    words = TfidfVectorizer(
        preprocessor=normalise,
        tokenizer=tokenize_normalised,
        token_pattern=None,
        lowercase=False,
        ngram_range=(1, params.word_ngram_max),
        min_df=params.min_df,
        sublinear_tf=params.sublinear_tf,
    )
    chars = TfidfVectorizer(
        preprocessor=normalise,
        analyzer=params.char_analyzer,
        lowercase=False,
        ngram_range=(params.char_ngram_min, params.char_ngram_max),
        min_df=params.min_df,
        sublinear_tf=params.sublinear_tf,
    )
    blocks: list[tuple[str, TfidfVectorizer]] = [("words", words), ("chars", chars)]
    if params.lead_chars > 0:
        lead = TfidfVectorizer(
            preprocessor=LeadPreprocessor(params.lead_chars),
            analyzer=params.char_analyzer,
            lowercase=False,
            ngram_range=(params.char_ngram_min, params.char_ngram_max),
            min_df=params.min_df,
            sublinear_tf=params.sublinear_tf,
        )
        blocks.append(("lead", lead))
    svm = LinearSVC(C=params.C, class_weight=params.class_weight, random_state=params.random_state)
    folds = calibration_folds or params.calibration_folds
    model = CalibratedClassifierCV(svm, method=params.calibration_method, cv=StratifiedKFold(folds),
                                   ensemble=params.calibration_ensemble)
    return Pipeline([("features", FeatureUnion(blocks)), ("model", model)])


def canonical_order(examples: Sequence[Example]) -> list[Example]:
    return sorted(examples, key=lambda e: (e.label, e.text, e.id))


def data_fingerprint(examples: Sequence[Example]) -> str:
    """sha256 over the sorted (label, text) pairs: the same data has the same fingerprint in any order."""
    digest = hashlib.sha256()
    for line in sorted(json.dumps([e.label, e.text], ensure_ascii=False) for e in examples):
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("scikit-learn", "numpy", "scipy", "joblib", "jieba", "opencc-python-reimplemented"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def check_examples(examples: Sequence[Example], calibration_folds: int) -> int:
    """Validate the training set; returns the number of calibration folds the smallest label allows."""
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        raise DatasetError(f"training needs at least 2 labels, got {len(counts)}")
    smallest_label, smallest = min(counts.items(), key=lambda item: item[1])
    if smallest < 2:
        raise DatasetError(f"label {smallest_label!r} has {smallest} example; every label needs at least 2")
    return max(2, min(calibration_folds, smallest))


def train(
    examples: Sequence[Example],
    *,
    progress: Progress | None = None,
    params: TrainingParams | Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Fit the pipeline on `examples` (blocking: seconds on the seed corpus; run it off the event loop)."""
    chosen = params if isinstance(params, TrainingParams) else TrainingParams.from_mapping(params)
    report = progress or (lambda _message: None)
    started = time.perf_counter()
    ordered = canonical_order(examples)
    folds = check_examples(ordered, chosen.calibration_folds)
    report(TRAIN_STEPS[0])
    warm_up(None)
    report(TRAIN_STEPS[1])
    pipeline = build_pipeline(chosen, calibration_folds=folds)
    pipeline.fit([e.text for e in ordered], np.array([e.label for e in ordered]))
    counts = Counter(e.label for e in ordered)
    return TrainedModel(
        pipeline=pipeline,
        labels=[str(label) for label in pipeline.classes_],
        label_counts={label: counts[label] for label in sorted(counts)},
        data_fingerprint=data_fingerprint(ordered),
        params={**chosen.as_dict(), "calibration_folds": folds},
        library_versions=library_versions(),
        n_examples=len(ordered),
        training_seconds=round(time.perf_counter() - started, 3),
    )
