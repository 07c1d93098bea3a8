"""The web chat: its JSON API over real HTTP, and the page driven in headless Chromium."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests import loop_steps
from tests.conftest import LiveService, evidence_content, evidence_unwritable, full_filesystem
from tests.factories import (
    HIDDEN_WORDS,
    hidden_words_in,
    pdf_facts,
    pdf_with_metadata,
    photo_with_metadata,
    plain_photo,
    png_with_text,
)

METRICS_TOKEN = "scrape-token-for-the-web-tests-0123456789"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    live = LiveService(tmp_path_factory.mktemp("web"), {"QINGLIAN_METRICS_TOKEN": METRICS_TOKEN})
    live.start()
    yield live
    live.stop()


def _client(service: LiveService) -> httpx.Client:
    client = httpx.Client(base_url=service.url, headers={"X-Qinglian-Chat": "1", "Accept-Language": "zh-CN"})
    assert client.get("/").status_code == 200
    return client


def test_api_refuses_bad_requests_with_reasons(service: LiveService) -> None:
    client = _client(service)
    no_header = httpx.post(f"{service.url}/chat/api/message", json={"command": "start"}, cookies=client.cookies)
    assert no_header.status_code == 400 and "X-Qinglian-Chat" in no_header.json()["detail"]
    no_cookie = httpx.post(f"{service.url}/chat/api/message", json={"command": "start"},
                           headers={"X-Qinglian-Chat": "1"})
    assert no_cookie.status_code == 401 and "chat page" in no_cookie.json()["detail"]
    both = client.post("/chat/api/message", json={"text": "hi", "choice": "menu:report"})
    assert both.status_code == 422 and "exactly one" in str(both.json()["detail"])
    assert client.post("/chat/api/message", json={"command": "rm -rf"}).status_code == 422
    assert client.post("/chat/api/message", content=b"{not json", headers={"Content-Type": "application/json"}
                       ).status_code == 422
    assert client.post("/chat/api/message", json={"text": "x" * 20001}).status_code == 422


def _sender(client: httpx.Client) -> Callable[..., str]:
    """Send one message (text, choice or command) of the chat; returns the texts of the answer."""

    def send(**body: str) -> str:
        response = client.post("/chat/api/message", json=body)
        assert response.status_code == 200, response.text
        return "\n".join(m["text"] for m in response.json()["messages"])

    return send


def test_a_first_message_over_the_limit_keeps_what_fits_and_a_number_beyond_the_menu_is_explained(
        service: LiveService) -> None:
    """The web chat takes 8,000 characters: a first message of 3,500 was refused whole ("在下一步上传", before any
    step) and nothing kept; "9" to the menu of 4 showed the menu again without a word."""
    send = _sender(_client(service))
    assert send(text="你好").startswith("请选择")
    assert send(text="9").startswith("没有第9项。请点击下方选项之一，或回复1到4之间的数字。")
    story = "窗口人员以系统故障为由拒绝受理，让我下周再来，可系统明明能用。" * 110  # 31 × 110 = 3,410 characters
    offer = send(text=story)
    assert offer.startswith("您发来的内容共3410字，超过了“经过”3000字的上限。已把前2976字记为事情经过")
    assert "下一步" not in offer
    assert "开始一份举报吗" in offer and "其余434字没有保存" in offer


def _to_the_evidence_step(send: Callable[..., str]) -> None:
    """A web-chat resident answers the report's questions up to the evidence."""
    send(command="report")
    send(choice="district:kaifu")
    send(text="开福区不动产登记中心")
    send(text="上个月15号")
    send(text="不动产登记中心的工作人员要求提供清单上没有的证明材料，来回跑了四趟。")


def test_api_files_a_report_with_an_uploaded_photo(service: LiveService) -> None:
    client = _client(service)
    send = _sender(client)
    _to_the_evidence_step(send)
    jpeg = plain_photo(320, 240)
    upload = client.post("/chat/api/upload", files={"file": ("receipt.jpg", jpeg, "image/jpeg")})
    assert upload.status_code == 200 and "已收到第 1 个文件" in upload.text
    fake = client.post("/chat/api/upload", files={"file": ("x.pdf", b"<html>not a pdf</html>", "application/pdf")})
    assert "不是图片" in fake.text
    send(choice="evidence:done")
    send(choice="identity:anonymous")
    final = send(choice="summary:submit")
    assert re.search(r"QL-\d{4}-\d{6}", final) and re.search(r"\d{4} \d{4} \d{4} \d{4}", final)
    assert client.get("/chat/api/inbox").json() == {"messages": []}
    evidence_dir = service.data_dir / "evidence"
    evidence = [path.relative_to(evidence_dir).as_posix() for path in evidence_dir.rglob("*.jpg")]
    assert len(evidence) == 1 and evidence_content(evidence_dir, evidence[0])[:3] == jpeg[:3]


LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
UPLOADED_NAMES = ("张伟_13912345678_证据.jpg", "LI Na 13800001111.png")


def _supervisor(service: LiveService, username: str = "zhou.min") -> tuple[httpx.Client, str]:
    """A supervisor signed in to the service's console (through its login form), and an API token of theirs."""
    from storage import staff_actions
    from storage.models import StaffRole
    from tests.conftest import staff_password_hashing
    from tests.console.conftest import PASSWORD

    passwords = staff_password_hashing()

    async def work(session: Any) -> str:
        user = await staff_actions.create_staff(session, username=username, display_name="周敏",
                                                role=StaffRole.SUPERVISOR, password_hash=passwords.hash(PASSWORD))
        token, _ = await staff_actions.create_api_token(session, user, "tests", actor=user)
        return token

    token = loop_steps.act(service, work)
    console = httpx.Client(base_url=service.url, timeout=30)
    login_token = LOGIN_TOKEN.search(console.get("/console/login").text)
    assert login_token
    signed_in = console.post("/console/login", data={"username": username, "password": PASSWORD,
                                                     "login_token": login_token.group(1), "next": "/console"})
    assert signed_in.status_code == 303
    return console, token


def _named_in(text: str) -> list[str]:
    """Which parts of the names the resident's files had (and the words hidden in them) a text shows."""
    parts = {"张伟", "13912345678", "证据.jpg", *HIDDEN_WORDS}
    return sorted(part for part in parts if part in text)


