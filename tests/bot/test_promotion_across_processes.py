"""A promotion reaches every serving process (issue 14.4): two `qinglian serve` on one PostgreSQL database and one
data directory; `qinglian model promote` run beside them switches both within seconds — /healthz names the new
version and a report filed through either carries it — and `qinglian model rollback` switches both back."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nlp.corpus import Example, load_seed_corpus
from nlp.labels import LABELS
from nlp.registry import ModelRegistry, train_and_register
from tests.conftest import REPO, LiveService, create_postgres_database, drop_postgres_database

SECRET = "promotion-secret-" + "p" * 40
CASE_NUMBER = re.compile(r"QL-\d{4}-\d{6}")


@pytest.fixture
def two_services(postgres_server: str, tmp_path: Path) -> Iterator[tuple[LiveService, LiveService]]:
    name, url = create_postgres_database(postgres_server)
    data_dir = tmp_path / "data"  # one data directory, as on a shared volume
    env = {"QINGLIAN_DATABASE_URL": url, "QINGLIAN_SECRET_KEY": SECRET}
    first = LiveService(data_dir, env)
    second = LiveService(data_dir, env)
    try:
        first.start()  # migrates the database
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()
        drop_postgres_database(postgres_server, name)


def _small_version(models_dir: Path) -> str:
    """A second version, trained quickly on 12 seed examples of each label (weaker: it needs --force)."""
    examples: list[Example] = []
    for label in LABELS:
        examples += [e for e in load_seed_corpus("train") if e.label == label][:12]
    return train_and_register(ModelRegistry(models_dir), examples, source="small").version


def _qinglian(service: LiveService, *args: str) -> str:
    """`qinglian …` as the operator runs it: with the service's configuration (its database, where the command
    writes its audit entry)."""
    done = subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=service.env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _serving(service: LiveService) -> str | None:
    health = httpx.get(f"{service.url}/healthz", timeout=10)
    assert health.status_code == 200, health.text
    model = health.json()["model"]
    return str(model) if model else None


def _wait_until_serving(services: tuple[LiveService, ...], version: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while True:
        serving = [_serving(service) for service in services]
        if serving == [version] * len(services):
            return
        assert time.monotonic() < deadline, f"after {within:.0f} s the processes serve {serving}, not {version}"
        time.sleep(0.2)


def _file_report(service: LiveService) -> str:
    with httpx.Client(base_url=service.url, timeout=30, headers={"X-Qinglian-Chat": "1"}) as client:
        client.get("/")
        steps = [{"command": "report"}, {"choice": "district:yuhua"}, {"text": "雨花区政务服务中心"},
                 {"choice": "when:today"}, {"text": "窗口工作人员上班时间离岗一个多小时，群众排长队无人办理。"},
                 {"choice": "evidence:done"}, {"choice": "identity:anonymous"}, {"choice": "summary:submit"}]
        reply = ""
        for body in steps:
            response = client.post("/chat/api/message", json=body)
            assert response.status_code == 200, response.text
            reply = response.json()["messages"][0]["text"]
    number = CASE_NUMBER.search(reply)
    assert number, reply
    return number.group(0)


async def _model_versions(url: str, numbers: list[str]) -> dict[str, str | None]:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await connection.fetch("SELECT case_number, model_version FROM cases WHERE case_number = ANY($1)",
                                      numbers)
    finally:
        await connection.close()
    return {row["case_number"]: row["model_version"] for row in rows}


@pytest.mark.postgres
def test_a_promotion_on_the_command_line_reaches_both_processes(two_services: tuple[LiveService, LiveService]
                                                                ) -> None:
    first, second = two_services
    data_dir = first.data_dir
    default = _serving(first)
    assert default is not None and _serving(second) == default
    newer = _small_version(data_dir / "models")

    assert f"promoted {newer}" in _qinglian(first, "model", "promote", "--force", newer)
    _wait_until_serving((first, second), newer)
    numbers = [_file_report(first), _file_report(second)]
    url = first.env["QINGLIAN_DATABASE_URL"]
    assert asyncio.run(_model_versions(url, numbers)) == {number: newer for number in numbers}

    assert f"rolled back to {default}" in _qinglian(first, "model", "rollback")
    _wait_until_serving((first, second), default)
    numbers = [_file_report(second), _file_report(first)]
    assert asyncio.run(_model_versions(url, numbers)) == {number: default for number in numbers}
