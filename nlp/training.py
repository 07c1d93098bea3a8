"""The model: TF-IDF over jieba words and characters (and the taxonomy's cues) into a linear SVM whose scores
are calibrated by temperature scaling on out-of-fold predictions; training and its metadata.

`build_pipeline(params)` is the whole model as a scikit-learn pipeline (what is saved, served, cross-validated
and benchmarked); `train(examples)` fits it deterministically — the examples are put in a canonical order first,
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
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from nlp.corpus import Example, load_dataset, load_seed_corpus
from nlp.errors import DatasetError
from nlp.features import ReportAnalyzer
from nlp.tokenizer import normalise, warm_up

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
Memo = dict[str, tuple[str, list[str]]]  # text → its normalisation and words, while training


# Steps `train` reports through `progress`, in order (the CLI sizes its progress bar with this).
TRAIN_STEPS = ("loading the tokenizer", "choosing the options from the training data",
               "fitting features and the calibrated model")
# Libraries whose versions are recorded with a model; a model is served only by the scikit-learn it was saved
# with (nlp.classifier checks it at load).
RECORDED_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "jieba", "opencc-python-reimplemented")


@dataclass(frozen=True)
class TrainingParams:
    """The pipeline's choices (chosen by cross-validation on training data; see docs/classifier.md)."""

    word_ngram_max: int = 2
    char_analyzer: str = "char_wb"
    char_ngram_min: int = 1
    char_ngram_max: int = 3
    # > 0: character n-grams of the text's first `lead_chars` characters as well; None: `train` uses
    # `lead_auto_chars` when the median training report has at least `lead_min_median_chars` characters
    lead_chars: int | None = None
    lead_auto_chars: int = 30
    lead_min_median_chars: int = 150
    cues: bool = True  # the taxonomy's cues and their boundary-rule combinations (nlp.cues)
    # the opening's n-grams counted this many times (sublinear tf: 1 + ln 8 ≈ 3 times a body n-gram)
    lead_weight: int = 8
    min_df: int = 2
    sublinear_tf: bool = True
    C: float = 2.0
    class_weight: str | None = "balanced"
    # scikit-learn's CalibratedClassifierCV: "temperature" scales the SVM's scores by one factor fitted on
    # out-of-fold predictions of `calibration_folds` folds; without the ensemble one SVM fitted on all the data
    # is served (what the key terms are read from)
    calibration_method: str = "temperature"
    calibration_folds: int = 5
    calibration_ensemble: bool = False
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
    # how `lead_chars` was chosen: the training reports' median length against the threshold
    selection: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def build_pipeline(params: TrainingParams | None = None, *, calibration_folds: int | None = None,
                   memo: Memo | None = None) -> Pipeline:
    """The unfitted pipeline: TfidfVectorizer over the report's words, characters, opening and cues
    (`nlp.features.ReportAnalyzer`) → CalibratedClassifierCV(LinearSVC). `lead_chars=None` adds no opening
    (`train` chooses it).

    `memo` keeps each text's normalisation and words while training (`finish_pipeline` drops it)."""
    params = params or TrainingParams()
    analyzer = ReportAnalyzer(word_ngram_max=params.word_ngram_max, char_analyzer=params.char_analyzer,
                              char_ngram_min=params.char_ngram_min, char_ngram_max=params.char_ngram_max,
                              lead_chars=params.lead_chars or 0, cues=params.cues,
                              lead_weight=params.lead_weight)
    analyzer.memo = memo
    features = TfidfVectorizer(analyzer=analyzer, min_df=params.min_df, sublinear_tf=params.sublinear_tf)
    svm = LinearSVC(C=params.C, class_weight=params.class_weight, random_state=params.random_state)
    folds = calibration_folds or params.calibration_folds
    model = CalibratedClassifierCV(svm, method=params.calibration_method, cv=folds,
                                   ensemble=params.calibration_ensemble)
    return Pipeline([("features", features), ("model", model)])


