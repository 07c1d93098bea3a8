"""What the models page shows of saved model versions: each one's calibration and triage threshold (from the
metrics its registry entry stores), two versions compared on the current evaluation split, and the version a
rollback would promote again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from console import texts

if TYPE_CHECKING:
    from nlp.registry import ModelRegistry


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


def compare(registry: ModelRegistry, version_a: str, version_b: str) -> dict[str, Any]:
    """`nlp.comparison.compare` (two versions side by side on the evaluation and the boundary split; every delta
    is b − a), with "languages" as rows for the page: [{"code", "name_zh", "name_en", "n", "a", "b", "delta"}:
    accuracy per language]. Raises `nlp.errors.ModelNotFoundError` for an unknown version. Blocking: call it in a
    thread from async code."""
    from nlp.comparison import compare as compare_versions

    comparison = compare_versions(registry, version_a, version_b)
    by_code = comparison["languages"]
    order = list(LANGUAGE_NAMES)
    languages = []
    for code in sorted(by_code, key=lambda code: (order.index(code) if code in order else len(order), code)):
        name = LANGUAGE_NAMES.get(code, (code, code))
        languages.append({"code": code, "name_zh": name[0], "name_en": name[1], **by_code[code]})
    return {**comparison, "languages": languages}


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
