"""The classifier room's errors as their callers catch them: every one is an `NlpError` (the CLI and the models
page report it as one line), a model in a format this installation cannot serve is refused like an altered one
(`ModelIntegrityError`: the registry skips it, the service retrains), while an encrypted model read without the
key ring is not an integrity fault (nothing retrains over a missing key), and each carries its message as is."""

from __future__ import annotations

import pytest

from nlp.errors import (
    DatasetError,
    ModelFormatError,
    ModelIntegrityError,
    ModelKeysRequiredError,
    ModelNotFoundError,
    NlpError,
    PromotionRefusedError,
    RegistryError,
)

EVERY_ERROR = [DatasetError, ModelNotFoundError, ModelIntegrityError, ModelFormatError, ModelKeysRequiredError,
               PromotionRefusedError, RegistryError]


@pytest.mark.parametrize("error", EVERY_ERROR)
def test_every_error_of_the_classifier_room_is_caught_as_an_nlp_error_with_its_message(
        error: type[NlpError]) -> None:
    with pytest.raises(NlpError) as caught:
        raise error("model 20260101-000000 was not found in data/models")
    assert type(caught.value) is error
    assert str(caught.value) == "model 20260101-000000 was not found in data/models"


def test_a_model_in_a_format_this_installation_cannot_serve_is_refused_like_an_altered_one() -> None:
    with pytest.raises(ModelIntegrityError) as caught:
        raise ModelFormatError("model v1 was saved with scikit-learn 1.3.2, but scikit-learn 1.5.0 is installed")
    assert isinstance(caught.value, ModelFormatError)


def test_an_encrypted_model_read_without_the_key_ring_is_not_an_integrity_fault_of_the_model() -> None:
    """An `except ModelIntegrityError` (skip the model, retrain the default one) lets it through: the key ring is
    missing, the model is fine."""
    with pytest.raises(ModelKeysRequiredError):
        try:
            raise ModelKeysRequiredError("model v1 is encrypted: it is read with the service's key ring")
        except ModelIntegrityError:
            pytest.fail("a missing key ring was taken for a damaged model")


def test_a_refusal_of_the_registry_carries_its_code_and_values_for_a_reader_in_another_language() -> None:
    refused = RegistryError.of("model_gate_below", version="v2", candidate_f1="0.8000", current="v1",
                               current_f1="0.9000")
    assert (refused.code, refused.values) == ("model_gate_below", {
        "version": "v2", "candidate_f1": "0.8000", "current": "v1", "current_f1": "0.9000"})
    assert str(refused) == ("model v2 has macro-F1 0.8000 on the evaluation split, more than 1 point below the "
                            "promoted v1 (0.9000)")
    assert (NlpError("a damaged file").code, NlpError("a damaged file").values) == ("", {})
