"""Routing by configuration: every label, every district, low confidence, deadlines, staff groups."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from handlers.city import load_city_config
from handlers.routing import add_working_days, decide_queue, due_dates, route, staff_channels
from nlp.types import Tag

CITY = load_city_config(None)
EXPECTED = {
    "slow_service": "clean_hall", "lazy_procrastination": "work_style", "formalism": "work_style",
    "project_irregularity": "clean_projects", "medical": "clean_medical", "education": "clean_schools",
    "bribery_gifts": "petitions", "other": "triage",
}


@pytest.mark.parametrize(("label", "queue"), EXPECTED.items())
def test_each_label_goes_to_its_queue(label: str, queue: str) -> None:
    decision = decide_queue(CITY, Tag(label, 0.97), "yuelu")
    assert (decision.queue, decision.reason) == (queue, "label")


@pytest.mark.parametrize("district", [d.code for d in CITY.districts])
def test_village_affairs_go_to_the_reporters_district(district: str) -> None:
    decision = decide_queue(CITY, Tag("village_affairs", 0.9), district)
    assert (decision.queue, decision.reason) == (f"district_{district}", "district")


def test_village_affairs_without_a_district_and_low_confidence_go_to_triage() -> None:
    assert decide_queue(CITY, Tag("village_affairs", 0.9), None).reason == "no_district"
    threshold = CITY.routing.confidence_threshold
    low = decide_queue(CITY, Tag("bribery_gifts", threshold - 0.01), "kaifu")
    at = decide_queue(CITY, Tag("bribery_gifts", threshold), "kaifu")
    assert (low.queue, low.reason) == ("triage", "low_confidence")
    assert at.queue == "petitions"
    assert decide_queue(CITY, None, "kaifu").reason == "unclassified"


def test_working_day_deadlines_skip_weekends_and_holidays() -> None:
    friday = datetime(2026, 9, 25, 2, 0, tzinfo=UTC)  # a configured holiday, Friday
    # next working days: Mon 28, Tue 29, Wed 30, then the National Day holidays, Sat 10 Oct is a make-up day
    assert add_working_days(CITY, friday, 3).date().isoformat() == "2026-09-30"
    assert add_working_days(CITY, friday, 4).date().isoformat() == "2026-10-08"
    accept, resolve = due_dates(CITY, "clean_hall", datetime(2026, 11, 2, 1, 0, tzinfo=UTC))
    assert accept is not None and resolve is not None
    assert accept.isoformat() == "2026-11-23T15:59:59+00:00"  # 15 working days after Mon 2 Nov, end of day
    assert resolve.isoformat() == "2027-01-01T15:59:59+00:00"  # 60 days after 2 Nov, to the end of that day


def test_a_queue_can_state_its_resolve_deadline_in_working_days_which_wins_over_calendar_days() -> None:
    city = CITY.model_copy(deep=True)
    queue = city.queue("clean_hall")
    assert queue is not None
    queue.resolve_within_days = 60
    queue.resolve_within_working_days = 11
    # From Friday 18 Sep 2026: Sun 20 Sep (a make-up working day) counts, Fri 25 Sep and 1–7 Oct (holidays)
    # do not, so the eleventh working day is Sat 10 Oct, another make-up day
    accept, resolve = due_dates(city, "clean_hall", datetime(2026, 9, 18, 2, 0, tzinfo=UTC))
    assert resolve is not None and resolve.isoformat() == "2026-10-10T15:59:59+00:00"  # 23:59:59 in Changsha
    assert accept is not None and accept > resolve  # the accept deadline is still its 15 working days


def test_a_configuration_file_stating_calendar_days_keeps_them(tmp_path: Path) -> None:
    from handlers.city import DEFAULT_CITY_CONFIG, load_city_config

    text = DEFAULT_CITY_CONFIG.read_text(encoding="utf-8").replace(
        '{ code = "petitions", zh = "信访室（市纪委监委）", en',
        '{ code = "petitions", resolve_within_days = 30, zh = "信访室（市纪委监委）", en')
    (tmp_path / "city.toml").write_text(text, encoding="utf-8")
    city = load_city_config(tmp_path / "city.toml")
    routed = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    _, resolve = due_dates(city, "petitions", routed)
    assert resolve == datetime(2026, 12, 2, 15, 59, 59, tzinfo=UTC)  # 30 days on, to 23:59:59 in Changsha


def test_staff_groups_come_from_configuration() -> None:
    city = CITY.model_copy(deep=True)
    queue = city.queue("petitions")
    assert queue is not None
    queue.telegram_chat_id = -100123
    queue.wecom_webhook_env = "QINGLIAN_WECOM_PETITIONS"
    assert staff_channels(city, "petitions") == [("telegram", "-100123"), ("wecom", "petitions")]
    assert staff_channels(city, "clean_hall") == []
    decision = route(city, Tag("bribery_gifts", 0.99), None, datetime(2026, 11, 2, tzinfo=UTC))
    assert decision.staff_targets == (("telegram", "-100123"), ("wecom", "petitions"))
