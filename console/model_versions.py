"""What the models page shows of saved model versions: each one's calibration and triage threshold (from the
metrics its registry entry stores), two versions compared on the current evaluation split, and the version a
rollback would promote again."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import texts
from nlp.labels import LABELS

if TYPE_CHECKING:
    from nlp.artifact import ArtifactCipher
    from nlp.evaluation import EvaluationReport
    from nlp.registry import ModelInfo, ModelRegistry


# --- calibration and the triage threshold --------------------------------------------------------------------

ECE_TARGET = 0.05
"""Issue 16: the expected calibration error on the evaluation split is at most this."""
LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    "zh": ("简体中文", "Simplified Chinese"), "zh-hant": ("繁体中文", "Traditional Chinese"),
    "en": ("英文", "English"), "mixed": ("中英混合", "Mixed Chinese and English")}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _reliability_rows(value: Any) -> list[dict[str, Any]] | None:
    """The stored reliability table (`nlp.evaluation.ReliabilityBin.as_dict` rows), or None if it is not one."""
    if not isinstance(value, list) or not value:
        return None
    rows = []
    for row in value:
        if not isinstance(row, dict):
            return None
        low, high, count = _number(row.get("low")), _number(row.get("high")), _count(row.get("n"))
        if low is None or high is None or count is None:
            return None
        rows.append({"low": low, "high": high, "n": count, "confidence": _number(row.get("confidence")),
                     "accuracy": _number(row.get("accuracy"))})
    return rows


def _language_rows(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, dict) or not value:
        return None
    order = list(LANGUAGE_NAMES)
    rows = []
    for code in sorted(value, key=lambda code: (order.index(code) if code in order else len(order), code)):
        group = value[code]
        if not isinstance(group, dict) or _count(group.get("n")) is None or _number(group.get("accuracy")) is None:
            return None
        name = LANGUAGE_NAMES.get(code, (code, code))
        rows.append({"code": code, "name_zh": name[0], "name_en": name[1], "n": _count(group["n"]),
                     "accuracy": _number(group["accuracy"])})
    return rows


def _threshold_rule(recorded: str) -> tuple[str, str]:
    """The rule a version's threshold was chosen by, in Chinese and English; one this version of the evaluation
    does not state (recorded by another) as it was recorded."""
    from nlp.evaluation import THRESHOLD_MAX_TRIAGE, THRESHOLD_MIN_PRECISION, THRESHOLD_RULE

    if recorded != THRESHOLD_RULE:
        return recorded, recorded
    return texts.pair("model.threshold_rule", precision=f"{THRESHOLD_MIN_PRECISION:.0%}",
                      triage=f"{THRESHOLD_MAX_TRIAGE:.0%}")


def calibration(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What the models page shows of a version's confidence, from the metrics its registry entry stores
    (`nlp.evaluation.EvaluationReport.metrics` on the evaluation split): `ece` (and `ece_met`: at most
    `ECE_TARGET`), the `reliability` rows (low, high, n, confidence, accuracy), `languages` (accuracy per
    language) and `threshold` (the suggested triage threshold with `triage_share`, the share of reports it
    sends to triage, `precision`, the accuracy of the reports routed automatically, the `rule` (Chinese, English:
    the text `model.threshold_rule` when it is this version's rule, else as recorded) and whether it was
    `rule_met`). A part that was not measured for the version (trained before it was) is None."""
    ece = _number(metrics.get("ece"))
    threshold = _number(metrics.get("suggested_threshold"))
    choice = None
    if threshold is not None:
        met = metrics.get("threshold_rule_met")
        choice = {"value": threshold, "triage_share": _number(metrics.get("threshold_triage_share")),
                  "precision": _number(metrics.get("threshold_precision")),
                  "rule": _threshold_rule(str(metrics.get("threshold_rule") or "")),
                  "rule_met": met if isinstance(met, bool) else None}
    return {"ece": ece, "ece_met": ece is not None and ece <= ECE_TARGET, "ece_target": ECE_TARGET,
            "n": _count(metrics.get("n")), "split": str(metrics.get("split") or ""),
            "reliability": _reliability_rows(metrics.get("reliability")),
            "languages": _language_rows(metrics.get("accuracy_by_language")), "threshold": choice}


