"""The web chat's HTTP API (`bot.channels.web`), in-process through httpx's ASGI transport: the page names the city
and hands a new browser an HttpOnly, SameSite=strict cookie (Secure behind https) and keeps a valid one; every API
call needs the `X-Qinglian-Chat: 1` header and the cookie, refused 400 and 401 with their reasons before the
database is touched; a message body carries exactly one of text, choice or command within its limits (422
otherwise); a conversation follows its cookie and answers in the browser's language; a forged cookie's fresh one
carries the new conversation on; an upload reaches the dialog with its size cut just past the city's limit; the
inbox hands a browser its waiting messages once; while the database is unreachable every step answers 503 with
Retry-After and the "busy" text. Steps that reach the database run on SQLite and the PostgreSQL on 127.0.0.1, one
migrated database of each for the module (each test its own browsers). The full report, the real server's body
limit and the page in Chromium are in tests/channels/test_web.py."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from starlette.requests import Request

from bot.channels.web import MAX_TEXT, build_router, client_ip
from bot.config import Settings
from bot.runtime import Runtime
from storage import actions
from storage.models import Case
from tests.conftest import city_file, free_port
from tests.factories import pdf_of_size

SECRET = "web-chat-test-secret-" + "k" * 40
LIMIT = 2048
"""The city's largest attachment in these tests (the smallest the configuration allows is 1024 bytes)."""
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
DESCRIPTION = "政务服务中心3号窗口的工作人员上班时间一直玩手机，群众排队等了两个小时。"
BUSY_ZH = "抱歉，系统繁忙，您已填写的内容不会丢失，请稍后再试。"
BUSY_EN = "Sorry, the service is busy. Your answers so far are kept; please try again shortly."
ENDPOINTS = (("POST", "/chat/api/message"), ("POST", "/chat/api/upload"), ("GET", "/chat/api/inbox"))


@dataclass
class Chat:
    runtime: Runtime
    transport: httpx.ASGITransport

    def browser(self, language: str = "zh-CN", *, header: bool = True) -> httpx.AsyncClient:
        """A browser of its own (its own cookie jar) that sends the chat's header unless told not to."""
        headers = {"Accept-Language": language} | ({"X-Qinglian-Chat": "1"} if header else {})
        return httpx.AsyncClient(transport=self.transport, base_url="http://qinglian.test", headers=headers)


@asynccontextmanager
async def _serving(tmp_path: Path, database_url: str, *, public_url: str = "http://qinglian.test"
                   ) -> AsyncIterator[Chat]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key=SECRET, public_url=public_url,
                        config_file=city_file(tmp_path, {"max_attachment_bytes": LIMIT}))
    runtime = Runtime.build(settings)
    app = FastAPI()
    app.include_router(build_router(runtime))
    try:
        yield Chat(runtime, httpx.ASGITransport(app=app, client=("203.0.113.7", 51000)))
    finally:
        await runtime.close()


async def _opened(browser: httpx.AsyncClient) -> httpx.AsyncClient:
    """The browser after it loaded the chat page (which gives it its cookie)."""
    assert (await browser.get("/")).status_code == 200
    assert browser.cookies.get("ql_chat")
    return browser


async def _say(browser: httpx.AsyncClient, **body: str) -> list[dict[str, Any]]:
    answer = await browser.post("/chat/api/message", json=body)
    assert answer.status_code == 200, answer.text
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


def _text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(message["text"] for message in messages)


# --- the page and its cookie ---------------------------------------------------------------------


