"""The classifier's lifecycle in the console: "train now" in the background with progress, and comparing two
model versions (the "needs labelling" list is a read of `storage.training_data`).

A run trains a new model version (never promoted here) from the seed corpus's training split plus the
reports whose label staff confirmed or corrected. The training itself runs in a separate process (it is
CPU-bound for seconds to minutes); its progress is a small JSON file, `<data_dir>/models/training-status.json`,
so that every worker process of the service can show it and only one run goes at a time across them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import texts
from console.operations import OperationError
from handlers.texts import fill
from nlp.errors import NlpError, NothingNewToTrain
from storage import training_data
from storage.db import Database
from storage.evidence_files import SealedFiles

if TYPE_CHECKING:
    from nlp.registry import ModelInfo

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are serialised within the process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

STATUS_FILE = "training-status.json"
LOCK_FILE = ".training.lock"
STALE_AFTER = timedelta(hours=6)  # a "running" status older than this is taken for a crashed run

# stage → percent reached when it starts; its names are the texts `stage.<stage>`
STAGES: dict[str, int] = {
    "queued": 0,
    "reading_data": 5,
    "starting": 10,
    "loading_tokenizer": 20,
    "fitting": 35,
    "scoring": 80,
    "saving": 95,
    "done": 100,
}
# what `nlp.registry.train_and_register` and `nlp.training.train` report → stage
_PROGRESS_STAGES = {
    "loading the tokenizer": "loading_tokenizer",
    "fitting features and the calibrated model": "fitting",
    "scoring on the evaluation split": "scoring",
    "saving": "saving",
}
STATUS_KEYS = ("run_id", "state", "stage", "message", "percent", "started_at", "finished_at", "updated_at",
               "version", "error", "error_key", "error_values", "n_staff_examples", "pid", "host")


def stage_name(stage: str) -> tuple[str, str] | None:
    """(中文, English) of a stage; None for an unknown one."""
    return texts.pair(f"stage.{stage}") if stage in STAGES else None


def model_refusal(problem: NlpError) -> OperationError:
    """The registry's refusal as the console's (409): under its own code (`nlp.errors.REFUSALS`), so that it is
    said in each language; one raised with a message of its own (a damaged file) only has that message."""
    if problem.code:
        return OperationError(409, problem.code, **problem.values)
    return OperationError(409, "model_refused", detail=problem)


def load_failure_reason(error: Exception | None, reason: str) -> OperationError:
    """Why the promoted model could not be loaded, as a refusal said in each language: the registry's under its
    code; any other error (an unreadable registry, a full disk) by its own message (`reason`)."""
    if isinstance(error, NlpError) and error.code:
        return model_refusal(error)
    return OperationError(409, "model_refused", detail=reason)


class TrainingError(RuntimeError):
    """A training run could not start; the message is one line for the administrator."""


class TrainingAlreadyRunning(TrainingError):
    """Another run (in this or another worker process) has not finished yet: `run_id`, started `minutes` ago."""

    def __init__(self, run_id: str, minutes: int = 0) -> None:
        ago = "less than a minute ago" if minutes < 1 else fill("{n} {n:plural:minute|minutes} ago", n=minutes)
        super().__init__(f"training run {run_id} started {ago} and is still running; wait for it to finish")
        self.run_id = run_id
        self.minutes = minutes

    def refusal(self) -> OperationError:
        """The console's refusal (409), said in each language."""
        if self.minutes < 1:
            return OperationError(409, "training_running_just_started", run=self.run_id)
        return OperationError(409, "training_running", run=self.run_id, minutes=self.minutes)


# --- the status file ----------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _models_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / "models"


