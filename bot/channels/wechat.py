"""WeChat Official Account (公众号): the server callback at `/wechat` and the customer-service API.

Inbound: WeChat POSTs each message or event as XML signed with the account's token, in plaintext
mode or in safe mode (`encrypt_type=aes`: AES-256-CBC with the EncodingAESKey). Each one becomes an
`Inbound` and one dialog step. WeChat waits 5 seconds for the answer, then drops the connection and
tries again, three times. A step that finishes within `PASSIVE_BUDGET` is answered in the HTTP
response (a passive reply); a slower one is answered `success`, and its replies are written to the
outbox and leave through the customer-service message API. A retry of a message that is still being
processed attaches to the running step (in this process) or finds the message already claimed by its
`MsgId` (in the database), so the dialog runs once and its answer goes out once.

Outbound: staff answers and status notices come from the outbox, which calls `WeChatChannel.send`.
The API access token is kept in the database for every process (each token WeChat issues retires the
previous one after five minutes) and refreshed before it expires and when WeChat calls it invalid.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, NoReturn
from xml.parsers import expat

import httpx
import typer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask

from bot.config import ConfigError, Settings
from bot.outbox import PermanentFailure, TemporaryFailure
from bot.runtime import KeyedLocks, Runtime
from handlers.texts import Texts
from handlers.types import Attachment, Inbound, Outbound
from storage import channel_state, outbox
from storage.models import utcnow

log = logging.getLogger(__name__)

CHANNEL = "wechat"
CALLBACK_PATH = "/wechat"
MAX_BODY_BYTES = 64 * 1024
MAX_CLOCK_SKEW = 300
"""Seconds a callback's timestamp may differ from our clock before it counts as stale (or replayed)."""
PASSIVE_BUDGET = 4.0
"""Seconds from a callback's arrival within which a finished step is answered passively; WeChat
gives up at 5."""
MAX_TEXT_BYTES = 2048
"""The longest text WeChat takes in one message (longer ones fail with 45002)."""
MENU_COMMANDS = {"REPORT": "report", "STATUS": "status", "HELP": "help"}
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
"""Access token invalid, not the latest, or expired: fetch a new one and try once more."""
PERMANENT_ERRORS = frozenset({
    40003,  # invalid openid
    40008,  # invalid message type
    43004,  # the user does not follow the account (any more)
    43019,  # the user is on the account's block list
    45002,  # content too long
    45015,  # out of the 48-hour interaction window
    45047,  # customer-service message quota of this interaction used up
    47001,  # malformed request
    48001,  # the account may not use this API
})
SLOW_ERRORS = {45009: 3600.0, 45011: 60.0}
"""Quota errors that pass with time (daily and per-minute API limits): retry after so many seconds."""


