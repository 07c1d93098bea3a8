"""Routing as the product's taxonomy states it (docs: label → supervisory queue, `village_affairs` by the
reporter's district, `other` and any low-confidence report to manual triage), what of a decision is stored with
the case, and the working-day calendar its deadlines and warnings are counted in. Complements
tests/bot/test_routing.py (each label's queue at high confidence, deadlines, staff groups)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from handlers.city import CityConfig, load_city_config
from handlers.routing import (
    RouteDecision,
    add_working_days,
    decide_queue,
    due_dates,
    is_working_day,
    route,
    staff_channels,
    warning_horizon,
)
from nlp.types import Tag

CITY = load_city_config(None)
THRESHOLD = CITY.routing.confidence_threshold

# The taxonomy's labels and the supervisory queues that receive them ("@district": the reporter's district).
TAXONOMY = {
    "slow_service": "clean_hall", "lazy_procrastination": "work_style", "formalism": "work_style",
    "project_irregularity": "clean_projects", "village_affairs": "@district", "medical": "clean_medical",
    "education": "clean_schools", "bribery_gifts": "petitions", "other": "triage",
}
TAXONOMY_QUEUES = {
    "clean_hall": ("清廉大厅监督组（市行政审批服务局）", "Clean Hall supervision (Administrative Approval Bureau)"),
    "work_style": ("党风政风监督室（市纪委监委）", "Work-style supervision office (Discipline Inspection Commission)"),
    "clean_projects": ("工程建设领域监督组（市公共工程建设中心、市审计局）",
                       "Clean Projects supervision (Public Construction Center, Audit Bureau)"),
    "clean_medical": ("医疗医保监督组（市卫健委、市医保局）",
                      "Clean Medical supervision (Health Commission, Medical Insurance Bureau)"),
    "clean_schools": ("教育系统纪检监察组（市教育局）", "Clean Schools supervision (Education Bureau)"),
    "petitions": ("信访室（市纪委监委）", "Letters and Visits office (Discipline Inspection Commission)"),
    "triage": ("人工分拣", "Manual triage"),
}
TAXONOMY_DISTRICTS = {"芙蓉区", "天心区", "岳麓区", "开福区", "雨花区", "望城区", "长沙县", "浏阳市", "宁乡市"}


def _city(**routing: object) -> CityConfig:
    city = CITY.model_copy(deep=True)
    for name, value in routing.items():
        setattr(city.routing, name, value)
    return city


# --- the taxonomy -------------------------------------------------------------------------------------------


def test_the_default_routing_routes_exactly_the_taxonomys_nine_labels() -> None:
    assert CITY.routing.labels == TAXONOMY
    assert CITY.routing.district_placeholder == "@district" and CITY.routing.triage_queue == "triage"


def test_the_taxonomys_queues_and_districts_are_configured_with_their_names() -> None:
    for code, names in TAXONOMY_QUEUES.items():
        queue = CITY.queue(code)
        assert queue is not None, code
        assert (queue.zh, queue.en) == names
    assert {district.zh for district in CITY.districts} == TAXONOMY_DISTRICTS
    for district in CITY.districts:  # each district has its discipline commission's queue
        queue = CITY.queue(f"district_{district.code}")
        assert queue is not None and queue.zh == f"{district.zh}纪委监委"


@pytest.mark.parametrize("label", sorted(TAXONOMY))
def test_any_label_below_the_confidence_threshold_goes_to_manual_triage(label: str) -> None:
    tag = Tag(label, THRESHOLD - 0.001)
    decision = decide_queue(CITY, tag, "kaifu")  # a valid district does not route an unsure village report
    assert (decision.queue, decision.reason, decision.tag) == ("triage", "low_confidence", tag)


def test_a_label_the_configuration_does_not_route_goes_to_triage() -> None:
    decision = decide_queue(CITY, Tag("traffic_police", 0.95), "kaifu")
    assert (decision.queue, decision.reason) == ("triage", "unrouted_label")


def test_a_village_report_from_a_district_the_city_does_not_have_goes_to_triage() -> None:
    decision = decide_queue(CITY, Tag("village_affairs", 0.95), "atlantis")
    assert (decision.queue, decision.reason) == ("triage", "no_district")


def test_the_threshold_and_the_routes_are_configuration_not_code() -> None:
    sure_of_nothing = _city(confidence_threshold=0.0)
    assert decide_queue(sure_of_nothing, Tag("medical", 0.0), None).queue == "clean_medical"
    only_certain = _city(confidence_threshold=1.0)
    assert decide_queue(only_certain, Tag("medical", 0.999), None).reason == "low_confidence"
    assert decide_queue(only_certain, Tag("medical", 1.0), None).queue == "clean_medical"
    rerouted = _city(labels={**TAXONOMY, "medical": "petitions", "education": "@district"})
    assert decide_queue(rerouted, Tag("medical", 0.9), None).queue == "petitions"
    assert decide_queue(rerouted, Tag("education", 0.9), "liuyang").queue == "district_liuyang"


# --- what is stored of a decision ---------------------------------------------------------------------------


def test_a_decision_is_stored_with_the_classifiers_verdict() -> None:
    tag = Tag("medical", 0.61, top=[("medical", 0.612345), ("education", 0.20004)], terms=["红包", "医生"],
              model_version="2026-11-01", runner_up="education", contrast_terms=["医院"])
    due = datetime(2026, 11, 23, 15, 59, 59, tzinfo=UTC)
    stored = RouteDecision("clean_medical", "label", tag, due, due, (("telegram", "-100"),)).as_routing()
    assert (stored.queue, stored.reason, stored.label, stored.confidence) == ("clean_medical", "label", "medical", 0.61)
    assert stored.top == [["medical", 0.6123], ["education", 0.2]]
    assert (stored.terms, stored.model_version, stored.runner_up, stored.contrast_terms) == (
        ["红包", "医生"], "2026-11-01", "education", ["医院"])
    assert (stored.accept_due_at, stored.resolve_due_at, stored.staff_targets) == (due, due, (("telegram", "-100"),))


def test_contrast_terms_are_stored_only_with_a_runner_up_and_nothing_without_a_verdict() -> None:
    clear = RouteDecision("petitions", "label", Tag("bribery_gifts", 0.9, contrast_terms=["购物卡"])).as_routing()
    assert (clear.runner_up, clear.contrast_terms) == (None, None)
    unclassified = RouteDecision("triage", "unclassified").as_routing()
    assert (unclassified.label, unclassified.confidence, unclassified.top, unclassified.terms,
            unclassified.model_version, unclassified.runner_up, unclassified.contrast_terms) == (None,) * 7


def test_an_unsure_report_gets_the_triage_queues_deadlines_and_no_staff_group() -> None:
    now = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    decision = route(CITY, Tag("formalism", 0.1), None, now)
    assert (decision.queue, decision.reason) == ("triage", "low_confidence")
    assert (decision.accept_due_at, decision.resolve_due_at) == due_dates(CITY, "triage", now)
    assert decision.accept_due_at is not None and decision.staff_targets == ()


def test_a_queue_the_city_does_not_have_has_no_deadlines_and_no_staff_groups() -> None:
    assert due_dates(CITY, "mars", datetime(2026, 11, 2, tzinfo=UTC)) == (None, None)
    assert staff_channels(CITY, "mars") == []


# --- the working-day calendar -------------------------------------------------------------------------------


@pytest.mark.parametrize(("day", "working"), [
    (date(2026, 11, 2), True),  # a Monday
    (date(2026, 11, 7), False),  # a Saturday
    (date(2026, 10, 1), False),  # National Day, a Thursday
    (date(2026, 9, 20), True),  # a make-up working Sunday
    (date(2026, 10, 10), True),  # a make-up working Saturday
])
def test_working_days_skip_weekends_and_holidays_and_count_make_up_days(day: date, working: bool) -> None:
    assert is_working_day(CITY, day) is working


def test_working_days_are_counted_from_the_citys_calendar_day() -> None:
    # Sunday 17:00 UTC is Monday 01:00 in Changsha: the first working day after it is Tuesday
    assert add_working_days(CITY, datetime(2026, 11, 8, 17, 0, tzinfo=UTC), 1).isoformat() == (
        "2026-11-10T15:59:59+00:00")
    # no working days: the end of the same local day
    assert add_working_days(CITY, datetime(2026, 11, 2, 1, 0, tzinfo=UTC), 0).isoformat() == (
        "2026-11-02T15:59:59+00:00")


def test_a_deadline_is_near_within_the_loops_warning_working_days() -> None:
    friday = datetime(2026, 11, 6, 2, 0, tzinfo=UTC)
    assert CITY.loop.warn_working_days == 2
    assert warning_horizon(CITY, friday).isoformat() == "2026-11-10T15:59:59+00:00"  # end of Tuesday
    unwarned = CITY.model_copy(deep=True)
    unwarned.loop.warn_working_days = 0
    assert warning_horizon(unwarned, friday) == friday
