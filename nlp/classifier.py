"""A trained model ready to classify: verified loading and a fast single-text path.

The saved artifact is the scikit-learn pipeline of `nlp.training`. Calling the pipeline for one text costs a
few milliseconds of per-call overhead, so `Classifier` compiles the fitted pipeline into plain arrays
(vocabularies, idf weights, the calibrated folds' coefficients and sigmoid parameters) and computes the same
probabilities directly; `tests/nlp/test_classifier.py` checks that both agree.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import operator
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline

from nlp.errors import ModelIntegrityError, ModelNotFoundError
from nlp.labels import FALLBACK_LABEL
from nlp.tokenizer import normalise, tokenize_normalised
from nlp.training import LeadPreprocessor
from nlp.types import Tag

log = logging.getLogger(__name__)

ARTIFACT_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
MAX_TEXT_CHARS = 5000  # longer texts are classified on their first 5,000 characters
TOP_K = 3
MAX_TERMS = 5
TERM_CANDIDATES = 20  # strongest positive features considered for the key terms


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"no model in {model_dir} (missing {METADATA_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise ModelIntegrityError(f"{path} is not valid JSON: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str) or "version" not in data:
        raise ModelIntegrityError(f"{path} lacks the version or the artifact's sha256")
    return data


def verify_artifact(model_dir: Path, metadata: dict[str, Any]) -> Path:
    artifact = model_dir / ARTIFACT_FILE
    if not artifact.is_file():
        raise ModelIntegrityError(f"model {metadata['version']}: {ARTIFACT_FILE} is missing")
    actual = file_sha256(artifact)
    if actual != metadata["sha256"]:
        raise ModelIntegrityError(f"model {metadata['version']}: {ARTIFACT_FILE} does not match the sha256 in "
                                  f"{METADATA_FILE} (expected {metadata['sha256'][:12]}…, found {actual[:12]}…)")
    return artifact


def _is_cjk(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _join_words(words: Sequence[str]) -> str:
    """Join adjacent words as they appear in text: no space between CJK characters, a space otherwise."""
    joined = words[0]
    for word in words[1:]:
        if joined and word and _is_cjk(joined[-1]) and _is_cjk(word[0]):
            joined += word
        else:
            joined += " " + word
    return joined


@dataclass
class _Block:
    """One TF-IDF vectorizer of the feature union, as arrays."""

    kind: str  # "words" or "chars"
    vocabulary: dict[str, int]
    idf: np.ndarray
    offset: int
    sublinear_tf: bool
    ngram_min: int
    ngram_max: int
    analyzer: str  # "word", "char" or "char_wb"
    lead_chars: int | None = None  # only the text's first characters


def _word_ngrams(tokens: list[str], ngram_min: int, ngram_max: int) -> list[str]:
    grams: list[str] = list(tokens) if ngram_min == 1 else []
    for n in range(max(ngram_min, 2), ngram_max + 1):
        grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def _ngrams_of(text: str, ngram_min: int, ngram_max: int) -> list[str]:
    """All n-grams of text for n in [ngram_min, ngram_max], shortest first (built by C-level concatenation)."""
    grams: list[str] = []
    current: Iterable[str] = text
    for n in range(1, min(ngram_max, len(text)) + 1):
        if n > 1:
            current = list(map(operator.add, current, text[n - 1 :]))
        elif ngram_min <= 1:
            current = list(text)
        if n >= ngram_min:
            grams.extend(current)
    return grams


def _char_ngrams(text: str, ngram_min: int, ngram_max: int) -> list[str]:
    """scikit-learn's `char` analyzer on already normalised text."""
    return _ngrams_of(text, ngram_min, ngram_max)


