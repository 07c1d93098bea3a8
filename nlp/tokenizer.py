"""Text normalisation and word segmentation: jieba's algorithm and dictionary with the domain dictionary and
stop words in `nlp/data/`.

Segmentation is jieba's accurate mode without its HMM guesser of unknown words (in cross-validation the HMM
made no measurable difference — the character n-gram features cover unknown words — and segmentation is about
40 % faster without it), re-implemented here in one pass (`segment`). jieba itself is not imported: its
package costs ~20 MB of memory (it imports pkg_resources) and its prefix dictionary ~70 MB. Instead the words
come from jieba's own `dict.txt`, reduced deterministically to the words of frequency ≥
`DICTIONARY_MIN_FREQUENCY` plus every single character, and the domain dictionary is added as jieba's
`add_word` would add it. The reduced dictionary is cached as a small text file in the data directory
(`jieba-dict-<frequency>-<hash>.txt`; the hash covers jieba's dict.txt, the domain dictionary, the cut-off and
the format, so a change of any of them builds a new cache). Choice of the cut-off: docs/classifier.md.

The dictionary is loaded once per process by `warm_up` (blocking, so the service calls it in a thread).
`tokenize` warms up lazily with a cache in the system's temporary directory if nobody did it before.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import re
import tempfile
import threading
import unicodedata
from pathlib import Path

from opencc import OpenCC

DATA_DIR = Path(__file__).with_name("data")
DOMAIN_DICTIONARY = DATA_DIR / "domain_dict.txt"
STOP_WORDS_FILE = DATA_DIR / "stopwords.txt"
# jieba's words of at least this frequency (of 60 million) are kept, with every single character.
DICTIONARY_MIN_FREQUENCY = 50
DICTIONARY_FORMAT = 1
JIEBA_CACHE_PREFIX = "jieba-dict-"
OLD_JIEBA_CACHE_FILE = "jieba.cache"  # jieba's own cache, written by earlier versions; no longer read

log = logging.getLogger(__name__)

# Control, format, surrogate and private-use characters become spaces; tab and newline are whitespace anyway.
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
_WHITESPACE = re.compile(r"\s+")
# Quote and dash styles carry no meaning but differ between writers and keyboards: one form each.
_PUNCTUATION_VARIANTS = str.maketrans({
    **dict.fromkeys("“”„‟«»「」『』〝〞〟", '"'),
    **dict.fromkeys("‘’‚‛", "'"),
    **dict.fromkeys("—–―‐‑‒─", "-"),
})
# jieba's `re_han_default` and `re_skip_default`
_RE_HAN = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+)", re.U)
_RE_SKIP = re.compile("(\r\n|\\s)", re.U)
_PREFIX = 1.0  # value of a prefix that is not a word in the segmentation table (log-probabilities are ≤ 0)

_lock = threading.Lock()
_table: dict[str, float] | None = None  # word → log(frequency / total); prefix of a word that is not one → _PREFIX
_unknown = 0.0  # log(1 / total): a character that is no word
_converter: OpenCC | None = None
_traditional_triggers: frozenset[str] = frozenset()
_stop_words: frozenset[str] = frozenset()


class LeadPreprocessor:
    """The normalised opening of a text: where a report usually says what it is about (its title, if any)."""

    def __init__(self, chars: int) -> None:
        self.chars = chars

    def __call__(self, text: str) -> str:
        return normalise(text)[: self.chars]

    def __repr__(self) -> str:
        return f"LeadPreprocessor({self.chars})"


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


def jieba_dictionary_file() -> Path:
    """jieba's dict.txt, found without importing jieba."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or spec.origin is None:
        raise RuntimeError("jieba is not installed")
    return Path(spec.origin).with_name("dict.txt")


def _add_word(frequencies: dict[str, int], word: str, frequency: int) -> None:
    frequencies[word] = frequency
    for stop in range(1, len(word)):
        frequencies.setdefault(word[:stop], 0)


