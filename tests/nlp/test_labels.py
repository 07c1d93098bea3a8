"""The product's label codes and their display names (`nlp.labels`), exactly as taxonomy.md lists them: the nine
codes in the taxonomy's order, each with its Chinese and English name; a code the product does not know is shown
as itself; `other` is the label of a report the classifier has no evidence for."""

from __future__ import annotations

import pytest

from nlp.labels import FALLBACK_LABEL, LABELS, display_name

# taxonomy.md, "Labels": code | 中文 | English
TAXONOMY = [
    ("slow_service", "窗口服务问题", "Poor counter service"),
    ("lazy_procrastination", "庸懒散拖", "Inaction and procrastination"),
    ("formalism", "形式主义官僚主义", "Formalism and bureaucracy"),
    ("project_irregularity", "工程项目违规", "Project irregularity"),
    ("village_affairs", "基层小微权力", "Village and community affairs"),
    ("medical", "医疗医保", "Hospitals and medical insurance"),
    ("education", "教育领域", "Schools and education"),
    ("bribery_gifts", "吃拿卡要与违规收送", "Bribes, gifts and banquets"),
    ("other", "其他", "Other / not a misconduct report"),
]


def test_the_labels_are_the_taxonomys_codes_in_its_order_with_its_names() -> None:
    assert [(code, zh, en) for code, (zh, en) in LABELS.items()] == TAXONOMY


@pytest.mark.parametrize(("code", "zh", "en"), TAXONOMY)
def test_a_label_is_shown_in_chinese_by_default_and_in_english_when_asked(code: str, zh: str, en: str) -> None:
    assert display_name(code) == zh
    assert display_name(code, "zh") == zh
    assert display_name(code, "en") == en


@pytest.mark.parametrize("code", ["unknown_label", "", "Medical", "district_furong", "clean_hall"])
def test_a_code_that_is_not_a_label_is_shown_as_it_is(code: str) -> None:
    assert display_name(code) == code
    assert display_name(code, "en") == code


def test_the_fallback_label_is_other_not_a_misconduct_report() -> None:
    assert FALLBACK_LABEL == "other"
    assert display_name(FALLBACK_LABEL) == "其他"
    assert display_name(FALLBACK_LABEL, "en") == "Other / not a misconduct report"
