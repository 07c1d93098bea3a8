"""The outbox's storage actions against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from storage import actions, housekeeping, outbox
from storage.models import Conversation, OutboxMessage, utcnow


async def test_outbox_claims_in_order_and_holds_a_recipients_later_messages(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for n in range(3):
            await outbox.enqueue(session, channel="telegram", recipient="A", payload={"text": f"a{n}"})
        await outbox.enqueue(session, channel="telegram", recipient="B", payload={"text": "b0"})
        await outbox.enqueue(session, channel="web", recipient="C", payload={"text": "c0"})
    async with sessionmaker.begin() as session:
        leased = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(0))
        assert [payload["text"] for _, _, _, payload, _ in leased] == ["a0", "a1", "a2", "b0"]
        ids = {payload["text"]: message_id for message_id, _, _, payload, _ in leased}
        await outbox.mark_sent(session, [ids["b0"]])
        first = await session.get(OutboxMessage, ids["a0"])
        assert first is not None
        outbox.mark_retry(first, error="flood", delay=timedelta(seconds=30))
    async with sessionmaker.begin() as session:
        again = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    assert again == []
    async with sessionmaker.begin() as session:
        await outbox.enqueue(session, channel="telegram", recipient="D", payload={"text": "d0"})
    async with sessionmaker.begin() as session:
        taken = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    async with sessionmaker.begin() as session:
        taken_again = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    assert [payload["text"] for _, _, _, payload, _ in taken] == ["d0"] and taken_again == []  # leased: not taken twice
    async with sessionmaker.begin() as session:
        web = await outbox.take_web_messages(session, "C")
        web_again = await outbox.take_web_messages(session, "C")
    assert [payload["text"] for payload in web] == ["c0"] and web_again == []


async def test_a_delivered_message_keeps_nothing_of_what_it_said_and_is_pruned_later(sessionmaker: Any) -> None:
    receipt = "1234 5678 9012 3456"
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", "4242")
        await actions.finish_step(session, conversation, [{"text": f"举报已提交，查询码 {receipt}", "choices": []}])
        await outbox.enqueue(session, channel="telegram", recipient="4242", payload={"text": f"again {receipt}"})
    async with sessionmaker.begin() as session:
        leased = await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
        await outbox.mark_sent(session, [leased[0][0]])
        failed = await outbox.messages(session, [leased[1][0]])
        outbox.mark_failed(failed[leased[1][0]], error="Forbidden: bot was blocked by the user")
    async with sessionmaker() as session:
        rows = list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
    assert [(m.status, m.payload, m.last_error) for m in rows] == [
        ("sent", {}, None),  # the dialog's reply, delivered: emptied
        ("failed", {"text": f"again {receipt}"}, "Forbidden: bot was blocked by the user"),  # a notice: kept
    ]
    async with sessionmaker.begin() as session:
        pruned = await outbox.prune_delivered(session, sent_before=utcnow() + timedelta(seconds=1),
                                              failed_before=utcnow() - timedelta(days=1))
        left = list((await session.execute(select(OutboxMessage.status))).scalars())
    assert (pruned, left) == (1, ["failed"])


async def test_deleting_an_idle_conversation_deletes_every_message_it_produced(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        idle = await actions.load_conversation(session, "telegram", "old-resident")
        await actions.finish_step(session, idle, [{"text": "请核对：王小明 139****5678", "choices": []}] * 2)
        drafting = await actions.load_conversation(session, "telegram", "drafting-resident")
        drafting.draft, drafting.draft_updated_at = {"step": "place"}, utcnow()
        await actions.finish_step(session, drafting, [{"text": "第2步", "choices": []}])
    async with sessionmaker.begin() as session:
        erased = await housekeeping.erase_idle_conversations(session, utcnow() + timedelta(seconds=1))
    async with sessionmaker() as session:
        kept = list((await session.execute(select(Conversation.user_key))).scalars())
        messages = list((await session.execute(select(OutboxMessage.conversation_id))).scalars())
    assert erased == 1 and len(kept) == 1 and messages == [drafting.id]  # a draft in progress is kept


async def test_a_held_reply_is_answered_passively_only_while_no_worker_has_it(sessionmaker: Any) -> None:
    """A WeChat step's reply is held for the passive answer; once released to the worker, or leased by one
    after its hold ran out, recording it as passively delivered is refused, so it is not sent both ways."""
    hold = timedelta(seconds=10)

    async def held(recipient: str) -> int:
        async with sessionmaker.begin() as session:
            [message_id] = await outbox.enqueue_replies(session, channel="wechat", recipient=recipient,
                                                        conversation_id=None, payloads=[{"text": recipient}],
                                                        hold=hold)
        return message_id

    expired = await held("oQL-expired")
    async with sessionmaker.begin() as session:  # a worker, once the hold has run out
        leased = await outbox.lease(session, channels=["wechat"], limit=10, lease=timedelta(seconds=15),
                                    now=utcnow() + hold)
    assert [row[0] for row in leased] == [expired]
    kept, released = await held("oQL-kept"), await held("oQL-released")
    async with sessionmaker.begin() as session:
        await outbox.release(session, [released])
    answered = []
    for message_id in (kept, released, expired):
        async with sessionmaker.begin() as session:
            answered.append(await outbox.deliver_passively(session, message_id, None, hold=hold))
    assert answered == [True, False, False]
    async with sessionmaker() as session:
        rows = {m.id: m.status for m in (await session.execute(select(OutboxMessage))).scalars()}
    assert rows == {kept: "sent", released: "pending", expired: "pending"}


async def test_only_replies_still_held_are_taken_back(sessionmaker: Any) -> None:
    """A Telegram album's step holds its replies for the next photo's step to take back; replies of another step
    (not held) and replies a worker has leased once the hold ran out stay to be sent."""
    gather = timedelta(seconds=2)
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", "album-resident")
        await actions.finish_step(session, conversation, [{"text": "已收到第 1 个文件", "choices": []}])
        await actions.finish_step(session, conversation, [{"text": "已收到这一组的 1 个文件", "restated": True},
                                                          {"text": "第5步", "restated": True}], hold=gather)
    async with sessionmaker.begin() as session:
        taken = await actions.withdraw_held_replies(session, conversation, gather)
    assert [payload["text"] for payload in taken] == ["已收到这一组的 1 个文件", "第5步"]
    async with sessionmaker.begin() as session:
        [late] = await actions.finish_step(session, conversation, [{"text": "第5步"}], hold=gather)
        await outbox.lease(session, channels=["telegram"], limit=10, lease=timedelta(seconds=15),
                           now=utcnow() + gather)
    async with sessionmaker.begin() as session:
        assert await actions.withdraw_held_replies(session, conversation, gather) == []
    async with sessionmaker() as session:
        left = [m.payload["text"] for m in (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id)))
                .scalars()]
    assert left == ["已收到第 1 个文件", "第5步"] and late
