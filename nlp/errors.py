"""Exceptions of the classifier room; each message is one line an administrator can act on."""

from __future__ import annotations


class NlpError(Exception):
    """Base of the errors below; the CLI prints the message and exits with code 2."""


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
    new one would be a copy of it. `version` and `n_examples` name it."""

    def __init__(self, version: str, n_examples: int) -> None:
        self.version = version
        self.n_examples = n_examples
        super().__init__(f"nothing new to learn: version {version} was trained on the same {n_examples} examples "
                         "with the same settings and libraries; label or correct reports first (or train again "
                         "anyway with --again)")