@contextmanager
def _locked(models_dir: Path) -> Iterator[None]:
    """Serialise status changes between threads and processes (flock on a lock file)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / LOCK_FILE).open("a+", encoding="utf-8") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read(models_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((models_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is not valid JSON; treating it as no run", models_dir / STATUS_FILE)
        return None
    return data if isinstance(data, dict) else None


def _write(models_dir: Path, status: dict[str, Any]) -> None:
    path = models_dir / STATUS_FILE
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(status, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def failure(key: str, **values: Any) -> dict[str, Any]:
    """Why a run failed, for its status: `error` (English, as the logs and the REST API say it), and `error_key`
    (a console text) with `error_values`, so that the models page says it in each language."""
    kept = {name: value if isinstance(value, int | float | str) else str(value) for name, value in values.items()}
    return {"error": texts.get("en", key, **kept), "error_key": key, "error_values": kept}


def _crash(problem: Exception) -> dict[str, Any]:
    """The failure of a training that raised `problem`: the registry's refusal under its code, else its message."""
    if isinstance(problem, NlpError) and problem.code and texts.has(f"refusal.{problem.code}"):
        return failure(f"refusal.{problem.code}", **problem.values)
    return failure("training_error.failed", detail=str(problem).strip() or type(problem).__name__)


