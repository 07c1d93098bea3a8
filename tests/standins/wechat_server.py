"""Stand-in WeChat Official Account platform (公众平台) for tests and benchmarks.

It plays WeChat on both sides of an account's server:

* **Callback client.** A simulated user's message or event is built as WeChat's XML, signed with
  the account's token and, in safe mode, encrypted with the EncodingAESKey, then POSTed to the
  callback URL with WeChat's query string (``signature``, ``timestamp``, ``nonce``, ``openid`` and,
  in safe mode, ``encrypt_type=aes`` and ``msg_signature``). WeChat waits ``retry_interval`` seconds
  (5, like WeChat) for an answer; without one it drops the connection and sends the message again,
  at most three more times. A passive reply is checked (signature, decryption, app id, addressing,
  size) and lands in the user's inbox; ``success`` or an empty body means "no reply"; a refused or
  unreadable answer, or four unanswered attempts, show the user WeChat's "service unavailable" notice.
* **API server.** ``/cgi-bin/token``, ``/cgi-bin/media/get``, ``/cgi-bin/message/custom/send`` and
  ``/cgi-bin/menu/create``, each request checked as WeChat checks it: the access token (unknown or
  superseded → 40001, expired → 42001), the JSON shape and ``msgtype``, the text size (45002), the
  48-hour interaction window (45015) and the customer-service quota per interaction (45047: five
  messages in 48 hours after a user's message, three in a minute after an event). Faults on demand:
  ``expire_tokens()``, ``fail_next(path, status=502)`` or ``fail_next(path, errcode=-1)`` (with
  ``delay=seconds``: answered that late, without effect — a timeout for a client that waits less),
  ``age_interaction(openid, hours)``, ``block(openid, errcode)``, slow media downloads.

Requests our server should never send are recorded in ``violations`` (a fixture asserts there are
none). The crypto here is written from WeChat's specification independently of
``bot.channels.wechat``, so the two implementations check each other.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
import socket
import struct
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

SERVICE_UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
MAX_TEXT_BYTES = 2048
MESSAGE_TYPES = frozenset({"text", "image", "voice", "video", "music", "news", "mpnews", "mpnewsarticle",
                           "msgmenu", "wxcard", "miniprogrampage"})
BUTTON_TYPES = frozenset({"click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                          "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id",
                          "article_view_limited", "miniprogram"})


# --- WeChat's crypto, from the specification --------------------------------------------------


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def aes_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def encrypt(encoding_aes_key: str, app_id: str, message: str) -> str:
    key = aes_key(encoding_aes_key)
    body = message.encode()
    plain = secrets.token_bytes(16) + struct.pack("!I", len(body)) + body + app_id.encode()
    padder = padding.PKCS7(256).padder()  # 32-byte blocks, as WeChat pads
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(encoding_aes_key: str, encrypted: str) -> tuple[str, str]:
    """(message, app id); raises ValueError for anything that is not WeChat's format."""
    key = aes_key(encoding_aes_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(encrypted, validate=True)) + decryptor.finalize()
    unpadder = padding.PKCS7(256).unpadder()
    plain = unpadder.update(padded) + unpadder.finalize()
    length = struct.unpack("!I", plain[16:20])[0]
    return plain[20 : 20 + length].decode(), plain[20 + length :].decode()


