"""Webhook updates delivered twice, at once, late and out of order: no duplicate case, no duplicate
reply, and a stale update gets a sensible answer and changes nothing.

Telegram in webhook mode: the test posts the updates itself, with the secret header, as Telegram
does when it retries (the stand-in makes them, so the bot's calls about them stay checkable).
WeChat: the stand-in delivers one message and, while it is being handled, the same MsgId again."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.channels.test_telegram import Chat
from tests.channels.test_wechat import User
from tests.conftest import LiveService
from tests.faults.conftest import (
    DESCRIPTION,
    SUBMITTED,
    Database,
    message_id_with,
    post_update,
    receipt_code,
    service_env,
    texts_with,
    to_summary,
)
from tests.standins.telegram_server import TelegramStandIn
from tests.standins.wechat_server import WeChatStandIn

STALE = "已失效"


def test_telegram_webhook_duplicates_and_late_updates(
        telegram: TelegramStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    service = services(tmp_path / "service", service_env(None, telegram=telegram), webhook=True)
    service.start()
    database = Database(f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}")
    try:
        chat = Chat(telegram, 8101)
        to_summary(chat)
        summary_id = message_id_with(chat, "请核对举报内容")

        # An old button press after the dialog moved on: refused, the summary is asked again, unchanged.
        telegram.press_button(chat.chat_id, "district:furong", message_id=message_id_with(chat, "第1步"))
        chat.expect(STALE)
        summary = chat.expect("请核对举报内容")
        assert "岳麓区" in summary and "芙蓉区" not in summary

        # The resident taps submit twice; Telegram sends the second tap three times at once (retrying).
        first = telegram.press_button(chat.chat_id, "summary:submit", message_id=summary_id, deliver=False)
        second = telegram.press_button(chat.chat_id, "summary:submit", message_id=summary_id, deliver=False)
        assert first < second
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: post_update(service, telegram.update(second)), range(3)))
        assert [a.status_code for a in answers] == [200, 200, 200]
        code = receipt_code(chat.expect(SUBMITTED))
        # Then the first tap arrives, late: its update_id is lower than one already handled.
        assert post_update(service, telegram.update(first)).status_code == 200
        chat.expect(STALE)
        # And the second tap once more, much later.
        assert post_update(service, telegram.update(second)).status_code == 200

        chat.say(f"/status {code}", expect="当前状态")  # answered after everything above
        assert len(texts_with(chat, SUBMITTED)) == 1
        assert len(texts_with(chat, STALE)) == 2
        assert database.cases() == 1
        assert database.scalar("SELECT count(*) FROM trace_events WHERE kind = 'received'") == 1
    finally:
        database.close()


def test_wechat_the_same_message_twice_at_once_and_again_later(
        wechat: WeChatStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    service = services(tmp_path / "service", service_env(None, wechat=wechat))
    service.start()
    wechat.callback_url = f"{service.url}/wechat"
    database = Database(f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}")
    try:
        user = User(wechat, "oQL_redelivery_x2kT9aYw8bVc")
        user.say("/report", expect="第1步")
        user.say("3", expect="第2步")
        district = user.last
        assert district is not None
        user.say("岳麓区政务服务中心3号窗口", expect="第3步")
        user.say("今天", expect="第4步")
        user.say(DESCRIPTION, expect="第5步")
        user.say("1", expect="第6步")
        user.say("1", expect="请核对举报内容")

        # "1" (submit), and the same MsgId again while the first delivery is being handled.
        submit = wechat.send_text(user.openid, "1")
        again = wechat.redeliver(submit)
        outcomes = sorted([submit.wait().outcome, again.wait().outcome])
        assert outcomes == ["passive", "success"], outcomes
        code = receipt_code(user.expect(SUBMITTED))
        # Much later, WeChat delivers an old message once more (the district answer): nothing happens.
        assert wechat.redeliver(district).wait().outcome == "success"
        user.say(f"/status {code}", expect="当前状态")

        received = [m.text for m in wechat.inbox(user.openid)]
        assert sum(SUBMITTED in text for text in received) == 1, received
        assert database.cases() == 1
        assert database.scalar("SELECT district FROM cases") == "yuelu"
    finally:
        database.close()