def test_photos_reach_staff_without_what_could_name_the_resident(service: LiveService) -> None:
    client = _client(service)
    send = _sender(client)
    send(command="report")
    send(choice="district:kaifu")
    send(text="开福区某街道办事处")
    send(text="上周三下午")
    send(text="街道办事处工作人员收取办证费用后不开收据，还威胁举报的人不要多管闲事。")
    photo, drawing = photo_with_metadata(640, 480), png_with_text(900, 600)
    for name, content, media_type in ((UPLOADED_NAMES[0], photo, "image/jpeg"),
                                      (UPLOADED_NAMES[1], drawing, "image/png")):
        upload = client.post("/chat/api/upload", files={"file": (name, content, media_type)})
        assert upload.status_code == 200 and "照片中的位置、文档中的作者等隐藏信息已删除" in upload.text, upload.text
    broken = client.post("/chat/api/upload", files={"file": ("坏.jpg", photo[:300], "image/jpeg")})
    assert "这个图片文件无法打开" in broken.text and "第5步" in broken.text  # told, and asked again
    send(choice="evidence:done")
    send(choice="identity:anonymous")
    assert "举报已提交" in send(choice="summary:submit")
    _, number = loop_steps.latest_case(service)

    console, token = _supervisor(service)
    page = console.get(f"/console/case/{number}")
    assert page.status_code == 200 and "evidence-1.jpg" in page.text and "evidence-2.png" in page.text
    assert _named_in(page.text) == []
    api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"})
    evidence = api.get(f"/api/v1/cases/{number}").json()["evidence"]
    assert [item["original_name"] for item in evidence] == ["evidence-1.jpg", "evidence-2.png"]
    assert _named_in(str(evidence)) == []
    photo_id, drawing_id = (item["id"] for item in evidence)

    for url in (f"/console/case/{number}/evidence/{photo_id}", f"/api/v1/cases/{number}/evidence/{photo_id}"):
        served = (console if url.startswith("/console") else api).get(url)
        assert served.status_code == 200 and served.headers["content-disposition"].endswith("''evidence-1.jpg")
        assert hidden_words_in(served.content) == []
        with Image.open(io.BytesIO(served.content)) as image:  # 640 × 480 stored sideways: upright, 480 × 640
            assert (image.format, image.size, dict(image.getexif())) == ("JPEG", (480, 640), {})
            assert set(image.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density"}
            top, bottom = image.convert("RGB").getpixel((240, 100)), image.convert("RGB").getpixel((240, 540))
            assert isinstance(top, tuple) and isinstance(bottom, tuple)
            assert top[0] > 180 > top[2] and bottom[2] > 180 > bottom[0]  # red on top: the photo's left side
    served = api.get(f"/api/v1/cases/{number}/evidence/{drawing_id}")
    assert served.headers["content-disposition"].endswith("''evidence-2.png") and hidden_words_in(served.content) == []
    with Image.open(io.BytesIO(served.content)) as image:
        assert (image.format, image.size, image.info, dict(image.getexif())) == ("PNG", (900, 600), {}, {})

    for attachment_id, original in ((photo_id, photo), (drawing_id, drawing)):
        thumb = console.get(f"/console/case/{number}/thumb/{attachment_id}")
        assert (thumb.status_code, thumb.headers["content-type"]) == (200, "image/jpeg")
        assert _named_in(thumb.headers["content-disposition"]) == [] and hidden_words_in(thumb.content) == []
        with Image.open(io.BytesIO(thumb.content)) as image:
            assert max(image.size) == 320 and dict(image.getexif()) == {}
        assert len(thumb.content) < len(original)


def test_a_pdf_reaches_staff_with_its_pages_and_without_its_author_title_or_xmp(service: LiveService) -> None:
    client = _client(service)
    send = _sender(client)
    send(command="report")
    send(choice="district:tianxin")
    send(text="天心区某社区卫生服务中心")
    send(text="本月初")
    send(text="社区卫生服务中心收取体检费后开具的收据金额与实际收费不一致，多收了三百五十元。")
    document = pdf_with_metadata(["Receipt 0042", "Fee 350 yuan"], pages=2)
    broken = client.post("/chat/api/upload", files={"file": ("坏.pdf", document[:900], "application/pdf")})
    assert "这个PDF文件无法打开" in broken.text and "第5步" in broken.text  # told, and asked again
    upload = client.post("/chat/api/upload", files={"file": ("张伟_13912345678_收据.pdf", document, "application/pdf")})
    assert upload.status_code == 200 and "已收到第 1 个文件" in upload.text, upload.text
    assert "文档中的作者等隐藏信息已删除" in upload.text
    send(choice="evidence:done")
    send(choice="identity:anonymous")
    assert "举报已提交" in send(choice="summary:submit")
    _, number = loop_steps.latest_case(service)

    console, token = _supervisor(service, "tang.li")
    page = console.get(f"/console/case/{number}")
    assert page.status_code == 200 and "evidence-1.pdf" in page.text and _named_in(page.text) == []
    api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"})
    [item] = api.get(f"/api/v1/cases/{number}").json()["evidence"]
    assert item["original_name"] == "evidence-1.pdf"
    for served in (console.get(f"/console/case/{number}/evidence/{item['id']}"),
                   api.get(f"/api/v1/cases/{number}/evidence/{item['id']}")):
        assert served.status_code == 200 and served.headers["content-disposition"].endswith("''evidence-1.pdf")
        assert pdf_facts(served.content) == (2, ["Receipt 0042\nFee 350 yuan\nPage 1",
                                                 "Receipt 0042\nFee 350 yuan\nPage 2"], None, False, [])


def test_the_closed_loop_question_extension_warning_and_a_poor_rating(service: LiveService) -> None:
    client = _client(service)
    send = _sender(client)

    def inbox() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = client.get("/chat/api/inbox").json()["messages"]
        return messages

    send(command="report")
    send(choice="district:yuelu")
    send(text="岳麓区政务服务中心3号窗口")
    send(text="今天上午")
    send(text="政务服务中心3号窗口的工作人员上班时间一直玩手机，群众排队等了两个小时。")
    send(choice="evidence:done")
    send(choice="identity:anonymous")
    assert "举报已提交" in send(choice="summary:submit")
    case_id, number = loop_steps.latest_case(service)

    loop_steps.ask_for_information(service, case_id, "请提供3号窗口当天的排队小票照片。")
    [question] = inbox()
    assert number in question["text"] and "请您补充信息：\n请提供3号窗口当天的排队小票照片。" in question["text"]
    assert [choice["key"] for choice in question["choices"]] == [f"case:follow_up@{case_id}"]  # names its case
    assert "请发送要补充的" in send(choice=f"case:follow_up@{case_id}")
    assert "补充材料已收到" in send(text="小票显示上午9点20分取号，11点半才叫到。")
    assert "举报人补充了材料" in send(choice="follow_up:done")

    until = loop_steps.extend(service, case_id)
    assert [m["text"] for m in inbox()] == [f"您的举报 {number} 经批准延长办理期限，预计 {until} 前答复。"]
    assert loop_steps.warn_before_deadline(service, case_id) == [False, True]

    loop_steps.answer_and_close(service, case_id, "经核查，已对3号窗口工作人员批评教育。")
    rate_request = inbox()[-1]
    assert "请为办理结果打分" in rate_request["text"] and [c["key"] for c in rate_request["choices"]][-2:] == [
        f"rate:unsolved@{case_id}", f"rate:later@{case_id}"]
    assert "还有什么想说的吗" in send(choice=f"rate:2@{case_id}")
    assert "感谢反馈，上级已收到通知" in send(choice="comment:skip")
    assert [m["text"] for m in inbox()] == [f"您的举报 {number} 将根据您的评价重新办理，有新的答复时会告诉您。"]
    status, rehandled, trace = loop_steps.case_state(service, case_id)
    assert (status, rehandled, trace[-2:]) == ("in_handling", 1, ["rated", "reopened"])


def test_an_oversized_upload_is_refused_while_it_streams(service: LiveService) -> None:
    client = _client(service)
    client.post("/chat/api/message", json={"command": "report"})
    boundary = "qinglianboundary"
    megabyte = b"\0" * (1024 * 1024)

    def body() -> Iterator[bytes]:  # 40 MB, chunked: no Content-Length to check up front
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff\xd8\xff\xe0"
        for _ in range(40):
            yield megabyte
        yield f"\r\n--{boundary}--\r\n".encode()

    refused = client.post("/chat/api/upload", content=body(),
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert refused.status_code == 413 and "larger than" in refused.json()["detail"]
    assert not list((service.data_dir / "evidence").rglob("*")) or all(
        path.stat().st_size < 11 * 1024 * 1024 for path in (service.data_dir / "evidence").rglob("*"))


def test_evidence_that_cannot_be_written_is_logged_as_a_file_problem_not_a_database_one(service: LiveService) -> None:
    """A full disk or a read-only mount under the evidence directory: the resident is asked to try again shortly
    and keeps the draft; the operator's log said "the database is unavailable", which sent them to PostgreSQL. It
    now names the path that could not be written and the system's reason."""
    client = _client(service)
    send = _sender(client)
    _to_the_evidence_step(send)
    logged = len(service.log())
    with evidence_unwritable(service.data_dir) as evidence:
        refused = client.post("/chat/api/upload", files={"file": ("receipt.jpg", plain_photo(64, 48), "image/jpeg")})
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    log = service.log()[logged:]
    assert "the database is unavailable" not in log
    assert re.search(rf"web chat: {re.escape(str(evidence))}\S* cannot be written \(.+\): check that the data "
                     "directory is a directory the service's user may write", log), log
    # the draft is kept: the same photo is taken once the directory is back
    taken = client.post("/chat/api/upload", files={"file": ("receipt.jpg", plain_photo(64, 48), "image/jpeg")})
    assert taken.status_code == 200 and "已收到第 1 个文件" in taken.text


def test_a_forged_or_unsigned_cookie_starts_a_fresh_conversation(service: LiveService) -> None:
    client = _client(service)
    client.post("/chat/api/message", json={"command": "report"})
    assert "第2步" in client.post("/chat/api/message", json={"choice": "district:kaifu"}).text
    genuine = client.cookies["ql_chat"]
    for forged in (genuine.rsplit(".", 1)[0], genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),
                   "made-up-value"):
        stranger = httpx.Client(base_url=service.url, headers={"X-Qinglian-Chat": "1"},
                                cookies={"ql_chat": forged})
        answer = stranger.post("/chat/api/message", json={"text": "开福区不动产登记中心"})
        assert answer.status_code == 200
        assert "第3步" not in answer.text  # not the draft of the cookie it imitates
        fresh = answer.cookies.get("ql_chat")
        assert fresh and fresh != forged and fresh != genuine
    assert "第3步" in client.post("/chat/api/message", json={"text": "开福区不动产登记中心"}).text


@pytest.mark.browser
def test_browser_files_a_report_and_checks_its_status(service: LiveService, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 375, "height": 667}, locale="zh-CN", base_url=service.url)
        page = context.new_page()
        send = page.locator("#send")
        page.goto("/")
        expect(page.locator("#messages .msg.bot").first).to_be_visible()
        assert "清廉长沙" in page.title()

        def click(key: str) -> None:
            page.locator(f"button.choice[data-key='{key}']").click()
            expect(send).to_be_enabled()

        def type_and_send(text: str) -> None:
            page.fill("#input", text)
            page.press("#input", "Enter")
            expect(send).to_be_enabled()

        click("menu:report")
        click("district:yuelu")
        type_and_send("岳麓区政务服务中心社保窗口")
        page.locator("button.choice", has_text="今天").click()
        expect(send).to_be_enabled()
        type_and_send("太慢")
        expect(page.locator("#messages .msg.bot", has_text="描述太简单了")).to_be_visible()
        type_and_send("社保窗口工作人员中午提前一小时离岗，十几个人在窗口前等到下午两点半。")
        click("evidence:done")
        click("identity:anonymous")
        expect(page.locator("#messages .msg.bot", has_text="请核对举报内容")).to_be_visible()
        click("summary:submit")
        receipt = page.locator("#messages .msg.bot", has_text="举报已提交")
        expect(receipt).to_be_visible()
        code = re.search(r"\d{4} \d{4} \d{4} \d{4}", receipt.inner_text())
        assert code is not None
        # in the resident's language only (it read "复制查询码 Copy code" in every conversation)
        expect(page.locator("button.copy-code")).to_have_text("复制查询码")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(tmp_path / "receipt.png"))

        type_and_send(f"/status {code.group(0)}")
        expect(page.locator("#messages .msg.bot", has_text="当前状态：已分派")).to_be_visible()
        expect(page.locator("button.choice[data-key='case:follow_up']")).to_be_visible()
        page.reload()
        expect(page.locator("#messages .msg.bot", has_text="当前状态：已分派")).to_be_visible()
        # a pasted account of 10,000 characters is added whole, in parts (the page refused it: "请精简后再发送（描述
        # 最多3000字）"); one over the page's limit stays in the box, and the page says why and what to do
        click("case:follow_up")
        type_and_send(("窗口人员以系统故障为由拒绝受理，让我下周再来，可系统明明能用。" * 330)[:10000])
        expect(page.locator("#messages .msg.bot", has_text="已分成4条记入办理轨迹")).to_be_visible()
        page.fill("#input", "补" * 20001)
        page.press("#input", "Enter")
        expect(page.locator("#messages .msg.error")).to_have_text(
            "这条消息超过20000字，没有发送，仍在输入框里：请分成几条发送。")
        assert len(page.input_value("#input")) == 20001
        browser.close()


