"""The words the console's search index is built from (`nlp.search`): a report is indexed by its words and the
two-character pieces of its long Chinese words, a staff member's query becomes the terms a report must all have,
so that a query finds the reports that say it — also inside a longer word, in traditional characters, full-width
or capitals — and a query of stop words or punctuation finds nothing."""

from __future__ import annotations

import pytest

from nlp.search import index_terms, query_terms


def finds(query: str, *texts: str) -> bool:
    """Whether a case with these texts (place, description, follow-ups) is a match for `query`."""
    terms = query_terms(query)
    return bool(terms) and set(terms) <= index_terms(texts)


def test_a_report_is_indexed_by_its_words_and_the_two_character_pieces_of_its_long_chinese_words() -> None:
    assert index_terms(["政务服务中心窗口工作人员态度恶劣"]) == {
        "政务服务中心", "政务", "务服", "服务", "务中", "中心",
        "窗口工作人员", "窗口", "口工", "工作", "作人", "人员",
        "态度", "恶劣",
    }
    assert index_terms(["低保名额"]) == {"低保", "名额"}  # two-character words are not split


def test_every_text_of_a_case_is_indexed_stop_words_numbers_and_punctuation_are_not() -> None:
    place, description, follow_up = "芙蓉区人民医院", "医生收了红包！", "2024年3月又去了一次。"
    assert index_terms([place, description, follow_up]) == {
        "芙蓉", "区", "人民", "医院", "医生", "收", "红包", "年", "月", "去", "一次"}  # 又 and 了 are stop words
    assert index_terms([]) == set()
    assert index_terms(["", "！？。…", "的了吗", "2024 12345"]) == set()


def test_a_query_is_its_words_with_a_long_chinese_word_replaced_by_its_pieces_in_order_and_once() -> None:
    assert query_terms("服务中心 态度") == ["服务", "务中", "中心", "态度"]
    assert query_terms("村主任收钱") == ["村主", "主任", "收", "钱"]
    assert query_terms("医院 医院，医院") == ["医院"]
    assert query_terms("中心服务中心") == ["中心", "服务", "务中"]


@pytest.mark.parametrize("query", ["", "   ", "的了吗", "！？。、", "2024", "the of and"])
def test_a_query_without_a_searchable_word_has_no_terms(query: str) -> None:
    assert query_terms(query) == []


@pytest.mark.parametrize(("query", "report"), [
    ("服务中心", "政务服务中心的窗口没人"),
    ("卫生服务中心", "社区卫生服务中心乱收费"),
    ("主任", "村主任收钱"),
    ("医保卡", "药店刷医保卡买日用品"),
    ("工作人员 态度", "窗口工作人员态度恶劣"),
    ("低保名额", "村里低保名额给了亲戚"),
])
def test_a_query_finds_a_report_that_says_it_also_inside_a_longer_word(query: str, report: str) -> None:
    assert finds(query, "长沙", report)


@pytest.mark.parametrize(("query", "report"), [
    ("医院", "政务服务中心的窗口没人"),
    ("窗口 医院", "政务服务中心的窗口没人"),  # every term must be there
    ("红包", "村主任收钱"),
])
def test_a_query_does_not_find_a_report_missing_one_of_its_words(query: str, report: str) -> None:
    assert not finds(query, "长沙", report)


def test_a_query_finds_what_a_follow_up_added() -> None:
    assert finds("红包", "芙蓉区人民医院", "医生不给排手术", "后来医生私下要了红包")
    assert not finds("红包", "芙蓉区人民医院", "医生不给排手术")


def test_traditional_full_width_and_capital_letters_are_searched_as_simplified_lower_case() -> None:
    assert index_terms(["政務服務中心"]) == index_terms(["政务服务中心"])
    assert query_terms("ＫＴＶ Village") == ["ktv", "village"]
    assert finds("服務中心", "政务服务中心")
    assert finds("village HEAD", "The Village Head sold the land")


def test_a_word_of_digits_and_chinese_characters_is_indexed_whole_and_by_its_chinese_part() -> None:
    assert index_terms(["12345热线"]) == {"12345热线", "热线"}
    assert query_terms("12345热线") == ["12345热线"]
    assert finds("12345热线", "打了12345热线没人管")


def test_a_query_for_hotline_finds_a_report_that_says_it_called_the_12345_hotline() -> None:
    assert finds("热线", "打了12345热线没人管")
