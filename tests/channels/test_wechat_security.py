"""WeChat safe mode held against an attacker on the network: no downgrade to plaintext, no replayed
callback, and receipt-code guesses counted per source address even when the openids rotate."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.channels.test_wechat import AES_KEY, APP_ID, APP_SECRET, TOKEN, User, running_standin
from tests.conftest import LiveService, city_file, make_test_keyring
from tests.standins.wechat_server import WeChatStandIn

GUESSES_PER_SOURCE = 3


@pytest.fixture(scope="module")
def standin() -> Iterator[WeChatStandIn]:
    with running_standin(encoding_aes_key=AES_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def service(standin: WeChatStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """Safe mode as an operator sets it up: an AES key, and no plaintext compatibility setting."""
    data_dir = tmp_path_factory.mktemp("wechat-safe")
    live = LiveService(data_dir, {
        "QINGLIAN_WECHAT_TOKEN": TOKEN, "QINGLIAN_WECHAT_APP_ID": APP_ID, "QINGLIAN_WECHAT_APP_SECRET": APP_SECRET,
        "QINGLIAN_WECHAT_AES_KEY": AES_KEY, "QINGLIAN_WECHAT_API_URL": standin.root_url,
        "QINGLIAN_CONFIG_FILE": str(city_file(data_dir,
                                              {"status_wrong_codes_per_platform_address": GUESSES_PER_SOURCE})),
    })
    live.start()
    standin.callback_url = f"{live.url}/wechat"
    yield live
    live.stop()


_openids = iter(range(5000, 6000))


def _user(standin: WeChatStandIn) -> User:
    return User(standin, f"oQL_{next(_openids)}_s3cUr1tyTst", "safe")


def _conversation(service: LiveService, openid: str) -> tuple[str, str]:
    with sqlite3.connect(service.data_dir / "qinglian.db") as db:
        row = db.execute("SELECT state, draft FROM conversations WHERE channel = 'wechat' AND user_key = ?",
                         (make_test_keyring().pseudonym("wechat", openid),)).fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def test_a_plaintext_callback_cannot_read_or_cancel_a_safe_mode_residents_draft(standin: WeChatStandIn,
                                                                                service: LiveService) -> None:
    victim = _user(standin)
    victim.say("/report", expect="第1步")
    victim.say("3", expect="第2步")
    victim.say("岳麓区政务服务中心3号窗口", expect="第3步")
    victim.say("今天", expect="第4步")
    victim.say("窗口工作人员索要好处费，不给就不办理营业执照的变更登记。", expect="第5步")
    victim.say("1", expect="第6步")
    victim.say("2", expect="您的姓名")
    victim.say("王小明", expect="手机号码")
    victim.say("13912345678", expect="请核对举报内容")
    state_before = _conversation(service, victim.openid)
    inbox_before = len(standin.inbox(victim.openid))

    # The attacker copied timestamp, nonce and signature from a callback URL and sends plaintext XML in the
    # victim's name: the signature covers only the token, timestamp and nonce, so it verifies.
    for content in ("/status", "3"):  # 3 = cancel at the summary
        fields: dict[str, str | int] = {"ToUserName": standin.account_id, "FromUserName": victim.openid,
                                        "CreateTime": int(time.time()), "MsgType": "text", "Content": content,
                                        "MsgId": 7770000 + len(content)}
        params, body = standin.callback_request(fields, mode="plaintext")
        answer = httpx.post(f"{service.url}/wechat", params=params, content=body)
        assert answer.status_code == 403
        assert "王小明" not in answer.text and "139" not in answer.text and "索要好处费" not in answer.text
    assert _conversation(service, victim.openid) == state_before
    assert len(standin.inbox(victim.openid)) == inbox_before
    victim.say("1", expect="举报已提交")  # the victim's own safe-mode message still works


def test_a_callback_pair_is_accepted_with_one_body_only(standin: WeChatStandIn, service: LiveService) -> None:
    """WeChat resends a request it got no answer to within 5 s: the same (timestamp, nonce) with the same body is
    let through and its message handled once; the pair with any other body is a replay and refused."""
    user = _user(standin)
    user.say("/report", expect="第1步")
    fields: dict[str, str | int] = {"ToUserName": standin.account_id, "FromUserName": user.openid,
                                    "CreateTime": int(time.time()), "MsgType": "text", "Content": "3",
                                    "MsgId": 7781234}
    params, body = standin.callback_request(fields, mode="safe")
    first = httpx.post(f"{service.url}/wechat", params=params, content=body)
    assert first.status_code == 200
    state = _conversation(service, user.openid)
    assert state[0] == "place"  # district chosen: the report is at its second step
    with ThreadPoolExecutor(2) as pool:  # WeChat's retries, one of them while another is still answered
        retries = list(pool.map(lambda _: httpx.post(f"{service.url}/wechat", params=params, content=body),
                                range(2)))
    assert [retry.status_code for retry in retries] == [200, 200]
    assert _conversation(service, user.openid) == state  # "3" was not taken a second time (as the place)
    # the same (timestamp, nonce) again, with another message sealed for it: refused
    replay_fields = {**fields, "Content": "/cancel", "MsgId": 7781235}
    replay_params, replay_body = standin.callback_request(replay_fields, mode="safe", timestamp=params["timestamp"],
                                                          nonce=params["nonce"])
    replayed = httpx.post(f"{service.url}/wechat", params=replay_params, content=replay_body)
    assert replayed.status_code == 403
    assert _conversation(service, user.openid) == state
    user.say("岳麓区政务服务中心3号窗口", expect="第3步")  # the resident goes on as if nothing happened


def test_receipt_guesses_are_counted_per_source_address_across_openids(standin: WeChatStandIn,
                                                                      service: LiveService) -> None:
    answers = []
    for number in range(GUESSES_PER_SOURCE + 2):
        guesser = _user(standin)  # a fresh openid each time, as a forger would rotate them
        answers.append(guesser.say(f"/status 1234 5678 9012 {3000 + number:04d}", expect="。"))
    assert all("没有找到" in answer for answer in answers[:GUESSES_PER_SOURCE])
    assert all("次数过多" in answer for answer in answers[GUESSES_PER_SOURCE:]), answers