def test_a_keyboard_user_keeps_the_focus_from_one_question_to_the_next(service: LiveService) -> None:
    """Found with the keyboard only: after a choice, Enter or a quick command, the focus fell to the page's body,
    and a keyboard user had to tab through every button again to answer."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(locale="zh-CN", base_url=service.url)
        page.goto("/")
        send = page.locator("#send")
        expect(page.locator("button.choice[data-key='menu:report']")).to_be_visible()
        page.locator("button.choice[data-key='menu:report']").focus()
        page.keyboard.press("Enter")  # 我要举报: the districts come, the focus on the first of them
        expect(page.locator("button.choice[data-key='district:yuelu']")).to_be_visible()
        expect(send).to_be_enabled()
        expect(page.locator("button.choice").first).to_be_focused()
        assert page.locator(".choices").last.get_attribute("aria-label")  # the group is named for screen readers
        page.locator("button.choice[data-key='district:yuelu']").focus()
        page.keyboard.press("Enter")  # a question to type the answer to: the focus in the message box
        expect(page.locator("#messages .msg.bot", has_text="第2步")).to_be_visible()
        expect(send).to_be_enabled()
        expect(page.locator("#input")).to_be_focused()
        browser.close()


@pytest.mark.parametrize(("district", "description", "queue", "label"), [
    ("liuyang", "我们村的村支书把村集体的山林承包款私下分了，三年没有公开村务财务，低保名额也都给了他家亲戚。",
     "district_liuyang", "village_affairs"),
    ("tianxin", "区市场监管局的一个科长每次来店里检查都要拿两条烟，上个月还暗示我们中秋送购物卡，不送就找茬。",
     "petitions", "bribery_gifts"),
])
def test_a_report_is_classified_and_lands_in_its_queue(service: LiveService, district: str, description: str,
                                                       queue: str, label: str) -> None:
    import sqlite3

    client = _client(service)
    for body in ({"command": "report"}, {"choice": f"district:{district}"}, {"text": "某单位"},
                 {"choice": "when:week"}, {"text": description}, {"choice": "evidence:done"},
                 {"choice": "identity:anonymous"}):
        assert client.post("/chat/api/message", json=body).status_code == 200
    final = client.post("/chat/api/message", json={"choice": "summary:submit"}).json()["messages"][0]["text"]
    number = re.search(r"QL-\d{4}-\d{6}", final)
    assert number
    with sqlite3.connect(service.data_dir / "qinglian.db") as db:
        row = db.execute("SELECT queue, label, label_confidence, model_version, label_terms FROM cases "
                         "WHERE case_number = ?", (number.group(0),)).fetchone()
        routed = db.execute("SELECT detail FROM trace_events t JOIN cases c ON c.id = t.case_id "
                            "WHERE c.case_number = ? AND t.kind = 'routed'", (number.group(0),)).fetchone()
    assert (row[0], row[1]) == (queue, label)
    assert row[2] >= 0.5 and row[3] and row[4] != "[]"
    assert f'"queue": "{queue}"' in routed[0]


def test_health_and_metrics(service: LiveService) -> None:
    client = _client(service)
    client.post("/chat/api/message", json={"command": "start"})
    health = httpx.get(f"{service.url}/healthz")
    assert health.status_code == 200 and health.json()["model"]
    assert httpx.get(f"{service.url}/metrics").status_code == 401  # no bearer token
    assert httpx.get(f"{service.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    metrics = httpx.get(f"{service.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    updates = re.search(r'^qinglian_updates_total\{channel="web"\} (\d+)', metrics, re.M)
    assert updates and int(updates.group(1)) >= 1
    assert 'qinglian_dialog_step_seconds_bucket{channel="web"' in metrics
    assert "qinglian_outbox_lag_seconds" in metrics and "qinglian_classifier_seconds_count" in metrics


def test_evidence_on_a_full_disk_asks_to_try_again_and_logs_the_file_and_the_full_disk(
        service: LiveService, tmp_path: Path) -> None:
    """A disk that filled up while serving: the evidence file is opened (a full disk still takes an inode) and its
    first write fails with ENOSPC, an OSError that names no file. The log said "the database is unavailable
    (OSError)", which sent the operator to PostgreSQL; it now names the file and "No space left on device", and
    the resident is asked to try again shortly, the draft kept."""
    client = _client(service)
    send = _sender(client)
    _to_the_evidence_step(send)
    logged = len(service.log())
    with full_filesystem(tmp_path / "disk") as full, evidence_unwritable(service.data_dir, full) as evidence:
        refused = client.post("/chat/api/upload", files={"file": ("receipt.jpg", plain_photo(64, 48), "image/jpeg")})
    assert (refused.status_code, refused.json()["detail"]) == (
        503, "抱歉，系统繁忙，您已填写的内容不会丢失，请稍后再试。")
    log = service.log()[logged:]
    assert "the database is unavailable" not in log, log
    [line] = [line for line in log.splitlines() if "web chat: " in line and "cannot be written" in line]
    assert re.search(rf"web chat: {re.escape(str(evidence))}/\S+ cannot be written \(No space left on device\): free "
                     "space in the data directory", line), line
    taken = client.post("/chat/api/upload", files={"file": ("receipt.jpg", plain_photo(64, 48), "image/jpeg")})
    assert taken.status_code == 200 and "已收到第 1 个文件" in taken.text


def test_a_screen_reader_reads_each_message_in_its_own_language(service: LiveService) -> None:
    """Found with a screen reader: the page said lang="zh-CN" whatever the resident's language, so an English
    resident's questions were read out by a Chinese voice; after switching language the new replies must be read in
    the new one. The page's own bilingual labels stay marked Chinese (their English words are marked English)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(locale="en-US", base_url=service.url)
        page.goto("/")
        send = page.locator("#send")
        welcome = page.locator("#messages .msg.bot", has_text="What would you like to do?")
        expect(welcome).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(welcome).to_have_attribute("lang", "en")
        expect(page.locator("header.topbar")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("footer.bottombar")).to_have_attribute("lang", "zh-CN")
        page.locator("button.choice[data-key='menu:language']").click()
        expect(send).to_be_enabled()
        page.locator("button.choice", has_text="中文").click()
        switched = page.locator("#messages .msg.bot", has_text="已切换为中文")
        expect(switched).to_have_attribute("lang", "zh-CN")
        page.reload()  # the transcript shown again keeps each message's language
        expect(switched).to_have_attribute("lang", "zh-CN")
        expect(welcome).to_have_attribute("lang", "en")
        browser.close()


