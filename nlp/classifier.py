"""A trained model ready to classify: the scikit-learn pipeline of `nlp.training`, loaded after its checks
(`nlp.artifact`), and the tags it gives.

Prediction is the pipeline's own: `pipeline[:-1].transform` (normalise, then the TF-IDF blocks) and the
calibrated model's `predict_proba` — exactly `pipeline.predict_proba`, with the features kept for the
explanation (`nlp.explain`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlp.artifact import ArtifactCipher, load_pipeline, read_metadata
from nlp.explain import Explainer
from nlp.labels import FALLBACK_LABEL
from nlp.tokenizer import normalise
from nlp.types import Tag

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 5000  # longer texts are classified on their first 5,000 characters
TOP_K = 3
BATCH_ROWS = 64  # texts computed together, at most (bounds the temporary feature matrices)
# The runner-up is shown, with the phrases that decided against it, when its probability is at most this far
# below the chosen label's.
CONTRAST_MARGIN = 0.30


class Classifier:
    """A loaded model. `classify` never raises on a `str` and never blocks on I/O."""

    version: str
    labels: list[str]

    def __init__(self, pipeline: Pipeline, metadata: dict[str, Any] | None = None, version: str = "unsaved") -> None:
        self.pipeline = pipeline
        self.metadata = metadata or {}
        self.version = version
        self.labels = [str(label) for label in pipeline.classes_]
        self._featurize = pipeline[:-1]
        self._model = pipeline[-1]
        self._explainer: Explainer | None = None

    @classmethod
    def load(cls, model_dir: Path, cipher: ArtifactCipher | None = None) -> Classifier:
        """Load a saved model after checking its format, scikit-learn version and sha256 (`nlp.artifact`),
        decrypting it in memory with `cipher` if it was saved encrypted."""
        metadata = read_metadata(model_dir)
        pipeline = load_pipeline(model_dir, metadata, cipher)
        return cls(pipeline, metadata, str(metadata["version"]))

    @property
    def explainer(self) -> Explainer:
        if self._explainer is None:
            self._explainer = Explainer(self.pipeline)
        return self._explainer

    # --- public -----------------------------------------------------------------------------------------------
    def classify(self, text: str) -> Tag:
        """Label, confidence, top-3, key terms (and the close runner-up). Texts are classified on their first
        5,000 characters."""
        return self.classify_many([text])[0]

    def classify_many(self, texts: list[str], *, terms: bool = True) -> list[Tag]:
        """`classify` for many texts; `terms=False` leaves the key terms empty (faster)."""
        try:
            tags: list[Tag] = []
            for start in range(0, len(texts), BATCH_ROWS):
                tags.extend(self._classify_chunk(texts[start : start + BATCH_ROWS], terms))
            return tags
        except Exception:  # every report must get an answer; the reason goes to the log
            if len(texts) > 1:
                return [tag for text in texts for tag in self.classify_many([text], terms=terms)]
            log.exception("model %s failed on a text of %d characters", self.version, len(str(texts[0])))
            return [self._fallback_tag(confidence=0.0)]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities (rows: texts, columns: `labels`), as the tags compute them: a text in which the model
        knows no feature gets the uniform distribution."""
        rows = [self._probabilities([self._prepare(t) for t in texts[start : start + BATCH_ROWS]])[0]
                for start in range(0, len(texts), BATCH_ROWS)]
        return np.vstack(rows) if rows else np.empty((0, len(self.labels)))

    # --- internals --------------------------------------------------------------------------------------------
    @staticmethod
    def _prepare(text: object) -> str:
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        return text[:MAX_TEXT_CHARS]

    def _probabilities(self, prepared: list[str]) -> tuple[np.ndarray, csr_matrix]:
        features = self._featurize.transform(prepared).tocsr()
        probabilities = np.asarray(self._model.predict_proba(features), dtype=np.float64)
        probabilities[np.diff(features.indptr) == 0] = 1.0 / len(self.labels)
        return probabilities, features

    def _classify_chunk(self, texts: list[str], with_terms: bool) -> list[Tag]:
        if not texts:
            return []
        prepared = [self._prepare(text) for text in texts]
        probabilities, features = self._probabilities(prepared)
        tags = []
        for row, text in enumerate(prepared):
            start, stop = features.indptr[row], features.indptr[row + 1]
            if start == stop:
                tags.append(self._fallback_tag())
                continue
            tags.append(self._tag(probabilities[row], text, features.indices[start:stop],
                                  features.data[start:stop], with_terms))
        return tags

    def _fallback_tag(self, confidence: float | None = None) -> Tag:
        """No evidence (no known word or character): the uniform distribution, ties broken towards `other`."""
        uniform = 1.0 / len(self.labels)
        order = sorted(self.labels, key=lambda label: (label != FALLBACK_LABEL, label))
        return Tag(label=order[0], confidence=uniform if confidence is None else confidence,
                   top=[(label, uniform) for label in order[:TOP_K]], terms=[], model_version=self.version)

    def _tag(self, probabilities: np.ndarray, text: str, indices: np.ndarray, values: np.ndarray,
             with_terms: bool) -> Tag:
        order = np.argsort(-probabilities, kind="stable")
        top = [(self.labels[i], float(probabilities[i])) for i in order[:TOP_K]]
        runner_up: str | None = None
        terms: list[str] = []
        contrast: list[str] = []
        close = len(order) > 1 and probabilities[order[1]] >= probabilities[order[0]] - CONTRAST_MARGIN
        if with_terms:
            normalised = normalise(text)
            explainer = self.explainer
            terms = explainer.terms(normalised, indices, values, int(order[0]))
            if close:
                runner_up = self.labels[int(order[1])]
                contrast = explainer.terms(normalised, indices, values, int(order[0]), against=int(order[1]))
        elif close:
            runner_up = self.labels[int(order[1])]
        return Tag(label=top[0][0], confidence=top[0][1], top=top, terms=terms, model_version=self.version,
                   runner_up=runner_up, contrast_terms=contrast)
