"""The lock files match pyproject.toml: every dependency the package (and its test and benchmark extras) declares
is pinned with hashes in the lock that installs it, at a version its specifier admits, so `deploy/lock.sh` was run
after the last dependency change."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def _locked(path: str) -> dict[str, tuple[str, int]]:
    """name → (pinned version, number of hashes) of a pip-compile lock file."""
    text = (REPO / path).read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, tuple[str, int]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = (match.group(2), line.count("--hash=sha256:"))
    return pins


def _declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return [Requirement(item) for item in wanted]


def test_every_declared_dependency_is_locked_with_hashes_at_an_admitted_version() -> None:
    for lock, extras in (("deploy/requirements.lock", ()), ("deploy/requirements-dev.lock", ("test", "bench"))):
        pins = _locked(lock)
        for requirement in _declared(*extras):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement.name} is not in {lock}: run deploy/lock.sh"
            version, hashes = pins[name]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {requirement.name}=={version}, outside {requirement.specifier}: run deploy/lock.sh")
            assert hashes >= 1, f"{requirement.name} has no hash in {lock}"
