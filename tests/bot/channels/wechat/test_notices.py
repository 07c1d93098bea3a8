"""Notices to WeChat residents outside the 48-hour window (`bot.channels.wechat.notices`), sent through the API client
to the stand-in WeChat platform, which checks every request and each template keyword's value: which messages are
notices at all; the one-time authorisation link passes WeChat's checks and names its case, and a forged `reserved`
names none; a long-term subscription carries every notice, its keywords filled in the resident's language (a phrase
always Chinese) and fitted to their kind, a one-time one a notice per accept, a refusal in the pop-up none; a
one-time message goes out once and only for its own case; WeChat saying the resident refuses withdraws that consent
and the next one is tried; values WeChat refuses leave the consent for the next notice and are reported, any other
error is raised for the outbox to retry; a notice the city does not send waits without a call to WeChat. On SQLite
and the PostgreSQL on 127.0.0.1, one migrated database of each for the module (each test its own residents).

The stand-in's users consent in WeChat (`user_subscribe`, `user_authorise_once`); WeChat then calls back our server,
which is not running here: the router's own tests cover those callbacks, so these tests record our side of each
consent with the notifier's own methods, as the router does."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.channels.wechat.api import WeChatApi, WeChatApiError
from bot.channels.wechat.notices import WeChatNotifier, notice_event
from bot.config import Settings
from bot.outbox import Delivery
from handlers.city import load_city_config
from handlers.texts import Texts
from handlers.types import Outbound
from storage import notices
from storage.db import Database
from tests.conftest import (
    city_file,
    free_port,
    make_test_keyring,
)
from tests.factories import file_case
from tests.standins.wechat_server import WeChatStandIn

TOKEN = "QinglianCallback2026"
APP_ID = "wx51a0c7e2d4b3f6a8"
APP_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SECRET_KEY = b"notices-test-secret-" + b"k" * 40
SUBSCRIBE_TEMPLATE = "tpl-case-progress-0001"
ONE_OFF_TEMPLATE = "tpl-case-progress-once-0004"
"""The same keywords as a one-time subscription (一次性订阅): WeChat lets one notice through per accept."""
OTHER_TEMPLATE = "tpl-other-service-0003"
ONCE_TEMPLATE = "tpl-once-progress-0002"
FIELDS = {"character_string1": "character_string", "phrase2": "phrase", "time3": "time", "thing4": "thing"}
NUMBER = "QL-2026-000123"
ANSWER = "经核查：\n已责令该窗口整改，并对当事人批评教育。"
NO_CONSENT = "no consent to notices"
NOT_SENT = "the city sends no notice for this message"
OUR_SERVER = f"http://127.0.0.1:{free_port()}"
"""Where WeChat calls back and sends residents after a one-time authorisation: nothing listens here."""

_openids = itertools.count(1)


def _openid() -> str:
    return f"oQL_n0t1ce_{next(_openids):04d}_5d9pX2kT9aYw"


@pytest.fixture(scope="module")
def standin() -> Iterator[WeChatStandIn]:
    server = WeChatStandIn(token=TOKEN, app_id=APP_ID, app_secret=APP_SECRET, once_template_id=ONCE_TEMPLATE,
                           retries=0, retry_interval=0.05, push_sent_events=False)
    server.add_subscribe_template(SUBSCRIBE_TEMPLATE, FIELDS, long_term=True)
    server.add_subscribe_template(ONE_OFF_TEMPLATE, FIELDS, long_term=False)
    server.add_subscribe_template(OTHER_TEMPLATE, {"thing1": "thing", "time2": "time"})
    server.start()
    server.callback_url = f"{OUR_SERVER}/wechat"
    yield server
    server.stop()
    assert server.violations == []


@dataclass
class Notices:
    standin: WeChatStandIn
    notifier: WeChatNotifier
    api: WeChatApi
    database: Database
    template: str
    """the subscription template the city configured"""

    async def subscribe(self, openid: str, template: str | None = None) -> None:
        """The resident accepts `template` (the city's) in WeChat's pop-up; our side records it from WeChat's event."""
        template = template or self.template
        self.standin.user_subscribe(openid, accept=[template]).wait()
        await self.notifier.popup_answered(openid, [(template, "accept")])

    async def authorise_once(self, openid: str, case_id: int) -> None:
        """The resident taps 同意 on WeChat's page behind the bot's link for the case: WeChat records the consent
        and sends the browser on to our /wechat/subscribed (not served here), whose query our side records."""
        link = self.notifier.offer_link(case_id)
        assert link is not None
        with pytest.raises(httpx.ConnectError):  # WeChat checked the link, recorded the consent, redirected
            await asyncio.to_thread(self.standin.user_authorise_once, openid, link)
        async with self.database.sessionmaker.begin() as session:
            await self.notifier.authorised_once(session, openid, ONCE_TEMPLATE, case_id % 10_000, case_id)

    async def case(self, openid: str) -> int:
        async with self.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, channel="wechat", reporter_ref=openid)
        return case.id

    async def notify(self, openid: str, payload: Mapping[str, object], case_id: int | None = 41,
                     text: str = "您的举报有新进展") -> str | None:
        delivery = Delivery(openid, Outbound(text), {"case_number": NUMBER, "locale": "zh", **payload}, case_id)
        return await self.notifier.notify(self.api, delivery, text)

    async def consents(self, openid: str, case_id: int | None = 41) -> list[tuple[str, str]]:
        async with self.database.sessionmaker() as session:
            found = await notices.usable_consents(session, channel="wechat", user_ref=openid, case_id=case_id)
        return [(consent.kind, consent.template_id) for consent in found]

    def received(self, openid: str, via: str = "subscribe_notice") -> list[Any]:
        return [message for message in self.standin.inbox(openid) if message.via == via]

    def calls(self, path: str, openid: str) -> int:
        return len([r for r in self.standin.api_requests if r["path"] == path and (r["json"] or {}).get("touser")
                    == openid])