def test_a_keyboard_user_whose_answer_was_not_sent_keeps_the_focus_on_it(service: LiveService) -> None:
    """Found with the keyboard only: when a choice could not be sent (the network dropped), the button was disabled
    while it was tried and the focus fell to the page's body; the resident had to tab back through the page to
    press it again."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(locale="zh-CN", base_url=service.url)
        page.goto("/")
        send = page.locator("#send")
        report = page.locator("button.choice[data-key='menu:report']")
        expect(report).to_be_visible()
        page.route("**/chat/api/message", lambda route: route.abort())
        report.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#messages .msg.error", has_text="网络错误")).to_be_visible()
        expect(send).to_be_enabled()
        expect(report).to_be_focused()
        page.unroute("**/chat/api/message")
        page.keyboard.press("Enter")  # the same key again sends it
        expect(page.locator("button.choice[data-key='district:yuelu']")).to_be_visible()
        expect(page.locator("button.choice").first).to_be_focused()
        browser.close()


def test_the_pages_own_words_are_in_the_residents_language_and_the_input_shows_its_focus(
        service: LiveService) -> None:
    """Found in English: the page's own errors came in both languages in one line ("网络错误，请重试 / Network
    error, …"), and the text box showed its focus only as a faint red glow."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(locale="en-US", base_url=service.url)
        page.goto("/")
        report = page.locator("button.choice[data-key='menu:report']")
        expect(report).to_be_visible()
        page.route("**/chat/api/message", lambda route: route.abort())
        report.click()
        error = page.locator("#messages .msg.error")
        expect(error).to_have_text("Network error, please try again")
        assert error.get_attribute("lang") == "en"
        page.locator("#input").focus()
        assert page.eval_on_selector("#input", "e => getComputedStyle(e).outlineWidth") == "2px"
        browser.close()