def failure_text(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why the run failed, in Chinese and English (as recorded for a status written without its text key)."""
    key, values, error = status.get("error_key"), status.get("error_values"), status.get("error")
    if isinstance(key, str) and texts.has(key):
        return texts.pair(key, **(values if isinstance(values, dict) else {}))
    return (str(error), str(error)) if error else None


def _interrupted(status: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """Why a status that says "running" belongs to a run that is gone (a `failure`), or None if it may still be
    going."""
    pids = [pid for pid in (status.get("pid"), status.get("worker_pid")) if isinstance(pid, int)]
    if pids and status.get("host") == socket.gethostname() and not any(_process_alive(pid) for pid in pids):
        return failure("training_error.interrupted", count=len(pids), pids=", ".join(map(str, pids)))
    try:
        started = datetime.fromisoformat(str(status.get("started_at")))
    except ValueError:
        return failure("training_error.no_start_time")
    if now - started > STALE_AFTER:
        return failure("training_error.abandoned", hours=int(STALE_AFTER.total_seconds() // 3600))
    return None


def _complete(status: dict[str, Any]) -> dict[str, Any]:
    complete = {key: status.get(key) for key in STATUS_KEYS}
    complete |= {key: value for key, value in status.items() if key not in STATUS_KEYS}
    complete["running"] = complete["state"] == "running"
    return complete


def training_status(data_dir: Path | str) -> dict[str, Any]:
    """The last training run: `state` is "idle" (never ran), "running", "succeeded" or "failed" (and `running`
    a bool), with `stage`
    (a key of `STAGES`), `message`, `percent` (0-100), `started_at`/`finished_at`/`updated_at` (ISO 8601 UTC),
    `version` (the new model, once succeeded), `error` (once failed), `run_id`, `n_staff_examples`.

    A run whose process ended without a result is reported as failed. Reads a small file (blocking).
    """
    status = _read(_models_dir(data_dir))
    if status is None:
        return _complete({"state": "idle", "percent": 0})
    if status.get("state") == "running":
        problem = _interrupted(status, _now())
        if problem is not None:
            status = {**status, "state": "failed", **problem}
    return _complete(status)


def _minutes_since(started_at: object, now: datetime) -> int:
    """How many whole minutes ago a run started (0 for a start time that cannot be read)."""
    try:
        started = datetime.fromisoformat(str(started_at))
    except ValueError:
        return 0
    return max(0, int((now - started).total_seconds() // 60))


def _claim(models_dir: Path, run_id: str) -> dict[str, Any] | None:
    """Record `run_id` as the running run; returns the status it replaced (None if there was none)."""
    now = _now()
    with _locked(models_dir):
        current = _read(models_dir)
        if current is not None and current.get("state") == "running" and _interrupted(current, now) is None:
            raise TrainingAlreadyRunning(str(current.get("run_id")), _minutes_since(current.get("started_at"), now))
        status = {
            "run_id": run_id, "state": "running", "stage": "queued", "message": texts.get("en", "stage.queued"),
            "percent": STAGES["queued"], "started_at": now.isoformat(), "finished_at": None,
            "updated_at": now.isoformat(), "version": None, "error": None, "n_staff_examples": None,
            "pid": os.getpid(), "host": socket.gethostname(),
        }
        _write(models_dir, status)
        return current


def _release(models_dir: Path, run_id: str, previous: dict[str, Any] | None) -> None:
    """Give up `run_id` before it trained anything: the status it replaced is the last run again."""
    with _locked(models_dir):
        current = _read(models_dir)
        if current is None or current.get("run_id") != run_id:
            return
        if previous is None:
            (models_dir / STATUS_FILE).unlink(missing_ok=True)
        else:
            _write(models_dir, previous)


def _change(models_dir: Path, run_id: str, **changes: Any) -> None:
    """Change the status of `run_id` while it runs (nothing once it has finished or another run took over)."""
    with _locked(models_dir):
        current = _read(models_dir)
        if current is None or current.get("run_id") != run_id or current.get("state") != "running":
            return
        if "percent" in changes:
            changes["percent"] = max(int(changes["percent"]), int(current.get("percent") or 0))
        current |= {**changes, "updated_at": _now().isoformat()}
        _write(models_dir, current)


def _stage(models_dir: Path, run_id: str, stage: str, message: str | None = None, **changes: Any) -> None:
    _change(models_dir, run_id, stage=stage, percent=STAGES[stage],
            message=message or texts.get("en", f"stage.{stage}"), **changes)


def _finish(models_dir: Path, run_id: str, *, version: str | None = None, error: dict[str, Any] | None = None) -> None:
    """Record the end of `run_id`: the `version` it saved, or its `error` (a `failure`)."""
    finished = _now().isoformat()
    if error is None:
        _change(models_dir, run_id, state="succeeded", stage="done", percent=STAGES["done"],
                message=texts.get("en", "stage.done_with_version", version=version), version=version,
                finished_at=finished)
    else:
        _change(models_dir, run_id, state="failed", finished_at=finished, **error)


# --- the run ------------------------------------------------------------------------------------------------

_RUNS: set[asyncio.Task[None]] = set()  # strong references, so that a running task is not collected


def _trained_alike(models_dir: Path, pairs: Sequence[tuple[str, str]]) -> ModelInfo | None:
    """The saved version a run on `pairs` would copy, if any (see `ModelRegistry.trained_alike`)."""
    from nlp.registry import ModelRegistry, staff_examples, training_plan

    return ModelRegistry(models_dir).trained_alike(training_plan(extra_examples=staff_examples(pairs)))


def _train_job(data_dir: str, run_id: str, pairs: Sequence[tuple[str, str]], cipher: SealedFiles) -> str:
    """In the training process: train and register a new version, reporting progress; returns its version."""
    from nlp.registry import ModelRegistry, staff_examples, train_and_register
    from nlp.tokenizer import warm_up

    models_dir = _models_dir(data_dir)
    _stage(models_dir, run_id, "loading_tokenizer", worker_pid=os.getpid())
    warm_up(Path(data_dir))
    extra = staff_examples(pairs)

    def progress(message: str) -> None:
        stage = _PROGRESS_STAGES.get(message)
        if stage is not None:
            _stage(models_dir, run_id, stage, message)
        else:
            _change(models_dir, run_id, message=message)

    source = f"seed corpus (train split) + {len(extra)} staff-labelled reports, console run {run_id}"
    info = train_and_register(ModelRegistry(models_dir, cipher), extra_examples=extra, progress=progress,
                              source=source)
    return info.version


def _train_process(data_dir: str, run_id: str, pairs: Sequence[tuple[str, str]], cipher: SealedFiles) -> None:
    """The training process's entry point: it writes its own outcome to the status file, so the outcome
    is recorded even if the process that started it has gone. The model is saved encrypted with `cipher` (the
    service's key ring, pickled to the process with its arguments): its vocabulary holds the reports' words."""
    models_dir = _models_dir(data_dir)
    try:
        version = _train_job(data_dir, run_id, pairs, cipher)
    except Exception as problem:
        _finish(models_dir, run_id, error=_crash(problem))
        raise
    _finish(models_dir, run_id, version=version)


async def _run(models_dir: Path, run_id: str, pairs: list[tuple[str, str]], cipher: SealedFiles) -> None:
    """Run the training process and wait for it without blocking the loop; cancelling stops it."""
    process = multiprocessing.get_context("spawn").Process(
        target=_train_process, args=(str(models_dir.parent), run_id, pairs, cipher),
        name=f"qinglian-training-{run_id}")
    try:
        await asyncio.to_thread(_stage, models_dir, run_id, "starting")
        await asyncio.to_thread(process.start)
        await asyncio.to_thread(process.join)  # a thread waits; the event loop stays free
    except asyncio.CancelledError:
        if process.is_alive():
            process.terminate()
        await asyncio.shield(asyncio.to_thread(_stop_and_fail, process, models_dir, run_id,
                                               failure("training_error.cancelled")))
        raise
    except Exception as problem:  # the process could not start
        log.error("training run %s could not start: %s", run_id, problem, exc_info=True)
        await asyncio.to_thread(_finish, models_dir, run_id,
                                error=failure("training_error.not_started", detail=problem))
        return
    if process.exitcode != 0:
        # the process records its own errors; this catches a crash (killed, out of memory) before it could
        await asyncio.to_thread(_finish, models_dir, run_id,
                                error=failure("training_error.exit_code", code=process.exitcode))
    status = await asyncio.to_thread(training_status, models_dir.parent)
    log.info("training run %s %s: %s", run_id, status["state"], status["version"] or status["error"])


def _stop_and_fail(process: multiprocessing.process.BaseProcess, models_dir: Path, run_id: str,
                   error: dict[str, Any]) -> None:
    if process.pid is not None:
        process.join(10)
    if process.is_alive():
        process.kill()
        process.join()
    _finish(models_dir, run_id, error=error)


async def start_training(database: Database, data_dir: Path) -> str:
    """Start training a new model version in the background; returns the run id at once.

    Raises `TrainingAlreadyRunning` if a run is going (in any worker process), the registry's `NothingNewToTrain`
    (said through `model_refusal`) if a saved version was trained on the data this run would use (no staff label
    changed it), its `RegistryError` if it cannot be read. The staff-labelled reports are read in a transaction
    first, then the training runs in a separate process; follow it with `training_status(data_dir)`. The new
    version is not promoted.
    """
    models_dir = _models_dir(data_dir)
    run_id = f"{_now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    previous = await asyncio.to_thread(_claim, models_dir, run_id)
    try:
        await asyncio.to_thread(_stage, models_dir, run_id, "reading_data")
        async with database.read_sessionmaker() as session:
            pairs = await training_data.training_examples(session)
        same = await asyncio.to_thread(_trained_alike, models_dir, pairs)
        if same is not None:
            raise NothingNewToTrain(same.version, same.n_examples)
        await asyncio.to_thread(_change, models_dir, run_id, n_staff_examples=len(pairs))
    except NlpError:  # the registry refused (nothing new to learn, or it cannot be read): no run was made
        await asyncio.to_thread(_release, models_dir, run_id, previous)
        raise
    except BaseException as problem:
        await asyncio.shield(asyncio.to_thread(_finish, models_dir, run_id,
                                               error=failure("training_error.no_data", detail=problem)))
        raise
    task = asyncio.create_task(_run(models_dir, run_id, pairs, SealedFiles(database.keyring)),
                               name=f"training-{run_id}")
    _RUNS.add(task)
    task.add_done_callback(_RUNS.discard)
    return run_id


async def wait_for_runs() -> None:
    """Wait for the training runs this process started to finish."""
    if _RUNS:
        await asyncio.gather(*list(_RUNS), return_exceptions=True)


async def cancel_runs() -> None:
    """Stop the training runs this process started (at shutdown); each is recorded as failed."""
    for task in list(_RUNS):
        task.cancel()
    await wait_for_runs()
