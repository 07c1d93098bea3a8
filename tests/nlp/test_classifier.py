from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pytest

from nlp.artifact import MODEL_FILE
from nlp.classifier import CONTRAST_MARGIN, Classifier
from nlp.corpus import load_seed_corpus
from nlp.errors import ModelFormatError, ModelIntegrityError, ModelNotFoundError
from nlp.explain import _read_filler
from nlp.registry import ModelInfo
from nlp.tokenizer import normalise, stop_words
from nlp.types import Tag

ROBUSTNESS_INPUTS = {
    "empty": "",
    "whitespace": " \t\n ",
    "emoji only": "😀😭🙏🏻👍" * 3,
    "100,000 characters": "村里的低保名额给了村干部的亲戚，" * 6250,
    "mixed scripts": "Hello 你好 Привет مرحبا こんにちは 안녕하세요 ½ ℃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "control characters": "\x00\x01\x02\x1b[31m医院\x7f\x0b\x0c乱收费\u200b\u202e\ufeff",
    "only punctuation": "！？。，、；：“”‘’（）【】《》…—!?.,;:'\"()[]{}<>/\\|@#$%^&*~`",
    "lone surrogates": "\ud800\udfff医保卡\udc00",
    "private use": "\ue000\uf8ff",
    "one character": "钱",
    "digits": "1234567890",
}


def _check_tag(tag: Tag, classifier: Classifier) -> None:
    assert tag.label in classifier.labels
    assert 0.0 <= tag.confidence <= 1.0
    assert tag.model_version == classifier.version
    assert 1 <= len(tag.top) <= 3
    assert tag.top[0] == (tag.label, tag.confidence)
    assert [score for _, score in tag.top] == sorted((score for _, score in tag.top), reverse=True)


def test_predictions_are_the_pipelines_own(classifier: Classifier) -> None:
    texts = [e.text for e in load_seed_corpus("eval")]
    np.testing.assert_array_equal(classifier.predict_proba(texts), classifier.pipeline.predict_proba(texts))
    tags = classifier.classify_many(texts)
    assert [t.label for t in tags] == list(classifier.pipeline.predict(texts))


def test_quote_styles_do_not_change_the_answer(classifier: Classifier) -> None:
    curly = classifier.classify("科长说“这个事不归我们管”，让我去找街道。")
    straight = classifier.classify('科长说"这个事不归我们管",让我去找街道。')  # ASCII quotes and comma
    assert curly.top == classifier.classify('科长说"这个事不归我们管"，让我去找街道。').top
    assert curly.top == straight.top


def test_tag_contract(classifier: Classifier) -> None:
    tag = classifier.classify("我们村的村支书把低保名额都给了他自己的亲戚，村务公开栏从来不贴名单")
    _check_tag(tag, classifier)
    assert tag.label == "village_affairs"
    assert len(tag.top) == 3
    assert sum(score for _, score in tag.top) <= 1.0 + 1e-9
    assert "低保" in tag.terms or "低保名额" in tag.terms


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("医院骨科医生收病人红包，不给红包就拖着不排手术", "medical"),
        ("班主任周末在家里办补习班，一个学期收三千块，不去上课的孩子座位被调到最后一排", "education"),
        ("Our village committee never publishes the accounts; the village head sold collective land",
         "village_affairs"),
        ("这个工程围标串标，中标的公司是挂靠资质的，工人工资拖了半年没发", "project_irregularity"),
    ],
)
def test_clear_reports(classifier: Classifier, text: str, label: str) -> None:
    assert classifier.classify(text).label == label


def test_key_terms_are_phrases_of_the_text_without_filler(classifier: Classifier) -> None:
    hidden = stop_words() | _read_filler()
    examples = load_seed_corpus("eval")
    tags = classifier.classify_many([e.text for e in examples])
    assert sum(1 for tag in tags if tag.terms) >= 0.95 * len(tags)  # almost every report has some
    for example, tag in zip(examples, tags, strict=True):
        assert len(tag.terms) <= 5, example.id
        text = normalise(example.text)
        for term in [*tag.terms, *tag.contrast_terms]:
            assert term in text, (term, example.id)
            assert len(term) >= 2 and term not in hidden, (term, example.id)


def test_a_close_runner_up_is_named_with_the_phrases_against_it(classifier: Classifier) -> None:
    tags = classifier.classify_many([e.text for e in load_seed_corpus("eval")])
    close = [t for t in tags if t.top[1][1] >= t.top[0][1] - CONTRAST_MARGIN]
    assert close, "the evaluation split has reports with a close runner-up"
    for tag in tags:
        if tag in close:
            assert tag.runner_up == tag.top[1][0] and tag.contrast_terms
        else:
            assert (tag.runner_up, tag.contrast_terms) == (None, [])