async def test_the_page_names_the_city_and_gives_a_new_browser_an_http_only_strict_cookie(
        tmp_path: Path, never_opened: str) -> None:
    async with _serving(tmp_path, never_opened) as chat, chat.browser(header=False) as browser, \
            chat.browser(header=False) as forger:
        page = await browser.get("/")
        again = await browser.get("/")
        forger.cookies.set("ql_chat", "made-up-value", domain="qinglian.test")
        forged = await forger.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>清廉长沙 · 监督举报 / Clean Changsha reporting</title>" in page.text
    assert "{{" not in page.text
    assert (page.headers["cache-control"], page.headers["x-content-type-options"],
            page.headers["referrer-policy"]) == ("no-store", "nosniff", "no-referrer")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("ql_chat=")
    assert {"HttpOnly", "Max-Age=2592000", "SameSite=strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert "secure" not in cookie.lower()  # http: a Secure cookie would never come back
    assert "set-cookie" not in again.headers  # the cookie it has is ours: kept
    assert forged.headers["set-cookie"].startswith("ql_chat=")
    assert forged.cookies["ql_chat"] not in ("made-up-value", page.cookies["ql_chat"])


async def test_the_page_runs_no_inline_code_and_its_style_and_scripts_come_from_the_package(
        tmp_path: Path, never_opened: str) -> None:
    """The page was one file of 827 lines with its style and script inline, so its CSP had to allow
    'unsafe-inline' scripts: now its style and scripts are files of the package, each named with its version
    (kept by the browser until it changes), and the CSP allows no inline script or style."""
    async with _serving(tmp_path, never_opened) as chat, chat.browser(header=False) as browser:
        page = await browser.get("/")
        names = re.findall(r'(?:src|href)="(/chat/static/[^"]+)"', page.text)
        assets = {name: await browser.get(name) for name in names}
        unversioned = await browser.get("/chat/static/chat.js")
        missing = [(await browser.get(f"/chat/static/{name}")).status_code
                   for name in ("chat.html", "../channels/web.py", "nothing.js")]
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and "<style" not in page.text
    assert " style=" not in page.text and " onclick=" not in page.text
    assert f'data-max-file-bytes="{LIMIT}"' in page.text  # the page's check of a file's size before it is sent
    assert sorted(name.split("?")[0] for name in names) == [
        "/chat/static/chat-net.js", "/chat/static/chat.css", "/chat/static/chat.js"]
    for name, answer in assets.items():
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("text/css" if ".css" in name else "text/javascript")
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "{{" not in answer.text
    assert unversioned.status_code == 200 and unversioned.headers["cache-control"] == "no-cache"
    assert missing[0] == 404 and missing[2] == 404 and missing[1] in (404, 405)


async def test_the_page_carries_the_servers_text_limit_and_its_scripts_restate_none(
        tmp_path: Path, never_opened: str) -> None:
    """The longest text was written three times (MAX_TEXT here, a number in chat.js, a text in chat-net.js): a change
    of one left the page refusing what the server takes, or sending what it refuses. Now the page carries the
    server's limit (as it carries the file-size limit) and the scripts read it from there."""
    async with _serving(tmp_path, never_opened) as chat, chat.browser(header=False) as browser:
        page = await browser.get("/")
        scripts = {name: (await browser.get(f"/chat/static/{name}")).text for name in ("chat.js", "chat-net.js")}
    assert f'data-max-text="{MAX_TEXT}"' in page.text
    written = {str(MAX_TEXT), f"{MAX_TEXT:,}"}
    assert {name: [number for number in written if number in text] for name, text in scripts.items()} == {
        "chat.js": [], "chat-net.js": []}
    assert 'getAttribute("data-max-text")' in scripts["chat.js"]


async def test_behind_https_the_cookie_is_secure(tmp_path: Path, never_opened: str) -> None:
    async with _serving(tmp_path, never_opened, public_url="https://qinglian.example") as chat, \
            chat.browser() as browser:
        page = await browser.get("/")
    assert "Secure" in {part.strip() for part in page.headers["set-cookie"].split(";")}


# --- refusals ------------------------------------------------------------------------------------


def _set_cookie(answer: httpx.Response) -> tuple[str, str, set[str]]:
    """The one cookie the answer sets: its name, its value and its attributes."""
    [header] = answer.headers.get_list("set-cookie")
    pair, *attributes = [part.strip() for part in header.split(";")]
    name, value = pair.split("=", 1)
    return name, value, set(attributes)


async def test_behind_https_a_cookie_planted_over_plain_http_opens_no_conversation(
        tmp_path: Path, shared_database_url: str) -> None:
    """Someone on the resident's network (an office's Wi-Fi) can answer her first plain-http request with a cookie
    for the site, one the service gave them: the conversation it names would be theirs to read too. Behind https
    the conversation's cookie has the `__Host-` prefix, which a browser takes only from the https site itself."""
    async with _serving(tmp_path, shared_database_url, public_url="https://qinglian.example") as chat, \
            chat.browser() as attacker, chat.browser() as resident:
        name, attackers, attributes = _set_cookie(await attacker.get("/"))
        # all a plain-http answer can plant: the same value without the prefix
        planted = await resident.get("/", headers={"Cookie": f"ql_chat={attackers}"})
        _, residents, _ = _set_cookie(planted)
        for body in ({"command": "report"}, {"choice": "district:kaifu"}):
            assert (await resident.post("/chat/api/message", json=body,
                                        headers={"Cookie": f"{name}={residents}"})).status_code == 200
        attackers_view = await attacker.post("/chat/api/message", json={"text": "开福区不动产登记中心"},
                                             headers={"Cookie": f"{name}={attackers}"})
    assert name == "__Host-ql_chat" and {"Secure", "Path=/", "HttpOnly", "SameSite=strict"} <= attributes
    assert not any(attribute.lower().startswith("domain=") for attribute in attributes)
    assert residents != attackers
    assert "第3步" not in _text(attackers_view.json()["messages"])  # the resident's draft is not the attacker's


async def test_a_cookie_given_before_the_site_moved_to_https_keeps_its_conversation(
        tmp_path: Path, shared_database_url: str) -> None:
    async with _serving(tmp_path, shared_database_url) as chat, chat.browser() as browser:
        await _opened(browser)
        await _say(browser, command="report")
        before = browser.cookies["ql_chat"]
    async with _serving(tmp_path, shared_database_url, public_url="https://qinglian.example") as chat, \
            chat.browser() as browser:
        answer = await browser.post("/chat/api/message", json={"choice": "district:kaifu"},
                                    headers={"Cookie": f"ql_chat={before}"})
    assert answer.status_code == 200 and _text(answer.json()["messages"]).startswith("第2步")
    cookies = {header.split("=", 1)[0]: header for header in answer.headers.get_list("set-cookie")}
    assert set(cookies) == {"__Host-ql_chat", "ql_chat"} and "Max-Age=0" in cookies["ql_chat"]  # moved, old one gone


async def test_every_api_call_needs_the_header_and_then_the_cookie_refused_with_its_reason(
        tmp_path: Path, never_opened: str) -> None:
    async with _serving(tmp_path, never_opened) as chat:
        async with chat.browser(header=False) as headless:
            await _opened(headless)
            answers: dict[str, httpx.Response] = {}
            for method, path in ENDPOINTS:
                files = {"file": ("a.jpg", JPEG_START, "image/jpeg")} if path.endswith("upload") else None
                body = {"command": "start"} if path.endswith("message") else None
                for name, headers in (("none", {}), ("0", {"X-Qinglian-Chat": "0"}),
                                      ("true", {"X-Qinglian-Chat": "true"})):
                    answers[f"{path} header {name}"] = await headless.request(method, path, json=body, files=files,
                                                                             headers=headers)
                # no cookie: a browser that never opened the page
                async with chat.browser() as stranger:
                    answers[f"{path} no cookie"] = await stranger.request(method, path, json=body, files=files)
                async with chat.browser(header=False) as neither:
                    answers[f"{path} neither"] = await neither.request(method, path, json=body, files=files)
    refusals = {name: (answer.status_code, answer.json()["detail"]) for name, answer in answers.items()}
    header = (400, "missing X-Qinglian-Chat header")
    cookie = (401, "no chat session: open the chat page first")
    assert refusals == {f"{path} {case}": expected for _, path in ENDPOINTS for case, expected in (
        ("header none", header), ("header 0", header), ("header true", header), ("no cookie", cookie),
        ("neither", header))}


@pytest.mark.parametrize("body", [
    {},
    {"argument": "1234 5678 9012 3456"},
    {"text": "你好", "choice": "menu:report"},
    {"choice": "menu:report", "command": "report"},
    {"text": "你好", "command": "report"},
    {"text": "x" * (MAX_TEXT + 1)},
    {"choice": "c" * 65},
    {"command": "Report"},
    {"command": "a" * 21},
    {"command": ""},
    {"command": "report", "argument": "x" * (MAX_TEXT + 1)},
    {"text": 42},
    ["text", "你好"],
    {"text": "你好", "extra": 1},
], ids=["empty", "argument alone", "text and choice", "choice and command", "text and command", "text too long",
        "choice too long", "command uppercase", "command too long", "command empty", "argument too long",
        "text a number", "a list", "an unknown field"])
async def test_a_body_without_exactly_one_of_text_choice_or_command_within_limits_is_refused(
        tmp_path: Path, never_opened: str, body: Any) -> None:
    async with _serving(tmp_path, never_opened) as chat, chat.browser() as browser:
        await _opened(browser)
        answer = await browser.post("/chat/api/message", json=body)
    assert answer.status_code == 422
    if isinstance(body, dict) and len({"text", "choice", "command"} & set(body)) != 1:
        assert "send exactly one of text, choice or command" in str(answer.json()["detail"])


# --- conversations -------------------------------------------------------------------------------


async def test_bodies_at_their_limits_are_accepted(tmp_path: Path, shared_database_url: str) -> None:
    async with _serving(tmp_path, shared_database_url) as chat, chat.browser() as browser:
        await _opened(browser)
        bodies = ({"text": "字" * MAX_TEXT}, {"choice": "c" * 64}, {"command": "a" * 20},
                  {"command": "status", "argument": "1" * 200})
        answers = [await browser.post("/chat/api/message", json=body) for body in bodies]
        # "/report <what happened>" typed in the page: the description may be as long as the city allows
        described = "岳麓区某街道办事处工作人员长期不在岗，群众办事多次扑空。" * 10
        report = await browser.post("/chat/api/message", json={"command": "report", "argument": described})
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]
    assert report.status_code == 200 and "第1步" in _text(report.json()["messages"])
    assert all(answer.json()["messages"] for answer in answers)  # each is answered
    assert "无法识别指令 /aaaaaaaaaaaaaaaaaaaa" in _text(answers[2].json()["messages"])


