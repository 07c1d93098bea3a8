"""Notices to residents outside a platform's reply window (`storage.notices`), on SQLite and the PostgreSQL on
127.0.0.1: WeChat consents — one-time subscription accepts add up and are used one per notice, a long-term
subscription lasts and comes first, a one-time message consent holds for its case and scene, withdrawing or a
platform refusal ends them — kept under the resident's pseudonym; the notices waiting for the resident's next
message, taken once and counted as delivered; and the delivery states staff see on the ticket."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storage import actions, notices, outbox
from storage.models import NoticeConsent, OutboxMessage, OutboxStatus
from tests.factories import file_case

WECHAT = "wechat"


async def _usable(session: Any, user_ref: str, case_id: int | None,
                  channel: str = WECHAT) -> list[tuple[str, str, int | None]]:
    """(kind, template, scene) of the consents that allow a notice about `case_id` now, in the module's order."""
    consents = await notices.usable_consents(session, channel=channel, user_ref=user_ref, case_id=case_id)
    return [(consent.kind, consent.template_id, consent.scene) for consent in consents]


async def test_one_time_subscription_accepts_add_up_and_each_notice_uses_one(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for _ in range(2):
            await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.SUBSCRIBE,
                                         template_id="tpl-progress")
    async with sessionmaker.begin() as session:
        assert await _usable(session, "o-resident", None) == [(notices.SUBSCRIBE, "tpl-progress", None)]
        assert await _usable(session, "o-someone-else", None) == []
        assert await _usable(session, "o-resident", None, channel="telegram") == []  # the address is per channel
        consent, = await notices.usable_consents(session, channel=WECHAT, user_ref="o-resident", case_id=7)
        await notices.use_consent(session, consent.id)
    async with sessionmaker.begin() as session:
        assert await _usable(session, "o-resident", None) == [(notices.SUBSCRIBE, "tpl-progress", None)]
        await notices.use_consent(session, consent.id)
    async with sessionmaker.begin() as session:
        assert await _usable(session, "o-resident", None) == []
        await notices.use_consent(session, consent.id)  # nothing left: stays at none
        await notices.use_consent(session, consent.id + 1000)  # gone meanwhile: no error
    async with sessionmaker() as session:
        row = (await session.execute(select(NoticeConsent))).scalar_one()
    assert (row.remaining, row.long_term, row.withdrawn_at) == (0, False, None)
    assert "o-resident" not in row.user_key and len(row.user_key) == 64  # kept under a pseudonym


async def test_a_long_term_subscription_outlasts_its_notices_and_comes_before_one_time_consents(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, channel=WECHAT, reporter_ref="o-resident")
        other, _ = await file_case(session, channel=WECHAT, reporter_ref="o-resident")
        await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.ONCE,
                                     template_id="tpl-once", case_id=case.id, scene=3)
        await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.SUBSCRIBE,
                                     template_id="tpl-progress", long_term=True)
    async with sessionmaker.begin() as session:
        first, second = await notices.usable_consents(session, channel=WECHAT, user_ref="o-resident",
                                                      case_id=case.id)
        assert [(c.kind, c.template_id, c.scene) for c in (first, second)] == [
            (notices.SUBSCRIBE, "tpl-progress", None), (notices.ONCE, "tpl-once", 3)]
        for _ in range(3):
            await notices.use_consent(session, first.id)
    async with sessionmaker() as session:
        assert await _usable(session, "o-resident", case.id) == [
            (notices.SUBSCRIBE, "tpl-progress", None), (notices.ONCE, "tpl-once", 3)]
        # a one-time message is for its own case; the subscription for any
        assert await _usable(session, "o-resident", other.id) == [(notices.SUBSCRIBE, "tpl-progress", None)]
        assert await _usable(session, "o-resident", None) == [(notices.SUBSCRIBE, "tpl-progress", None)]


async def test_a_one_time_message_consent_is_one_per_case_and_scene_and_renewed_once_used(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, channel=WECHAT, reporter_ref="o-resident")
        for _ in range(2):  # authorising again in the same scene does not add a message
            await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.ONCE,
                                         template_id="tpl-once", case_id=case.id, scene=1)
    async with sessionmaker.begin() as session:
        consent, = await notices.usable_consents(session, channel=WECHAT, user_ref="o-resident", case_id=case.id)
        await notices.use_consent(session, consent.id)
    async with sessionmaker.begin() as session:
        assert await _usable(session, "o-resident", case.id) == []
        await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.ONCE,
                                     template_id="tpl-once", case_id=case.id, scene=1)
        await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.ONCE,
                                     template_id="tpl-once", case_id=case.id, scene=2)
    async with sessionmaker() as session:
        assert await _usable(session, "o-resident", case.id) == [
            (notices.ONCE, "tpl-once", 1), (notices.ONCE, "tpl-once", 2)]
        remaining = (await session.execute(select(NoticeConsent.scene, NoticeConsent.remaining)
                                           .order_by(NoticeConsent.id))).all()
    assert [tuple(row) for row in remaining] == [(1, 1), (2, 1)]


