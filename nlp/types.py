"""What the classifier says about one text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tag:
    """The classifier's verdict on one text.

    `terms`: up to five phrases of the text that drove the decision (≥ 2 characters, no filler). When the
    second most probable label is close (`nlp.classifier.CONTRAST_MARGIN`), `runner_up` names it and
    `contrast_terms` are the phrases that favoured `label` over it; otherwise None and [].
    """

    label: str
    confidence: float
    top: list[tuple[str, float]] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    model_version: str | None = None
    runner_up: str | None = None
    contrast_terms: list[str] = field(default_factory=list)
