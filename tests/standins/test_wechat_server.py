"""The stand-in WeChat platform answers like WeChat: tokens, customer-service rules, menus, replies."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.standins.wechat_server import ReplyProblem, WeChatStandIn, build_callback, encrypt, open_reply

APP_ID = "wx51a0c7e2d4b3f6a8"
SECRET = "s" * 32
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture
def standin() -> Iterator[WeChatStandIn]:
    server = WeChatStandIn(token="tok3n", app_id=APP_ID, app_secret=SECRET, encoding_aes_key=AES_KEY)
    server.start()
    yield server
    server.stop()


def _token(standin: WeChatStandIn) -> str:
    answer = httpx.get(f"{standin.root_url}/cgi-bin/token",
                       params={"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}).json()
    assert answer["expires_in"] == 7200
    return str(answer["access_token"])


def _send(standin: WeChatStandIn, token: str, body: object) -> int:
    answer = httpx.post(f"{standin.root_url}/cgi-bin/message/custom/send", params={"access_token": token},
                        content=json.dumps(body, ensure_ascii=False).encode())
    return int(answer.json()["errcode"])


def _text(openid: str, content: str = "你好") -> dict[str, object]:
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


def test_token_endpoint_checks_the_credentials(standin: WeChatStandIn) -> None:
    url = f"{standin.root_url}/cgi-bin/token"
    wrong_app = httpx.get(url, params={"grant_type": "client_credential", "appid": "wx0", "secret": SECRET}).json()
    wrong_secret = httpx.get(url, params={"grant_type": "client_credential", "appid": APP_ID, "secret": "x"}).json()
    assert (wrong_app["errcode"], wrong_secret["errcode"]) == (40013, 40125)
    assert _token(standin) != _token(standin)
    assert standin.token_requests == 4


def test_customer_service_rules(standin: WeChatStandIn) -> None:
    token = _token(standin)
    assert _send(standin, "bogus", _text("o1")) == 40001
    assert _send(standin, token, _text("o_never_wrote")) == 40003
    standin.interacted("o1")
    assert [_send(standin, token, _text("o1")) for _ in range(6)] == [0, 0, 0, 0, 0, 45047]
    assert _send(standin, token, {"touser": "o1", "msgtype": "text", "text": "flat"}) == 47001
    assert _send(standin, token, _text("o1", "长" * 700)) == 45002
    standin.age_interaction("o1", hours=49)
    assert _send(standin, token, _text("o1")) == 45015
    standin.expire_tokens()
    assert _send(standin, token, _text("o1")) == 42001
    assert len(standin.violations) == 2


def test_a_new_token_retires_the_old_one_after_the_grace_period(standin: WeChatStandIn) -> None:
    standin.token_grace = 0.0
    standin.interacted("o1")
    old = _token(standin)
    new = _token(standin)
    assert (_send(standin, old, _text("o1")), _send(standin, new, _text("o1"))) == (40001, 0)


def test_menu_rules(standin: WeChatStandIn) -> None:
    token = _token(standin)
    url = f"{standin.root_url}/cgi-bin/menu/create"
    good = {"button": [{"type": "click", "name": "我要举报", "key": "REPORT"}]}
    too_long = {"button": [{"type": "click", "name": "📝 我要举报", "key": "REPORT"}]}
    answers = [httpx.post(url, params={"access_token": token}, content=json.dumps(body, ensure_ascii=False)
                          .encode()).json()["errcode"] for body in (good, too_long)]
    escaped = httpx.post(url, params={"access_token": token}, content=json.dumps(good).encode()).json()["errcode"]
    assert (answers, escaped) == ([0, 40016], 0)
    assert len(standin.violations) == 2 and "escapes" in standin.violations[1]


def test_replies_are_checked_like_wechat_checks_them() -> None:
    fields: dict[str, str | int] = {"ToUserName": "gh_1", "FromUserName": "o1", "CreateTime": 1, "MsgType": "text",
                                    "Content": "hi", "MsgId": 1}
    params, body = build_callback(fields, token="tok3n", mode="safe", encoding_aes_key=AES_KEY, app_id=APP_ID)
    # the plaintext is not in the body (a bare b"hi" can occur in the random ciphertext's base64)
    assert params["encrypt_type"] == "aes" and b"<Encrypt>" in body and b"<Content>" not in body
    plain_reply = "<xml><ToUserName><![CDATA[o1]]></ToUserName><Content><![CDATA[x]]></Content></xml>"
    assert open_reply(plain_reply, token="tok3n", safe=False)["Content"] == "x"
    with pytest.raises(ReplyProblem, match="plaintext reply"):
        open_reply(plain_reply, token="tok3n", safe=True, encoding_aes_key=AES_KEY, app_id=APP_ID)
    forged = (f"<xml><Encrypt>{encrypt(AES_KEY, APP_ID, plain_reply)}</Encrypt><MsgSignature>0</MsgSignature>"
              "<TimeStamp>1</TimeStamp><Nonce>2</Nonce></xml>")
    with pytest.raises(ReplyProblem, match="MsgSignature"):
        open_reply(forged, token="tok3n", safe=True, encoding_aes_key=AES_KEY, app_id=APP_ID)


def test_faults_answer_late_and_change_nothing(standin: WeChatStandIn) -> None:
    token = _token(standin)
    standin.interacted("o1")
    standin.fail_next("/cgi-bin/message/custom/send", status=504, delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{standin.root_url}/cgi-bin/message/custom/send", params={"access_token": token},
                   content=json.dumps(_text("o1")).encode(), timeout=0.3)
    standin.fail_next("/cgi-bin/message/custom/send", status=429)
    assert httpx.post(f"{standin.root_url}/cgi-bin/message/custom/send", params={"access_token": token},
                      content=json.dumps(_text("o1")).encode()).status_code == 429
    assert standin.custom_messages("o1") == []
    assert _send(standin, token, _text("o1")) == 0
    assert [m["text"]["content"] for m in standin.custom_messages("o1")] == ["你好"]
