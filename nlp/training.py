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
from nlp.tokenizer import LeadPreprocessor, normalise, tokenize_normalised, warm_up

__all__ = [
    "Example",
    "LeadPreprocessor",
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


# Steps `train` reports through `progress`, in order (the CLI sizes its progress bar with this).
TRAIN_STEPS = ("loading the tokenizer", "choosing the options by cross-validation",
               "fitting features and the calibrated model")


@dataclass(frozen=True)
class TrainingParams:
    """The pipeline's choices (chosen by cross-validation on training data; see docs/classifier.md)."""

    word_ngram_max: int = 2
    char_analyzer: str = "char_wb"
    char_ngram_min: int = 1
    char_ngram_max: int = 3
    # > 0: a third block, character n-grams of the text's first `lead_chars` characters; None: `train` chooses
    # among `lead_candidates` by a stratified `selection_folds`-fold cross-validation of its training data
    lead_chars: int | None = None
    lead_candidates: tuple[int, ...] = (0, 30)
    selection_folds: int = 3
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
        values = dict(values)
        if isinstance(values.get("lead_candidates"), list):
            values["lead_candidates"] = tuple(values["lead_candidates"])
        return dataclasses.replace(cls(), **values)

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
    # how `lead_chars` was chosen: candidates' mean macro-F1 in the inner cross-validation, the choice, seconds
    selection: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def build_pipeline(params: TrainingParams | None = None, *, calibration_folds: int | None = None,
                   text: _TextCache | None = None) -> Pipeline:
    """The unfitted pipeline: FeatureUnion(TF-IDF of words, of characters, of the opening's characters) →
    CalibratedClassifierCV(LinearSVC). `lead_chars=None` builds no opening block (`train` chooses it).

    `text` memoises normalisation and segmentation while training (`train` puts the module's functions back
    before the pipeline is returned)."""
    params = params or TrainingParams()
    words = TfidfVectorizer(
        preprocessor=text.normalise if text else normalise,
        tokenizer=text.tokenize if text else tokenize_normalised,
        token_pattern=None,
        lowercase=False,
        ngram_range=(1, params.word_ngram_max),
        min_df=params.min_df,
        sublinear_tf=params.sublinear_tf,
    )
    chars = TfidfVectorizer(
        preprocessor=text.normalise if text else normalise,
        analyzer=params.char_analyzer,
        lowercase=False,
        ngram_range=(params.char_ngram_min, params.char_ngram_max),
        min_df=params.min_df,
        sublinear_tf=params.sublinear_tf,
    )
    blocks: list[tuple[str, TfidfVectorizer]] = [("words", words), ("chars", chars)]
    if params.lead_chars:
        lead = TfidfVectorizer(
            preprocessor=text.lead(params.lead_chars) if text else LeadPreprocessor(params.lead_chars),
            analyzer=params.char_analyzer,
            lowercase=False,
            ngram_range=(params.char_ngram_min, params.char_ngram_max),
            min_df=params.min_df,
            sublinear_tf=params.sublinear_tf,
        )
        lead.qinglian_lead_chars = params.lead_chars  # type: ignore[attr-defined]
        blocks.append(("lead", lead))
    svm = LinearSVC(C=params.C, class_weight=params.class_weight, random_state=params.random_state)
    folds = calibration_folds or params.calibration_folds
    model = CalibratedClassifierCV(svm, method=params.calibration_method, cv=StratifiedKFold(folds),
                                   ensemble=params.calibration_ensemble)
    return Pipeline([("features", FeatureUnion(blocks)), ("model", model)])


class _TextCache:
    """Normalisation and segmentation of each distinct text done once during one `train` call."""

    def __init__(self) -> None:
        self._normalised: dict[str, str] = {}
        self._tokens: dict[str, list[str]] = {}

    def normalise(self, text: str) -> str:
        value = self._normalised.get(text)
        if value is None:
            value = self._normalised[text] = normalise(text)
        return value

    def tokenize(self, text: str) -> list[str]:
        value = self._tokens.get(text)
        if value is None:
            value = self._tokens[text] = tokenize_normalised(text)
        return value

    def lead(self, chars: int) -> Callable[[str], str]:
        return lambda text: self.normalise(text)[:chars]


def _restore_text_functions(pipeline: Pipeline) -> None:
    """The fitted pipeline as `build_pipeline` without a cache builds it (what is saved and compiled)."""
    for name, vectorizer in pipeline.named_steps["features"].transformer_list:
        if name == "words":
            vectorizer.set_params(preprocessor=normalise, tokenizer=tokenize_normalised)
        elif name == "lead":
            vectorizer.set_params(preprocessor=LeadPreprocessor(vectorizer.qinglian_lead_chars))
        else:
            vectorizer.set_params(preprocessor=normalise)


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


def _fit(params: TrainingParams, texts: Sequence[str], labels: np.ndarray, calibration_folds: int,
         text: _TextCache) -> Pipeline:
    pipeline = build_pipeline(params, calibration_folds=calibration_folds, text=text)
    pipeline.fit(list(texts), labels)
    return pipeline


def select_lead_chars(examples: Sequence[Example], params: TrainingParams, calibration_folds: int,
                      text: _TextCache | None = None) -> dict[str, Any]:
    """Choose `lead_chars` among `params.lead_candidates` by a stratified, shuffled (seeded with
    `params.random_state`) `params.selection_folds`-fold cross-validation of `examples` alone: the highest mean
    macro-F1 wins, ties go to the earlier candidate. Deterministic."""
    from sklearn.metrics import f1_score

    text = text or _TextCache()
    started = time.perf_counter()
    texts = np.array([e.text for e in examples], dtype=object)
    labels = np.array([e.label for e in examples])
    folds = StratifiedKFold(params.selection_folds, shuffle=True, random_state=params.random_state)
    scores = dict.fromkeys(params.lead_candidates, 0.0)
    for train_rows, test_rows in folds.split(texts, labels):
        inner_calibration = max(2, min(calibration_folds, min(Counter(labels[train_rows]).values())))
        for candidate in params.lead_candidates:
            fitted = _fit(dataclasses.replace(params, lead_chars=candidate), texts[train_rows], labels[train_rows],
                          inner_calibration, text)
            predicted = fitted.predict(list(texts[test_rows]))
            scores[candidate] += float(f1_score(labels[test_rows], predicted, average="macro")) / folds.n_splits
    chosen = max(params.lead_candidates, key=lambda candidate: (round(scores[candidate], 12),
                                                                -params.lead_candidates.index(candidate)))
    return {"parameter": "lead_chars", "chosen": chosen, "folds": params.selection_folds,
            "seed": params.random_state, "metric": "macro_f1",
            "scores": {str(candidate): round(score, 4) for candidate, score in scores.items()},
            "seconds": round(time.perf_counter() - started, 3)}


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
    text = _TextCache()
    selection: dict[str, Any] | None = None
    if chosen.lead_chars is None:
        counts = Counter(e.label for e in ordered)
        if len(chosen.lead_candidates) > 1 and min(counts.values()) >= 2 * chosen.selection_folds:
            selection = select_lead_chars(ordered, chosen, folds, text)
            chosen = dataclasses.replace(chosen, lead_chars=int(selection["chosen"]))
        else:  # nothing to choose, or too few examples to cross-validate: the first candidate
            chosen = dataclasses.replace(chosen, lead_chars=chosen.lead_candidates[0] if chosen.lead_candidates else 0)
    report(TRAIN_STEPS[2])
    pipeline = _fit(chosen, [e.text for e in ordered], np.array([e.label for e in ordered]), folds, text)
    _restore_text_functions(pipeline)
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
        selection=selection,
    )
