"""A model on disk: the fitted scikit-learn pipeline saved with joblib, its metadata, and the checks made
before it is loaded.

`<version>/pipeline.joblib` is the pipeline (`joblib.dump`); `<version>/metadata.json` holds its sha256, the
format number and the versions of the libraries it was saved with. A model is unpickled only after its file
matched the sha256 and the installed scikit-learn was found to be the one it was saved with (scikit-learn
does not support loading a model saved by another version); anything else is refused with a
`ModelIntegrityError` that names what differs and what to do. Models of the earlier format (`model.joblib` +
`compiled.npz`) are recognised and refused the same way (`ModelFormatError`).

Encrypted at rest: the vocabulary of a model trained from staff-labelled reports holds their words, so the
service saves every model through an `ArtifactCipher` — the key ring's file encryption (AES-256-GCM in chunks,
`storage.evidence_files`, handed in by the room that owns the keys: this room does not import storage). The
metadata then says `"encrypted": true`; the sha256 is of the joblib bytes (the plaintext), so it stays valid
when `qinglian keys rotate` re-encrypts the file. Loading decrypts into memory (the file is a few MB) and checks
the sha256 there; no plaintext copy is ever written. A model saved before encryption (a plain joblib file) still
loads, with or without a cipher.

Why joblib and not skops: skops imports every estimator of scikit-learn when it is imported, which costs the
serving process 15–22 MB and took it over its 250 MB budget (docs/benchmarks-classifier.md). The sha256 is a
check against corruption, not a signature: whoever can write the models directory can run code in the
service, so it must be writable by the service's user only.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nlp.errors import ModelFormatError, ModelIntegrityError, ModelKeysRequiredError, ModelNotFoundError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MODEL_FILE = "pipeline.joblib"
METADATA_FILE = "metadata.json"
MODEL_FORMAT = 2  # 1: model.joblib + compiled.npz (arrays served without scikit-learn); 2: pipeline.joblib
OLD_FORMAT_FILES = ("model.joblib", "compiled.npz")


class ArtifactCipher(Protocol):
    """Encryption of model files at rest (`storage.evidence_files.SealedFiles` is the service's). Hashable:
    the console caches a model's evaluation by its path, sha256 and cipher."""

    def __hash__(self) -> int: ...

    def write(self, path: Path, content: bytes | Iterable[bytes], *, purpose: str) -> int:
        """Encrypt `content` into `path` atomically; returns the plaintext's size."""
        ...

    def read(self, path: Path, *, purpose: str) -> Iterator[bytes]:
        """The plaintext of `path`, piece by piece (a file stored before encryption is read as it is); raises
        `ValueError` if the file was altered or moved, or is under a key the cipher does not have."""
        ...


def purpose_of(version: str) -> str:
    """What a model file's encryption is bound to: a file copied into another version's directory does not
    decrypt."""
    return f"model:{version}/{MODEL_FILE}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def installed_version(distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def read_metadata(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"no model in {model_dir} (missing {METADATA_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise ModelIntegrityError.of("model_metadata_invalid", path=path, problem=problem) from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str) or "version" not in data:
        raise ModelIntegrityError.of("model_metadata_incomplete", path=path)
    return data


def check_servable(model_dir: Path, metadata: dict[str, Any], cipher: ArtifactCipher | None = None) -> bytes:
    """The model file's joblib bytes (decrypted in memory), after checking that this installation can load
    it: the current format, the same scikit-learn as when it was saved, and the sha256 of its bytes. Raises
    `ModelFormatError` (format or versions), `ModelIntegrityError` (missing, altered or undecryptable file) or
    `ModelKeysRequiredError` (an encrypted model and no cipher)."""
    version = metadata["version"]
    if metadata.get("format") != MODEL_FORMAT:
        found = [name for name in OLD_FORMAT_FILES if (model_dir / name).is_file()]
        what = " + ".join(found) if found else f"format {metadata.get('format', 1)}"
        saved_format = metadata.get("format", 1)
        when = "an earlier" if isinstance(saved_format, int) and saved_format < MODEL_FORMAT else "another"
        raise ModelFormatError.of("model_other_format" if when == "another" else "model_earlier_format",
                                  version=version, what=what)
    saved = dict(metadata.get("library_versions") or {}).get("scikit-learn")
    installed = installed_version("scikit-learn")
    if saved is None:
        raise ModelFormatError.of("model_sklearn_unrecorded", version=version, installed=installed)
    if str(saved) != installed:
        raise ModelFormatError.of("model_sklearn_other", version=version, saved=saved, installed=installed)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ModelIntegrityError.of("model_file_missing", version=version, file=MODEL_FILE)
    if metadata.get("encrypted") and cipher is None:
        raise ModelKeysRequiredError(f"model {version} is encrypted: it is read with the service's key ring "
                                     "(run the `qinglian` command with the service's settings)")
    if cipher is None:
        content = path.read_bytes()
    else:
        try:
            content = b"".join(cipher.read(path, purpose=purpose_of(str(version))))
        except ValueError as problem:  # altered or moved file, or under a key the cipher lacks
            raise ModelIntegrityError.of("model_undecryptable", version=version, file=MODEL_FILE,
                                         problem=problem) from None
    actual = hashlib.sha256(content).hexdigest()
    if actual != metadata["sha256"]:
        raise ModelIntegrityError.of("model_altered", version=version, file=MODEL_FILE, metadata=METADATA_FILE,
                                     expected=str(metadata["sha256"])[:12], found=actual[:12])
    return content


def save_pipeline(pipeline: Pipeline, path: Path, *, version: str, cipher: ArtifactCipher | None = None) -> str:
    """Write the fitted pipeline to `path` with joblib — encrypted by `cipher` when given, the joblib bytes
    never touching the disk in plain text; returns the sha256 of the joblib bytes."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    content = buffer.getvalue()
    if cipher is None:
        path.write_bytes(content)
    else:
        cipher.write(path, content, purpose=purpose_of(version))
    return hashlib.sha256(content).hexdigest()


def load_pipeline(model_dir: Path, metadata: dict[str, Any], cipher: ArtifactCipher | None = None) -> Pipeline:
    """The pipeline of a saved model, unpickled (from memory) only after `check_servable` passed."""
    import joblib
    from sklearn.pipeline import Pipeline

    content = check_servable(model_dir, metadata, cipher)
    version = metadata["version"]
    try:
        pipeline = joblib.load(io.BytesIO(content))
    except Exception as problem:  # unpickling errors have no common base class
        raise ModelIntegrityError.of("model_unloadable", version=version, file=MODEL_FILE,
                                     problem=problem) from problem
    if not isinstance(pipeline, Pipeline):
        raise ModelIntegrityError.of("model_not_pipeline", version=version, file=MODEL_FILE)
    return pipeline
