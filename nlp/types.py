"""What the classifier says about one text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tag:
    """The classifier's verdict on one text."""

    label: str
    confidence: float
    top: list[tuple[str, float]] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    model_version: str | None = None
