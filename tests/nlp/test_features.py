"""What the model sees of a report (`ReportAnalyzer`): words and their bigrams, character n-grams, the opening
counted several times, the taxonomy's cues — from traditional as from simplified text — and the same tokens
after the analyzer was saved and loaded with the model."""

from __future__ import annotations

import pickle
from collections import Counter

from nlp.features import ReportAnalyzer


def test_a_report_becomes_tagged_words_bigrams_characters_and_cues() -> None:
    tokens = ReportAnalyzer()("医院收红包。窗口")
    assert {"w医院", "w收红包", "w医院 收红包", "c红包", "c医院收"} <= set(tokens)
    assert {"qmedical", "qmoney", "qmedical+money"} <= set(tokens)
    assert not any(token.startswith("l") for token in tokens)  # no opening unless asked


def test_traditional_chinese_gives_the_simplified_tokens() -> None:
    analyzer = ReportAnalyzer()
    assert analyzer("醫院收紅包。窗口") == analyzer("医院收红包。窗口")


def test_the_opening_is_counted_lead_weight_times_and_only_its_characters() -> None:
    counts = Counter(ReportAnalyzer(lead_chars=4, lead_weight=3)("医院收红包。窗口"))
    assert counts["l医院"] == 3 and counts["c医院"] == 1
    assert counts["l窗口"] == 0  # past the first four characters


def test_a_text_without_words_has_no_cues_and_the_analyzer_survives_pickling() -> None:
    analyzer = ReportAnalyzer(lead_chars=4)
    assert not any(token.startswith(("w", "q")) for token in analyzer("🙂🙂"))
    analyzer.memo = {}
    analyzer("医院收红包")
    loaded = pickle.loads(pickle.dumps(analyzer))
    assert loaded.memo is None  # the training memo is not saved with the model
    assert loaded("医院收红包") == analyzer("医院收红包")
