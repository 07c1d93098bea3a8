"""`python -m benchmarks.hotspots_quality --database-url URL`: the product's hot-issue refresh timed against an
existing database, on a small one built the way `benchmarks.console_scale` builds its cities (cases inserted with
the product's models, signed by the housekeeping job `bot.jobs.sign_for_similarity`). SQLite and PostgreSQL.

The figures themselves are not asserted (speed goes to docs/): what is checked is that each window's refresh read
exactly the signed cases of that window from the database, grouped them, and stored its runs as the service does."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from benchmarks import console_scale
from benchmarks.hotspots_quality import database_refresh
from storage.db import Database
from storage.models import Case, CaseSignature, HotIssueRun
from tests.conftest import make_test_keyring
from tests.console.conftest import make_settings

CASES = 1200


async def _signed_in(database: Database, since: Any, until: Any) -> int:
    async with database.sessionmaker() as session:
        return int(await session.scalar(
            select(func.count()).select_from(Case).join(CaseSignature, CaseSignature.case_id == Case.id)
            .where(Case.created_at >= since, Case.created_at < until)) or 0)


async def test_the_database_mode_times_the_products_refresh_of_each_window(
        database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path / "data", database_url=database_url)
    await console_scale.build(database_url, settings, CASES)
    capsys.readouterr()

    figures = await database_refresh(database_url, [365, 30])

    printed = capsys.readouterr().out
    assert f"{CASES:,} cases stored, {CASES:,} signed" in printed
    assert [line.split(",")[0] for line in printed.splitlines()[1:]] == ["last 30 days", "last 365 days"]
    database = Database.connect(database_url, make_test_keyring())
    try:
        async with database.sessionmaker() as session:
            newest = await session.scalar(select(func.max(Case.created_at)))
            runs = list((await session.execute(select(HotIssueRun).order_by(HotIssueRun.id))).scalars())
        assert newest is not None
        until = (newest if newest.tzinfo else newest.replace(tzinfo=UTC)) + timedelta(seconds=1)
        expected = [await _signed_in(database, until - timedelta(days=days), until) for days in (30, 365)]
    finally:
        await database.dispose()
    assert [figure["days"] for figure in figures] == [30, 365]
    assert [figure["cases"] for figure in figures] == expected
    assert 0 < expected[0] < expected[1] < CASES  # the cases span two years: each window holds its own share
    assert all(figure["groups"] > 0 and figure["top_cases"] >= 2 for figure in figures)
    # each window: the end-to-end refresh's run, then the one stored by the step-by-step pass, same period
    assert [(run.cases, len(run.groups)) for run in runs] == [
        (figure["cases"], figure["groups"]) for figure in figures for _ in range(2)]
    assert {run.until - run.since for run in runs} == {timedelta(days=30), timedelta(days=365)}


def test_the_command_refuses_a_database_without_signed_cases(database_url: str) -> None:
    with pytest.raises(SystemExit, match="no signed case"):
        asyncio.run(database_refresh(database_url, [30]))
