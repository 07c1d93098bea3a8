"""The classifier inside the running service: loading, reloading on promotion, models it cannot serve."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

from bot.classification import ClassifierService
from bot.jobs import BackgroundJobs
from nlp.artifact import MODEL_FILE
from nlp.registry import ModelRegistry
from tests.conftest import shared_models_dir

TEXT = "医院骨科医生收病人红包，不给红包就拖着不排手术"


def _copy_as_new_version(models_dir: Path, version: str, new_version: str) -> None:
    """The same saved model under another version (what a second training of the same data gives)."""
    shutil.copytree(models_dir / version, models_dir / new_version)
    metadata_file = models_dir / new_version / "metadata.json"
    metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    metadata["version"] = new_version
    metadata_file.write_text(json.dumps(metadata), encoding="utf-8")


async def test_the_service_reloads_when_another_version_is_promoted(tmp_path: Path) -> None:
    shutil.copytree(shared_models_dir(), tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    first = registry.promoted()
    assert first is not None
    service = ClassifierService(tmp_path)
    await service.ensure_ready()
    assert service.version == first.version
    assert await service.reload_if_changed() is False

    second = "29990101-000000-abcdef"
    _copy_as_new_version(tmp_path / "models", first.version, second)
    registry.promote(second)
    assert await service.reload_if_changed() is True
    assert service.version == second
    tag = service.classify(TEXT)
    assert tag is not None and (tag.label, tag.model_version) == ("medical", second)
    assert await service.reload_if_changed() is False


async def _classifies_with(service: ClassifierService, version: str, *, within: float = 30.0) -> None:
    """Classify, as residents' reports would, until the service answers with `version`; fail after `within`
    seconds."""
    deadline = time.monotonic() + within
    while True:
        tag = service.classify(TEXT)
        assert tag is not None
        if tag.model_version == version:
            assert service.version == version
            return
        assert time.monotonic() < deadline, f"still classifying with {tag.model_version}, not {version}"
        await asyncio.sleep(0.02)


async def test_a_promotion_in_one_process_reaches_another_over_the_same_data_dir(tmp_path: Path) -> None:
    """Two serving processes' classifiers over one data directory: the one where the administrator promotes
    switches at once (the console asks it to); the other follows within its check interval — whether it only
    classifies or also runs the background check — and a rollback travels the same way."""
    shutil.copytree(shared_models_dir(), tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    first = registry.promoted()
    assert first is not None
    here = ClassifierService(tmp_path, check_seconds=0.1)
    watching = ClassifierService(tmp_path, check_seconds=0.1)
    classifying = ClassifierService(tmp_path, check_seconds=0.1)
    for service in (here, watching, classifying):
        await service.ensure_ready()
        assert service.version == first.version
    watcher = BackgroundJobs()  # as `qinglian serve` runs it
    watcher.every("classifier-model", watching.check_seconds, watching.check, delay=watching.check_seconds)
    try:
        second = "29990101-000000-abcdef"
        _copy_as_new_version(tmp_path / "models", first.version, second)
        await asyncio.to_thread(registry.promote, second)
        assert await here.reload_if_changed() is True
        await _classifies_with(here, second, within=0)
        await _classifies_with(classifying, second)
        deadline = time.monotonic() + 30
        while watching.version != second:  # nothing classified there: the background check alone
            assert time.monotonic() < deadline, "the watching service did not switch"
            await asyncio.sleep(0.02)
        await _classifies_with(watching, second, within=0)

        await asyncio.to_thread(registry.rollback)
        for service in (here, watching, classifying):
            await _classifies_with(service, first.version)
        assert await classifying.check() is False  # nothing changed since: nothing to load
    finally:
        await watcher.stop()


async def test_a_promoted_model_that_cannot_be_loaded_keeps_the_current_one(tmp_path: Path) -> None:
    shutil.copytree(shared_models_dir(), tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    first = registry.promoted()
    assert first is not None
    service = ClassifierService(tmp_path)
    await service.ensure_ready()

    broken = "29990101-000000-fedcba"
    _copy_as_new_version(tmp_path / "models", first.version, broken)
    registry.promote(broken)
    with (tmp_path / "models" / broken / MODEL_FILE).open("ab") as handle:
        handle.write(b"altered after promotion")
    assert await service.reload_if_changed() is False
    assert service.version == first.version
    assert service.load_failure is not None and service.load_failure[0] == broken  # for /healthz and the console
    tag = service.classify(TEXT)
    assert tag is not None and tag.model_version == first.version

    # the next promotion, of a model that loads, is taken up as usual
    fixed = "29990101-000001-abcdef"
    _copy_as_new_version(tmp_path / "models", first.version, fixed)
    registry.promote(fixed)
    assert await service.check() is True
    assert service.version == fixed and service.load_failure is None


async def test_the_service_starts_with_a_data_directory_of_an_earlier_version(tmp_path: Path) -> None:
    """A promoted model of the format before scikit-learn pipelines were served: a new default model is
    trained and promoted, and the service starts with it."""
    old = tmp_path / "models" / "20250101-000000-abcdef"
    old.mkdir(parents=True)
    (old / "model.joblib").write_bytes(b"an old pickled pipeline")
    (old / "compiled.npz").write_bytes(b"old compiled arrays")
    (old / "metadata.json").write_text(json.dumps({
        "version": old.name, "created_at": "2025-01-01T00:00:00+00:00", "sha256": "0" * 64,
        "compiled_sha256": "1" * 64, "metrics": {"macro_f1": 0.95}}), encoding="utf-8")
    (tmp_path / "models" / "registry.json").write_text(json.dumps({"history": [old.name], "events": []}),
                                                      encoding="utf-8")
    service = ClassifierService(tmp_path)
    await service.ensure_ready()
    registry = ModelRegistry(tmp_path / "models")
    promoted = registry.promoted()
    assert promoted is not None and promoted.version != old.name
    assert service.version == promoted.version
    assert [(e["action"], e["previous"], e["forced"]) for e in registry.events()] == [("promote", old.name, True)]
    tag = service.classify(TEXT)
    assert tag is not None and tag.label == "medical"
