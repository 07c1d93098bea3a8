from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from nlp.corpus import Example, load_boundary_split, load_seed_corpus
from nlp.errors import (
    ModelFormatError,
    ModelNotFoundError,
    NothingNewToTrain,
    PromotionRefusedError,
    RegistryError,
)
from nlp.labels import LABELS
from nlp.registry import ModelInfo, ModelRegistry, ensure_default_model, train_and_register, unservable_reason
from nlp.training import TrainedModel


def _registry(tmp_path: Path, saved_models: tuple[Path, ModelInfo]) -> tuple[ModelRegistry, ModelInfo]:
    source, info = saved_models
    shutil.copytree(source, tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    return registry, registry.get(info.version)


def _add_variant(registry: ModelRegistry, trained: TrainedModel, base: ModelInfo, macro_f1: float | None) -> ModelInfo:
    """The same pipeline saved again with a different recorded score (the gate compares recorded scores)."""
    metrics = {**base.metrics, "macro_f1": macro_f1} if macro_f1 is not None else {}
    return registry.add(dataclasses.replace(trained), metrics, source="variant")


def test_list_and_metadata(tmp_path: Path, saved_models: tuple[Path, ModelInfo]) -> None:
    registry, info = _registry(tmp_path, saved_models)
    assert registry.promoted() is None
    [listed] = registry.list()
    assert listed == info
    assert listed.path == tmp_path / "models" / info.version
    assert listed.macro_f1 is not None and listed.macro_f1 >= 0.9
    assert listed.metrics["split"] == "seed-eval"
    assert sum(listed.label_counts.values()) == listed.n_examples
    assert {"scikit-learn", "jieba"} <= set(listed.library_versions)
    assert len(listed.sha256) == 64
    version_parts = listed.version.split("-")
    assert [len(p) for p in version_parts] == [8, 6, 6] and version_parts[2] == listed.data_fingerprint[:6]


def test_promote_gate_and_rollback(tmp_path: Path, saved_models: tuple[Path, ModelInfo],
                                   trained: TrainedModel) -> None:
    registry, first = _registry(tmp_path, saved_models)
    registry.promote(first.version)
    assert registry.promoted() == dataclasses.replace(first, promoted=True)
    base_f1 = first.macro_f1
    assert base_f1 is not None

    slightly_worse = _add_variant(registry, trained, first, base_f1 - 0.009)
    registry.promote(slightly_worse.version)  # within 1 point: accepted
    assert registry.promoted() is not None and registry.promoted().version == slightly_worse.version  # type: ignore[union-attr]

    much_worse = _add_variant(registry, trained, first, base_f1 - 0.03)
    with pytest.raises(PromotionRefusedError, match="more than 1 point below"):
        registry.promote(much_worse.version)
    assert registry.promoted().version == slightly_worse.version  # type: ignore[union-attr]
    registry.promote(much_worse.version, force=True)
    assert registry.promoted().version == much_worse.version  # type: ignore[union-attr]

    assert registry.rollback().version == slightly_worse.version
    assert registry.rollback().version == first.version
    with pytest.raises(RegistryError, match="no earlier promoted model"):
        registry.rollback()
    assert [(e["action"], e["forced"]) for e in registry.events()] == [
        ("promote", False), ("promote", False), ("promote", True), ("rollback", False), ("rollback", False)]
    assert registry.load_promoted().version == first.version


def test_model_without_evaluation_scores_needs_force(tmp_path: Path, saved_models: tuple[Path, ModelInfo],
                                                     trained: TrainedModel) -> None:
    registry, first = _registry(tmp_path, saved_models)
    unscored = _add_variant(registry, trained, first, None)
    with pytest.raises(PromotionRefusedError, match="no macro-F1"):
        registry.promote(unscored.version)
    registry.promote(unscored.version, force=True)


def test_gate_rescored_when_the_evaluation_split_changed(tmp_path: Path, saved_models: tuple[Path, ModelInfo],
                                                         trained: TrainedModel) -> None:
    registry, first = _registry(tmp_path, saved_models)
    registry.promote(first.version)
    stale = registry.add(dataclasses.replace(trained), {**first.metrics, "macro_f1": 0.1, "eval_fingerprint": "old"})
    registry.promote(stale.version)  # re-scored on the current split, it is as good as the promoted model


def test_unknown_versions_and_empty_registry(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.list() == []
    for version in ("nope", "../etc", "", ".hidden"):
        with pytest.raises(ModelNotFoundError):
            registry.promote(version)
    with pytest.raises(ModelNotFoundError, match="no promoted model"):
        registry.load_promoted()
    with pytest.raises(RegistryError):
        registry.rollback()


def test_corrupt_registry_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "registry.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(RegistryError, match="not valid JSON"):
        ModelRegistry(tmp_path / "models").promoted()


def test_ensure_default_model_keeps_a_promoted_model(tmp_path: Path, saved_models: tuple[Path, ModelInfo]) -> None:
    registry, first = _registry(tmp_path, saved_models)
    registry.promote(first.version)
    messages: list[str] = []
    assert ensure_default_model(tmp_path, progress=messages.append).version == first.version
    assert messages == []


def _promote_by_hand(models_dir: Path, version: str) -> None:
    """What an earlier version's registry.json looks like with `version` promoted."""
    (models_dir / "registry.json").write_text(json.dumps({"history": [version], "events": []}), encoding="utf-8")


def test_a_promoted_model_of_the_old_format_is_replaced_by_a_new_default_model(
        tmp_path: Path, saved_models: tuple[Path, ModelInfo], old_format_model: Callable[[Path], Path]) -> None:
    old = old_format_model(tmp_path / "models" / "20250101-000000-abcdef")
    _promote_by_hand(tmp_path / "models", old.name)
    registry = ModelRegistry(tmp_path / "models")
    assert unservable_reason(registry.get(old.name)) is not None
    messages: list[str] = []
    info = ensure_default_model(tmp_path, progress=messages.append)
    assert messages[0].startswith("the promoted classifier model cannot be served (model 20250101-000000-abcdef "
                                  "was saved by an earlier version of Qinglian (model.joblib + compiled.npz)")
    assert info.data_fingerprint == saved_models[1].data_fingerprint
    assert registry.promoted() == info
    assert [(e["action"], e["version"], e["previous"], e["forced"]) for e in registry.events()] == [
        ("promote", info.version, old.name, True)]
    assert [i.version for i in registry.list()] == [old.name, info.version]  # the old one is kept, listed
    with pytest.raises(ModelFormatError, match="earlier version of Qinglian"):
        registry.rollback()  # back to a model this installation cannot serve: refused
    assert registry.promoted() == info


def test_a_model_saved_with_another_scikit_learn_cannot_be_promoted(tmp_path: Path,
                                                                    saved_models: tuple[Path, ModelInfo]) -> None:
    registry, first = _registry(tmp_path, saved_models)
    metadata_file = first.path / "metadata.json"
    metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    metadata["library_versions"]["scikit-learn"] = "0.24.2"
    metadata_file.write_text(json.dumps(metadata), encoding="utf-8")
    with pytest.raises(ModelFormatError, match=r"saved with scikit-learn 0\.24\.2"):
        registry.promote(first.version, force=True)
    assert registry.promoted() is None


def test_boundary_reports_are_never_trained_on(tmp_path: Path, saved_models: tuple[Path, ModelInfo],
                                               trained: TrainedModel) -> None:
    messages: list[str] = []
    boundary = load_boundary_split()
    info = train_and_register(ModelRegistry(tmp_path / "models"), extra_examples=boundary[:25],
                              progress=messages.append)
    assert "left out 25 example(s) whose text is in the evaluation or the boundary split" in messages
    assert info.n_examples == trained.n_examples
    assert info.data_fingerprint == trained.data_fingerprint  # exactly the seed training split


def test_metrics_record_calibration_threshold_and_boundary_split(saved_models: tuple[Path, ModelInfo]) -> None:
    metrics = saved_models[1].metrics
    assert [row["low"] for row in metrics["reliability"]] == [round(0.1 * n, 1) for n in range(10)]
    assert sum(row["n"] for row in metrics["reliability"]) == metrics["n"]
    assert 0.0 <= metrics["ece"] <= 0.05
    assert 0.0 < metrics["suggested_threshold"] < 1.0 and metrics["threshold_rule_met"] is True
    assert metrics["threshold_precision"] >= 0.97 and metrics["threshold_triage_share"] <= 0.2
    assert set(metrics["accuracy_by_language"]) == {"zh", "zh-hant", "en", "mixed"}
    boundary = metrics["boundary"]
    assert boundary["n"] == len(load_boundary_split())
    assert boundary["macro_f1"] >= 0.92
    assert set(boundary["accuracy_by_rule"]) == {"sector", "show_project", "window", "money", "conduct", "other"}


def test_a_version_that_would_copy_a_saved_one_is_refused_unless_asked_again(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    small = [e for label in LABELS for e in [x for x in load_seed_corpus("train") if x.label == label][:12]]
    first = train_and_register(registry, small, source="small")

    with pytest.raises(NothingNewToTrain, match=f"version {first.version} was trained on the same {len(small)} "
                                                "examples with the same settings") as refused:
        train_and_register(registry, list(reversed(small)), source="the same reports in another order")
    assert refused.value.version == first.version
    assert [info.version for info in registry.list()] == [first.version]

    # new data, other settings, or asked again: a new version each time
    more = train_and_register(registry, small, extra_examples=[Example(text="办证窗口的人一直玩手机不理群众",
                                                                       label="slow_service", id="staff-1")])
    other = train_and_register(registry, small, params={"C": 1.0})
    again = train_and_register(registry, small, again=True)
    assert more.n_examples == len(small) + 1 and other.params["C"] == 1.0
    assert again.data_fingerprint == first.data_fingerprint and again.params == first.params
    assert len({info.version for info in registry.list()}) == 4


def test_a_save_killed_midway_leaves_nothing_behind_once_the_next_one_is_saved(
        tmp_path: Path, saved_models: tuple[Path, ModelInfo], trained: TrainedModel) -> None:
    """A training process killed while it saved left its `.incoming-…` folder in the models directory for ever."""
    registry, first = _registry(tmp_path, saved_models)
    killed = registry.models_dir / ".incoming-20261207-101500-abcdef-4242"
    killed.mkdir()
    (killed / "pipeline.joblib").write_bytes(b"half of a model")
    added = _add_variant(registry, trained, first, 0.9)
    assert not killed.exists()
    assert sorted(path.name for path in registry.models_dir.iterdir() if path.is_dir()) == sorted(
        [first.version, added.version])
