"""Where the classifier keeps its files: `QINGLIAN_DATA_DIR` (default `./data`), models in `<data_dir>/models/`."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_VARIABLE = "QINGLIAN_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")


def data_dir() -> Path:
    value = os.environ.get(DATA_DIR_VARIABLE, "").strip()
    return Path(value) if value else DEFAULT_DATA_DIR


def models_dir(base: Path | None = None) -> Path:
    return (base or data_dir()) / "models"


def reports_dir(base: Path | None = None) -> Path:
    """Where `model evaluate` writes its confusion-matrix images."""
    return (base or data_dir()) / "reports"