def finish_pipeline(pipeline: Pipeline) -> Pipeline:
    """The fitted pipeline as it is saved and served: without the training memo, and without the vectorizer's
    `stop_words_` (the n-grams left out by `min_df`, kept by scikit-learn only for introspection; its
    documentation says they can be removed)."""
    features = pipeline.named_steps["features"]
    features.analyzer.memo = None
    if hasattr(features, "stop_words_"):
        del features.stop_words_
    return pipeline


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
    for name in RECORDED_LIBRARIES:
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


def _fit(params: TrainingParams, texts: Sequence[str], labels: np.ndarray, calibration_folds: int,
         memo: Memo) -> Pipeline:
    pipeline = build_pipeline(params, calibration_folds=calibration_folds, memo=memo)
    pipeline.fit(list(texts), labels)
    return pipeline


def choose_lead_chars(examples: Sequence[Example], params: TrainingParams) -> dict[str, Any]:
    """The opening block for `lead_chars=None`: `params.lead_auto_chars` when the training reports are long —
    their median normalised length at least `params.lead_min_median_chars`, as messages with a title are —
    none otherwise. Deterministic; what was chosen and why goes to the model's metadata (`selection`)."""
    lengths = sorted(len(normalise(e.text)) for e in examples)
    median = float(np.median(lengths)) if lengths else 0.0
    chosen = params.lead_auto_chars if median >= params.lead_min_median_chars else 0
    return {"parameter": "lead_chars", "chosen": chosen, "rule": "median length of the training reports",
            "median_chars": median, "threshold_chars": params.lead_min_median_chars}


@dataclass(frozen=True)
class TrainingPlan:
    """What `train` fits and records, decided before any fitting: the examples in canonical order, the parameters
    with `lead_chars` chosen, the calibration folds the smallest label allows. Cheap (no fitting), so a caller can
    see from it whether a saved model was trained on exactly this (`nlp.registry.ModelRegistry.trained_alike`)."""

    examples: list[Example]
    params: TrainingParams
    calibration_folds: int
    selection: dict[str, Any] | None

    @property
    def data_fingerprint(self) -> str:
        return data_fingerprint(self.examples)

    @property
    def recorded_params(self) -> dict[str, Any]:
        """The parameters as a trained model's metadata records them."""
        return {**self.params.as_dict(), "calibration_folds": self.calibration_folds}


def plan_training(examples: Sequence[Example],
                  params: TrainingParams | Mapping[str, Any] | None = None) -> TrainingPlan:
    """Validate `examples` and settle every choice `train` makes from the data (see `TrainingPlan`)."""
    chosen = params if isinstance(params, TrainingParams) else TrainingParams.from_mapping(params)
    ordered = canonical_order(examples)
    folds = check_examples(ordered, chosen.calibration_folds)
    selection: dict[str, Any] | None = None
    if chosen.lead_chars is None:
        selection = choose_lead_chars(ordered, chosen)
        chosen = dataclasses.replace(chosen, lead_chars=int(selection["chosen"]))
    return TrainingPlan(examples=ordered, params=chosen, calibration_folds=folds, selection=selection)


def train(
    examples: Sequence[Example] | TrainingPlan,
    *,
    progress: Progress | None = None,
    params: TrainingParams | Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Fit the pipeline on `examples` (or a plan of them; blocking: seconds on the seed corpus; run it off the
    event loop)."""
    report = progress or (lambda _message: None)
    started = time.perf_counter()
    plan = examples if isinstance(examples, TrainingPlan) else plan_training(examples, params)
    ordered = plan.examples
    report(TRAIN_STEPS[0])
    warm_up(None)
    report(TRAIN_STEPS[1])
    memo: Memo = {}
    report(TRAIN_STEPS[2])
    pipeline = _fit(plan.params, [e.text for e in ordered], np.array([e.label for e in ordered]),
                    plan.calibration_folds, memo)
    finish_pipeline(pipeline)
    counts = Counter(e.label for e in ordered)
    return TrainedModel(
        pipeline=pipeline,
        labels=[str(label) for label in pipeline.classes_],
        label_counts={label: counts[label] for label in sorted(counts)},
        data_fingerprint=plan.data_fingerprint,
        params=plan.recorded_params,
        library_versions=library_versions(),
        n_examples=len(ordered),
        training_seconds=round(time.perf_counter() - started, 3),
        selection=plan.selection,
    )