BIZSEND = "/cgi-bin/message/subscribe/bizsend"
ONCE_SEND = "/cgi-bin/message/template/subscribe"


def _city_toml(*, long_term: bool = True, events: str | None = None, once: bool = True) -> str:
    """The city's [notices] configuration: the long-term subscription template, or the one-time one."""
    fields = ", ".join(f'{item} = "{keyword}"' for item, keyword in zip(
        ("case_number", "status", "time", "summary"), FIELDS, strict=True))
    toml = f"""
[notices.wechat]
subscribe_template_id = "{SUBSCRIBE_TEMPLATE if long_term else ONE_OFF_TEMPLATE}"
subscribe_fields = {{ {fields} }}
subscribe_long_term = {str(long_term).lower()}
{f'once_template_id = "{ONCE_TEMPLATE}"' if once else ""}
once_title = "举报办理进度"
"""
    return toml if events is None else toml.replace("[notices.wechat]", f"[notices]\nevents = {events}\n\n"
                                                                       "[notices.wechat]")


@asynccontextmanager
async def _notices(standin: WeChatStandIn, database_url: str, tmp_path: Path, **city: Any) -> AsyncIterator[Notices]:
    config = load_city_config(city_file(tmp_path, extra=_city_toml(**city)))
    database = Database.connect(database_url, make_test_keyring())
    settings = Settings(data_dir=tmp_path, wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET,
                        wechat_api_url=standin.root_url)
    notifier = WeChatNotifier(config, Texts(config.texts), database.sessionmaker, app_id=APP_ID,
                              secret_key=SECRET_KEY, public_url=OUR_SERVER, mp_url=standin.root_url)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Notices(standin, notifier, WeChatApi(settings, database.sessionmaker, http), database,
                          config.notices.wechat.subscribe_template_id or "")
    finally:
        await database.dispose()


@pytest.fixture
async def wechat(standin: WeChatStandIn, shared_database_url: str, tmp_path: Path) -> AsyncIterator[Notices]:
    async with _notices(standin, shared_database_url, tmp_path) as ready:
        yield ready


# --- which messages are notices ------------------------------------------------------------------


def test_the_event_of_a_message_is_named_as_the_city_configures_notices() -> None:
    payloads: dict[str, dict[str, object]] = {
        "answer": {"notice": "answer", "answer": "已答复"},
        "accepted": {"notice": "status_changed", "status": "accepted"},
        "closed": {"notice": "status_changed", "status": "closed"},
        "more_info": {"notice": "more_info", "question": "请补充"},
        "extended": {"notice": "extended", "until": "2026-06-30T15:59:00"},
        "reopened": {"notice": "reopened"},
        "rate_request": {"notice": "rate_request"},
        "note": {"notice": "note", "note": "请注意"},
        "reply": {"text": "第1步"},
        "not a string": {"notice": ["answer"]},
    }
    assert {name: notice_event(payload) for name, payload in payloads.items()} == {
        "answer": "answered", "accepted": "accepted", "closed": "closed", "more_info": "more_info",
        "extended": "extended", "reopened": "reopened", "rate_request": None, "note": None, "reply": None,
        "not a string": None}


