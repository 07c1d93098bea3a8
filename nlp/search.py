"""Words for the console's search index: what a report is found by, without its text being readable.

The index (storage/search.py) stores keyed hashes of these terms. A report's terms are the jieba words
of its place and description (`nlp.tokenizer.tokenize`: normalised, traditional characters converted,
stop words and punctuation dropped) and, for a Chinese word of three or more characters, its two-character
pieces, so that "服务中心" finds a report that says "政务服务中心"; a word that mixes Chinese with digits or
letters (the domain dictionary's "12345热线") is also indexed by its parts, so that "热线" finds it. A query's
terms are its words, a long Chinese word replaced by its pieces; a case matches when it has every term of the
query. What is found is words as jieba segments them, not arbitrary substrings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nlp.tokenizer import tokenize

_CJK_CLASS = "\u3400-\u9fff\uf900-\ufaff"
_CJK_WORD = re.compile(f"[{_CJK_CLASS}]+")
_SCRIPT_RUNS = re.compile(f"[{_CJK_CLASS}]+|[^{_CJK_CLASS}]+")


def _cjk(word: str) -> bool:
    return _CJK_WORD.fullmatch(word) is not None


def _pieces(word: str) -> list[str]:
    return [word[i:i + 2] for i in range(len(word) - 1)]


def _runs(word: str) -> list[str]:
    """A word mixing Chinese with digits or letters ("12345热线", "app下载"), cut where the script changes."""
    return [run for run in _SCRIPT_RUNS.findall(word) if run != word]


def index_terms(texts: Iterable[str]) -> set[str]:
    """Every term a case is indexed by, from its texts (place, description, follow-ups)."""
    terms: set[str] = set()
    for text in texts:
        for word in tokenize(text):
            terms.add(word)
            for part in [word, *_runs(word)]:
                if len(part) >= 2 and any(char.isalpha() for char in part):  # a number alone is never searched
                    terms.add(part)
                if len(part) >= 3 and _cjk(part):
                    terms.update(_pieces(part))
    return terms


def query_terms(query: str) -> list[str]:
    """The terms a case must all have to match `query` (empty: the query has no searchable word)."""
    terms: list[str] = []
    for word in tokenize(query):
        for term in (_pieces(word) if len(word) >= 3 and _cjk(word) else [word]):
            if term not in terms:
                terms.append(term)
    return terms
