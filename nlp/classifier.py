"""A trained model ready to classify: verified loading and a fast inference path without scikit-learn.

The model is trained as the scikit-learn pipeline of `nlp.training` and saved twice: the pickled pipeline
(`model.joblib`, for evaluation and re-scoring) and its compiled arrays (`compiled.npz`: the vocabularies as
sorted integer keys, idf weights, the calibrated folds' coefficients and sigmoid parameters), each checked
against its sha256 in `metadata.json`. `Classifier.load` builds inference from the arrays alone, so a serving
process imports neither scikit-learn nor scipy (about 90 MB of memory). The compiled path computes the same
probabilities as the pipeline (to 1e-12; `tests/nlp/test_classifier.py`), vectorised over a batch: character
n-grams are integer keys (up to three code points of 21 bits in one int64) found by binary search in the
sorted vocabulary, word n-grams likewise from the ids of their words.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlp.errors import ModelIntegrityError, ModelNotFoundError
from nlp.labels import FALLBACK_LABEL
from nlp.tokenizer import LeadPreprocessor, normalise, tokenize_normalised
from nlp.types import Tag

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

ARTIFACT_FILE = "model.joblib"
COMPILED_FILE = "compiled.npz"
COMPILED_FORMAT = 1
METADATA_FILE = "metadata.json"
MAX_TEXT_CHARS = 5000  # longer texts are classified on their first 5,000 characters
TOP_K = 3
MAX_TERMS = 5
TERM_CANDIDATES = 20  # strongest positive features considered for the key terms
BATCH_ROWS = 64  # texts computed together, at most, and about BATCH_CHARS characters (bounds temporary arrays)
BATCH_CHARS = 8000
_CODE_BITS = 21  # a Unicode code point fits in 21 bits: three of them in one int64 key
_MAX_KEY_LENGTH = 3


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


def _verify_file(model_dir: Path, metadata: dict[str, Any], name: str, digest_key: str) -> Path:
    path = model_dir / name
    if not path.is_file():
        raise ModelIntegrityError(f"model {metadata['version']}: {name} is missing")
    actual = file_sha256(path)
    if actual != metadata[digest_key]:
        raise ModelIntegrityError(f"model {metadata['version']}: {name} does not match the sha256 in "
                                  f"{METADATA_FILE} (expected {str(metadata[digest_key])[:12]}…, found {actual[:12]}…)")
    return path


def verify_artifact(model_dir: Path, metadata: dict[str, Any]) -> Path:
    return _verify_file(model_dir, metadata, ARTIFACT_FILE, "sha256")


def verify_compiled(model_dir: Path, metadata: dict[str, Any]) -> Path | None:
    """The compiled arrays, verified; None for a model saved before they existed."""
    if not isinstance(metadata.get("compiled_sha256"), str):
        return None
    return _verify_file(model_dir, metadata, COMPILED_FILE, "compiled_sha256")


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


def _pack_strings(strings: Sequence[str]) -> np.ndarray:
    """Strings without a newline as one UTF-8 byte array (no pickling needed to load them)."""
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8).copy()


def _unpack_strings(packed: np.ndarray) -> list[str]:
    text = packed.tobytes().decode("utf-8")
    return text.split("\n") if text else []


def _char_key(gram: str) -> int:
    key = 0
    for char in gram:
        key = (key << _CODE_BITS) | ord(char)
    return key


def _char_gram(key: int) -> str:
    chars = []
    while key:
        chars.append(chr(key & ((1 << _CODE_BITS) - 1)))
        key >>= _CODE_BITS
    return "".join(reversed(chars))


@dataclass
class _Block:
    """One TF-IDF vectorizer of the feature union, as arrays.

    Every vocabulary n-gram is an int64 key: for character blocks its code points (21 bits each, never 0), for
    the word block the ids + 1 of its words in base `base`; `keys` is sorted and `features[i]` is the feature
    index (within the block) of `keys[i]`.
    """

    kind: str  # "words" or "chars"
    analyzer: str  # "word", "char" or "char_wb"
    keys: np.ndarray
    features: np.ndarray
    idf: np.ndarray
    offset: int
    sublinear_tf: bool
    ngram_min: int
    ngram_max: int
    lead_chars: int | None = None  # only the text's first characters
    tokens: list[str] | None = None  # the word block's words, by id
    token_ids: dict[str, int] | None = None
    base: int = 0

    @property
    def size(self) -> int:
        return len(self.idf)

    def gram(self, feature: int) -> str:
        """The n-gram of a feature of this block (a word n-gram's words joined by spaces)."""
        key = int(self._key_of_feature[feature])
        if self.kind == "chars":
            return _char_gram(key)
        assert self.tokens is not None
        ids = []
        while key:
            key, digit = divmod(key, self.base)
            ids.append(digit - 1)
        return " ".join(self.tokens[i] for i in reversed(ids))

    def __post_init__(self) -> None:
        self._key_of_feature = np.empty(len(self.idf), dtype=np.int64)
        self._key_of_feature[self.features] = self.keys


def _block_from_vectorizer(name: str, vectorizer: Any, offset: int) -> _Block:
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not isinstance(vectorizer, TfidfVectorizer) or vectorizer.norm != "l2" or not vectorizer.use_idf:
        raise TypeError(f"unsupported feature block {name!r}")
    ngram_min, ngram_max = int(vectorizer.ngram_range[0]), int(vectorizer.ngram_range[1])
    if ngram_max > _MAX_KEY_LENGTH:
        raise TypeError(f"block {name!r}: n-grams longer than {_MAX_KEY_LENGTH}")
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    idf = np.asarray(vectorizer.idf_, dtype=np.float64)
    common: dict[str, Any] = {"idf": idf, "offset": offset, "sublinear_tf": bool(vectorizer.sublinear_tf),
              "ngram_min": ngram_min, "ngram_max": ngram_max}
    if name == "words":
        if vectorizer.tokenizer is not tokenize_normalised or vectorizer.preprocessor is not normalise:
            raise TypeError("word block does not use the nlp tokenizer")
        tokens = sorted({token for gram in vocabulary for token in gram.split(" ")})
        token_ids = {token: number for number, token in enumerate(tokens)}
        base = len(tokens) + 1
        if base ** ngram_max >= 2 ** 63:
            raise TypeError("word vocabulary too large for int64 keys")
        pairs = []
        for gram, feature in vocabulary.items():
            key = 0
            for token in gram.split(" "):
                key = key * base + token_ids[token] + 1
            pairs.append((key, feature))
        pairs.sort()
        return _Block(kind="words", analyzer="word", keys=np.array([k for k, _ in pairs], dtype=np.int64),
                      features=np.array([f for _, f in pairs], dtype=np.int32), tokens=tokens, token_ids=token_ids,
                      base=base, **common)
    if vectorizer.analyzer not in ("char", "char_wb"):
        raise TypeError(f"unsupported character block {name!r}")
    if isinstance(vectorizer.preprocessor, LeadPreprocessor):
        lead_chars: int | None = vectorizer.preprocessor.chars
    elif vectorizer.preprocessor is normalise:
        lead_chars = None
    else:
        raise TypeError(f"unsupported preprocessor in block {name!r}")
    if any(len(gram) > _MAX_KEY_LENGTH or "\x00" in gram for gram in vocabulary):
        raise TypeError(f"block {name!r}: n-grams that do not fit an int64 key")
    pairs = sorted((_char_key(gram), feature) for gram, feature in vocabulary.items())
    return _Block(kind="chars", analyzer=str(vectorizer.analyzer), lead_chars=lead_chars,
                  keys=np.array([k for k, _ in pairs], dtype=np.int64),
                  features=np.array([f for _, f in pairs], dtype=np.int32), **common)


_ANALYZERS = ("word", "char", "char_wb")


def compile_pipeline(pipeline: Pipeline) -> dict[str, np.ndarray]:
    """The arrays of `compiled.npz` for a fitted pipeline of `nlp.training` (TypeError if it has another shape)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import FeatureUnion

    features = pipeline.named_steps["features"]
    model = pipeline.named_steps["model"]
    if not isinstance(features, FeatureUnion) or not isinstance(model, CalibratedClassifierCV):
        raise TypeError("not a pipeline of nlp.training")
    if model.method != "sigmoid":
        raise TypeError(f"unsupported calibration {model.method!r}")
    arrays: dict[str, np.ndarray] = {"format": np.array([COMPILED_FORMAT])}
    offset = 0
    for number, (name, vectorizer) in enumerate(features.transformer_list):
        block = _block_from_vectorizer(name, vectorizer, offset)
        arrays[f"block{number}_meta"] = np.array([
            0 if block.kind == "words" else 1, _ANALYZERS.index(block.analyzer), block.ngram_min, block.ngram_max,
            int(block.sublinear_tf), block.lead_chars or 0, block.offset, block.base], dtype=np.int64)
        arrays[f"block{number}_keys"] = block.keys
        arrays[f"block{number}_features"] = block.features
        arrays[f"block{number}_idf"] = block.idf
        if block.tokens is not None:
            arrays[f"block{number}_tokens"] = _pack_strings(block.tokens)
        offset += block.size
    classes = [str(c) for c in model.classes_]
    class_index = {label: i for i, label in enumerate(classes)}
    columns, intercepts, slopes, offsets, targets, folds = [], [], [], [], [], []
    for fold, calibrated in enumerate(model.calibrated_classifiers_):
        estimator = calibrated.estimator
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        if coef.shape[1] != offset:
            raise TypeError("coefficients do not match the features")
        if len(classes) == 2:
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
    arrays["classes"] = _pack_strings(classes)
    # (n_features, n_outputs) in single precision: half the memory of the serving process's largest array;
    # probabilities move by less than 1e-6 (tests/nlp/test_classifier.py)
    arrays["weights"] = np.ascontiguousarray(np.vstack(columns).T, dtype=np.float32)
    arrays["intercepts"] = np.array(intercepts)
    arrays["slopes"] = np.array(slopes)
    arrays["offsets"] = np.array(offsets)
    arrays["targets"] = np.array(targets, dtype=np.int64)
    arrays["folds"] = np.array(folds, dtype=np.int64)
    return arrays


def _counts(rows: np.ndarray, features: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (row, feature) pairs, sorted, and how often each occurs."""
    combined, counts = np.unique(rows * size + features, return_counts=True)
    return combined // size, combined % size, counts


def _window_keys(codes: np.ndarray, segments: np.ndarray, n: int, shift: int | None,
                 base: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Keys of every n-long window of `codes` within one segment, and the windows' start positions."""
    count = len(codes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.intp)
    keys = codes[:count].copy()
    for j in range(1, n):
        if shift is not None:
            keys <<= shift
            keys |= codes[j : j + count]
        else:
            keys *= base
            keys += codes[j : j + count]
    starts = np.flatnonzero(segments[:count] == segments[n - 1 : n - 1 + count])
    return keys[starts], starts


class _CompiledModel:
    """The fitted pipeline as arrays: sparse features → decision of every calibrated fold → probabilities."""

    def __init__(self, arrays: Any) -> None:
        if int(arrays["format"][0]) != COMPILED_FORMAT:
            raise TypeError(f"compiled format {int(arrays['format'][0])} (expected {COMPILED_FORMAT})")
        self.blocks: list[_Block] = []
        number = 0
        while f"block{number}_meta" in arrays:
            kind, analyzer, ngram_min, ngram_max, sublinear, lead, offset, base = (
                int(v) for v in arrays[f"block{number}_meta"])
            tokens = _unpack_strings(arrays[f"block{number}_tokens"]) if kind == 0 else None
            self.blocks.append(_Block(
                kind="words" if kind == 0 else "chars", analyzer=_ANALYZERS[analyzer],
                keys=np.asarray(arrays[f"block{number}_keys"], dtype=np.int64),
                features=np.asarray(arrays[f"block{number}_features"], dtype=np.intp),
                idf=np.asarray(arrays[f"block{number}_idf"], dtype=np.float64), offset=offset,
                sublinear_tf=bool(sublinear), ngram_min=ngram_min, ngram_max=ngram_max, lead_chars=lead or None,
                tokens=tokens, token_ids={t: i for i, t in enumerate(tokens)} if tokens is not None else None,
                base=base))
            number += 1
        self.n_features = sum(block.size for block in self.blocks)
        self.classes = _unpack_strings(arrays["classes"])
        n_classes = len(self.classes)
        self.weights = np.ascontiguousarray(arrays["weights"], dtype=np.float32)
        if self.weights.shape[0] != self.n_features:
            raise TypeError("coefficients do not match the features")
        self.intercepts = np.asarray(arrays["intercepts"], dtype=np.float64)
        self.slopes = np.asarray(arrays["slopes"], dtype=np.float64)
        self.offsets = np.asarray(arrays["offsets"], dtype=np.float64)
        self.targets = np.asarray(arrays["targets"], dtype=np.intp)
        fold_of_column = np.asarray(arrays["folds"])
        self.n_folds = int(fold_of_column.max()) + 1
        self.fold_columns = [np.flatnonzero(fold_of_column == fold) for fold in range(self.n_folds)]
        self.binary = n_classes == 2
        class_order = np.tile(np.arange(n_classes), self.n_folds)
        # Every fold has every class, in class order (the usual case): calibration needs no scatter.
        self.in_class_order = (not self.binary and len(self.targets) == len(class_order)
                               and bool((self.targets == class_order).all()))
        # For the key terms: each class's coefficients averaged over the calibrated folds.
        if self.binary:
            positive_class = self.weights.mean(axis=1)
            self.class_weights = np.ascontiguousarray(np.column_stack([-positive_class, positive_class]))
        else:
            self.class_weights = np.ascontiguousarray(np.column_stack(
                [self.weights[:, self.targets == label].mean(axis=1) for label in range(n_classes)]))
        self._word_end = sum(block.size for block in self.blocks if block.kind == "words")
        self._offsets = [block.offset for block in self.blocks]

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> _CompiledModel:
        return cls(compile_pipeline(pipeline))

    # --- features ---------------------------------------------------------------------------------------------
    def _word_features(self, block: _Block, tokens: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        assert block.token_ids is not None
        lengths = [len(t) for t in tokens]
        total = sum(lengths)
        if not total:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
        get = block.token_ids.get
        ids = np.fromiter(map(get, chain.from_iterable(tokens), repeat(-1)), dtype=np.int64, count=total) + 1
        rows = np.repeat(np.arange(len(tokens)), lengths)
        # a word the model does not know gets its own segment: no n-gram crosses it
        segments = np.cumsum((ids == 0) | np.concatenate(([True], rows[1:] != rows[:-1])))
        segments[ids == 0] = -1 - np.arange(int((ids == 0).sum()))
        all_rows, all_features = [], []
        for n in range(block.ngram_min, block.ngram_max + 1):
            keys, starts = _window_keys(ids, segments, n, None, block.base)
            if n == 1:
                keep = ids[starts] != 0
                keys, starts = keys[keep], starts[keep]
            found, features = self._lookup(block, keys)
            all_rows.append(rows[starts[found]])
            all_features.append(features)
        return np.concatenate(all_rows), np.concatenate(all_features)

    def _char_features(self, block: _Block, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        pieces, lengths = [], []
        for text in texts:
            part = text if block.lead_chars is None else text[: block.lead_chars]
            if block.analyzer == "char_wb":
                words = part.split()
                piece = f" {'  '.join(words)} " if words else ""
            else:
                piece = part
            pieces.append(piece)
            lengths.append(len(piece))
        if not sum(lengths):
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
        codes = np.frombuffer("".join(pieces).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        rows = np.repeat(np.arange(len(texts)), lengths)
        starts_of_segments = np.zeros(len(codes), dtype=bool)
        starts_of_segments[0] = True
        starts_of_segments[1:] = rows[1:] != rows[:-1]
        if block.analyzer == "char_wb":  # each padded word " w " is a segment; words are joined by two spaces
            spaces = codes == 32
            starts_of_segments[1:] |= spaces[1:] & spaces[:-1]
        segments = np.cumsum(starts_of_segments)
        all_rows, all_features = [], []
        for n in range(block.ngram_min, block.ngram_max + 1):
            keys, starts = _window_keys(codes, segments, n, _CODE_BITS)
            found, features = self._lookup(block, keys)
            all_rows.append(rows[starts[found]])
            all_features.append(features)
        return np.concatenate(all_rows), np.concatenate(all_features)

    @staticmethod
    def _lookup(block: _Block, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which keys are in the block's vocabulary (a boolean mask) and their features."""
        if not len(block.keys):
            return np.zeros(len(keys), dtype=bool), np.empty(0, dtype=np.intp)
        positions = np.searchsorted(block.keys, keys)
        positions[positions == len(block.keys)] = 0
        found = block.keys[positions] == keys
        return found, block.features[positions[found]]

    def features_many(self, texts: list[str], words: list[list[str]] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, feature indices and TF-IDF values (each block l2-normalised per row) of the known features of
        normalised texts, sorted by row; `words`, if given, receives each text's words."""
        all_rows, all_features, all_values = [], [], []
        for block in self.blocks:
            if block.kind == "words":
                tokens = [tokenize_normalised(text) for text in texts]
                if words is not None:
                    for target, text_tokens in zip(words, tokens, strict=True):
                        target.extend(text_tokens)
                rows, features = self._word_features(block, tokens)
            else:
                rows, features = self._char_features(block, texts)
            if not len(rows):
                continue
            rows, features, counts = _counts(rows, features, block.size)
            tf = counts.astype(np.float64)
            if block.sublinear_tf:
                tf = np.log(tf) + 1.0
            values = tf * block.idf[features]
            norms = np.bincount(rows, weights=values * values, minlength=len(texts))
            values /= np.sqrt(norms[rows])
            all_rows.append(rows)
            all_features.append(features + block.offset)
            all_values.append(values)
        if not all_rows:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp), np.empty(0)
        rows = np.concatenate(all_rows)
        order = np.argsort(rows, kind="stable")
        return rows[order], np.concatenate(all_features)[order], np.concatenate(all_values)[order]

    def decisions(self, n_rows: int, rows: np.ndarray, features: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Every calibrated fold's SVM decision for every row (one column per fold and class)."""
        decisions = np.zeros((n_rows, len(self.intercepts)))
        if len(rows):
            contributions = self.weights[features] * values[:, None]
            boundaries = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
            decisions[rows[boundaries]] = np.add.reduceat(contributions, boundaries, axis=0)
        return decisions + self.intercepts

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

    def name(self, feature: int) -> str:
        block = self.blocks[bisect.bisect_right(self._offsets, feature) - 1]
        return block.gram(feature - block.offset)

    def is_word(self, feature: int) -> bool:
        return feature < self._word_end if self.blocks and self.blocks[0].kind == "words" else any(
            b.kind == "words" and b.offset <= feature < b.offset + b.size for b in self.blocks)


class Classifier:
    """A loaded model. `classify` never raises on a `str` and never blocks on I/O."""

    version: str
    labels: list[str]

    def __init__(self, pipeline: Pipeline | None = None, metadata: dict[str, Any] | None = None,
                 version: str = "unsaved", *, compiled: _CompiledModel | None = None,
                 model_dir: Path | None = None) -> None:
        self._pipeline = pipeline
        self._model_dir = model_dir
        self.metadata = metadata or {}
        self.version = version
        if compiled is None and pipeline is not None:
            try:
                compiled = _CompiledModel.from_pipeline(pipeline)
            except (TypeError, AttributeError, KeyError, ValueError) as problem:
                log.warning("model %s: no fast path (%s); using the scikit-learn pipeline", version, problem)
        if compiled is None and pipeline is None:
            raise ValueError("a Classifier needs a pipeline or compiled arrays")
        self._compiled = compiled
        self.labels = compiled.classes if compiled is not None else [str(c) for c in self.pipeline.classes_]

    @property
    def pipeline(self) -> Pipeline:
        """The scikit-learn pipeline (for a loaded model, unpickled on first use: this imports scikit-learn)."""
        if self._pipeline is None:
            if self._model_dir is None:
                raise ModelNotFoundError(f"model {self.version} has no scikit-learn pipeline")
            self._pipeline = _load_pipeline(self._model_dir, read_metadata(self._model_dir))
        return self._pipeline

    @classmethod
    def load(cls, model_dir: Path) -> Classifier:
        """Load a saved model after checking its files against the sha256 in its metadata.

        The compiled arrays are all inference needs (no scikit-learn); a model saved before they existed is
        unpickled and compiled (which imports scikit-learn)."""
        metadata = read_metadata(model_dir)
        verify_artifact(model_dir, metadata)
        compiled_file = verify_compiled(model_dir, metadata)
        version = str(metadata["version"])
        if compiled_file is None:
            log.warning("model %s has no %s (saved by an older version): loading its scikit-learn pipeline; "
                        "train a new model to serve without scikit-learn", version, COMPILED_FILE)
            return cls(_load_pipeline(model_dir, metadata), metadata, version, model_dir=model_dir)
        try:
            with np.load(compiled_file, allow_pickle=False) as arrays:
                compiled = _CompiledModel(arrays)
        except Exception as problem:  # a malformed archive has no common exception base class
            raise ModelIntegrityError(f"model {version}: cannot load {COMPILED_FILE}: {problem}") from problem
        return cls(None, metadata, version, compiled=compiled, model_dir=model_dir)

    # --- public -----------------------------------------------------------------------------------------------
    def classify(self, text: str) -> Tag:
        """Label, confidence, top-3, key terms. Texts are classified on their first 5,000 characters."""
        return self.classify_many([text])[0]

    def classify_many(self, texts: list[str], *, terms: bool = True) -> list[Tag]:
        """`classify` for many texts; `terms=False` leaves the key terms empty (a little faster)."""
        try:
            tags: list[Tag] = []
            for chunk in self._chunks(texts):
                tags.extend(self._classify_many(chunk, terms))
            return tags
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
        return np.vstack([self._probabilities(chunk)[0] for chunk in self._chunks(normalised)])

    # --- internals --------------------------------------------------------------------------------------------
    @staticmethod
    def _chunks(texts: Sequence[str]) -> list[list[str]]:
        """Consecutive texts in chunks of at most BATCH_ROWS texts and about BATCH_CHARS characters."""
        chunks: list[list[str]] = []
        current: list[str] = []
        characters = 0
        for text in texts:
            size = min(len(text), MAX_TEXT_CHARS) if isinstance(text, str) else 0
            if current and (len(current) == BATCH_ROWS or characters + size > BATCH_CHARS):
                chunks.append(current)
                current, characters = [], 0
            current.append(text)
            characters += size
        if current:
            chunks.append(current)
        return chunks

    @staticmethod
    def _prepare(text: object) -> str:
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        return normalise(text[:MAX_TEXT_CHARS])

    def _probabilities(self, normalised: list[str], words: list[list[str]] | None = None
                       ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Calibrated probabilities of normalised texts (a text without any known feature gets the uniform
        distribution) and their sparse features."""
        compiled = self._compiled
        assert compiled is not None
        rows, features, values = compiled.features_many(normalised, words)
        probabilities = compiled.calibrate(compiled.decisions(len(normalised), rows, features, values))
        featureless = np.ones(len(normalised), dtype=bool)
        featureless[rows] = False
        probabilities[featureless] = 1.0 / len(self.labels)
        return probabilities, (rows, features, values)

    def _classify_many(self, texts: list[str], with_terms: bool) -> list[Tag]:
        if not texts:
            return []
        normalised = [self._prepare(text) for text in texts]
        compiled = self._compiled
        if compiled is None:
            known = [text for text in normalised if text]
            answers = iter(np.asarray(self.pipeline.predict_proba(known)) if known else [])
            return [self._tag(next(answers), []) if text else self._fallback_tag() for text in normalised]
        words: list[list[str]] = [[] for _ in normalised]
        probabilities, (rows, features, values) = self._probabilities(normalised, words)
        bounds = np.searchsorted(rows, np.arange(len(normalised) + 1))
        tags = []
        for row, (text, text_words) in enumerate(zip(normalised, words, strict=True)):
            start, stop = int(bounds[row]), int(bounds[row + 1])
            if start == stop:
                tags.append(self._fallback_tag())
                continue
            key_terms: list[str] = []
            if with_terms:
                indices = features[start:stop]
                contributions = compiled.contributions(indices, values[start:stop],
                                                       int(np.argmax(probabilities[row])))
                key_terms = self._key_terms(text, text_words, indices, contributions)
            tags.append(self._tag(probabilities[row], key_terms))
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
        positive = np.flatnonzero(contributions > 0)
        if len(positive) > TERM_CANDIDATES:
            positive = positive[np.argpartition(-contributions[positive], TERM_CANDIDATES)[:TERM_CANDIDATES]]
        scores: dict[str, float] = {}
        fragments: list[tuple[str, float]] = []
        for position in positive.tolist():
            feature = int(indices[position])
            gram, contribution = compiled.name(feature), float(contributions[position])
            if not compiled.is_word(feature):
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


def _load_pipeline(model_dir: Path, metadata: dict[str, Any]) -> Pipeline:
    """The verified artifact, unpickled (imports scikit-learn)."""
    import joblib
    from sklearn.pipeline import Pipeline

    artifact = verify_artifact(model_dir, metadata)
    try:
        pipeline = joblib.load(artifact)
    except Exception as problem:  # unpickling errors have no common base class
        raise ModelIntegrityError(f"model {metadata['version']}: cannot load {ARTIFACT_FILE}: {problem}") from problem
    if not isinstance(pipeline, Pipeline):
        raise ModelIntegrityError(f"model {metadata['version']}: {ARTIFACT_FILE} is not a pipeline")
    return pipeline
