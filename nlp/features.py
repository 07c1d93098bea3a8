"""What the model sees of a report: the analyzer of its one `TfidfVectorizer`.

`ReportAnalyzer` turns a raw report into the tokens the vectorizer counts, each tagged by its kind:

- `w…` jieba word n-grams of the normalised text (stop words, numbers and punctuation left out; a bigram's
  words joined by a space, as scikit-learn joins them);
- `c…` character n-grams of the normalised text (scikit-learn's `char_wb` analyzer, from `build_analyzer`);
- `l…` character n-grams of its first `lead_chars` characters, where a message with a title has it (optional),
  each counted `lead_weight` times: with sublinear tf about three times a body n-gram for 8, roughly what the
  opening weighed as a separate l2-normalised block for a 400-character message;
- `q…` the taxonomy's cues (`nlp.cues`): which sectors, which kinds of money or conduct the text mentions, and
  their combinations that decide the boundary rules (optional).

One vectorizer over all of them (one idf, one l2 norm per text) scored as well in cross-validation as a
`FeatureUnion` of separate vectorizers and costs one transform instead of three when a single report is
classified (docs/classifier.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.feature_extraction.text import CountVectorizer

from nlp.cues import cue_tokens
from nlp.tokenizer import normalise, tokenize_normalised

WORD, CHAR, LEAD, CUE = "w", "c", "l", "q"


class ReportAnalyzer:
    """Raw text → tagged tokens (see the module's docstring). Picklable; `memo` (a dict, set only while
    training) keeps each distinct text's normalisation and words."""

    def __init__(self, word_ngram_max: int = 2, char_analyzer: str = "char_wb", char_ngram_min: int = 1,
                 char_ngram_max: int = 3, lead_chars: int = 0, cues: bool = True, lead_weight: int = 1) -> None:
        self.word_ngram_max = word_ngram_max
        self.char_analyzer = char_analyzer
        self.char_ngram_min = char_ngram_min
        self.char_ngram_max = char_ngram_max
        self.lead_chars = lead_chars
        self.cues = cues
        self.lead_weight = lead_weight
        self.memo: dict[str, tuple[str, list[str]]] | None = None
        self._chars: Callable[[str], list[str]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "memo": None, "_chars": None}

    def __repr__(self) -> str:
        return (f"ReportAnalyzer(word_ngram_max={self.word_ngram_max}, char_analyzer={self.char_analyzer!r}, "
                f"char_ngram=({self.char_ngram_min}, {self.char_ngram_max}), lead_chars={self.lead_chars}, "
                f"cues={self.cues})")

    def _char_grams(self) -> Callable[[str], list[str]]:
        if self._chars is None:
            self._chars = CountVectorizer(analyzer=self.char_analyzer, lowercase=False,
                                          ngram_range=(self.char_ngram_min, self.char_ngram_max)).build_analyzer()
        return self._chars

    def _prepared(self, text: str) -> tuple[str, list[str]]:
        """The normalised text and its words (memoised while training)."""
        if self.memo is not None:
            found = self.memo.get(text)
            if found is not None:
                return found
        normalised = normalise(text)
        prepared = (normalised, tokenize_normalised(normalised))
        if self.memo is not None:
            self.memo[text] = prepared
        return prepared

    def __call__(self, text: str) -> list[str]:
        chars = self._char_grams()
        normalised, words = self._prepared(text)
        tokens = [WORD + " ".join(words[start : start + n])
                  for n in range(1, self.word_ngram_max + 1) for start in range(len(words) - n + 1)]
        tokens += [CHAR + gram for gram in chars(normalised)]
        if self.lead_chars:
            tokens += [LEAD + gram for gram in chars(normalised[: self.lead_chars])] * self.lead_weight
        if self.cues and words:  # a text without any word (empty, emoji, symbols) has no cues either
            tokens += [CUE + cue for cue in cue_tokens(normalised)]
        return tokens
