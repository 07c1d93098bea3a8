"""Stand-in WeChat Official Account platform (公众平台) for tests and benchmarks.

It plays WeChat on both sides of an account's server:

* **Callback client.** A simulated user's message or event is built as WeChat's XML, signed with
  the account's token and, in safe mode, encrypted with the EncodingAESKey, then POSTed to the
  callback URL with WeChat's query string (``signature``, ``timestamp``, ``nonce``, ``openid`` and,
  in safe mode, ``encrypt_type=aes`` and ``msg_signature``). WeChat waits ``retry_interval`` seconds
  (5, like WeChat) for an answer; without one (or when the connection is refused or closed before
  an answer, as by a killed server) it sends the message again that long after the attempt began,
  at most three more times. A passive reply is checked (signature, decryption, app id, addressing,
  size) and lands in the user's inbox; ``success`` or an empty body means "no reply"; a refused or
  unreadable answer, or four unanswered attempts, show the user WeChat's "service unavailable" notice.
  Users follow (``user_follow``) and unfollow (``user_unfollow``) with the ``subscribe`` /
  ``unsubscribe`` events.
* **API server.** ``/cgi-bin/token``, ``/cgi-bin/media/get``, ``/cgi-bin/message/custom/send`` and
  ``/cgi-bin/menu/create``, each request checked as WeChat checks it: the access token (unknown or
  superseded → 40001, expired → 42001), the JSON shape and ``msgtype``, the text size (45002), the
  user still following (43004 require subscribe), the 48-hour interaction window (45015) and the
  customer-service quota per interaction (45047: five messages in 48 hours after a user's message,
  three in a minute after following, a menu click or a QR scan). Faults on demand:
  ``expire_tokens()``, ``fail_next(path, status=502)`` or ``fail_next(path, errcode=-1)`` (with
  ``delay=seconds``: answered that late, without effect — a timeout for a client that waits less),
  ``age_interaction(openid, hours)``, ``block(openid, errcode)``, slow media downloads.
* **Notices outside the window** (``wechat_subscriptions``): subscription notices (订阅通知,
  ``/cgi-bin/message/subscribe/bizsend``, templates with WeChat's keyword rules, consent by pop-up
  events) and one-time subscription messages (一次性订阅消息, ``/cgi-bin/message/template/subscribe``,
  consent through the ``/mp/subscribemsg`` authorisation page).
* **A clock** (``now()``, ``advance(days=…)``) for the 48-hour window, token lifetimes and consents.

Requests our server should never send are recorded in ``violations`` (a fixture asserts there are
none). The crypto (``wechat_protocol``) is written from WeChat's specification independently of
``bot.channels.wechat``, so the two implementations check each other.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.standins.wechat_base import INTERACTION_EVENTS, Attempt, Delivery, Received
from tests.standins.wechat_protocol import (
    MAX_TEXT_BYTES,
    SERVICE_UNAVAILABLE,
    ReplyProblem,
    build_callback,
    decrypt,
    encrypt,
    message_xml,
    open_reply,
    sha1_signature,
)
from tests.standins.wechat_subscriptions import OnceAuthorisation, WeChatSubscriptions
from tests.standins.wechat_templates import SubscribeTemplate

__all__ = [
    "INTERACTION_EVENTS",
    "MAX_TEXT_BYTES",
    "SERVICE_UNAVAILABLE",
    "Attempt",
    "Delivery",
    "OnceAuthorisation",
    "Received",
    "ReplyProblem",
    "SubscribeTemplate",
    "WeChatStandIn",
    "build_callback",
    "decrypt",
    "encrypt",
    "message_xml",
    "open_reply",
    "sha1_signature",
]

MESSAGE_TYPES = frozenset({"text", "image", "voice", "video", "music", "news", "mpnews", "mpnewsarticle",
                           "msgmenu", "wxcard", "miniprogrampage"})
BUTTON_TYPES = frozenset({"click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                          "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id",
                          "article_view_limited", "miniprogram"})


@dataclass
class _Media:
    content: bytes
    content_type: str
    delay: float


class WeChatStandIn(WeChatSubscriptions):
    def _setup(self) -> None:
        super()._setup()
        self.menus: list[dict[str, Any]] = []
        self._media: dict[str, _Media] = {}

    def _routes(self) -> list[Route]:
        return [*super()._routes(),
                Route("/cgi-bin/media/get", self._media_endpoint, methods=["GET"]),
                Route("/cgi-bin/message/custom/send", self._custom_send, methods=["POST"]),
                Route("/cgi-bin/menu/create", self._menu_create, methods=["POST"]),
                Route("/{path:path}", self._unknown, methods=["GET", "POST"])]

    def __enter__(self) -> WeChatStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- inspection and fixtures --------------------------------------------------------------

    def custom_messages(self, openid: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r["json"] for r in self.api_requests
                    if r["path"] == "/cgi-bin/message/custom/send" and r.get("accepted")
                    and (openid is None or r["json"].get("touser") == openid)]

    def add_media(self, content: bytes, *, content_type: str = "image/jpeg", delay: float = 0.0) -> str:
        media_id = secrets.token_urlsafe(24)
        with self._lock:
            self._media[media_id] = _Media(content, content_type, delay)
        return media_id

    # --- users ------------------------------------------------------------------------------

    def send_text(self, openid: str, text: str, **options: Any) -> Delivery:
        return self.deliver(self._fields(openid, "text", Content=text), **options)

    def send_image(self, openid: str, content: bytes, *, delay: float = 0.0, **options: Any) -> Delivery:
        media_id = self.add_media(content, delay=delay)
        return self.deliver(self._fields(openid, "image", PicUrl=f"{self.root_url}/mmbiz_jpg/{media_id}",
                                         MediaId=media_id), **options)

    def send_voice(self, openid: str, recognition: str | None = None, **options: Any) -> Delivery:
        """A voice message; `recognition` is what WeChat heard in it, sent to accounts with 接收语音识别结果 on."""
        media_id = self.add_media(b"#!AMR\n" + bytes(64), content_type="audio/amr")
        extra = {} if recognition is None else {"Recognition": recognition}
        return self.deliver(self._fields(openid, "voice", MediaId=media_id, Format="amr", **extra), **options)

    def send_location(self, openid: str, **options: Any) -> Delivery:
        return self.deliver(self._fields(openid, "location", Location_X="28.228", Location_Y="112.939",
                                         Scale=15, Label="长沙市岳麓区"), **options)

    def send_event(self, openid: str, event: str, key: str | None = None, **options: Any) -> Delivery:
        extra: dict[str, str | int] = {"Event": event}
        if key is not None:
            extra["EventKey"] = key
        return self.deliver(self._fields(openid, "event", **extra), **options)

    # --- the API ----------------------------------------------------------------------------

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
        entry, payload = await self._json_request(request)
        refusal = await self._refusal(request)
        if refusal is not None:
            return refusal
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
            if openid in self._unfollowed:
                return self._error(43004, "require subscribe")
            windows = self._interactions.get(openid, {})
            if not windows:  # known from an event that opens no window (VIEW, a pop-up): too late
                return self._error(45015 if openid in self._known else 40003,
                                   "response out of time limit or subscription is canceled"
                                   if openid in self._known else "invalid openid")
            now = self.now()
            open_windows = [w for kind, w in sorted(windows.items())  # "event" (1 minute) before "message"
                            if now - w.at <= (self.window_seconds if kind == "message" else 60.0)]
            if not open_windows:
                return self._error(45015, "response out of time limit or subscription is canceled")
            usable = [w for w in open_windows if not self.quota or w.used < (5 if w.kind == "message" else 3)]
            if not usable:
                return self._error(45047, "out of response count limit")
            interaction = usable[0]
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