# --- comparing two versions ---------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _evaluate(model_dir: str, sha256: str, cipher: ArtifactCipher | None) -> EvaluationReport:
    """A model's report on the current evaluation split (cached: a version's artifact never changes)."""
    from nlp.classifier import Classifier
    from nlp.corpus import load_seed_corpus
    from nlp.evaluation import evaluate_classifier

    return evaluate_classifier(Classifier.load(Path(model_dir), cipher), load_seed_corpus("eval"))


def _delta(a: float | None, b: float | None) -> float | None:
    return round(b - a, 4) if a is not None and b is not None else None


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


def _pair(side_a: dict[str, Any], side_b: dict[str, Any], key: str) -> dict[str, Any]:
    return {"a": side_a[key], "b": side_b[key], "delta": _delta(side_a[key], side_b[key])}


def compare(registry: ModelRegistry, version_a: str, version_b: str) -> dict[str, Any]:
    """Two versions scored on the same (current) evaluation split, side by side; every delta is b − a.

    Returns {"a": {...}, "b": {...}, "macro_f1": {"a", "b", "delta"}, "accuracy", "ece", "threshold" (the one the
    documented rule chooses), "triage_share" (sent to triage at it), "auto_accuracy" (of the reports at or above
    it): the same, "languages": [{"code", "name_zh", "name_en", "n", "a", "b", "delta"}: accuracy per language],
    "labels": [{"label", "name_zh", "name_en", "support", "a", "b", "delta"} per label: F1], "n", "split"}. Raises
    `nlp.errors.ModelNotFoundError` for an unknown version. Blocking (loads and runs both models, about a
    second each the first time): call it in a thread from async code.
    """
    info_a, info_b = registry.get(version_a), registry.get(version_b)
    report_a = _evaluate(str(info_a.path), info_a.sha256, registry.cipher)
    report_b = _evaluate(str(info_b.path), info_b.sha256, registry.cipher)
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
    side_a, side_b = _side(info_a, report_a), _side(info_b, report_b)
    languages = []
    for row in _language_rows({**side_b["languages"], **side_a["languages"]}) or []:
        a, b = side_a["languages"].get(row["code"]), side_b["languages"].get(row["code"])
        accuracy_a = a["accuracy"] if a else None
        accuracy_b = b["accuracy"] if b else None
        languages.append({**row, "n": (a or b or {}).get("n"), "a": accuracy_a, "b": accuracy_b,
                          "delta": _delta(accuracy_a, accuracy_b)})
    return {
        "a": side_a,
        "b": side_b,
        "macro_f1": _pair(side_a, side_b, "macro_f1"),
        "accuracy": _pair(side_a, side_b, "accuracy"),
        "ece": _pair(side_a, side_b, "ece"),
        "threshold": _pair(side_a, side_b, "threshold"),
        "triage_share": _pair(side_a, side_b, "triage_share"),
        "auto_accuracy": _pair(side_a, side_b, "auto_accuracy"),
        "languages": languages,
        "labels": rows,
        "n": report_a.n,
        "split": "seed-eval",
    }


def rollback_target(events: list[dict[str, Any]], existing: set[str]) -> str | None:
    """The version a rollback would promote again, from the registry's log of promotions and rollbacks (what
    `ModelRegistry.rollback` does with its history, replayed): the one promoted before the current one and
    still saved. None when there is none."""
    history: list[str] = []
    for event in events:
        version = str(event.get("version") or "")
        if event.get("action") == "rollback":
            if history:
                history.pop()
            while history and history[-1] != version:
                history.pop()
        elif version:
            history.append(version)
    earlier = [version for version in history[:-1] if version in existing]
    return earlier[-1] if earlier else None
