"""The residents' per-address limits hold across processes (issue 12.7): two `qinglian serve` on one PostgreSQL
database, requests alternating between them — reports per address in the web chat, draft evidence bytes per
address, and WeChat receipt-code guesses per source address with rotating openids. Each limit's total is
reached, not exceeded, and the refused request gets the limit's own message, whichever process it reaches.
(Login throttling, wrong receipt codes per address in the web chat and the Telegram send rate have their own
two-process tests: tests/console/test_login_limits_across_processes.py and
tests/bot/test_send_rate_across_processes.py.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.channels.test_wechat import AES_KEY, APP_ID, APP_SECRET, TOKEN, User, running_standin
from tests.conftest import LiveService, city_file, create_postgres_database, drop_postgres_database, make_test_keyring
from tests.factories import pdf_of_size
from tests.standins.wechat_server import WeChatStandIn

SECRET = "limits-across-processes-" + "p" * 40
REPORTS_PER_ADDRESS = 2
GUESSES_PER_SOURCE = 3
EVIDENCE_BYTES_PER_ADDRESS = 3_000
PHOTO = pdf_of_size(1_204)  # 1,204 bytes, as many when taken: two fit in an address's 3,000, a third does not (an
# image would be re-encoded to a size of its own)
CASE_NUMBER = re.compile(r"QL-\d{4}-\d{6}")


@pytest.fixture(scope="module")
def standin() -> Iterator[WeChatStandIn]:
    with running_standin(encoding_aes_key=AES_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def two_services(postgres_server: str, standin: WeChatStandIn, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[str, LiveService, LiveService]]:
    """Two services on one database, with the web chat and a WeChat account in safe mode; yields the
    database's URL and both."""
    name, url = create_postgres_database(postgres_server)
    config = city_file(tmp_path_factory.mktemp("config"), {  # small limits, so that a few requests reach each
        "reports_per_ip_per_day": REPORTS_PER_ADDRESS, "draft_evidence_bytes_per_address": EVIDENCE_BYTES_PER_ADDRESS,
        "status_wrong_codes_per_platform_address": GUESSES_PER_SOURCE})
    env = {"QINGLIAN_DATABASE_URL": url, "QINGLIAN_SECRET_KEY": SECRET, "QINGLIAN_CONFIG_FILE": str(config),
           "QINGLIAN_WECHAT_TOKEN": TOKEN, "QINGLIAN_WECHAT_APP_ID": APP_ID, "QINGLIAN_WECHAT_APP_SECRET": APP_SECRET,
           "QINGLIAN_WECHAT_AES_KEY": AES_KEY, "QINGLIAN_WECHAT_API_URL": standin.root_url}
    first = LiveService(tmp_path_factory.mktemp("serve-a") / "data", env)
    second = LiveService(tmp_path_factory.mktemp("serve-b") / "data", env)
    try:
        first.start()  # migrates the database
        second.start()
        yield url, first, second
    finally:
        first.stop()
        second.stop()
        drop_postgres_database(postgres_server, name)


class Resident:
    """One browser (its own chat cookie) behind the proxy that reports `address` as the client; it talks to
    whichever process a request is sent to, as behind a load balancer."""

    def __init__(self, service: LiveService, address: str) -> None:
        self.address = address
        self.client = httpx.Client(headers={"X-Qinglian-Chat": "1", "Accept-Language": "zh-CN"}, timeout=30)
        assert self.client.get(f"{service.url}/").status_code == 200

    def send(self, service: LiveService, **body: str) -> str:
        response = self.client.post(f"{service.url}/chat/api/message", json=body,
                                    headers={"X-Forwarded-For": self.address})
        assert response.status_code == 200, response.text
        return "\n".join(m["text"] for m in response.json()["messages"])

    def upload(self, service: LiveService, content: bytes) -> str:
        response = self.client.post(f"{service.url}/chat/api/upload",
                                    files={"file": ("photo.jpg", content, "image/jpeg")},
                                    headers={"X-Forwarded-For": self.address})
        assert response.status_code == 200, response.text
        return "\n".join(m["text"] for m in response.json()["messages"])

    def to_evidence(self, service: LiveService) -> None:
        self.send(service, command="report")
        self.send(service, choice="district:yuelu")
        self.send(service, text="岳麓区政务服务中心3号窗口")
        self.send(service, choice="when:today")
        asked = self.send(service, text="岳麓区政务服务中心的工作人员上班时间一直玩手机，让群众排队等了两个小时。")
        assert "第5步" in asked, asked

    def file_report(self, service: LiveService) -> str:
        self.to_evidence(service)
        self.send(service, choice="evidence:done")
        self.send(service, choice="identity:anonymous")
        return self.send(service, choice="summary:submit")

    def close(self) -> None:
        self.client.close()


