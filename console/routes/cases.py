"""The overview and the ticket lists (all of the user's queues, one queue, the overdue ones) with their
filters and pages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response

from console import operations, texts, workday
from console.auth import Principal, can_reveal_identity, visible_queues
from console.operations import LABELS, MAX_ID, SETTABLE_STATUSES, OperationError
from console.rendering import deadline, overdue_flags, render
from console.routes import common
from console.routes.common import PagePrincipal, parse_day, parse_percent
from handlers.validation import whole_number
from storage import queries
from storage.models import Case, CaseStatus, StaffUser, utcnow

router = common.page_router()
FILTER_KEYS = ("queue", "status", "label", "district", "from", "to", "conf_min", "conf_max", "overdue", "labelling",
               "handling", "unread", "q", "mine", "open", "problem", "after", "before")


@router.get("/console")
async def overview(request: Request, principal: PagePrincipal) -> Response:
    counts = await operations.overview(principal)
    # counted up to a cap: beyond it the tiles say "10,000+" rather than count a city's backlog on every visit
    overdue_total = await operations.count_cases(principal, queries.CaseFilter(overdue=True))
    labelling_total = await operations.count_cases(principal, queries.CaseFilter(needs_labelling=True))
    # the reviewer's work still to do: their closed cases would make the tile only ever grow
    mine_total = await operations.count_cases(principal, queries.CaseFilter(assigned_to_id=principal.user.id,
                                                                            open_only=True))
    totals = queries.QueueCounts("", sum(c.new for c in counts.values()),
                                 sum(c.in_handling for c in counts.values()), sum(c.overdue for c in counts.values()))
    unread = await workday.unread_by_queue(principal)
    return render(request, principal, "overview.html", counts=list(counts.values()), totals=totals,
                  overdue_total=overdue_total, labelling_total=labelling_total, mine_total=mine_total,
                  unread=unread, unread_total=sum(unread.values()),
                  every_queue=operations.visible_queues(principal.user) is None)


@dataclass
class ListView:
    title: tuple[str, str]
    action: str
    fixed_queue: str | None = None
    overdue: bool = False
    labelling: bool = False

    def implied(self) -> dict[str, str]:
        """The filter the page applies by itself (its queue in the path, the overdue or labelling list), as
        query parameters: the export links must carry it, or a queue page would export every queue."""
        implied = {"queue": self.fixed_queue} if self.fixed_queue else {}
        if self.overdue:
            implied["overdue"] = "1"
        if self.labelling:
            implied["labelling"] = "1"
        return implied


def confidence_bounds(conf_min: str, conf_max: str) -> tuple[float | None, float | None]:
    """The confidences (0–1) of the filter's percentages, both ends included, as the pages show a confidence:
    rounded to a whole percent. A case shown as 87% is within "87 – 87", "≤ 100" includes 100%, and a case
    shown as 80% (79.5% or more) is within "≥ 80"."""
    low, high = parse_percent(conf_min, "conf_min"), parse_percent(conf_max, "conf_max")
    if low is not None and high is not None and low > high:
        raise OperationError(422, "percent_order", low=conf_min.removesuffix("%").strip(),
                             high=conf_max.removesuffix("%").strip())
    return ((math.ceil(low) - 0.5) / 100 if low is not None else None,
            (math.floor(high) + 0.5) / 100 if high is not None else None)


def case_filter(request: Request, principal: Principal, view: ListView) -> tuple[queries.CaseFilter, dict[str, str]]:
    """The filter of a list page from its query string; the form's values to show again (and the page's cursor)."""
    city = principal.context.city
    params = {key: request.query_params.get(key, "").strip() for key in FILTER_KEYS}
    flt = queries.CaseFilter()
    queue = view.fixed_queue or params["queue"]
    if queue:
        if city.queue(queue) is None:
            raise OperationError(404, "no_queue", code=queue)
        flt.queues = {queue}
    if params["status"]:
        if params["status"] not in {s.value for s in CaseStatus}:
            raise OperationError(422, "unknown_status", code=params['status'][:30])
        flt.status = params["status"]
    if params["label"]:
        if params["label"] not in LABELS:
            raise OperationError(422, "unknown_label_filter", code=params['label'][:30])
        flt.label = params["label"]
    if params["district"]:
        if params["district"] != "unsure" and city.district(params["district"]) is None:
            raise OperationError(422, "unknown_district", code=params['district'][:30])
        flt.district = params["district"]
    tz = ZoneInfo(city.timezone)
    day_from, day_to = parse_day(params["from"], "from"), parse_day(params["to"], "to")
    if day_from and day_to and day_from > day_to:  # else an empty list (or export) that reads as "none received"
        raise OperationError(422, "received_reversed", first=day_from, last=day_to)
    if day_from:
        flt.created_from = datetime.combine(day_from, time(0), tz).astimezone(UTC)
    if day_to:
        flt.created_to = datetime.combine(day_to + timedelta(days=1), time(0), tz).astimezone(UTC)
    flt.confidence_at_least, flt.confidence_at_most = confidence_bounds(params["conf_min"], params["conf_max"])
    flt.overdue = view.overdue or params["overdue"] == "1"
    flt.needs_labelling = view.labelling or params["labelling"] == "1"
    flt.in_handling = params["handling"] == "1"
    flt.unread = params["unread"] == "1"
    flt.open_only = params["open"] == "1"
    if params["mine"] == "1":
        flt.assigned_to_id = principal.user.id
    if params["q"]:
        flt.text = params["q"][:100]
    if params["problem"]:  # the cases of one problem (linked from its page), to act on all of them at once
        problem = whole_number(params["problem"])
        if problem is None or not 1 <= problem <= MAX_ID:
            raise OperationError(422, "not_problem_number", value=params['problem'][:30])
        flt.problem_id = problem
    return flt, params


def old_fractions(action: str, kept: dict[str, str]) -> list[tuple[str, str, str]]:
    """The confidence bounds that look like a bookmark from when the filter took fractions (0–1): above 0 and at most
    1, which now mean as many percent. Each as (its value, the percentage it meant, the list with that percentage),
    for the page to say what the filter means and offer what the bookmark meant."""
    found = []
    for key in ("conf_min", "conf_max"):
        value = kept.get(key, "").removesuffix("%").strip()
        try:
            number = float(value)
        except ValueError:
            continue
        if 0 < number <= 1:
            meant = f"{number * 100:.4g}"
            found.append((value, meant, f"{action}?{urlencode({**kept, key: meant})}"))
    return found


async def list_page(request: Request, principal: Principal, view: ListView) -> Response:
    flt, params = case_filter(request, principal, view)
    listed, total = await operations.case_page(principal, flt, after=params["after"], before=params["before"],
                                               per_page=common.PER_PAGE)
    cases = listed.cases
    kept = {key: value for key, value in params.items() if value and key not in operations.PAGE_KEYS}

    def page_url(key: str, cursor: queries.CaseCursor | None) -> str:
        return f"{view.action}?{urlencode({**kept, key: operations.cursor_param(cursor)} if cursor else kept)}"

    allowed = visible_queues(principal.user)
    city = principal.context.city
    queues = [q for q in city.queues if allowed is None or q.code in allowed]
    now = utcnow()
    return render(request, principal, "cases.html", view=view, cases=cases, total=total, params=params,
                  first_url=page_url("after", None) if params["after"] or params["before"] else None,
                  older_url=page_url("after", listed.older) if listed.older else None,
                  newer_url=page_url("before", listed.newer) if listed.newer else None, queues=queues,
                  staff=await operations.staff_by_id(principal),
                  flags={case.id: overdue_flags(case, now) for case in cases},
                  threshold=city.routing.confidence_threshold, statuses=[s.value for s in CaseStatus],
                  filtered=any(kept.get(k) for k in kept if k not in ("queue",)),
                  transfer_reasons=city.loop.transfer_reasons, old_fractions=old_fractions(view.action, kept),
                  active=kept,
                  **await working_day_extras(request, principal, cases, {**kept, **view.implied()}, now))


def _shares_a_queue(user: StaffUser, queues: set[str] | None) -> bool:
    theirs = visible_queues(user)
    return theirs is None or queues is None or bool(theirs & queues)


async def working_day_extras(request: Request, principal: Principal, cases: list[Case], kept: dict[str, str],
                             now: datetime) -> dict[str, Any]:  # kept: the list's parameters but PAGE_KEYS
    """What a list shows beside its cases: the unread mark and the deadline countdown of each, the form for
    actions on a selection, and the export links of the filter."""
    city = principal.context.city
    allowed = visible_queues(principal.user)
    staff = await operations.staff_by_id(principal)
    exported = urlencode(kept)  # the filter, without where the page starts
    # the selection can only be assigned to who works in its cases' queues (anyone else is refused for each case):
    # the queue filtered on, else the queues of the cases listed
    listed = {kept["queue"]} if kept.get("queue") else {case.queue for case in cases}
    colleagues = [user for user in staff.values()
                  if user.active and _shares_a_queue(user, allowed) and _shares_a_queue(user, listed or None)]
    return {
        "unread": await workday.unread_cases(principal, cases),
        "deadlines": {case.id: deadline(case, now, city) for case in cases},
        "colleagues": colleagues,
        "colleague_queues": {user.id: sorted(visible_queues(user) or ()) for user in colleagues
                             if visible_queues(user) is not None},
        "all_queues": city.queues,
        "settable": [s.value for s in SETTABLE_STATUSES],
        "back": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        "export_query": exported,
        "can_export_identity": can_reveal_identity(principal.user, city),
    }


@router.get("/console/cases")
async def all_cases(request: Request, principal: PagePrincipal) -> Response:
    every_queue = visible_queues(principal.user) is None  # as the overview says it: all queues, or the user's
    title = texts.pair("list.all_queues" if every_queue else "list.all_my_queues")
    return await list_page(request, principal, ListView(title, "/console/cases"))


@router.get("/console/queue/{queue}")
async def queue_cases(request: Request, principal: PagePrincipal, queue: str) -> Response:
    allowed = visible_queues(principal.user)
    found = principal.context.city.queue(queue)
    if found is None or (allowed is not None and queue not in allowed):
        raise OperationError(404, "no_queue_yours", code=queue)
    return await list_page(request, principal, ListView((found.zh, found.en), f"/console/queue/{queue}",
                                                        fixed_queue=queue))


@router.get("/console/overdue")
async def overdue_cases(request: Request, principal: PagePrincipal) -> Response:
    return await list_page(request, principal, ListView(texts.pair("list.overdue"), "/console/overdue",
                                                        overdue=True))