class CallbackRejected(Exception):
    """A callback we do not act on; `status` is the HTTP answer (4xx)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WeChatApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


# --- signatures and safe-mode encryption --------------------------------------------------------


def signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the parts (token, timestamp, nonce[, Encrypt]) sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_matches(given: str | None, *parts: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).lower().encode(), signature(*parts).encode())


class WeChatCrypto:
    """Safe-mode message encryption (WeChat's WXBizMsgCrypt scheme).

    The key is the 43-character EncodingAESKey plus "=" base64-decoded (32 bytes), the IV its first
    16 bytes; the plaintext is 16 random bytes, the message length as 4 bytes in network order, the
    message and the app id, PKCS#7-padded to a multiple of 32 bytes; AES-256-CBC, then base64.
    """

    BLOCK = 32

    def __init__(self, encoding_aes_key: str, app_id: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error:
            raise ConfigError("QINGLIAN_WECHAT_AES_KEY is not a valid EncodingAESKey") from None
        if len(key) != 32:
            raise ConfigError("QINGLIAN_WECHAT_AES_KEY is not a valid EncodingAESKey")
        self._key = key
        self.app_id = app_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, message: str, random_prefix: bytes | None = None) -> str:
        prefix = random_prefix if random_prefix is not None else secrets.token_bytes(16)
        body = message.encode()
        plain = prefix + struct.pack(">I", len(body)) + body + self.app_id.encode()
        pad = self.BLOCK - len(plain) % self.BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> tuple[str, str]:
        """(message, app id) of an `Encrypt` value; `ValueError` if it is not one."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except binascii.Error:
            raise ValueError("Encrypt is not base64") from None
        if not data or len(data) % 16:
            raise ValueError("Encrypt is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= self.BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise ValueError("bad padding")
        content = plain[16:-pad]
        if len(content) < 4:
            raise ValueError("too short")
        (length,) = struct.unpack(">I", content[:4])
        if 4 + length > len(content):
            raise ValueError("length field beyond the message")
        try:
            return content[4 : 4 + length].decode(), content[4 + length :].decode()
        except UnicodeDecodeError:
            raise ValueError("not UTF-8") from None


# --- XML --------------------------------------------------------------------------------------


class _Refused(Exception):
    pass


def _refuse(*_args: object) -> NoReturn:
    raise _Refused("DTDs and entity declarations are not accepted")


def parse_xml(data: bytes, *, max_fields: int = 200) -> dict[str, str]:
    """The fields of a WeChat message `<xml><Name>value</Name>…</xml>`; nested ones as `Outer.Inner`.

    The stdlib expat parser with every DTD refused: a document with `<!DOCTYPE` (where entity
    definitions, and so entity-expansion bombs and external entities, would live) is rejected before
    anything is expanded. WeChat never sends one. This is what defusedxml does, without the package.
    Raises `CallbackRejected(400)` for anything that is not such a message.
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.buffer_text = True
    path: list[str] = []
    texts: list[list[str]] = []
    fields: dict[str, str] = {}

    def start(name: str, _attributes: dict[str, str]) -> None:
        if not path and name != "xml":
            raise _Refused(f"root element <{name}>, not <xml>")
        if len(path) >= 4 or len(fields) >= max_fields:
            raise _Refused("too deep or too many fields")
        path.append(name)
        texts.append([])

    def end(_name: str) -> None:
        text = "".join(texts.pop())
        if len(path) > 1:
            name = ".".join(path[1:])
            fields[name] = text if name == "Content" else text.strip()
        path.pop()

    def characters(text: str) -> None:
        if texts:
            texts[-1].append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(data, True)
    except (_Refused, expat.ExpatError) as problem:
        raise CallbackRejected(400, f"malformed XML: {problem}") from None
    return fields


_XML_FORBIDDEN = {code: None for code in (*range(0, 9), 11, 12, *range(14, 32), 0xFFFE, 0xFFFF)}


def _cdata(text: str) -> str:
    clean = text.translate(_XML_FORBIDDEN)
    return "<![CDATA[" + clean.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply_xml(to_user: str, from_user: str, content: str, create_time: int | None = None) -> str:
    return (f"<xml><ToUserName>{_cdata(to_user)}</ToUserName><FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{_cdata(content)}</Content></xml>")


# --- rendering --------------------------------------------------------------------------------


def _looks_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _choice_number(key: str, position: int) -> int:
    """A choice's number. A rating option answers to its value (the dialog reads a typed digit in
    the rating question as the stars), everything else to its position."""
    if key.startswith("rate:") and key[5:].isdigit():
        return int(key[5:])
    return position


def render_message(message: Outbound, texts: Texts) -> str:
    """A dialog message as WeChat text: its choices as numbered lines and a hint to reply with one.

    The hint's language follows the question's (an `Outbound` carries no locale).
    """
    if not message.choices:
        return message.text
    lines = [message.text]
    lines += [f"{_choice_number(choice.key, position)}. {choice.label}"
              for position, choice in enumerate(message.choices, 1)]
    lines.append(texts.get("zh" if _looks_chinese(message.text) else "en", "wechat_choice_hint"))
    return "\n".join(lines)


def render_replies(messages: list[Outbound], texts: Texts) -> str:
    """One dialog step's messages as one text: WeChat answers a message once and counts every
    customer-service message against a small quota."""
    return "\n\n".join(text for text in (render_message(m, texts) for m in messages) if text)


def _prefix_within(text: str, limit: int) -> int:
    size = 0
    for index, char in enumerate(text):
        size += len(char.encode())
        if size > limit:
            return max(index, 1)
    return len(text)


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut between lines where possible."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode()) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current)
        while len(line.encode()) > limit:
            cut = _prefix_within(line, limit)
            chunks.append(line[:cut])
            line = line[cut:]
        current = line
    if current.strip():
        chunks.append(current)
    return [chunk for chunk in chunks if chunk.strip()]


# --- inbound ----------------------------------------------------------------------------------


def parse_command(text: str) -> tuple[str, str | None] | None:
    """`/status 1234 5678` → ("status", "1234 5678"); None for text without a leading slash."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    head, _, rest = stripped[1:].partition(" ")
    if not head:
        return None
    return head.lower(), rest.strip() or None


Fetcher = Callable[[str], Callable[[], Awaitable[bytes]]]


def to_inbound(fields: Mapping[str, str], fetcher: Fetcher) -> Inbound | None:
    """The channel-neutral form of a WeChat message or event; None for events the dialog ignores."""
    user = fields.get("FromUserName", "")
    msg_type = fields.get("MsgType", "").lower()
    created = fields.get("CreateTime", "")
    if not user or not msg_type or not created.isdigit() or len(user) > 128:
        raise CallbackRejected(400, "not a WeChat message (FromUserName, MsgType, CreateTime)")
    if msg_type == "event":
        event = fields.get("Event", "").lower()
        key = f"{user}:{created}:{event}:{fields.get('EventKey', '')}"[:128]
        if event == "subscribe":
            return Inbound(CHANNEL, user, command="start", update_key=key)
        clicked = MENU_COMMANDS.get(fields.get("EventKey", "")) if event == "click" else None
        if clicked is None:
            return None
        return Inbound(CHANNEL, user, command=clicked, update_key=key)
    msg_id = fields.get("MsgId", "")
    key = msg_id if msg_id.isdigit() else f"{user}:{created}"
    if msg_type == "text":
        text = fields.get("Content", "")
        command = parse_command(text)
        if command is not None:
            return Inbound(CHANNEL, user, command=command[0], command_arg=command[1], update_key=key)
        return Inbound(CHANNEL, user, text=text, update_key=key)
    attachment: Attachment
    if msg_type == "image" and fields.get("MediaId"):
        attachment = Attachment("photo", fetch=fetcher(fields["MediaId"]))
    elif msg_type == "voice":
        attachment = Attachment("voice")
    elif msg_type in ("video", "shortvideo"):
        attachment = Attachment("video")
    elif msg_type == "location":
        attachment = Attachment("location")
    else:
        attachment = Attachment("other")
    return Inbound(CHANNEL, user, attachment=attachment, update_key=key)


# --- the API: access token, customer-service messages, media, menu ------------------------------


class WeChatApi:
    """Calls to `<QINGLIAN_WECHAT_API_URL>/cgi-bin/...` with the access token.

    The token lives in the database (shared by every process); this process keeps a copy until it
    nears expiry or WeChat refuses it. Call it outside any database transaction: reading or storing
    the token takes a transaction of its own.
    """

    REFRESH_MARGIN = timedelta(minutes=5)

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._http = http
        self._base = settings.wechat_api_url
        self._cached: tuple[str, datetime] | None = None
        self._lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._settings.wechat_app_id and self._settings.wechat_app_secret)

    def _usable(self, token: tuple[str, datetime] | None, stale: str | None) -> bool:
        return token is not None and token[0] != stale and token[1] - self.REFRESH_MARGIN > utcnow()

    async def access_token(self, *, stale: str | None = None) -> str:
        """A valid token; `stale` is one WeChat just refused, which is never handed out again."""
        if self._usable(self._cached, stale):
            assert self._cached is not None
            return self._cached[0]
        async with self._lock:
            if self._usable(self._cached, stale):
                assert self._cached is not None
                return self._cached[0]
            app_id = str(self._settings.wechat_app_id)
            async with self._sessionmaker.begin() as session:
                stored = await channel_state.load_wechat_token(session, app_id)
            if stored is not None and self._usable(stored, stale):
                self._cached = stored
                return stored[0]
            token, lifetime = await self._fetch_token()
            expires_at = utcnow() + timedelta(seconds=lifetime)
            async with self._sessionmaker.begin() as session:
                await channel_state.store_wechat_token(session, app_id, token, expires_at)
            self._cached = (token, expires_at)
            log.info("wechat access token refreshed (valid %d s)", lifetime)
            return token

    async def _fetch_token(self) -> tuple[str, int]:
        if not self.configured:
            raise WeChatApiError(41002, "QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET are not set")
        response = await self._http.get(f"{self._base}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self._settings.wechat_app_id,
            "secret": self._settings.wechat_app_secret,
        })
        data = self._json(response)
        token, lifetime = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            raise WeChatApiError(int(data.get("errcode") or -1), str(data.get("errmsg") or "no access_token"))
        return token, lifetime

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(f"WeChat answered HTTP {response.status_code}", request=response.request,
                                        response=response)
        try:
            data = response.json()
        except ValueError:
            raise WeChatApiError(-1, f"HTTP {response.status_code} without JSON") from None
        if not isinstance(data, dict):
            raise WeChatApiError(-1, "answer is not a JSON object")
        return data

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with the token; one retry with a fresh token when WeChat refuses it."""
        content = json.dumps(body, ensure_ascii=False).encode()  # UTF-8: \u escapes are reported to show in menus
        stale: str | None = None
        for attempt in (1, 2):
            token = await self.access_token(stale=stale)
            response = await self._http.post(f"{self._base}{path}", params={"access_token": token}, content=content,
                                             headers={"Content-Type": "application/json; charset=utf-8"})
            data = self._json(response)
            code = int(data.get("errcode") or 0)
            if code == 0:
                return data
            if code in TOKEN_ERRORS and attempt == 1:
                log.info("wechat refused the access token (%s); refreshing", code)
                stale = token
                continue
            raise WeChatApiError(code, str(data.get("errmsg", "")))
        raise AssertionError("unreachable")

    async def send_text(self, openid: str, content: str) -> None:
        await self.post("/cgi-bin/message/custom/send",
                        {"touser": openid, "msgtype": "text", "text": {"content": content}})

    async def download_media(self, media_id: str, limit: int) -> bytes:
        """A temporary media file's bytes, at most `limit` + 1 of them (so the caller sees "too big")."""
        stale: str | None = None
        for attempt in (1, 2):
            token = await self.access_token(stale=stale)
            url = f"{self._base}/cgi-bin/media/get"
            async with self._http.stream("GET", url, params={"access_token": token, "media_id": media_id}) as response:
                if response.status_code >= 400:
                    raise httpx.HTTPStatusError(f"WeChat answered HTTP {response.status_code}",
                                                request=response.request, response=response)
                kind = response.headers.get("content-type", "")
                if "json" in kind or kind.startswith("text/"):
                    try:
                        data = json.loads(await response.aread())
                        code = int(data.get("errcode") or -1)
                    except (ValueError, AttributeError):
                        raise WeChatApiError(-1, "media answer is neither a file nor JSON") from None
                    if code in TOKEN_ERRORS and attempt == 1:
                        stale = token
                        continue
                    raise WeChatApiError(code, str(data.get("errmsg", "")))
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > limit:
                        break
                return bytes(content[: limit + 1])
        raise AssertionError("unreachable")


