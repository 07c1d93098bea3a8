"""The taxonomy's cues as the model sees them: which boundary rule of taxonomy.md a report's words call on,
and the phrases a reviewer is shown for a cue token."""

from __future__ import annotations

from nlp.cues import cue_tokens, phrases
from nlp.tokenizer import normalise


def _tokens(text: str) -> list[str]:
    return cue_tokens(normalise(text))


def test_money_in_a_sector_names_the_sector_rule_1() -> None:
    tokens = _tokens("医院收费窗口的医生收了我两千元红包")
    assert {"medical", "money", "medical+money", "medical-only"} <= set(tokens)
    assert not any(token.startswith("nosector") for token in tokens)


def test_money_or_an_official_car_outside_the_sectors_is_rule_2() -> None:
    assert {"nosector+money", "nosector+money+window"} <= set(_tokens("办事员暗示给红包才给办证"))
    assert "nosector+car" in _tokens("公车私用去接孩子放学")  # a school run is not the school sector
    assert "nosector+money+official" in _tokens("The official took a red envelope of 3000 yuan at the tax office")


def test_praise_spam_and_private_disputes_say_they_are_not_misconduct_rule_4() -> None:
    assert "praise-only" in _tokens("感谢派出所民警热心帮助")
    assert {"spam", "no-public-power"} <= set(_tokens("日赚500兼职刷单加微信"))
    assert {"private-only", "no-public-power"} <= set(_tokens("邻居装修噪音扰民，私人纠纷"))


def test_praise_with_a_complaint_is_not_praise_only() -> None:
    assert "praise-only" not in _tokens("感谢民警，但是窗口人员态度恶劣，我要投诉")


def test_a_cue_tokens_phrases_are_the_words_of_the_report_that_made_it() -> None:
    text = normalise("医院收费窗口的医生收了我两千元红包")
    assert set(phrases(text, "medical+money")) == {"医院", "医生", "红包"}
    english = normalise("The official took a red envelope of 3000 yuan")
    assert "envelope" in phrases(english, "nosector+money")


def test_an_english_cues_phrases_are_the_whole_words_it_starts_not_the_stem() -> None:
    text = normalise("The doctor prescribed pills, the pharmacist took a red envelopes bribe")
    assert set(phrases(text, "medical+money")) >= {"doctor", "prescribed", "pharmacist"}
    assert not any(word in phrases(text, "medical+money") for word in ("prescri", "pharmac"))


def test_an_english_cue_is_shown_as_the_text_writes_it() -> None:
    text = normalise("The low-income allowance list was decided by the village secretary alone")
    assert phrases(text, "village") == ["village", "low-income allowance"]
