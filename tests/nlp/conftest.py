"""Fixtures of the classifier tests: jieba warmed once, the seed-corpus model trained once per session."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nlp.classifier import Classifier
from nlp.corpus import load_seed_corpus
from nlp.registry import ModelInfo, ModelRegistry, eval_split_metrics
from nlp.tokenizer import warm_up
from nlp.training import TrainedModel, train


@pytest.fixture(scope="session", autouse=True)
def jieba_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache_dir = tmp_path_factory.mktemp("jieba")
    warm_up(cache_dir)
    return cache_dir


@pytest.fixture(scope="session")
def trained(jieba_cache_dir: Path) -> TrainedModel:
    """The default model: the seed corpus's training split, default parameters."""
    return train(load_seed_corpus("train"))


@pytest.fixture(scope="session")
def classifier(trained: TrainedModel) -> Classifier:
    return Classifier(trained.pipeline, version="test-model")


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory, trained: TrainedModel,
                 classifier: Classifier) -> tuple[Path, ModelInfo]:
    """A models directory holding the session model (saved, not promoted)."""
    models_dir = tmp_path_factory.mktemp("saved") / "models"
    info = ModelRegistry(models_dir).add(trained, eval_split_metrics(classifier), source="test")
    return models_dir, info


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory, set as QINGLIAN_DATA_DIR."""
    directory = tmp_path / "data"
    directory.mkdir()
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(directory))
    return directory


@pytest.fixture
def data_dir_with_model(data_dir: Path, saved_models: tuple[Path, ModelInfo]) -> Iterator[tuple[Path, str]]:
    """A data directory whose registry holds the session model, promoted; yields (data dir, version)."""
    source, info = saved_models
    shutil.copytree(source, data_dir / "models")
    ModelRegistry(data_dir / "models").promote(info.version)
    yield data_dir, info.version


@pytest.fixture
def old_format_model() -> Callable[[Path], Path]:
    """Writes a model directory as versions before the scikit-learn pipeline was served left it
    (model.joblib + compiled.npz, metadata without a format); returns the directory."""

    def write(model_dir: Path) -> Path:
        model_dir.mkdir(parents=True)
        (model_dir / "model.joblib").write_bytes(b"an old pickled pipeline")
        (model_dir / "compiled.npz").write_bytes(b"old compiled arrays")
        metadata = {
            "version": model_dir.name, "created_at": "2025-01-01T00:00:00+00:00",
            "sha256": hashlib.sha256(b"an old pickled pipeline").hexdigest(),
            "compiled_sha256": hashlib.sha256(b"old compiled arrays").hexdigest(), "compiled_format": 1,
            "source": "seed corpus (train split)", "labels": ["medical", "other"], "label_counts": {},
            "n_examples": 1037, "data_fingerprint": "abcdef", "params": {},
            "library_versions": {"scikit-learn": "1.5.2"}, "training_seconds": 4.0,
            "metrics": {"macro_f1": 0.95, "accuracy": 0.95},
        }
        (model_dir / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
        return model_dir

    return write
