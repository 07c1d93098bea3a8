from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nlp.classifier import COMPILED_FILE, MAX_TEXT_CHARS, Classifier
from nlp.corpus import Example, load_seed_corpus
from nlp.errors import ModelIntegrityError, ModelNotFoundError
from nlp.registry import ModelInfo
from nlp.tokenizer import normalise
from nlp.training import train
from nlp.types import Tag

REPO = Path(__file__).resolve().parents[2]

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


def test_fast_path_computes_exactly_what_the_pipeline_computes(classifier: Classifier) -> None:
    texts = [e.text for e in load_seed_corpus("eval")] + [t for t in ROBUSTNESS_INPUTS.values() if normalise(t)]
    texts = [t[:MAX_TEXT_CHARS] for t in texts]
    fast = classifier.predict_proba(texts)
    slow = classifier.pipeline.predict_proba(texts)
    # the compiled weights are single precision (memory of the serving process): equal to 1e-6
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6)
    assert (fast.argmax(axis=1) == slow.argmax(axis=1)).all()


def test_fast_path_with_every_block_kind() -> None:
    """A model with the opening block and `char` n-grams compiles to the same probabilities."""
    by_label: dict[str, list[Example]] = {}
    for example in load_seed_corpus("train"):
        by_label.setdefault(example.label, []).append(example)
    small = [e for examples in by_label.values() for e in examples[:15]]
    model = train(small, params={"lead_chars": 12, "char_analyzer": "char", "word_ngram_max": 3, "min_df": 1})
    compiled = Classifier(model.pipeline)
    assert compiled._compiled is not None and [b.lead_chars for b in compiled._compiled.blocks] == [None, None, 12]
    texts = [e.text for e in load_seed_corpus("eval")[:60]]
    np.testing.assert_allclose(compiled.predict_proba(texts), model.pipeline.predict_proba(texts), rtol=0, atol=1e-6)


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


def test_key_terms_are_words_of_the_text(classifier: Classifier) -> None:
    for example in load_seed_corpus("eval")[:80]:
        tag = classifier.classify(example.text)
        assert len(tag.terms) <= 5
        text = normalise(example.text)
        for term in tag.terms:
            assert term in text, (term, example.id)


@pytest.mark.parametrize("name", list(ROBUSTNESS_INPUTS))
def test_any_input_gets_an_answer(classifier: Classifier, name: str) -> None:
    started = time.perf_counter()
    tag = classifier.classify(ROBUSTNESS_INPUTS[name])
    assert time.perf_counter() - started < 1.0
    _check_tag(tag, classifier)


def test_text_without_known_features_gets_the_uniform_answer(classifier: Classifier) -> None:
    tag = classifier.classify("")
    assert tag.label == "other"
    assert tag.confidence == pytest.approx(1 / len(classifier.labels))
    assert tag.terms == []


def test_classify_many_equals_classify(classifier: Classifier) -> None:
    texts = [e.text for e in load_seed_corpus("eval")[:30]] + list(ROBUSTNESS_INPUTS.values())
    assert classifier.classify_many(texts) == [classifier.classify(t) for t in texts]
    assert classifier.classify_many([]) == []


