"""Training from the console: a background run with its status file, and comparing versions."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console import model_versions, training
from nlp.corpus import Example, load_seed_corpus
from nlp.errors import NothingNewToTrain
from nlp.labels import LABELS
from nlp.registry import ModelInfo, ModelRegistry, train_and_register
from storage import staff_actions
from storage.db import Database
from storage.evidence_files import SealedFiles
from storage.migrate import upgrade
from storage.models import StaffRole
from tests.conftest import make_test_keyring
from tests.storage.test_training_data import labelled_case

STAFF_TEXTS = [
    ("社区卫生服务中心的医生让我们先交三百元才肯开医保报销单据", "medical"),
    ("区医院住院部护士长收了红包才安排床位，医保结算还多收了钱", "medical"),
    ("窗口办事员中午提前一小时离岗，群众排队没人办理业务", "slow_service"),
]


@dataclass
class Service:
    """What a training run is given: the database and the data directory (models are in its `models/`)."""

    database: Database
    data_dir: Path


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'qinglian.db'}"
    await asyncio.to_thread(upgrade, url, make_test_keyring())
    database = Database.connect(url, make_test_keyring())
    yield Service(database, tmp_path / "data")
    await training.wait_for_runs()
    await database.dispose()


def _small_model(registry: ModelRegistry) -> ModelInfo:
    """A quick, promoted first version: 12 seed examples of each label."""
    examples: list[Example] = []
    for label in LABELS:
        examples += [e for e in load_seed_corpus("train") if e.label == label][:12]
    info = train_and_register(registry, examples, source="small")
    registry.promote(info.version)
    return registry.get(info.version)


async def _status_when(data_dir: Path, ready: Callable[[dict[str, Any]], bool],
                       seconds: float = 60.0) -> dict[str, Any]:
    for _ in range(int(seconds / 0.05)):
        status = training.training_status(data_dir)
        if ready(status):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"the training status did not change in {seconds} s: {status}")


def _write_status(data_dir: Path, **status: Any) -> None:
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    (data_dir / "models" / training.STATUS_FILE).write_text(json.dumps(status), encoding="utf-8")


async def test_a_run_trains_a_new_version_in_the_background_and_compare_scores_both(service: Service) -> None:
    data_dir = service.data_dir
    assert training.training_status(data_dir)["state"] == "idle"
    registry = ModelRegistry(data_dir / "models", SealedFiles(make_test_keyring()))
    default = await asyncio.to_thread(_small_model, registry)
    async with service.database.sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="admin", display_name="管理员",
                                                 role=StaffRole.ADMIN, password_hash="not-a-hash")
        for text, label in STAFF_TEXTS:
            await labelled_case(session, staff, text, label, predicted="slow_service", confidence=0.6)

    run_id = await training.start_training(service.database, service.data_dir)
    first = training.training_status(data_dir)
    assert (first["run_id"], first["state"], first["running"]) == (run_id, "running", True)
    with pytest.raises(training.TrainingAlreadyRunning, match="still running"):
        await training.start_training(service.database, service.data_dir)

    seen = []
    deadline = time.monotonic() + 60
    while (status := training.training_status(data_dir))["state"] == "running" and time.monotonic() < deadline:
        seen.append((status["stage"], status["percent"]))
        await asyncio.sleep(0.05)
    assert status["state"] == "succeeded", status
    assert [percent for _, percent in seen] == sorted(percent for _, percent in seen)
    assert {stage for stage, _ in seen} <= set(training.STAGES) and "fitting" in {stage for stage, _ in seen}
    assert (status["run_id"], status["stage"], status["percent"], status["error"], status["running"]) == (
        run_id, "done", 100, None, False)
    assert status["n_staff_examples"] == 3 and status["finished_at"] >= status["started_at"]

    new = registry.get(status["version"])
    assert [info.version for info in registry.list()] == [default.version, new.version]
    assert registry.promoted() == registry.get(default.version)  # training never promotes
    assert new.n_examples == len(load_seed_corpus("train")) + 3
    assert "3 staff-labelled reports" in new.source and run_id in new.source

    comparison = await asyncio.to_thread(model_versions.compare, registry, default.version, new.version)
    assert (comparison["a"]["version"], comparison["b"]["version"]) == (default.version, new.version)
    assert comparison["macro_f1"]["a"] == default.macro_f1 and comparison["macro_f1"]["b"] == new.macro_f1
    assert comparison["macro_f1"]["delta"] == round(new.macro_f1 - default.macro_f1, 4)  # type: ignore[operator]
    assert comparison["accuracy"]["a"] == default.accuracy and comparison["n"] == default.metrics["n"]
    for side, info in (("a", default), ("b", new)):  # scored now as when each was registered (the same split)
        assert (comparison["ece"][side], comparison["threshold"][side], comparison["triage_share"][side],
                comparison["auto_accuracy"][side]) == (
            info.metrics["ece"], info.metrics["suggested_threshold"], info.metrics["threshold_triage_share"],
            info.metrics["threshold_precision"])
        assert {row["code"]: (row["n"], row[side]) for row in comparison["languages"]} == {
            code: (group["n"], group["accuracy"]) for code, group in info.metrics["accuracy_by_language"].items()}
    assert [row["label"] for row in comparison["labels"]] == list(LABELS)
    for row in comparison["labels"]:
        assert 0 <= row["a"] <= 1 and 0 <= row["b"] <= 1 and row["delta"] == round(row["b"] - row["a"], 4)
        assert row["support"] > 0 and row["name_zh"] == LABELS[row["label"]][0]
    same = model_versions.compare(registry, new.version, new.version)
    assert same["macro_f1"]["delta"] == 0 and all(row["delta"] == 0 for row in same["labels"])


async def test_a_cancelled_run_stops_its_process_and_is_recorded_as_failed(service: Service) -> None:
    data_dir = service.data_dir
    run_id = await training.start_training(service.database, service.data_dir)
    worker_pid = (await _status_when(data_dir, lambda status: status.get("worker_pid") is not None))["worker_pid"]
    await training.cancel_runs()
    status = training.training_status(data_dir)
    assert (status["run_id"], status["state"], status["error"]) == (run_id, "failed", "the training run was cancelled")
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    assert ModelRegistry(data_dir / "models").list() == []


async def test_a_run_in_another_live_process_is_refused_and_a_dead_one_is_reported_failed(
        service: Service) -> None:
    data_dir = service.data_dir
    started = (datetime.now(UTC) - timedelta(minutes=3, seconds=10)).isoformat()
    _write_status(data_dir, run_id="other", state="running", stage="fitting", percent=35, started_at=started,
                  pid=os.getpid(), host=socket.gethostname())
    # the time in words, not a UTC timestamp beside a page of city times
    with pytest.raises(training.TrainingAlreadyRunning, match="training run other started 3 minutes ago and is still"):
        await training.start_training(service.database, service.data_dir)
    assert isinstance(training.TrainingAlreadyRunning("x"), RuntimeError)

    ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await ended.wait()
    _write_status(data_dir, run_id="crashed", state="running", stage="fitting", percent=35, started_at=started,
                  pid=ended.pid, host=socket.gethostname())
    status = training.training_status(data_dir)
    assert (status["state"], status["running"]) == ("failed", False)
    assert status["error"] == f"the training run was interrupted: its process {ended.pid} ended"

    old = (datetime.now(UTC) - timedelta(hours=7)).isoformat()
    _write_status(data_dir, run_id="elsewhere", state="running", started_at=old, pid=1, host="another-host")
    assert training.training_status(data_dir)["error"].startswith("the training run was abandoned")


async def test_a_run_that_cannot_read_the_database_fails_at_once(tmp_path: Path) -> None:
    unmigrated = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    broken = Database.connect(unmigrated, make_test_keyring())
    try:
        with pytest.raises(Exception, match="cases"):
            await training.start_training(broken, tmp_path / "data")
    finally:
        await broken.dispose()
    status = training.training_status(tmp_path / "data")
    assert status["state"] == "failed" and status["error"].startswith("could not read the staff-labelled reports")


async def test_a_run_that_would_copy_a_saved_version_is_refused_until_staff_label_a_report(
        service: Service) -> None:
    data_dir = service.data_dir
    registry = ModelRegistry(data_dir / "models")
    seed = await asyncio.to_thread(train_and_register, registry)  # what a fresh install trains: the seed corpus
    earlier = {"run_id": "earlier", "state": "succeeded", "stage": "done", "percent": 100, "version": seed.version,
               "started_at": datetime.now(UTC).isoformat(), "finished_at": datetime.now(UTC).isoformat()}
    _write_status(data_dir, **earlier)

    with pytest.raises(NothingNewToTrain, match=f"version {seed.version} was trained on the same "
                                                        f"{seed.n_examples} examples") as refused:
        await training.start_training(service.database, data_dir)
    assert (refused.value.version, refused.value.n_examples) == (seed.version, seed.n_examples)
    status = training.training_status(data_dir)  # the page still shows the last real run, not a failed one
    assert (status["run_id"], status["state"], status["version"]) == ("earlier", "succeeded", seed.version)
    assert [info.version for info in registry.list()] == [seed.version]

    async with service.database.sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="admin", display_name="管理员",
                                                 role=StaffRole.ADMIN, password_hash="not-a-hash")
        text, label = STAFF_TEXTS[2]
        await labelled_case(session, staff, text, label, predicted="medical", confidence=0.6)
    run_id = await training.start_training(service.database, data_dir)
    status = await _status_when(data_dir, lambda status: status["state"] != "running", seconds=120)
    assert (status["run_id"], status["state"]) == (run_id, "succeeded"), status
    assert registry.get(status["version"]).n_examples == seed.n_examples + 1
