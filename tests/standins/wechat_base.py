"""The core of the stand-in WeChat platform: lifecycle, clock, users, the callback client, tokens.

The API endpoints build on this in ``wechat_subscriptions`` (订阅通知, 一次性订阅消息) and
``wechat_server`` (customer-service messages, menus, media); ``wechat_server.WeChatStandIn`` is the
class tests use.

Customer-service messages may follow only certain user actions, documented in 客服消息 (service
account guide, "客服消息下发规则"): a user's message opens 5 messages within 48 hours; following the
account, scanning a QR code or clicking a menu button of kind click / scancode_push /
scancode_waitmsg opens 3 messages within 1 minute. Other events (VIEW, subscription pop-ups,
unsubscribe) open nothing. ``interacted`` and every delivered message or event record this.

The stand-in has its own clock (``now()``), which tests move with ``advance(days=…)``; the 48-hour
window, token lifetimes and consents run on it, so no test waits. Signatures and ``CreateTime`` of
callbacks keep the real time, because the service checks a callback's timestamp against its own
clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.standins.wechat_protocol import (
    MAX_TEXT_BYTES,
    SERVICE_UNAVAILABLE,
    FieldValue,
    ReplyProblem,
    build_callback,
    open_reply,
)

log = logging.getLogger("tests.standins.wechat_server")

INTERACTION_EVENTS = frozenset({"subscribe", "SCAN", "CLICK", "scancode_push", "scancode_waitmsg"})
"""Events after which customer-service messages may be sent (3 within a minute)."""

INVALID_CREDENTIAL = {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}


@dataclass
class Received:
    """A message the user sees in WeChat."""

    text: str
    via: str
    """"passive" (reply to the user's message), "custom" (客服消息), "notice" (WeChat's own notice),
    "subscribe_notice" (订阅通知) or "template_subscribe_once" (一次性订阅消息)."""
    at: float = field(default_factory=time.monotonic)
    when: float = 0.0
    """WeChat's clock (``now()``, seconds since the epoch) when the user was shown it"""
    template_id: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    """the notice's keyword values (subscription notices) or {"content": ...} (one-time messages)"""
    title: str | None = None
    link: str | None = None
    place: str = "chat"
    """"chat" (the account's conversation) or "service_notifications" (服务通知, for users who do not
    follow the account: WeChat delivers subscription notices there)."""

    @property
    def kind(self) -> str:
        """"text" for a customer-service message, otherwise ``via``."""
        return "text" if self.via == "custom" else self.via


@dataclass
class Attempt:
    status: int | None
    """HTTP status of our answer; None when WeChat gave up waiting or the connection failed."""
    seconds: float
    body: str = ""


@dataclass
class Delivery:
    """One user message or event as WeChat delivers it, with every attempt."""

    openid: str
    fields: dict[str, FieldValue]
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
class _Fault:
    status: int | None
    errcode: int | None
    errmsg: str
    delay: float = 0.0


