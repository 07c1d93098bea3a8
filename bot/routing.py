"""Which queue a case goes to: the classifier's label and the reporter's district, by configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import CityConfig
from nlp.types import Tag


@dataclass(frozen=True)
class RouteDecision:
    queue: str
    reason: str
    tag: Tag | None = None

    def as_kwargs(self) -> dict[str, Any]:
        tag = self.tag
        return {
            "queue": self.queue,
            "reason": self.reason,
            "label": tag.label if tag else None,
            "confidence": tag.confidence if tag else None,
            "top": [[label, round(score, 4)] for label, score in tag.top] if tag else None,
            "terms": list(tag.terms) if tag else None,
            "model_version": tag.model_version if tag else None,
        }


def decide_queue(city: CityConfig, tag: Tag | None, district: str | None) -> RouteDecision:
    """Reasons: `unclassified`, `low_confidence`, `label`, `district`, `no_district`, `unrouted_label`."""
    routing = city.routing
    if tag is None:
        return RouteDecision(routing.triage_queue, "unclassified", None)
    if tag.confidence < routing.confidence_threshold:
        return RouteDecision(routing.triage_queue, "low_confidence", tag)
    target = routing.labels.get(tag.label)
    if target is None:
        return RouteDecision(routing.triage_queue, "unrouted_label", tag)
    if target == routing.district_placeholder:
        if district is None or city.district(district) is None:
            return RouteDecision(routing.triage_queue, "no_district", tag)
        return RouteDecision(routing.district_queue_prefix + district, "district", tag)
    return RouteDecision(target, "label", tag)