def menu_definition(texts: Texts, locale: str) -> dict[str, Any]:
    """The account's custom menu: three click buttons whose keys become dialog commands."""
    return {"button": [
        {"type": "click", "name": texts.get(locale, f"wechat_menu_{command}"), "key": key}
        for key, command in MENU_COMMANDS.items()
    ]}


# --- the channel ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Step:
    """One message being processed, shared by the deliveries of it (WeChat's retries) in this process."""

    user_ref: str
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: int = 0
    waiting: set[int] = field(default_factory=set)
    passive_for: int | None = None
    text: str = ""


@dataclass(frozen=True)
class PassiveReply:
    recipient: str
    text: str
    later: str | None = None
    """What did not fit into the one passive message; it follows through the outbox."""


class WeChatChannel:
    def __init__(self, settings: Settings, runtime: Runtime, *, passive_budget: float = PASSIVE_BUDGET) -> None:
        assert settings.wechat_token
        if settings.wechat_aes_key and not settings.wechat_app_id:
            raise ConfigError("QINGLIAN_WECHAT_APP_ID is needed in safe mode (QINGLIAN_WECHAT_AES_KEY is set)")
        self._settings = settings
        self._runtime = runtime
        self._token = settings.wechat_token
        self._crypto = WeChatCrypto(settings.wechat_aes_key, str(settings.wechat_app_id)) \
            if settings.wechat_aes_key else None
        self._texts = runtime.texts
        self._passive_budget = passive_budget
        self._steps: dict[str, _Step] = {}
        self._order = KeyedLocks()
        self._background: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.api: WeChatApi | None = None

    @property
    def safe_mode_available(self) -> bool:
        return self._crypto is not None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0),
                                       limits=httpx.Limits(max_connections=64))
        self.api = WeChatApi(self._settings, self._runtime.sessionmaker, self._http)
        self._runtime.outbox.register(CHANNEL, self.send)
        if not self.api.configured:
            log.warning("wechat: QINGLIAN_WECHAT_APP_ID/APP_SECRET unset: passive replies only, "
                        "slow answers and notices cannot be delivered")
        log.info("wechat channel started (%s)", "safe mode available" if self._crypto else "plaintext mode")

    async def stop(self) -> None:
        if self._background:
            _done, pending = await asyncio.wait(self._background, timeout=10)
            for task in pending:
                task.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- the callback -------------------------------------------------------------------------

    def _check_fresh(self, timestamp: str) -> None:
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise CallbackRejected(403, "missing or malformed timestamp")
        if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW:
            raise CallbackRejected(403, "stale timestamp")

    def verify_url(self, query: Mapping[str, str]) -> str:
        """The GET WeChat sends when the server URL is saved: answer `echostr` if signed with our token."""
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        self._check_fresh(timestamp)
        if not signature_matches(query.get("signature"), self._token, timestamp, nonce):
            raise CallbackRejected(403, "wrong signature")
        return query.get("echostr", "")

    def open(self, query: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bool]:
        """The message's fields and whether it came in safe mode; `CallbackRejected` before anything
        is done with a callback that is stale, forged, for another app or not well-formed."""
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        self._check_fresh(timestamp)
        encrypt_type = query.get("encrypt_type", "raw")
        if encrypt_type == "raw":
            if not signature_matches(query.get("signature"), self._token, timestamp, nonce):
                raise CallbackRejected(403, "wrong signature")
            return parse_xml(body), False
        if encrypt_type != "aes":
            raise CallbackRejected(400, f"unknown encrypt_type {encrypt_type[:20]!r}")
        if self._crypto is None:
            raise CallbackRejected(400, "safe mode is not configured (QINGLIAN_WECHAT_AES_KEY)")
        envelope = parse_xml(body)
        encrypted = envelope.get("Encrypt", "")
        if not encrypted:
            raise CallbackRejected(400, "safe-mode message without Encrypt")
        if not signature_matches(query.get("msg_signature"), self._token, timestamp, nonce, encrypted):
            raise CallbackRejected(403, "wrong msg_signature")
        try:
            message, app_id = self._crypto.decrypt(encrypted)
        except ValueError as problem:
            raise CallbackRejected(400, f"cannot decrypt: {problem}") from None
        if not hmac.compare_digest(app_id.encode(), self._crypto.app_id.encode()):
            raise CallbackRejected(403, "message for another app id")
        return parse_xml(message.encode()), True

    def seal(self, reply_xml: str) -> str:
        """A passive reply in safe mode: encrypted, signed, with a fresh timestamp and nonce."""
        assert self._crypto is not None
        encrypted = self._crypto.encrypt(reply_xml)
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        return (f"<xml><Encrypt>{_cdata(encrypted)}</Encrypt>"
                f"<MsgSignature>{_cdata(signature(self._token, timestamp, nonce, encrypted))}</MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>")

    async def answer(self, inbound: Inbound, deadline: float,
                     disconnected: asyncio.Future[None] | None = None) -> PassiveReply | None:
        """Run the message's dialog step (once, however often WeChat delivers it) and return the
        passive reply if the step finishes before `deadline` (event-loop time) and this delivery is
        the newest one still listening; otherwise None (answer `success`): the replies then go out
        through the outbox."""
        key = inbound.update_key or f"{inbound.user_ref}:{time.time_ns()}"
        step = self._steps.get(key)
        if step is None:
            step = self._steps[key] = _Step(inbound.user_ref)
            self._spawn(self._run(key, step, inbound))
        step.attempts += 1
        attempt = step.attempts
        step.waiting.add(attempt)
        finished = asyncio.ensure_future(step.finished.wait())
        watch: set[asyncio.Future[Any]] = {finished}
        if disconnected is not None:
            watch.add(disconnected)
        try:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait(watch, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._leave(step, attempt, listening=False)
            raise
        finally:
            finished.cancel()
        listening = disconnected is None or not disconnected.done()
        if not self._leave(step, attempt, listening=listening):
            return None
        chunks = split_text(step.text)
        later = "\n".join(chunks[1:]) or None
        return PassiveReply(step.user_ref, chunks[0], later) if chunks else None

    def _leave(self, step: _Step, attempt: int, *, listening: bool) -> bool:
        """A delivery stops waiting; True if it carries the passive reply. A delivery chosen for it
        whose connection is gone hands the reply to the outbox instead."""
        step.waiting.discard(attempt)
        if step.passive_for != attempt:
            return False
        if listening:
            return True
        step.passive_for = None
        self._spawn(self.enqueue_text(step.user_ref, step.text))
        return False

    async def _run(self, key: str, step: _Step, inbound: Inbound) -> None:
        try:
            async with self._order.hold(inbound.user_ref):
                prepared = await self._prefetch(inbound)
                messages = await self._dialog_step(prepared)
                step.text = render_replies(messages or [], self._texts)
                if step.text:
                    if step.waiting:
                        step.passive_for = max(step.waiting)
                    else:
                        await self.enqueue_text(inbound.user_ref, step.text)
        except Exception:
            log.exception("wechat message %s: the reply could not be queued", key)
        finally:
            step.finished.set()
            self._steps.pop(key, None)

    async def _prefetch(self, inbound: Inbound) -> Inbound:
        """Download an image before the dialog step, not inside it: the step's transaction must not
        wait on WeChat's media server (on SQLite it would hold the one write lock meanwhile, and the
        access token's own transaction would wait behind it)."""
        attachment = inbound.attachment
        if attachment is None or attachment.fetch is None:
            return inbound
        content: bytes | None = None
        try:
            content = await attachment.fetch()
        except (httpx.HTTPError, WeChatApiError, RuntimeError) as problem:
            log.warning("wechat media of message %s not downloaded: %s", inbound.update_key, problem)

        async def downloaded() -> bytes:
            if content is None:
                raise RuntimeError("the media download failed")
            return content

        size = None if content is None else len(content)
        return replace(inbound, attachment=replace(attachment, fetch=downloaded, size_bytes=size))

    async def _dialog_step(self, inbound: Inbound) -> list[Outbound] | None:
        try:
            return await self._runtime.handle(inbound, via_outbox=False)
        except IntegrityError as problem:
            if "processed_updates" in str(problem):
                log.info("wechat message %s claimed by a concurrent delivery", inbound.update_key)
                return None
            log.exception("wechat message %s could not be handled", inbound.update_key)
        except Exception:
            log.exception("wechat message %s could not be handled", inbound.update_key)
        return [Outbound(self._texts.get(self._settings.city.default_locale, "wechat_busy"))]

    async def enqueue_text(self, recipient: str, text: str) -> None:
        """A reply that missed the passive window: to the outbox, for the customer-service API."""
        async with self._runtime.sessionmaker.begin() as session:
            await outbox.enqueue(session, channel=CHANNEL, recipient=recipient,
                                          payload=Outbound(text).to_payload())
        self._runtime.outbox.wake()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _fetcher(self, media_id: str) -> Callable[[], Awaitable[bytes]]:
        async def fetch() -> bytes:
            if self.api is None:
                raise RuntimeError("the WeChat channel is not started")
            return await self.api.download_media(media_id, self._settings.city.limits.max_attachment_bytes)

        return fetch

    async def handle_callback(
        self, query: Mapping[str, str], body: bytes, received_at: float,
        disconnected: asyncio.Future[None] | None = None,
    ) -> tuple[str | None, PassiveReply | None]:
        """(reply XML or None for `success`, the passive reply) for one verified callback."""
        fields, safe = self.open(query, body)
        inbound = to_inbound(fields, self._fetcher)
        if inbound is None:
            return None, None
        reply = await self.answer(inbound, received_at + self._passive_budget, disconnected)
        if reply is None:
            return None, None
        xml = text_reply_xml(inbound.user_ref, fields.get("ToUserName", ""), reply.text)
        return (self.seal(xml) if safe else xml), reply

    # --- outbound -----------------------------------------------------------------------------

    async def send(self, recipient: str, message: Outbound) -> None:
        """Outbox sender: a message as customer-service text message(s), failures classified."""
        if self.api is None:
            raise TemporaryFailure("the WeChat channel is not started")
        if not self.api.configured:
            raise PermanentFailure("QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET are not set")
        for chunk in split_text(render_message(message, self._texts)):
            try:
                await self.api.send_text(recipient, chunk)
            except WeChatApiError as problem:
                reason = f"WeChat errcode {problem.errcode}: {problem.errmsg}"[:400]
                if problem.errcode in PERMANENT_ERRORS:
                    raise PermanentFailure(reason) from problem
                if problem.errcode in TOKEN_ERRORS or problem.errcode in (40013, 40125, 40164, 41002):
                    log.error("wechat credentials refused: %s", reason)
                raise TemporaryFailure(reason, SLOW_ERRORS.get(problem.errcode)) from problem
            except httpx.HTTPStatusError as problem:
                raise TemporaryFailure(f"WeChat answered HTTP {problem.response.status_code}") from problem
            except httpx.HTTPError as problem:
                raise TemporaryFailure(f"network: {type(problem).__name__}") from problem


# --- HTTP -------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise CallbackRejected(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise CallbackRejected(413, f"body larger than {limit} bytes")
    return bytes(body)


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def build_router(channel: WeChatChannel) -> APIRouter:
    router = APIRouter()

    def rejected(problem: CallbackRejected, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        log.warning("wechat callback from %s refused: %s", client, problem.reason)
        return PlainTextResponse(problem.reason, status_code=problem.status)

    @router.get(CALLBACK_PATH, include_in_schema=False)
    async def verify(request: Request) -> Response:
        try:
            return PlainTextResponse(channel.verify_url(request.query_params))
        except CallbackRejected as problem:
            return rejected(problem, request)

    @router.post(CALLBACK_PATH, include_in_schema=False)
    async def callback(request: Request) -> Response:
        received_at = asyncio.get_running_loop().time()
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
            disconnected = asyncio.ensure_future(_until_disconnected(request))
            try:
                xml, reply = await channel.handle_callback(request.query_params, body, received_at, disconnected)
            finally:
                disconnected.cancel()
        except CallbackRejected as problem:
            return rejected(problem, request)
        if xml is None or reply is None:
            return PlainTextResponse("success")
        later = BackgroundTask(channel.enqueue_text, reply.recipient, reply.later) if reply.later else None
        return Response(xml, media_type="application/xml", background=later)

    return router


# --- `qinglian wechat ...` ----------------------------------------------------------------------

wechat_app = typer.Typer(help="WeChat Official Account.", no_args_is_help=True)


async def publish_menu(settings: Settings, definition: dict[str, Any]) -> None:
    from storage.db import create_engine, create_sessionmaker

    engine = create_engine(settings.resolved_database_url, settings.resolved_keyring())
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            api = WeChatApi(settings, create_sessionmaker(engine), http)
            await api.post("/cgi-bin/menu/create", definition)
    finally:
        await engine.dispose()


@wechat_app.command("menu")
def menu_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the menu instead of publishing it.")] = False,
    locale: Annotated[str | None, typer.Option(help="Language of the button names (zh or en).")] = None,
) -> None:
    """Publish the account's custom menu: report, check a case, help."""
    from bot.config import load_settings
    from storage.migrate import upgrade

    try:
        settings = load_settings()
    except ConfigError as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None
    language = locale or settings.city.default_locale
    if language not in ("zh", "en"):
        typer.echo("qinglian: --locale must be zh or en", err=True)
        raise typer.Exit(2)
    definition = menu_definition(Texts(settings.city.texts), language)
    if dry_run:
        typer.echo(json.dumps(definition, ensure_ascii=False, indent=2))
        return
    if not (settings.wechat_app_id and settings.wechat_app_secret):
        typer.echo("qinglian: set QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET to publish the menu", err=True)
        raise typer.Exit(2)
    try:
        # the shared access token lives in the database
        upgrade(settings.resolved_database_url, settings.resolved_keyring())
        asyncio.run(publish_menu(settings, definition))
    except WeChatApiError as problem:
        typer.echo(f"qinglian: WeChat refused the menu: {problem}", err=True)
        raise typer.Exit(1) from None
    except httpx.HTTPError as problem:
        typer.echo(f"qinglian: WeChat API at {settings.wechat_api_url} not reachable: {problem}", err=True)
        raise typer.Exit(1) from None
    names = " / ".join(button["name"] for button in definition["button"])
    typer.echo(f"menu published: {names}")
