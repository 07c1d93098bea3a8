"""The Official Account API client (`bot.channels.wechat.api`) against the stand-in WeChat platform, served
in-process through httpx's ASGI transport: the access token is fetched with the account's credentials, stored for
every process and reused, fetched once for many callers at the same moment, never handed out within five minutes of
its expiry; a token WeChat refuses (40001, 42001) is replaced and the call made once more — by another process from
the token already stored — and a second refusal raised; any other errcode is raised with its code and message and
never retried here; an HTTP error or an answer that is not JSON is an error of its own; media come back whole or cut
just past the caller's limit; the custom menu goes out as UTF-8. On SQLite and the PostgreSQL on 127.0.0.1, one
migrated database of each for the module (each test its own account, so its own stored token)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.wechat.api import WeChatApi, WeChatApiError, menu_definition
from bot.config import Settings
from handlers.texts import Texts
from storage import channel_state
from storage.db import Database
from storage.models import utcnow
from tests.conftest import make_test_keyring
from tests.standins.wechat_server import WeChatStandIn

TOKEN = "QinglianCallback2026"
APP_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
API_URL = "http://api.weixin.test"
OPENID = "oQL_ap1_5d9pX2kT9aYw8bVcRmN"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20  # 5132 bytes


@dataclass
class Account:
    """One Official Account on the stand-in WeChat, and what its processes share."""

    standin: WeChatStandIn
    app_id: str
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    tmp_path: Path

    def process(self, *, secret: str | None = APP_SECRET) -> WeChatApi:
        """The API client of one process of the service (its own cached token, the database's shared one)."""
        settings = Settings(data_dir=self.tmp_path, wechat_app_id=self.app_id, wechat_app_secret=secret,
                            wechat_api_url=API_URL)
        return WeChatApi(settings, self.sessionmaker, self.http)

    async def stored_token(self) -> tuple[str, Any] | None:
        async with self.sessionmaker() as session:
            return await channel_state.load_wechat_token(session, self.app_id)

    def requests(self, path: str) -> list[dict[str, Any]]:
        return [request for request in self.standin.api_requests if request["path"] == path]


@pytest.fixture
async def account(shared_database_url: str, tmp_path: Path) -> AsyncIterator[Account]:
    app_id = f"wx{secrets.token_hex(8)}"
    standin = WeChatStandIn(token=TOKEN, app_id=app_id, app_secret=APP_SECRET)
    database = Database.connect(shared_database_url, make_test_keyring())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app)) as http:
            yield Account(standin, app_id, database.sessionmaker, http, tmp_path)
    finally:
        await database.dispose()
    assert standin.violations == []


SEND = "/cgi-bin/message/custom/send"


# --- the access token ----------------------------------------------------------------------------


async def test_a_token_is_fetched_with_the_accounts_credentials_stored_and_reused(account: Account) -> None:
    api = account.process()
    before = utcnow()
    token = await api.access_token()
    after = utcnow()
    assert await api.access_token() == token
    assert await account.process().access_token() == token  # another process: the stored token
    assert account.standin.token_requests == 1
    [fetch] = account.requests("/cgi-bin/token")
    assert fetch["params"] == {"grant_type": "client_credential", "appid": account.app_id, "secret": APP_SECRET}
    stored = await account.stored_token()
    assert stored is not None and stored[0] == token
    assert before + timedelta(seconds=7200) <= stored[1] <= after + timedelta(seconds=7200)


async def test_many_callers_at_the_same_moment_share_one_token_request(account: Account) -> None:
    api = account.process()
    tokens = await asyncio.gather(*(api.access_token() for _ in range(12)))
    assert len(set(tokens)) == 1 and account.standin.token_requests == 1


async def test_a_token_within_five_minutes_of_its_expiry_is_never_handed_out(account: Account) -> None:
    account.standin.token_lifetime = 300  # issued with five minutes left: too old from the start
    api = account.process()
    first, second = await api.access_token(), await api.access_token()
    assert first != second and account.standin.token_requests == 2
    account.standin.token_lifetime = 420  # seven minutes: two of them usable
    third = await api.access_token()
    assert await api.access_token() == third and account.standin.token_requests == 3


