"""Notices as their readers see them: a staff notice names the queue, category and district as the city does,
and a date is the city's calendar day, not the stored UTC time's."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from handlers.city import CityConfig, load_city_config
from handlers.notices import render, waited_line
from handlers.texts import Texts

TEXTS = Texts()


def _city(timezone: str = "Asia/Shanghai") -> CityConfig:
    return load_city_config(None).model_copy(update={"timezone": timezone})


def _end_of(day: date, timezone: str) -> str:
    """A resolve-by time as the console stores it: the end of the chosen day in the city, in UTC."""
    return datetime.combine(day, time(23, 59, 59), ZoneInfo(timezone)).astimezone(UTC).isoformat()


def test_a_new_case_notice_names_the_queue_category_and_district() -> None:
    payload: dict[str, object] = {"notice": "new_case", "locale": "zh", "case_number": "QL-2026-000007",
                                  "queue": "clean_hall", "label": "slow_service", "district": "yuelu",
                                  "first_line": "窗口人员擅自离岗"}
    text = render(payload, TEXTS, "https://ql.example.cn", city=_city()).text
    assert "队列：清廉大厅监督组（市行政审批服务局） · 类别：窗口服务问题 · 区县：岳麓区" in text
    assert "clean_hall" not in text and "slow_service" not in text and "yuelu" not in text

    english = render({**payload, "locale": "en"}, TEXTS, "https://ql.example.cn", city=_city()).text
    assert "Queue: Clean Hall supervision (Administrative Approval Bureau) · category: Poor counter service · " \
           "district: Yuelu" in english


def test_codes_the_city_no_longer_knows_are_shown_as_stored() -> None:
    payload: dict[str, object] = {"notice": "escalation", "locale": "zh", "case_number": "QL-2026-000008",
                                  "queue": "closed_office", "deadline": "accept"}
    assert "（队列：closed_office）" in render(payload, TEXTS, "", city=_city()).text


def test_a_staff_notice_of_an_unlabelled_case_without_a_district_says_so() -> None:
    payload: dict[str, object] = {"notice": "new_case", "locale": "zh", "case_number": "QL-2026-000009",
                                  "queue": "triage", "label": None, "district": None, "first_line": "……"}
    assert "类别：- · 区县：-" in render(payload, TEXTS, "", city=_city()).text


def test_an_extension_is_told_as_the_day_chosen_in_a_city_west_of_greenwich() -> None:
    """The console stores 23:59:59 of the chosen day in the city; in Chicago that is the next day in UTC."""
    until = _end_of(date(2026, 3, 9), "America/Chicago")
    assert until.startswith("2026-03-10")
    payload: dict[str, object] = {"notice": "extended", "locale": "zh", "case_number": "QL-2026-000010",
                                  "until": until}
    city = _city("America/Chicago")
    assert "2026-03-09" in render(payload, TEXTS, "", city=city).text
    assert "2026-03-10" not in render(payload, TEXTS, "", city=city).text
    line = waited_line(payload, TEXTS, "zh", city)
    assert line is not None and "2026-03-09" in line and "2026-03-10" not in line


def test_a_deadline_in_changsha_is_changshas_day() -> None:
    """A resolve-by time of 00:30 on 11 March in Changsha is 16:30 on 10 March in UTC."""
    payload: dict[str, object] = {"notice": "due_soon", "locale": "en", "case_number": "QL-2026-000011",
                                  "queue": "work_style", "deadline": "resolve", "until": "2026-03-10T16:30:00+00:00"}
    text = render(payload, TEXTS, "", city=_city()).text
    assert "2026-03-11" in text and "2026-03-10" not in text


def test_on_wechat_a_request_for_information_asks_for_what_wechat_can_send_and_to_reply_not_tap() -> None:
    """An Official Account's chat has no buttons and takes no file: the staff's request for information told WeChat
    residents to "点“补充材料”" and send "PDF"; there it asks them to reply 补充材料 and send text or photos."""
    payload: dict[str, object] = {"notice": "more_info", "locale": "zh", "case_number": "QL-2026-000012",
                                  "question": "请提供当天的排队小票照片。"}
    for locale in ("zh", "en"):
        on_wechat = render({**payload, "locale": locale}, TEXTS, "", city=_city(), channel="wechat").text
        waited = waited_line({**payload, "locale": locale}, TEXTS, locale, _city(), "wechat") or ""
        for text in (on_wechat, waited):
            assert "PDF" not in text and "点“" not in text and "Tap" not in text and "tap" not in text, text
            assert "请提供当天的排队小票照片。" in text
        assert ("回复“补充材料”" if locale == "zh" else "reply “Add information”") in on_wechat
    elsewhere = render(payload, TEXTS, "", city=_city(), channel="telegram").text
    assert "请点“补充材料”后发送文字、照片或PDF" in elsewhere  # a channel with buttons and files keeps its words
