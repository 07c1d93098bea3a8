"""Keyed similarity signatures: similar reports look similar, nothing readable is stored, keys separate."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nlp.similarity import (
    SIMILAR_THRESHOLD,
    Signature,
    SimilarityHasher,
    combined_score,
    place_names,
    same_place,
    similarities,
    similarity,
)

KEY = b"test key: thirty-two bytes long!"
OTHER_KEY = b"another key, also 32 bytes long!"

REPORT = ("东湖区金桂苑小区旁边新建的沥青搅拌厂每天夜里生产到凌晨三点，噪音和刺鼻的臭味让整栋楼的居民无法入睡，"
          "我们已经向街道反映了三次，一直没有人来处理。")
SAME_PROBLEM = ("金桂苑小区附近的沥青搅拌厂夜间生产，噪音很大还有臭味，老人孩子都睡不好觉，"
                "跟街道说过好几次了，希望有关部门尽快处理。")
NEAR_COPY = REPORT.replace("凌晨三点", "凌晨四点").replace("三次", "四次")
UNRELATED = ("育才实验中学的班主任要求每个学生交八百元资料费，不交的学生被安排坐在最后一排，"
             "家长们敢怒不敢言，请教育局调查。")


@pytest.fixture(scope="module")
def hasher() -> SimilarityHasher:
    return SimilarityHasher(KEY)


def test_a_report_about_the_same_problem_is_more_similar_than_an_unrelated_one(hasher: SimilarityHasher) -> None:
    report = hasher.signature(REPORT)
    assert similarity(report, hasher.signature(REPORT)) == 1.0
    same = similarity(report, hasher.signature(SAME_PROBLEM))
    unrelated = similarity(report, hasher.signature(UNRELATED))
    assert same > unrelated
    assert unrelated < 0.05


def test_a_near_copy_shares_a_band_key_and_an_unrelated_report_does_not(hasher: SimilarityHasher) -> None:
    report = hasher.signature(REPORT)
    assert len(report.band_keys) == 32
    assert set(report.band_keys) & set(hasher.signature(NEAR_COPY).band_keys)
    assert not set(report.band_keys) & set(hasher.signature(UNRELATED).band_keys)


def test_the_serialised_signature_contains_no_fragment_of_the_report(hasher: SimilarityHasher) -> None:
    place = "东湖区金桂苑小区3栋"
    blob = hasher.signature(REPORT, place).to_bytes()
    text = REPORT + place
    runs = re.findall(r"[\u4e00-\u9fff]+", text)
    fragments = {run[start:start + 2] for run in runs for start in range(len(run) - 1)}
    assert len(fragments) > 50
    for encoding in ("utf-8", "gb18030", "utf-16-le", "utf-16-be"):
        leaked = [fragment for fragment in fragments if fragment.encode(encoding) in blob]
        assert leaked == []


def test_two_keys_give_unrelated_signatures_of_the_same_text() -> None:
    first = SimilarityHasher(KEY).signature(REPORT, "金桂苑小区")
    second = SimilarityHasher(OTHER_KEY).signature(REPORT, "金桂苑小区")
    assert similarity(first, second) == 0.0
    assert set(first.band_keys) & set(second.band_keys) == set()
    assert set(first.place_keys) & set(second.place_keys) == set()
    first_terms = SimilarityHasher(KEY).term_hashes(REPORT)
    assert set(first_terms.tolist()) & set(SimilarityHasher(OTHER_KEY).term_hashes(REPORT).tolist()) == set()


def test_signatures_survive_storage(hasher: SimilarityHasher) -> None:
    signature = hasher.signature(REPORT, "金桂苑小区")
    restored = Signature.from_bytes(signature.to_bytes())
    assert np.array_equal(restored.minhash, signature.minhash)
    assert restored.band_keys == signature.band_keys
    assert restored.place_keys == signature.place_keys
    from_column = Signature.from_minhash_bytes(signature.minhash_bytes(), signature.band_keys)
    assert similarity(from_column, signature) == 1.0
    assert all(-(2**63) <= key < 2**63 for key in signature.band_keys + signature.place_keys)


def test_damaged_signature_bytes_are_refused(hasher: SimilarityHasher) -> None:
    blob = hasher.signature(REPORT).to_bytes()
    with pytest.raises(ValueError, match="expected"):
        Signature.from_bytes(blob[:-3])
    with pytest.raises(ValueError, match="format"):
        Signature.from_bytes(b"\x09" + blob[1:])
    with pytest.raises(ValueError, match="too short"):
        Signature.from_bytes(b"\x01")


def test_a_text_without_words_matches_nothing(hasher: SimilarityHasher) -> None:
    empty = hasher.signature("。。。！！")
    assert empty.is_empty()
    assert empty.band_keys == ()
    assert similarity(empty, empty) == 0.0
    assert similarity(empty, hasher.signature(REPORT)) == 0.0


def test_vectorised_similarities_agree_with_pairwise(hasher: SimilarityHasher) -> None:
    query = hasher.signature(REPORT)
    others = [hasher.signature(text) for text in (SAME_PROBLEM, NEAR_COPY, UNRELATED)]
    stacked = np.stack([other.minhash for other in others])
    assert similarities(query, stacked).tolist() == [similarity(query, other) for other in others]


@pytest.mark.parametrize(("place", "names"), [
    ("东湖区金桂苑小区附近", ("金桂苑",)),
    ("临江市东湖区金桂苑3栋2单元", ("金桂苑",)),
    ("滨江路翠湖湾", ("滨江路翠湖湾", "翠湖湾")),
    ("青松镇卫生院", ("青松镇卫生院",)),
    ("临江市东湖区市场监管局", ("东湖区市场监管局",)),
    ("北塘街道", ("北塘街道",)),
    ("", ()),
    (None, ()),
])
def test_place_names(place: str | None, names: tuple[str, ...]) -> None:
    assert place_names(place) == names


def test_same_place_through_differently_written_places(hasher: SimilarityHasher) -> None:
    first = hasher.signature(REPORT, "东湖区金桂苑小区旁边")
    second = hasher.signature(SAME_PROBLEM, "金桂苑")
    third = hasher.signature(UNRELATED, "育才实验中学")
    assert same_place(first, second)
    assert not same_place(first, third)


def test_combined_score_weighs_text_place_district_and_time() -> None:
    base = combined_score(0.15, False, False, 0)
    assert combined_score(0.15, True, False, 0) > base
    assert combined_score(0.15, False, True, 0) > base
    assert combined_score(0.15, False, False, 120) < base
    assert combined_score(0.6, True, True, 0) == pytest.approx(1.0)
    assert combined_score(0.01, False, False, 0) == 0.0
    # the same place and district without similar words is not a similar case
    assert combined_score(0.02, True, True, 0) < SIMILAR_THRESHOLD
    assert combined_score(0.2, True, True, 3) >= SIMILAR_THRESHOLD
    with pytest.raises(ValueError, match="not in"):
        combined_score(1.5, False, False, 0)


def test_the_key_must_be_long_enough_and_bands_must_divide() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SimilarityHasher(b"short")
    with pytest.raises(ValueError, match="bands"):
        SimilarityHasher(KEY, num_perm=128, bands=30)
