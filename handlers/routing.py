"""Which queue a case goes to: the classifier's label and the reporter's district, by configuration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from handlers.city import CityConfig
from nlp.types import Tag
from storage.actions import Routing


@dataclass(frozen=True)
class RouteDecision:
    queue: str
    reason: str
    tag: Tag | None = None
    accept_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    staff_targets: tuple[tuple[str, str], ...] = ()

    def as_routing(self) -> Routing:
        """What `storage.actions.submit_report` stores of the decision."""
        tag = self.tag
        return Routing(
            queue=self.queue,
            reason=self.reason,
            label=tag.label if tag else None,
            confidence=tag.confidence if tag else None,
            top=[[label, round(score, 4)] for label, score in tag.top] if tag else None,
            terms=list(tag.terms) if tag else None,
            model_version=tag.model_version if tag else None,
            runner_up=tag.runner_up if tag else None,
            contrast_terms=list(tag.contrast_terms) if tag and tag.runner_up else None,
            accept_due_at=self.accept_due_at,
            resolve_due_at=self.resolve_due_at,
            staff_targets=self.staff_targets,
        )


def route(city: CityConfig, tag: Tag | None, district: str | None, now: datetime) -> RouteDecision:
    """The queue, with the deadlines it sets and the staff groups to tell."""
    decision = decide_queue(city, tag, district)
    accept_due, resolve_due = due_dates(city, decision.queue, now)
    return RouteDecision(decision.queue, decision.reason, tag, accept_due, resolve_due,
                         tuple(staff_channels(city, decision.queue)))


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


def is_working_day(city: CityConfig, day: date) -> bool:
    if day in city.console.workdays_override:
        return True
    return day.weekday() < 5 and day not in city.console.holidays


def add_working_days(city: CityConfig, start: datetime, days: int) -> datetime:
    """The end of the `days`-th working day after `start`, in the city's time zone."""
    tz = ZoneInfo(city.timezone)
    day = start.astimezone(tz).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(city, day):
            counted += 1
    return datetime.combine(day, time(23, 59, 59), tz).astimezone(UTC)


def warning_horizon(city: CityConfig, now: datetime) -> datetime:
    """Deadlines at or before this are near: the end of the `loop.warn_working_days`-th working day after
    `now` (now itself when no warning is configured). Staff are warned of them; the console shows them amber."""
    days = city.loop.warn_working_days
    return max(add_working_days(city, now, days), now) if days else now


def due_dates(city: CityConfig, queue_code: str, routed_at: datetime) -> tuple[datetime | None, datetime | None]:
    """(accept by, resolve by) for a case entering a queue, from the queue's configured deadlines: accept by
    the end of a working day; resolve by the end of a working day when the queue states
    `resolve_within_working_days`, else by the end of the day `resolve_within_days` calendar days later ("within
    60 days" as a resident and the rules read it: the date shown is the last day, whole)."""
    queue = city.queue(queue_code)
    if queue is None:
        return None, None
    accept = add_working_days(city, routed_at, queue.accept_within_working_days)
    if queue.resolve_within_working_days is not None:  # wins over the calendar days
        return accept, add_working_days(city, routed_at, queue.resolve_within_working_days)
    tz = ZoneInfo(city.timezone)
    resolve_day = routed_at.astimezone(tz).date() + timedelta(days=queue.resolve_within_days)
    return accept, datetime.combine(resolve_day, time(23, 59, 59), tz).astimezone(UTC)


def staff_channels(city: CityConfig, queue_code: str) -> list[tuple[str, str]]:
    """(channel, recipient) of the staff groups that hear about new cases in a queue."""
    queue = city.queue(queue_code)
    targets: list[tuple[str, str]] = []
    if queue is None:
        return targets
    if queue.telegram_chat_id is not None:
        targets.append(("telegram", str(queue.telegram_chat_id)))
    if queue.wecom_webhook_env is not None:
        targets.append(("wecom", queue.code))
    return targets
