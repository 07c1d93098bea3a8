"""Quality of a model: per-label scores, confusion matrix, misclassified examples, accuracy by language and by
boundary rule, the reliability of its confidence (reliability table, expected calibration error) and the
triage threshold chosen from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

from nlp.corpus import Example
from nlp.labels import LABELS, display_name
from nlp.training import Progress, TrainingParams, build_pipeline, canonical_order, check_examples

THRESHOLD_MIN_PRECISION = 0.97
THRESHOLD_MAX_TRIAGE = 0.20
THRESHOLD_GRID = tuple(round(step / 100, 2) for step in range(100))
THRESHOLD_RULE = (f"lowest t (0.01 grid) with ≥ {THRESHOLD_MIN_PRECISION:.0%} of the reports at or above t correctly "
                  f"labelled and ≤ {THRESHOLD_MAX_TRIAGE:.0%} below t")
RELIABILITY_BINS = 10


@dataclass(frozen=True)
class LabelScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Misclassified:
    example: Example
    predicted: str
    confidence: float


@dataclass(frozen=True)
class ThresholdChoice:
    """The lowest threshold whose accepted predictions reach the precision with at most the triage share."""

    threshold: float
    precision: float  # of predictions with confidence ≥ threshold
    triage_share: float  # share of reports with confidence < threshold
    rule_met: bool


@dataclass(frozen=True)
class ReliabilityBin:
    """Reports whose confidence is in [low, high) (the last bin includes 1.0)."""

    low: float
    high: float
    n: int
    accuracy: float | None  # share correctly labelled; None for an empty bin
    confidence: float | None  # mean confidence

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "n": self.n,
                "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
                "confidence": None if self.confidence is None else round(self.confidence, 4)}


def reliability_table(correct: Sequence[bool], confidences: Sequence[float],
                      bins: int = RELIABILITY_BINS) -> list[ReliabilityBin]:
    """Accuracy against mean confidence in `bins` equal-width confidence bins."""
    right = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidences, dtype=np.float64)
    slots = np.minimum((confidence * bins).astype(int), bins - 1)
    table = []
    for slot in range(bins):
        members = slots == slot
        count = int(members.sum())
        table.append(ReliabilityBin(round(slot / bins, 4), round((slot + 1) / bins, 4), count,
                                    float(right[members].mean()) if count else None,
                                    float(confidence[members].mean()) if count else None))
    return table


def expected_calibration_error(table: Sequence[ReliabilityBin]) -> float:
    """Σ over bins of (share of reports in the bin) × |accuracy − mean confidence|."""
    total = sum(row.n for row in table)
    if not total:
        return 0.0
    return float(sum(row.n / total * abs(row.accuracy - row.confidence) for row in table
                     if row.accuracy is not None and row.confidence is not None))


@dataclass
class EvaluationReport:
    labels: list[str]
    scores: list[LabelScore]
    macro_f1: float
    accuracy: float
    confusion: list[list[int]]  # rows: true label, columns: predicted, in `labels` order
    misclassified: list[Misclassified]
    n: int
    threshold: ThresholdChoice | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    confidences: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    accuracy_by_language: dict[str, dict[str, float]] = field(default_factory=dict)  # lang → {n, accuracy}
    accuracy_by_rule: dict[str, dict[str, float]] = field(default_factory=dict)  # boundary rule → {n, accuracy}

    @property
    def reliability(self) -> list[ReliabilityBin]:
        return reliability_table(self.correct, self.confidences)

    @property
    def ece(self) -> float:
        return expected_calibration_error(self.reliability)

    def triage_share(self, threshold: float) -> float:
        """Share of the reports whose confidence is below `threshold`."""
        return round(float(np.mean(np.asarray(self.confidences) < threshold)), 4) if self.confidences else 0.0

    def metrics(self, *, reliability: bool = True) -> dict[str, Any]:
        """What the registry stores (`ModelInfo.metrics`): scores, accuracy by language (and by boundary rule),
        ECE, and with `reliability` the reliability table and the threshold the documented rule chooses."""
        metrics: dict[str, Any] = {"macro_f1": round(self.macro_f1, 4), "accuracy": round(self.accuracy, 4),
                                   "n": self.n, "ece": round(self.ece, 4),
                                   "accuracy_by_language": self.accuracy_by_language}
        if self.accuracy_by_rule:
            metrics["accuracy_by_rule"] = self.accuracy_by_rule
        if reliability:
            metrics["reliability"] = [row.as_dict() for row in self.reliability]
            if self.threshold is not None:
                metrics["suggested_threshold"] = self.threshold.threshold
                metrics["threshold_precision"] = self.threshold.precision
                metrics["threshold_triage_share"] = self.threshold.triage_share
                metrics["threshold_rule"] = THRESHOLD_RULE
                metrics["threshold_rule_met"] = self.threshold.rule_met
        return metrics


def choose_threshold(
    correct: Sequence[bool],
    confidences: Sequence[float],
    *,
    min_precision: float = THRESHOLD_MIN_PRECISION,
    max_triage: float = THRESHOLD_MAX_TRIAGE,
) -> ThresholdChoice:
    """The lowest t on a 0.01 grid where predictions with confidence ≥ t are ≥ `min_precision` correct while
    at most `max_triage` of the reports fall below t. If no t meets both, the t with the best precision among
    those within the triage limit (rule_met False)."""
    right = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidences, dtype=np.float64)
    if right.size == 0:
        return ThresholdChoice(0.0, 0.0, 0.0, False)
    candidates = []
    for threshold in THRESHOLD_GRID:
        accepted = confidence >= threshold
        precision = float(right[accepted].mean()) if accepted.any() else 0.0
        triage = 1.0 - float(accepted.mean())
        candidates.append(ThresholdChoice(threshold, round(precision, 4), round(triage, 4), False))
        if precision >= min_precision and triage <= max_triage:
            return ThresholdChoice(threshold, round(precision, 4), round(triage, 4), True)
    within = [c for c in candidates if c.triage_share <= max_triage]
    return max(within, key=lambda c: (c.precision, -c.threshold)) if within else candidates[0]


def report_from_predictions(
    examples: Sequence[Example],
    predicted: Sequence[str],
    confidences: Sequence[float],
    labels: Sequence[str] | None = None,
) -> EvaluationReport:
    truth = [e.label for e in examples]
    if labels is None:
        present = set(truth) | set(predicted)
        labels = [label for label in LABELS if label in present] + sorted(present - set(LABELS))
    label_list = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=label_list, zero_division=0.0)
    scores = [LabelScore(label, float(p), float(r), float(f), int(s))
              for label, p, r, f, s in zip(label_list, precision, recall, f1, support, strict=True)]
    present_labels = [label for label in label_list if label in set(truth)]
    macro = float(f1_score(truth, predicted, labels=present_labels, average="macro", zero_division=0.0))
    matrix = confusion_matrix(truth, predicted, labels=label_list)
    wrong = [Misclassified(example, guess, float(confidence))
             for example, guess, confidence in zip(examples, predicted, confidences, strict=True)
             if guess != example.label]
    wrong.sort(key=lambda m: -m.confidence)
    correct = [guess == example.label for example, guess in zip(examples, predicted, strict=True)]
    return EvaluationReport(
        confidences=[float(c) for c in confidences],
        correct=correct,
        accuracy_by_language=_accuracy_by(examples, correct, "lang"),
        accuracy_by_rule=_accuracy_by(examples, correct, "rule"),
        labels=label_list,
        scores=scores,
        macro_f1=macro,
        accuracy=float(accuracy_score(truth, predicted)),
        confusion=matrix.tolist(),
        misclassified=wrong,
        n=len(examples),
        threshold=choose_threshold(correct, confidences),
    )


def _accuracy_by(examples: Sequence[Example], correct: Sequence[bool], attribute: str) -> dict[str, dict[str, float]]:
    groups: dict[str, list[bool]] = {}
    for example, right in zip(examples, correct, strict=True):
        key = str(getattr(example, attribute, ""))
        if key:
            groups.setdefault(key, []).append(right)
    return {key: {"n": len(values), "accuracy": round(sum(values) / len(values), 4)}
            for key, values in sorted(groups.items())}


def evaluate_classifier(classifier: Any, examples: Sequence[Example]) -> EvaluationReport:
    """Score a `Classifier` on labelled examples; labels in the taxonomy's order, then any others."""
    probabilities = classifier.predict_proba([e.text for e in examples])
    best = probabilities.argmax(axis=1) if len(examples) else np.empty(0, dtype=int)
    predicted = [classifier.labels[i] for i in best]
    confidences = [float(probabilities[row, i]) for row, i in enumerate(best)]
    known = set(classifier.labels) | {e.label for e in examples}
    order = [label for label in LABELS if label in known] + sorted(known - set(LABELS))
    return report_from_predictions(examples, predicted, confidences, order)


