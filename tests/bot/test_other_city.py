"""Another city runs the product by configuration alone: `qinglian serve` started with Zhuzhou's file
(tests/data/zhuzhou.toml, as an operator writes it) shows residents and staff Zhuzhou's words and none of
Changsha's, the bundled default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handlers.city import load_city_config
from tests.conftest import REPO, LiveService

CITY_FILE = REPO / "tests" / "data" / "zhuzhou.toml"
STAFF_PASSWORD = "Zhuzhou-staff-password-2026"


def _changsha_words() -> list[str]:
    """What only Changsha's configuration says: its names, its districts', its queues' and its case numbers'."""
    changsha = load_city_config(None)
    words = {changsha.city_zh, changsha.city_en, changsha.city_zh.removesuffix("市"), f"{changsha.case_number_prefix}-"}
    # the triage queue's names are the product's word for the step too ("置信度低，人工分拣" as a routing reason)
    queues = [queue for queue in changsha.queues if queue.code != changsha.routing.triage_queue]
    for district in changsha.districts:
        words.update((district.zh, district.en, district.code))
    for queue in queues:
        words.update((queue.zh, queue.en, queue.code))
    return sorted(words)


CHANGSHA = re.compile("|".join(re.escape(word) for word in _changsha_words()))


def _changsha_in(text: str) -> list[str]:
    return sorted({match.group(0) for match in CHANGSHA.finditer(text)})


@pytest.fixture(scope="module")
def zhuzhou(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    live = LiveService(tmp_path_factory.mktemp("zhuzhou"), {"QINGLIAN_CONFIG_FILE": str(CITY_FILE)})
    live.start()
    yield live
    live.stop()


def _resident(service: LiveService, language: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=service.url, headers={"X-Qinglian-Chat": "1", "Accept-Language": language})
    page = client.get("/")
    assert page.status_code == 200
    return client, page.text


def _say(client: httpx.Client, **body: str) -> str:
    response = client.post("/chat/api/message", json=body)
    assert response.status_code == 200, response.text
    return "\n".join(message["text"] + "".join(f"\n[{choice['label']}]" for choice in message.get("choices") or [])
                     for message in response.json()["messages"])


def _report(client: httpx.Client) -> list[str]:
    """A resident files a report about a district of Zhuzhou and asks for its status; returns what she read."""
    seen = [_say(client, command="start"), _say(client, command="help"), _say(client, command="report"),
            _say(client, text="荷塘区"), _say(client, text="荷塘区政务服务中心3号窗口"), _say(client, text="上周三"),
            _say(client, text="荷塘区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"),
            _say(client, choice="evidence:done"), _say(client, choice="identity:anonymous"),
            _say(client, choice="summary:submit")]
    code = re.search(r"\d{4} \d{4} \d{4} \d{4}", seen[-1])
    assert code, seen[-1]
    seen += [_say(client, command="status"), _say(client, text=code.group(0))]
    return seen


def test_a_resident_and_staff_of_another_city_see_its_words_and_none_of_changshas(zhuzhou: LiveService) -> None:
    chinese, page = _resident(zhuzhou, "zh-CN")
    assert "<title>清廉株洲" in page and _changsha_in(page) == []
    said = _report(chinese)
    assert "株洲市监察委员会举报平台，举报电话 0731-28812388" in said[0]
    assert "第1步：问题发生在株洲市哪个区县（市）？" in said[2] and "[炎陵县]" in said[2]
    assert "案件编号：ZZ-" in said[-3]
    assert "已分派至 株洲政务服务监督组" in said[-1]
    english, _ = _resident(zhuzhou, "en-US")
    english_said = _report(english)
    assert "Zhuzhou Supervisory Commission's reporting service (hotline 0731-28812388)" in english_said[0]
    assert "Step 1: In which district of Zhuzhou did it happen?" in english_said[2]
    assert "Routed to Zhuzhou service-hall oversight" in english_said[-1]
    assert _changsha_in("\n".join(said + english_said)) == []

    added = subprocess.run([sys.executable, "-m", "bot.cli", "staff", "add", "zzadmin", "--role", "admin",
                            "--password", STAFF_PASSWORD], cwd=REPO, env=zhuzhou.env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    staff = httpx.Client(base_url=zhuzhou.url, follow_redirects=True)
    form = staff.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token
    signed_in = staff.post("/console/login", data={"username": "zzadmin", "password": STAFF_PASSWORD,
                                                   "login_token": token.group(1), "next": "/console"})
    assert signed_in.status_code == 200 and "清廉株洲" in signed_in.text
    case_number = re.search(r"ZZ-\d{4}-\d{6}", said[-3])
    assert case_number
    pages = ["/console", "/console/cases", f"/console/case/{case_number.group(0)}", "/console/queue/zz_service",
             "/console/queue/zz_rail", "/console/stats", "/console/stats.csv", "/console/stats/loop.csv",
             "/console/export.csv", "/console/overdue", "/console/replies", "/console/staff", "/console/models",
             "/console/audit", "/api/v1/queues", "/api/v1/cases", "/api/v1/stats/loop", "/api/docs",
             "/api/openapi.json"]
    for path in pages:
        response = staff.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert _changsha_in(response.text) == [], path
    assert "株洲轨道交通国企监督组" in staff.get("/console").text
    assert "送株洲分拣台" in staff.get("/console/models").text
    assert "Zhuzhou rail state-enterprise oversight" in staff.get("/api/v1/queues").text
    missing = staff.get("/console/case/ZZ-2026-999999")
    assert missing.status_code == 404 and _changsha_in(missing.text) == []


def test_the_operators_file_is_checked_by_check_in_zhuzhous_words(tmp_path: Path) -> None:
    env = {**os.environ, "QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_CONFIG_FILE": str(CITY_FILE)}
    checked = subprocess.run([sys.executable, "-m", "bot.cli", "check"], cwd=REPO, env=env, capture_output=True,
                             text=True)
    assert "configuration: Zhuzhou: 9 districts, 17 queues" in checked.stdout
    assert _changsha_in(checked.stdout + checked.stderr) == []
