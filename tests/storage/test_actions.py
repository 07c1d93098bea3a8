"""Storage actions against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storage import actions, evidence_rows
from storage.models import Attachment, Case, CaseStatus, Conversation, OutboxMessage, TraceEvent, utcnow
from storage.receipts import format_receipt_code, parse_receipt_code
from tests.factories import SECRET_KEY, file_case

KEY = SECRET_KEY


async def test_submitting_stores_the_routed_case_its_trace_and_staff_notices_with_a_hashed_receipt(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, code = await file_case(session, queue="clean_hall", label="slow_service", confidence=0.91,
                                     staff_targets=[("telegram", "-100200")])
        # written by the action itself, before the transaction ends
        in_transaction = list((await session.execute(select(TraceEvent.kind).order_by(TraceEvent.id))).scalars())
    assert re.fullmatch(r"\d{16}", code)
    assert re.fullmatch(r"QL-2026-\d{6}", case.case_number or "")
    async with sessionmaker() as session:
        stored = (await session.execute(select(Case))).scalar_one()
        events = list((await session.execute(select(TraceEvent.kind).order_by(TraceEvent.id))).scalars())
        notices = list((await session.execute(select(OutboxMessage))).scalars())
        raw_rows = (await session.execute(text("SELECT * FROM cases"))).all()
    assert (stored.queue, stored.status, stored.label, stored.predicted_label) == (
        "clean_hall", "routed", "slow_service", "slow_service")
    assert stored.case_number == case.case_number and stored.routed_at is not None
    assert in_transaction == events == ["received", "routed"]
    assert [(m.channel, m.recipient, m.payload["notice"], m.payload["case_number"]) for m in notices] == [
        ("telegram", "-100200", "new_case", case.case_number)]
    assert all(code not in str(value) for row in raw_rows for value in row)
    assert stored.receipt_code_hash != code


async def test_receipt_code_finds_the_case_and_a_wrong_one_does_not(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, code = await file_case(session)
    wrong = f"{(int(code) + 1) % 10**16:016d}"
    async with sessionmaker() as session:
        found = await actions.find_case_by_receipt(session, KEY, code)
        missing = await actions.find_case_by_receipt(session, KEY, wrong)
        other_key = await actions.find_case_by_receipt(session, b"x" * 32, code)
    assert found is not None and found.id == case.id
    assert [event.kind for event in found.trace] == ["received", "routed"]
    assert missing is None and other_key is None


def test_receipt_code_formats_and_parses() -> None:
    assert format_receipt_code("1234567890123456") == "1234 5678 9012 3456"
    assert parse_receipt_code("1234 5678 9012 3456") == "1234567890123456"
    assert parse_receipt_code("1234-5678-9012-3456") == "1234567890123456"
    assert parse_receipt_code("１２３４５６７８９０１２３４５６") == "1234567890123456"
    assert parse_receipt_code("123456789012345") is None
    assert parse_receipt_code("12345678901234567") is None
    assert parse_receipt_code("abcd 5678 9012 3456") is None


async def test_a_redelivered_update_is_claimed_only_once(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        first = await actions.claim_update(session, "telegram", "1001")
    async with sessionmaker.begin() as session:
        second = await actions.claim_update(session, "telegram", "1001")
        other_channel = await actions.claim_update(session, "wechat", "1001")
    assert (first, second, other_channel) == (True, False, True)


async def test_a_callback_pair_is_claimed_again_only_with_its_first_body(sessionmaker: Any) -> None:
    async def claim(nonce: str, digest: str | None) -> bool:
        async with sessionmaker.begin() as session:
            return await actions.claim_callback(session, "wechat", "1765000000", nonce, digest)

    first, resent, other_body, no_body = [await claim("123", d) for d in ("a" * 64, "a" * 64, "b" * 64, None)]
    other_pair = await claim("124", "b" * 64)
    assert (first, resent, other_body, no_body, other_pair) == (True, True, False, False, True)


async def test_conversation_is_created_once_per_user_and_channel(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        first = await actions.load_conversation(session, "telegram", "7")
        first.state = "place"
        first.draft = {"place": "某单位", "when": "today"}
        await actions.finish_step(session, first)
    async with sessionmaker.begin() as session:
        again = await actions.load_conversation(session, "telegram", "7")
        web = await actions.load_conversation(session, "web", "7")
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Conversation))
    assert again.id == first.id and again.state == "place" and again.draft == {"place": "某单位", "when": "today"}
    assert again.draft_updated_at is None and again.locale is None and again.user_ref == "7"
    assert web.id != first.id and web.state == "idle" and web.draft == {} and count == 2


async def test_attachments_of_a_draft_move_to_the_case_on_submit(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "web", "u1")
        attachment = await evidence_rows.add_draft_attachment(
            session, conversation, stored_name="2026/11/a.jpg", original_name="a.jpg",
            media_type="image/jpeg", size_bytes=10, sha256="0" * 64,
        )
        case, _ = await file_case(session, attachment_ids=[attachment.id])
    async with sessionmaker() as session:
        stored = await session.get(Attachment, attachment.id)
    assert stored is not None and stored.case_id == case.id


async def test_a_follow_up_taken_back_is_gone_from_the_trace_and_the_unread_mark(sessionmaker: Any) -> None:
    """The first part of a text the reporter's app cut, added and then taken back for the whole: the trace keeps
    the rest; only a reporter's follow-up is ever taken back; the case is unread while a follow-up remains."""
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session)
    async with sessionmaker.begin() as session:
        loaded = await actions.get_case(session, case.id)
        assert loaded is not None
        earlier = await actions.add_follow_up(session, loaded, text="补充：当天下午3点")
        part = await actions.add_follow_up(session, loaded, text="补充：窗口人员一直玩手机。" * 200)
        routed = next(event.id for event in loaded.trace if event.kind == "routed")
    async with sessionmaker.begin() as session:
        await actions.withdraw_follow_up(session, part.id)
        await actions.withdraw_follow_up(session, routed)  # not a follow-up: stays
    async with sessionmaker() as session:
        after_one = await actions.get_case(session, case.id)
    async with sessionmaker.begin() as session:
        await actions.withdraw_follow_up(session, earlier.id)
    async with sessionmaker() as session:
        after_both = await actions.get_case(session, case.id)
    assert after_one is not None and after_both is not None
    assert [(event.kind, event.body) for event in after_one.trace] == [
        ("received", None), ("routed", None), ("follow_up", "补充：当天下午3点")]
    assert after_one.unread_since is not None and after_both.unread_since is None
    assert [event.kind for event in after_both.trace] == ["received", "routed"]


