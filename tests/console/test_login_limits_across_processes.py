"""The console's login limits hold across processes (issue 12.7): two `qinglian serve` on one PostgreSQL
database, failures on one count on the other — per client address and per account; and the web chat's
per-address limit on wrong receipt codes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from console.throttle import IP_FAILURE_LIMIT
from tests.conftest import LiveService, create_postgres_database, drop_postgres_database, make_test_keyring
from tests.console.conftest import PASSWORD

SECRET = "two-process-secret-" + "t" * 40
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def two_services(postgres_server: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[LiveService, LiveService]]:
    name, url = create_postgres_database(postgres_server)
    env = {"QINGLIAN_DATABASE_URL": url, "QINGLIAN_SECRET_KEY": SECRET}
    first = LiveService(tmp_path_factory.mktemp("serve-a") / "data", env)
    second = LiveService(tmp_path_factory.mktemp("serve-b") / "data", env)
    try:
        first.start()  # migrates the database
        second.start()
        asyncio.run(_add_reviewer(url))
        yield first, second
    finally:
        first.stop()
        second.stop()
        drop_postgres_database(postgres_server, name)


async def _add_reviewer(url: str) -> None:
    from storage import staff_actions
    from storage.db import Database
    from storage.models import StaffRole
    from tests.conftest import staff_password_hashing

    passwords = staff_password_hashing()

    database = Database.connect(url, make_test_keyring())
    try:
        async with database.sessionmaker.begin() as session:
            user = await staff_actions.create_staff(session, username="li.na", display_name="李娜",
                                                    role=StaffRole.REVIEWER, password_hash=passwords.hash(PASSWORD))
            await staff_actions.set_queues(session, user, ["clean_hall"])
    finally:
        await database.dispose()


def _login(service: LiveService, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        form = client.get("/console/login")
        token = LOGIN_TOKEN.search(form.text)
        assert token
        return client.post("/console/login", data={"username": username, "password": password,
                                                   "login_token": token.group(1), "next": "/console"})


@pytest.mark.postgres
def test_failed_logins_on_one_process_count_on_the_other(two_services: tuple[LiveService, LiveService],
                                                         tmp_path: Path) -> None:
    first, second = two_services
    # the account: 5 failures lock it (the city's default), three on one process and two on the other
    for service in (first, second, first, second):
        assert _login(service, "li.na", "not the password at all").status_code == 401
    assert _login(first, "li.na", PASSWORD).status_code == 303  # four failures: still open, and it resets
    for service in (first, second, first, second, first):
        assert _login(service, "li.na", "not the password at all").status_code == 401
    for service in (first, second):
        locked = _login(service, "li.na", PASSWORD)
        assert locked.status_code == 401 and "锁定" in locked.text
    # the address: 20 failures from it within the window, spread over both processes (the account's above
    # count too), and then both refuse it before checking anything
    counted = 4 + 5 + 2
    for number in range(IP_FAILURE_LIMIT - counted):
        service = first if number % 2 else second
        assert _login(service, f"nobody{number}", "wrong password!").status_code == 401
    for service in (first, second):
        refused = _login(service, "nobody", "wrong password!")
        assert refused.status_code == 429 and "失败次数过多" in refused.text


def _web_resident(service: LiveService) -> httpx.Client:
    """A new resident in the web chat (its own conversation cookie), from 127.0.0.1 like every other here."""
    client = httpx.Client(base_url=service.url, timeout=30,
                          headers={"X-Qinglian-Chat": "1", "Accept-Language": "zh-CN"})
    assert client.get("/").status_code == 200
    return client


def _say(client: httpx.Client, **body: str) -> str:
    response = client.post("/chat/api/message", json=body)
    assert response.status_code == 200, response.text
    return "\n".join(message["text"] for message in response.json()["messages"])


@pytest.mark.postgres
def test_wrong_receipt_codes_from_one_address_count_on_both_processes(
        two_services: tuple[LiveService, LiveService]) -> None:
    """The web chat's per-address limit on wrong receipt codes (the default configuration's), guessed by new
    residents on both processes in turn: the guess after the limit is refused whichever process it reaches."""
    from handlers.city import load_city_config

    limit = load_city_config(None).limits.status_wrong_codes_per_ip  # the default configuration, as served
    guesses = 0
    residents = 0
    while guesses < limit:
        with closing(_web_resident(two_services[residents % 2])) as resident:
            residents += 1
            for _ in range(min(2, limit - guesses)):  # under the per-resident limit of 5
                assert "16位查询码" in _say(resident, command="status")
                assert "没有找到" in _say(resident, text="1234 5678 9012 3456")
                guesses += 1
    for service in two_services:
        with closing(_web_resident(service)) as newcomer:
            _say(newcomer, command="status")
            assert "从您所在的网络输入错误查询码的次数过多" in _say(newcomer, text="1234 5678 9012 3456")