# --- the one-time authorisation link -------------------------------------------------------------


def _link_notifier(tmp_path: Path, mp_url: str, *, app_id: str | None = APP_ID, secret_key: bytes = SECRET_KEY,
                   once: bool = True) -> WeChatNotifier:
    """A notifier for its links alone: they need no database."""
    config = load_city_config(city_file(tmp_path, extra=_city_toml(once=once)))
    return WeChatNotifier(config, Texts(config.texts), async_sessionmaker(), app_id=app_id, secret_key=secret_key,
                          public_url=OUR_SERVER, mp_url=mp_url)


async def test_the_authorisation_link_passes_wechats_checks_and_its_reserved_value_names_its_case(
        standin: WeChatStandIn, tmp_path: Path) -> None:
    notifier = _link_notifier(tmp_path, standin.root_url)
    link = notifier.offer_link(123456)
    assert link is not None
    parts = urlsplit(link)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{standin.root_url}/mp/subscribemsg"
    assert parts.fragment == "wechat_redirect"
    assert {name: value for name, value in query.items() if name != "reserved"} == {
        "action": "get_confirm", "appid": APP_ID, "scene": "3456", "template_id": ONCE_TEMPLATE,
        "redirect_url": f"{OUR_SERVER}/wechat/subscribed"}
    assert re.fullmatch(r"123456x[0-9a-f]{24}", query["reserved"])
    async with httpx.AsyncClient() as browser:
        page = await browser.get(f"{standin.root_url}/mp/subscribemsg?{parts.query}")
    assert page.status_code == 200 and "x-standin-problem" not in page.headers  # WeChat accepts the link

    assert notifier.case_of(query["reserved"]) == 123456
    signature = query["reserved"].partition("x")[2]
    altered = signature[:-1] + ("1" if signature.endswith("0") else "0")
    forged = ["", "x", "123456", "123456x", f"123457x{signature}", f"abcx{signature}", f"-1x{signature}",
              f"123456x{altered}"]
    assert [notifier.case_of(reserved) for reserved in forged] == [None] * len(forged)
    other = _link_notifier(tmp_path, standin.root_url, secret_key=b"another-deployment-" + b"s" * 40)
    assert other.case_of(query["reserved"]) is None


def test_a_reserved_value_with_unicode_digits_names_no_case(tmp_path: Path) -> None:
    assert _link_notifier(tmp_path, "https://mp.weixin.qq.com").case_of("²x0123456789abcdef01234567") is None


def test_a_reserved_value_whose_signature_is_not_ascii_names_no_case(tmp_path: Path) -> None:
    """Anyone can open the return link with any `reserved`: a signature outside ASCII is forged (a 400 page), not
    an error of the service (a 500)."""
    assert _link_notifier(tmp_path, "https://mp.weixin.qq.com").case_of("123456x签名0123456789abcdef0123") is None


def test_without_a_one_time_template_or_an_app_id_no_link_is_offered(tmp_path: Path) -> None:
    assert _link_notifier(tmp_path, "https://mp.weixin.qq.com", once=False).offer_link(41) is None
    assert _link_notifier(tmp_path, "https://mp.weixin.qq.com", app_id=None).offer_link(41) is None
    assert _link_notifier(tmp_path, "https://mp.weixin.qq.com").offer_link(41) is not None


# --- subscription notices ------------------------------------------------------------------------


