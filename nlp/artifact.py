"""A model on disk: the fitted scikit-learn pipeline saved with joblib, its metadata, and the checks made
before it is loaded.

`<version>/pipeline.joblib` is the pipeline (`joblib.dump`); `<version>/metadata.json` holds its sha256, the
format number and the versions of the libraries it was saved with. A model is unpickled only after its file
matched the sha256 and the installed scikit-learn was found to be the one it was saved with (scikit-learn
does not support loading a model saved by another version); anything else is refused with a
`ModelIntegrityError` that names what differs and what to do. Models of the earlier format (`model.joblib` +
`compiled.npz`) are recognised and refused the same way (`ModelFormatError`).

Why joblib and not skops: skops imports every estimator of scikit-learn when it is imported, which costs the
serving process 15–22 MB and took it over its 250 MB budget (docs/benchmarks-classifier.md). The sha256 is a
check against corruption, not a signature: whoever can write the models directory can run code in the
service, so it must be writable by the service's user only.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlp.errors import ModelFormatError, ModelIntegrityError, ModelNotFoundError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MODEL_FILE = "pipeline.joblib"
METADATA_FILE = "metadata.json"
MODEL_FORMAT = 2  # 1: model.joblib + compiled.npz (arrays served without scikit-learn); 2: pipeline.joblib
OLD_FORMAT_FILES = ("model.joblib", "compiled.npz")
REFUSAL_HINT = "train a new model with `qinglian model train` (or let `qinglian serve` train the default one)"


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
        raise ModelIntegrityError(f"{path} is not valid JSON: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str) or "version" not in data:
        raise ModelIntegrityError(f"{path} lacks the version or the artifact's sha256")
    return data


def check_servable(model_dir: Path, metadata: dict[str, Any]) -> Path:
    """The model file, after checking that this installation can load it: the current format, the same
    scikit-learn as when it was saved, and the file's sha256. Raises `ModelFormatError` (format or versions)
    or `ModelIntegrityError` (missing or altered file)."""
    version = metadata["version"]
    if metadata.get("format") != MODEL_FORMAT:
        found = [name for name in OLD_FORMAT_FILES if (model_dir / name).is_file()]
        what = " + ".join(found) if found else f"format {metadata.get('format', 1)}"
        raise ModelFormatError(f"model {version} was saved by an earlier version of Qinglian ({what}), which this "
                               f"version no longer loads: {REFUSAL_HINT}")
    saved = str(dict(metadata.get("library_versions") or {}).get("scikit-learn", "unknown"))
    installed = installed_version("scikit-learn")
    if saved != installed:
        raise ModelFormatError(f"model {version} was saved with scikit-learn {saved}, but scikit-learn {installed} "
                               f"is installed: {REFUSAL_HINT}, or install scikit-learn=={saved}")
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ModelIntegrityError(f"model {version}: {MODEL_FILE} is missing")
    actual = file_sha256(path)
    if actual != metadata["sha256"]:
        raise ModelIntegrityError(f"model {version}: {MODEL_FILE} does not match the sha256 in {METADATA_FILE} "
                                  f"(expected {str(metadata['sha256'])[:12]}…, found {actual[:12]}…)")
    return path


def save_pipeline(pipeline: Pipeline, path: Path) -> str:
    """Write the fitted pipeline to `path` with joblib; returns the file's sha256."""
    import joblib

    joblib.dump(pipeline, path)
    return file_sha256(path)


def load_pipeline(model_dir: Path, metadata: dict[str, Any]) -> Pipeline:
    """The pipeline of a saved model, unpickled only after `check_servable` passed."""
    import joblib
    from sklearn.pipeline import Pipeline

    path = check_servable(model_dir, metadata)
    version = metadata["version"]
    try:
        pipeline = joblib.load(path)
    except Exception as problem:  # unpickling errors have no common base class
        raise ModelIntegrityError(f"model {version}: cannot load {MODEL_FILE}: {problem}") from problem
    if not isinstance(pipeline, Pipeline):
        raise ModelIntegrityError(f"model {version}: {MODEL_FILE} is not a scikit-learn pipeline")
    return pipeline
