"""Per-address limits of the web chat: reports per day and wrong receipt codes, counted in the database
by the client address the server trusts (uvicorn's X-Forwarded-For handling), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveService, city_file, make_test_keyring
from tests.factories import pdf_of_size

SECRET = "test-secret-key-for-the-web-limits-0123456789"
WRONG_CODE = "1234 5678 9012 3456"
CASE_NUMBER = re.compile(r"QL-\d{4}-\d{6}")
EVIDENCE_FILE = 200_000
EVIDENCE_QUOTA = 3 * EVIDENCE_FILE + EVIDENCE_FILE // 2  # room for three files from one address, not four


SMALL_LIMITS = {"reports_per_ip_per_day": 2, "status_wrong_codes_per_ip": 3,
                "draft_evidence_bytes_per_address": EVIDENCE_QUOTA}
"""Small per-address limits and draft evidence quotas (`services`); `served_as_shipped` keeps the defaults."""


class Services:
    def __init__(self, tmp_path: Path, database_url: str, limits: dict[str, int] | None = None) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.config = city_file(tmp_path, SMALL_LIMITS if limits is None else limits)
        self.started: list[LiveService] = []

    def start(self, name: str, **env: str) -> LiveService:
        service = LiveService(self.tmp_path / name, {"QINGLIAN_DATABASE_URL": self.database_url,
                                                     "QINGLIAN_CONFIG_FILE": str(self.config),
                                                     "QINGLIAN_SECRET_KEY": SECRET, **env})
        service.start()
        self.started.append(service)
        return service

    def stop(self) -> None:
        for service in self.started:
            service.stop()


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[Services]:
    started = Services(tmp_path, database_url)
    yield started
    started.stop()


@pytest.fixture
def served_as_shipped(tmp_path: Path, database_url: str) -> Iterator[Services]:
    """Services with the default configuration's limits, as a city runs them unless it changes them."""
    started = Services(tmp_path, database_url, limits={})
    yield started
    started.stop()


class Resident:
    """One browser (its own chat cookie) behind the proxy that reports `address` as the client."""

    def __init__(self, service: LiveService, address: str, language: str = "zh-CN") -> None:
        self.service = service
        self.address = address
        self.client = httpx.Client(headers={"X-Qinglian-Chat": "1", "Accept-Language": language}, timeout=30)
        assert self.client.get(f"{service.url}/").status_code == 200

    def send(self, service: LiveService | None = None, **body: str) -> str:
        response = self.client.post(f"{(service or self.service).url}/chat/api/message", json=body,
                                    headers={"X-Forwarded-For": self.address})
        assert response.status_code == 200, response.text
        return "\n".join(m["text"] for m in response.json()["messages"])

    def to_evidence(self) -> None:
        self.send(command="report")
        self.send(choice="district:yuelu")
        self.send(text="岳麓区政务服务中心3号窗口")
        self.send(choice="when:today")
        self.send(text="岳麓区政务服务中心的工作人员上班时间一直玩手机，让群众排队等了两个小时。")

    def upload(self, content: bytes) -> str:
        response = self.client.post(f"{self.service.url}/chat/api/upload", headers={"X-Forwarded-For": self.address},
                                    files={"file": ("photo.jpg", content, "image/jpeg")})
        assert response.status_code == 200, response.text
        return "\n".join(m["text"] for m in response.json()["messages"])

    def file_report(self) -> str:
        self.to_evidence()
        self.send(choice="evidence:done")
        self.send(choice="identity:anonymous")
        return self.send(choice="summary:submit")


