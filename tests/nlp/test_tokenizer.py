from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jieba
import pytest

from nlp import tokenizer
from nlp.corpus import load_seed_corpus
from nlp.tokenizer import dictionary_cache_file, domain_terms, normalise, stop_words, tokenize

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


def test_warm_up_puts_the_dictionary_cache_in_the_given_directory_once(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path; from nlp.tokenizer import warm_up, is_warm, tokenize\n"
        "assert not is_warm(); warm_up(Path(sys.argv[1])); assert is_warm()\n"
        "started = time.perf_counter(); warm_up(Path(sys.argv[1])); assert time.perf_counter() - started < 0.01\n"
        "print(' '.join(tokenize('推诿扯皮')), 'jieba' in sys.modules)"
    )
    outputs = []
    for _ in range(2):  # builds the cache, then reads it
        result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                                cwd=REPO, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.strip())
    assert outputs == ["推诿扯皮 False", "推诿扯皮 False"]  # jieba's package (and pkg_resources) never imported
    assert dictionary_cache_file(tmp_path).is_file()


def test_a_broken_dictionary_cache_is_rebuilt(tmp_path: Path) -> None:
    cache = dictionary_cache_file(tmp_path)
    cache.write_text("garbage\n", encoding="utf-8")
    table, total = tokenizer.load_dictionary(tmp_path)
    assert total > 0 and "推诿扯皮" in table
    assert cache.read_text(encoding="utf-8").startswith("# total ")


def _jieba_on_the_reduced_dictionary(directory: Path) -> jieba.Tokenizer:
    """jieba itself on the words `build_dictionary` keeps, with the domain terms added by its `add_word`."""
    import jieba

    base = directory / "base.txt"
    with tokenizer.jieba_dictionary_file().open(encoding="utf-8") as source, base.open("w", encoding="utf-8") as out:
        for line in source:
            word, frequency = line.split(" ")[:2]
            if int(frequency) >= tokenizer.DICTIONARY_MIN_FREQUENCY or len(word) == 1:
                out.write(line)
    segmenter = jieba.Tokenizer(str(base))
    segmenter.tmp_dir = str(directory)
    segmenter.initialize()
    for term in domain_terms():
        segmenter.add_word(term)
    return segmenter


def test_reduced_dictionary_is_what_jieba_builds_from_it(tmp_path: Path) -> None:
    segmenter = _jieba_on_the_reduced_dictionary(tmp_path)
    frequencies, total = tokenizer.build_dictionary()
    assert (frequencies, total) == (segmenter.FREQ, segmenter.total)
    assert tokenizer._RE_HAN.pattern == jieba.re_han_default.pattern
    assert tokenizer._RE_SKIP.pattern == jieba.re_skip_default.pattern


def test_segment_is_jieba_without_hmm(tmp_path: Path) -> None:
    segmenter = _jieba_on_the_reduced_dictionary(tmp_path)
    texts = [e.text for e in load_seed_corpus("all")] + ["abc123def 4.5% C++ #tag a_b-c", "Привет こんにちは 😀", ""]
    for text in texts:
        for variant in (text, normalise(text)):
            assert tokenizer.segment(variant) == segmenter.lcut(variant, HMM=False)
