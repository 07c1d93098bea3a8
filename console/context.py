"""What the console needs from the application that mounts it, handed in once (the console never imports the
shell): the city's configuration, the database, secrets and paths, and the few services it calls back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from fastapi import Request

from console.passwords import PasswordHashing
from handlers.city import CityConfig
from storage.db import Database


class ServingClassifier(Protocol):
    """The classifier of the process the console runs in (`bot.classification.ClassifierService`)."""

    @property
    def version(self) -> str | None:
        """The model version it classifies with now (None before it has loaded one)."""

    @property
    def load_failure(self) -> tuple[str, str] | None:
        """(version, reason) of a promoted model it could not load (it keeps serving the current one)."""

    @property
    def load_error(self) -> Exception | None:
        """The error behind `load_failure`: a refusal of the model registry (`nlp.errors.NlpError`) names its code."""

    async def reload_if_changed(self) -> bool:
        """Load the promoted model now if it is not the one serving (after a promote or rollback)."""


@dataclass(frozen=True)
class ConsoleContext:
    city: CityConfig
    database: Database
    secret_key: bytes
    """Signs the session cookies and the two-factor enrolment secrets."""
    evidence_dir: Path
    data_dir: Path
    """The service's data directory; models live in its `models/` (the registry and the training status)."""
    public_url: str
    """How staff reach the service: https means secure cookies."""
    environment: Literal["development", "production"]
    wake_outbox: Callable[[], None]
    """Called after a transaction that wrote to the outbox (an answer to a reporter)."""
    classifier: ServingClassifier
    redis_url: str | None = None
    """`QINGLIAN_REDIS_URL`: where the login throttle counts failures (None: in the database)."""
    passwords: PasswordHashing = field(default_factory=PasswordHashing)
    """How staff passwords are hashed and checked (`QINGLIAN_PASSWORD_HASH_*`)."""

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def issuer(self) -> str:
        """The name authenticator apps show next to the account."""
        return f"Qinglian {self.city.city_en}"


CONTEXT_STATE = "console_context"


def context_of(request: Request) -> ConsoleContext:
    """The FastAPI dependency of every console route: the context `mount_console` put in the app's state."""
    context = getattr(request.app.state, CONTEXT_STATE)
    assert isinstance(context, ConsoleContext)
    return context
