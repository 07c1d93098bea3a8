"""Key terms: the phrases of a report that drove the classifier's decision, as a reviewer would underline them.

For every feature present in the text, its value × the served SVM's coefficient for the chosen label (or, for
"why not the runner-up", the difference of the two labels' coefficients) is its contribution to the decision.
The strongest positive contributions become phrases of the text: a word feature is its word (a word bigram
is shown as written when its words are adjacent), a character n-gram lends its weight to the word of the text
it occurs in, a cue of the taxonomy (`nlp.cues`) to its phrases found in the text. Phrases shorter than two
characters, stop words and the filler words of `nlp/data/filler.txt` (问题, 情况, 现在, …: words that occur in
reports of every label) are never shown, nor quantities (两个, 三趟, 3月: `QUANTITY`).
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nlp.cues import phrases
from nlp.features import CHAR, CUE, LEAD, WORD
from nlp.tokenizer import DATA_DIR, segment, stop_words

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

FILLER_FILE = DATA_DIR / "filler.txt"
MAX_TERMS = 5
MIN_TERM_CHARS = 2
TERM_CANDIDATES = 30  # strongest positive features considered


QUANTITY = re.compile(r"[0-9０-９.．零〇一二两三四五六七八九十百千万亿几多半]+"
                      r"(?:个|次|趟|遍|回|位|名|件|条|张|份|天|日|号|年|月|周|星期|小时|钟头|分钟|秒|岁|元|块|毛|角)?")
"""A number and at most one counting word (两个, 三趟, 3月, 五千元): how much or how often, never why a report
belongs to its label, however often a label's training reports repeat it."""


def _read_filler(path: Path = FILLER_FILE) -> frozenset[str]:
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.update(line.split())
    return frozenset(words)


def _cjk(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff"


def _join_words(words: list[str]) -> str:
    """Adjacent words as they appear in text: no space between CJK characters, a space otherwise."""
    joined = words[0]
    for word in words[1:]:
        joined += word if joined and word and _cjk(joined[-1]) and _cjk(word[0]) else " " + word
    return joined


class Explainer:
    """The served model's coefficients and feature names, read once from the fitted pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        features = pipeline.named_steps["features"]
        model = pipeline.named_steps["model"]
        classes = [str(c) for c in model.classes_]
        total = np.zeros((len(classes), 0))
        for calibrated in model.calibrated_classifiers_:
            estimator = calibrated.estimator
            coef = np.asarray(estimator.coef_, dtype=np.float64)
            if coef.shape[0] == 1:  # two classes: one row, for the second
                coef = np.vstack([-coef[0], coef[0]])
            # the estimator was fitted on the labels or (without the ensemble) on their indices
            named = all(str(c) in classes for c in estimator.classes_)
            index = [classes.index(str(c)) if named else int(c) for c in estimator.classes_]
            aligned = np.zeros((len(classes), coef.shape[1]))
            aligned[index] = coef
            total = aligned if total.size == 0 else total + aligned
        self.coefficients = total / len(model.calibrated_classifiers_)
        names: list[str] = [""] * len(features.vocabulary_)
        for name, index in features.vocabulary_.items():  # the vocabulary's own strings: no copies
            names[index] = name
        self.names = names
        self._hidden = stop_words() | _read_filler()

    def shown(self, term: str) -> bool:
        """A phrase worth showing: ≥ 2 characters, a letter in it, no stop or filler word, not a mere quantity."""
        return (len(term) >= MIN_TERM_CHARS and term not in self._hidden
                and any(char.isalpha() for char in term) and QUANTITY.fullmatch(term) is None)

    def terms(self, normalised: str, indices: np.ndarray, values: np.ndarray, label: int,
              against: int | None = None) -> list[str]:
        """Up to MAX_TERMS phrases of `normalised` that pushed `label` (over `against`, if given), strongest
        first; `indices`/`values` are the text's non-zero features."""
        weights = self.coefficients[label, indices]
        if against is not None:
            weights = weights - self.coefficients[against, indices]
        contributions = values * weights
        positive = np.flatnonzero(contributions > 0)
        if len(positive) > TERM_CANDIDATES:
            positive = positive[np.argpartition(-contributions[positive], TERM_CANDIDATES)[:TERM_CANDIDATES]]
        scores: dict[str, float] = {}
        tokens: list[str] | None = None
        starts: list[int] = []
        for position in positive.tolist():
            name = self.names[int(indices[position])]
            kind, gram = name[:1], name[1:]
            weight = float(contributions[position])
            if kind == WORD:
                parts = gram.split(" ")
                display = _join_words(parts)
                targets = [display] if len(parts) == 1 or display in normalised else parts
            elif kind == CUE:
                targets = phrases(normalised, gram)
            elif kind not in (CHAR, LEAD):
                targets = []
            else:  # a character n-gram: the word of the text it first occurs in
                if tokens is None:
                    tokens = segment(normalised)
                    offset = 0
                    for token in tokens:
                        starts.append(offset)
                        offset += len(token)
                fragment = gram.strip()
                where = normalised.find(fragment) if fragment else -1
                targets = []
                if where >= 0:
                    slot = bisect.bisect_right(starts, where) - 1
                    if where + len(fragment) <= starts[slot] + len(tokens[slot]):
                        targets = [tokens[slot]]
            for target in targets:
                if self.shown(target):
                    scores[target] = scores.get(target, 0.0) + weight / len(targets)
        chosen: list[str] = []
        for term, _score in sorted(scores.items(), key=lambda item: (-item[1], item[0])):
            if len(chosen) == MAX_TERMS:
                break
            if not any(term in other or other in term for other in chosen):
                chosen.append(term)
        return chosen
