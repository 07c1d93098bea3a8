"""The console driven in headless Chromium against a real `qinglian serve`: log in, open a queue, correct
a label, answer the reporter, see statistics, train and compare models. Saves screenshots of the main
pages (to docs/screenshots/ with QINGLIAN_SCREENSHOTS_DIR=docs/screenshots, else to a temporary directory,
so a test run leaves the working tree as it was)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, LiveService, make_test_keyring
from tests.console.conftest import PASSWORD, fresh_data_dir, make_settings
from tests.factories import decided, file_case

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
SCREENSHOTS = Path(os.environ.get("QINGLIAN_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "qinglian-screenshots")
if not SCREENSHOTS.is_absolute():
    SCREENSHOTS = REPO / SCREENSHOTS
SECRET = "browser-test-secret-" + "k" * 40
ANSWER = "您反映的问题已核实：该窗口工作人员已被约谈并通报批评，窗口已增设叫号引导员。感谢您的监督！"
FLOW_TEXT = ("我上周三上午去区政务服务中心办理营业执照变更，取号后排了两个多小时，三号窗口一直没人，"
             "工作人员在后面玩手机。轮到我时又说材料不全，让我回去补一份清单上根本没有的证明。")

# (district, days ago, description, what staff did already)
REPORTS: list[tuple[str | None, int, str, tuple[str, ...]]] = [
    ("yuelu", 1,
     "岳麓区某街道社区低保名额全给了村干部的亲戚，真正困难"
     "的家庭申请了两年都没批下来，村务公开栏也从来不更新。",
     ()),
    ("kaifu", 2,
     "开福区某中学老师在校外办收费补习班，上课不讲"
     "重点，暗示学生去他的补习班，每学期收费三千元。",
     ("accept",)),
    ("tianxin", 3,
     "市某医院骨科医生收红包，家属不给红包就一直拖着"
     "不安排手术，医保报销的药还让我们自费去外面买。",
     ("accept",)),
    ("furong", 5,
     "某局下基层检查，要求企业每次都安排吃饭，还让"
     "我们准备购物卡，不给就说消防不合格要停业整顿。",
     ()),
    ("yuhua", 8,
     "雨花区某道路改造工程层层转包，实际施工队没有资"
     "质，工人工资拖欠半年了，项目经理说钱被上面扣了。",
     ("accept", "answer")),
    ("wangcheng", 12,
     "街道办要求每户下载三个政务APP并截图打卡，"
     "不下载就不给办居住证明，纯粹为了留痕应付检查。",
     ("accept",)),
    ("liuyang", 20,
     "我向区住建局反映小区违建问题已经三个月了，打电话"
     "一直说在研究，各部门之间互相推诿，没有任何结果。",
     ()),
    ("ningxiang", 40,
     "乡镇干部上班时间在办公室打牌，群"
     "众来办事找不到人，打电话也不接。",
     ("accept", "answer", "close")),
    (None, 70,
     "社保窗口工作人员态度恶劣，问两句就不耐烦，让"
     "我去别的窗口问，跑了四个窗口都说不归他们管。",
     ()),
    ("furong", 4,
     "请问怎么查询公积金余"
     "额？网站一直打不开。",
     ()),
]


def _photo() -> bytes:
    """A small PNG standing in for a reporter's photo of a queue number slip."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (360, 240), (236, 239, 243))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 30, 320, 210), fill=(255, 255, 255), outline=(120, 130, 140), width=2)
    draw.rectangle((60, 60, 300, 90), fill=(47, 111, 176))
    for row in range(4):
        draw.rectangle((60, 110 + row * 22, 300 - row * 40, 122 + row * 22), fill=(190, 198, 206))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def _seed(data_dir: Path) -> dict[str, Any]:
    """Staff of each role and a realistic set of cases, tagged by the real model, through storage actions."""
    from handlers.routing import route
    from nlp.registry import ModelRegistry
    from nlp.types import Tag
    from storage import actions, evidence_rows, staff_actions
    from storage.db import create_engine, create_sessionmaker
    from storage.models import CaseStatus, StaffRole, utcnow
    from tests.conftest import staff_password_hashing

    settings = make_settings(data_dir, secret_key=SECRET)
    city = settings.city
    classifier = await asyncio.to_thread(ModelRegistry(data_dir / "models").load_promoted)
    engine = create_engine(settings.resolved_database_url, make_test_keyring())
    sessionmaker = create_sessionmaker(engine)
    password_hash = staff_password_hashing().hash(PASSWORD)
    flow_number = ""
    try:
        async with sessionmaker.begin() as session:
            admin = await staff_actions.create_staff(session, username="admin", display_name="陈主任",
                                                     role=StaffRole.ADMIN, password_hash=password_hash)
            await staff_actions.create_staff(session, username="zhao.min", display_name="赵敏",
                                             role=StaffRole.SUPERVISOR, password_hash=password_hash)
            reviewer = await staff_actions.create_staff(session, username="wang.fang", display_name="王芳",
                                                        role=StaffRole.REVIEWER, password_hash=password_hash)
            await staff_actions.set_queues(session, reviewer, ["triage", "clean_hall"])
            for number, (district, days_ago, text, done) in enumerate(REPORTS, start=1):
                created = utcnow() - timedelta(days=days_ago, hours=number)
                case, _ = await file_case(
                    session, secret_key=settings.resolved_secret_key(), case_number_prefix="QL", year=created.year,
                    channel="telegram" if number % 2 else "web", reporter_ref=f"resident-{number}", locale="zh",
                    district=district, place="（见描述）", occurred=f"{days_ago + 2} 天前", description=text,
                    anonymous=number % 3 != 0, reporter_name="李红" if number % 3 == 0 else None,
                    reporter_phone="13800138000" if number % 3 == 0 else None,
                    **decided(route(city, classifier.classify(text), district, created)), now=created)
                if "accept" in done:
                    await staff_actions.accept_case(session, case, actor=admin)
                    case.accepted_at = created + timedelta(days=1, hours=3)
                if "answer" in done:
                    await staff_actions.answer_reporter(session, case, "已转交相关部门核查，核查结果将及时告知。",
                                                        actor=admin)
                if "close" in done:
                    await staff_actions.set_status(session, case, CaseStatus.CLOSED, actor=admin)
                    case.closed_at = created + timedelta(days=9)

            # the case of the browser flow: in manual triage with a low-confidence label, a photo attached
            conversation = await actions.load_conversation(session, "telegram", "resident-flow")
            photo = _photo()
            stored = secrets.token_hex(12)
            settings.evidence_dir.mkdir(parents=True, exist_ok=True)
            (settings.evidence_dir / stored).write_bytes(photo)
            attachment = await evidence_rows.add_draft_attachment(
                session, conversation, stored_name=stored, original_name="排队小票.png", media_type="image/png",
                size_bytes=len(photo), sha256=hashlib.sha256(photo).hexdigest())
            predicted = classifier.classify(FLOW_TEXT)
            tag = Tag("other", 0.41, [("other", 0.41), ("slow_service", 0.36), ("lazy_procrastination", 0.11)],
                      predicted.terms, predicted.model_version)
            case, _ = await file_case(
                session, secret_key=settings.resolved_secret_key(), case_number_prefix="QL", year=utcnow().year,
                channel="telegram", reporter_ref="resident-flow", locale="zh", district="furong",
                place="芙蓉区政务服务中心三楼", occurred="上周三上午九点", description=FLOW_TEXT, anonymous=False,
                reporter_name="张伟", reporter_phone="13912345678", attachment_ids=[attachment.id],
                **decided(route(city, tag, "furong", utcnow())))
            assert case.queue == "triage" and case.case_number
            flow_number = case.case_number
    finally:
        await engine.dispose()
    return {"flow": flow_number}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, data_template: Path) -> Iterator[tuple[LiveService, str]]:
    data_dir = fresh_data_dir(data_template, tmp_path_factory.mktemp("console-browser") / "data")
    seeded = asyncio.run(_seed(data_dir))
    live = LiveService(data_dir, {"QINGLIAN_SECRET_KEY": SECRET})
    live.start()
    yield live, seeded["flow"]
    live.stop()