def test_classify_never_raises_even_when_the_model_breaks(classifier: Classifier,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Classifier(classifier.pipeline, version="broken")

    def explode(*_args: object) -> None:
        raise RuntimeError("boom")

    assert broken._compiled is not None
    monkeypatch.setattr(broken._compiled, "features_many", explode)
    tag = broken.classify("医院乱收费")
    assert (tag.label, tag.confidence) == ("other", 0.0)


def test_saved_model_loads_verified_and_quickly(saved_models: tuple[Path, ModelInfo], classifier: Classifier) -> None:
    _, info = saved_models
    started = time.perf_counter()
    loaded = Classifier.load(info.path)
    assert time.perf_counter() - started < 1.0
    assert loaded.version == info.version
    text = "窗口工作人员态度恶劣，材料齐全还让我回去补"
    assert loaded.classify(text).top == classifier.classify(text).top


def test_tampered_artifact_is_refused_before_unpickling(saved_models: tuple[Path, ModelInfo], tmp_path: Path) -> None:
    _, info = saved_models
    copy = tmp_path / info.version
    shutil.copytree(info.path, copy)
    with (copy / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="does not match the sha256"):
        Classifier.load(copy)


def test_broken_metadata(saved_models: tuple[Path, ModelInfo], tmp_path: Path) -> None:
    _, info = saved_models
    copy = tmp_path / info.version
    shutil.copytree(info.path, copy)
    (copy / "metadata.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelIntegrityError):
        Classifier.load(copy)
    (copy / "metadata.json").write_text(json.dumps({"version": "x"}), encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        Classifier.load(copy)
    with pytest.raises(ModelNotFoundError):
        Classifier.load(tmp_path / "missing")


def test_classify_many_without_terms(classifier: Classifier) -> None:
    texts = [e.text for e in load_seed_corpus("eval")[:20]]
    with_terms = classifier.classify_many(texts)
    without = classifier.classify_many(texts, terms=False)
    assert [t.top for t in without] == [t.top for t in with_terms]
    assert all(t.terms == [] for t in without)


def test_loaded_model_serves_from_the_compiled_arrays_like_the_pipeline(
        saved_models: tuple[Path, ModelInfo], classifier: Classifier) -> None:
    _, info = saved_models
    loaded = Classifier.load(info.path)
    assert loaded._pipeline is None and loaded._compiled is not None  # nothing unpickled
    texts = [e.text for e in load_seed_corpus("eval")] + [t for t in ROBUSTNESS_INPUTS.values() if normalise(t)]
    texts = [t[:MAX_TEXT_CHARS] for t in texts]
    np.testing.assert_allclose(loaded.predict_proba(texts), classifier.pipeline.predict_proba(texts),
                               rtol=0, atol=1e-6)
    assert loaded.classify_many(texts) == [
        Tag(t.label, t.confidence, t.top, t.terms, loaded.version) for t in classifier.classify_many(texts)]
    assert loaded.labels == classifier.labels


def test_serving_load_imports_neither_sklearn_nor_scipy(saved_models: tuple[Path, ModelInfo],
                                                        jieba_cache_dir: Path) -> None:
    _, info = saved_models
    script = (
        "import sys; from pathlib import Path\n"
        "from nlp.tokenizer import warm_up; from nlp.registry import ModelRegistry\n"
        "warm_up(Path(sys.argv[2]))\n"
        "tag = ModelRegistry(Path(sys.argv[1]).parent).load(Path(sys.argv[1]).name).classify('医院收红包')\n"
        "print(tag.label, sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy', 'jieba')))"
    )
    result = subprocess.run([sys.executable, "-c", script, str(info.path), str(jieba_cache_dir)],
                            capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 1)[1].strip() == "[]"


def test_tampered_compiled_arrays_are_refused(saved_models: tuple[Path, ModelInfo], tmp_path: Path) -> None:
    _, info = saved_models
    copy = tmp_path / info.version
    shutil.copytree(info.path, copy)
    with (copy / COMPILED_FILE).open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match=r"compiled\.npz does not match the sha256"):
        Classifier.load(copy)


def test_model_saved_without_compiled_arrays_still_loads(saved_models: tuple[Path, ModelInfo], tmp_path: Path,
                                                         classifier: Classifier) -> None:
    """A model of an older version (pipeline only) is served through its pipeline."""
    _, info = saved_models
    copy = tmp_path / info.version
    shutil.copytree(info.path, copy)
    (copy / COMPILED_FILE).unlink()
    metadata = json.loads((copy / "metadata.json").read_text(encoding="utf-8"))
    del metadata["compiled_sha256"], metadata["compiled_format"]
    (copy / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    loaded = Classifier.load(copy)
    assert loaded._pipeline is not None
    text = "窗口工作人员态度恶劣，材料齐全还让我回去补"
    assert loaded.classify(text).top == classifier.classify(text).top
