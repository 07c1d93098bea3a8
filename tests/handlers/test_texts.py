"""The resident's texts: both languages complete with the same placeholders, a city's overrides, and which
language a client's language tag gets."""

from __future__ import annotations

import string

import pytest

from handlers.texts import Texts, normalise_locale


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize(("tag", "default", "locale"), [
    ("zh-Hans", "zh", "zh"), ("zh_TW", "en", "zh"), ("ZH", "en", "zh"), ("en-GB", "zh", "en"), (" en ", "zh", "en"),
    ("fr-FR", "zh", "zh"), ("fr-FR", "en", "en"), ("", "en", "en"), (None, "zh", "zh"),
])
def test_a_clients_language_tag_becomes_one_of_our_languages(tag: str | None, default: str, locale: str) -> None:
    assert normalise_locale(tag, default) == locale


def test_both_languages_have_every_text_with_the_same_placeholders() -> None:
    texts = Texts()
    differing = {key: (texts.get("zh", key), texts.get("en", key)) for key in texts.keys()
                 if _placeholders(texts.get("zh", key)) != _placeholders(texts.get("en", key))}
    assert differing == {}


def test_a_text_is_filled_in_and_an_unknown_language_reads_chinese() -> None:
    texts = Texts()
    assert texts.get("en", "rated", rating=4) == "Thank you for your rating (4 stars)!"
    assert texts.get("zh", "rated", rating=4) == "感谢您的评价（4星）！"
    assert texts.get("ja", "rated", rating=4) == "感谢您的评价（4星）！"


@pytest.mark.parametrize(("key", "values", "one", "many"), [
    ("ask_intake_files", "count", "We have the 1 file you sent.", "We have the 3 files you sent."),
    ("summary", "evidence", "Evidence: 1 file\n", "Evidence: 3 files\n"),
    ("error_code_throttled", "minutes", "try again in 1 minute.", "try again in 3 minutes."),
    ("error_code_throttled_network", "minutes", "try again in 1 minute.", "try again in 3 minutes."),
    ("trace_rated", "rating", "Reporter's rating: 1 star", "Reporter's rating: 3 stars"),
    ("rated", "rating", "Thank you for your rating (1 star)!", "Thank you for your rating (3 stars)!"),
    ("error_case_rated", "rating", "rated already (1 star).", "rated already (3 stars)."),
    ("error_report_limit_network", "hours", "submit it in 1 hour.", "submit it in 3 hours."),
])
def test_english_counts_read_right_for_one_and_for_many(key: str, values: str, one: str, many: str) -> None:
    texts = Texts()
    filled = {"district": "Yuelu", "place": "Hall", "when": "today", "description": "…", "identity": "anonymous"}
    assert one in texts.get("en", key, **filled, **{values: 1})
    assert many in texts.get("en", key, **filled, **{values: 3})
    assert "(s)" not in texts.get("en", key, **filled, **{values: 1})


def test_no_english_text_counts_with_s_in_brackets() -> None:
    texts = Texts()
    assert [key for key in sorted(texts.keys()) if "(s)" in texts.get("en", key)] == []


def test_a_city_overrides_a_text_in_each_language_it_names() -> None:
    texts = Texts({"zh": {"report_intro": "开始举报（芙蓉区试点）。"}})
    assert texts.get("zh", "report_intro") == "开始举报（芙蓉区试点）。"
    assert texts.get("en", "report_intro") == Texts().get("en", "report_intro")
    assert texts.get("zh", "ask_place") == Texts().get("zh", "ask_place")


def test_a_text_added_in_only_one_language_is_refused() -> None:
    with pytest.raises(ValueError, match=r"texts missing in one language: \['holiday_notice'\]"):
        Texts({"zh": {"holiday_notice": "春节期间受理时间顺延。"}})
    both = Texts({"zh": {"holiday_notice": "春节期间受理时间顺延。"},
                  "en": {"holiday_notice": "Deadlines move back over the Spring Festival."}})
    assert both.get("en", "holiday_notice") == "Deadlines move back over the Spring Festival."


def test_a_channel_sees_its_variant_of_a_text_unless_the_city_rewrote_the_text_alone() -> None:
    """WeChat's residents cannot send a PDF or press a button: the texts that ask for them have WeChat variants."""
    texts = Texts()
    assert "PDF" in texts.get("zh", "ask_evidence", maximum=5, limit_mb=10)
    assert "PDF" in texts.get_on("telegram", "zh", "ask_evidence", maximum=5, limit_mb=10)
    assert texts.get_on("wechat", "zh", "ask_evidence", maximum=5, limit_mb=10) == \
        "第5步（可跳过）：如有照片证据，可直接发送（最多5张，每张不超过10MB）。发送完毕后回复“完成”。"
    assert texts.get_on("wechat", "en", "error_unexpected_input") == texts.get("en", "error_unexpected_input_on_wechat")
    rewritten = Texts({"zh": {"ask_follow_up": "请发送补充材料。"}})
    assert rewritten.get_on("wechat", "zh", "ask_follow_up") == "请发送补充材料。"  # the city's words, not ours
    assert rewritten.get_on("wechat", "en", "ask_follow_up") == \
        "Send the text or photos you want to add, then reply “Done”."
    both = Texts({"zh": {"ask_follow_up": "请发送补充材料。", "ask_follow_up_on_wechat": "请发送补充的文字或照片。"}})
    assert both.get_on("wechat", "zh", "ask_follow_up") == "请发送补充的文字或照片。"


def test_every_channel_variant_is_of_a_text_there_is() -> None:
    texts = Texts()
    assert [key for key in sorted(texts.keys()) if "_on_" in key and key.split("_on_")[0] not in texts.keys()] == []