def _char_wb_ngrams(text: str, ngram_min: int, ngram_max: int) -> list[str]:
    """scikit-learn's `char_wb`: n-grams inside words padded with a space; a word shorter than n counts once."""
    grams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        if length > ngram_max:
            grams.extend(_ngrams_of(padded, ngram_min, ngram_max))
            continue
        for n in range(ngram_min, ngram_max + 1):
            if length <= n:
                grams.append(padded)
                break
            grams.extend(padded[i : i + n] for i in range(length - n + 1))
    return grams


class _CompiledModel:
    """The fitted pipeline as arrays: sparse features → decision of every calibrated fold → probabilities."""

    def __init__(self, pipeline: Pipeline) -> None:
        features = pipeline.named_steps["features"]
        model = pipeline.named_steps["model"]
        if not isinstance(features, FeatureUnion) or not isinstance(model, CalibratedClassifierCV):
            raise TypeError("not a pipeline of nlp.training")
        self.blocks: list[_Block] = []
        offset = 0
        for name, vectorizer in features.transformer_list:
            lead_chars: int | None = None
            if not isinstance(vectorizer, TfidfVectorizer) or vectorizer.norm != "l2" or not vectorizer.use_idf:
                raise TypeError(f"unsupported feature block {name!r}")
            if name == "words":
                if vectorizer.tokenizer is not tokenize_normalised or vectorizer.preprocessor is not normalise:
                    raise TypeError("word block does not use the nlp tokenizer")
                analyzer = "word"
            else:
                if vectorizer.analyzer not in ("char", "char_wb"):
                    raise TypeError(f"unsupported character block {name!r}")
                if isinstance(vectorizer.preprocessor, LeadPreprocessor):
                    lead_chars = vectorizer.preprocessor.chars
                elif vectorizer.preprocessor is normalise:
                    lead_chars = None
                else:
                    raise TypeError(f"unsupported preprocessor in block {name!r}")
                analyzer = str(vectorizer.analyzer)
            vocabulary = dict(vectorizer.vocabulary_)
            self.blocks.append(_Block(
                kind="words" if analyzer == "word" else "chars",
                vocabulary=vocabulary,
                idf=np.asarray(vectorizer.idf_, dtype=np.float64),
                offset=offset,
                sublinear_tf=bool(vectorizer.sublinear_tf),
                ngram_min=int(vectorizer.ngram_range[0]),
                ngram_max=int(vectorizer.ngram_range[1]),
                analyzer=analyzer,
                lead_chars=lead_chars,
            ))
            offset += len(vocabulary)
        self.n_features = offset
        self.classes = [str(c) for c in model.classes_]
        n_classes = len(self.classes)
        if model.method != "sigmoid":
            raise TypeError(f"unsupported calibration {model.method!r}")
        class_index = {label: i for i, label in enumerate(self.classes)}
        columns, intercepts, slopes, offsets, targets, folds = [], [], [], [], [], []
        self.n_folds = len(model.calibrated_classifiers_)
        for fold, calibrated in enumerate(model.calibrated_classifiers_):
            estimator = calibrated.estimator
            coef = np.asarray(estimator.coef_, dtype=np.float64)
            if coef.shape[1] != self.n_features:
                raise TypeError("coefficients do not match the features")
            if n_classes == 2:
                positive = [class_index[str(estimator.classes_[1])]]
            else:
                positive = [class_index[str(c)] for c in estimator.classes_]
            for row, (target, calibrator) in enumerate(zip(positive, calibrated.calibrators, strict=True)):
                columns.append(coef[row])
                intercepts.append(float(np.ravel(estimator.intercept_)[row]))
                slopes.append(float(calibrator.a_))
                offsets.append(float(calibrator.b_))
                targets.append(target)
                folds.append(fold)
        self.weights = np.ascontiguousarray(np.vstack(columns).T)  # (n_features, n_outputs)
        self.intercepts = np.array(intercepts)
        self.slopes = np.array(slopes)
        self.offsets = np.array(offsets)
        self.targets = np.array(targets)
        fold_of_column = np.array(folds)
        self.fold_columns = [np.flatnonzero(fold_of_column == fold) for fold in range(self.n_folds)]
        self.binary = n_classes == 2
        class_order = np.tile(np.arange(n_classes), self.n_folds)
        # Every fold has every class, in class order (the usual case): calibration needs no scatter.
        self.in_class_order = (not self.binary and len(self.targets) == len(class_order)
                               and bool((self.targets == class_order).all()))
        # For the key terms: each feature's n-gram, whether it is a word feature, and each class's coefficients
        # averaged over the calibrated folds.
        self.names: list[str] = [""] * self.n_features
        self.is_word = np.zeros(self.n_features, dtype=bool)
        for block in self.blocks:
            for gram, index in block.vocabulary.items():
                self.names[block.offset + index] = gram
            if block.kind == "words":
                self.is_word[block.offset : block.offset + len(block.vocabulary)] = True
        if self.binary:
            positive_class = self.weights.mean(axis=1)
            self.class_weights = np.ascontiguousarray(np.column_stack([-positive_class, positive_class]))
        else:
            self.class_weights = np.ascontiguousarray(np.column_stack(
                [self.weights[:, self.targets == label].mean(axis=1) for label in range(n_classes)]))

    def features(self, text: str, words: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices and TF-IDF values (each block l2-normalised) of the known features of normalised text;
        `words`, if given, receives the text's words."""
        all_indices: list[np.ndarray] = []
        all_values: list[np.ndarray] = []
        for block in self.blocks:
            if block.analyzer == "word":
                tokens = tokenize_normalised(text)
                if words is not None:
                    words.extend(tokens)
                grams = _word_ngrams(tokens, block.ngram_min, block.ngram_max)
            else:
                part = text if block.lead_chars is None else text[: block.lead_chars]
                if block.analyzer == "char_wb":
                    grams = _char_wb_ngrams(part, block.ngram_min, block.ngram_max)
                else:
                    grams = _char_ngrams(part, block.ngram_min, block.ngram_max)
            counts = Counter(map(block.vocabulary.get, grams))  # counted in C; unknown n-grams count as None
            counts.pop(None, None)
            if not counts:
                continue
            index_array = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if block.sublinear_tf:
                tf = np.log(tf) + 1.0
            values = tf * block.idf[index_array]
            values /= math.sqrt(float(values @ values))
            all_indices.append(index_array + block.offset)
            all_values.append(values)
        if not all_indices:
            return np.empty(0, dtype=np.intp), np.empty(0)
        if len(all_indices) == 1:
            return all_indices[0], all_values[0]
        return np.concatenate(all_indices), np.concatenate(all_values)

    def decision(self, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Every calibrated fold's SVM decision for one sparse row (one value per fold and class)."""
        return np.asarray(values @ self.weights[indices] + self.intercepts)

    def calibrate(self, decisions: np.ndarray) -> np.ndarray:
        """What `CalibratedClassifierCV.predict_proba` returns, from the rows' decisions."""
        calibrated = 1.0 / (1.0 + np.exp(self.slopes * decisions + self.offsets))
        rows, n_classes = decisions.shape[0], len(self.classes)
        if self.in_class_order:
            proba = calibrated.reshape(rows, self.n_folds, n_classes)
            total = proba.sum(axis=2, keepdims=True)
            proba = np.divide(proba, total, out=np.full_like(proba, 1.0 / n_classes), where=total != 0)
            return np.asarray(proba.mean(axis=1))
        mean = np.zeros((rows, n_classes))
        for columns in self.fold_columns:
            proba = np.zeros((rows, n_classes))
            if self.binary:
                proba[:, 1] = calibrated[:, columns[0]]
                proba[:, 0] = 1.0 - proba[:, 1]
            else:
                proba[:, self.targets[columns]] = calibrated[:, columns]
                total = proba.sum(axis=1, keepdims=True)
                proba = np.divide(proba, total, out=np.full_like(proba, 1.0 / n_classes), where=total != 0)
            mean += proba
        return mean / self.n_folds

    def contributions(self, indices: np.ndarray, values: np.ndarray, label_index: int) -> np.ndarray:
        """Each present feature's value × the class's coefficient (averaged over the calibrated folds)."""
        return np.asarray(values * self.class_weights[indices, label_index])


class Classifier:
    """A loaded model. `classify` never raises on a `str` and never blocks on I/O."""

    version: str
    labels: list[str]

    def __init__(self, pipeline: Pipeline, metadata: dict[str, Any] | None = None, version: str = "unsaved") -> None:
        self.pipeline = pipeline
        self.metadata = metadata or {}
        self.version = version
        self.labels = [str(c) for c in pipeline.classes_]
        try:
            self._compiled: _CompiledModel | None = _CompiledModel(pipeline)
        except (TypeError, AttributeError, KeyError, ValueError) as problem:
            log.warning("model %s: no fast path (%s); using the scikit-learn pipeline", version, problem)
            self._compiled = None

    @classmethod
    def load(cls, model_dir: Path) -> Classifier:
        """Load a saved model after checking its artifact against the sha256 in its metadata."""
        import joblib

        metadata = read_metadata(model_dir)
        artifact = verify_artifact(model_dir, metadata)
        try:
            pipeline = joblib.load(artifact)
        except Exception as problem:  # unpickling errors have no common base class
            message = f"model {metadata['version']}: cannot load {ARTIFACT_FILE}: {problem}"
            raise ModelIntegrityError(message) from problem
        if not isinstance(pipeline, Pipeline):
            raise ModelIntegrityError(f"model {metadata['version']}: {ARTIFACT_FILE} is not a pipeline")
        return cls(pipeline, metadata, str(metadata["version"]))

    # --- public -----------------------------------------------------------------------------------------------
    def classify(self, text: str) -> Tag:
        """Label, confidence, top-3, key terms. Texts are classified on their first 5,000 characters."""
        return self.classify_many([text])[0]

    def classify_many(self, texts: list[str], *, terms: bool = True) -> list[Tag]:
        """`classify` for many texts; `terms=False` leaves the key terms empty (about 10 % faster)."""
        try:
            return self._classify_many(texts, terms)
        except Exception:  # every report must get an answer; the reason goes to the log
            if len(texts) > 1:
                return [tag for text in texts for tag in self.classify_many([text], terms=terms)]
            log.exception("model %s failed on a text of %d characters", self.version, len(str(texts[0])))
            return [self._fallback_tag(confidence=0.0)]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities (rows: texts, columns: `labels`), as the tags compute them."""
        normalised = [self._prepare(text) for text in texts]
        if not normalised:
            return np.empty((0, len(self.labels)))
        if self._compiled is None:
            return np.asarray(self.pipeline.predict_proba(normalised))
        return self._probabilities([self._compiled.features(text) for text in normalised])

    # --- internals --------------------------------------------------------------------------------------------
    @staticmethod
    def _prepare(text: object) -> str:
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        return normalise(text[:MAX_TEXT_CHARS])

    def _probabilities(self, features: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Calibrated probabilities of the rows; a row without any known feature gets the uniform distribution."""
        compiled = self._compiled
        assert compiled is not None
        decisions = np.zeros((len(features), len(compiled.intercepts)))
        for row, (indices, values) in enumerate(features):
            if len(indices):
                decisions[row] = compiled.decision(indices, values)
        probabilities = compiled.calibrate(decisions)
        featureless = np.array([len(indices) == 0 for indices, _ in features])
        probabilities[featureless] = 1.0 / len(self.labels)
        return probabilities

    def _classify_many(self, texts: list[str], with_terms: bool) -> list[Tag]:
        if not texts:
            return []
        normalised = [self._prepare(text) for text in texts]
        compiled = self._compiled
        if compiled is None:
            known = [text for text in normalised if text]
            rows = iter(np.asarray(self.pipeline.predict_proba(known)) if known else [])
            return [self._tag(next(rows), []) if text else self._fallback_tag() for text in normalised]
        words: list[list[str]] = [[] for _ in normalised]
        features = [compiled.features(text, text_words) for text, text_words in zip(normalised, words, strict=True)]
        probabilities = self._probabilities(features)
        tags = []
        for text, text_words, (indices, values), row in zip(normalised, words, features, probabilities, strict=True):
            if not len(indices):
                tags.append(self._fallback_tag())
                continue
            key_terms: list[str] = []
            if with_terms:
                contributions = compiled.contributions(indices, values, int(np.argmax(row)))
                key_terms = self._key_terms(text, text_words, indices, contributions)
            tags.append(self._tag(row, key_terms))
        return tags

    def _fallback_tag(self, confidence: float | None = None) -> Tag:
        """No evidence (no known word or character): the uniform distribution, ties broken towards `other`."""
        uniform = 1.0 / len(self.labels)
        order = sorted(self.labels, key=lambda label: (label != FALLBACK_LABEL, label))
        return Tag(label=order[0], confidence=uniform if confidence is None else confidence,
                   top=[(label, uniform) for label in order[:TOP_K]], terms=[], model_version=self.version)

    def _tag(self, probabilities: np.ndarray, terms: list[str]) -> Tag:
        order = np.argsort(-probabilities, kind="stable")[:TOP_K]
        top = [(self.labels[i], float(probabilities[i])) for i in order]
        return Tag(label=top[0][0], confidence=top[0][1], top=top, terms=terms, model_version=self.version)

    def _key_terms(self, normalised: str, words: list[str], indices: np.ndarray,
                   contributions: np.ndarray) -> list[str]:
        """Words of the text that pushed the winning label, strongest first.

        Only the features with the largest positive contributions are considered. A word feature counts as
        itself (a bigram as its two words as written, when they are adjacent in the text; otherwise its weight
        goes to its words); a character n-gram gives its weight to the word of the text where it first occurs,
        so that the terms are words rather than fragments.
        """
        compiled = self._compiled
        assert compiled is not None
        names, is_word = compiled.names, compiled.is_word
        positive = np.flatnonzero(contributions > 0)
        if len(positive) > TERM_CANDIDATES:
            positive = positive[np.argpartition(-contributions[positive], TERM_CANDIDATES)[:TERM_CANDIDATES]]
        scores: dict[str, float] = {}
        fragments: list[tuple[str, float]] = []
        for position in positive.tolist():
            feature = int(indices[position])
            gram, contribution = names[feature], float(contributions[position])
            if not is_word[feature]:
                fragments.append((gram.strip(), contribution))
                continue
            parts = gram.split(" ")
            display = _join_words(parts) if len(parts) > 1 else gram
            if len(parts) == 1 or display in normalised:
                scores[display] = scores.get(display, 0.0) + contribution
            else:
                for part in parts:
                    scores[part] = scores.get(part, 0.0) + contribution / len(parts)
        if fragments and words:
            starts, ends, cursor = [], [], 0
            for word in words:  # where each word is in the text (they come in order)
                found = normalised.find(word, cursor)
                if found < 0:
                    found = normalised.find(word)
                starts.append(found)
                ends.append(found + len(word))
                cursor = max(cursor, found + len(word))
            for fragment, contribution in fragments:
                where = normalised.find(fragment)
                if where < 0:
                    continue
                slot = bisect.bisect_right(starts, where) - 1
                if slot >= 0 and where + len(fragment) <= ends[slot] and len(words[slot]) > 1:
                    owner = words[slot]
                    scores[owner] = scores.get(owner, 0.0) + contribution
        terms: list[str] = []
        for term, _score in sorted(scores.items(), key=lambda item: (-item[1], item[0])):
            if len(terms) == MAX_TERMS:
                break
            if not any(term in chosen for chosen in terms):
                terms.append(term)
        return terms