async def test_an_account_of_10000_characters_pasted_in_the_web_chat_is_kept_as_far_as_it_fits(
        tmp_path: Path, shared_database_url: str) -> None:
    """A resident pastes her 10,000-character account at the description: the web chat refused it whole (422, and
    the page "请精简后再发送（描述最多3000字）"), where Telegram and WeChat keep what fits of such a text and say
    where the rest begins."""
    account = ("窗口人员以系统故障为由拒绝受理，让我下周再来，可系统明明能用。" * 330)[:10000]
    async with _serving(tmp_path, shared_database_url) as chat, chat.browser() as browser:
        await _opened(browser)
        for body in ({"command": "report"}, {"choice": "district:yuelu"}, {"text": "岳麓区政务服务中心社保窗口"},
                     {"choice": "when:today"}):
            assert (await browser.post("/chat/api/message", json=body)).status_code == 200
        answer = await browser.post("/chat/api/message", json={"text": account})
    assert answer.status_code == 200
    said = _text(answer.json()["messages"])
    assert said.startswith("您发来的内容共10000字，超过了“经过”3000字的上限。已把前") and "第5步" in said


async def test_a_conversation_follows_its_cookie_and_answers_in_the_browsers_language(
        tmp_path: Path, shared_database_url: str) -> None:
    async with _serving(tmp_path, shared_database_url) as chat, chat.browser("zh-CN,zh;q=0.9") as chinese, \
            chat.browser("en-GB,en;q=0.8") as english, chat.browser("fr-FR,fr;q=0.9") as french:
        for browser in (chinese, english, french):
            await _opened(browser)
        *intro, step1 = await _say(chinese, command="report")
        *_, english_step1_message = await _say(english, command="report")
        english_step1 = english_step1_message["text"]
        french_step1 = _text(await _say(french, command="report"))
        chinese_step2 = _text(await _say(chinese, choice="district:kaifu"))
        english_step2 = _text(await _say(english, choice="district:yuelu"))
        chinese_step3 = _text(await _say(chinese, text="开福区不动产登记中心"))
    assert [message["choices"] for message in intro] == [[]]  # how reporting works, then the first question
    assert step1["text"] == "第1步：问题发生在长沙市哪个区县（市）？"
    assert {"key": "district:furong", "label": "芙蓉区"} in step1["choices"]
    assert set(step1) == {"text", "choices", "columns", "lang"} and isinstance(step1["columns"], int)
    assert (step1["lang"], english_step1_message["lang"]) == ("zh-CN", "en")  # the page marks each message's language
    assert english_step1.endswith("Step 1: In which district of Changsha did it happen?")
    assert french_step1.endswith("第1步：问题发生在长沙市哪个区县（市）？")  # a language we lack: the city's default
    assert chinese_step2.startswith("第2步") and english_step2.startswith("Step 2")
    assert chinese_step3.startswith("第3步")  # each browser's draft is its own


