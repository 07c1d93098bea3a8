"""Databases for the channels' mirror tests: one per module and backend where a test builds a whole runtime
(each test then uses its own residents, browsers or account), and one that nothing may open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import migrated_copy


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of each backend, as `database_url` makes one, shared by the module's tests."""
    with migrated_copy(request, tmp_path_factory.mktemp("shared")) as url:
        yield url


@pytest.fixture
def never_opened(tmp_path: Path) -> str:
    """A database URL nothing may use: a step refused before it reaches the database fails loudly if it does."""
    return f"sqlite+aiosqlite:///{tmp_path / 'not-migrated.db'}"