async def test_withdrawing_a_template_or_a_platform_refusal_ends_consents_and_a_new_accept_counts_again(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, channel=WECHAT, reporter_ref="o-resident")
        for user_ref in ("o-resident", "o-neighbour"):
            await notices.record_consent(session, channel=WECHAT, user_ref=user_ref, kind=notices.SUBSCRIBE,
                                         template_id="tpl-progress", long_term=True)
        await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.ONCE,
                                     template_id="tpl-progress", case_id=case.id, scene=1)
        await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.SUBSCRIBE,
                                     template_id="tpl-answer")
    async with sessionmaker.begin() as session:
        await notices.withdraw_consent(session, channel=WECHAT, user_ref="o-resident", template_id="tpl-progress")
    async with sessionmaker.begin() as session:
        assert await _usable(session, "o-resident", case.id) == [(notices.SUBSCRIBE, "tpl-answer", None)]
        assert await _usable(session, "o-neighbour", None) == [(notices.SUBSCRIBE, "tpl-progress", None)]
        answer, = await notices.usable_consents(session, channel=WECHAT, user_ref="o-resident", case_id=None)
        await notices.refused(session, answer.id)  # WeChat says the resident refuses it
    async with sessionmaker.begin() as session:
        assert await _usable(session, "o-resident", case.id) == []
        ended = (await session.execute(select(NoticeConsent.template_id, NoticeConsent.remaining).where(
            NoticeConsent.withdrawn_at.is_not(None)).order_by(NoticeConsent.id))).all()
        assert [tuple(row) for row in ended] == [("tpl-progress", 0), ("tpl-progress", 0), ("tpl-answer", 0)]
        await notices.record_consent(session, channel=WECHAT, user_ref="o-resident", kind=notices.SUBSCRIBE,
                                     template_id="tpl-progress", long_term=True)
    async with sessionmaker() as session:
        assert await _usable(session, "o-resident", case.id) == [(notices.SUBSCRIBE, "tpl-progress", None)]


async def test_notices_waiting_for_the_residents_next_message_are_taken_once_oldest_first_as_delivered(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, channel=WECHAT, reporter_ref="o-resident")
        answer = await outbox.enqueue(session, channel=WECHAT, recipient="o-resident", case_id=case.id,
                                      payload={"notice": "answer", "answer": "已整改。"})
        status = await outbox.enqueue(session, channel=WECHAT, recipient="o-resident", case_id=case.id,
                                      payload={"notice": "status_changed", "status": "closed"})
        queued = await outbox.enqueue(session, channel=WECHAT, recipient="o-resident", case_id=case.id,
                                      payload={"notice": "status_changed", "status": "accepted"})
        neighbours = await outbox.enqueue(session, channel=WECHAT, recipient="o-neighbour",
                                          payload={"notice": "answer", "answer": "另案。"})
        for message in (answer, status, neighbours):
            outbox.mark_waiting(message, reason="48 hours passed")
    async with sessionmaker.begin() as session:
        waiting = select(OutboxMessage.id).where(notices.waiting_for(WECHAT, "o-resident")).order_by(OutboxMessage.id)
        assert list((await session.execute(waiting)).scalars()) == [answer.id, status.id]
        taken = await notices.take_waiting(session, WECHAT, "o-resident")
    assert taken == [notices.WaitingNotice(case.id, {"notice": "answer", "answer": "已整改。"}),
                     notices.WaitingNotice(case.id, {"notice": "status_changed", "status": "closed"})]
    async with sessionmaker.begin() as session:
        assert await notices.take_waiting(session, WECHAT, "o-resident") == []  # taken once
        assert await notices.take_waiting(session, "telegram", "o-resident") == []
        rows = {row.id: row for row in (await session.execute(select(OutboxMessage))).scalars()}
    delivered: tuple[Any, ...] = (OutboxStatus.SENT, {}, "delivered with the resident's next message", True)
    assert [(rows[m.id].status, rows[m.id].payload, rows[m.id].last_error, rows[m.id].sent_at is not None)
            for m in (answer, status)] == [delivered, delivered]
    assert (rows[queued.id].status, rows[queued.id].payload) == (OutboxStatus.PENDING,
                                                                 {"notice": "status_changed", "status": "accepted"})
    assert rows[neighbours.id].status == OutboxStatus.WAITING


async def test_the_ticket_shows_each_notice_to_the_reporter_oldest_first_with_its_delivery_state(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        # the queue's staff group is told on Telegram; the reporter wrote on WeChat
        case, _ = await file_case(session, channel=WECHAT, reporter_ref="o-resident",
                                  staff_targets=[("telegram", "-100200300")])
        other, _ = await file_case(session, channel=WECHAT, reporter_ref="o-resident")
        await actions.reply_to_reporter(session, case, "经核实，已整改。", actor="staff:1")
        await actions.reply_to_reporter(session, other, "另案的答复。", actor="staff:1")
        answer, = [m for m in (await session.execute(select(OutboxMessage).where(
            OutboxMessage.case_id == case.id, OutboxMessage.kind == "answer"))).scalars()]
        await outbox.mark_sent(session, [answer.id])
        later = await outbox.enqueue(session, channel=WECHAT, recipient="o-resident", case_id=case.id,
                                     payload={"notice": "status_changed", "status": "closed"})
        outbox.mark_failed(later, error="blocked by the user")
        await outbox.enqueue(session, channel=WECHAT, recipient="o-resident", case_id=case.id,
                             payload={"notice": "status_changed", "status": "closed"})
    async with sessionmaker() as session:
        states = await notices.notice_states(session, case.id)
    assert [(s.notice, s.status, s.reason, s.attempts, s.sent_at is not None) for s in states] == [
        ("answer", "sent", None, 1, True),
        ("status_changed", "failed", "blocked by the user", 1, False),
        ("status_changed", "pending", None, 0, False)]
    assert states[0].created_at <= states[1].created_at <= states[2].created_at


async def test_a_staff_groups_notice_on_the_reporters_channel_is_not_a_message_to_the_reporter(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, channel="telegram", reporter_ref="42",
                                  staff_targets=[("telegram", "-100200300")])
        assert [m.kind for m in (await session.execute(select(OutboxMessage))).scalars()] == ["new_case"]
    async with sessionmaker() as session:
        assert await notices.notice_states(session, case.id) == []