async def test_a_token_is_not_fetched_without_credentials_and_a_refused_fetch_is_raised(account: Account) -> None:
    unconfigured = account.process(secret=None)
    assert not unconfigured.configured and account.process().configured
    with pytest.raises(WeChatApiError) as missing:
        await unconfigured.access_token()
    assert (missing.value.errcode, missing.value.errmsg) == (
        41002, "QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET are not set")
    assert account.standin.token_requests == 0
    with pytest.raises(WeChatApiError) as wrong:
        await account.process(secret="0" * 32).access_token()
    assert (wrong.value.errcode, str(wrong.value)) == (40125, "WeChat errcode 40125: invalid appsecret")
    account.standin.fail_next("/cgi-bin/token", errcode=-1, errmsg="system error")
    with pytest.raises(WeChatApiError) as busy:
        await account.process().access_token()
    assert (busy.value.errcode, busy.value.errmsg) == (-1, "system error")
    assert await account.stored_token() is None  # nothing stored from a refusal


# --- calls with the token ------------------------------------------------------------------------


async def test_a_refused_token_is_replaced_and_the_call_made_once_more(account: Account) -> None:
    account.standin.interacted(OPENID)
    first, second = account.process(), account.process()
    old = await first.access_token()
    assert await second.access_token() == old
    account.standin.expire_tokens()  # WeChat now answers 42001 for it
    await first.send_text(OPENID, "第一条：令牌过期后重发")
    renewed = await account.stored_token()
    assert renewed is not None and renewed[0] != old and account.standin.token_requests == 2
    await second.send_text(OPENID, "第二条：另一个进程用已存的新令牌")  # refused with its old copy, then the stored one
    assert account.standin.token_requests == 2
    assert [m["text"]["content"] for m in account.standin.custom_messages(OPENID)] == [
        "第一条：令牌过期后重发", "第二条：另一个进程用已存的新令牌"]
    tokens = [request["params"]["access_token"] for request in account.requests(SEND)]
    assert tokens == [old, renewed[0], old, renewed[0]]


async def test_a_second_token_refusal_is_raised_after_one_refresh(account: Account) -> None:
    account.standin.interacted(OPENID)
    account.standin.fail_next(SEND, count=2, errcode=40001, errmsg="invalid credential")
    with pytest.raises(WeChatApiError) as refused:
        await account.process().send_text(OPENID, "两次都被拒绝")
    assert (refused.value.errcode, refused.value.errmsg) == (40001, "invalid credential")
    assert len(account.requests(SEND)) == 2 and account.standin.token_requests == 2
    assert account.standin.custom_messages(OPENID) == []


async def test_other_errcodes_are_raised_with_their_code_and_message_and_not_retried(account: Account) -> None:
    api = account.process()
    blocked, quiet, stranger = "oQL_ap1_blocked_5d9pX2kT9aY", "oQL_ap1_quiet_5d9pX2kT9aYw", "oQL_ap1_never_5d9pX2k"
    account.standin.interacted(blocked)
    account.standin.block(blocked, 43019)
    account.standin.interacted(quiet)
    account.standin.age_interaction(quiet, hours=49)
    account.standin.interacted(OPENID)
    account.standin.fail_next(SEND, errcode=45009, errmsg="reach max api daily quota limit")
    refusals: dict[str, tuple[int, str]] = {}
    for name, openid in (("quota", OPENID), ("blocked", blocked), ("window", quiet), ("unknown", stranger)):
        with pytest.raises(WeChatApiError) as refused:
            await api.send_text(openid, "无法送达")
        refusals[name] = (refused.value.errcode, str(refused.value))
    assert refusals == {
        "quota": (45009, "WeChat errcode 45009: reach max api daily quota limit"),
        "blocked": (43019, "WeChat errcode 43019: blocked by the stand-in"),
        "window": (45015, "WeChat errcode 45015: response out of time limit or subscription is canceled"),
        "unknown": (40003, "WeChat errcode 40003: invalid openid"),
    }
    assert len(account.requests(SEND)) == 4 and account.standin.token_requests == 1