def cross_validate(
    examples: Sequence[Example],
    *,
    folds: int = 5,
    seed: int = 42,
    params: TrainingParams | None = None,
    progress: Progress | None = None,
) -> EvaluationReport:
    """Stratified k-fold cross-validation (shuffled with `seed`), scored on the pooled out-of-fold predictions."""
    ordered = canonical_order(examples)
    check_examples(ordered, 2)
    texts = np.array([e.text for e in ordered], dtype=object)
    truth = np.array([e.label for e in ordered])
    predicted = np.empty(len(ordered), dtype=object)
    confidence = np.zeros(len(ordered))
    chosen = params or TrainingParams()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for number, (train_rows, test_rows) in enumerate(splitter.split(texts, truth), start=1):
        if progress:
            progress(f"fold {number} of {folds}")
        fold_labels = truth[train_rows]
        smallest = min(np.unique(fold_labels, return_counts=True)[1])
        pipeline = build_pipeline(chosen, calibration_folds=max(2, min(chosen.calibration_folds, int(smallest))))
        pipeline.fit(list(texts[train_rows]), fold_labels)
        probabilities = pipeline.predict_proba(list(texts[test_rows]))
        best = probabilities.argmax(axis=1)
        predicted[test_rows] = pipeline.classes_[best]
        confidence[test_rows] = probabilities[np.arange(len(test_rows)), best]
    report = report_from_predictions(ordered, [str(p) for p in predicted], confidence.tolist())
    report.extra = {"folds": folds, "seed": seed}
    return report