class WeChatBase:
    def __init__(self, *, token: str, app_id: str, app_secret: str, encoding_aes_key: str | None = None,
                 account_id: str = "gh_0a1b2c3d4e5f", retry_interval: float = 5.0, retries: int = 3,
                 token_lifetime: int = 7200, token_grace: float = 300.0, window_hours: float = 48.0,
                 quota: bool = True, once_template_id: str = "Xq3d2mP0r7Wk_OnceSubscribeTemplateId0001",
                 business_domains: tuple[str, ...] = (), push_sent_events: bool = True,
                 host: str = "127.0.0.1", port: int = 0) -> None:
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
        self.once_template_id = once_template_id
        """the account's one template for 一次性订阅消息 (fixed per account, shown in its API permissions)"""
        self.business_domains = business_domains
        """the account's business domains (业务域名); when set, authorisation links must redirect there"""
        self.push_sent_events = push_sent_events
        """post ``subscribe_msg_sent_event`` to the callback after each subscription notice, as WeChat does"""
        self.host = host
        self.port = port
        self.callback_url: str | None = None
        self.violations: list[str] = []
        self.api_requests: list[dict[str, Any]] = []
        self.token_requests = 0
        self._clock_offset = 0.0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._tokens: dict[str, _Token] = {}
        self._inbox: dict[str, list[Received]] = {}
        self._interactions: dict[str, dict[str, _Interaction]] = {}
        """openid → kind ("message" or "event") → the window that action opened"""
        self._known: set[str] = set()
        self._unfollowed: set[str] = set()
        self._blocked: dict[str, int] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._setup()
        self.app = Starlette(routes=self._routes())

    def _setup(self) -> None:
        """The state of the API built on top (each layer calls super()._setup())."""

    def _routes(self) -> list[Route]:
        return [Route("/cgi-bin/token", self._token_endpoint, methods=["GET"])]

    # --- the clock ----------------------------------------------------------------------------

    def now(self) -> float:
        """WeChat's time (seconds since the epoch): the real time plus every ``advance``."""
        return time.time() + self._clock_offset

    def advance(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> None:
        """Let time pass for WeChat: interaction windows close, tokens expire."""
        step = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
        if step < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._clock_offset += step
        self._changed()

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
        """Everything the user has been shown, oldest first; each entry says its ``kind``."""
        with self._lock:
            return list(self._inbox.get(openid, []))

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)
        self._changed()

    def _deliver_to_user(self, openid: str, text: str, via: str, **details: Any) -> None:
        with self._lock:
            self._inbox.setdefault(openid, []).append(Received(text, via, when=self.now(), **details))
        self._changed()

    # --- users --------------------------------------------------------------------------------

    def interacted(self, openid: str, kind: str = "message") -> None:
        """Record that the user wrote to the account (kind "message": 5 messages in 48 hours) or followed,
        scanned or clicked ("event": 3 in a minute). Each kind keeps its own window."""
        with self._lock:
            self._known.add(openid)
            self._interactions.setdefault(openid, {})[kind] = _Interaction(self.now(), kind)

    def age_interaction(self, openid: str, hours: float) -> None:
        """Pretend the user's last actions were `hours` earlier (``advance`` moves everybody's time)."""
        with self._lock:
            for interaction in self._interactions.get(openid, {}).values():
                interaction.at -= hours * 3600

    def block(self, openid: str, errcode: int) -> None:
        """Customer-service messages to the user fail with ``errcode`` (whatever the reason)."""
        with self._lock:
            self._blocked[openid] = errcode

    def follows(self, openid: str) -> bool:
        with self._lock:
            return openid not in self._unfollowed

    def user_unfollow(self, openid: str, **options: Any) -> Delivery:
        """The user unfollows (取消关注): WeChat posts the ``unsubscribe`` event to the callback, and
        customer-service messages to the user fail with 43004 (require subscribe) from then on."""
        return self.deliver(self._fields(openid, "event", Event="unsubscribe"), **options)

    def user_follow(self, openid: str, **options: Any) -> Delivery:
        """The user follows (again): the ``subscribe`` event, which opens a 1-minute window."""
        return self.deliver(self._fields(openid, "event", Event="subscribe"), **options)

    def _fields(self, openid: str, msg_type: str, **extra: FieldValue) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {"ToUserName": self.account_id, "FromUserName": openid,
                                         "CreateTime": int(time.time()), "MsgType": msg_type}
        fields.update(extra)
        if msg_type != "event":
            fields["MsgId"] = secrets.randbelow(2**63 - 10**18) + 10**18
        return fields

    # --- faults -------------------------------------------------------------------------------

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

    # --- the callback client ------------------------------------------------------------------

    def deliver(self, fields: dict[str, FieldValue], *, mode: str = "plaintext",
                retry_interval: float | None = None) -> Delivery:
        """Deliver one message or event to the callback like WeChat, in the background."""
        assert self.callback_url, "set callback_url first"
        assert mode in ("plaintext", "safe", "compat")
        openid = str(fields["FromUserName"])
        event = fields.get("Event") if fields.get("MsgType") == "event" else None
        with self._lock:
            if event == "unsubscribe":
                self._unfollowed.add(openid)
            elif event == "subscribe":
                self._unfollowed.discard(openid)
            elif event is None and openid in self._unfollowed:
                raise AssertionError(f"{openid} does not follow the account and cannot write to it")
        if event is None:
            self.interacted(openid, "message")
        elif event in INTERACTION_EVENTS:
            self.interacted(openid, "event")
        else:
            with self._lock:
                self._known.add(openid)
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

    def callback_request(self, fields: Mapping[str, FieldValue], *, mode: str = "plaintext",
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
                except httpx.TransportError:
                    # No answer: WeChat gave up waiting, or the server closed the connection (killed) or refused
                    # it (down). Like WeChat, it tries again once `retry_interval` has passed since this attempt.
                    waited = time.monotonic() - started
                    delivery.attempts.append(Attempt(None, waited))
                    await asyncio.sleep(max(0.0, delivery.retry_interval - waited))
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
        if delivery.fields.get("Event") != "unsubscribe":  # who unfollowed sees nothing of the account
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

    # --- API plumbing ---------------------------------------------------------------------------

    def _record(self, request: Request, payload: Any = None) -> dict[str, Any]:
        entry = {"path": request.url.path, "params": dict(request.query_params), "json": payload,
                 "at": time.monotonic()}
        with self._lock:
            self.api_requests.append(entry)
        self._changed()
        return entry

    async def _json_request(self, request: Request) -> tuple[dict[str, Any], Any]:
        """The recorded request and its JSON body (None when the body is not JSON)."""
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        return self._record(request, payload), payload

    def _fault(self, path: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _token_problem(self, request: Request) -> dict[str, Any] | None:
        token = request.query_params.get("access_token")
        with self._lock:
            info = self._tokens.get(token or "")
            now = self.now()
            if info is None:
                return dict(INVALID_CREDENTIAL)
            if info.expired or now >= info.expires_at:
                return {"errcode": 42001, "errmsg": "access_token expired"}
            if info.retired_at is not None and now >= info.retired_at:
                return dict(INVALID_CREDENTIAL)
        return None

    async def _refusal(self, request: Request) -> Response | None:
        """The answer for a call with a bad token or a planned fault, or None to go on."""
        problem = self._token_problem(request)
        if problem is not None:
            return JSONResponse(problem)
        fault = self._fault(request.url.path)
        return None if fault is None else await self._faulted(fault)

    @staticmethod
    def _error(errcode: int, errmsg: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"errcode": errcode, "errmsg": errmsg, **extra})

    async def _faulted(self, fault: _Fault) -> Response:
        if fault.delay:
            await asyncio.sleep(fault.delay)  # a client with a shorter timeout has given up by now
        if fault.status is not None:
            reasons = {429: "Too Many Requests", 502: "Bad Gateway", 504: "Gateway Timeout"}
            return PlainTextResponse(reasons.get(fault.status, "error"), status_code=fault.status)
        return self._error(fault.errcode if fault.errcode is not None else -1, fault.errmsg)

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
        now = self.now()
        with self._lock:
            for previous in self._tokens.values():
                if previous.retired_at is None:
                    previous.retired_at = now + self.token_grace
            self._tokens[token] = _Token(expires_at=now + self.token_lifetime)
        self._changed()
        return JSONResponse({"access_token": token, "expires_in": self.token_lifetime})
