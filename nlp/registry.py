"""Versioned models on disk, the promoted one, the promotion gate and rollback.

Layout of `<data_dir>/models/`:

    <version>/pipeline.joblib  the fitted scikit-learn pipeline (`nlp.artifact`: checked before it is loaded),
                               encrypted with the registry's cipher (the service's key ring) when it has one
    <version>/metadata.json    version, format, sha256 of pipeline.joblib, data fingerprint, label counts, parameters,
                               library versions, metrics on the fixed evaluation split and the boundary split
    registry.json              {"history": [promoted versions, oldest first], "events": [...]}
    .lock                      serialises changes between processes (flock)

Versions sort by time: `YYYYMMDD-HHMMSS-<first 6 hex of the data fingerprint>` (UTC).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from nlp.artifact import (
    METADATA_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    ArtifactCipher,
    check_servable,
    purpose_of,
    read_metadata,
    save_pipeline,
)
from nlp.corpus import Example, exclude_held_out_texts, load_boundary_split, load_seed_corpus
from nlp.errors import (
    ModelIntegrityError,
    ModelNotFoundError,
    NothingNewToTrain,
    PromotionRefusedError,
    RegistryError,
)
from nlp.tokenizer import warm_up

if TYPE_CHECKING:
    from nlp.classifier import Classifier
    from nlp.training import TrainedModel, TrainingPlan

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: changes are serialised within the process only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
LOCK_FILE = ".lock"
PROMOTION_TOLERANCE = 0.01  # a candidate may be at most 1 macro-F1 point below the promoted model
EVAL_SPLIT_NAME = "seed-eval"

Progress = Callable[[str], None]

# Messages `train_and_register` reports after the training steps (the CLI sizes its progress bar with these).
SCORING_STEP = "scoring on the evaluation split"
SAVING_STEP = "saving"


@dataclass(frozen=True)
class ModelInfo:
    version: str
    created_at: datetime
    metrics: dict[str, Any]  # `eval_split_metrics`: evaluation split (calibration, threshold) and "boundary"
    promoted: bool
    data_fingerprint: str
    label_counts: dict[str, int]
    params: dict[str, Any]
    library_versions: dict[str, str]
    labels: list[str]
    n_examples: int
    training_seconds: float
    source: str
    sha256: str
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] | None = None  # what `train` chose from the training data, and why
    format: int = MODEL_FORMAT

    @property
    def macro_f1(self) -> float | None:
        value = self.metrics.get("macro_f1")
        return float(value) if isinstance(value, int | float) else None

    @property
    def accuracy(self) -> float | None:
        value = self.metrics.get("accuracy")
        return float(value) if isinstance(value, int | float) else None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], path: Path, promoted: bool) -> ModelInfo:
        try:
            return cls(
                version=str(metadata["version"]),
                created_at=datetime.fromisoformat(str(metadata["created_at"])),
                metrics=dict(metadata.get("metrics") or {}),
                promoted=promoted,
                data_fingerprint=str(metadata.get("data_fingerprint", "")),
                label_counts={str(k): int(v) for k, v in dict(metadata.get("label_counts") or {}).items()},
                params=dict(metadata.get("params") or {}),
                library_versions={str(k): str(v) for k, v in dict(metadata.get("library_versions") or {}).items()},
                labels=[str(label) for label in metadata.get("labels") or []],
                n_examples=int(metadata.get("n_examples", 0)),
                training_seconds=float(metadata.get("training_seconds", 0.0)),
                source=str(metadata.get("source", "")),
                sha256=str(metadata["sha256"]),
                path=path,
                selection=dict(metadata["selection"]) if isinstance(metadata.get("selection"), dict) else None,
                format=int(metadata.get("format", 1)),
            )
        except (KeyError, TypeError, ValueError) as problem:
            raise ModelIntegrityError(f"{path / METADATA_FILE}: malformed metadata ({problem})") from None


def _now() -> datetime:
    return datetime.now(UTC)


def _write_json_atomically(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


class ModelRegistry:
    """The models of one data directory. Safe to share between threads; changes are serialised across
    processes with a file lock. With a `cipher`, new models are saved encrypted and encrypted ones can be
    loaded (the service always passes its key ring's); without one, only models saved in plain text load."""

    def __init__(self, models_dir: Path, cipher: ArtifactCipher | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.cipher = cipher
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_handle: IO[str] | None = None

    # --- locking and state -------------------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's lock (re-entrant within this object)."""
        with self._thread_lock:
            if self._depth == 0:
                self.models_dir.mkdir(parents=True, exist_ok=True)
                handle = (self.models_dir / LOCK_FILE).open("a+", encoding="utf-8")
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                self._lock_handle = handle
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_handle is not None:
                    if fcntl is not None:
                        fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
                    self._lock_handle.close()
                    self._lock_handle = None

    def _state(self) -> dict[str, Any]:
        path = self.models_dir / REGISTRY_FILE
        if not path.is_file():
            return {"history": [], "events": []}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as problem:
            raise RegistryError.of("model_registry_invalid", path=path, problem=problem) from None
        if not isinstance(state, dict) or not isinstance(state.get("history"), list):
            raise RegistryError.of("model_registry_no_history", path=path)
        state.setdefault("events", [])
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        _write_json_atomically(self.models_dir / REGISTRY_FILE, state)

    # --- reading -----------------------------------------------------------------------------------------------
    def stamp(self) -> tuple[int, int, int] | None:
        """A cheap mark of the promotion state (registry.json's inode, modification time and size), None without
        one. Every promotion and rollback replaces the file, so the mark changes with each; a serving process
        compares marks and reads the promoted version only when it changed. The file is opened, not only
        `stat`-ed: on NFS, opening a file is what makes the client ask the server for its current state
        (close-to-open consistency), where a `stat` may answer from a cache up to a minute old."""
        try:
            with (self.models_dir / REGISTRY_FILE).open("rb") as handle:
                status = os.fstat(handle.fileno())
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns, status.st_size

    def _promoted_version(self) -> str | None:
        history = self._state()["history"]
        return str(history[-1]) if history else None

    def get(self, version: str) -> ModelInfo:
        model_dir = self.models_dir / version
        if not version or "/" in version or version.startswith(".") or not (model_dir / METADATA_FILE).is_file():
            raise ModelNotFoundError.of("model_unknown", version=version)
        return ModelInfo.from_metadata(read_metadata(model_dir), model_dir, version == self._promoted_version())

    def promoted_version(self) -> str | None:
        """The version the registry says serves, whether or not its files can be read."""
        return self._promoted_version()

    def promoted(self) -> ModelInfo | None:
        version = self._promoted_version()
        return self.get(version) if version else None

    def events(self) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first."""
        return list(self._state()["events"])

    def load(self, version: str) -> Classifier:
        return self._load(self.get(version).path)

    def load_promoted(self) -> Classifier:
        info = self.promoted()
        if info is None:
            raise ModelNotFoundError.of("model_none_promoted", models_dir=self.models_dir)
        return self._load(info.path)

    def _load(self, path: Path) -> Classifier:
        # scikit-learn is imported where a model is loaded, not by every command that lists or copies model files
        from nlp.classifier import Classifier

        return Classifier.load(path, self.cipher)

    # --- writing -----------------------------------------------------------------------------------------------
    def _new_version(self, created_at: datetime, fingerprint: str) -> str:
        base = f"{created_at:%Y%m%d-%H%M%S}-{fingerprint[:6]}"
        version, suffix = base, 1
        while (self.models_dir / version).exists():
            suffix += 1
            version = f"{base}-{suffix}"
        return version

    def add(self, trained: TrainedModel, metrics: Mapping[str, Any] | None = None, *, source: str = "") -> ModelInfo:
        """Save a `TrainedModel` as a new version (not promoted)."""
        with self.locked():
            for stale in self.models_dir.glob(".incoming-*"):  # a save killed midway: none runs outside the lock
                shutil.rmtree(stale, ignore_errors=True)
            version = self._new_version(trained.created_at, trained.data_fingerprint)
            incoming = self.models_dir / f".incoming-{version}-{os.getpid()}"
            incoming.mkdir(parents=True)
            try:
                metadata = {
                    "version": version,
                    "format": MODEL_FORMAT,
                    "created_at": trained.created_at.isoformat(),
                    "sha256": save_pipeline(trained.pipeline, incoming / MODEL_FILE, version=version,
                                            cipher=self.cipher),
                    "encrypted": self.cipher is not None,
                    "source": source,
                    "labels": trained.labels,
                    "label_counts": trained.label_counts,
                    "n_examples": trained.n_examples,
                    "data_fingerprint": trained.data_fingerprint,
                    "params": trained.params,
                    "library_versions": trained.library_versions,
                    "training_seconds": trained.training_seconds,
                    "selection": trained.selection,
                    "metrics": dict(metrics or {}),
                }
                _write_json_atomically(incoming / METADATA_FILE, metadata)
                os.rename(incoming, self.models_dir / version)
            except BaseException:
                shutil.rmtree(incoming, ignore_errors=True)
                raise
        return self.get(version)

    def _gate_scores(self, candidate: ModelInfo, current: ModelInfo) -> tuple[float | None, float | None]:
        """Both models' macro-F1 on the same evaluation split (re-evaluated if the split changed since)."""
        split = eval_split_fingerprint()
        if candidate.metrics.get("eval_fingerprint") == current.metrics.get("eval_fingerprint") == split:
            return candidate.macro_f1, current.macro_f1
        return evaluate_on_eval_split(self.load(candidate.version)), evaluate_on_eval_split(self.load(current.version))

    def promotion_refusal(self, version: str) -> PromotionRefusedError | None:
        """Why the quality gate refuses to promote `version` (None: it does not), as the error `promote` raises
        without `force` (its code one of `nlp.errors.REFUSALS`): its macro-F1 on the evaluation split is more
        than 1 point below the promoted model's (unless that one cannot be served by this installation any more),
        or it has no such score. The confirmation pages ask it before a promotion."""
        candidate = self.get(version)
        current = self.promoted()
        if current is not None and current.version == candidate.version:
            return None
        if candidate.macro_f1 is None:
            return PromotionRefusedError.of("model_gate_no_score", version=version)
        if current is None or unservable_reason(current, self.cipher) is not None:
            return None
        candidate_f1, current_f1 = self._gate_scores(candidate, current)
        if candidate_f1 is None:
            return PromotionRefusedError.of("model_gate_unscorable", version=version)
        if current_f1 is not None and candidate_f1 < current_f1 - PROMOTION_TOLERANCE - 1e-9:
            return PromotionRefusedError.of("model_gate_below", version=version, candidate_f1=f"{candidate_f1:.4f}",
                                            current=current.version, current_f1=f"{current_f1:.4f}")
        return None

    def promote(self, version: str, *, force: bool = False, by: str | None = None) -> bool:
        """Make `version` the promoted model (`by`: who, as the models page shows it); False if it already was
        (nothing changed). Without `force`, refuse what the quality gate refuses (`promotion_refusal`). A model
        this installation cannot serve is refused even with `force`."""
        with self.locked():
            candidate = self.get(version)
            check_servable(candidate.path, read_metadata(candidate.path), self.cipher)
            current = self.promoted()
            if current is not None and current.version == candidate.version:
                return False
            if not force:
                refusal = self.promotion_refusal(version)
                if refusal is not None:
                    raise PromotionRefusedError(f"{refusal}; force the promotion to skip the quality gate "
                                                "(--force on the command line)", refusal.code, refusal.values)
            state = self._state()
            state["history"].append(version)
            state["events"].append({"action": "promote", "version": version,
                                    "previous": current.version if current else None,
                                    "at": _now().isoformat(), "forced": force, "by": by})
            self._save_state(state)
            return True

    def rollback(self, *, by: str | None = None, to: str | None = None) -> ModelInfo:
        """Promote the previously promoted version again (`by`: who); returns it. With `to` (the version a
        confirmation showed), refuse if the rollback would now promote another one (someone promoted or rolled
        back meanwhile)."""
        with self.locked():
            state = self._state()
            history: list[str] = state["history"]
            if to is not None and history and history[-1] == to:
                raise RegistryError.of("model_rollback_done", version=to)
            if len(history) < 2:
                raise RegistryError.of("model_rollback_none")
            current = history.pop()
            while history and not (self.models_dir / history[-1] / METADATA_FILE).is_file():
                history.pop()  # a version deleted by hand is skipped
            if not history:
                raise RegistryError.of("model_rollback_gone")
            if to is not None and history[-1] != to:
                raise RegistryError.of("model_rollback_changed", version=to, target=history[-1])
            previous = self.get(history[-1])
            check_servable(previous.path, read_metadata(previous.path), self.cipher)
            state["events"].append({"action": "rollback", "version": previous.version, "previous": current,
                                    "at": _now().isoformat(), "forced": False, "by": by})
            self._save_state(state)
            return self.get(previous.version)

    def artifact_files(self) -> list[tuple[Path, str]]:
        """Every saved model file and the purpose its encryption is bound to (`qinglian keys status` counts them,
        `qinglian keys rotate` re-encrypts them)."""
        if not self.models_dir.is_dir():
            return []
        return [(model_dir / MODEL_FILE, purpose_of(model_dir.name)) for model_dir in sorted(self.models_dir.iterdir())
                if model_dir.is_dir() and not model_dir.name.startswith(".") and (model_dir / MODEL_FILE).is_file()]

    def trained_alike(self, plan: TrainingPlan) -> ModelInfo | None:
        """The newest saved version trained on exactly `plan`'s data with its settings, by this installation's
        libraries and model format — training `plan` again would only copy it — or None."""
        from nlp.training import library_versions

        versions = library_versions()
        alike = [info for info in self.list()
                 if info.data_fingerprint == plan.data_fingerprint and info.params == plan.recorded_params
                 and info.library_versions == versions and info.format == MODEL_FORMAT]
        return alike[-1] if alike else None

    # `list` comes last so that the name means the builtin in the annotations above.
    def list(self) -> list[ModelInfo]:
        """Every saved model, oldest first."""
        if not self.models_dir.is_dir():
            return []
        promoted = self._promoted_version()
        infos = []
        for model_dir in sorted(self.models_dir.iterdir()):
            if model_dir.is_dir() and not model_dir.name.startswith(".") and (model_dir / METADATA_FILE).is_file():
                try:
                    metadata = read_metadata(model_dir)
                    infos.append(ModelInfo.from_metadata(metadata, model_dir, metadata["version"] == promoted))
                except ModelIntegrityError as problem:
                    log.warning("skipping %s: %s", model_dir.name, problem)
        return infos


# --- evaluation split and training into the registry --------------------------------------------------------------
def eval_split_fingerprint() -> str:
    from nlp.training import data_fingerprint

    return data_fingerprint(load_seed_corpus("eval"))


def evaluate_on_eval_split(classifier: Classifier) -> float | None:
    """macro-F1 on the fixed evaluation split, or None if the model does not know the taxonomy's labels."""
    from nlp.evaluation import evaluate_classifier

    examples = load_seed_corpus("eval")
    if not {e.label for e in examples} <= set(classifier.labels):
        return None
    return evaluate_classifier(classifier, examples).macro_f1


def eval_split_metrics(classifier: Classifier) -> dict[str, Any]:
    """What the registry records about a model on the fixed evaluation split (macro-F1, accuracy, accuracy by
    language, the reliability table, ECE, the triage threshold the documented rule chooses and its effect)
    and on the boundary split (`boundary`). {} if the model does not know the taxonomy's labels."""
    from nlp.evaluation import evaluate_classifier

    examples = load_seed_corpus("eval")
    if not {e.label for e in examples} <= set(classifier.labels):
        return {}
    report = evaluate_classifier(classifier, examples)
    metrics: dict[str, Any] = {**report.metrics(), "split": EVAL_SPLIT_NAME,
                               "eval_fingerprint": eval_split_fingerprint()}
    boundary = evaluate_classifier(classifier, load_boundary_split())
    threshold = report.threshold.threshold if report.threshold is not None else 0.0
    metrics["boundary"] = {**boundary.metrics(reliability=False),
                           "triage_share_at_threshold": boundary.triage_share(threshold)}
    return metrics


def staff_examples(pairs: Iterable[tuple[str, str]]) -> list[Example]:
    """The reports whose label staff confirmed or corrected (`storage.training_data.training_examples`: text,
    label) as training examples, labels of the taxonomy only: what the console's "train now" and `qinglian model
    train --staff-labels` both add to the training data, so that the same reports give the same data fingerprint."""
    from nlp.labels import LABELS

    return [Example(text=text, label=label, id=f"staff-{number}")
            for number, (text, label) in enumerate(pairs, start=1) if label in LABELS]


def training_plan(examples: Sequence[Example] | None = None, *, extra_examples: Iterable[Example] = (),
                  params: Mapping[str, Any] | None = None, progress: Progress | None = None) -> TrainingPlan:
    """What `train_and_register` trains on: `examples` (default: the seed corpus's training split) and
    `extra_examples`, without any text of the evaluation or the boundary split."""
    from nlp.training import plan_training

    say = progress or (lambda _message: None)
    base = list(examples) if examples is not None else load_seed_corpus("train")
    training_data, dropped = exclude_held_out_texts([*base, *extra_examples])
    if dropped:
        say(f"left out {dropped} example(s) whose text is in the evaluation or the boundary split")
    return plan_training(training_data, params)


def train_and_register(
    registry: ModelRegistry,
    examples: Sequence[Example] | None = None,
    *,
    extra_examples: Iterable[Example] = (),
    params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    source: str = "",
    again: bool = False,
) -> ModelInfo:
    """Train a new version and save it (not promoted), scored on the fixed evaluation split.

    `examples` defaults to the seed corpus's training split. `extra_examples` is where other labelled
    reports join the training data — staff-confirmed or staff-corrected labels from the database. Any text of
    the evaluation split or of the boundary split is removed from the training data first.

    Raises `NothingNewToTrain` when a saved version was trained on exactly this data with the same settings,
    libraries and format (the new one would be its copy), unless `again`.
    """
    from nlp.training import train

    say = progress or (lambda _message: None)
    plan = training_plan(examples, extra_examples=extra_examples, params=params, progress=progress)
    same = None if again else registry.trained_alike(plan)
    if same is not None:
        raise NothingNewToTrain(same.version, same.n_examples)
    trained = train(plan, progress=progress)
    say(SCORING_STEP)
    from nlp.classifier import Classifier

    metrics = eval_split_metrics(Classifier(trained.pipeline, version="candidate"))
    say(SAVING_STEP)
    return registry.add(trained, metrics, source=source or "seed corpus (train split)")


def unservable_reason(info: ModelInfo, cipher: ArtifactCipher | None = None) -> str | None:
    """Why this installation cannot serve a saved model (earlier format, other scikit-learn, missing, altered or
    undecryptable file), or None if it can. An encrypted model and no `cipher` raise `ModelKeysRequiredError`."""
    try:
        check_servable(info.path, read_metadata(info.path), cipher)
    except ModelIntegrityError as problem:
        return str(problem)
    return None


def ensure_default_model(data_dir: Path, progress: Progress | None = None,
                         cipher: ArtifactCipher | None = None) -> ModelInfo:
    """The promoted model of `data_dir`; on a fresh install, train the default one from the seed corpus first.

    If the promoted model cannot be served by this installation (saved by an earlier version of Qinglian,
    with another scikit-learn, or its file is missing or altered), a new default model is trained and promoted
    in its place, and `progress` says why. Deterministic (the same seed corpus gives the same predictions).
    Blocking: call it in a thread from async code. `cipher` encrypts the model (see `ModelRegistry`).
    """
    say = progress or (lambda _message: None)
    registry = ModelRegistry(Path(data_dir) / "models", cipher)
    with registry.locked():
        current = registry.promoted()
        reason = unservable_reason(current, cipher) if current is not None else None
        if current is not None and reason is None:
            return current
        if current is None:
            say("no promoted classifier model: training the default model from the seed corpus")
        else:
            say(f"the promoted classifier model cannot be served ({reason}); training the default model from "
                "the seed corpus to replace it")
            log.warning("promoted model %s cannot be served: %s", current.version, reason)
        warm_up(Path(data_dir))
        info = train_and_register(registry, progress=progress, source="seed corpus (train split), default model")
        registry.promote(info.version, force=current is not None)
        promoted = registry.get(info.version)
        score = f"{promoted.macro_f1:.3f}" if promoted.macro_f1 is not None else "n/a"
        say(f"default model {promoted.version} trained in {promoted.training_seconds:.1f} s "
            f"(macro-F1 {score} on the evaluation split) and promoted")
        return promoted
