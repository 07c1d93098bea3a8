"""Notices to WeChat residents outside the 48-hour window, as government service accounts send them:

* **Subscription notices (订阅通知)**, `POST /cgi-bin/message/subscribe/bizsend`: a template the account
  chose, its keywords filled from the notice (`[notices.wechat] subscribe_fields`); the resident accepts the
  template in WeChat's pop-up, which WeChat reports with `subscribe_msg_popup_event` (and a later refusal with
  `subscribe_msg_change_event`). A long-term template allows any number of notices, a one-time one a notice
  per accept.
* **One-time subscription messages (一次性订阅消息)**, `POST /cgi-bin/message/template/subscribe`: the bot
  offers an authorisation link after a report is submitted and after each status check; WeChat redirects the
  resident who accepts to `/wechat/subscribed`, where the consent is recorded for that case; it lets one
  message through.

A notice whose event the city does not configure, for which no consent holds, or whose values WeChat refuses
(47003: no better on a retry) waits for the resident's next message (`WaitForResident`, the reason recorded),
which is then answered with what the notice said and the newest state of the case first.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.wechat.api import WeChatApi, WeChatApiError
from bot.outbox import Delivery
from handlers.city import CityConfig
from handlers.texts import Texts
from handlers.validation import whole_number
from storage import notices

log = logging.getLogger(__name__)

CHANNEL = "wechat"
REFUSED = 43101
"""WeChat: the user refuses (did not subscribe, or withdrew)."""
INVALID_VALUES = frozenset({47003})
"""WeChat: a template keyword's value breaks its kind's rule — the same on every retry of the message."""
CALLBACK = "/wechat/subscribed"
MAX_SCENE = 10_000


def notice_event(payload: dict[str, object]) -> str | None:
    """The configured event name of a notice ("answered", "accepted", …), None for anything else."""
    notice = payload.get("notice")
    if notice == "answer":
        return "answered"
    if notice == "status_changed":
        return str(payload.get("status"))
    if isinstance(notice, str) and notice in ("more_info", "extended", "reopened"):
        return notice
    return None


PHRASE_FALLBACK = "有新进展"
"""A ``phrase`` value when nothing Chinese fits (WeChat: 5 Chinese characters at most, nothing else)."""


def _is_chinese(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf" or "\uf900" <= char <= "\ufaff"


def _fit(kind: str, value: str, fallback: str = "-") -> str:
    """A value within the rules of a template keyword's kind (WeChat refuses the notice with 47003 otherwise):
    never empty, a ``thing`` on one line of 20 characters at most, a ``phrase`` Chinese only."""
    if kind.startswith("thing"):
        one_line = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
        one_line = one_line or " ".join(fallback.split()) or "-"
        return one_line if len(one_line) <= 20 else one_line[:19] + "…"
    if kind.startswith("phrase"):
        chinese = "".join(ch for ch in value if _is_chinese(ch))[:5]
        return chinese or PHRASE_FALLBACK
    if kind.startswith("character_string"):
        return "".join(ch for ch in value if ch.isascii() and ch.isprintable() and not ch.isspace())[:32] or "-"
    if kind.startswith("number"):
        return "".join(ch for ch in value if ch.isascii() and ch.isdigit())[:32] or "0"
    return value or fallback


class WeChatNotifier:
    def __init__(self, city: CityConfig, texts: Texts, sessionmaker: async_sessionmaker[AsyncSession], *,
                 app_id: str | None, secret_key: bytes, public_url: str, mp_url: str) -> None:
        self._config = city.notices.wechat
        self._events = set(city.notices.events)
        self._city = city
        self._tz = ZoneInfo(city.timezone)
        self._texts = texts
        self._sessionmaker = sessionmaker
        self._app_id = app_id
        self._secret = secret_key
        self._public_url = public_url
        self._mp_url = mp_url

    # --- the one-time authorisation link --------------------------------------------------------

    def _signature(self, case_id: int) -> str:
        return hmac.new(self._secret, f"wechat-once:{case_id}".encode(), hashlib.sha256).hexdigest()[:24]

    def offer_link(self, case_id: int) -> str | None:
        """WeChat's authorisation page for a one-time message about `case_id`; None without a template."""
        if not self._config.once_template_id or not self._app_id:
            return None
        query = urlencode({"action": "get_confirm", "appid": self._app_id, "scene": case_id % MAX_SCENE,
                           "template_id": self._config.once_template_id,
                           "redirect_url": f"{self._public_url}{CALLBACK}",
                           "reserved": f"{case_id}x{self._signature(case_id)}"})
        return f"{self._mp_url}/mp/subscribemsg?{query}#wechat_redirect"

    def case_of(self, reserved: str) -> int | None:
        """The case a `reserved` value from our own link names; None for anything forged."""
        digits, _, signature = reserved.partition("x")
        number = whole_number(digits)
        # as bytes: compare_digest raises for a str outside ASCII, which anyone can put in the link
        if number is None or not hmac.compare_digest(signature.encode(), self._signature(number).encode()):
            return None
        return number

    # --- consents -------------------------------------------------------------------------------

    async def popup_answered(self, openid: str, choices: list[tuple[str, str]]) -> None:
        """The resident answered the subscription pop-up, or changed their mind in WeChat's settings."""
        async with self._sessionmaker.begin() as session:
            for template_id, status in choices:
                if status == "accept":
                    await notices.record_consent(session, channel=CHANNEL, user_ref=openid, kind=notices.SUBSCRIBE,
                                                 template_id=template_id, long_term=self._long_term(template_id))
                else:
                    await notices.withdraw_consent(session, channel=CHANNEL, user_ref=openid, template_id=template_id)

    def _long_term(self, template_id: str) -> bool:
        return template_id == self._config.subscribe_template_id and self._config.subscribe_long_term

    async def authorised_once(self, session: AsyncSession, openid: str, template_id: str, scene: int,
                              case_id: int) -> None:
        await notices.record_consent(session, channel=CHANNEL, user_ref=openid, kind=notices.ONCE,
                                     template_id=template_id, case_id=case_id, scene=scene)

    # --- sending --------------------------------------------------------------------------------

    async def notify(self, api: WeChatApi, delivery: Delivery, text: str) -> str | None:
        """Send the notice by the first consent that holds: None when sent; otherwise why it waits for the
        resident (its event is not one the city notifies, no consent holds, or WeChat refused every template
        the resident accepted — 47003, a value breaking a keyword's rule, is no better on a retry)."""
        event = notice_event(delivery.payload)
        if event is None or event not in self._events or delivery.case_id is None:
            return "the city sends no notice for this message"
        async with self._sessionmaker() as session:
            consents = await notices.usable_consents(session, channel=CHANNEL, user_ref=delivery.recipient,
                                                     case_id=delivery.case_id)
        refusals: list[str] = []
        for consent in consents:
            try:
                if consent.kind == notices.SUBSCRIBE and consent.template_id == self._config.subscribe_template_id:
                    await api.post("/cgi-bin/message/subscribe/bizsend", self._bizsend(delivery, consent.template_id))
                elif consent.kind == notices.ONCE and consent.scene is not None:
                    await api.post("/cgi-bin/message/template/subscribe", {
                        "touser": delivery.recipient, "template_id": consent.template_id, "scene": consent.scene,
                        "title": self._config.once_title, "data": {"content": {"value": text[:200]}}})
                else:
                    continue
            except WeChatApiError as problem:
                if problem.errcode in INVALID_VALUES:
                    log.error("wechat refused the values of template %s: %s", consent.template_id, problem)
                    refusals.append(f"WeChat errcode {problem.errcode}: {problem.errmsg}"[:200])
                    continue
                if problem.errcode != REFUSED:
                    raise
                async with self._sessionmaker.begin() as session:
                    await notices.refused(session, consent.id)
                continue
            async with self._sessionmaker.begin() as session:
                await notices.use_consent(session, consent.id)
            return None
        return "; ".join(refusals) if refusals else "no consent to notices"

    def _items(self, payload: dict[str, object], locale: str) -> dict[str, str]:
        """The values a template's keywords are filled from, in `locale`."""
        notice = payload.get("notice")
        status = str(payload.get("status") or {"answer": "answered", "more_info": "more_info"}.get(str(notice), ""))
        answer = payload.get("answer")
        if notice in ("extended", "reopened"):
            short = self._texts.get(locale, f"status_short_{notice}")
            until = self._city.local_day(payload.get("until"))
            summary = (self._texts.get(locale, "notice_short_extended", until=until) if notice == "extended"
                       else self._texts.get(locale, "trace_reopened"))
        else:
            short = self._texts.get(locale, f"status_short_{status}") if status else ""
            summary = (str(answer) if answer else str(payload.get("note") or payload.get("question") or "")
                       or (self._texts.get(locale, f"status_{status}") if status else ""))
        return {
            "case_number": str(payload.get("case_number") or ""),
            "status": short,
            "time": datetime.now(self._tz).strftime("%Y-%m-%d %H:%M"),
            "summary": summary or short,
        }

    def _bizsend(self, delivery: Delivery, template_id: str) -> dict[str, Any]:
        payload = delivery.payload
        items = self._items(payload, str(payload.get("locale") or "zh"))
        chinese = self._items(payload, "zh")  # a phrase must be Chinese, whatever the resident reads
        data = {}
        for item, keyword in self._config.subscribe_fields.items():
            value = chinese[item] if keyword.startswith("phrase") else items[item]
            data[keyword] = {"value": _fit(keyword, value, fallback=items["status"] or chinese["status"])}
        return {"touser": delivery.recipient, "template_id": template_id, "data": data}