KEYWORDS: list[tuple[dict[str, object], str, str]] = [
    ({"notice": "answer", "answer": ANSWER}, "已答复", "经核查： 已责令该窗口整改，并对当事人…"),
    ({"notice": "status_changed", "status": "closed"}, "已办结", "已办结"),
    ({"notice": "status_changed", "status": "accepted", "note": "已转岳麓区纪委监委办理"}, "已受理",
     "已转岳麓区纪委监委办理"),
    ({"notice": "more_info", "question": "请提供3号窗口当天的排队小票照片"}, "待补充",
     "请提供3号窗口当天的排队小票照片"),
    ({"notice": "extended", "until": "2026-06-30T16:30:00"}, "已延期", "预计2026-07-01前答复"),  # 00:30 in Changsha
    ({"notice": "reopened"}, "重新办理", "根据举报人的评价重新办理"),
    ({"notice": "answer", "answer": "The window staff were reprimanded.", "locale": "en"}, "已答复",
     "The window staff we…"),
    ({"notice": "status_changed", "status": "rejected", "locale": "en"}, "不予受理", "Rejected (out of sc…"),
    ({"notice": "extended", "until": "2026-06-30T16:30:00", "locale": "en"}, "已延期", "Answer by 2026-07-01"),
]
"""A notice's payload, and the status (phrase2: always Chinese) and summary (thing4: in the resident's language,
one line of at most 20 characters) its subscription notice shows."""


async def test_a_long_term_subscription_carries_every_notice_its_keywords_fitted_to_their_kinds(
        wechat: Notices) -> None:
    openid = _openid()
    await wechat.subscribe(openid)
    sent = [await wechat.notify(openid, payload) for payload, _, _ in KEYWORDS]
    assert sent == [None] * len(KEYWORDS)
    shown = wechat.received(openid)
    assert [(n.data["phrase2"], n.data["thing4"]) for n in shown] == [(phrase, thing) for _, phrase, thing in KEYWORDS]
    assert {(n.template_id, n.data["character_string1"]) for n in shown} == {(SUBSCRIBE_TEMPLATE, NUMBER)}
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", n.data["time3"]) for n in shown)
    assert await wechat.consents(openid) == [(notices.SUBSCRIBE, SUBSCRIBE_TEMPLATE)]


async def test_a_one_time_subscription_carries_one_notice_per_accept(
        standin: WeChatStandIn, shared_database_url: str, tmp_path: Path) -> None:
    async with _notices(standin, shared_database_url, tmp_path, long_term=False) as wechat:
        openid = _openid()
        await wechat.subscribe(openid)
        await wechat.subscribe(openid)
        closed = {"notice": "status_changed", "status": "closed"}
        answers = [await wechat.notify(openid, closed) for _ in range(3)]
        assert answers == [None, None, NO_CONSENT]
        assert len(wechat.received(openid)) == 2 and wechat.calls(BIZSEND, openid) == 2  # the third not tried
        assert await wechat.consents(openid) == []


async def test_a_refusal_in_the_pop_up_or_another_template_carries_no_notice(wechat: Notices) -> None:
    refuser, other = _openid(), _openid()
    await wechat.subscribe(refuser)
    wechat.standin.user_subscribe(refuser, reject=[SUBSCRIBE_TEMPLATE]).wait()
    await wechat.notifier.popup_answered(refuser, [(SUBSCRIBE_TEMPLATE, "reject")])
    await wechat.subscribe(other, OTHER_TEMPLATE)  # a template of the account the city did not configure
    answer = {"notice": "answer", "answer": ANSWER}
    assert (await wechat.notify(refuser, answer), await wechat.notify(other, answer)) == (NO_CONSENT, NO_CONSENT)
    assert (wechat.calls(BIZSEND, refuser), wechat.calls(BIZSEND, other)) == (0, 0)
    assert await wechat.consents(refuser) == []


# --- one-time subscription messages ---------------------------------------------------------------


async def test_a_one_time_message_goes_out_once_and_only_for_its_own_case(wechat: Notices) -> None:
    openid = _openid()
    case_id, other_case = await wechat.case(openid), await wechat.case(openid)
    await wechat.authorise_once(openid, case_id)
    long_text = "您的举报收到办理答复：" + "经核查属实，已责令整改。" * 20
    answer = {"notice": "answer", "answer": ANSWER}
    assert await wechat.notify(openid, answer, case_id=other_case, text=long_text) == NO_CONSENT
    assert await wechat.notify(openid, answer, case_id=case_id, text=long_text) is None
    assert await wechat.notify(openid, answer, case_id=case_id, text="第二条") == NO_CONSENT
    [message] = wechat.received(openid, "template_subscribe_once")
    assert (message.template_id, message.title, message.data) == (ONCE_TEMPLATE, "举报办理进度",
                                                                  {"content": long_text[:200]})
    assert wechat.calls(ONCE_SEND, openid) == 1


