"""The classifier inside the service: nothing to classify with before it is ready, the promoted model once
it is, and a fresh install trains the default model from the seed corpus on its first start."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from bot.classification import ClassifierService
from nlp.artifact import MODEL_FILE
from storage.evidence_files import SealedFiles, key_id_of_file
from tests.conftest import make_test_keyring, shared_models_dir

LABELS = {"slow_service", "lazy_procrastination", "formalism", "project_irregularity", "village_affairs", "medical",
          "education", "bribery_gifts", "other"}
REPORT = "乡卫生院看病要先给医生塞红包，不给就一直让排队。"


async def test_before_it_is_ready_there_is_no_model_and_no_tag(tmp_path: Path) -> None:
    service = ClassifierService(tmp_path)
    assert (service.version, service.classify(REPORT)) == (None, None)


async def test_once_ready_it_tags_a_report_with_the_promoted_models_version(tmp_path: Path) -> None:
    await asyncio.to_thread(shutil.copytree, shared_models_dir(), tmp_path / "models")
    service = ClassifierService(tmp_path)

    await service.ensure_ready()
    tag = service.classify(REPORT)

    assert service.version is not None and tag is not None
    assert tag.model_version == service.version
    assert tag.label in LABELS and 0.0 < tag.confidence <= 1.0
    assert tag.top[0][0] == tag.label  # the best of the top labels


async def test_a_fresh_install_trains_the_default_model_on_its_first_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ring = make_test_keyring()
    service = ClassifierService(tmp_path, cipher=SealedFiles(ring))
    await service.ensure_ready()
    restarted = ClassifierService(tmp_path, cipher=SealedFiles(make_test_keyring()))
    await restarted.ensure_ready()  # the model trained at the first start is kept

    assert service.version is not None and restarted.version == service.version
    assert [path.name for path in (tmp_path / "models").iterdir() if path.is_dir()] == [service.version]
    # trained in the child process (the keys reached it), and saved encrypted like every model
    assert "child process failed" not in caplog.text
    assert key_id_of_file(tmp_path / "models" / service.version / MODEL_FILE) == ring.current.key_id
    first, second = service.classify(REPORT), restarted.classify(REPORT)
    assert first is not None and second is not None and (first.label, first.confidence) == (
        second.label, second.confidence)
