"""Exceptions of the classifier room; each message is one line an administrator can act on."""

from __future__ import annotations

from typing import Self

RETRAIN = "train a new model with `qinglian model train` (or let `qinglian serve` train the default one)"
"""What to do about a saved model this installation cannot serve."""

REFUSALS = {
    "model_unknown": "no model {version!r} (`qinglian model list` and the console's models page list the saved "
                     "versions)",
    "model_none_promoted": "no promoted model in {models_dir}; run `qinglian model train` and "
                           "`qinglian model promote VERSION`",
    "model_gate_no_score": "model {version} has no macro-F1 on the evaluation split (its labels are not the "
                           "taxonomy's?)",
    "model_gate_unscorable": "model {version} cannot be scored on the evaluation split",
    "model_gate_below": "model {version} has macro-F1 {candidate_f1} on the evaluation split, more than 1 point "
                        "below the promoted {current} ({current_f1})",
    "model_registry_invalid": "{path} is not valid JSON ({problem}); fix or remove it",
    "model_registry_no_history": "{path} has no promotion history; fix or remove it",
    "model_rollback_none": "no earlier promoted model to roll back to",
    "model_rollback_gone": "the earlier promoted models no longer exist; nothing to roll back to",
    "model_rollback_done": "the model was already rolled back to {version} meanwhile; nothing else was changed",
    "model_rollback_changed": "a rollback would now promote {target}, not {version}: the promoted model changed "
                              "meanwhile; look at the models page again",
    "model_earlier_format": "model {version} was saved by an earlier version of Qinglian ({what}), which this "
                            "version does not load: " + RETRAIN,
    "model_other_format": "model {version} was saved by another version of Qinglian ({what}), which this version "
                          "does not load: " + RETRAIN,
    "model_sklearn_unrecorded": "model {version} does not record the scikit-learn it was saved with, so it cannot be "
                                "checked against scikit-learn {installed}: " + RETRAIN,
    "model_sklearn_other": "model {version} was saved with scikit-learn {saved}, but scikit-learn {installed} is "
                           "installed: " + RETRAIN + ", or install scikit-learn=={saved}",
    "model_nothing_new": "nothing new to learn: version {version} was trained on the same {n_examples} examples "
                         "with the same settings and libraries; label or correct reports first",
    "model_metadata_invalid": "{path} is not valid JSON: {problem}",
    "model_metadata_incomplete": "{path} lacks the version or the artifact's sha256",
    "model_file_missing": "model {version}: {file} is missing",
    "model_undecryptable": "model {version}: cannot decrypt {file}: {problem}",
    "model_altered": "model {version}: {file} does not match the sha256 in {metadata} (expected {expected}…, found "
                     "{found}…)",
    "model_unloadable": "model {version}: cannot load {file}: {problem}",
    "model_not_pipeline": "model {version}: {file} is not a scikit-learn pipeline",
}
"""The registry's refusals by their code: the English its message is. The code and its values let a reader in
another language be told the same (the console's texts `refusal.<code>` in each of its languages)."""


class NlpError(Exception):
    """Base of the errors below; the CLI prints the message and exits with code 2.

    Raised as `Error.of(code, **values)` (one of `REFUSALS`), `code` and `values` name it for a reader's language;
    one raised with a message of its own has the code ""."""

    def __init__(self, message: str, code: str = "", values: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.values = dict(values or {})

    @classmethod
    def of(cls, code: str, **values: object) -> Self:
        return cls(REFUSALS[code].format(**values), code, values)


class DatasetError(NlpError):
    """A dataset file is missing, malformed or lacks the text/label fields."""


class ModelNotFoundError(NlpError):
    """No model with that version, or no promoted model."""


class ModelIntegrityError(NlpError):
    """A model artifact does not match the checksum in its metadata, or its metadata is unreadable."""


class ModelFormatError(ModelIntegrityError):
    """A model this installation cannot serve: saved in an earlier format, or with another scikit-learn."""


class ModelKeysRequiredError(NlpError):
    """An encrypted model was to be read without the key ring (not a fault of the model: nothing retrains)."""


class PromotionRefusedError(NlpError):
    """The promotion gate refused a model (worse on the evaluation split, or no evaluation metrics)."""


class RegistryError(NlpError):
    """The registry cannot do what was asked (e.g. nothing to roll back to)."""


class NothingNewToTrain(RegistryError):
    """A saved version was trained on exactly this data, with the same settings, libraries and model format: a
    new one would be a copy of it. `version` and `n_examples` name it. The one refusal for it, from the command
    line and the console alike (code `model_nothing_new`)."""

    def __init__(self, version: str, n_examples: int) -> None:
        values: dict[str, object] = {"version": version, "n_examples": n_examples}
        super().__init__(REFUSALS["model_nothing_new"].format(**values), "model_nothing_new", values)
        self.version = version
        self.n_examples = n_examples
