"""What pages show: display names of codes from the texts and the city, local times, highlighted report
text (always escaped), overdue flags and the notice after an action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from console import texts
from console.rendering import Names, deadline, done_message, filesize, highlight, overdue_flags, percent
from handlers.city import load_city_config
from storage.models import Case, CaseStatus

NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 10:30 in Changsha


def test_highlight_escapes_every_piece() -> None:
    assert str(highlight("a<b>&c 窗口", ["窗口", "<b>", ""])) == "a<mark>&lt;b&gt;</mark>&amp;c <mark>窗口</mark>"
    assert str(highlight("<x>", None)) == "&lt;x&gt;"
    assert str(highlight("不在岗不在", [["不在岗", 0.9], ["不在", 0.5]])) == "<mark>不在岗</mark><mark>不在</mark>"


def test_names_of_codes_come_from_the_texts_the_taxonomy_and_the_city() -> None:
    names = Names(load_city_config(None))
    assert names.status("routed") == ("待受理", "Routed")
    assert names.trace("routed") == ("分派", "Routed")  # the trace names the event, not the state
    assert names.trace("in_handling") == ("办理中", "In handling")
    assert names.role("admin") == ("管理员", "Administrator")
    assert names.audit_action("case.reveal_identity") == ("查看身份", "revealed the identity")
    assert names.route_reason("low_confidence") == ("置信度低，人工分拣", "low confidence")
    assert names.label("medical") == ("医疗医保", "Hospitals and medical insurance")
    assert names.label(None) == ("未分类", "unclassified")
    assert names.district("yuelu") == ("岳麓区", "Yuelu")
    assert names.district(None) == ("未选择", "not given")
    assert names.queue_short("clean_medical") == "医疗医保监督组"
    # codes nobody wrote a text for are shown as they are
    assert (names.status("mystery"), names.role("janitor"), names.audit_action("x.y")) == (
        ("mystery", "mystery"), ("janitor", "janitor"), ("x.y", "x.y"))
    assert (names.route_reason("odd"), names.route_reason(None)) == (("odd", "odd"), ("", ""))
    assert (names.queue("nowhere"), names.queue(None)) == (("nowhere", "nowhere"), ("—", "—"))


def test_times_are_local_to_the_city() -> None:
    names = Names(load_city_config(None))
    assert (names.time(NOW), names.seconds(NOW), names.day(NOW)) == (
        "2026-11-24 10:30", "2026-11-24 10:30:00", "2026-11-24")
    assert (names.time(None), names.iso(NOW.isoformat()), names.iso("soon")) == ("—", "2026-11-24 10:30", "—")


def test_numbers_for_people() -> None:
    assert (percent(0.456), percent(None)) == ("46%", "—")
    assert (filesize(800), filesize(20_480), filesize(3 * 1024 * 1024)) == ("800 B", "20 KB", "3.0 MB")


def test_overdue_flags_name_each_missed_deadline() -> None:
    day = timedelta(days=1)
    late = Case(status=CaseStatus.ROUTED, accept_due_at=NOW - day, resolve_due_at=NOW - timedelta(hours=1))
    accepted = Case(status=CaseStatus.ACCEPTED, accept_due_at=NOW - day, resolve_due_at=NOW + 9 * day)
    closed = Case(status=CaseStatus.CLOSED, accept_due_at=NOW - 9 * day, resolve_due_at=NOW - day)
    assert overdue_flags(late, NOW) == [("受理超期", "accept overdue"), ("办结超期", "resolve overdue")]
    assert overdue_flags(accepted, NOW) == []
    assert overdue_flags(closed, NOW) == []


def test_a_deadline_says_the_time_left_or_overdue_in_each_language_from_the_locale_texts() -> None:
    city = load_city_config(None)
    left = deadline(Case(status=CaseStatus.ACCEPTED, resolve_due_at=NOW + timedelta(days=12, hours=3, minutes=5)),
                    NOW, city)
    late = deadline(Case(status=CaseStatus.ROUTED, accept_due_at=NOW - timedelta(hours=5, minutes=7)), NOW, city)
    assert left is not None and left.text == ("剩 12 天 3 小时", "12 d 3 h left")
    assert late is not None and late.text == ("超期 5 小时 7 分", "5 h 7 min overdue")
    assert texts.get("en", "due.left", span="1 d 2 h") == "1 d 2 h left"  # the words are the locale's


def test_the_notice_after_an_action_is_known_or_nothing() -> None:
    assert done_message("answered") == ("答复已发送给举报人。", "The answer is on its way to the reporter.")
    assert (done_message(""), done_message("pwned"), done_message("accepted.x")) == (None, None, None)