async def test_follow_up_rating_and_status_changes_write_trace_and_outbox(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session)
    async with sessionmaker.begin() as session:
        loaded = await actions.get_case(session, case.id)
        assert loaded is not None
        await actions.add_follow_up(session, loaded, text="补充：当天下午3点")
        with pytest.raises(actions.ActionError):
            await actions.rate_case(session, loaded, 5)
        await actions.change_status(session, loaded, CaseStatus.ACCEPTED, actor="staff:1")
        await actions.reply_to_reporter(session, loaded, "经核查，已对该工作人员批评教育。", actor="staff:1")
        await actions.change_status(session, loaded, CaseStatus.CLOSED, actor="staff:1")
    async with sessionmaker.begin() as session:
        loaded = await actions.get_case(session, case.id)
        assert loaded is not None
        with pytest.raises(actions.ActionError):
            await actions.add_follow_up(session, loaded, text="还想补充")
        await actions.rate_case(session, loaded, 4)
        with pytest.raises(actions.ActionError):
            await actions.rate_case(session, loaded, 5)
    async with sessionmaker() as session:
        final = await actions.get_case(session, case.id)
        outbox = list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
    assert final is not None
    assert [event.kind for event in final.trace] == [
        "received", "routed", "follow_up", "accepted", "answered", "closed", "rated",
    ]
    assert final.status == "closed" and final.rating == 4 and final.closed_at is not None
    assert [m.payload["notice"] for m in outbox] == ["status_changed", "answer", "status_changed"]
    assert all(m.recipient == "42" and m.channel == "telegram" for m in outbox)


async def test_wrong_codes_are_counted_per_user_within_the_window(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for _ in range(3):
            await actions.record_wrong_code(session, "telegram", "9")
        await actions.record_wrong_code(session, "telegram", "10")
    since = utcnow() - timedelta(minutes=10)
    async with sessionmaker() as session:
        nine, oldest = await actions.recent_wrong_codes(session, "telegram", "9", since)
        later, none = await actions.recent_wrong_codes(session, "telegram", "9", utcnow() + timedelta(seconds=1))
    assert (nine, later, none) == (3, 0, None)
    assert oldest is not None and since < oldest <= utcnow()
