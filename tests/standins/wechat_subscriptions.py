"""Notices outside the 48-hour window: subscription notices (订阅通知) and one-time subscription
messages (一次性订阅消息) of the stand-in WeChat account, with the user's consent to each.

Subscription notices, from WeChat's service-account documentation (订阅通知介绍, 订阅通知的事件推送,
发送订阅通知 ``sendNewSubscribeMsg``, 获取已有模板列表 ``getwxapubnewtemplate``):

* The account selects templates from the public library; each has an id, a title and keywords
  (``add_subscribe_template``; ``GET /wxaapi/newtmpl/gettemplate`` lists them with ``type`` 2 for
  one-time and 3 for long-term subscription).
* A user subscribes in a pop-up (in an article or a web page); WeChat posts
  ``subscribe_msg_popup_event`` with one ``List`` (``TemplateId``, ``SubscribeStatusString`` accept /
  reject, ``PopupScene`` 1 = web page, 2 = article) per template (``user_subscribe``). In the service
  notifications' settings the user can refuse later; WeChat posts ``subscribe_msg_change_event``
  with ``reject`` only (``user_manage_subscriptions``). The documentation's example wraps that list in
  ``SubscribeMsgPopupEvent``, which the developer community reported as a copy error; the stand-in
  sends ``SubscribeMsgChangeEvent`` — read ``List`` under either.
* One-time subscription: "用户订阅一次，认证服务号可不限时间地下发一条对应的订阅通知" — one accept, one
  notice, with no time limit; accepts add up (one notice each). Long-term subscription (政务民生 and
  other public services): one accept, any number of notices, until the user refuses. Any reject (in
  the pop-up or later) withdraws the template's consent, what is left of it included — the strict
  reading.
* ``POST /cgi-bin/message/subscribe/bizsend`` ``{"touser", "template_id", "page"?, "miniprogram"?,
  "miniprogram_state"?, "lang"?, "data": {keyword: {"value": ...}}}``: 40037 unknown template, 40003
  unknown user, 47003 a keyword missing, unknown or breaking its kind's rule (``wechat_templates``),
  43101 no consent ("用户拒绝接受消息，如果用户之前曾经订阅过，则表示用户取消了订阅关系"). Delivered into the
  account's chat for followers, into Service Notifications (服务通知) for others; WeChat then posts
  ``subscribe_msg_sent_event`` (``MsgID``, ``ErrorCode`` 0, ``ErrorStatus`` success) to the callback.

One-time subscription messages (一次性订阅消息, ``templateSubscribe``):

* The service links the user to ``https://mp.weixin.qq.com/mp/subscribemsg?action=get_confirm&appid=
  &scene=&template_id=&redirect_url=&reserved=#wechat_redirect`` — scene an integer 0–10000,
  redirect_url URL-encoded on the account's business domain, reserved ``[a-zA-Z0-9]`` up to 128 bytes,
  ``#wechat_redirect`` required. The stand-in serves that page at the same path
  (``user_authorise_once`` opens it like the user's WeChat would). On accept or cancel WeChat
  redirects to ``redirect_url?openid=&template_id=&action=confirm|cancel&scene=&reserved=`` (openid
  only on confirm).
* Each authorisation allows one message; several authorisations in the same scene do not add up
  ("同一用户在同一scene场景值下的多次授权不累积下发权限，只能下发一条").
* ``POST /cgi-bin/message/template/subscribe`` ``{"touser", "template_id", "url"?, "miniprogram"?,
  "scene", "title" (15 characters at most), "data": {"content": {"value" (200 at most), "color"?}}}``:
  a second message for one authorisation gets 43101.

A request the service should never make — malformed JSON (47001), a template the account does not
have (40037), values breaking the rules (47003), a bad authorisation link — is recorded in
``violations``; the platform's answers about the user's state (43101, 40003) are not.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.standins.wechat_base import Delivery, WeChatBase
from tests.standins.wechat_protocol import FieldValue
from tests.standins.wechat_templates import SubscribeTemplate, kind_of

BIZSEND_FIELDS = frozenset({"touser", "template_id", "page", "miniprogram", "miniprogram_state", "lang", "data"})
ONCE_FIELDS = frozenset({"touser", "template_id", "url", "miniprogram", "scene", "title", "data"})
LINK_PARAMETERS = frozenset({"action", "appid", "scene", "template_id", "redirect_url", "reserved"})
REFUSED = "user refuse to accept the msg"


@dataclass
class _NoticeConsent:
    long_term: bool
    remaining: int
    """one-time templates: notices left (each accept adds one); long-term: unused"""
    accepted_at: float


@dataclass
class OnceAuthorisation:
    """What happened when the user opened a one-time subscription link."""

    page: httpx.Response
    """WeChat's authorisation page"""
    problem: str | None
    """why WeChat refused the link (the user saw an error page and nothing else happened)"""
    redirect: str | None = None
    """where WeChat sent the user after the click"""
    response: httpx.Response | None = None
    """the service's answer there"""