def test_a_message_whose_answer_was_lost_is_handled_once_when_sent_again(service: LiveService) -> None:
    """Found with a slow connection: the page gave up on a request the service had handled, put the text back and
    marked it "not sent"; sent again, the place became the answer to the question of the time."""
    from playwright.sync_api import Route, expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(locale="zh-CN", base_url=service.url)
        page.goto("/")
        send = page.locator("#send")
        for key in ("menu:report", "district:yuelu"):
            page.locator(f"button.choice[data-key='{key}']").click()
            expect(send).to_be_enabled()

        def handled_but_lost(route: Route) -> None:
            route.fetch()  # the service handles it; its answer never reaches the page
            route.abort()

        page.route("**/chat/api/message", handled_but_lost)
        page.fill("#input", "岳麓区政务服务中心社保窗口")
        page.press("#input", "Enter")
        expect(page.locator("#messages .note")).to_have_text("未发送 · Not sent")
        page.unroute("**/chat/api/message")
        assert page.input_value("#input") == "岳麓区政务服务中心社保窗口"  # put back, sent again as it is
        page.press("#input", "Enter")
        expect(page.locator("#messages .msg.bot", has_text="这条消息已经收到并处理过了")).to_be_visible()
        expect(page.locator("#messages .msg.bot").last).to_contain_text("第3步")
        assert page.locator("#messages .msg.bot", has_text="看起来不是时间").count() == 0
        browser.close()


