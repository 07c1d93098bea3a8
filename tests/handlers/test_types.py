"""A reply as the outbox stores it and as a channel reads it back."""

from __future__ import annotations

from handlers.types import Choice, Outbound, Reply


def test_a_reply_with_choices_survives_being_stored_and_read_back() -> None:
    choices = (Choice("when:today", "今天"), Choice("when:week", "最近一周内"))
    question = Outbound("第3步：什么时候？", choices, columns=2)
    stored = question.to_payload()
    assert stored == {"text": "第3步：什么时候？", "choices": [["when:today", "今天"], ["when:week", "最近一周内"]],
                      "columns": 2}
    assert Outbound.from_payload(stored) == question


def test_a_payload_stored_without_choices_or_columns_reads_as_plain_text() -> None:
    assert Outbound.from_payload({"text": "举报已提交"}) == Outbound("举报已提交")
    assert Outbound.from_payload({"text": 42, "choices": None, "columns": "2"}) == Outbound("42")


def test_a_steps_replies_are_stored_one_payload_each_in_order() -> None:
    reply = Reply()
    reply.add("已取消本次举报。")
    reply.add("请选择：", (Choice("menu:report", "我要举报"),), columns=2)
    assert [message.to_payload() for message in reply.messages] == [
        {"text": "已取消本次举报。", "choices": [], "columns": 1},
        {"text": "请选择：", "choices": [["menu:report", "我要举报"]], "columns": 2},
    ]