async def test_an_http_error_or_an_answer_that_is_not_json_is_an_error_of_its_own(account: Account) -> None:
    account.standin.interacted(OPENID)
    api = account.process()
    account.standin.fail_next(SEND, status=502)
    with pytest.raises(httpx.HTTPStatusError, match="WeChat answered HTTP 502") as bad_gateway:
        await api.send_text(OPENID, "网关错误")
    assert bad_gateway.value.response.status_code == 502
    account.standin.fail_next(SEND, status=200)  # a plain-text page, as a proxy in between might answer
    with pytest.raises(WeChatApiError) as not_json:
        await api.send_text(OPENID, "不是JSON")
    assert (not_json.value.errcode, not_json.value.errmsg) == (-1, "HTTP 200 without JSON")
    await api.send_text(OPENID, "恢复正常")
    assert [m["text"]["content"] for m in account.standin.custom_messages(OPENID)] == ["恢复正常"]


async def test_a_customer_service_message_goes_out_as_wechat_expects_it(account: Account) -> None:
    account.standin.interacted(OPENID)
    await account.process().send_text(OPENID, "您的举报已受理 ✅ \"引号\" \\ 与换行\n第二行")
    assert account.standin.custom_messages(OPENID) == [
        {"touser": OPENID, "msgtype": "text", "text": {"content": "您的举报已受理 ✅ \"引号\" \\ 与换行\n第二行"}}]


# --- media ---------------------------------------------------------------------------------------


async def test_media_come_back_whole_or_cut_one_byte_past_the_limit(account: Account) -> None:
    media_id = account.standin.add_media(JPEG)
    api = account.process()
    assert await api.download_media(media_id, len(JPEG)) == JPEG
    assert await api.download_media(media_id, 10 * len(JPEG)) == JPEG
    assert await api.download_media(media_id, len(JPEG) - 1) == JPEG  # one past the limit: the caller sees "too big"
    assert await api.download_media(media_id, 1000) == JPEG[:1001]
    assert [request["params"]["media_id"] for request in account.requests("/cgi-bin/media/get")] == [media_id] * 4


async def test_media_errors_are_raised_and_a_refused_token_is_replaced_once(account: Account) -> None:
    api = account.process()
    media_id = account.standin.add_media(JPEG)
    with pytest.raises(WeChatApiError) as unknown:
        await api.download_media("no-such-media", 10_000)
    assert (unknown.value.errcode, unknown.value.errmsg) == (40007, "invalid media_id")
    account.standin.expire_tokens()
    assert await api.download_media(media_id, 10_000) == JPEG
    assert account.standin.token_requests == 2
    account.standin.fail_next("/cgi-bin/media/get", status=502)
    with pytest.raises(httpx.HTTPStatusError, match="WeChat answered HTTP 502"):
        await api.download_media(media_id, 10_000)
    account.standin.fail_next("/cgi-bin/media/get", status=200)  # neither a file nor JSON
    with pytest.raises(WeChatApiError) as unreadable:
        await api.download_media(media_id, 10_000)
    assert (unreadable.value.errcode, unreadable.value.errmsg) == (-1, "media answer is neither a file nor JSON")
    account.standin.fail_next("/cgi-bin/media/get", count=2, errcode=42001, errmsg="access_token expired")
    with pytest.raises(WeChatApiError) as twice:
        await api.download_media(media_id, 10_000)
    assert twice.value.errcode == 42001 and account.standin.token_requests == 3


# --- the custom menu -----------------------------------------------------------------------------


def test_the_menu_has_three_click_buttons_named_in_the_locale() -> None:
    assert menu_definition(Texts(), "en") == {"button": [
        {"type": "click", "name": "Report", "key": "REPORT"},
        {"type": "click", "name": "My case", "key": "STATUS"},
        {"type": "click", "name": "Help", "key": "HELP"},
    ]}
    renamed = Texts({"zh": {"wechat_menu_report": "我要反映"}})
    names = [button["name"] for button in menu_definition(renamed, "zh")["button"]]
    assert names == ["我要反映", "查询进度", "使用说明"]


async def test_the_menu_is_published_in_utf8_as_wechat_shows_it(account: Account) -> None:
    """WeChat shows names sent as \\u escapes escaped: the stand-in records a violation for them."""
    menu = menu_definition(Texts(), "zh")
    answer = await account.process().post("/cgi-bin/menu/create", menu)
    assert answer == {"errcode": 0, "errmsg": "ok"}
    assert account.standin.menus == [menu]