def _suggested_frequency(frequencies: dict[str, int], total: int, word: str) -> int:
    """jieba's `suggest_freq(word)`: a frequency that keeps `word` whole."""
    log_total = math.log(total)
    table: dict[str, float] = {}  # the fragments of `word` are all that segmenting it looks up
    for start in range(len(word)):
        for stop in range(start + 1, len(word) + 1):
            frequency = frequencies.get(word[start:stop])
            if frequency is not None:
                table[word[start:stop]] = math.log(frequency) - log_total if frequency else _PREFIX
    product = 1.0
    for piece in _segment(word, table, -log_total):
        product *= frequencies.get(piece, 1) / float(total)
    return max(int(product * total) + 1, frequencies.get(word, 1))


def build_dictionary(min_frequency: int | None = None) -> tuple[dict[str, int], int]:
    """Words and frequencies (with jieba's total): jieba's dict.txt reduced to the words of frequency ≥
    `min_frequency` and every single character, then the domain dictionary added as jieba's `add_word` adds it.
    Prefixes of words map to 0, as in jieba."""
    if min_frequency is None:
        min_frequency = DICTIONARY_MIN_FREQUENCY
    frequencies: dict[str, int] = {}
    total = 0
    with jieba_dictionary_file().open(encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            word, frequency_text = line.split(" ")[:2]
            frequency = int(frequency_text)
            if frequency >= min_frequency or len(word) == 1:
                frequencies[word] = frequency
                total += frequency
                for stop in range(1, len(word)):
                    frequencies.setdefault(word[:stop], 0)
    for term in domain_terms():
        frequency = _suggested_frequency(frequencies, total, term)
        _add_word(frequencies, term, frequency)
        total += frequency
    return frequencies, total


def dictionary_cache_file(cache_dir: Path, min_frequency: int | None = None) -> Path:
    if min_frequency is None:
        min_frequency = DICTIONARY_MIN_FREQUENCY
    digest = hashlib.sha256(f"format {DICTIONARY_FORMAT}, min frequency {min_frequency}\n".encode())
    digest.update(jieba_dictionary_file().read_bytes())
    digest.update(DOMAIN_DICTIONARY.read_bytes())
    return cache_dir / f"{JIEBA_CACHE_PREFIX}{min_frequency}-{digest.hexdigest()[:16]}.txt"


def _write_cache(path: Path, frequencies: dict[str, int], total: int) -> None:
    lines = [f"# total {total}\n"]
    lines.extend(f"{word} {frequency}\n" for word, frequency in frequencies.items() if frequency)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(lines), encoding="utf-8")
    os.replace(temporary, path)


def _read_cache(path: Path) -> tuple[dict[str, float], int]:
    """The segmentation table straight from the cache file (no intermediate dictionary of frequencies)."""
    with path.open(encoding="utf-8") as lines:
        header = lines.readline().split()
        if header[:2] != ["#", "total"]:
            raise ValueError(f"{path}: not a dictionary cache")
        total = int(header[2])
        log_total = math.log(total)
        shared: dict[str, float] = {}
        table: dict[str, float] = {}
        for line in lines:
            word, _, frequency = line.rstrip("\n").rpartition(" ")
            value = shared.get(frequency)
            if value is None:
                value = shared[frequency] = math.log(int(frequency)) - log_total
            table[word] = value
    if not table or total <= 0:
        raise ValueError(f"{path}: empty dictionary cache")
    _add_prefixes(table)
    return table, total


def _add_prefixes(table: dict[str, float]) -> None:
    for word in list(table):
        for stop in range(1, len(word)):
            if word[:stop] not in table:
                table[word[:stop]] = _PREFIX


def _table_of(frequencies: dict[str, int], total: int) -> dict[str, float]:
    """The segmentation table: words → log(frequency / total), computed as jieba computes it; other prefixes →
    _PREFIX. Equal frequencies share one float object."""
    log_total = math.log(total)
    shared: dict[int, float] = {}
    table: dict[str, float] = {}
    for word, frequency in frequencies.items():
        if frequency:
            value = shared.get(frequency)
            if value is None:
                value = shared[frequency] = math.log(frequency) - log_total
            table[word] = value
    _add_prefixes(table)
    return table


