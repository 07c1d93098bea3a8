"""Nothing a resident wrote stays readable at rest: a report with distinctive words goes through the web
chat, a follow-up and the staff's notes, move and answer; then the database file, its WAL, every file of
the data directory (evidence, models, logs) and the service's log are searched for those words."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, LiveService
from tests.console.test_api import _token_for
from tests.factories import plain_pdf

PASSWORD = "Correct-Horse-Battery-42"
# Each marker is something only this report says; a hit anywhere on disk is a leak.
PLACE = "紫檀路甲七号乙座XQZPLACE"
OCCURRED = "上周四下午三点XQZWHEN"
DESCRIPTION = "紫檀路税务大厅的窗口人员索要红包XQZTEXT才肯办理，排队两个小时还被推诿到别的窗口。"
NAME = "欧阳紫檀"
PHONE = "13987650321"
FILE_NAME = "收据XQZFILE.jpg"
FILE_BYTES = plain_pdf(["XQZBYTES-evidence-document-content"] * 8)  # a PDF without metadata: kept byte for byte
FOLLOW_UP = "补充：当班的工号是XQZFOLLOW八八。"
NOTE = "内部：已调取监控XQZNOTE。"
MOVE_REASON = "涉及索要红包，转信访室XQZMOVE。"
ANSWER = "经核查XQZANSWER，已责令当事人退还并作检讨。"
MARKERS = ("XQZPLACE", "XQZWHEN", "XQZTEXT", "XQZFILE", "XQZBYTES", "XQZFOLLOW", "XQZNOTE", "XQZMOVE", "XQZANSWER",
           NAME, PHONE, "紫檀路")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveService]:
    live = LiveService(tmp_path / "data", {"QINGLIAN_SECRET_KEY": "at-rest-test-secret-" + "y" * 32})
    live.start()
    yield live
    live.stop()


def _file_report(live: LiveService) -> str:
    chat = httpx.Client(base_url=live.url, headers={"X-Qinglian-Chat": "1", "Accept-Language": "zh-CN"}, timeout=30)
    assert chat.get("/").status_code == 200

    def send(**body: str) -> str:
        answer = chat.post("/chat/api/message", json=body)
        assert answer.status_code == 200, answer.text
        return "\n".join(m["text"] for m in answer.json()["messages"])

    send(command="report")
    send(choice="district:tianxin")
    send(text=PLACE)
    send(text=OCCURRED)
    send(text=DESCRIPTION)
    upload = chat.post("/chat/api/upload", files={"file": (FILE_NAME, FILE_BYTES, "image/jpeg")})
    assert "已收到第 1 个文件" in upload.text
    send(choice="evidence:done")
    send(choice="identity:real")
    send(text=NAME)
    send(text=PHONE)
    submitted = send(choice="summary:submit")
    code = re.search(r"\d{4} \d{4} \d{4} \d{4}", submitted)
    assert code, submitted
    send(command="status", argument=code.group(0))
    send(choice="case:follow_up")
    assert "补充材料已收到" in send(text=FOLLOW_UP)
    return code.group(0)


def _staff_work(live: LiveService) -> None:
    added = subprocess.run([sys.executable, "-m", "bot.cli", "staff", "add", "boss", "--role", "admin",
                            "--password", PASSWORD], cwd=REPO, env=live.env, capture_output=True, text=True,
                           timeout=60)
    assert added.returncode == 0, added.stderr
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {_token_for(live, 'boss')}"},
                      timeout=30) as api:
        number = api.get("/api/v1/cases").json()["items"][0]["case_number"]
        found = api.get("/api/v1/cases", params={"q": "红包"}).json()["items"]  # search without readable text
        assert [item["case_number"] for item in found] == [number]
        assert api.get("/api/v1/cases", params={"q": "紫檀路"}).json()["items"][0]["case_number"] == number
        assert api.get("/api/v1/cases", params={"q": "退税"}).json()["items"] == []
        assert api.post(f"/api/v1/cases/{number}/notes", json={"body": NOTE}).status_code == 201
        moved = api.post(f"/api/v1/cases/{number}/move", json={"queue": "petitions", "reason": MOVE_REASON})
        assert moved.status_code == 200, moved.text
        assert api.post(f"/api/v1/cases/{number}/answer", json={"text": ANSWER}).status_code == 200
        detail = api.get(f"/api/v1/cases/{number}").json()
        # readable to staff, through the keys (the time with the date its words name: "上周四 … (2026-12-03)")
        assert detail["place"] == PLACE and re.fullmatch(re.escape(OCCURRED) + r" \(\d{4}-\d{2}-\d{2}\)",
                                                         detail["occurred"])
        evidence = detail["evidence"][0]
        assert evidence["original_name"] == "evidence-1.pdf"  # the name the file was sent under is not kept
        download = api.get(f"/api/v1/cases/{number}/evidence/{evidence['id']}")
        assert download.status_code == 200 and download.content == FILE_BYTES
        assert [note["body"] for note in api.get(f"/api/v1/cases/{number}/notes").json()] == [NOTE]


def _leaks(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        content = path.read_bytes()
        for marker in MARKERS:
            for encoding in ("utf-8", "utf-16-le"):
                if marker.encode(encoding) in content:
                    found.append(f"{path.relative_to(root)}: {marker} ({encoding})")
    return found


def test_a_report_and_its_handling_leave_nothing_readable_on_disk(service: LiveService) -> None:
    _file_report(service)
    _staff_work(service)
    database = service.data_dir / "qinglian.db"
    assert database.exists() and (service.data_dir / "qinglian.db-wal").exists()  # the WAL is searched too
    assert _leaks(service.data_dir) == []
    service.stop()  # the WAL is checkpointed into the database file on close: searched again
    assert _leaks(service.data_dir) == []