async def test_wechat_saying_the_resident_refuses_withdraws_that_consent_and_the_next_is_tried(
        wechat: Notices) -> None:
    openid = _openid()
    case_id = await wechat.case(openid)
    await wechat.authorise_once(openid, case_id)
    # our side holds a subscription WeChat no longer has (the resident refused it in WeChat's settings)
    await wechat.notifier.popup_answered(openid, [(SUBSCRIBE_TEMPLATE, "accept")])
    assert await wechat.consents(openid, case_id) == [(notices.SUBSCRIBE, SUBSCRIBE_TEMPLATE),
                                                      (notices.ONCE, ONCE_TEMPLATE)]
    assert await wechat.notify(openid, {"notice": "answer", "answer": ANSWER}, case_id=case_id) is None
    assert wechat.calls(BIZSEND, openid) == 1 and wechat.received(openid) == []
    assert len(wechat.received(openid, "template_subscribe_once")) == 1
    assert await wechat.consents(openid, case_id) == []


# --- WeChat's errors -----------------------------------------------------------------------------


async def test_values_wechat_refuses_are_reported_and_the_consent_kept_for_the_next_notice(wechat: Notices) -> None:
    openid = _openid()
    await wechat.subscribe(openid)
    wechat.standin.fail_next(BIZSEND, errcode=47003, errmsg="argument invalid! data.thing4.value invalid " + "x" * 300)
    why = await wechat.notify(openid, {"notice": "answer", "answer": ANSWER})
    assert why is not None and len(why) == 200
    assert why.startswith("WeChat errcode 47003: argument invalid! data.thing4.value invalid xxx")
    assert await wechat.consents(openid) == [(notices.SUBSCRIBE, SUBSCRIBE_TEMPLATE)]
    assert await wechat.notify(openid, {"notice": "status_changed", "status": "closed"}) is None
    assert [notice.data["phrase2"] for notice in wechat.received(openid)] == ["已办结"]


async def test_any_other_wechat_error_is_raised_for_the_outbox_to_retry_and_uses_no_consent(
        standin: WeChatStandIn, shared_database_url: str, tmp_path: Path) -> None:
    async with _notices(standin, shared_database_url, tmp_path, long_term=False) as wechat:
        openid = _openid()
        await wechat.subscribe(openid)
        wechat.standin.fail_next(BIZSEND, errcode=-1, errmsg="system error")
        with pytest.raises(WeChatApiError) as busy:
            await wechat.notify(openid, {"notice": "answer", "answer": ANSWER})
        assert (busy.value.errcode, busy.value.errmsg) == (-1, "system error")
        assert await wechat.consents(openid) == [(notices.SUBSCRIBE, ONE_OFF_TEMPLATE)]
        assert await wechat.notify(openid, {"notice": "answer", "answer": ANSWER}) is None  # the retry
        assert len(wechat.received(openid)) == 1 and await wechat.consents(openid) == []


# --- notices the city does not send --------------------------------------------------------------


async def test_a_notice_the_city_does_not_send_waits_without_a_call_to_wechat(
        standin: WeChatStandIn, shared_database_url: str, tmp_path: Path) -> None:
    async with _notices(standin, shared_database_url, tmp_path, events='["closed"]') as wechat:
        openid = _openid()
        await wechat.subscribe(openid)
        waiting = [
            await wechat.notify(openid, {"notice": "answer", "answer": ANSWER}),  # not among the city's events
            await wechat.notify(openid, {"notice": "rate_request"}),  # never a notice
            await wechat.notify(openid, {"notice": "status_changed", "status": "closed"}, case_id=None),  # no case
        ]
        assert waiting == [NOT_SENT] * 3
        assert wechat.calls(BIZSEND, openid) == 0
        assert await wechat.notify(openid, {"notice": "status_changed", "status": "closed"}) is None
        assert wechat.calls(BIZSEND, openid) == 1


async def test_a_resident_without_any_consent_is_told_to_wait(wechat: Notices) -> None:
    openid = _openid()
    wechat.standin.interacted(openid)
    assert await wechat.notify(openid, {"notice": "answer", "answer": ANSWER}) == NO_CONSENT
    assert wechat.calls(BIZSEND, openid) == 0 and wechat.calls(ONCE_SEND, openid) == 0
