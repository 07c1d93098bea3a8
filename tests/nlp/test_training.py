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
    # the seed corpus's reports are short: no opening block
    assert trained.selection == {"parameter": "lead_chars", "chosen": 0, "rule": "median length of the training "
                                 "reports", "median_chars": 67.0, "threshold_chars": 150}
    assert {"python", "scikit-learn", "numpy", "jieba", "joblib"} <= set(trained.library_versions)


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


def test_long_reports_get_the_opening_block_and_fixed_parameters_skip_the_choice() -> None:
    short = _small_corpus(6)
    # the same reports three times over: every one is at least 150 characters long
    long = [Example(text="。".join([e.text] * max(3, 150 // max(len(e.text), 1) + 1)), label=e.label, id=e.id)
            for e in short]
    model = train(long)
    assert model.selection is not None and model.selection["chosen"] == 30 and model.params["lead_chars"] == 30
    assert model.selection["median_chars"] >= 150
    names = {name[0] for name in model.pipeline.named_steps["features"].get_feature_names_out()}
    assert names == {"w", "c", "l", "q"}  # words, characters, opening, cues
    fixed = train(short, params={"lead_chars": 30})
    assert fixed.selection is None and fixed.params["lead_chars"] == 30
    assert "l" not in {name[0] for name in train(short).pipeline.named_steps["features"].get_feature_names_out()}
