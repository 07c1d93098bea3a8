"""Text normalisation and word segmentation: jieba with the domain dictionary and stop words in `nlp/data/`.

jieba runs without its HMM guesser of unknown words: in cross-validation it made no measurable difference
(the character n-gram features cover unknown words) and segmentation is about 40 % faster without it.

jieba's dictionary is loaded once per process by `warm_up` (about a second; blocking, so the service calls it
in a thread). `tokenize` warms up lazily with jieba's default cache location if nobody did it before.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from pathlib import Path

import jieba
from opencc import OpenCC

DATA_DIR = Path(__file__).with_name("data")
DOMAIN_DICTIONARY = DATA_DIR / "domain_dict.txt"
STOP_WORDS_FILE = DATA_DIR / "stopwords.txt"
JIEBA_CACHE_FILE = "jieba.cache"

# Control, format, surrogate and private-use characters become spaces; tab and newline are whitespace anyway.
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
_WHITESPACE = re.compile(r"\s+")
# Quote and dash styles carry no meaning but differ between writers and keyboards: one form each.
_PUNCTUATION_VARIANTS = str.maketrans({
    **dict.fromkeys("“”„‟«»「」『』〝〞〟", '"'),
    **dict.fromkeys("‘’‚‛", "'"),
    **dict.fromkeys("—–―‐‑‒─", "-"),
})

_lock = threading.Lock()
_segmenter: jieba.Tokenizer | None = None
_log_total = 0.0
# log(frequency / total) of the dictionary words met so far; bounded by the dictionary's size
_log_probabilities: dict[str, float] = {}
_converter: OpenCC | None = None
_traditional_triggers: frozenset[str] = frozenset()
_stop_words: frozenset[str] = frozenset()


def _read_word_list(path: Path) -> list[str]:
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return words


def domain_terms() -> list[str]:
    """The terms of the domain dictionary (first field of each line)."""
    return [line.split()[0] for line in _read_word_list(DOMAIN_DICTIONARY)]


def stop_words() -> frozenset[str]:
    _ensure_converter()
    return _stop_words


def _load_converter() -> tuple[OpenCC, frozenset[str]]:
    """OpenCC t2s plus the characters whose presence means conversion could change the text.

    Converting costs about a microsecond per character in pure Python; most reports are already simplified,
    so text without any of these characters skips it. The set is every traditional character that maps to
    something else, plus one character of every phrase that converts differently from its characters.
    """
    converter = OpenCC("t2s")
    import opencc

    dictionary_dir = Path(opencc.__file__).with_name("dictionary")
    characters: dict[str, str] = {}
    for line in (dictionary_dir / "TSCharacters.txt").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("\t")
        characters[key] = value
    triggers = {key for key, value in characters.items() if value.split(" ")[0] != key}
    for line in (dictionary_dir / "TSPhrases.txt").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("\t")
        if key and value.split(" ")[0] != key and triggers.isdisjoint(key):
            # Any one character of the phrase will do: prefer a traditional form, rare in simplified text.
            triggers.add(next((char for char in key if char in characters), key[0]))
    return converter, frozenset(triggers)


def _ensure_converter() -> OpenCC:
    global _converter, _traditional_triggers, _stop_words
    if _converter is None:
        with _lock:
            if _converter is None:
                _stop_words = frozenset(_read_word_list(STOP_WORDS_FILE))
                converter, triggers = _load_converter()
                _traditional_triggers = triggers
                _converter = converter
    return _converter


def normalise(text: str) -> str:
    """Full-width → half-width (NFKC), traditional → simplified, English lower-cased, whitespace collapsed,
    one form of quotation mark and dash.

    Control, format, surrogate and private-use characters are replaced by spaces, so any `str` is safe.
    """
    converter = _ensure_converter()
    if not text:
        return ""
    if not text.isprintable():
        text = "".join(" " if unicodedata.category(char) in _REMOVED_CATEGORIES else char for char in text)
    text = unicodedata.normalize("NFKC", text)
    if not _traditional_triggers.isdisjoint(text):
        text = converter.convert(text)
    text = text.lower().translate(_PUNCTUATION_VARIANTS)
    return _WHITESPACE.sub(" ", text).strip()


def warm_up(cache_dir: Path | None = None) -> None:
    """Load jieba's dictionary, the domain dictionary, stop words and OpenCC once per process (blocking).

    `cache_dir` receives jieba's dictionary cache (`jieba.cache`); None leaves jieba's default (the system's
    temporary directory). Later calls return at once, whatever their argument.
    """
    global _segmenter
    _ensure_converter()
    if _segmenter is not None:
        return
    with _lock:
        if _segmenter is not None:
            return
        logging.getLogger("jieba").setLevel(logging.WARNING)
        segmenter = jieba.Tokenizer()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            segmenter.tmp_dir = str(cache_dir)
            segmenter.cache_file = JIEBA_CACHE_FILE
        segmenter.initialize()
        for term in domain_terms():
            segmenter.add_word(term)
        global _log_total
        _log_total = math.log(segmenter.total)
        _segmenter = segmenter


def is_warm() -> bool:
    return _segmenter is not None


def _keep(token: str) -> bool:
    """A word worth a feature: not a stop word; a letter in it; single characters only if not ASCII."""
    if token in _stop_words:
        return False
    if len(token) == 1:
        return token.isalpha() and not token.isascii()
    return token.isalpha() or any(char.isalpha() for char in token)


def _segment_block(block: str, frequencies: dict[str, int]) -> list[str]:
    """jieba's accurate mode without HMM on one block of CJK/alphanumeric text (`Tokenizer.__cut_DAG_NO_HMM`),
    with the DAG and the best route computed in one pass: the same words, about twice as fast."""
    length = len(block)
    log = math.log
    log_total = _log_total
    log_probabilities = _log_probabilities
    score = [0.0] * (length + 1)
    end = [0] * (length + 1)
    for start in range(length - 1, -1, -1):
        best: float | None = None
        best_end = start
        stop = start
        fragment = block[start]
        while stop < length:
            frequency = frequencies.get(fragment)
            if frequency is None:
                break
            if frequency:
                log_probability = log_probabilities.get(fragment)
                if log_probability is None:
                    log_probability = log_probabilities[fragment] = log(frequency) - log_total
                candidate = log_probability + score[stop + 1]
                if best is None or candidate >= best:  # ties go to the longer word, as in jieba
                    best, best_end = candidate, stop
            stop += 1
            fragment = block[start : stop + 1]
        if best is None:
            best = log(frequencies.get(block[start]) or 1) - log_total + score[start + 1]
        score[start], end[start] = best, best_end
    words: list[str] = []
    latin = ""
    position = 0
    while position < length:
        following = end[position] + 1
        word = block[position:following]
        if following - position == 1 and word.isascii() and word.isalnum():
            latin += word  # single ASCII letters and digits in a row form one word, as in jieba
        else:
            if latin:
                words.append(latin)
                latin = ""
            words.append(word)
        position = following
    if latin:
        words.append(latin)
    return words


_RE_HAN = jieba.re_han_default
_RE_SKIP = jieba.re_skip_default


def segment(text: str) -> list[str]:
    """jieba's `lcut(text, HMM=False)` with the domain dictionary (every token, nothing removed)."""
    if _segmenter is None:
        warm_up(None)
    assert _segmenter is not None
    frequencies = _segmenter.FREQ
    tokens: list[str] = []
    # The pattern captures, so the split alternates: other characters at even positions, CJK/alphanumeric
    # runs at odd ones.
    for number, block in enumerate(_RE_HAN.split(text)):
        if not block:
            continue
        if number % 2:
            if len(block) == 1:
                tokens.append(block)
            else:
                tokens.extend(_segment_block(block, frequencies))
        elif " " not in block and block.isprintable():  # no whitespace: one token per character
            tokens.extend(block)
        else:
            for piece in _RE_SKIP.split(block):
                if _RE_SKIP.match(piece):
                    tokens.append(piece)
                else:
                    tokens.extend(piece)
    return tokens


def tokenize_normalised(text: str) -> list[str]:
    """Words of text that `normalise` already produced (what the model's word features use)."""
    return [token for token in segment(text) if _keep(token)]


def tokenize(text: str) -> list[str]:
    """jieba words of the normalised text with the domain dictionary; stop words, numbers, punctuation removed."""
    return tokenize_normalised(normalise(text))