def _cjk_font() -> str | None:
    from matplotlib import font_manager

    names = {font.name for font in font_manager.fontManager.ttflist}
    for preferred in ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "Noto Serif CJK SC"):
        if preferred in names:
            return preferred
    return next((name for name in sorted(names) if "CJK" in name), None)


def plot_confusion(report: EvaluationReport, path: Path, title: str) -> Path:
    """Write the confusion matrix as a PNG: Chinese label names with a CJK font, else the label codes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    font = _cjk_font()
    names = [display_name(label) if font else label for label in report.labels]
    matrix = np.array(report.confusion)
    size = max(5.0, 0.75 * len(names) + 2.5)
    with plt.rc_context({"font.sans-serif": [font] if font else ["DejaVu Sans"], "font.family": "sans-serif",
                         "axes.unicode_minus": False}):
        figure, axes = plt.subplots(figsize=(size + 1.5, size))
        image = axes.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
        axes.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
        axes.set_yticks(range(len(names)), labels=names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(title)
        limit = matrix.max() / 2 if matrix.size else 0
        for row in range(matrix.shape[0]):
            for column in range(matrix.shape[1]):
                if matrix[row, column]:
                    axes.text(column, row, str(matrix[row, column]), ha="center", va="center",
                              color="white" if matrix[row, column] > limit else "black", fontsize=9)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
        plt.close(figure)
    return path
