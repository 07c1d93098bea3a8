"""The stand-in WeChat platform's notices outside the 48-hour window, called as a client calls them:
subscription notices (订阅通知) and one-time subscription messages (一次性订阅消息), their consents, the
clock, and users who unfollow."""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from tests.standins.wechat_server import WeChatStandIn
from tests.standins.wechat_templates import value_ok

APP_ID = "wx51a0c7e2d4b3f6a8"
SECRET = "s" * 32
ONCE = "OnceTemplate_0123456789abcdefghijklmnopqrst"
ACCEPTED = "TplAccepted_0123456789abcdefghijklmnopqrstu"  # one-time subscription notice
PROGRESS = "TplProgress_0123456789abcdefghijklmnopqrstu"  # long-term subscription notice
ACCEPTED_FIELDS = {"character_string1": "character_string", "phrase2": "phrase", "time3": "time", "thing4": "thing"}


class Receiver:
    """The service's side: the callback URL (POSTs answered "success") and web pages (GETs)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, list[str]], ET.Element]] = []
        self.pages: list[dict[str, list[str]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = ET.fromstring(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.posts.append((parse_qs(urlsplit(self.path).query), body))
                self._answer(b"success")

            def do_GET(self) -> None:
                with receiver.lock:
                    receiver.pages.append(parse_qs(urlsplit(self.path).query, keep_blank_values=True))
                self._answer("已订阅".encode())

            def _answer(self, payload: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def events(self, name: str) -> list[ET.Element]:
        with self.lock:
            return [body for _, body in self.posts if body.findtext("Event") == name]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    service = Receiver()
    yield service
    service.close()


@pytest.fixture
def standin(receiver: Receiver) -> Iterator[WeChatStandIn]:
    server = WeChatStandIn(token="tok3n", app_id=APP_ID, app_secret=SECRET, once_template_id=ONCE)
    server.callback_url = f"{receiver.root}/wechat"
    server.add_subscribe_template(ACCEPTED, ACCEPTED_FIELDS, title="举报受理通知",
                                  labels={"character_string1": "回执编号", "phrase2": "办理状态"})
    server.add_subscribe_template(PROGRESS, {"thing1": "thing", "date2": "date"}, long_term=True)
    server.start()
    yield server
    server.stop()


def _token(standin: WeChatStandIn) -> str:
    answer = httpx.get(f"{standin.root_url}/cgi-bin/token",
                       params={"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}).json()
    return str(answer["access_token"])


def _post(standin: WeChatStandIn, path: str, token: str, body: object) -> dict[str, Any]:
    answer = httpx.post(f"{standin.root_url}{path}", params={"access_token": token},
                        content=json.dumps(body, ensure_ascii=False).encode())
    return dict(answer.json())


def _notice(openid: str, **values: str) -> dict[str, Any]:
    data = {"character_string1": "1234-5678-9012-3456", "phrase2": "已受理", "time3": "2025年3月9日 14:30",
            "thing4": "请留意后续办理进度"}
    data.update(values)
    return {"touser": openid, "template_id": ACCEPTED, "data": {k: {"value": v} for k, v in data.items()}}


def _bizsend(standin: WeChatStandIn, token: str, body: object) -> int:
    return int(_post(standin, "/cgi-bin/message/subscribe/bizsend", token, body)["errcode"])


def _once(openid: str, scene: str = "1000", title: str = "举报办理进展", text: str = "您的举报已办结，请查看答复。",
          **extra: Any) -> dict[str, Any]:
    return {"touser": openid, "template_id": ONCE, "scene": scene, "title": title,
            "data": {"content": {"value": text}}, **extra}


def _subscribe_once(standin: WeChatStandIn, token: str, body: object) -> int:
    return int(_post(standin, "/cgi-bin/message/template/subscribe", token, body)["errcode"])


def _link(receiver: Receiver, *, scene: str = "1000", reserved: str = "case42", template_id: str = ONCE,
          fragment: str = "#wechat_redirect", redirect: str | None = None) -> str:
    redirect_url = quote(redirect or f"{receiver.root}/wechat/subscribed?lang=zh", safe="")
    return (f"https://mp.weixin.qq.com/mp/subscribemsg?action=get_confirm&appid={APP_ID}&scene={scene}"
            f"&template_id={template_id}&redirect_url={redirect_url}&reserved={reserved}{fragment}")


# --- subscription notices (订阅通知) ---------------------------------------------------------------


def test_the_account_lists_its_templates(standin: WeChatStandIn) -> None:
    answer = httpx.get(f"{standin.root_url}/wxaapi/newtmpl/gettemplate",
                       params={"access_token": _token(standin)}).json()
    assert answer["errcode"] == 0
    assert [(t["priTmplId"], t["type"]) for t in answer["data"]] == [(ACCEPTED, 2), (PROGRESS, 3)]
    assert answer["data"][0]["content"] == ("回执编号:{{character_string1.DATA}}\n办理状态:{{phrase2.DATA}}\n"
                                            "time3:{{time3.DATA}}\nthing4:{{thing4.DATA}}\n")
    with pytest.raises(ValueError, match="kind 'thing'"):
        standin.add_subscribe_template("T", {"thing1": "phrase", "time2": "time"})


def test_a_one_time_subscription_allows_one_notice_per_accept(standin: WeChatStandIn, receiver: Receiver) -> None:
    token = _token(standin)
    assert _bizsend(standin, token, _notice("o_stranger")) == 40003
    standin.interacted("o1")
    assert _bizsend(standin, token, _notice("o1")) == 43101

    standin.user_subscribe("o1", accept=[ACCEPTED], reject=[PROGRESS]).wait()
    (popup,) = receiver.events("subscribe_msg_popup_event")
    items = [(i.findtext("TemplateId"), i.findtext("SubscribeStatusString"), i.findtext("PopupScene"))
             for i in popup.iter("List")]
    assert items == [(ACCEPTED, "accept", "1"), (PROGRESS, "reject", "1")]
    assert [(c["template_id"], c["remaining"]) for c in standin.consents("o1")] == [(ACCEPTED, 1)]

    answer = _post(standin, "/cgi-bin/message/subscribe/bizsend", token, _notice("o1"))
    assert (answer["errcode"], answer["errmsg"]) == (0, "ok") and answer["msgid"] > 0
    assert _bizsend(standin, token, _notice("o1")) == 43101
    (notice,) = standin.inbox("o1")
    assert (notice.kind, notice.template_id, notice.place) == ("subscribe_notice", ACCEPTED, "chat")
    assert notice.text == ("举报受理通知\n回执编号: 1234-5678-9012-3456\n办理状态: 已受理\n"
                           "time3: 2025年3月9日 14:30\nthing4: 请留意后续办理进度")

    standin.wait_until(lambda: len(receiver.events("subscribe_msg_sent_event")) == 1, what="the sent event")
    (sent,) = receiver.events("subscribe_msg_sent_event")
    assert [(i.findtext("TemplateId"), i.findtext("MsgID"), i.findtext("ErrorCode"), i.findtext("ErrorStatus"))
            for i in sent.iter("List")] == [(ACCEPTED, str(answer["msgid"]), "0", "success")]

    standin.user_subscribe("o1", accept=[ACCEPTED]).wait()
    standin.user_subscribe("o1", accept=[ACCEPTED]).wait()
    assert [_bizsend(standin, token, _notice("o1")) for _ in range(3)] == [0, 0, 43101]
    assert standin.violations == []


def test_a_long_term_subscription_holds_until_the_user_refuses(standin: WeChatStandIn, receiver: Receiver) -> None:
    body = {"touser": "o2", "template_id": PROGRESS, "page": "https://example.org/case/42",
            "data": {"thing1": {"value": "已转交区纪委办理"}, "date2": {"value": "2025-03-09"}}}
    standin.user_subscribe("o2", accept=[PROGRESS], popup_scene=2).wait()
    subscribed = standin.now()
    standin.advance(days=60)
    token = _token(standin)
    assert [_bizsend(standin, token, body) for _ in range(3)] == [0, 0, 0]
    assert round((standin.inbox("o2")[0].when - subscribed) / 86400) == 60
    assert standin.inbox("o2")[0].link == "https://example.org/case/42"
    assert standin.consents("o2")[0]["remaining"] is None

    standin.user_manage_subscriptions("o2", reject=[PROGRESS]).wait()
    (change,) = receiver.events("subscribe_msg_change_event")
    assert [(i.findtext("TemplateId"), i.findtext("SubscribeStatusString"))
            for i in change.iter("List")] == [(PROGRESS, "reject")]
    assert _bizsend(standin, token, body) == 43101
    assert standin.consents("o2") == []


@pytest.mark.parametrize(
    ("change", "errcode", "errmsg"),
    [
        ({"template_id": "NoSuchTemplate"}, 40037, "invalid template_id"),
        ({"data": {"phrase2": {"value": "已受理"}}}, 47003, "data.character_string1.value is empty"),
        ({"thing4": "请留意后续办理进度，如有问题请回复本公众号"}, 47003, "data.thing4.value invalid"),
        ({"character_string1": "1234 5678 9012 3456"}, 47003, "data.character_string1.value invalid"),
        ({"phrase2": "受理完毕并转交"}, 47003, "data.phrase2.value invalid"),
        ({"time3": "2025年2月30日 14:30"}, 47003, "data.time3.value invalid"),
        ({"time3": "下午两点"}, 47003, "data.time3.value invalid"),
        ({"extra": "thing9"}, 47003, "data.thing9 is not a keyword"),
        ({"url": "https://example.org"}, 47001, "unknown fields ['url']"),
        ({"data": [1, 2]}, 47001, "data missing"),
    ],
)
def test_notices_that_break_the_rules_are_refused(standin: WeChatStandIn, change: dict[str, Any], errcode: int,
                                                  errmsg: str) -> None:
    token = _token(standin)
    standin.user_subscribe("o3", accept=[ACCEPTED]).wait()
    body = _notice("o3", **{k: v for k, v in change.items() if k not in ("template_id", "data", "url", "extra")})
    body.update({k: v for k, v in change.items() if k in ("template_id", "data", "url")})
    if "extra" in change:
        body["data"][change["extra"]] = {"value": "多余"}
    answer = _post(standin, "/cgi-bin/message/subscribe/bizsend", token, body)
    assert answer["errcode"] == errcode and errmsg in answer["errmsg"]
    assert len(standin.violations) == 1 and errmsg in standin.violations[0]
    assert standin.inbox("o3") == [] and standin.consents("o3")[0]["remaining"] == 1


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("thing", ["受理", "a" * 20, "Case #42 已受理"], ["a" * 21, "第一行\n第二行", ""]),
        ("number", ["42", "3.14", 7], ["-1", "1e5", "9" * 33]),
        ("letter", ["abc"], ["ab1", "a" * 33]),
        ("symbol", ["-", "#@!", "，。"], ["a", "------", " "]),
        ("character_string", ["A1-b2_c3", "x" * 32], ["x" * 33, "编号1", "1 2"]),
        ("time", ["15:01", "15:01:59", "2019年10月1日 15:01", "2019-12-25 09:42", "15:01~16:30"],
         ["2019年10月1日", "24:00", "15:60", "3pm"]),
        ("date", ["2019年10月1日", "2019年10月", "10月1日", "2018-01-01", "2018/01/01", "2018.01.01", "01-01",
                  "2019年10月1日 15:01", "2019年10月1日~2019年10月7日"], ["2019-13-01", "2019年2月29日", "15:01"]),
        ("amount", ["¥100.50", "100元", "2000"], ["100.5.5", "¥12345678901", "一百元"]),
        ("phone_number", ["+86-0731-88888888", "12345678901"], ["+86 0731", "1" * 18]),
        ("car_number", ["湘A12345", "湘A1234学"], ["湘A1234567", "湘A-1234"]),
        ("name", ["王小明", "John Smith", "王Xiao"], ["王" * 11, "a" * 21, "王1"]),
        ("phrase", ["已受理", "办理完毕了"], ["办理已经完毕", "OK", "已受理!"]),
    ],
)
def test_keyword_rules(kind: str, good: list[object], bad: list[object]) -> None:
    assert [value_ok(kind, value) for value in good] == [True] * len(good)
    assert [value_ok(kind, value) for value in bad] == [False] * len(bad)


# --- one-time subscription messages (一次性订阅消息) -------------------------------------------------


def test_one_time_authorisation_redirects_and_allows_one_message(standin: WeChatStandIn, receiver: Receiver) -> None:
    done = standin.user_authorise_once("o4", _link(receiver, reserved="case42"))
    assert done.problem is None and "同意" in done.page.text
    assert done.response is not None and done.response.text == "已订阅"
    assert receiver.pages == [{"lang": ["zh"], "openid": ["o4"], "template_id": [ONCE], "action": ["confirm"],
                               "scene": ["1000"], "reserved": ["case42"]}]
    assert [(c["kind"], c["scene"]) for c in standin.consents("o4")] == [("template_subscribe_once", 1000)]

    standin.advance(days=30)  # a one-time authorisation has no time limit
    token = _token(standin)
    assert _subscribe_once(standin, token, _once("o4", url="https://example.org/case/42")) == 0
    assert _subscribe_once(standin, token, _once("o4")) == 43101
    (message,) = standin.inbox("o4")
    assert (message.kind, message.title, message.data, message.link) == (
        "template_subscribe_once", "举报办理进展", {"content": "您的举报已办结，请查看答复。"}, "https://example.org/case/42")

    # authorisations in one scene do not add up; in different scenes they do
    for scene in ("7", "7", "8"):
        standin.user_authorise_once("o4", _link(receiver, scene=scene))
    assert [_subscribe_once(standin, token, _once("o4", scene=s)) for s in ("7", "7", "8")] == [0, 43101, 0]
    assert standin.violations == []


def test_a_cancelled_authorisation_carries_no_openid(standin: WeChatStandIn, receiver: Receiver) -> None:
    done = standin.user_authorise_once("o5", _link(receiver), accept=False)
    assert done.redirect is not None and "openid" not in receiver.pages[0]
    assert receiver.pages[0]["action"] == ["cancel"] and standin.consents("o5") == []
    assert _subscribe_once(standin, _token(standin), _once("o5")) == 40003


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ({"fragment": ""}, "#wechat_redirect"),
        ({"scene": "10001"}, "scene '10001'"),
        ({"template_id": ACCEPTED}, "not the account's one-time template"),
        ({"reserved": "case-42"}, "reserved must be a-zA-Z0-9"),
        ({"redirect": "javascript:alert(1)"}, "is not a URL"),
    ],
)
def test_a_bad_authorisation_link_shows_an_error_page(standin: WeChatStandIn, receiver: Receiver,
                                                      link: dict[str, str], problem: str) -> None:
    done = standin.user_authorise_once("o6", _link(receiver, **link))
    assert done.problem is not None and problem in done.problem and done.response is None
    assert receiver.pages == [] and standin.consents("o6") == []
    assert len(standin.violations) == 1 and problem in standin.violations[0]


def test_an_unencoded_redirect_url_is_caught(standin: WeChatStandIn, receiver: Receiver) -> None:
    link = _link(receiver).replace(quote(f"{receiver.root}/wechat/subscribed?lang=zh", safe=""),
                                   f"{receiver.root}/cb?a=1&b=2")
    assert standin.user_authorise_once("o7", link).problem == \
        "unknown parameters ['b'] (is redirect_url URL-encoded?)"


def test_business_domain_is_enforced(receiver: Receiver) -> None:
    with WeChatStandIn(token="t", app_id=APP_ID, app_secret=SECRET, once_template_id=ONCE,
                       business_domains=("case.example.org",)) as standin:
        done = standin.user_authorise_once("o8", _link(receiver))
        assert done.problem is not None and "business domains" in done.problem


@pytest.mark.parametrize(
    ("body", "errcode", "errmsg"),
    [
        (_once("o9", title="举报办理进展通知：请查看最新答复"), 47003, "argument invalid! title"),
        (_once("o9", text="长" * 201), 47003, "argument invalid! data.content.value"),
        (_once("o9", scene="10001"), 47003, "argument invalid! scene"),
        ({**_once("o9"), "template_id": ACCEPTED}, 40037, "invalid template_id"),
        ({**_once("o9"), "page": "index"}, 47001, "unknown fields ['page']"),
        ({**_once("o9"), "data": {"content": "flat"}}, 47001, "data must be"),
    ],
)
def test_one_time_messages_that_break_the_rules_are_refused(standin: WeChatStandIn, receiver: Receiver,
                                                            body: dict[str, Any], errcode: int, errmsg: str) -> None:
    standin.user_authorise_once("o9", _link(receiver))
    answer = _post(standin, "/cgi-bin/message/template/subscribe", _token(standin), body)
    assert answer["errcode"] == errcode and errmsg in answer["errmsg"]
    assert len(standin.violations) == 1 and standin.inbox("o9") == []
    assert _subscribe_once(standin, _token(standin), _once("o9")) == 0  # the authorisation was not used up


# --- the clock, the window and users who leave -------------------------------------------------------


def _custom(standin: WeChatStandIn, token: str, openid: str) -> int:
    body = {"touser": openid, "msgtype": "text", "text": {"content": "您好"}}
    return int(_post(standin, "/cgi-bin/message/custom/send", token, body)["errcode"])


def test_time_passes_on_the_standins_clock(standin: WeChatStandIn) -> None:
    standin.interacted("o10")
    token = _token(standin)
    standin.advance(hours=2)
    assert _custom(standin, token, "o10") == 42001  # the token lived 7200 s
    standin.advance(hours=45)
    assert _custom(standin, _token(standin), "o10") == 0
    standin.advance(hours=1, minutes=1)
    assert _custom(standin, _token(standin), "o10") == 45015  # the resident last wrote 48 h 1 min ago
    standin.interacted("o10")
    assert _custom(standin, _token(standin), "o10") == 0
    with pytest.raises(ValueError):
        standin.advance(days=-1)


def test_events_open_a_one_minute_window_and_only_some_do(standin: WeChatStandIn) -> None:
    token = _token(standin)
    standin.send_event("o11", "VIEW", "https://example.org").wait()
    assert _custom(standin, token, "o11") == 45015
    standin.user_follow("o11").wait()
    assert [_custom(standin, token, "o11") for _ in range(4)] == [0, 0, 0, 45047]
    standin.send_text("o11", "我还有补充").wait()  # the message's own window: 5 more within 48 hours
    assert [_custom(standin, token, "o11") for _ in range(6)] == [0] * 5 + [45047]
    standin.user_follow("o11").wait()
    standin.advance(minutes=2)
    assert _custom(standin, token, "o11") == 45047  # the event window closed, the message window is used up


def test_a_user_who_unfollowed(standin: WeChatStandIn, receiver: Receiver) -> None:
    token = _token(standin)
    standin.send_text("o12", "你好").wait()
    standin.user_subscribe("o12", accept=[ACCEPTED]).wait()
    standin.user_unfollow("o12").wait()
    assert len(receiver.events("unsubscribe")) == 1 and not standin.follows("o12")
    assert _custom(standin, token, "o12") == 43004
    assert _bizsend(standin, token, _notice("o12")) == 0
    assert standin.inbox("o12")[-1].place == "service_notifications"
    with pytest.raises(AssertionError, match="does not follow"):
        standin.send_text("o12", "还在吗")
    standin.user_follow("o12").wait()
    assert _custom(standin, token, "o12") == 0 and standin.inbox("o12")[-1].kind == "text"


def test_the_notice_apis_check_the_token_and_take_faults(standin: WeChatStandIn, receiver: Receiver) -> None:
    standin.user_subscribe("o13", accept=[ACCEPTED]).wait()
    standin.user_authorise_once("o13", _link(receiver))
    assert _bizsend(standin, "bogus", _notice("o13")) == 40001
    assert _subscribe_once(standin, "bogus", _once("o13")) == 40001
    token = _token(standin)
    standin.fail_next("/cgi-bin/message/subscribe/bizsend", errcode=-1)
    standin.fail_next("/cgi-bin/message/template/subscribe", status=502)
    assert _bizsend(standin, token, _notice("o13")) == -1
    assert httpx.post(f"{standin.root_url}/cgi-bin/message/template/subscribe", params={"access_token": token},
                      content=json.dumps(_once("o13")).encode()).status_code == 502
    assert standin.inbox("o13") == []  # a failed call has no effect: the consents are still there
    assert (_bizsend(standin, token, _notice("o13")), _subscribe_once(standin, token, _once("o13"))) == (0, 0)
    assert [m.kind for m in standin.inbox("o13")] == ["subscribe_notice", "template_subscribe_once"]
    standin.expire_tokens()
    assert httpx.get(f"{standin.root_url}/wxaapi/newtmpl/gettemplate",
                     params={"access_token": token}).json()["errcode"] == 42001
