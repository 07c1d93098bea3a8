"""The date a time typed in words names, added beside the words (`handlers.when.dated`), over fixed days: a Monday
(2026-12-07), a Sunday at the start of a month (2026-03-01), a Monday at the start of a year (2026-01-05)."""

from __future__ import annotations

from datetime import date

import pytest

from handlers.validation import Invalid
from handlers.when import dated

MONDAY = date(2026, 12, 7)
SUNDAY_MARCH_1 = date(2026, 3, 1)
MONDAY_JANUARY_5 = date(2026, 1, 5)


@pytest.mark.parametrize(("today", "typed", "stored"), [
    # a day counted back from today, in simplified and traditional characters
    (MONDAY, "昨天下午", "昨天下午 (2026-12-06)"),
    (MONDAY, "昨晚十点", "昨晚十点 (2026-12-06)"),
    (MONDAY, "前天", "前天 (2026-12-05)"),
    (MONDAY, "大前天上午", "大前天上午 (2026-12-04)"),
    (MONDAY, "今天早上", "今天早上 (2026-12-07)"),
    (MONDAY, "3天前", "3天前 (2026-12-04)"),
    (MONDAY, "３天前", "３天前 (2026-12-04)"),  # full-width digits, as a phone's Chinese keyboard types them
    (MONDAY, "三天前", "三天前 (2026-12-04)"),
    (MONDAY, "两天前", "两天前 (2026-12-05)"),
    (MONDAY, "兩天以前", "兩天以前 (2026-12-05)"),
    (MONDAY, "十天前", "十天前 (2026-11-27)"),
    (MONDAY, "二十天之前", "二十天之前 (2026-11-17)"),
    # a day of a week: last week's, this week's, or alone the latest not after today
    (MONDAY, "上周三", "上周三 (2026-12-02)"),
    (MONDAY, "上週三", "上週三 (2026-12-02)"),
    (MONDAY, "上個禮拜三下午", "上個禮拜三下午 (2026-12-02)"),
    (MONDAY, "上星期天", "上星期天 (2026-12-06)"),
    (MONDAY, "上上周五", "上上周五 (2026-11-27)"),
    (MONDAY, "周三", "周三 (2026-12-02)"),
    (MONDAY, "星期三晚上", "星期三晚上 (2026-12-02)"),
    (MONDAY, "礼拜一", "礼拜一 (2026-12-07)"),  # today is Monday
    (MONDAY, "周日", "周日 (2026-12-06)"),
    (MONDAY, "周二晚上周三凌晨", "周二晚上周三凌晨 (2026-12-01, 2026-12-02)"),  # 晚上 then 周三, not 上周三
    # a week, a month, a year
    (MONDAY, "上周", "上周 (2026-11-30 – 2026-12-06)"),
    (MONDAY, "上周末", "上周末 (2026-12-05 – 2026-12-06)"),
    (MONDAY, "周末", "周末 (2026-12-05 – 2026-12-06)"),
    (MONDAY, "两周前", "两周前 (2026-11-23 – 2026-11-29)"),
    (MONDAY, "上个月", "上个月 (2026-11)"),
    (MONDAY, "上個月底", "上個月底 (2026-11)"),
    (MONDAY, "本月初", "本月初 (2026-12)"),
    (MONDAY, "两个月前", "两个月前 (2026-10)"),
    (MONDAY, "去年国庆节", "去年国庆节 (2025)"),
    # English
    (MONDAY, "yesterday evening", "yesterday evening (2026-12-06)"),
    (MONDAY, "the day before yesterday", "the day before yesterday (2026-12-05)"),
    (MONDAY, "2 days ago", "2 days ago (2026-12-05)"),
    (MONDAY, "two days ago", "two days ago (2026-12-05)"),
    (MONDAY, "last Monday", "last Monday (2026-11-30)"),  # the latest Monday before today
    (MONDAY, "last Tuesday afternoon", "last Tuesday afternoon (2026-12-01)"),
    (MONDAY, "on Wednesday", "on Wednesday (2026-12-02)"),
    (MONDAY, "last week", "last week (2026-11-30 – 2026-12-06)"),
    (MONDAY, "last month", "last month (2026-11)"),
    (MONDAY, "a month ago", "a month ago (2026-11)"),
    # a week's and a month's boundary: today is Sunday, 1 March
    (SUNDAY_MARCH_1, "昨天", "昨天 (2026-02-28)"),
    (SUNDAY_MARCH_1, "前天", "前天 (2026-02-27)"),
    (SUNDAY_MARCH_1, "周日", "周日 (2026-03-01)"),
    (SUNDAY_MARCH_1, "上周日", "上周日 (2026-02-22)"),  # Sunday ends the week (Monday to Sunday)
    (SUNDAY_MARCH_1, "周一", "周一 (2026-02-23)"),
    (SUNDAY_MARCH_1, "这周", "这周 (2026-02-23 – 2026-03-01)"),
    (SUNDAY_MARCH_1, "上周", "上周 (2026-02-16 – 2026-02-22)"),
    (SUNDAY_MARCH_1, "last Sunday", "last Sunday (2026-02-22)"),
    (SUNDAY_MARCH_1, "上个月", "上个月 (2026-02)"),
    # a year's boundary: today is Monday, 5 January
    (MONDAY_JANUARY_5, "上周", "上周 (2025-12-29 – 2026-01-04)"),
    (MONDAY_JANUARY_5, "上个月", "上个月 (2025-12)"),
    (MONDAY_JANUARY_5, "十天前", "十天前 (2025-12-26)"),
    (MONDAY_JANUARY_5, "3个月前", "3个月前 (2025-10)"),
])
def test_words_that_name_a_day_have_its_date_added(today: date, typed: str, stored: str) -> None:
    assert dated(typed, today) == stored


@pytest.mark.parametrize("typed", [
    "最近", "前几天", "记不清", "一直都这样", "半个月前", "几天前", "好几个月了",
    "以前天天排队",  # formerly, every day: not the day before yesterday
    "周一到周五",  # working days
    "每周三",  # every Wednesday
    "一周三次",  # three times a week
    "Monday to Friday", "every Monday", "a few days ago", "not sure",
    "3月5日", "2026-11-30 上午", "2026年11月", "昨天（11月30日）",  # a date of the calendar keeps its handling
    "3号下午",
])
def test_words_that_name_no_day_or_a_date_already_stay_as_typed(typed: str) -> None:
    assert dated(typed, MONDAY) == typed


@pytest.mark.parametrize(("typed", "words"), [
    ("明天", "明天"),
    ("後天", "後天"),  # traditional
    ("下週一", "下週一"),
    ("本周五", "本周五"),  # later this week
    ("这周末", "这周末"),
    ("下个月", "下个月"),
    ("明年", "明年"),
    ("next Monday", "next Monday"),
    ("this Friday", "this Friday"),
    ("tomorrow morning", "tomorrow"),
])
def test_words_that_name_a_day_still_to_come_are_refused(typed: str, words: str) -> None:
    with pytest.raises(Invalid) as refused:
        dated(typed, MONDAY)
    assert (refused.value.text_key, refused.value.values) == ("error_when_future", {"value": words})