async def test_the_fresh_cookie_given_for_a_forged_one_carries_the_new_conversation(
        tmp_path: Path, shared_database_url: str) -> None:
    async with _serving(tmp_path, shared_database_url) as chat, chat.browser() as browser:
        browser.cookies.set("ql_chat", "forged.value", domain="qinglian.test")
        first = await browser.post("/chat/api/message", json={"command": "report"})
        fresh = first.cookies.get("ql_chat")
        assert first.status_code == 200 and fresh and fresh != "forged.value"
        second = await _say(browser, choice="district:tianxin")  # with the fresh cookie the jar now holds
        no_new_cookie = "set-cookie" not in (await browser.post("/chat/api/message",
                                                                json={"text": "天心区政务服务中心"})).headers
    assert "第1步" in _text(first.json()["messages"])
    assert _text(second).startswith("第2步")
    assert no_new_cookie


async def _to_evidence(browser: httpx.AsyncClient) -> None:
    await _say(browser, command="report")
    await _say(browser, choice="district:yuelu")
    await _say(browser, text="岳麓区政务服务中心3号窗口")
    await _say(browser, choice="when:today")
    assert "第5步" in _text(await _say(browser, text=DESCRIPTION))


async def _upload(browser: httpx.AsyncClient, content: bytes, media_type: str = "image/jpeg") -> str:
    answer = await browser.post("/chat/api/upload", files={"file": ("photo.jpg", content, media_type)})
    assert answer.status_code == 200, answer.text
    return _text(answer.json()["messages"])