def test_a_message_id_that_is_not_one_is_refused_with_the_reason(service: LiveService) -> None:
    client = _client(service)
    refused = client.post("/chat/api/message", json={"command": "start"},
                          headers={"X-Qinglian-Message-Id": "short"})
    assert refused.status_code == 400 and "X-Qinglian-Message-Id" in refused.json()["detail"]


def _browser_to_the_evidence_step(page: Any) -> None:
    """A new resident in the browser, through the report's first four questions to the evidence."""
    from playwright.sync_api import expect

    page.goto("/")
    send = page.locator("#send")
    for key in ("menu:report", "district:yuelu"):
        page.locator(f"button.choice[data-key='{key}']").click()
        expect(send).to_be_enabled()
    for answer in ("岳麓区政务服务中心社保窗口", "今天", "社保窗口工作人员中午提前一小时离岗，群众等到下午两点半。"):
        page.fill("#input", answer)
        page.press("#input", "Enter")
        expect(send).to_be_enabled()
    expect(page.locator("button.choice[data-key='evidence:done']")).to_be_visible()


def test_files_chosen_together_are_each_sent_though_one_is_refused(service: LiveService) -> None:
    """Two files chosen at once, the first too large to upload: the second was never sent, and nothing said so; and
    the first was uploaded whole before the page said it was too large, without saying the limit."""
    from playwright.sync_api import FilePayload, expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 800}, locale="zh-CN", base_url=service.url)
        _browser_to_the_evidence_step(page)
        video: FilePayload = {"name": "video.pdf", "mimeType": "application/pdf", "buffer": b"%PDF" * 3_000_000}
        photo: FilePayload = {"name": "receipt.jpg", "mimeType": "image/jpeg", "buffer": plain_photo(64, 48)}
        page.set_input_files("#file", [video, photo])
        expect(page.locator("#messages .msg.error", has_text="文件太大（11.4 MB），每个文件最大 10 MB")).to_be_visible()
        expect(page.locator("#messages .msg.bot", has_text="已收到第 1 个文件")).to_be_visible()
        browser.close()