def message_xml(fields: dict[str, str | int]) -> str:
    parts = []
    for name, value in fields.items():
        inner = str(value) if isinstance(value, int) else f"<![CDATA[{value}]]>"
        parts.append(f"<{name}>{inner}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def build_callback(fields: dict[str, str | int], *, token: str, mode: str = "plaintext",
                   encoding_aes_key: str | None = None, app_id: str | None = None,
                   timestamp: str | None = None, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
    """The query string and body WeChat POSTs for one message (mode: plaintext, safe or compat)."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(secrets.randbelow(10**10))
    params = {"signature": sha1_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
              "openid": str(fields.get("FromUserName", ""))}
    plain = message_xml(fields)
    if mode == "plaintext":
        return params, plain.encode()
    assert encoding_aes_key and app_id, "safe mode needs the EncodingAESKey and the app id"
    encrypted = encrypt(encoding_aes_key, app_id, plain)
    params.update(encrypt_type="aes", msg_signature=sha1_signature(token, timestamp, nonce, encrypted))
    outer = {"ToUserName": fields.get("ToUserName", ""), "Encrypt": encrypted}
    if mode == "compat":
        outer = {**fields, "Encrypt": encrypted}
    return params, message_xml(outer).encode()


class ReplyProblem(ValueError):
    pass


def open_reply(body: str, *, token: str, safe: bool, encoding_aes_key: str | None = None,
               app_id: str | None = None) -> dict[str, str]:
    """The fields of a passive reply, checked as WeChat checks it; ReplyProblem says what is wrong."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as problem:
        raise ReplyProblem(f"reply is not XML: {problem}") from None
    fields = {child.tag: child.text or "" for child in root}
    if safe:
        if "Encrypt" not in fields:
            raise ReplyProblem("plaintext reply to a safe-mode message")
        for name in ("MsgSignature", "TimeStamp", "Nonce"):
            if not fields.get(name):
                raise ReplyProblem(f"encrypted reply without {name}")
        expected = sha1_signature(token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        if fields["MsgSignature"] != expected:
            raise ReplyProblem("reply MsgSignature does not match")
        assert encoding_aes_key is not None
        try:
            inner, reply_app_id = decrypt(encoding_aes_key, fields["Encrypt"])
        except (ValueError, struct.error) as problem:
            raise ReplyProblem(f"reply does not decrypt: {problem}") from None
        if reply_app_id != app_id:
            raise ReplyProblem(f"reply encrypted for app id {reply_app_id!r}")
        return open_reply(inner, token=token, safe=False)
    return fields


# --- records ----------------------------------------------------------------------------------


@dataclass
class Received:
    """A message the user sees: a passive reply, a customer-service message or WeChat's own notice."""

    text: str
    via: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Attempt:
    status: int | None
    """HTTP status of our answer; None when WeChat gave up waiting."""
    seconds: float
    body: str = ""


@dataclass
class Delivery:
    """One user message as WeChat delivers it, with every attempt."""

    openid: str
    fields: dict[str, str | int]
    mode: str
    retry_interval: float
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = "pending"
    """"passive", "success" (no passive reply), "unanswered" (all attempts timed out) or "refused"."""
    reply: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float = 30.0) -> Delivery:
        if not self.finished.wait(timeout):
            raise AssertionError(f"delivery to the callback not finished within {timeout}s: {self.attempts}")
        return self


@dataclass
class _Token:
    expires_at: float
    retired_at: float | None = None
    expired: bool = False


@dataclass
class _Interaction:
    at: float
    kind: str
    used: int = 0


@dataclass
class _Media:
    content: bytes
    content_type: str
    delay: float


@dataclass
class _Fault:
    status: int | None
    errcode: int | None
    errmsg: str
    delay: float = 0.0


class WeChatStandIn:
    def __init__(self, *, token: str, app_id: str, app_secret: str, encoding_aes_key: str | None = None,
                 account_id: str = "gh_0a1b2c3d4e5f", retry_interval: float = 5.0, retries: int = 3,
                 token_lifetime: int = 7200, token_grace: float = 300.0, window_hours: float = 48.0,
                 quota: bool = True, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.app_id = app_id
        self.app_secret = app_secret
        self.encoding_aes_key = encoding_aes_key
        self.account_id = account_id
        self.retry_interval = retry_interval
        self.retries = retries
        self.token_lifetime = token_lifetime
        self.token_grace = token_grace
        self.window_seconds = window_hours * 3600
        self.quota = quota
        self.host = host
        self.port = port
        self.callback_url: str | None = None
        self.violations: list[str] = []
        self.api_requests: list[dict[str, Any]] = []
        self.menus: list[dict[str, Any]] = []
        self.token_requests = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._tokens: dict[str, _Token] = {}
        self._media: dict[str, _Media] = {}
        self._inbox: dict[str, list[Received]] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._blocked: dict[str, int] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(routes=[
            Route("/cgi-bin/token", self._token_endpoint, methods=["GET"]),
            Route("/cgi-bin/media/get", self._media_endpoint, methods=["GET"]),
            Route("/cgi-bin/message/custom/send", self._custom_send, methods=["POST"]),
            Route("/cgi-bin/menu/create", self._menu_create, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=["GET", "POST"]),
        ])

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False,
                                                     lifespan="off", timeout_graceful_shutdown=2))
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(sock, failure), name="wechat-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if failure or not self._thread.is_alive():
                raise RuntimeError(f"the WeChat stand-in failed to start: {failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the WeChat stand-in did not start within 15 s")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
        self._server = None
        self._thread = None

    def __enter__(self) -> WeChatStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:
            failure.append(exc)
            log.exception("WeChat stand-in crashed")
        finally:
            loop.close()
            self._loop = None

    async def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
        try:
            await self._server.serve(sockets=[sock])
        finally:
            await self._client.aclose()

    # --- observing ----------------------------------------------------------------------------

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"{what} not reached within {timeout}s; violations: {self.violations}")

    def inbox(self, openid: str) -> list[Received]:
        with self._lock:
            return list(self._inbox.get(openid, []))

    def custom_messages(self, openid: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r["json"] for r in self.api_requests
                    if r["path"] == "/cgi-bin/message/custom/send" and r.get("accepted")
                    and (openid is None or r["json"].get("touser") == openid)]

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)
        self._changed()

    def _deliver_to_user(self, openid: str, text: str, via: str) -> None:
        with self._lock:
            self._inbox.setdefault(openid, []).append(Received(text, via))
        self._changed()

    # --- faults and fixtures ------------------------------------------------------------------

    def add_media(self, content: bytes, *, content_type: str = "image/jpeg", delay: float = 0.0) -> str:
        media_id = secrets.token_urlsafe(24)
        with self._lock:
            self._media[media_id] = _Media(content, content_type, delay)
        return media_id

    def expire_tokens(self) -> None:
        """Every token issued so far is expired: the next call with one gets 42001."""
        with self._lock:
            for token in self._tokens.values():
                token.expired = True

    def fail_next(self, path: str, *, count: int = 1, status: int | None = None, errcode: int | None = None,
                  errmsg: str = "system error", delay: float = 0.0) -> None:
        """The next `count` valid calls of `path` fail: HTTP `status`, or WeChat's JSON `errcode`
        (default -1, "system error"), answered `delay` seconds late; the call has no effect."""
        if delay < 0:
            raise ValueError("delay must not be negative")
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            queue.extend(_Fault(status, errcode, errmsg, float(delay)) for _ in range(count))

    def age_interaction(self, openid: str, hours: float) -> None:
        """Pretend the user's last message was `hours` earlier."""
        with self._lock:
            interaction = self._interactions.get(openid)
            if interaction is not None:
                interaction.at -= hours * 3600

    def interacted(self, openid: str, kind: str = "message") -> None:
        """Record that the user wrote to the account (kind "message") or clicked / followed ("event")."""
        with self._lock:
            self._interactions[openid] = _Interaction(time.time(), kind)

    def block(self, openid: str, errcode: int) -> None:
        with self._lock:
            self._blocked[openid] = errcode

    # --- users ------------------------------------------------------------------------------

    def _fields(self, openid: str, msg_type: str, **extra: str | int) -> dict[str, str | int]:
        fields: dict[str, str | int] = {"ToUserName": self.account_id, "FromUserName": openid,
                                        "CreateTime": int(time.time()), "MsgType": msg_type}
        fields.update(extra)
        if msg_type != "event":
            fields["MsgId"] = secrets.randbelow(2**63 - 10**18) + 10**18
        return fields

    def send_text(self, openid: str, text: str, **options: Any) -> Delivery:
        return self.deliver(self._fields(openid, "text", Content=text), **options)

    def send_image(self, openid: str, content: bytes, *, delay: float = 0.0, **options: Any) -> Delivery:
        media_id = self.add_media(content, delay=delay)
        return self.deliver(self._fields(openid, "image", PicUrl=f"{self.root_url}/mmbiz_jpg/{media_id}",
                                         MediaId=media_id), **options)

    def send_voice(self, openid: str, **options: Any) -> Delivery:
        media_id = self.add_media(b"#!AMR\n" + bytes(64), content_type="audio/amr")
        return self.deliver(self._fields(openid, "voice", MediaId=media_id, Format="amr"), **options)

    def send_location(self, openid: str, **options: Any) -> Delivery:
        return self.deliver(self._fields(openid, "location", Location_X="28.228", Location_Y="112.939",
                                         Scale=15, Label="长沙市岳麓区"), **options)

    def send_event(self, openid: str, event: str, key: str | None = None, **options: Any) -> Delivery:
        extra: dict[str, str | int] = {"Event": event}
        if key is not None:
            extra["EventKey"] = key
        return self.deliver(self._fields(openid, "event", **extra), **options)

    def deliver(self, fields: dict[str, str | int], *, mode: str = "plaintext",
                retry_interval: float | None = None) -> Delivery:
        """Deliver one message to the callback like WeChat, in the background; returns its record."""
        assert self.callback_url, "set callback_url first"
        assert mode in ("plaintext", "safe", "compat")
        openid = str(fields["FromUserName"])
        kind = "event" if fields.get("MsgType") == "event" else "message"
        if fields.get("Event") != "unsubscribe":
            self.interacted(openid, kind)
        delivery = Delivery(openid, dict(fields), mode, retry_interval or self.retry_interval)
        return self._schedule(delivery)

    def redeliver(self, delivery: Delivery) -> Delivery:
        """The same message (same MsgId, or sender and CreateTime) once more, as WeChat sometimes does."""
        return self._schedule(Delivery(delivery.openid, dict(delivery.fields), delivery.mode,
                                       delivery.retry_interval))

    def _schedule(self, delivery: Delivery) -> Delivery:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._deliver(delivery), self._loop)
        return delivery

    def callback_request(self, fields: dict[str, str | int], *, mode: str = "plaintext",
                         **overrides: Any) -> tuple[dict[str, str], bytes]:
        return build_callback(fields, token=self.token, mode=mode, encoding_aes_key=self.encoding_aes_key,
                              app_id=self.app_id, **overrides)

    async def _deliver(self, delivery: Delivery) -> None:
        assert self._client is not None and self.callback_url is not None
        try:
            for _attempt in range(1 + self.retries):
                params, body = self.callback_request(delivery.fields, mode=delivery.mode)
                started = time.monotonic()
                try:
                    response = await self._client.post(self.callback_url, params=params, content=body,
                                                       headers={"Content-Type": "text/xml"},
                                                       timeout=delivery.retry_interval)
                except httpx.TimeoutException:
                    delivery.attempts.append(Attempt(None, time.monotonic() - started))
                    continue
                delivery.attempts.append(Attempt(response.status_code, time.monotonic() - started, response.text))
                self._answered(delivery, response)
                return
            delivery.outcome = "unanswered"
            self._deliver_to_user(delivery.openid, SERVICE_UNAVAILABLE, "notice")
        except Exception as exc:
            log.exception("delivery failed")
            self._violation(f"delivery of {delivery.fields.get('MsgType')} failed: {exc!r}")
        finally:
            delivery.finished.set()
            self._changed()

    def _answered(self, delivery: Delivery, response: httpx.Response) -> None:
        if response.status_code != 200:
            delivery.outcome = "refused"
            self._deliver_to_user(delivery.openid, SERVICE_UNAVAILABLE, "notice")
            return
        text = response.text
        if text.strip() in ("", "success"):
            delivery.outcome = "success"
            return
        try:
            fields = open_reply(text, token=self.token, safe=delivery.mode != "plaintext",
                                encoding_aes_key=self.encoding_aes_key, app_id=self.app_id)
            self._check_reply(delivery, fields)
        except ReplyProblem as problem:
            self._violation(f"passive reply: {problem}")
            delivery.outcome = "refused"
            self._deliver_to_user(delivery.openid, SERVICE_UNAVAILABLE, "notice")
            return
        delivery.outcome = "passive"
        delivery.reply = fields["Content"]
        self._deliver_to_user(delivery.openid, fields["Content"], "passive")

    def _check_reply(self, delivery: Delivery, fields: dict[str, str]) -> None:
        if fields.get("ToUserName") != delivery.openid:
            raise ReplyProblem(f"reply to {fields.get('ToUserName')!r}, not the sender {delivery.openid!r}")
        if fields.get("FromUserName") != self.account_id:
            raise ReplyProblem(f"reply from {fields.get('FromUserName')!r}, not the account {self.account_id!r}")
        if not fields.get("CreateTime", "").isdigit():
            raise ReplyProblem("reply without a numeric CreateTime")
        if fields.get("MsgType") != "text":
            raise ReplyProblem(f"reply MsgType {fields.get('MsgType')!r} (the channel sends text)")
        content = fields.get("Content") or ""
        if not content.strip():
            raise ReplyProblem("empty reply Content")
        if len(content.encode()) > MAX_TEXT_BYTES:
            raise ReplyProblem(f"reply Content of {len(content.encode())} bytes (limit {MAX_TEXT_BYTES})")

    # --- the API ----------------------------------------------------------------------------

    def _record(self, request: Request, payload: Any = None) -> dict[str, Any]:
        entry = {"path": request.url.path, "params": dict(request.query_params), "json": payload,
                 "at": time.monotonic()}
        with self._lock:
            self.api_requests.append(entry)
        self._changed()
        return entry

    def _fault(self, path: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _token_problem(self, request: Request) -> dict[str, Any] | None:
        token = request.query_params.get("access_token")
        with self._lock:
            info = self._tokens.get(token or "")
            now = time.time()
            if info is None:
                return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
            if info.expired or now >= info.expires_at:
                return {"errcode": 42001, "errmsg": "access_token expired"}
            if info.retired_at is not None and now >= info.retired_at:
                return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        return None

    @staticmethod
    def _error(errcode: int, errmsg: str) -> JSONResponse:
        return JSONResponse({"errcode": errcode, "errmsg": errmsg})

    async def _token_endpoint(self, request: Request) -> Response:
        self._record(request)
        params = request.query_params
        with self._lock:
            self.token_requests += 1
        if params.get("grant_type") != "client_credential":
            return self._error(40002, "invalid grant_type")
        if params.get("appid") != self.app_id:
            return self._error(40013, "invalid appid")
        if params.get("secret") != self.app_secret:
            return self._error(40125, "invalid appsecret")
        fault = self._fault("/cgi-bin/token")
        if fault is not None:
            return await self._faulted(fault)
        token = "T" + secrets.token_urlsafe(96)
        now = time.time()
        with self._lock:
            for previous in self._tokens.values():
                if previous.retired_at is None:
                    previous.retired_at = now + self.token_grace
            self._tokens[token] = _Token(expires_at=now + self.token_lifetime)
        self._changed()
        return JSONResponse({"access_token": token, "expires_in": self.token_lifetime})

    async def _faulted(self, fault: _Fault) -> Response:
        if fault.delay:
            await asyncio.sleep(fault.delay)  # a client with a shorter timeout has given up by now
        if fault.status is not None:
            reasons = {429: "Too Many Requests", 502: "Bad Gateway", 504: "Gateway Timeout"}
            return PlainTextResponse(reasons.get(fault.status, "error"), status_code=fault.status)
        return self._error(fault.errcode if fault.errcode is not None else -1, fault.errmsg)

    async def _media_endpoint(self, request: Request) -> Response:
        self._record(request)
        problem = self._token_problem(request)
        if problem is not None:
            return PlainTextResponse(json.dumps(problem), media_type="text/plain")
        fault = self._fault("/cgi-bin/media/get")
        if fault is not None:
            return await self._faulted(fault)
        with self._lock:
            media = self._media.get(request.query_params.get("media_id", ""))
        if media is None:
            return PlainTextResponse(json.dumps({"errcode": 40007, "errmsg": "invalid media_id"}),
                                     media_type="text/plain")
        if media.delay:
            await asyncio.sleep(media.delay)
        return Response(media.content, media_type=media.content_type,
                        headers={"Content-Disposition": 'attachment; filename="media.jpg"'})

    async def _custom_send(self, request: Request) -> Response:
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        entry = self._record(request, payload)
        problem = self._token_problem(request)
        if problem is not None:
            return JSONResponse(problem)
        fault = self._fault("/cgi-bin/message/custom/send")
        if fault is not None:
            return await self._faulted(fault)
        shape = self._custom_shape_problem(payload)
        if shape is not None:
            self._violation(f"custom/send: {shape}")
            return self._error(47001, f"data format error: {shape}")
        assert isinstance(payload, dict)
        openid = payload["touser"]
        content = payload["text"]["content"]
        if len(content.encode()) > MAX_TEXT_BYTES:
            self._violation(f"custom/send: text of {len(content.encode())} bytes")
            return self._error(45002, "content size out of limit")
        with self._lock:
            if openid in self._blocked:
                return self._error(self._blocked[openid], "blocked by the stand-in")
            interaction = self._interactions.get(openid)
            if interaction is None:
                return self._error(40003, "invalid openid")
            age = time.time() - interaction.at
            limit, window = (5, self.window_seconds) if interaction.kind == "message" else (3, 60.0)
            if age > window:
                return self._error(45015, "response out of time limit or subscription is canceled")
            if self.quota and interaction.used >= limit:
                return self._error(45047, "out of response count limit")
            interaction.used += 1
            entry["accepted"] = True
        self._deliver_to_user(openid, content, "custom")
        return self._error(0, "ok")

    @staticmethod
    def _custom_shape_problem(payload: Any) -> str | None:
        if not isinstance(payload, dict):
            return "body is not a JSON object"
        unknown = set(payload) - {"touser", "msgtype", "customservice"} - MESSAGE_TYPES
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        if not isinstance(payload.get("touser"), str) or not payload["touser"]:
            return "touser missing"
        msgtype = payload.get("msgtype")
        if msgtype not in MESSAGE_TYPES:
            return f"msgtype {msgtype!r} unknown"
        if msgtype != "text":
            return f"msgtype {msgtype!r}: the channel only sends text"
        text = payload.get("text")
        if not isinstance(text, dict) or set(text) != {"content"}:
            return "text must be {\"content\": ...}"
        if not isinstance(text["content"], str) or not text["content"].strip():
            return "text.content must be a non-empty string"
        return None

    async def _menu_create(self, request: Request) -> Response:
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        self._record(request, payload)
        problem = self._token_problem(request)
        if problem is not None:
            return JSONResponse(problem)
        if re.search(rb"\\u[0-9a-fA-F]{4}", raw):
            # reported widely: names sent as \u escapes show up escaped in the menu
            self._violation("menu/create: names sent as \\u escapes, not UTF-8")
        shape = self._menu_problem(payload)
        if shape is not None:
            self._violation(f"menu/create: {shape}")
            return self._error(40016, f"invalid button: {shape}")
        with self._lock:
            self.menus.append(payload)
        self._changed()
        return self._error(0, "ok")

    @staticmethod
    def _menu_problem(payload: Any) -> str | None:
        if not isinstance(payload, dict) or not isinstance(payload.get("button"), list):
            return "no button list"
        buttons = payload["button"]
        if not 1 <= len(buttons) <= 3:
            return f"{len(buttons)} top-level buttons (1 to 3)"
        for button in buttons:
            if not isinstance(button, dict) or not isinstance(button.get("name"), str):
                return "button without a name"
            if len(button["name"].encode()) > 16:
                return f"name {button['name']!r} longer than 16 bytes"
            if "sub_button" in button:
                subs = button["sub_button"]
                if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
                    return "sub_button must list 1 to 5 buttons"
                for sub in subs:
                    problem = WeChatStandIn._leaf_problem(sub, 60)
                    if problem:
                        return problem
            else:
                problem = WeChatStandIn._leaf_problem(button, 16)
                if problem:
                    return problem
        return None

    @staticmethod
    def _leaf_problem(button: Any, name_bytes: int) -> str | None:
        if not isinstance(button, dict) or not isinstance(button.get("name"), str):
            return "button without a name"
        if len(button["name"].encode()) > name_bytes:
            return f"name {button['name']!r} longer than {name_bytes} bytes"
        kind = button.get("type")
        if kind not in BUTTON_TYPES:
            return f"button type {kind!r}"
        if kind == "click" and not (isinstance(button.get("key"), str) and 0 < len(button["key"].encode()) <= 128):
            return "click button needs a key of at most 128 bytes"
        if kind == "view" and not isinstance(button.get("url"), str):
            return "view button needs a url"
        return None

    async def _unknown(self, request: Request) -> Response:
        self._record(request)
        self._violation(f"request to unknown API {request.method} {request.url.path}")
        return PlainTextResponse("not found", status_code=404)


