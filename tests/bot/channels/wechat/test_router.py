"""The HTTP side of the WeChat callback, in-process through httpx's ASGI transport (no server): `GET /wechat`
answers the echostr only when signed with the account's token; `POST /wechat` answers a message with the passive
reply's XML — sealed and signed in safe mode, as the protocol says, checked here by hand — and an event the dialog
ignores with `success`; forged, stale, foreign, undecryptable and oversized callbacks are refused with their status
and reason; `GET /wechat/subscribed` records a one-time consent only for the case's own reporter. Callbacks that get
as far as the database run on SQLite and the PostgreSQL on 127.0.0.1, one migrated database of each for the module
(each test its own residents), as migrating one per test would cost most of the file's run time."""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi import FastAPI
from sqlalchemy import select

from bot.channels.wechat.channel import WeChatChannel
from bot.channels.wechat.messages import parse_xml
from bot.channels.wechat.router import build_router
from bot.config import Settings
from bot.runtime import Runtime
from storage import notices
from storage.models import OutboxMessage
from tests.conftest import city_file
from tests.factories import file_case

TOKEN = "QinglianToken2026"
APP_ID = "wx1234567890abcdef"
KEY = bytes(range(32))
ENCODING_AES_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
ACCOUNT = "gh_7f083739789a"
ONCE_TEMPLATE = "tpl-once-progress-0002"
INVALID_LINK_TEXT = "链接无效 <b>请重试</b> & 返回"
HELP_START = "使用说明："

_nonces = itertools.count(1372623149)


@dataclass
class Callback:
    http: httpx.AsyncClient
    channel: WeChatChannel
    runtime: Runtime


