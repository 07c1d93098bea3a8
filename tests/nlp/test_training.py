from __future__ import annotations

import random
from importlib import metadata as importlib_metadata

import numpy as np
import pytest

from nlp.classifier import Classifier
from nlp.corpus import Example, load_seed_corpus
from nlp.errors import DatasetError
from nlp.training import TrainedModel, TrainingParams, data_fingerprint, train


def _small_corpus(per_label: int) -> list[Example]:
    by_label: dict[str, list[Example]] = {}
    for example in load_seed_corpus("train"):
        by_label.setdefault(example.label, []).append(example)
    return [e for examples in by_label.values() for e in examples[:per_label]]


def test_training_records_its_metadata(trained: TrainedModel) -> None:
    train_split = load_seed_corpus("train")
    assert trained.n_examples == len(train_split)
    assert sum(trained.label_counts.values()) == len(train_split)
    assert trained.data_fingerprint == data_fingerprint(train_split)
    assert trained.params == {**TrainingParams().as_dict(), "lead_chars": 0, "calibration_folds": 5}
    assert trained.library_versions["scikit-learn"] == importlib_metadata.version("scikit-learn")
    # the opening block was weighed by 3-fold cross-validation of the training data and left out
    assert trained.selection is not None
    assert (trained.selection["parameter"], trained.selection["chosen"], trained.selection["folds"]) == (
        "lead_chars", 0, 3)
    assert set(trained.selection["scores"]) == {"0", "30"}
    assert trained.selection["scores"]["0"] >= trained.selection["scores"]["30"]
    assert {"python", "scikit-learn", "numpy", "jieba"} <= set(trained.library_versions)


def test_same_data_in_any_order_gives_the_same_predictions() -> None:
    """(The full default model's determinism: tests/nlp/test_registry.py, fresh install vs the session model.)"""
    examples = _small_corpus(20)
    shuffled = list(examples)
    random.Random(3).shuffle(shuffled)
    first, again = train(examples), train(shuffled)
    texts = [e.text for e in load_seed_corpus("eval")]
    assert again.data_fingerprint == first.data_fingerprint
    np.testing.assert_array_equal(Classifier(again.pipeline).predict_proba(texts),
                                  Classifier(first.pipeline).predict_proba(texts))


def test_fingerprint_ignores_order_but_not_labels() -> None:
    a, b = Example("甲", "x"), Example("乙", "y")
    assert data_fingerprint([a, b]) == data_fingerprint([b, a])
    assert data_fingerprint([a, b]) != data_fingerprint([a, Example("乙", "x")])


def test_small_labels_get_fewer_calibration_folds() -> None:
    model = train(_small_corpus(3))
    assert model.params["calibration_folds"] == 3
    assert model.labels == sorted({e.label for e in _small_corpus(3)})


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ([Example("一", "a"), Example("二", "a")], "at least 2 labels"),
        ([Example("一", "a"), Example("二", "a"), Example("三", "b")], "every label needs at least 2"),
    ],
)
def test_training_refuses_unusable_data(examples: list[Example], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        train(examples)


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown training parameters: colour"):
        TrainingParams.from_mapping({"colour": "red"})
    assert TrainingParams.from_mapping({"C": 0.5}).C == 0.5


def test_selection_is_deterministic_and_fixed_parameters_skip_it() -> None:
    examples = _small_corpus(12)
    first, again = train(examples), train(list(reversed(examples)))
    assert first.selection is not None and first.selection["scores"] == again.selection["scores"]
    assert first.params["lead_chars"] == again.params["lead_chars"] == first.selection["chosen"]
    fixed = train(examples, params={"lead_chars": 30})
    assert fixed.selection is None and fixed.params["lead_chars"] == 30
    names = fixed.pipeline.named_steps["features"].get_feature_names_out()
    assert {name[0] for name in names} == {"w", "c", "l", "q"}  # words, characters, opening, cues
    assert "l" not in {name[0] for name in first.pipeline.named_steps["features"].get_feature_names_out()} or \
        first.params["lead_chars"]


def test_too_few_examples_to_choose_take_the_first_candidate() -> None:
    model = train(_small_corpus(3))
    assert model.selection is None and model.params["lead_chars"] == 0