async def test_an_upload_at_the_citys_limit_is_kept_and_one_byte_more_is_refused(
        tmp_path: Path, shared_database_url: str) -> None:
    at_limit = pdf_of_size(LIMIT)  # as many bytes when taken (an image is re-encoded to a size of its own)
    async with _serving(tmp_path, shared_database_url) as chat, chat.browser() as browser:
        await _opened(browser)
        first = await _upload(browser, at_limit)  # before any question: kept, and a report offered with it
        first_over = await _upload(browser, at_limit + b"\x02")
        await _say(browser, choice="intake:menu")  # declined: deleted
        await _say(browser, command="report")
        before = await _upload(browser, at_limit)  # at a question before the evidence step: not asked for yet
        await _say(browser, choice="district:yuelu")
        await _say(browser, text="岳麓区政务服务中心3号窗口")
        await _say(browser, choice="when:today")
        assert "第5步" in _text(await _say(browser, text=DESCRIPTION))
        over = await _upload(browser, at_limit + b"\x02")
        much_over = await _upload(browser, at_limit * 5)
        kept = await _upload(browser, at_limit)
    assert first.startswith("已收到您发来的 1 个文件") and first_over.startswith("文件太大了")
    assert before.startswith("现在还不需要上传文件，请先回答当前问题。")
    assert over.startswith("文件太大了") and much_over.startswith("文件太大了")
    assert kept.startswith("已收到第 1 个文件")


async def test_the_inbox_hands_a_browser_its_waiting_messages_once(tmp_path: Path, shared_database_url: str) -> None:
    answer = "经核查，已责令该窗口整改，并对当事人批评教育。"
    async with _serving(tmp_path, shared_database_url) as chat, chat.browser() as reporter, \
            chat.browser() as neighbour:
        await _opened(reporter)
        await _opened(neighbour)
        await _to_evidence(reporter)
        await _say(reporter, choice="evidence:done")
        await _say(reporter, choice="identity:anonymous")
        submitted = _text(await _say(reporter, choice="summary:submit"))
        assert "举报已提交" in submitted
        empty_before = (await reporter.get("/chat/api/inbox")).json()
        async with chat.runtime.sessionmaker.begin() as session:
            case = (await session.execute(select(Case).where(Case.channel == "web").order_by(Case.id.desc())
                                          .limit(1))).scalar_one()
            assert case.case_number is not None and case.case_number in submitted
            await actions.reply_to_reporter(session, case, answer, actor="staff:test")
            number = case.case_number
        to_neighbour = (await neighbour.get("/chat/api/inbox")).json()
        first = (await reporter.get("/chat/api/inbox")).json()
        second = (await reporter.get("/chat/api/inbox")).json()
    assert empty_before == {"messages": []} and to_neighbour == {"messages": []}
    assert first == {"messages": [{
        "text": f"您的举报 {number} 收到办理答复：\n{answer}\n\n"
                "发送 /status 加查询码可查看完整轨迹：问题已解决的，在那里选“问题已解决，谢谢”并评价；"
                "没有解决的，选“补充材料”说明情况。",
        "choices": [], "columns": 1, "lang": "zh-CN"}]}  # a notice in the reporter's language, marked so
    assert second == {"messages": []}


# --- the database unreachable --------------------------------------------------------------------


