from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nlp.corpus import (
    BOUNDARY_RULES,
    Example,
    check_boundary_split,
    check_seed_corpus,
    draw_eval_split,
    eval_ids,
    exclude_held_out_texts,
    load_boundary_split,
    load_dataset,
    load_seed_corpus,
    near_duplicates,
    text_key,
)
from nlp.errors import DatasetError
from nlp.labels import LABELS


def test_seed_corpus_passes_its_checks() -> None:
    assert check_seed_corpus() == []


def test_eval_split_is_a_fixed_stratified_fifth_disjoint_from_training() -> None:
    train, held_out, everything = load_seed_corpus("train"), load_seed_corpus("eval"), load_seed_corpus("all")
    assert len(train) + len(held_out) == len(everything)
    assert {e.id for e in held_out} == eval_ids()
    assert not {e.id for e in train} & {e.id for e in held_out}
    assert not {text_key(e.text) for e in train} & {text_key(e.text) for e in held_out}
    totals, in_eval = Counter(e.label for e in everything), Counter(e.label for e in held_out)
    assert set(totals) == set(LABELS)
    for label in LABELS:
        assert in_eval[label] == round(0.2 * totals[label])


def test_eval_split_rule_is_deterministic_and_stratified() -> None:
    records = [{"id": f"{label}-{n:03d}", "label": label} for label in ("a", "b") for n in range(10)]
    chosen = draw_eval_split(records)
    assert chosen == draw_eval_split(list(reversed(records)))
    assert Counter(i.split("-")[0] for i in chosen) == {"a": 2, "b": 2}


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError):
        load_seed_corpus("test")  # type: ignore[arg-type]


def test_load_dataset_jsonl_with_other_field_names(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"content": "村里低保不公开", "category": "village_affairs", "id": 7},
            {"content": "你好", "category": "other"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    examples = load_dataset(path, text_field="content", label_field="category")
    assert examples == [Example(text="村里低保不公开", label="village_affairs", id="7"),
                        Example(text="你好", label="other", id="data.jsonl:2")]


def test_load_dataset_csv(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("text,label\n医院收红包,medical\n\"学校乱收费, 还不给收据\",education\n", encoding="utf-8")
    assert [(e.text, e.label) for e in load_dataset(path)] == [("医院收红包", "medical"),
                                                                ("学校乱收费, 还不给收据", "education")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "a", "label": "b"}\n{broken\n', "line 2: not JSON"),
        ('{"text": "a"}\n', "needs string fields"),
        ("[1, 2]\n", "line 1: not a JSON object"),
        ("\n", "no examples"),
    ],
)
def test_load_dataset_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_a_label_outside_the_taxonomy_is_refused_and_display_names_are_read_as_codes(tmp_path: Path) -> None:
    """Seen as an administrator: `model train --data` took "其他" (the name the console's export writes) as a tenth
    label, the model passed the promotion gate, and new reports were labelled 其他 and sent to triage."""
    exported = tmp_path / "export.csv"
    exported.write_text("描述,分类\n医院收红包,医疗医保\n窗口人员态度差,Poor counter service\n你好,其他\n",
                        encoding="utf-8")
    assert [e.label for e in load_dataset(exported, text_field="描述", label_field="分类")] == [
        "medical", "slow_service", "other"]
    typo = tmp_path / "typo.jsonl"
    typo.write_text('{"text": "医院收红包", "label": "medical"}\n{"text": "路灯坏了", "label": "其它"}\n',
                    encoding="utf-8")
    with pytest.raises(DatasetError, match=r"typo.jsonl line 2: label '其它' is not one of the taxonomy's labels "
                                           r"\(slow_service, .*, other, or their names\)"):
        load_dataset(typo)


def test_load_dataset_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl")


def test_exclude_held_out_texts_drops_evaluation_and_boundary_reports() -> None:
    held_out = load_seed_corpus("eval")[0]
    boundary = load_boundary_split()[0]
    leaked = [Example(text=f" {held_out.text.upper()} ", label=held_out.label, id="copy"),
              Example(text=boundary.text.replace("，", " ，"), label=boundary.label, id="copy-2")]
    kept, dropped = exclude_held_out_texts([*leaked, Example(text="一条新的举报", label="other")])
    assert (kept, dropped) == ([Example(text="一条新的举报", label="other")], 2)


def test_boundary_split_passes_its_checks_and_covers_every_rule_and_label() -> None:
    assert check_boundary_split() == []
    boundary = load_boundary_split()
    assert {e.rule for e in boundary} == set(BOUNDARY_RULES)
    assert {e.label for e in boundary} == set(LABELS)
    assert {e.lang for e in boundary} == {"zh", "zh-hant", "en", "mixed"}


def test_boundary_split_is_not_in_the_seed_corpus() -> None:
    seed_keys = {text_key(e.text) for e in load_seed_corpus("all")}
    seed_ids = {e.id for e in load_seed_corpus("all")}
    boundary = load_boundary_split()
    assert not {text_key(e.text) for e in boundary} & seed_keys
    assert not {e.id for e in boundary} & seed_ids


def test_near_duplicates() -> None:
    texts = ["村里的低保名额都给了村主任的亲戚", "村里的低保名额都给了村主任的亲戚。", "医院的医生收红包"]
    assert [(i, j) for i, j, _ in near_duplicates(texts)] == [(0, 1)]


def test_a_boundary_file_with_a_line_that_is_not_an_object_is_refused_by_line(tmp_path: Path) -> None:
    """An administrator editing the boundary split by hand got a Python TypeError for a line holding a JSON array;
    it now names the file and the line, as the seed corpus and `--data` files do."""
    path = tmp_path / "boundary.jsonl"
    path.write_text('{"id": "b1", "text": "医院收红包", "label": "medical"}\n["医院", "medical"]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"boundary\.jsonl line 2: not a JSON object"):
        load_boundary_split(path)
