from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from nlp.errors import ModelNotFoundError, PromotionRefusedError, RegistryError
from nlp.registry import ModelInfo, ModelRegistry, ensure_default_model
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


def test_ensure_default_model_trains_and_promotes_on_a_fresh_install(tmp_path: Path,
                                                                     saved_models: tuple[Path, ModelInfo]) -> None:
    messages: list[str] = []
    info = ensure_default_model(tmp_path, progress=messages.append)
    assert info.promoted
    assert info.data_fingerprint == saved_models[1].data_fingerprint  # same data as the session model
    assert messages[0].startswith("no promoted classifier model")
    assert "promoted" in messages[-1]
    assert json.loads((tmp_path / "models" / "registry.json").read_text())["history"] == [info.version]
    assert ModelRegistry(tmp_path / "models").load_promoted().classify("医院乱收费").top == \
        ModelRegistry(saved_models[0]).load(saved_models[1].version).classify("医院乱收费").top