async def test_while_the_database_is_unreachable_every_step_answers_503_with_retry_after_and_the_busy_text(
        tmp_path: Path) -> None:
    unreachable = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/qinglian"
    async with _serving(tmp_path, unreachable) as chat, chat.browser() as chinese, \
            chat.browser("en-US") as english:
        await _opened(chinese)  # the page needs no database
        await _opened(english)
        answers = {
            "message": await chinese.post("/chat/api/message", json={"text": "你好"}),
            "upload": await chinese.post("/chat/api/upload", files={"file": ("a.jpg", JPEG_START, "image/jpeg")}),
            "inbox": await chinese.get("/chat/api/inbox"),
            "message in English": await english.post("/chat/api/message", json={"command": "report"}),
        }
    assert {name: (a.status_code, a.headers.get("retry-after"), a.json()["detail"]) for name, a in answers.items()} \
        == {"message": (503, "5", BUSY_ZH), "upload": (503, "5", BUSY_ZH), "inbox": (503, "5", BUSY_ZH),
            "message in English": (503, "5", BUSY_EN)}


async def test_a_resident_who_chose_english_is_told_the_service_is_busy_in_english(
        tmp_path: Path, migrated_sqlite: str) -> None:
    """The "busy, try again" answer was in the browser's language: a resident whose browser is Chinese and who
    chose English in the chat was answered in Chinese. The disk filling up (as in the test above) makes the step
    fail."""
    from sqlalchemy import text

    shutil.copyfile(migrated_sqlite, tmp_path / "full.db")
    async with _serving(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'full.db'}") as chat, \
            chat.browser() as english, chat.browser() as chinese:
        for browser in (english, chinese):
            await _opened(browser)
            await _say(browser, text="你好")
        await _say(english, command="language")
        assert (await _say(english, choice="language:en"))[0]["text"] == "Language set to English."
        async with chat.runtime.sessionmaker.begin() as session:
            pages = (await session.execute(text("PRAGMA page_count"))).scalar_one()
            await session.execute(text(f"PRAGMA max_page_count = {pages}"))
        answers = [await browser.post("/chat/api/message", json={"command": "report", "argument": DESCRIPTION * 80})
                   for browser in (english, chinese)]
    assert [(answer.status_code, answer.json()["detail"]) for answer in answers] == [(503, BUSY_EN), (503, BUSY_ZH)]


# --- the client's address ------------------------------------------------------------------------


def test_the_clients_address_is_the_connections_and_a_forwarded_for_header_is_not_read() -> None:
    def request(client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]]) -> Request:
        return Request({"type": "http", "method": "POST", "path": "/chat/api/message", "headers": headers,
                        "client": client})

    assert client_ip(request(("198.51.100.23", 40000), [])) == "198.51.100.23"
    assert client_ip(request(("198.51.100.23", 40000), [(b"x-forwarded-for", b"203.0.113.99")])) == "198.51.100.23"
    assert client_ip(request(None, [(b"x-forwarded-for", b"203.0.113.99")])) is None


async def test_a_database_whose_disk_is_full_answers_503_and_the_log_says_the_disk_is_full(
        tmp_path: Path, migrated_sqlite: str, caplog: pytest.LogCaptureFixture) -> None:
    """A database whose disk filled up while serving: the resident is asked to try again shortly, and the log said
    only "the database is unavailable (OperationalError)", as for a database that is down. It now says the disk
    is full. SQLite is made to answer as on a full disk (SQLITE_FULL, "database or disk is full") by capping its
    size at what it holds (`PRAGMA max_page_count`, on the write engine's one connection): a report's long
    description needs pages it cannot have."""
    from sqlalchemy import text

    shutil.copyfile(migrated_sqlite, tmp_path / "full.db")
    async with _serving(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'full.db'}") as chat, \
            chat.browser() as browser:
        await _opened(browser)
        async with chat.runtime.sessionmaker.begin() as session:
            pages = (await session.execute(text("PRAGMA page_count"))).scalar_one()
            await session.execute(text(f"PRAGMA max_page_count = {pages}"))
        with caplog.at_level(logging.WARNING, logger="bot.channels.web"):
            answer = await browser.post("/chat/api/message", json={"command": "report", "argument": DESCRIPTION * 80})
    assert answer.status_code == 503, answer.text
    assert (answer.headers.get("retry-after"), answer.json()["detail"]) == ("5", BUSY_ZH)
    assert [record.getMessage() for record in caplog.records if record.name == "bot.channels.web"] == [
        "web chat: the database cannot write, its disk is full (OperationalError): free space where the database "
        "keeps its files"]
