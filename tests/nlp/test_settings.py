"""Where the classifier keeps its files, as the CLI and the service ask for them: `QINGLIAN_DATA_DIR` (trimmed;
unset or blank means `./data`), read at each call, with the models in `<data dir>/models` and the evaluation
reports in `<data dir>/reports`, or under a base directory handed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlp.settings import DATA_DIR_VARIABLE, data_dir, models_dir, reports_dir


def test_without_the_variable_the_files_are_under_data_in_the_working_directory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QINGLIAN_DATA_DIR", raising=False)
    assert (data_dir(), models_dir(), reports_dir()) == (Path("data"), Path("data/models"), Path("data/reports"))


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_a_blank_variable_means_the_default(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("QINGLIAN_DATA_DIR", value)
    assert (data_dir(), models_dir()) == (Path("data"), Path("data/models"))


def test_the_variable_names_the_data_directory_trimmed_and_as_given(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    assert DATA_DIR_VARIABLE == "QINGLIAN_DATA_DIR"
    monkeypatch.setenv("QINGLIAN_DATA_DIR", f"  {tmp_path / 'qinglian data'}\n")
    assert data_dir() == tmp_path / "qinglian data"
    assert models_dir() == tmp_path / "qinglian data" / "models"
    assert reports_dir() == tmp_path / "qinglian data" / "reports"
    monkeypatch.setenv("QINGLIAN_DATA_DIR", "var/qinglian")
    assert (data_dir(), models_dir()) == (Path("var/qinglian"), Path("var/qinglian/models"))  # relative stays so


def test_the_variable_is_read_at_each_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path / "first"))
    first = models_dir()
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path / "second"))
    assert (first, models_dir()) == (tmp_path / "first" / "models", tmp_path / "second" / "models")


def test_a_base_directory_handed_in_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path / "from-environment"))
    base = tmp_path / "service"
    assert (models_dir(base), reports_dir(base)) == (base / "models", base / "reports")
