"""The classifier inside the running service: the promoted model, loaded off the event loop, trained from the
seed corpus on first start (or when the promoted model cannot be served by this installation), and switched when
an administrator promotes another version or rolls back — in whichever process or command that happened.

Every serving process looks at the registry's promotion state (`ModelRegistry.stamp`: opening
`models/registry.json` and reading its inode, time and size) at most every `check_seconds`
(`QINGLIAN_MODEL_CHECK_SECONDS`, 2 s by default): from a background job (`check`, run by `bot.jobs.BackgroundJobs`)
and before classifying. Only when that changed does it read the promoted version, and only when that differs from
the one it serves does it load the model, in a thread: residents are classified with the current model until the
new one is loaded, then the new one takes over at once. A promoted model that cannot be loaded is logged, the
current one kept, and the load tried again after `RETRY_SECONDS`."""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

from bot.logs import LOG_FORMAT
from nlp.artifact import ArtifactCipher
from nlp.classifier import Classifier
from nlp.registry import ModelRegistry, ensure_default_model, unservable_reason
from nlp.tokenizer import warm_up
from nlp.types import Tag

log = logging.getLogger(__name__)
training_log = logging.getLogger("nlp.training")
"""The training of the default model on a first start, step by step (in this process or its child)."""

CHECK_SECONDS = 2.0
"""The default of `QINGLIAN_MODEL_CHECK_SECONDS`: how stale a process's idea of the promoted model may get."""
RETRY_SECONDS = 60.0
"""How long a promoted model that could not be loaded waits before the next attempt (unless promotion changes)."""

Stamp = tuple[int, int, int] | None


class ClassifierService:
    def __init__(self, data_dir: Path, *, check_seconds: float = CHECK_SECONDS,
                 cipher: ArtifactCipher | None = None) -> None:
        """`cipher` encrypts the models at rest (the service passes its key ring's, `storage.evidence_files.
        SealedFiles`); without one, models are saved and read in plain text."""
        if check_seconds <= 0:
            raise ValueError("check_seconds must be positive")
        self._data_dir = data_dir
        self._cipher = cipher
        self._registry = ModelRegistry(data_dir / "models", cipher)
        self._classifier: Classifier | None = None
        self.check_seconds = check_seconds
        self._checked_at = 0.0
        self._stamp: Stamp = None  # the registry's promotion state the loaded model was chosen from
        self._retry_at: float | None = None  # when to try again a promoted model that failed to load
        self._reload: asyncio.Task[bool] | None = None
        self._reload_lock = asyncio.Lock()
        self.load_failure: tuple[str, str] | None = None
        """(version, reason) of a promoted model this process could not load, while it keeps serving the current
        one: shown on /healthz and the console's model page, cleared once the promoted model serves."""
        self.load_error: Exception | None = None
        """The error behind `load_failure` (an `nlp.errors.NlpError` with a code is said in each language)."""

    @property
    def version(self) -> str | None:
        """The version classifying right now (what /healthz and the console report)."""
        return self._classifier.version if self._classifier else None

    async def ensure_ready(self) -> None:
        """Make sure a servable model is promoted (training the default one if needed) and load it."""

        def prepare() -> tuple[Stamp, Classifier]:
            warm_up(self._data_dir)
            promoted = self._registry.promoted()
            if promoted is None or unservable_reason(promoted, self._cipher) is not None:
                _train_default_model_in_child(self._data_dir, self._cipher)
            ensure_default_model(self._data_dir, progress=training_log.info, cipher=self._cipher)
            stamp = self._registry.stamp()  # before reading what is promoted: a later change is noticed
            return stamp, self._registry.load_promoted()

        async with self._reload_lock:
            self._stamp, classifier = await asyncio.to_thread(prepare)
            self._classifier = classifier
            self._checked_at = time.monotonic()
            self._retry_at = None
        log.info("classifier model %s loaded", classifier.version)

    def classify(self, text: str) -> Tag | None:
        """The model's tag (a few milliseconds); None when no model is loaded. Starts a check of the promoted
        version in the background when the last one is older than `check_seconds`."""
        self._maybe_check()
        return self._classifier.classify(text) if self._classifier else None

    async def reload_if_changed(self) -> bool:
        """Read the registry's promoted version now and load it if it is not the one serving; True if a new
        model was loaded. A model that cannot be loaded is logged and the current one kept."""
        return await self._sync(force=True)

    async def check(self) -> bool:
        """The periodic check: load the promoted model if the registry's promotion state changed since the last
        look (or a failed load is due to be retried); True if a new model was loaded."""
        return await self._sync(force=False)

    async def _sync(self, *, force: bool) -> bool:
        async with self._reload_lock:
            now = time.monotonic()
            self._checked_at = now
            stamp = await asyncio.to_thread(self._registry.stamp)
            retry_due = self._retry_at is not None and now >= self._retry_at
            if not force and stamp == self._stamp and not retry_due:
                return False
            promoted = None
            try:
                promoted = await asyncio.to_thread(self._registry.promoted)
                if promoted is None or promoted.version == self.version:
                    self._stamp, self._retry_at, self.load_failure, self.load_error = stamp, None, None, None
                    return False
                classifier = await asyncio.to_thread(self._registry.load, promoted.version)
            except Exception as problem:
                log.exception("could not load the promoted classifier model; keeping %s, trying again in %.0f s",
                              self.version, RETRY_SECONDS)
                self._stamp, self._retry_at = stamp, time.monotonic() + RETRY_SECONDS
                reason = str(problem) or type(problem).__name__
                self.load_failure = (promoted.version if promoted else "(unreadable registry)", reason)
                self.load_error = problem
                return False
            previous = self.version
            self._classifier = classifier
            self._stamp, self._retry_at, self.load_failure, self.load_error = stamp, None, None, None
            log.info("classifier model %s promoted: now serving it (was %s)", classifier.version, previous)
            return True

    def _maybe_check(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.check_seconds or (self._reload and not self._reload.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the service's event loop (a script): no background check
            return
        self._checked_at = now
        self._reload = loop.create_task(self.check())


def _train_default_model_in_child(data_dir: Path, cipher: ArtifactCipher | None) -> None:
    """Train the default model in a child process: the memory training uses (the cross-validation's feature
    matrices, several fitted models) is not given back by a process, and the serving process should stay small.
    The cipher (with its keys) reaches the child pickled on its standard input, never on its command line or in
    its environment. If the child fails, `ensure_default_model` trains in-process."""
    script = ("import logging, pickle, sys; from pathlib import Path; from nlp.registry import ensure_default_model; "
              "logging.basicConfig(level=int(sys.argv[2]), format=sys.argv[3]); "
              "cipher = pickle.loads(sys.stdin.buffer.read()); "
              "ensure_default_model(Path(sys.argv[1]), progress=logging.getLogger(sys.argv[4]).info, cipher=cipher)")
    # its lines in the service's format, at the service's level (bot.logs), on the standard error it shares
    level = str(training_log.getEffectiveLevel())
    try:
        subprocess.run([sys.executable, "-c", script, str(data_dir), level, LOG_FORMAT, training_log.name],
                       input=pickle.dumps(cipher), check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as problem:
        log.warning("training the default model in a child process failed (%s); training in this process", problem)