def _draft_evidence_bytes(database_url: str) -> int:
    from sqlalchemy import func, select

    from storage.db import create_engine
    from storage.models import Attachment

    async def total() -> int:
        engine = create_engine(database_url, make_test_keyring())
        try:
            async with engine.connect() as connection:
                return int(await connection.scalar(select(func.coalesce(func.sum(Attachment.size_bytes), 0))
                                                   .where(Attachment.case_id.is_(None))) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(total())


def _count_cases(database_url: str) -> int:
    from sqlalchemy import func, select

    from storage.db import create_engine
    from storage.models import Case

    async def count() -> int:
        engine = create_engine(database_url, make_test_keyring())
        try:
            async with engine.connect() as connection:
                return int(await connection.scalar(select(func.count()).select_from(Case)) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_reports_per_address_are_limited_and_the_draft_is_kept(services: Services) -> None:
    service = services.start("web")
    office = "203.0.113.7"
    for _ in range(2):
        assert CASE_NUMBER.search(Resident(service, office).file_report())
    third = Resident(service, office, language="en")
    refused = third.file_report()
    assert "Your network has filed the most reports we accept" in refused and "Your draft is kept" in refused
    assert not CASE_NUMBER.search(refused)
    assert _count_cases(services.database_url) == 2
    # nothing typed is lost: from another network the same resident submits the kept draft as it is
    third.address = "198.51.100.9"
    assert CASE_NUMBER.search(third.send(choice="summary:submit"))
    assert CASE_NUMBER.search(Resident(service, "2001:db8:1:2::1").file_report())
    assert _count_cases(services.database_url) == 4


def test_wrong_codes_per_address_count_across_processes(services: Services) -> None:
    first = services.start("web-1")
    # on PostgreSQL a second process shares the counts; SQLite runs one process (docs/deploy.md)
    both = [first, services.start("web-2")] if services.database_url.startswith("postgresql") else [first]
    office = "203.0.113.8"
    for number in range(3):  # three residents, one wrong code each, alternating between the processes
        answer = Resident(both[number % len(both)], office).send(command="status", argument=WRONG_CODE)
        assert "没有找到与该查询码对应的案件" in answer
    limited = Resident(both[-1], office)
    answer = limited.send(command="status", argument=WRONG_CODE)
    assert "从您所在的网络输入错误查询码的次数过多" in answer and "没有找到" not in answer
    assert re.search(r"请\d+分钟后再试", answer)
    # the same request from another network is answered as usual
    assert "没有找到与该查询码对应的案件" in Resident(first, "198.51.100.10").send(command="status",
                                                                                  argument=WRONG_CODE)


RECEIPT_CODE = re.compile(r"\d{4} \d{4} \d{4} \d{4}")
NOT_FOUND = "没有找到与该查询码对应的案件"
RESIDENT_WAITS = re.compile(r"^查询码错误次数过多，请\d+分钟后再试。")
NETWORK_WAITS = re.compile(r"^从您所在的网络输入错误查询码的次数过多，请\d+分钟后再试。")


def _filed(service: LiveService, address: str) -> tuple[Resident, str, str]:
    """A resident who filed a report from `address`: her browser, its case number and its receipt code."""
    owner = Resident(service, address)
    receipt = owner.file_report()
    number, code = CASE_NUMBER.search(receipt), RECEIPT_CODE.search(receipt)
    assert number and code, receipt
    return owner, number.group(), code.group()


def _limits() -> tuple[int, int]:
    """The default wrong codes per resident and per address, as `served_as_shipped` serves them."""
    from handlers.city import load_city_config

    limits = load_city_config(None).limits
    return limits.status_wrong_codes, limits.status_wrong_codes_per_ip


def test_one_browsers_wrong_codes_do_not_stop_a_neighbours_valid_code(served_as_shipped: Services) -> None:
    """The security review's case: one browser behind a shared address sends 25 wrong codes. It is told to
    wait; a neighbour's browser on the same address still opens her case with her code."""
    service = served_as_shipped.start("web")
    office = "203.0.113.70"
    neighbour, case_number, code = _filed(service, office)
    guesser = Resident(service, office)
    answers = [guesser.send(command="status", argument=WRONG_CODE) for _ in range(25)]

    opened = neighbour.send(command="status", argument=code)

    per_resident, _ = _limits()
    assert all(NOT_FOUND in answer for answer in answers[:per_resident]), answers
    assert all(RESIDENT_WAITS.match(answer) for answer in answers[per_resident:]), answers
    assert f"案件编号：{case_number}" in opened and "次数过多" not in opened


def test_a_browser_that_keeps_guessing_is_told_how_long_to_wait(served_as_shipped: Services) -> None:
    service = served_as_shipped.start("web")
    guesser = Resident(service, "203.0.113.71", language="en")
    per_resident, _ = _limits()
    answers = [guesser.send(command="status", argument=WRONG_CODE) for _ in range(per_resident + 1)]

    assert all("No case matches that code" in answer for answer in answers[:per_resident]), answers
    waits = re.match(r"^Too many wrong codes\. Please try again in (\d+) minutes?\.", answers[-1])
    assert waits and 1 <= int(waits.group(1)) <= 11, answers[-1]
    assert "from your network" not in answers[-1]
    # a code typed next (not the command) is refused the same way
    assert re.match(r"^Too many wrong codes\. Please try again in \d+ minutes?\.", guesser.send(text=WRONG_CODE))


def test_browsers_on_one_address_mistyping_a_few_codes_each_do_not_lock_it(served_as_shipped: Services) -> None:
    """Twenty wrong codes from one address, from four browsers each within its own limit: the fifth browser's
    valid code opens its case, and a sixth's wrong code is only "not found"."""
    service = served_as_shipped.start("web")
    office = "203.0.113.72"
    owner, case_number, code = _filed(service, office)
    per_resident, _ = _limits()
    for _ in range(20 // per_resident):
        neighbour = Resident(service, office)
        for _ in range(per_resident):
            assert NOT_FOUND in neighbour.send(command="status", argument=WRONG_CODE)

    assert f"案件编号：{case_number}" in owner.send(command="status", argument=code)
    assert NOT_FOUND in Resident(service, office).send(command="status", argument=WRONG_CODE)


def test_new_cookies_from_one_address_get_no_more_guesses_than_its_ceiling(served_as_shipped: Services) -> None:
    """An attacker who takes a new cookie whenever one is throttled: together the cookies reach the address's
    ceiling, and then every browser there waits, told that the attempts came from its network, whatever code
    it sends. The same code from another address opens the case."""
    service = served_as_shipped.start("web")
    office = "203.0.113.73"
    _, case_number, code = _filed(service, "198.51.100.73")
    per_resident, ceiling = _limits()
    guesses = 0
    while guesses < ceiling:
        cookie = Resident(service, office)  # a new cookie, as clearing the browser's gives
        for _ in range(per_resident + 1):
            answer = cookie.send(command="status", argument=WRONG_CODE)
            if RESIDENT_WAITS.match(answer):
                break
            assert NOT_FOUND in answer, (guesses, answer)
            guesses += 1
            if guesses == ceiling:
                break
    refused = [Resident(service, office).send(command="status", argument=attempt) for attempt in (WRONG_CODE, code)]
    elsewhere = Resident(service, "198.51.100.74").send(command="status", argument=code)

    assert guesses == ceiling >= 10 * per_resident
    assert all(NETWORK_WAITS.match(answer) for answer in refused), refused
    assert all(case_number not in answer for answer in refused)
    assert f"案件编号：{case_number}" in elsewhere


def test_the_browser_that_filed_a_case_opens_it_while_its_network_waits(services: Services) -> None:
    """The address reached its ceiling (3 here): the browser the report was filed from still opens its case with
    the code; a new browser there is refused with the same code, as with any other."""
    service = services.start("web")
    office = "203.0.113.74"
    owner, case_number, code = _filed(service, office)
    for _ in range(3):
        assert NOT_FOUND in Resident(service, office).send(command="status", argument=WRONG_CODE)

    opened = owner.send(command="status", argument=code)
    refused = Resident(service, office).send(command="status", argument=code)

    assert f"案件编号：{case_number}" in opened
    assert NETWORK_WAITS.match(refused) and case_number not in refused, refused


def test_forwarded_for_is_ignored_from_an_untrusted_peer(services: Services) -> None:
    """A client that is not the configured proxy cannot pick the address it is counted by."""
    service = services.start("web", FORWARDED_ALLOW_IPS="192.0.2.1")
    for number in range(3):
        answer = Resident(service, f"198.51.100.{20 + number}").send(command="status", argument=WRONG_CODE)
        assert "没有找到与该查询码对应的案件" in answer
    answer = Resident(service, "198.51.100.99", language="en").send(command="status", argument=WRONG_CODE)
    assert "Too many wrong codes from your network" in answer


def test_concurrent_uploads_from_one_address_stay_within_its_evidence_quota(services: Services) -> None:
    """Twelve fresh conversations behind one address upload at the same moment: the quota check and the
    stored attachment are one serialised step, so no file beyond the address's quota is kept."""
    service = services.start("web")
    residents = [Resident(service, "203.0.113.40") for _ in range(12)]
    for resident in residents:
        resident.to_evidence()
    start = threading.Barrier(len(residents))

    def upload(number: int) -> str:
        content = pdf_of_size(EVIDENCE_FILE, [f"Resident {number}"])  # as many bytes when taken (rewritten)
        start.wait()
        return residents[number].upload(content)

    with ThreadPoolExecutor(len(residents)) as pool:
        answers = list(pool.map(upload, range(len(residents))))
    accepted = [answer for answer in answers if "已收到第 1 个文件" in answer]
    refused = [answer for answer in answers if "您所在网络上传的证据文件已达" in answer]
    assert len(accepted) == 3 and len(refused) == len(residents) - 3, answers
    assert _draft_evidence_bytes(services.database_url) == 3 * EVIDENCE_FILE <= EVIDENCE_QUOTA
    assert len([path for path in (service.data_dir / "evidence").rglob("*") if path.is_file()]) == 3
