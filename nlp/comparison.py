"""Two saved model versions scored side by side on the same held-out data: the fixed evaluation split and the
boundary split. `qinglian model compare A B` prints it; the console's models page and its promotion confirmation
show it (console.model_versions adds the languages' names)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlp.labels import LABELS

if TYPE_CHECKING:
    from nlp.artifact import ArtifactCipher
    from nlp.evaluation import EvaluationReport
    from nlp.registry import ModelInfo, ModelRegistry

EVAL_SPLIT = "seed-eval"
F1_DROP = 0.02
"""A label whose F1 falls by more than this (2 points) is named as a drop."""


@lru_cache(maxsize=16)
def _evaluate(model_dir: str, sha256: str, cipher: ArtifactCipher | None, split: str) -> EvaluationReport:
    """A model's report on the current evaluation (`eval`) or boundary (`boundary`) split (cached: a version's
    artifact, named by its checksum, never changes)."""
    from nlp.classifier import Classifier
    from nlp.corpus import load_boundary_split, load_seed_corpus
    from nlp.evaluation import evaluate_classifier

    examples = load_boundary_split() if split == "boundary" else load_seed_corpus("eval")
    return evaluate_classifier(Classifier.load(Path(model_dir), cipher), examples)


def _delta(a: float | None, b: float | None) -> float | None:
    return round(b - a, 4) if a is not None and b is not None else None


def _pair(side_a: dict[str, Any], side_b: dict[str, Any], key: str) -> dict[str, Any]:
    return {"a": side_a[key], "b": side_b[key], "delta": _delta(side_a[key], side_b[key])}


def _side(info: ModelInfo, report: EvaluationReport) -> dict[str, Any]:
    threshold = report.threshold
    return {
        "version": info.version, "created_at": info.created_at.isoformat(), "promoted": info.promoted,
        "source": info.source, "n_examples": info.n_examples, "training_seconds": info.training_seconds,
        "macro_f1": round(report.macro_f1, 4), "accuracy": round(report.accuracy, 4), "ece": round(report.ece, 4),
        "threshold": threshold.threshold if threshold else None,
        "triage_share": threshold.triage_share if threshold else None,
        "auto_accuracy": threshold.precision if threshold else None,
        "languages": report.accuracy_by_language,
    }


def _label_rows(report_a: EvaluationReport, report_b: EvaluationReport) -> list[dict[str, Any]]:
    f1_a = {score.label: score for score in report_a.scores}
    f1_b = {score.label: score for score in report_b.scores}
    labels = [label for label in LABELS if label in f1_a or label in f1_b]
    labels += sorted((set(f1_a) | set(f1_b)) - set(labels))
    rows = []
    for label in labels:
        a = round(f1_a[label].f1, 4) if label in f1_a else None
        b = round(f1_b[label].f1, 4) if label in f1_b else None
        support = (f1_a.get(label) or f1_b[label]).support
        names = LABELS.get(label, (label, label))
        rows.append({"label": label, "name_zh": names[0], "name_en": names[1], "support": support,
                     "a": a, "b": b, "delta": _delta(a, b)})
    return rows


def _boundary(info: ModelInfo, cipher: ArtifactCipher | None, threshold: float | None) -> dict[str, Any]:
    report = _evaluate(str(info.path), info.sha256, cipher, "boundary")
    return {"macro_f1": round(report.macro_f1, 4), "accuracy": round(report.accuracy, 4),
            "triage_share": round(report.triage_share(threshold), 4) if threshold is not None else None}


def compare(registry: ModelRegistry, version_a: str, version_b: str) -> dict[str, Any]:
    """Two versions scored on the same (current) evaluation split, side by side; every delta is b − a.

    Returns {"a": {...}, "b": {...}, "macro_f1": {"a", "b", "delta"}, "accuracy", "ece", "threshold" (the one the
    documented rule chooses on the evaluation split), "triage_share" (sent to triage at it), "auto_accuracy" (of the
    reports at or above it): the same, "languages": {code: {"n", "a", "b", "delta"}: accuracy per language},
    "labels": [{"label", "name_zh", "name_en", "support", "a", "b", "delta"} per label: F1], "drops": the labels
    whose F1 falls by more than `F1_DROP`, "boundary": {"n", "macro_f1", "accuracy", "triage_share" (at each
    version's own threshold): {"a", "b", "delta"}}, "n", "split"}. Raises `nlp.errors.ModelNotFoundError` for an
    unknown version. Blocking (loads and runs both models, about a second each the first time).
    """
    info_a, info_b = registry.get(version_a), registry.get(version_b)
    report_a = _evaluate(str(info_a.path), info_a.sha256, registry.cipher, "eval")
    report_b = _evaluate(str(info_b.path), info_b.sha256, registry.cipher, "eval")
    side_a, side_b = _side(info_a, report_a), _side(info_b, report_b)
    languages: dict[str, dict[str, Any]] = {}
    for code in [*side_a["languages"], *(c for c in side_b["languages"] if c not in side_a["languages"])]:
        a, b = side_a["languages"].get(code), side_b["languages"].get(code)
        accuracy_a = a["accuracy"] if a else None
        accuracy_b = b["accuracy"] if b else None
        languages[code] = {"n": int((a or b or {}).get("n") or 0), "a": accuracy_a, "b": accuracy_b,
                           "delta": _delta(accuracy_a, accuracy_b)}
    labels = _label_rows(report_a, report_b)
    boundary_a = _boundary(info_a, registry.cipher, side_a["threshold"])
    boundary_b = _boundary(info_b, registry.cipher, side_b["threshold"])
    boundary_n = _evaluate(str(info_a.path), info_a.sha256, registry.cipher, "boundary").n
    return {
        "a": side_a,
        "b": side_b,
        **{key: _pair(side_a, side_b, key)
           for key in ("macro_f1", "accuracy", "ece", "threshold", "triage_share", "auto_accuracy")},
        "languages": languages,
        "labels": labels,
        "drops": [row for row in labels if row["delta"] is not None and row["delta"] < -F1_DROP - 1e-9],
        "boundary": {"n": boundary_n, **{key: _pair(boundary_a, boundary_b, key)
                                         for key in ("macro_f1", "accuracy", "triage_share")}},
        "n": report_a.n,
        "split": EVAL_SPLIT,
    }
