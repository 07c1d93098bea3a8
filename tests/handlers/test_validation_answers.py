"""What a resident typed at each step, cleaned or refused with the reason the dialog shows (file names:
test_validation.py)."""

from __future__ import annotations

from datetime import date

import pytest

from handlers.validation import (
    Invalid,
    clean_description,
    clean_name,
    clean_occurred,
    clean_phone,
    clean_place,
    sniff_media_type,
)

TODAY = date(2026, 11, 24)


def _refusal(check: object, *args: object) -> tuple[str, dict[str, object]]:
    with pytest.raises(Invalid) as refused:
        check(*args)  # type: ignore[operator]
    return refused.value.text_key, refused.value.values


@pytest.mark.parametrize(("typed", "kept"), [
    ("  岳麓区政务服务中心\t3号窗口 \r\n", "岳麓区政务服务中心\t3号窗口"),
    ("县医院\x07挂号处", "县医院挂号处"),  # control characters go
    ("村委", "村委"),
])
def test_a_place_is_kept_as_typed_without_control_characters(typed: str, kept: str) -> None:
    assert clean_place(typed, 200) == kept


def test_a_place_must_name_something_and_fit() -> None:
    assert _refusal(clean_place, "！！", 200) == ("error_place_short", {})
    assert _refusal(clean_place, "某" * 201, 200) == ("error_too_long", {"limit": 200, "length": 201})


@pytest.mark.parametrize(("typed", "kept"), [
    ("上周三下午", "上周三下午"),
    ("2026年11月3日上午", "2026年11月3日上午"),
    ("2026/11/24", "2026/11/24"),
    ("大约 2025.12.1 前后", "大约 2025.12.1 前后"),
    ("2026年10月", "2026年10月"),
    ("12月30日", "12月30日"),  # later this year than today: last year's, as a resident means it
    ("昨天下午三点", "昨天下午三点"),
    ("半个月前", "半个月前"),  # a time in words, however rough, is a time
    ("记不清了", "记不清了"),
    ("一直都这样", "一直都这样"),
    ("去年国庆节", "去年国庆节"),
    ("３天前", "３天前"),  # full-width digits, as a phone's Chinese keyboard types them
    ("about two weeks ago", "about two weeks ago"),
    ("last Tuesday afternoon", "last Tuesday afternoon"),
    ("in March", "in March"),
    ("not sure", "not sure"),
    ("3号下午在二楼窗口", "3号下午在二楼窗口"),  # a floor beside a time: still a time
    ("3号", "3号"),  # the 3rd, not a window
])
def test_a_time_is_kept_in_the_residents_words(typed: str, kept: str) -> None:
    assert clean_occurred(typed, TODAY) == kept


@pytest.mark.parametrize(("typed", "refusal"), [
    ("2026-11-25", ("error_when_future", {"value": "2026-11-25"})),
    ("2026年2月30日", ("error_when_bad_date", {"value": "2026年2月30日"})),
    ("？？", ("error_when_empty", {})),
    ("2026年13月", ("error_when_bad_date", {"value": "2026年13月"})),
    ("2026年12月", ("error_when_future", {"value": "2026年12月"})),
    ("2月30号下午", ("error_when_bad_date", {"value": "2月30号"})),
    ("明天上午", ("error_when_future", {"value": "明天"})),
    ("下周一", ("error_when_future", {"value": "下周"})),
    ("tomorrow morning", ("error_when_future", {"value": "tomorrow"})),
    ("很久" * 51, ("error_too_long", {"limit": 100, "length": 102})),
    ("岳麓区政务服务中心", ("error_when_no_time", {"value": "岳麓区政务服务中心"})),  # the place, at the wrong question
    ("你好", ("error_when_no_time", {"value": "你好"})),
    ("the tax office", ("error_when_no_time", {"value": "the tax office"})),
    # a place whose number is a floor, a window or a building was taken for a time (seen at the README's smoke)
    ("二楼的窗口", ("error_when_no_time", {"value": "二楼的窗口"})),
    ("3号窗口", ("error_when_no_time", {"value": "3号窗口"})),
    ("5栋2单元", ("error_when_no_time", {"value": "5栋2单元"})),
])
def test_a_time_in_the_future_impossible_or_empty_is_refused(typed: str,
                                                              refusal: tuple[str, dict[str, object]]) -> None:
    assert _refusal(clean_occurred, typed, TODAY) == refusal


def test_a_description_needs_substance_and_fits_the_limit() -> None:
    text = "窗口工作人员上班时间玩手机，群众排队两个小时。"
    assert clean_description(f"  {text}\r\n", 10, 3000) == text
    too_short = ("error_description_short", {"minimum": 10})
    assert _refusal(clean_description, "太差了！！！！！！！！", 10, 3000) == too_short
    assert _refusal(clean_description, "哈" * 40, 10, 3000) == too_short  # one character, however often
    assert _refusal(clean_description, "长" * 3001, 10, 3000) == (
        "error_description_long", {"limit": 3000, "length": 3001})


@pytest.mark.parametrize(("typed", "kept"), [("  张   三 ", "张 三"), ("Li Ming", "Li Ming"), ("欧阳明月", "欧阳明月")])
def test_a_name_is_kept_with_its_spaces_tidied(typed: str, kept: str) -> None:
    assert clean_name(typed) == kept


def test_a_name_has_no_digits_and_two_to_forty_letters() -> None:
    assert _refusal(clean_name, "张3") == ("error_name_digits", {})
    assert _refusal(clean_name, "张") == ("error_name_length", {})
    assert _refusal(clean_name, "名" * 41) == ("error_name_length", {})


@pytest.mark.parametrize(("typed", "kept"), [
    ("13812345678", "13812345678"),
    ("+86 138-1234-5678", "13812345678"),
    ("0086 13812345678", "13812345678"),
    ("（138）1234 5678", "13812345678"),
    ("１３８１２３４５６７８", "13812345678"),
])
def test_a_mainland_mobile_number_is_kept_as_eleven_digits(typed: str, kept: str) -> None:
    assert clean_phone(typed) == kept


@pytest.mark.parametrize("typed", ["12345678901", "0731-88886666", "1381234567", "+1 415 555 0100", "电话"])
def test_other_numbers_are_refused(typed: str) -> None:
    assert _refusal(clean_phone, typed) == ("error_phone", {})


@pytest.mark.parametrize(("content", "media_type"), [
    (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\nrest", "image/png"),
    (b"GIF89a rest", "image/gif"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"%PDF-1.7\n", "application/pdf"),
    (b"MZ\x90\x00 an executable", None),
    (b"<html>not a pdf</html>", None),
    (b"", None),
])
def test_a_files_type_is_read_from_its_first_bytes(content: bytes, media_type: str | None) -> None:
    assert sniff_media_type(content) == media_type
