from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jieba
import pytest

from nlp import tokenizer
from nlp.corpus import load_seed_corpus
from nlp.tokenizer import domain_terms, normalise, stop_words, tokenize

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _warm(jieba_cache_dir: Path) -> None:
    """Every test here runs with jieba loaded (once per session)."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＡＢＣ１２３，全角！", "abc123,全角!"),
        ("醫院裡的醫保卡被盜刷", "医院里的医保卡被盗刷"),
        ("學校亂收費，老師收紅包", "学校乱收费,老师收红包"),
        ("Medical Insurance CARD", "medical insurance card"),
        ("  多个\t空白\n\n换行  ", "多个 空白 换行"),
        ("控制\x00字符\x07和\u200b零宽", "控制 字符 和 零宽"),
        ("孤立代理\ud800字符", "孤立代理 字符"),
        ("一目瞭然", "一目了然"),
        ("他说“明天再来”——「好的」‘ok’", '他说"明天再来"--"好的"\'ok\''),
        ("沈默", "沉默"),
        ("", ""),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_normalise_skips_conversion_only_when_it_would_change_nothing() -> None:
    converter = tokenizer._ensure_converter()
    for example in load_seed_corpus("all"):
        text = example.text
        assert normalise(text) == " ".join(converter.convert(normalise(text)).split())


@pytest.mark.parametrize("term", ["挂靠", "低保", "宅基地", "三资", "吃拿卡要", "推诿扯皮", "红包", "医保卡", "留痕"])
def test_domain_terms_stay_whole(term: str) -> None:
    assert term in domain_terms()
    assert term in tokenize(f"他们说这是{term}的问题，我不同意")


def test_tokenize_removes_stop_words_numbers_and_punctuation() -> None:
    tokens = tokenize("我们的村干部在2025年把低保给了他的亲戚！！！")
    assert tokens == ["村干部", "年", "低保", "亲戚"]
    assert not set(tokens) & stop_words()


def test_tokenize_keeps_english_words_lower_cased() -> None:
    assert tokenize("The hospital took a RED envelope, 我很生气") == ["hospital", "took", "red", "envelope", "生气"]


def test_tokenize_traditional_like_simplified() -> None:
    assert tokenize("村幹部推諉扯皮，低保戶沒拿到補貼") == tokenize("村干部推诿扯皮，低保户没拿到补贴")


@pytest.mark.parametrize("text", ["", "😀😀😀", "!!!???。。。", "\x00\x01", "   "])
def test_tokenize_of_nothing_is_empty(text: str) -> None:
    assert tokenize(text) == []


def test_segmentation_is_jiebas_own_tokenizer_with_the_domain_terms() -> None:
    segmenter = tokenizer.segmenter()
    assert isinstance(segmenter, jieba.Tokenizer)
    assert Path(segmenter.dictionary).name.startswith(tokenizer.MAIN_DICTIONARY_PREFIX)
    text = "村干部推诿扯皮，低保户的医保卡被挂靠公司拿去用了"
    assert tokenizer.segment(text) == segmenter.lcut(text, HMM=False)
    assert {"推诿扯皮", "低保户", "医保卡", "挂靠"} <= set(tokenizer.segment(text))


def test_trimmed_main_dictionary_keeps_jiebas_lines(tmp_path: Path) -> None:
    path = tokenizer.main_dictionary_file(tmp_path)
    kept = path.read_text(encoding="utf-8").splitlines()
    source = tokenizer.jieba_dictionary_file().read_text(encoding="utf-8").splitlines()
    expected = [line for line in source
                if int(line.split(" ")[1]) >= tokenizer.DICTIONARY_MIN_FREQUENCY or len(line.split(" ")[0]) == 1]
    assert kept == expected
    assert tokenizer.main_dictionary_file(tmp_path) == path  # written once


def test_warm_up_puts_the_dictionary_and_jiebas_cache_in_the_given_directory(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from nlp.tokenizer import warm_up, is_warm, tokenize\n"
        "assert not is_warm(); warm_up(Path(sys.argv[1])); assert is_warm()\n"
        "print(' '.join(tokenize('推诿扯皮的宅基地审批')))"
    )
    outputs = []
    for _ in range(2):  # builds the dictionary and jieba's cache, then reads the cache
        result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                                cwd=REPO, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "prefix dict" not in result.stderr and "Loading model" not in result.stderr  # jieba's log is silenced
        outputs.append(result.stdout.strip())
    assert outputs == ["推诿扯皮 宅基地 审批", "推诿扯皮 宅基地 审批"]
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 2
    assert names[0].startswith("jieba-main-50-") and names[1].startswith("jieba.u") and names[1].endswith(".cache")