def _shape_problem(payload: Any, allowed: frozenset[str], required: dict[str, type | tuple[type, ...]]) -> str | None:
    if not isinstance(payload, dict):
        return "body is not a JSON object"
    unknown = set(payload) - allowed
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    for name, kind in required.items():
        if not isinstance(payload.get(name), kind) or payload[name] in ("", {}):
            return f"{name} missing or not a {kind}"
    miniprogram = payload.get("miniprogram")
    if miniprogram is not None and (not isinstance(miniprogram, dict) or set(miniprogram) != {"appid", "pagepath"}):
        return "miniprogram must be {\"appid\", \"pagepath\"}"
    return None


class WeChatSubscriptions(WeChatBase):
    def _setup(self) -> None:
        super()._setup()
        self._templates: dict[str, SubscribeTemplate] = {}
        self._notice_consents: dict[tuple[str, str], _NoticeConsent] = {}
        self._once_consents: dict[tuple[str, str, int], float] = {}
        self._msgids = itertools.count(3_000_000_000_000_000_001)
        self.event_deliveries: list[Delivery] = []
        """``subscribe_msg_sent_event`` posts to the callback"""

    def _routes(self) -> list[Route]:
        return [*super()._routes(),
                Route("/cgi-bin/message/subscribe/bizsend", self._bizsend, methods=["POST"]),
                Route("/cgi-bin/message/template/subscribe", self._template_subscribe, methods=["POST"]),
                Route("/wxaapi/newtmpl/gettemplate", self._get_templates, methods=["GET"]),
                Route("/mp/subscribemsg", self._authorisation_page, methods=["GET"])]

    # --- configuration and inspection -----------------------------------------------------------

    def add_subscribe_template(self, template_id: str, fields: dict[str, str], *, title: str = "办理进度通知",
                               long_term: bool = False, labels: dict[str, str] | None = None) -> None:
        """The account selects a template: keyword name → kind (``{"thing1": "thing", "time2": "time"}``)."""
        for name, kind in fields.items():
            if kind_of(name) != kind:
                raise ValueError(f"keyword {name!r} is of kind {kind_of(name)!r}, not {kind!r}")
        if not 2 <= len(fields) <= 5:
            raise ValueError("a template combines 2 to 5 keywords (addtemplate kidList)")
        with self._lock:
            self._templates[template_id] = SubscribeTemplate(template_id, title, dict(fields), dict(labels or {}),
                                                             long_term)

    def consents(self, openid: str) -> list[dict[str, Any]]:
        """The user's consents that allow a notice now: subscription notices (``remaining`` None for a
        long-term template) and unused one-time authorisations (``scene``)."""
        with self._lock:
            notices = [{"kind": "subscribe_notice", "template_id": template_id, "long_term": consent.long_term,
                        "remaining": None if consent.long_term else consent.remaining,
                        "accepted_at": consent.accepted_at}
                       for (user, template_id), consent in self._notice_consents.items() if user == openid]
            once = [{"kind": "template_subscribe_once", "template_id": template_id, "scene": scene,
                     "accepted_at": accepted_at}
                    for (user, template_id, scene), accepted_at in self._once_consents.items() if user == openid]
        return notices + once

    # --- the user --------------------------------------------------------------------------------

    def user_subscribe(self, openid: str, accept: list[str] | tuple[str, ...] = (),
                       reject: list[str] | tuple[str, ...] = (), *, popup_scene: int = 1,
                       **options: Any) -> Delivery:
        """The user answers the subscription pop-up (``popup_scene`` 1: in a web page, 2: in an
        article); WeChat posts ``subscribe_msg_popup_event`` to the callback."""
        items: list[dict[str, str | int]] = []
        with self._lock:
            for template_id, status in [*((t, "accept") for t in accept), *((t, "reject") for t in reject)]:
                template = self._templates.get(template_id)
                assert template is not None, f"the account has no subscription template {template_id!r}"
                key = (openid, template_id)
                if status == "reject":
                    self._notice_consents.pop(key, None)
                elif key in self._notice_consents:
                    self._notice_consents[key].remaining += 1
                else:
                    self._notice_consents[key] = _NoticeConsent(template.long_term, 1, self.now())
                items.append({"TemplateId": template_id, "SubscribeStatusString": status, "PopupScene": popup_scene})
        fields = self._fields(openid, "event", Event="subscribe_msg_popup_event", SubscribeMsgPopupEvent=items)
        return self.deliver(fields, **options)

    def user_manage_subscriptions(self, openid: str, reject: list[str] | tuple[str, ...], **options: Any) -> Delivery:
        """The user refuses notices in the service notifications' settings: ``subscribe_msg_change_event``."""
        items: list[dict[str, str | int]] = []
        with self._lock:
            for template_id in reject:
                self._notice_consents.pop((openid, template_id), None)
                items.append({"TemplateId": template_id, "SubscribeStatusString": "reject"})
        fields = self._fields(openid, "event", Event="subscribe_msg_change_event", SubscribeMsgChangeEvent=items)
        return self.deliver(fields, **options)

    def user_authorise_once(self, openid: str, link: str, *, accept: bool = True,
                            timeout: float = 15.0) -> OnceAuthorisation:
        """The user opens the service's one-time subscription link in WeChat and taps 同意 (or 取消);
        WeChat then sends the user's browser to the link's redirect_url. Blocking: call it from a thread
        when the service runs on the test's event loop."""
        parts = urlsplit(link)
        host_ok = (parts.scheme, parts.netloc) == ("https", "mp.weixin.qq.com") or link.startswith(self.root_url)
        shape = None
        if not host_ok or parts.path != "/mp/subscribemsg":
            shape = f"not a WeChat authorisation page: {link}"
        elif parts.fragment != "wechat_redirect":
            shape = "the link lacks #wechat_redirect (required)"
        if shape is not None:
            self._violation(f"subscribemsg link: {shape}")
        page = httpx.get(f"{self.root_url}/mp/subscribemsg?{parts.query}", timeout=timeout)
        problem = shape or page.headers.get("x-standin-problem")
        if problem is not None:
            return OnceAuthorisation(page, problem)
        params = {name: values[0] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        scene, template_id = int(params["scene"]), params["template_id"]
        answer = {"openid": openid} if accept else {}
        answer.update(template_id=template_id, action="confirm" if accept else "cancel", scene=str(scene))
        if "reserved" in params:
            answer["reserved"] = params["reserved"]
        if accept:
            with self._lock:
                self._known.add(openid)
                self._once_consents[(openid, template_id, scene)] = self.now()
            self._changed()
        redirect_url = params["redirect_url"]
        target = redirect_url + ("&" if urlsplit(redirect_url).query else "?") + urlencode(answer)
        response = httpx.get(target, follow_redirects=True, timeout=timeout)
        return OnceAuthorisation(page, None, target, response)

    def _place(self, openid: str) -> str:
        return "chat" if self.follows(openid) else "service_notifications"

    # --- the authorisation page ------------------------------------------------------------------

    def _link_problem(self, params: dict[str, list[str]]) -> str | None:
        unknown = set(params) - LINK_PARAMETERS
        if unknown:
            return f"unknown parameters {sorted(unknown)} (is redirect_url URL-encoded?)"
        if any(len(values) != 1 for values in params.values()):
            return "a parameter given twice"
        value = {name: values[0] for name, values in params.items()}
        scene = value.get("scene", "")
        redirect = urlsplit(value.get("redirect_url", ""))
        if value.get("action") != "get_confirm":
            return "action must be get_confirm"
        if value.get("appid") != self.app_id:
            return f"appid {value.get('appid')!r} is not the account's"
        if not (scene.isascii() and scene.isdigit() and int(scene) <= 10000):
            return f"scene {scene!r} is not an integer from 0 to 10000"
        if value.get("template_id") != self.once_template_id:
            return f"template_id {value.get('template_id')!r} is not the account's one-time template"
        if redirect.scheme not in ("http", "https") or not redirect.hostname:
            return f"redirect_url {value.get('redirect_url')!r} is not a URL"
        if self.business_domains and redirect.netloc not in self.business_domains:
            return f"redirect_url outside the business domains {list(self.business_domains)}"
        if not re.fullmatch(r"[A-Za-z0-9]{0,128}", value.get("reserved", "")):
            return "reserved must be a-zA-Z0-9, at most 128 bytes"
        return None

    async def _authorisation_page(self, request: Request) -> Response:
        self._record(request)
        problem = self._link_problem(parse_qs(request.url.query, keep_blank_values=True))
        if problem is not None:
            self._violation(f"subscribemsg link: {problem}")
            return HTMLResponse("<html><body><p>参数错误</p></body></html>", headers={"x-standin-problem": problem})
        return HTMLResponse("<html><body><h1>订阅消息</h1><p>" + html.escape(self.account_id) +
                            " 想给你发送一条消息</p><button>同意</button><button>取消</button></body></html>")

    # --- the API -----------------------------------------------------------------------------------

    def _refuse(self, path: str, errcode: int, errmsg: str) -> JSONResponse:
        self._violation(f"{path}: {errmsg}")
        return self._error(errcode, errmsg)

    async def _get_templates(self, request: Request) -> Response:
        self._record(request)
        refusal = await self._refusal(request)
        if refusal is not None:
            return refusal
        with self._lock:
            data: list[dict[str, Any]] = [
                {"priTmplId": t.template_id, "title": t.title, "content": t.content(), "example": "",
                 "type": 3 if t.long_term else 2, "keywordEnumValueList": []} for t in self._templates.values()]
        return self._error(0, "ok", data=data)

    async def _bizsend(self, request: Request) -> Response:
        entry, payload = await self._json_request(request)
        refusal = await self._refusal(request)
        if refusal is not None:
            return refusal
        path = "subscribe/bizsend"
        shape = _shape_problem(payload, BIZSEND_FIELDS, {"touser": str, "template_id": str, "data": dict})
        if shape is not None:
            return self._refuse(path, 47001, f"data format error: {shape}")
        openid, template_id, data = payload["touser"], payload["template_id"], payload["data"]
        with self._lock:
            template = self._templates.get(template_id)
            known = openid in self._known
        if template is None:
            return self._refuse(path, 40037, f"invalid template_id {template_id!r}")
        if not known:
            return self._error(40003, "invalid openid")
        problem = template.data_problem(data)
        if problem is not None:
            return self._refuse(path, 47003, problem)
        with self._lock:
            consent = self._notice_consents.get((openid, template_id))
            if consent is None:
                return self._error(43101, REFUSED)
            if not consent.long_term:
                consent.remaining -= 1
                if consent.remaining == 0:
                    del self._notice_consents[(openid, template_id)]
            entry["accepted"] = True
            msgid = next(self._msgids)
        values = {name: str(data[name]["value"]) for name in template.fields}
        self._deliver_to_user(openid, template.render(values), "subscribe_notice", template_id=template_id,
                              data=values, title=template.title, link=payload.get("page"), place=self._place(openid))
        if self.push_sent_events and self.callback_url:
            items: list[dict[str, str | int]] = [{"TemplateId": template_id, "MsgID": str(msgid), "ErrorCode": 0,
                                                  "ErrorStatus": "success"}]
            fields: dict[str, FieldValue] = self._fields(openid, "event", Event="subscribe_msg_sent_event",
                                                         SubscribeMsgSentEvent=items)
            with self._lock:
                self.event_deliveries.append(self.deliver(fields))
        return self._error(0, "ok", msgid=msgid)

    async def _template_subscribe(self, request: Request) -> Response:
        entry, payload = await self._json_request(request)
        refusal = await self._refusal(request)
        if refusal is not None:
            return refusal
        path = "template/subscribe"
        shape = _shape_problem(payload, ONCE_FIELDS, {"touser": str, "template_id": str, "scene": (str, int),
                                                      "title": str, "data": dict})
        content = payload.get("data", {}).get("content") if shape is None else None
        if shape is None and (set(payload["data"]) - {"content"} or (
                content is not None and (not isinstance(content, dict) or set(content) - {"value", "color"}
                                         or not isinstance(content.get("value", ""), str)))):
            shape = "data must be {\"content\": {\"value\": text, \"color\"?: ...}}"
        if shape is not None:
            return self._refuse(path, 47001, f"data format error: {shape}")
        openid, template_id, title = payload["touser"], payload["template_id"], payload["title"]
        scene = str(payload["scene"])
        text = content.get("value", "") if isinstance(content, dict) else ""
        if template_id != self.once_template_id:
            return self._refuse(path, 40037, f"invalid template_id {template_id!r}")
        if not (scene.isascii() and scene.isdigit() and int(scene) <= 10000):
            return self._refuse(path, 47003, "argument invalid! scene")
        if not 0 < len(title) <= 15:
            return self._refuse(path, 47003, "argument invalid! title (15 characters at most)")
        if len(text) > 200:
            return self._refuse(path, 47003, "argument invalid! data.content.value (200 characters at most)")
        with self._lock:
            if openid not in self._known:
                return self._error(40003, "invalid openid")
            if self._once_consents.pop((openid, template_id, int(scene)), None) is None:
                return self._error(43101, REFUSED)
            entry["accepted"] = True
        self._deliver_to_user(openid, f"{title}\n{text}".rstrip("\n"), "template_subscribe_once",
                              template_id=template_id, data={"content": text}, title=title,
                              link=payload.get("url"), place=self._place(openid))
        return self._error(0, "ok")