@asynccontextmanager
async def _serving(tmp_path: Path, database_url: str, *, safe: bool) -> AsyncIterator[Callback]:
    """The callback's routes of an account in safe mode (an EncodingAESKey, plaintext refused) or in plaintext
    mode, with a one-time subscription template and the invalid-link text overridden with markup."""
    config = city_file(tmp_path, extra=f"""
[notices.wechat]
once_template_id = "{ONCE_TEMPLATE}"
once_title = "举报办理进度"

[texts.zh]
wechat_subscribe_invalid = "{INVALID_LINK_TEXT}"
""")
    settings = Settings(data_dir=tmp_path, database_url=database_url, config_file=config,
                        secret_key="router-test-secret-" + "k" * 40, public_url="https://qinglian.example",
                        wechat_token=TOKEN, wechat_app_id=APP_ID,
                        wechat_aes_key=ENCODING_AES_KEY if safe else None, wechat_allow_plaintext=False)
    runtime = Runtime.build(settings)
    channel = WeChatChannel(settings, runtime)
    app = FastAPI()
    app.include_router(build_router(channel))
    transport = httpx.ASGITransport(app=app, client=("101.226.103.61", 43000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://qinglian.test") as http:
            yield Callback(http, channel, runtime)
    finally:
        await channel.stop()
        await runtime.close()


# --- the protocol, by hand ----------------------------------------------------------------------


def _sha1_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _query(*, encrypt: str | None = None, timestamp: str | None = None, openid: str = "oQL_any") -> dict[str, str]:
    """The query string WeChat puts on a callback: signed with the token, and in safe mode with msg_signature."""
    stamp = timestamp if timestamp is not None else str(int(time.time()))
    nonce = str(next(_nonces))
    query = {"timestamp": stamp, "nonce": nonce, "signature": _sha1_sorted(TOKEN, stamp, nonce), "openid": openid}
    if encrypt is not None:
        query |= {"encrypt_type": "aes", "msg_signature": _sha1_sorted(TOKEN, stamp, nonce, encrypt)}
    return query


def _message(content: str, msg_id: int, openid: str = "oQL_any") -> str:
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>")


def _event(event: str, openid: str, inner: str = "") -> str:
    return (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event>{inner}</xml>")


def _seal(message: bytes, app_id: bytes = APP_ID.encode(), *, zero_padding: bool = False) -> str:
    """The Encrypt value of `message`: 16 random bytes, the length, the message, the AppID, PKCS#7 to 32 bytes."""
    plain = b"R" * 16 + len(message).to_bytes(4, "big") + message + app_id
    pad = 32 - len(plain) % 32
    plain += bytes(pad) if zero_padding else bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def _unseal(encrypted: str) -> tuple[str, str]:
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    plain = plain[: -plain[-1]]
    length = int.from_bytes(plain[16:20], "big")
    return plain[20:20 + length].decode(), plain[20 + length:].decode()


def _envelope(encrypted: str) -> str:
    return f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"


# --- URL verification ---------------------------------------------------------------------------


async def test_url_verification_answers_the_echostr_as_plain_text_only_when_signed(tmp_path: Path,
                                                                                   never_opened: str) -> None:
    async with _serving(tmp_path, never_opened, safe=True) as callback:
        signed = {**_query(), "echostr": "4681543891376921302"}
        answer = await callback.http.get("/wechat", params=signed)
        assert (answer.status_code, answer.text) == (200, "4681543891376921302")
        assert answer.headers["content-type"].startswith("text/plain")
        refusals = {
            "forged": {**signed, "signature": _sha1_sorted("GuessedToken", signed["timestamp"], signed["nonce"])},
            "no timestamp": {k: v for k, v in signed.items() if k != "timestamp"},
            "full-width digits": {**signed, "timestamp": "１７００００００００"},
            "an hour old": {**_query(timestamp=str(int(time.time()) - 3600)), "echostr": "x"},
        }
        answers = {name: await callback.http.get("/wechat", params=query) for name, query in refusals.items()}
    assert {name: (a.status_code, a.text) for name, a in answers.items()} == {
        "forged": (403, "wrong signature"), "no timestamp": (403, "missing or malformed timestamp"),
        "full-width digits": (403, "missing or malformed timestamp"), "an hour old": (403, "stale timestamp")}


# --- messages answered ---------------------------------------------------------------------------


async def _outbox_of(callback: Callback, openid: str) -> list[str]:
    """The statuses of the outbox rows for `openid`, oldest first."""
    async with callback.runtime.sessionmaker() as session:
        rows = (await session.execute(select(OutboxMessage.recipient, OutboxMessage.status)
                                      .where(OutboxMessage.channel == "wechat").order_by(OutboxMessage.id))).all()
    return [status for recipient, status in rows if recipient == openid]


async def test_a_plaintext_message_is_answered_with_the_passive_reply_and_recorded_as_sent(
        tmp_path: Path, shared_database_url: str) -> None:
    openid = "oQL_r0uter_plain_5d9pX2kT9aYw"
    async with _serving(tmp_path, shared_database_url, safe=False) as callback:
        answer = await callback.http.post("/wechat", params=_query(openid=openid),
                                          content=_message("/help", 6001, openid).encode())
        outbox = await _outbox_of(callback, openid)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/xml"
    reply = parse_xml(answer.content)
    assert (reply["ToUserName"], reply["FromUserName"], reply["MsgType"]) == (openid, ACCOUNT, "text")
    assert reply["Content"].startswith(HELP_START) and reply["Content"].endswith("（回复数字选择）")
    assert reply["CreateTime"].isdigit()
    # the step's reply went out in the HTTP answer: the outbox holds it as sent, not for a worker to send again
    assert outbox == ["sent"]


async def test_a_safe_mode_message_is_answered_sealed_and_signed_as_the_protocol_says(
        tmp_path: Path, shared_database_url: str) -> None:
    openid = "oQL_r0uter_safe_5d9pX2kT9aYw"
    encrypted = _seal(_message("/help", 6002, openid).encode())
    async with _serving(tmp_path, shared_database_url, safe=True) as callback:
        answer = await callback.http.post("/wechat", params=_query(encrypt=encrypted, openid=openid),
                                          content=_envelope(encrypted).encode())
        outbox = await _outbox_of(callback, openid)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/xml"
    assert "使用说明" not in answer.text  # nothing of the reply in the clear
    sealed = parse_xml(answer.content)
    assert set(sealed) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert sealed["TimeStamp"].isdigit() and abs(int(sealed["TimeStamp"]) - time.time()) < 300
    assert sealed["MsgSignature"] == _sha1_sorted(TOKEN, sealed["TimeStamp"], sealed["Nonce"], sealed["Encrypt"])
    reply_xml, app_id = _unseal(sealed["Encrypt"])
    assert app_id == APP_ID
    reply = parse_xml(reply_xml.encode())
    assert (reply["ToUserName"], reply["FromUserName"], reply["MsgType"]) == (openid, ACCOUNT, "text")
    assert reply["Content"].startswith(HELP_START)
    assert outbox == ["sent"]


async def test_events_the_dialog_ignores_are_answered_success_and_a_pop_up_accept_is_recorded(
        tmp_path: Path, shared_database_url: str) -> None:
    openid = "oQL_r0uter_events_5d9pX2kT9a"
    popup = _event("subscribe_msg_popup_event", openid, "<SubscribeMsgPopupEvent><List>"
                   "<TemplateId><![CDATA[tpl-progress]]></TemplateId>"
                   "<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene>"
                   "</List></SubscribeMsgPopupEvent>")
    events = (_event("unsubscribe", openid), _event("VIEW", openid, "<EventKey>https://x.example</EventKey>"), popup)
    async with _serving(tmp_path, shared_database_url, safe=False) as callback:
        answers = [await callback.http.post("/wechat", params=_query(openid=openid), content=body.encode())
                   for body in events]
        async with callback.runtime.sessionmaker() as session:
            consents = await notices.usable_consents(session, channel="wechat", user_ref=openid, case_id=None)
        outbox = await _outbox_of(callback, openid)
    assert [(a.status_code, a.text) for a in answers] == [(200, "success")] * 3
    assert all(a.headers["content-type"].startswith("text/plain") for a in answers)
    assert [(c.kind, c.template_id) for c in consents] == [(notices.SUBSCRIBE, "tpl-progress")]
    assert outbox == []  # nobody is answered


# --- callbacks refused ---------------------------------------------------------------------------


def _safe_refusals() -> dict[str, tuple[dict[str, str], str]]:
    """(query, body) of callbacks a safe-mode account refuses."""
    message = _message("/cancel", 6100)
    good = _seal(message.encode())
    other_app = _seal(message.encode(), b"wx0000000000000000")
    bad_padding = _seal(message.encode(), zero_padding=True)
    not_xml = _seal(b"just some text")
    forged = _query(encrypt=good) | {"msg_signature": _sha1_sorted("GuessedToken", "1", "2", good)}
    return {
        "plaintext": (_query(), message),
        "unknown encrypt_type": (_query(encrypt=good) | {"encrypt_type": "des"}, _envelope(good)),
        "without Encrypt": (_query(encrypt=good), f"<xml><ToUserName>{ACCOUNT}</ToUserName></xml>"),
        "forged msg_signature": (forged, _envelope(good)),
        "plain signature only": ({k: v for k, v in _query(encrypt=good).items() if k != "msg_signature"},
                                 _envelope(good)),
        "another app id": (_query(encrypt=other_app), _envelope(other_app)),
        "undecryptable": (_query(encrypt=bad_padding), _envelope(bad_padding)),
        "not XML inside": (_query(encrypt=not_xml), _envelope(not_xml)),
    }


async def test_a_safe_mode_account_refuses_callbacks_that_are_not_sealed_for_it(tmp_path: Path,
                                                                              never_opened: str) -> None:
    async with _serving(tmp_path, never_opened, safe=True) as callback:
        answers = {name: await callback.http.post("/wechat", params=query, content=body.encode())
                   for name, (query, body) in _safe_refusals().items()}
    assert {name: (a.status_code, a.text.partition(":")[0] if name == "not XML inside" else a.text)
            for name, a in answers.items()} == {
        "plaintext": (403, "plaintext callback refused in safe mode"),
        "unknown encrypt_type": (400, "unknown encrypt_type 'des'"),
        "without Encrypt": (400, "safe-mode message without Encrypt"),
        "forged msg_signature": (403, "wrong msg_signature"),
        "plain signature only": (403, "wrong msg_signature"),
        "another app id": (403, "message for another app id"),
        "undecryptable": (400, "cannot decrypt: bad padding"),
        "not XML inside": (400, "malformed XML"),
    }


async def test_a_plaintext_account_refuses_safe_mode_and_forged_callbacks(tmp_path: Path, never_opened: str) -> None:
    encrypted = _seal(_message("/help", 6200).encode())
    async with _serving(tmp_path, never_opened, safe=False) as callback:
        sealed = await callback.http.post("/wechat", params=_query(encrypt=encrypted),
                                          content=_envelope(encrypted).encode())
        forged = await callback.http.post("/wechat", params=_query() | {"signature": "0" * 40},
                                          content=_message("/help", 6201).encode())
        hostile = await callback.http.post("/wechat", params=_query(),
                                           content=b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                                   b"<xml><Content>&x;</Content></xml>")
    assert (sealed.status_code, sealed.text) == (400, "safe mode is not configured (QINGLIAN_WECHAT_AES_KEY)")
    assert (forged.status_code, forged.text) == (403, "wrong signature")
    assert hostile.status_code == 400 and "DTDs and entity declarations are not accepted" in hostile.text
    assert "root:" not in hostile.text


async def test_a_body_over_64_kib_is_refused_with_413_and_one_of_exactly_64_kib_is_read_whole(
        tmp_path: Path, never_opened: str) -> None:
    at_limit = _message("举" * 10, 6300).encode()
    at_limit += b" " * (64 * 1024 - len(at_limit))
    async with _serving(tmp_path, never_opened, safe=False) as callback:
        over = await callback.http.post("/wechat", params=_query(), content=at_limit + b" ")
        declared = await callback.http.post("/wechat", params=_query(), content=b"<xml/>",
                                            headers={"content-length": "65537"})
        nonsense = await callback.http.post("/wechat", params=_query(), content=b"<xml/>",
                                            headers={"content-length": "6e4"})
        within = await callback.http.post("/wechat", params=_query() | {"signature": "0" * 40}, content=at_limit)
    assert len(at_limit) == 65536
    assert [(a.status_code, a.text) for a in (over, declared, nonsense)] == [(413, "body larger than 65536 bytes")] * 3
    assert (within.status_code, within.text) == (403, "wrong signature")  # read whole, then checked


# --- the one-time subscription page ---------------------------------------------------------------


def _authorisation(callback: Callback, case_id: int, openid: str, **answer: str) -> dict[str, str]:
    """The query WeChat sends `openid` back with, from the link the bot offered for `case_id`."""
    link = callback.channel.notifier.offer_link(case_id)
    assert link is not None
    offered = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    return {"scene": offered["scene"], "template_id": offered["template_id"], "reserved": offered["reserved"],
            "action": "confirm", "openid": openid, **answer}


async def test_a_forged_subscription_link_shows_an_escaped_error_page_that_is_not_cached(tmp_path: Path,
                                                                                       never_opened: str) -> None:
    async with _serving(tmp_path, never_opened, safe=True) as callback:
        link = _authorisation(callback, 41, "oQL_r0uter_forger")
        pages = [await callback.http.get("/wechat/subscribed", params=query) for query in (
            {**link, "reserved": "41xdeadbeefdeadbeefdeadbeef"},
            {**link, "reserved": link["reserved"].replace("41x", "42x")},
            {**link, "template_id": "tpl-someone-elses"},
            {**link, "scene": "forty-one"},
            {},
        )]
    for page in pages:
        assert page.status_code == 400
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<p>链接无效 &lt;b&gt;请重试&lt;/b&gt; &amp; 返回</p>" in page.text
        assert "<b>" not in page.text


async def test_a_one_time_consent_is_recorded_for_the_cases_reporter_only(tmp_path: Path,
                                                                         shared_database_url: str) -> None:
    reporter, stranger = "oQL_r0uter_reporter_5d9pX2k", "oQL_r0uter_stranger_5d9pX2k"

    async def consents(callback: Callback, openid: str, case_id: int) -> list[tuple[str, str, int | None]]:
        async with callback.runtime.sessionmaker() as session:
            found = await notices.usable_consents(session, channel="wechat", user_ref=openid, case_id=case_id)
        return [(consent.kind, consent.template_id, consent.scene) for consent in found]

    async with _serving(tmp_path, shared_database_url, safe=True) as callback:
        async with callback.runtime.sessionmaker.begin() as session:
            case, _ = await file_case(session, channel="wechat", reporter_ref=reporter)
        someone_else = await callback.http.get("/wechat/subscribed",
                                               params=_authorisation(callback, case.id, stranger))
        declined = await callback.http.get("/wechat/subscribed",
                                           params=_authorisation(callback, case.id, reporter, action="reject"))
        before = await consents(callback, reporter, case.id)
        confirmed = await callback.http.get("/wechat/subscribed", params=_authorisation(callback, case.id, reporter))
        after = await consents(callback, reporter, case.id)
        strangers = await consents(callback, stranger, case.id)
    assert someone_else.status_code == 403 and "链接无效" in someone_else.text
    assert declined.status_code == 200 and "您没有订阅" in declined.text
    assert before == []
    assert confirmed.status_code == 200 and "已订阅" in confirmed.text
    assert after == [(notices.ONCE, ONCE_TEMPLATE, case.id % 10_000)]
    assert strangers == []
