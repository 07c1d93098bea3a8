"""Text normalisation and word segmentation with jieba, the domain dictionary and the stop words of `nlp/data/`.

Segmentation is a `jieba.Tokenizer` in accurate mode without its HMM guesser of unknown words (in
cross-validation the HMM made no measurable difference — the character n-gram features cover unknown words —
and segmentation is faster without it). Its main dictionary is jieba's own `dict.txt` trimmed to the words of
frequency ≥ `DICTIONARY_MIN_FREQUENCY` plus every single character (the full prefix dictionary costs ~60 MB
of memory, the trimmed one ~10 MB), written once as a plain jieba dictionary file into the cache directory
(`jieba-main-<frequency>-<hash>.txt`; the hash covers jieba's dict.txt and the cut-off) and loaded through
jieba's API (`jieba.Tokenizer(dictionary=path)`, its marshal cache beside it). The domain dictionary's terms
are added with `Tokenizer.add_word`, which gives each a frequency that keeps it whole.

The tokenizer is loaded once per process by `warm_up` (blocking, so the service calls it in a thread).
`tokenize` warms up lazily with a cache in the system's temporary directory if nobody did it before.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from opencc import OpenCC

if TYPE_CHECKING:
    import jieba

DATA_DIR = Path(__file__).with_name("data")
DOMAIN_DICTIONARY = DATA_DIR / "domain_dict.txt"
STOP_WORDS_FILE = DATA_DIR / "stopwords.txt"
# jieba's words of at least this frequency (of 60 million) are kept, with every single character.
DICTIONARY_MIN_FREQUENCY = 50
MAIN_DICTIONARY_PREFIX = "jieba-main-"

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

_lock = threading.Lock()
_segmenter: jieba.Tokenizer | None = None
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


def normalise_all(texts: Iterable[str]) -> list[str]:
    """`normalise` of every text: the first step of the model's pipeline."""
    return [normalise(text) for text in texts]


def jieba_dictionary_file() -> Path:
    """jieba's dict.txt (found without importing jieba)."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or spec.origin is None:
        raise RuntimeError("jieba is not installed")
    return Path(spec.origin).with_name("dict.txt")


def main_dictionary_file(cache_dir: Path, min_frequency: int = DICTIONARY_MIN_FREQUENCY) -> Path:
    """The trimmed main dictionary in `cache_dir`, written on first use: the lines of jieba's dict.txt whose
    frequency is ≥ `min_frequency` or whose word is a single character, unchanged."""
    source = jieba_dictionary_file()
    content = source.read_bytes()
    digest = hashlib.sha256(f"min frequency {min_frequency}\n".encode() + content).hexdigest()[:16]
    path = cache_dir / f"{MAIN_DICTIONARY_PREFIX}{min_frequency}-{digest}.txt"
    if path.is_file():
        return path
    kept = []
    for line in content.decode("utf-8").splitlines():
        fields = line.split(" ")
        if len(fields) >= 2 and (int(fields[1]) >= min_frequency or len(fields[0]) == 1):
            kept.append(line + "\n")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(kept), encoding="utf-8")
    os.replace(temporary, path)
    return path


def import_jieba() -> ModuleType:
    """jieba, imported without `pkg_resources`.

    jieba opens the files it bundles through `pkg_resources` when setuptools is installed (as it is in every virtual
    environment of Python 3.11) and with `open` when it is not — its own fallback, in `jieba._compat`. Importing
    `pkg_resources` reads the metadata of every installed distribution: 12 MB and 0.3 s in every process that
    classifies, for nothing (the trimmed main dictionary is opened by its path). So `pkg_resources` is made
    unimportable (Python's documented `sys.modules[name] = None`) while jieba is imported, and importable again after.
    """
    if "jieba" in sys.modules:
        return sys.modules["jieba"]
    blocked = "pkg_resources" not in sys.modules
    if blocked:
        sys.modules["pkg_resources"] = None  # type: ignore[assignment]
    try:
        import jieba
    finally:
        if blocked and "pkg_resources" in sys.modules and sys.modules["pkg_resources"] is None:
            del sys.modules["pkg_resources"]
    return jieba


def _build_segmenter(cache_dir: Path) -> jieba.Tokenizer:
    jieba = import_jieba()
    jieba.setLogLevel(logging.WARNING)
    segmenter = jieba.Tokenizer(dictionary=str(main_dictionary_file(cache_dir)))
    segmenter.tmp_dir = str(cache_dir)
    segmenter.initialize()
    for line in _read_word_list(DOMAIN_DICTIONARY):
        fields = line.split()
        segmenter.add_word(fields[0], int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None)
    return segmenter


def warm_up(cache_dir: Path | None = None) -> None:
    """Load jieba with the trimmed main dictionary and the domain dictionary, the stop words and OpenCC, once
    per process (blocking).

    `cache_dir` receives the trimmed dictionary and jieba's cache of it; None uses the system's temporary
    directory. Later calls return at once, whatever their argument.
    """
    global _segmenter
    _ensure_converter()
    if _segmenter is not None:
        return
    with _lock:
        if _segmenter is not None:
            return
        directory = cache_dir if cache_dir is not None else Path(tempfile.gettempdir()) / "qinglian-jieba"
        directory.mkdir(parents=True, exist_ok=True)
        _segmenter = _build_segmenter(directory)


def is_warm() -> bool:
    return _segmenter is not None


def segmenter() -> jieba.Tokenizer:
    """The process's `jieba.Tokenizer` (warmed up on first use)."""
    if _segmenter is None:
        warm_up(None)
    assert _segmenter is not None
    return _segmenter


def _keep(token: str) -> bool:
    """A word worth a feature: not a stop word; a letter in it; single characters only if not ASCII."""
    if token in _stop_words:
        return False
    if len(token) == 1:
        return token.isalpha() and not token.isascii()
    return token.isalpha() or any(char.isalpha() for char in token)


@lru_cache(maxsize=16)
def _segmented(text: str) -> tuple[str, ...]:
    """The last few texts' segmentation: classifying a report and explaining it segment it once."""
    return tuple(segmenter().lcut(text, HMM=False))


def segment(text: str) -> list[str]:
    """jieba's `lcut(text, HMM=False)` with the domain dictionary (every token, spaces included)."""
    return list(_segmented(text))


def tokenize_normalised(text: str) -> list[str]:
    """Words of text that `normalise` already produced (what the model's word features use)."""
    return [token for token in _segmented(text) if _keep(token)]


def tokenize(text: str) -> list[str]:
    """jieba words of the normalised text with the domain dictionary; stop words, numbers, punctuation removed."""
    return tokenize_normalised(normalise(text))