def _query(url: str, statement: Any) -> Any:
    from storage.db import create_engine

    async def run() -> Any:
        engine = create_engine(url, make_test_keyring())
        try:
            async with engine.connect() as connection:
                return (await connection.execute(statement)).one()
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.postgres
def test_reports_per_address_count_on_both_processes(two_services: tuple[str, LiveService, LiveService]) -> None:
    from sqlalchemy import func, select

    from storage.models import Case

    url, first, second = two_services
    services = (first, second)
    office = "203.0.113.41"
    (before,) = _query(url, select(func.count()).select_from(Case))
    for number in range(REPORTS_PER_ADDRESS):  # one report on each process
        resident = Resident(services[number % 2], office)
        assert CASE_NUMBER.search(resident.file_report(services[number % 2]))
        resident.close()
    for service in services:  # the next, on either process, is refused with the network's limit
        resident = Resident(service, office)
        refused = resident.file_report(service)
        resident.close()
        assert "24小时内从您所在的网络提交的举报已达上限" in refused and "草稿已为您保存" in refused, refused
        assert not CASE_NUMBER.search(refused)
    (after,) = _query(url, select(func.count()).select_from(Case))
    assert after - before == REPORTS_PER_ADDRESS
    # another network is not affected
    other = Resident(second, "198.51.100.41")
    assert CASE_NUMBER.search(other.file_report(first))
    other.close()


@pytest.mark.postgres
def test_draft_evidence_per_address_counts_on_both_processes(
        two_services: tuple[str, LiveService, LiveService]) -> None:
    from sqlalchemy import func, select

    from storage.models import Attachment

    url, first, second = two_services
    services = (first, second)
    office = "203.0.113.42"
    residents = [Resident(services[number % 2], office) for number in range(4)]
    for number, resident in enumerate(residents):
        resident.to_evidence(services[number % 2])
    answers = [resident.upload(services[number % 2], PHOTO) for number, resident in enumerate(residents)]

    assert [answer.split("\n", 1)[0] for answer in answers] == [
        "已收到第 1 个文件（最多5个），照片中的位置、文档中的作者等隐藏信息已删除。",
        "已收到第 1 个文件（最多5个），照片中的位置、文档中的作者等隐藏信息已删除。",
        "您所在网络上传的证据文件已达上限，这个文件没有接收，请提交或取消已有的举报后再试。",
        "您所在网络上传的证据文件已达上限，这个文件没有接收，请提交或取消已有的举报后再试。"], answers
    count, stored = _query(url, select(func.count(), func.coalesce(func.sum(Attachment.size_bytes), 0))
                           .where(Attachment.case_id.is_(None)))
    assert count == 2 and stored == 2 * len(PHOTO) <= EVIDENCE_BYTES_PER_ADDRESS
    # a resident on another network still uploads, on either process
    other = Resident(first, "198.51.100.42")
    other.to_evidence(second)
    assert other.upload(first, PHOTO).startswith("已收到第 1 个文件")
    for resident in (*residents, other):
        resident.close()


_openids = iter(range(7000, 8000))


@pytest.mark.postgres
def test_wechat_receipt_guesses_per_source_address_count_on_both_processes(
        standin: WeChatStandIn, two_services: tuple[str, LiveService, LiveService]) -> None:
    """WeChat's servers are one source address (here 127.0.0.1) whatever openid a callback carries: guesses
    under rotating openids, alternating between the processes, stop at the limit on both."""
    _url, first, second = two_services
    services = (first, second)
    answers = []
    for number in range(GUESSES_PER_SOURCE + 2):
        standin.callback_url = f"{services[number % 2].url}/wechat"
        guesser = User(standin, f"oQL_{next(_openids)}_tw0Pr0cs", "safe")  # a fresh openid each time
        answers.append(guesser.say(f"/status 1234 5678 9012 {4000 + number:04d}", expect="。"))
    assert all("没有找到" in answer for answer in answers[:GUESSES_PER_SOURCE]), answers
    assert all("从您所在的网络输入错误查询码的次数过多" in answer and "没有找到" not in answer
               for answer in answers[GUESSES_PER_SOURCE:]), answers