def test_a_photo_the_service_could_not_keep_is_explained_and_sent_again_with_one_press(
        service: LiveService, tmp_path: Path) -> None:
    """Found on a phone while the evidence directory could not be written: the page showed its own "the service is
    temporarily unavailable" instead of the service's "your answers are kept, try again shortly", and offered no
    way to send the photo again but to find it in the gallery once more."""
    from playwright.sync_api import FilePayload, expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 800}, locale="zh-CN", base_url=service.url)
        _browser_to_the_evidence_step(page)
        with evidence_unwritable(service.data_dir):
            photo: FilePayload = {"name": "receipt.jpg", "mimeType": "image/jpeg", "buffer": plain_photo(64, 48)}
            page.set_input_files("#file", [photo])
            expect(page.locator("#messages .msg.error")).to_have_text(
                "抱歉，系统繁忙，您已填写的内容不会丢失，请稍后再试。")
            expect(page.locator("#messages .note")).to_have_text("未发送 · Not sent")
        page.locator("button.retry").click()
        expect(page.locator("#messages .msg.bot", has_text="已收到第 1 个文件")).to_be_visible()
        browser.close()


def test_a_second_tab_of_the_chat_keeps_the_first_tab_in_step(service: LiveService) -> None:
    """Found with two tabs: the resident at step 3 in one tab opened the chat in another, which asked whether to go
    on with the draft or start again. The first tab still showed step 3's buttons; pressing one answered "that
    button no longer works" with a question the tab had never shown. Each tab now shows what was said in the other,
    so the first tab's buttons are the current question's, and an answer there goes on where the other tab left off."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(locale="zh-CN", base_url=service.url)
        first = context.new_page()
        first.goto("/")
        first.locator("button.choice[data-key='menu:report']").click()
        first.locator("button.choice[data-key='district:yuelu']").click()
        expect(first.locator("#messages .msg.bot", has_text="第2步")).to_be_visible()
        first.fill("#input", "岳麓区政务服务中心3号窗口")
        first.press("#input", "Enter")
        expect(first.locator("button.choice[data-key='when:today']")).to_be_visible()

        second = context.new_page()
        second.goto("/")  # a new tab starts the conversation over: the draft is offered to go on with
        expect(second.locator("button.choice[data-key='resume:continue']")).to_be_visible()
        expect(first.locator("button.choice[data-key='when:today']")).to_have_count(0)
        expect(first.locator("button.choice[data-key='resume:continue']")).to_be_visible()

        first.locator("button.choice[data-key='resume:continue']").click()
        expect(first.locator("button.choice[data-key='when:today']")).to_be_visible()
        expect(second.locator("button.choice[data-key='when:today']")).to_be_visible()  # and the other way round
        second.locator("button.choice[data-key='when:today']").click()
        expect(first.locator("#messages .msg.bot", has_text="第4步")).to_be_visible()
        assert "已失效" not in first.locator("#messages").inner_text()
        first.reload()  # what the tab showed from the other one is kept with its own
        expect(first.locator("#messages .msg.bot", has_text="第4步")).to_be_visible()
        browser.close()