def _login(page: Any, url: str, username: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/console/login'] button[type=submit]")


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_staff_work_a_ticket_and_see_statistics_and_models(service: tuple[LiveService, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    live, flow_number = service
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
                if response.status >= 400 else None)

        page.goto(f"{live.url}/console")
        expect(page).to_have_url(re.compile(r"/console/login\?next=/console$"))
        _shot(page, "login")

        # a reviewer of manual triage opens the queue and the ticket
        _login(page, live.url, "wang.fang")
        expect(page.locator("main h1")).to_contain_text("我的队列")
        _shot(page, "overview")
        page.click("table.grid a[href='/console/queue/triage']")
        expect(page.locator("main h1")).to_contain_text("人工分拣")
        _shot(page, "queue")
        page.click(f"a[href='/console/case/{flow_number}']")
        expect(page.locator(".case-head h1")).to_contain_text(flow_number)
        expect(page.locator(".report-text mark").first).to_be_visible()
        expect(page.locator(".thumbs img")).to_have_js_property("naturalWidth", 320)  # the 360 × 240 photo, reduced
        _shot(page, "ticket")

        # corrects the label: the ticket moves to the counter-service queue, which is also theirs
        page.select_option("form[action$='/correct-label'] select", "slow_service")
        page.click("form[action$='/correct-label'] button")
        expect(page.locator(".flash.ok")).to_contain_text("分类已更正")
        expect(page.locator(".meta")).to_contain_text("清廉大厅监督组")
        expect(page.locator(".classifier")).to_contain_text("已更正")

        # answers the reporter
        page.fill("form[action$='/answer'] textarea", ANSWER)
        page.click("form[action$='/answer'] button[value=check]")
        expect(page.locator("#answer-check")).to_contain_text("答复质量检查")
        expect(page.locator("form[action$='/answer'] textarea")).to_have_value(ANSWER)
        page.click("form[action$='/answer'] button[value=send]")
        expect(page.locator(".flash.ok")).to_contain_text("答复已发送")
        expect(page.locator("#trace")).to_contain_text(ANSWER)
        expect(page.locator(".case-head .st")).to_contain_text("已答复")
        page.click("header form[action='/console/logout'] button")
        expect(page).to_have_url(re.compile(r"/console/login$"))

        # an administrator sees the statistics and the models
        _login(page, live.url, "admin")
        page.click("header nav a[href='/console/stats']")
        expect(page.locator("figure.chart svg")).to_have_count(6)  # four bar charts and the loop's two weekly lines
        expect(page.locator("#loop")).to_contain_text("闭环指标")
        expect(page.locator(".tiles")).to_contain_text("期间收到举报")
        _shot(page, "statistics")

        page.click("header nav a[href='/console/models']")
        expect(page.locator("main h1")).to_contain_text("分类模型")
        page.click("form[action='/console/models/train'] button")
        expect(page.locator(".flash.ok")).to_contain_text("训练已开始")
        expect(page.locator("main .tag.ok", has_text="成功")).to_be_visible(timeout=45_000)  # the page refreshes
        _shot(page, "models")
        page.click("#compare-form button")
        expect(page.locator("#comparison")).to_contain_text("Macro-F1", timeout=20_000)
        browser.close()
        assert problems == []
