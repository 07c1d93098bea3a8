"""What a resident typed or sent, cleaned or refused with the reason."""

from __future__ import annotations

from handlers.validation import (
    clean_description,
    clean_name,
    clean_place,
    join_parts,
    readable,
    typed_number,
    whole_number,
)


def test_a_whole_number_is_the_digits_0_to_9_only_and_a_typed_one_reads_a_phones_digits() -> None:
    assert [whole_number(text) for text in ("0", "12345", "007")] == [0, 12345, 7]
    assert [whole_number(text) for text in ("", "²", "①", "３", "٣", "-1", "1.0", " 1", "1e3")] == [None] * 9
    assert [typed_number(text) for text in ("②", "３", " 12 ", "⑳")] == [2, 3, 12, 20]
    assert [typed_number(text) for text in ("٣", "", "2b", "一二", "十十", "第", "零")] == [None] * 7


def test_a_number_typed_in_chinese_numerals_or_as_an_ordinal_is_that_number() -> None:
    """WeChat shows choices as a numbered list answered by typing: "第三个" and "二" got "please pick from the list"."""
    typed = ("二", "两", "第三个", "十", "十二", "二十三", "3号", "第3项", "五。")
    assert [typed_number(text) for text in typed] == [2, 2, 3, 10, 12, 23, 3, 3, 5]


def test_residents_texts_lose_the_invisible_characters_that_would_make_them_read_otherwise() -> None:
    """A bidirectional override in a place or a name makes staff and exports read it reversed ("\u202eZhang"); a
    zero-width space hides inside words. They go, as in file names; emoji sequences (joined by ZWJ) stay."""
    assert clean_place("\u202e岳麓区\u200b政务中心\u2066三楼\u2069", 200) == "岳麓区政务中心三楼"
    assert clean_name("\u202eZhang\u200b Wei\ufeff") == "Zhang Wei"
    described = clean_description("窗口\u200b人员\u200e让我跑了三趟 👨\u200d👩\u200d👧 孩子也在等", 10, 3000)
    assert described == "窗口人员让我跑了三趟 👨\u200d👩\u200d👧 孩子也在等"
    assert readable("\u200b \u202e\u0000") == ""


def test_a_text_cut_into_parts_is_joined_as_it_was_written() -> None:
    """The platform drops the space or line break a text was cut at: Chinese runs on, other words get a space."""
    assert join_parts("窗口工作人员上班时间一直玩手机，", "让群众排队等了两个小时。") == (
        "窗口工作人员上班时间一直玩手机，让群众排队等了两个小时。")
    assert join_parts("The clerk kept us waiting", "for two hours.") == "The clerk kept us waiting for two hours."
    assert join_parts("第一部分\n", "\nsecond part") == "第一部分second part"
    assert join_parts("", "only the rest") == "only the rest"
