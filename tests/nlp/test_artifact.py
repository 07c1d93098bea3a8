"""A model on disk (`nlp.artifact`): the pipeline is saved with joblib (in plain text or encrypted with the
service's file encryption), its metadata read back, and a model is unpickled only after its format, the
scikit-learn it was saved with and the sha256 of its bytes were checked; everything else is refused with a
message naming what differs and what to do. A one-step scikit-learn pipeline stands in for a classifier: what is
saved and checked does not depend on what the pipeline computes."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from nlp.artifact import (
    METADATA_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    check_servable,
    file_sha256,
    installed_version,
    load_pipeline,
    purpose_of,
    read_metadata,
    save_pipeline,
)
from nlp.errors import ModelFormatError, ModelIntegrityError, ModelKeysRequiredError, ModelNotFoundError
from storage.crypto import DataKey, KeyRing, generate_key, parse_key
from storage.evidence_files import SealedFiles
from tests.conftest import TEST_PSEUDONYM_KEY, make_test_keyring

VERSION = "20250301-120000-abcdef"
SKLEARN = importlib_metadata.version("scikit-learn")
HINT = "train a new model with `qinglian model train` (or let `qinglian serve` train the default one)"


def fitted_pipeline() -> Pipeline:
    """Scales by the mean 1 and standard deviation 1 of [0, 2]: 4 → 3."""
    return Pipeline([("scale", StandardScaler())]).fit(np.array([[0.0], [2.0]]))


def metadata_of(sha256: str, version: str = VERSION, **changes: Any) -> dict[str, Any]:
    return {"version": version, "format": MODEL_FORMAT, "sha256": sha256,
            "library_versions": {"scikit-learn": SKLEARN}, **changes}


def saved_model(directory: Path, cipher: SealedFiles | None = None,
                version: str = VERSION) -> tuple[Path, dict[str, Any]]:
    """A model directory `directory/version` as the registry writes it; returns it with its metadata."""
    model_dir = directory / version
    model_dir.mkdir(parents=True)
    sha256 = save_pipeline(fitted_pipeline(), model_dir / MODEL_FILE, version=version, cipher=cipher)
    metadata = metadata_of(sha256, version, encrypted=cipher is not None)
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
    return model_dir, metadata


def scales_four_to_three(pipeline: Pipeline) -> bool:
    return bool(np.allclose(pipeline.transform(np.array([[4.0]])), [[3.0]]))


def other_ring() -> KeyRing:
    return KeyRing(DataKey(parse_key(generate_key())), pseudonym_key=parse_key(TEST_PSEUDONYM_KEY))


def test_a_saved_pipeline_loads_back_and_its_sha256_is_that_of_its_file(tmp_path: Path) -> None:
    model_dir, written = saved_model(tmp_path)
    content = (model_dir / MODEL_FILE).read_bytes()
    assert written["sha256"] == hashlib.sha256(content).hexdigest() == file_sha256(model_dir / MODEL_FILE)
    metadata = read_metadata(model_dir)
    assert metadata == written
    assert check_servable(model_dir, metadata) == content
    loaded = load_pipeline(model_dir, metadata)
    assert isinstance(loaded, Pipeline) and scales_four_to_three(loaded)


def test_an_encrypted_model_keeps_no_plain_joblib_bytes_on_disk_and_loads_with_the_key_ring(tmp_path: Path) -> None:
    sealed = SealedFiles(make_test_keyring())
    model_dir, metadata = saved_model(tmp_path, sealed)
    plain = io.BytesIO()
    joblib.dump(fitted_pipeline(), plain)
    on_disk = (model_dir / MODEL_FILE).read_bytes()
    assert plain.getvalue()[:32] not in on_disk and b"StandardScaler" not in on_disk
    # the sha256 is of the joblib bytes, not of the encrypted file (it survives re-encryption under a new key)
    assert metadata["sha256"] == hashlib.sha256(plain.getvalue()).hexdigest() != file_sha256(model_dir / MODEL_FILE)
    assert check_servable(model_dir, metadata, sealed) == plain.getvalue()
    assert scales_four_to_three(load_pipeline(model_dir, metadata, SealedFiles(make_test_keyring())))


def test_an_encrypted_model_read_without_the_key_ring_is_refused_as_needing_the_keys_not_as_damaged(
        tmp_path: Path) -> None:
    model_dir, metadata = saved_model(tmp_path, SealedFiles(make_test_keyring()))
    with pytest.raises(ModelKeysRequiredError) as refused:
        load_pipeline(model_dir, metadata)
    assert str(refused.value) == (f"model {VERSION} is encrypted: it is read with the service's key ring (run the "
                                  "`qinglian` command with the service's settings)")
    assert not isinstance(refused.value, ModelIntegrityError)  # a damaged model would be retrained over


def test_an_encrypted_model_file_moved_into_another_versions_directory_does_not_decrypt(tmp_path: Path) -> None:
    sealed = SealedFiles(make_test_keyring())
    source, metadata = saved_model(tmp_path, sealed)
    assert purpose_of(VERSION) == f"model:{VERSION}/pipeline.joblib"
    moved = tmp_path / "20250302-080000-fedcba"
    moved.mkdir()
    shutil.copy(source / MODEL_FILE, moved / MODEL_FILE)
    with pytest.raises(ModelIntegrityError, match=r"^model 20250302-080000-fedcba: cannot decrypt pipeline\.joblib: "
                                                  r".*failed authentication"):
        load_pipeline(moved, {**metadata, "version": moved.name}, sealed)


def test_an_encrypted_model_under_a_key_the_ring_lacks_is_refused(tmp_path: Path) -> None:
    model_dir, metadata = saved_model(tmp_path, SealedFiles(other_ring()))
    with pytest.raises(ModelIntegrityError, match=rf"^model {VERSION}: cannot decrypt pipeline\.joblib: .*is "
                                                  r"encrypted under key \S+, which is not in the key ring"):
        load_pipeline(model_dir, metadata, SealedFiles(make_test_keyring()))


def test_a_model_saved_before_encryption_loads_with_or_without_a_cipher(tmp_path: Path) -> None:
    model_dir, metadata = saved_model(tmp_path)
    assert scales_four_to_three(load_pipeline(model_dir, metadata, SealedFiles(make_test_keyring())))
    assert scales_four_to_three(load_pipeline(model_dir, metadata))


def test_a_directory_without_metadata_is_no_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as refused:
        read_metadata(tmp_path)
    assert str(refused.value) == f"no model in {tmp_path} (missing metadata.json)"


@pytest.mark.parametrize(("content", "problem"), [
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe\x00garbage", "is not valid JSON"),
    (b"[1, 2]", "lacks the version or the artifact's sha256"),
    (json.dumps({"version": VERSION}).encode(), "lacks the version or the artifact's sha256"),
    (json.dumps({"version": VERSION, "sha256": 12345}).encode(), "lacks the version or the artifact's sha256"),
    (json.dumps({"sha256": "ab" * 32}).encode(), "lacks the version or the artifact's sha256"),
])
def test_unreadable_metadata_is_refused_saying_what_is_wrong(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / METADATA_FILE).write_bytes(content)
    with pytest.raises(ModelIntegrityError) as refused:
        read_metadata(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / METADATA_FILE} {problem}")


@pytest.mark.parametrize(("old_files", "model_format", "what"), [
    (("model.joblib", "compiled.npz"), None, "model.joblib + compiled.npz"),
    (("model.joblib",), None, "model.joblib"),
    ((), None, "format 1"),
    ((), 1, "format 1"),
])
def test_a_model_of_an_earlier_format_is_refused_naming_what_was_found(
        tmp_path: Path, old_files: tuple[str, ...], model_format: int | None, what: str) -> None:
    model_dir, metadata = saved_model(tmp_path)
    for name in old_files:
        (model_dir / name).write_bytes(b"old")
    metadata = {key: value for key, value in metadata.items() if key != "format"}
    if model_format is not None:
        metadata["format"] = model_format
    with pytest.raises(ModelFormatError) as refused:
        load_pipeline(model_dir, metadata)
    assert str(refused.value) == (f"model {VERSION} was saved by an earlier version of Qinglian ({what}), which "
                                  f"this version does not load: {HINT}")


def test_a_model_of_a_later_format_is_refused_as_from_another_version(tmp_path: Path) -> None:
    model_dir, metadata = saved_model(tmp_path)
    with pytest.raises(ModelFormatError) as refused:
        check_servable(model_dir, {**metadata, "format": 3})
    assert str(refused.value) == (f"model {VERSION} was saved by another version of Qinglian (format 3), which "
                                  f"this version does not load: {HINT}")


def test_a_model_saved_with_another_scikit_learn_is_refused_naming_both_versions(tmp_path: Path) -> None:
    model_dir, metadata = saved_model(tmp_path)
    with pytest.raises(ModelFormatError) as refused:
        load_pipeline(model_dir, {**metadata, "library_versions": {"scikit-learn": "1.5.2"}})
    assert str(refused.value) == (f"model {VERSION} was saved with scikit-learn 1.5.2, but scikit-learn {SKLEARN} "
                                  f"is installed: {HINT}, or install scikit-learn==1.5.2")


@pytest.mark.parametrize("library_versions", [{}, None])
def test_a_model_that_does_not_record_its_scikit_learn_is_refused_without_a_version_to_install(
        tmp_path: Path, library_versions: dict[str, str] | None) -> None:
    model_dir, metadata = saved_model(tmp_path)
    with pytest.raises(ModelFormatError) as refused:
        load_pipeline(model_dir, {**metadata, "library_versions": library_versions})
    assert str(refused.value) == (f"model {VERSION} does not record the scikit-learn it was saved with, so it "
                                  f"cannot be checked against scikit-learn {SKLEARN}: {HINT}")


def test_a_model_whose_file_is_gone_is_refused(tmp_path: Path) -> None:
    model_dir, metadata = saved_model(tmp_path)
    (model_dir / MODEL_FILE).unlink()
    with pytest.raises(ModelIntegrityError) as refused:
        load_pipeline(model_dir, metadata)
    assert str(refused.value) == f"model {VERSION}: pipeline.joblib is missing"


class _Trap:
    """Unpickling it creates a file: whether a file was unpickled shows in the file system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_an_altered_model_file_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    model_dir, metadata = saved_model(tmp_path)
    marker = tmp_path / "unpickled"
    joblib.dump(_Trap(marker), model_dir / MODEL_FILE)  # replaced by another pickle, metadata unchanged
    found = hashlib.sha256((model_dir / MODEL_FILE).read_bytes()).hexdigest()
    with pytest.raises(ModelIntegrityError) as refused:
        load_pipeline(model_dir, metadata)
    assert str(refused.value) == (f"model {VERSION}: pipeline.joblib does not match the sha256 in metadata.json "
                                  f"(expected {metadata['sha256'][:12]}…, found {found[:12]}…)")
    with pytest.raises(ModelFormatError):  # with a matching sha256, but from another scikit-learn
        load_pipeline(model_dir, {**metadata, "sha256": found, "library_versions": {"scikit-learn": "0.24.2"}})
    assert not marker.exists()


@pytest.mark.parametrize(("content", "problem"), [
    (b"not a pickle at all", "cannot load pipeline.joblib: "),
    (None, "pipeline.joblib is not a scikit-learn pipeline"),
])
def test_a_file_that_does_not_unpickle_to_a_pipeline_is_refused(tmp_path: Path, content: bytes | None,
                                                                problem: str) -> None:
    model_dir, metadata = saved_model(tmp_path)
    if content is None:  # a joblib file of something else: the fitted scaler without its pipeline
        joblib.dump(fitted_pipeline().named_steps["scale"], model_dir / MODEL_FILE)
    else:
        (model_dir / MODEL_FILE).write_bytes(content)
    sha256 = file_sha256(model_dir / MODEL_FILE)
    with pytest.raises(ModelIntegrityError) as refused:
        load_pipeline(model_dir, {**metadata, "sha256": sha256})
    assert str(refused.value).startswith(f"model {VERSION}: {problem}")


def test_installed_versions_are_the_distributions_or_not_installed() -> None:
    assert installed_version("scikit-learn") == SKLEARN
    assert installed_version("joblib") == importlib_metadata.version("joblib")
    assert installed_version("qinglian-no-such-distribution") == "not installed"
