"""Key terms (`nlp.explain`): which phrases of a report a reviewer sees underlined as the reason for its label.

Most tests explain a small pipeline of the product's shape (a `TfidfVectorizer` over `ReportAnalyzer` into a
calibrated `LinearSVC`) whose SVM weights are set by hand, so that every expected phrase and its order can be
worked out from `value × weight`; one test reads the session's model trained on the seed corpus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from nlp.explain import Explainer
from nlp.features import ReportAnalyzer
from nlp.tokenizer import normalise
from nlp.training import TrainedModel

LABELS = ("bribery_gifts", "medical", "other")
BRIBERY, MEDICAL, OTHER = 0, 1, 2


def pipeline_with(weights: Mapping[str, Sequence[float]], labels: Sequence[str] = LABELS,
                  folds: Sequence[Mapping[str, Sequence[float]]] = ()) -> Pipeline:
    """A fitted pipeline whose vocabulary is `weights`' feature names (in that order) and whose SVM gives feature
    `name` the weight `weights[name][i]` for `labels[i]`. `folds`: the weights of further members of an ensemble
    of calibrated models (`ensemble=True`), one mapping each."""
    names = list(weights)
    features = TfidfVectorizer(analyzer=ReportAnalyzer(), vocabulary=names).fit(["医院的医生"])
    members = [weights, *folds]
    rows = 2 * len(labels)
    x = np.zeros((rows, len(names)))
    for row in range(rows):
        x[row, row % len(names)] = 1.0 + row
    y = np.array([labels[row // 2] for row in range(rows)])
    model = CalibratedClassifierCV(LinearSVC(), cv=2, method="temperature", ensemble=len(members) > 1).fit(x, y)
    assert len(model.calibrated_classifiers_) == len(members)
    for calibrated, member in zip(model.calibrated_classifiers_, members, strict=True):
        coef = np.array([[member[name][i] for name in names] for i in range(len(labels))])
        # scikit-learn keeps one row (for the second label) when there are two labels
        calibrated.estimator.coef_ = coef[1:] if len(labels) == 2 else coef
    return Pipeline([("features", features), ("model", model)])


def explain(weights: Mapping[str, Sequence[float]], text: str, values: Mapping[str, float], label: int,
            against: int | None = None) -> list[str]:
    """The key terms of `text` for `label` when the features `values` names are present with those values."""
    explainer = Explainer(pipeline_with(weights))
    indices = np.array([explainer.names.index(name) for name in values], dtype=np.int32)
    return explainer.terms(normalise(text), indices, np.array(list(values.values()), dtype=np.float64), label,
                           against)


def test_the_coefficients_have_one_row_per_label_and_the_names_follow_the_vocabulary() -> None:
    explainer = Explainer(pipeline_with({"w红包": (1.0, 0.5, -1.0), "w医生": (-0.5, 2.0, 0.0)}))
    assert explainer.names == ["w红包", "w医生"]
    np.testing.assert_allclose(explainer.coefficients, [[1.0, -0.5], [0.5, 2.0], [-1.0, 0.0]])


def test_a_two_label_model_weighs_its_first_label_with_the_opposite_of_the_seconds_weights() -> None:
    weights = {"w医生": (0.0, 1.5), "w红包": (0.0, -2.0)}  # only the second label's weights are kept
    explainer = Explainer(pipeline_with(weights, labels=("bribery_gifts", "medical")))
    np.testing.assert_allclose(explainer.coefficients, [[-1.5, 2.0], [1.5, -2.0]])
    indices, values = np.array([0, 1], dtype=np.int32), np.array([1.0, 1.0])
    assert explainer.terms("医生收红包", indices, values, 0) == ["红包"]
    assert explainer.terms("医生收红包", indices, values, 1) == ["医生"]


def test_an_ensemble_of_calibrated_models_is_explained_by_their_average_weight() -> None:
    first = {"w红包": (2.0, 0.0, 0.0), "w医生": (0.0, 1.0, 0.0)}
    second = {"w红包": (0.0, 0.0, 0.0), "w医生": (0.0, 3.0, -2.0)}
    explainer = Explainer(pipeline_with(first, folds=[second]))
    np.testing.assert_allclose(explainer.coefficients, [[1.0, 0.0], [0.0, 2.0], [0.0, -1.0]])


def test_the_strongest_contributions_come_first_and_phrases_against_the_label_are_left_out() -> None:
    weights = {"w医生": (0.0, 1.0, 0.0), "w手术": (0.0, 3.0, 0.0), "w红包": (0.0, 2.0, 0.0),
               "w病人": (0.0, -1.0, 0.0), "w科室": (0.0, 0.0, 0.0)}
    text = "科室医生收病人红包才安排手术"
    # contributions (value × weight): 医生 0.9 × 1 = 0.9, 手术 0.2 × 3 = 0.6, 红包 0.4 × 2 = 0.8, 病人 < 0, 科室 0
    values = {"w医生": 0.9, "w手术": 0.2, "w红包": 0.4, "w病人": 0.5, "w科室": 0.7}
    assert explain(weights, text, values, MEDICAL) == ["医生", "红包", "手术"]
    assert explain(weights, text, values, OTHER) == []  # nothing pushed `other`


def test_at_most_five_phrases_are_shown_and_ties_are_ordered_by_the_phrase() -> None:
    words = ["医生", "红包", "手术", "病人", "科室", "床位", "主任"]
    weights = {f"w{word}": (0.0, 1.0 + (word == "主任"), 0.0) for word in words}
    text = "科室主任医生收病人红包才安排床位和手术"
    terms = explain(weights, text, {f"w{word}": 1.0 for word in words}, MEDICAL)
    # 主任 weighs twice the others; the equal ones follow in code point order: 医 床 手 病 科 红
    assert terms == ["主任", "医生", "床位", "手术", "病人"]


def test_single_characters_stop_words_filler_words_numbers_and_quantities_are_never_shown() -> None:
    hidden = ["w收", "w以及", "w问题", "w2024", "w12345", "wthe"]
    weights = {name: (0.0, 10.0, 0.0) for name in hidden} | {"w医生": (0.0, 0.1, 0.0)}
    text = "2024年医生收红包以及其他问题，打12345也没用，the doctor"
    values = {name: 1.0 for name in weights}
    assert explain(weights, text, values, MEDICAL) == ["医生"]
    explainer = Explainer(pipeline_with(weights))
    shown = ["红包", "x光", "ab", "3号窗口", "两个月不发工资"]
    never = ["问题", "情况", "以及", "钱", "a", "12", "2024", "两个", "三趟", "3月", "五千元", "２小时", "几次"]
    assert [term for term in shown + never if explainer.shown(term)] == shown


def test_a_word_bigram_is_shown_as_written_when_its_words_are_adjacent() -> None:
    weights = {"w送 红包": (0.0, 2.0, 0.0), "wvillage head": (0.0, 0.0, 1.0), "w医生": (0.0, 1.0, 0.0)}
    values = {name: 1.0 for name in weights}
    assert explain(weights, "医生让我送红包", values, MEDICAL) == ["送红包", "医生"]
    assert explain(weights, "The Village Head took the money", values, OTHER) == ["village head"]


def test_a_bigram_whose_words_are_apart_lends_half_its_weight_to_each_word() -> None:
    weights = {"w红包 医生": (0.0, 2.0, 0.0), "w医生": (0.0, 1.5, 0.0), "w送给": (0.0, 1.2, 0.0)}
    # "红包医生" is not in the text: 红包 gets 1.0 and 医生 1.0 + 1.5, so 送给 (1.2) comes between them
    assert explain(weights, "红包送给了医生", {name: 1.0 for name in weights}, MEDICAL) == ["医生", "送给", "红包"]


def test_a_character_ngram_lends_its_weight_to_the_word_of_the_text_it_occurs_in() -> None:
    # the text segments as 骨科 | 医院 | 的 | 医生 | 收红包
    weights = {"c骨": (0.0, 1.0, 0.0), "c 骨": (0.0, 1.0, 0.0), "c红": (0.0, 1.5, 0.0), "l医院": (0.0, 0.5, 0.0),
               "c科医": (0.0, 9.0, 0.0), "c牙": (0.0, 9.0, 0.0)}
    terms = explain(weights, "骨科医院的医生收红包", {name: 1.0 for name in weights}, MEDICAL)
    # 骨 (twice, one of them padded as scikit-learn's char_wb pads) → 骨科; 红 → 收红包; the opening's 医院 → 医院;
    # 科医 straddles two words and 牙 is not in the text: neither shows anything
    assert terms == ["骨科", "收红包", "医院"]


def test_a_cue_lends_its_weight_to_its_phrases_found_in_the_text() -> None:
    weights = {"qmedical+money": (0.0, 3.0, 0.0), "w红包": (0.0, 0.5, 0.0)}
    # the cue's phrases in the text are 医院, 医生 (medical) and 红包 (money): 1.0 each, 红包 1.5 with its word
    terms = explain(weights, "骨科医院的医生收红包", {name: 1.0 for name in weights}, MEDICAL)
    assert terms == ["红包", "医生", "医院"]
    assert explain({"qvillage+money": (0.0, 0.0, 1.0)}, "the village head took the money",
                   {"qvillage+money": 1.0}, OTHER) == ["money", "village"]


def test_an_english_cue_is_shown_as_whole_words_of_the_text() -> None:
    text = "The doctor prescribed it and the pharmacy sold it"
    terms = explain({"qmedical": (0.0, 1.0, 0.0)}, text, {"qmedical": 1.0}, MEDICAL)
    assert terms and "doctor" in terms
    words = normalise(text).split()
    assert [term for term in terms if not all(word in words for word in term.split())] == []


def test_a_phrase_inside_a_stronger_phrase_is_not_shown_again() -> None:
    text = "医生让我送红包"
    stronger_bigram = {"w送 红包": (0.0, 2.0, 0.0), "w红包": (0.0, 1.0, 0.0), "w医生": (0.0, 0.5, 0.0)}
    assert explain(stronger_bigram, text, {name: 1.0 for name in stronger_bigram}, MEDICAL) == ["送红包", "医生"]
    stronger_word = {"w送 红包": (0.0, 1.0, 0.0), "w红包": (0.0, 2.0, 0.0), "w医生": (0.0, 0.5, 0.0)}
    assert explain(stronger_word, text, {name: 1.0 for name in stronger_word}, MEDICAL) == ["红包", "医生"]


def test_against_the_runner_up_only_what_weighs_more_for_the_chosen_label_is_shown() -> None:
    weights = {"w红包": (1.0, 0.8, 0.0), "w医生": (0.0, 2.0, 0.0), "w手术": (0.0, 0.5, 0.5)}
    text = "医生收了红包才安排手术"
    values = {name: 1.0 for name in weights}
    assert explain(weights, text, values, MEDICAL) == ["医生", "红包", "手术"]
    # medical over bribery_gifts: 医生 +2.0, 手术 +0.5, 红包 −0.2
    assert explain(weights, text, values, MEDICAL, against=BRIBERY) == ["医生", "手术"]
    # medical over other: 医生 +2.0, 红包 +0.8, 手术 0
    assert explain(weights, text, values, MEDICAL, against=OTHER) == ["医生", "红包"]
    assert explain(weights, text, values, BRIBERY, against=MEDICAL) == ["红包"]


def test_features_of_an_unknown_kind_or_none_at_all_give_no_phrase() -> None:
    weights = {"x红包": (0.0, 5.0, 0.0), "w医生": (0.0, 1.0, 0.0)}
    assert explain(weights, "医生收红包", {"x红包": 1.0}, MEDICAL) == []
    assert explain(weights, "医生收红包", {}, MEDICAL) == []


@pytest.mark.parametrize(("word", "label"), [("w医院", "medical"), ("w老师", "education"), ("w红包", "bribery_gifts"),
                                             ("w低保", "village_affairs"), ("w窗口", "slow_service")])
def test_the_trained_model_weighs_a_sectors_own_word_most_for_that_sector(trained: TrainedModel, word: str,
                                                                         label: str) -> None:
    explainer = Explainer(trained.pipeline)
    assert len(explainer.names) == len(trained.pipeline.named_steps["features"].vocabulary_)
    weights = explainer.coefficients[:, explainer.names.index(word)]
    assert trained.labels[int(np.argmax(weights))] == label