def test_money_at_a_window_is_bribery_and_the_money_is_a_key_term(classifier: Classifier) -> None:
    tag = classifier.classify("办证窗口的工作人员故意刁难，材料齐全也不给办，私下暗示我送个红包就能当天拿证")
    assert tag.label == "bribery_gifts"
    assert "红包" in tag.terms


@pytest.mark.parametrize("name", list(ROBUSTNESS_INPUTS))
def test_any_input_gets_an_answer(classifier: Classifier, name: str) -> None:
    _check_tag(classifier.classify(ROBUSTNESS_INPUTS[name]), classifier)


def test_text_without_known_features_gets_the_uniform_answer(classifier: Classifier) -> None:
    tag = classifier.classify("")
    assert tag.label == "other"
    assert tag.confidence == pytest.approx(1 / len(classifier.labels))
    assert tag.terms == []


def test_classify_many_equals_classify(classifier: Classifier) -> None:
    texts = [e.text for e in load_seed_corpus("eval")[:30]] + list(ROBUSTNESS_INPUTS.values())
    assert classifier.classify_many(texts) == [classifier.classify(t) for t in texts]
    assert classifier.classify_many([]) == []


def test_classify_never_raises_even_when_the_model_breaks(classifier: Classifier) -> None:
    broken = Classifier(copy.deepcopy(classifier.pipeline), version="broken")
    del broken.pipeline.named_steps["model"].calibrated_classifiers_  # a fitted model that lost its state
    tag = broken.classify("医院乱收费")
    assert (tag.label, tag.confidence) == ("other", 0.0)
    assert [t.confidence for t in broken.classify_many(["医院乱收费", "学校乱收费"])] == [0.0, 0.0]


def test_saved_model_loads_verified(saved_models: tuple[Path, ModelInfo], classifier: Classifier) -> None:
    _, info = saved_models
    loaded = Classifier.load(info.path)
    assert loaded.version == info.version
    assert loaded.labels == classifier.labels
    texts = [e.text for e in load_seed_corpus("eval")] + list(ROBUSTNESS_INPUTS.values())
    assert loaded.classify_many(texts) == [dataclasses.replace(t, model_version=loaded.version)
                                           for t in classifier.classify_many(texts)]


def test_tampered_artifact_is_refused_before_unpickling(saved_models: tuple[Path, ModelInfo], tmp_path: Path) -> None:
    _, info = saved_models
    copy_dir = tmp_path / info.version
    shutil.copytree(info.path, copy_dir)
    with (copy_dir / MODEL_FILE).open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="does not match the sha256"):
        Classifier.load(copy_dir)


def test_broken_metadata(saved_models: tuple[Path, ModelInfo], tmp_path: Path) -> None:
    _, info = saved_models
    copy_dir = tmp_path / info.version
    shutil.copytree(info.path, copy_dir)
    (copy_dir / "metadata.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelIntegrityError):
        Classifier.load(copy_dir)
    (copy_dir / "metadata.json").write_text(json.dumps({"version": "x"}), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        Classifier.load(copy_dir)
    with pytest.raises(ModelNotFoundError):
        Classifier.load(tmp_path / "missing")


def test_a_model_saved_with_another_scikit_learn_is_refused_naming_both(saved_models: tuple[Path, ModelInfo],
                                                                       tmp_path: Path) -> None:
    _, info = saved_models
    copy_dir = tmp_path / info.version
    shutil.copytree(info.path, copy_dir)
    metadata = json.loads((copy_dir / "metadata.json").read_text(encoding="utf-8"))
    metadata["library_versions"]["scikit-learn"] = "1.5.2"
    (copy_dir / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    installed = importlib_metadata.version("scikit-learn")
    with pytest.raises(ModelFormatError) as refused:
        Classifier.load(copy_dir)
    assert str(refused.value) == (
        f"model {info.version} was saved with scikit-learn 1.5.2, but scikit-learn {installed} is installed: "
        "train a new model with `qinglian model train` (or let `qinglian serve` train the default one), "
        "or install scikit-learn==1.5.2")


def test_a_model_of_the_compiled_format_is_refused_clearly(tmp_path: Path,
                                                          old_format_model: Callable[[Path], Path]) -> None:
    old = old_format_model(tmp_path / "20250101-000000-abcdef")
    with pytest.raises(ModelFormatError, match=r"saved by an earlier version of Qinglian \(model\.joblib \+ "
                                               r"compiled\.npz\), which this version does not load"):
        Classifier.load(old)