def load_dictionary(cache_dir: Path | None) -> tuple[dict[str, float], int]:
    """The segmentation table of the reduced dictionary and its total, from its cache in `cache_dir` (built and
    cached there on first use)."""
    directory = cache_dir if cache_dir is not None else Path(tempfile.gettempdir()) / "qinglian-jieba"
    directory.mkdir(parents=True, exist_ok=True)
    path = dictionary_cache_file(directory)
    if path.is_file():
        try:
            return _read_cache(path)
        except (OSError, ValueError, UnicodeDecodeError) as problem:
            log.warning("rebuilding the word dictionary cache: %s", problem)
    frequencies, total = build_dictionary()
    try:
        _write_cache(path, frequencies, total)
    except OSError as problem:  # a read-only directory: work without a cache
        log.warning("cannot write the word dictionary cache %s: %s", path, problem)
    return _table_of(frequencies, total), total


def warm_up(cache_dir: Path | None = None) -> None:
    """Load the word dictionary (with the domain dictionary), stop words and OpenCC once per process (blocking).

    `cache_dir` receives the reduced dictionary's cache; None uses the system's temporary directory. Later
    calls return at once, whatever their argument.
    """
    global _table, _unknown
    _ensure_converter()
    if _table is not None:
        return
    with _lock:
        if _table is not None:
            return
        table, total = load_dictionary(cache_dir)
        _unknown = -math.log(total)
        _table = table


def is_warm() -> bool:
    return _table is not None


def _keep(token: str) -> bool:
    """A word worth a feature: not a stop word; a letter in it; single characters only if not ASCII."""
    if token in _stop_words:
        return False
    if len(token) == 1:
        return token.isalpha() and not token.isascii()
    return token.isalpha() or any(char.isalpha() for char in token)


def _segment_block(block: str, table: dict[str, float], unknown: float) -> list[str]:
    """jieba's accurate mode without HMM on one block of CJK/alphanumeric text (`Tokenizer.__cut_DAG_NO_HMM`),
    with the DAG and the best route computed in one pass: the same words, about twice as fast."""
    length = len(block)
    get = table.get
    score = [0.0] * (length + 1)
    end = [0] * (length + 1)
    for start in range(length - 1, -1, -1):
        best: float | None = None
        best_end = start
        stop = start
        fragment = block[start]
        while stop < length:
            log_probability = get(fragment)
            if log_probability is None:
                break
            if log_probability <= 0.0:  # a word (not only a prefix of one)
                candidate = log_probability + score[stop + 1]
                if best is None or candidate >= best:  # ties go to the longer word, as in jieba
                    best, best_end = candidate, stop
            stop += 1
            fragment = block[start : stop + 1]
        if best is None:
            best = unknown + score[start + 1]
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


def _segment(text: str, table: dict[str, float], unknown: float) -> list[str]:
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
                tokens.extend(_segment_block(block, table, unknown))
        elif " " not in block and block.isprintable():  # no whitespace: one token per character
            tokens.extend(block)
        else:
            for piece in _RE_SKIP.split(block):
                if _RE_SKIP.match(piece):
                    tokens.append(piece)
                else:
                    tokens.extend(piece)
    return tokens


def segment(text: str) -> list[str]:
    """jieba's `lcut(text, HMM=False)` on the reduced dictionary with the domain dictionary (every token)."""
    if _table is None:
        warm_up(None)
    assert _table is not None
    return _segment(text, _table, _unknown)


def tokenize_normalised(text: str) -> list[str]:
    """Words of text that `normalise` already produced (what the model's word features use)."""
    return [token for token in segment(text) if _keep(token)]


def tokenize(text: str) -> list[str]:
    """jieba words of the normalised text with the domain dictionary; stop words, numbers, punctuation removed."""
    return tokenize_normalised(normalise(text))
