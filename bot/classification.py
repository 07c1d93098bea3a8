"""The classifier inside the running service: the promoted model, loaded off the event loop, trained from the
seed corpus on first start (or when the promoted model cannot be served by this installation), and reloaded
when an administrator promotes another version — on `reload_if_changed()` and at most every 30 s anyway."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

from nlp.classifier import Classifier
from nlp.registry import ModelRegistry, ensure_default_model, unservable_reason
from nlp.tokenizer import warm_up
from nlp.types import Tag

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 30.0


class ClassifierService:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._registry = ModelRegistry(data_dir / "models")
        self._classifier: Classifier | None = None
        self._checked_at = 0.0
        self._reload: asyncio.Task[bool] | None = None
        self._reload_lock = asyncio.Lock()

    @property
    def version(self) -> str | None:
        return self._classifier.version if self._classifier else None

    async def ensure_ready(self) -> None:
        """Make sure a servable model is promoted (training the default one if needed) and load it."""

        def prepare() -> Classifier:
            warm_up(self._data_dir)
            promoted = self._registry.promoted()
            if promoted is None or unservable_reason(promoted) is not None:
                _train_default_model_in_child(self._data_dir)
            ensure_default_model(self._data_dir, progress=lambda message: print(message, flush=True))
            return self._registry.load_promoted()

        self._classifier = await asyncio.to_thread(prepare)
        self._checked_at = time.monotonic()
        log.info("classifier model %s loaded", self._classifier.version)

    def classify(self, text: str) -> Tag | None:
        """The model's tag (a few milliseconds); None when no model is loaded."""
        self._maybe_reload()
        return self._classifier.classify(text) if self._classifier else None

    async def reload_if_changed(self) -> bool:
        """Check the registry's promoted version now and load it if it is not the one loaded; True if a new
        model was loaded. A model that cannot be loaded is logged and the current one kept."""
        async with self._reload_lock:
            self._checked_at = time.monotonic()
            try:
                promoted = await asyncio.to_thread(self._registry.promoted)
                if promoted is None or promoted.version == self.version:
                    return False
                self._classifier = await asyncio.to_thread(self._registry.load, promoted.version)
            except Exception:
                log.exception("could not load the promoted classifier model; keeping %s", self.version)
                return False
            log.info("classifier model %s promoted: loaded", promoted.version)
            return True

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < RELOAD_CHECK_SECONDS or (self._reload and not self._reload.done()):
            return
        self._checked_at = now
        self._reload = asyncio.get_running_loop().create_task(self.reload_if_changed())


def _train_default_model_in_child(data_dir: Path) -> None:
    """Train the default model in a child process: the memory training uses (the cross-validation's feature
    matrices, several fitted models) is not given back by a process, and the serving process should stay small.
    If the child fails, `ensure_default_model` trains in-process."""
    script = ("import sys; from pathlib import Path; from nlp.registry import ensure_default_model; "
              "ensure_default_model(Path(sys.argv[1]), progress=lambda message: print(message, flush=True))")
    try:
        subprocess.run([sys.executable, "-c", script, str(data_dir)], check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as problem:
        log.warning("training the default model in a child process failed (%s); training in this process", problem)
