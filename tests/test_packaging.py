"""What `pip install` of the package (the image's `pip wheel .`, the systemd layout's `pip install /path/to/qinglian`)
puts on the server: every file the code reads beside itself, not only what an editable checkout happens to have."""

from __future__ import annotations

import fnmatch
import tomllib

from tests.conftest import REPO


def test_every_data_file_of_the_packages_is_installed_with_them() -> None:
    """console/locales/*.toml were left out of the wheel: an installed service's console could not read its texts
    (FileNotFoundError on the first page), while every test ran from the checkout and passed."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    package_data: dict[str, list[str]] = setuptools["package-data"]
    packages = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    left_out = []
    for package in packages:
        for path in sorted((REPO / package).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            inside = path.relative_to(REPO / package).as_posix()
            if not any(fnmatch.fnmatch(inside, pattern) and inside.count("/") == pattern.count("/")
                       for pattern in package_data.get(package, [])):
                left_out.append(f"{package}/{inside}")
    assert left_out == [], "not in [tool.setuptools.package-data] of pyproject.toml, so not installed"
