"""Storage actions against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storage import actions
from storage.models import Attachment, Case, CaseStatus, Conversation, OutboxMessage, TraceEvent, utcnow
from storage.receipts import format_receipt_code, parse_receipt_code

KEY = b"k" * 32


async def _file(session: Any, **overrides: Any) -> tuple[Case, str]:
    fields: dict[str, Any] = dict(
        secret_key=KEY, case_number_prefix="QL", year=2026, channel="telegram", reporter_ref="42",
        locale="zh", district="yuelu", place="岳麓区政务服务中心", occurred="今天",
        description="窗口工作人员擅离岗位两个小时", anonymous=True, reporter_name=None, reporter_phone=None,
        attachment_ids=[], triage_queue="triage",
    )
    fields.update(overrides)
    return await actions.file_report(session, **fields)


async def test_filing_stores_case_and_first_trace_event_with_hashed_receipt(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, code = await _file(session)
    assert re.fullmatch(r"\d{16}", code)
    assert re.fullmatch(r"QL-2026-\d{6}", case.case_number)
    async with sessionmaker() as session:
        stored = (await session.execute(select(Case))).scalar_one()
        events = list((await session.execute(select(TraceEvent.kind))).scalars())
        raw_rows = (await session.execute(text("SELECT * FROM cases"))).all()
    assert stored.queue == "triage"
    assert events == ["received"]
    assert all(code not in str(value) for row in raw_rows for value in row)
    assert stored.receipt_code_hash != code


async def test_receipt_code_finds_the_case_and_a_wrong_one_does_not(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, code = await _file(session)
    wrong = f"{(int(code) + 1) % 10**16:016d}"
    async with sessionmaker() as session:
        found = await actions.find_case_by_receipt(session, KEY, code)
        missing = await actions.find_case_by_receipt(session, KEY, wrong)
        other_key = await actions.find_case_by_receipt(session, b"x" * 32, code)
    assert found is not None and found.id == case.id
    assert [event.kind for event in found.trace] == ["received"]
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


async def test_conversation_is_created_once_per_user_and_channel(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        first = await actions.load_conversation(session, "telegram", "7")
        first.state = "place"
        first.draft = {"place": "某单位", "when": "today"}
        await actions.save_conversation(session, first)
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
        attachment = await actions.add_draft_attachment(
            session, conversation, stored_name="2026/11/a.jpg", original_name="a.jpg",
            media_type="image/jpeg", size_bytes=10, sha256="0" * 64,
        )
        case, _ = await _file(session, attachment_ids=[attachment.id])
    async with sessionmaker() as session:
        stored = await session.get(Attachment, attachment.id)
    assert stored is not None and stored.case_id == case.id


async def test_follow_up_rating_and_status_changes_write_trace_and_outbox(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await _file(session)
        await actions.route_case(session, case, queue="clean_hall", reason="label", label="slow_service",
                                 confidence=0.91)
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
        nine = await actions.count_recent_wrong_codes(session, "telegram", "9", since)
        later = await actions.count_recent_wrong_codes(session, "telegram", "9", utcnow() + timedelta(seconds=1))
    assert (nine, later) == (3, 0)


async def test_outbox_claims_in_order_and_holds_a_recipients_later_messages(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for n in range(3):
            await actions.enqueue_message(session, channel="telegram", recipient="A", payload={"text": f"a{n}"})
        await actions.enqueue_message(session, channel="telegram", recipient="B", payload={"text": "b0"})
        await actions.enqueue_message(session, channel="web", recipient="C", payload={"text": "c0"})
    async with sessionmaker.begin() as session:
        leased = await actions.lease_outbox(session, channels=["telegram"], limit=10, lease=timedelta(0))
        assert [payload["text"] for _, _, _, payload in leased] == ["a0", "a1", "a2", "b0"]
        ids = {payload["text"]: message_id for message_id, _, _, payload in leased}
        await actions.mark_sent_many(session, [ids["b0"]])
        first = await session.get(OutboxMessage, ids["a0"])
        assert first is not None
        actions.mark_retry(first, error="flood", delay=timedelta(seconds=30))
    async with sessionmaker.begin() as session:
        again = await actions.lease_outbox(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    assert again == []
    async with sessionmaker.begin() as session:
        await actions.enqueue_message(session, channel="telegram", recipient="D", payload={"text": "d0"})
    async with sessionmaker.begin() as session:
        taken = await actions.lease_outbox(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    async with sessionmaker.begin() as session:
        taken_again = await actions.lease_outbox(session, channels=["telegram"], limit=10, lease=timedelta(seconds=60))
    assert [payload["text"] for _, _, _, payload in taken] == ["d0"] and taken_again == []  # leased: not taken twice
    async with sessionmaker.begin() as session:
        web = await actions.take_web_messages(session, "C")
        web_again = await actions.take_web_messages(session, "C")
    assert [m.payload["text"] for m in web] == ["c0"] and web_again == []


async def test_a_scheduled_job_runs_once_per_period(sessionmaker: Any) -> None:
    period = utcnow() - timedelta(hours=1)
    results = []
    for _ in range(3):
        async with sessionmaker.begin() as session:
            results.append(await actions.claim_scheduled_run(session, "daily_digest", period))
    async with sessionmaker.begin() as session:
        next_period = await actions.claim_scheduled_run(session, "daily_digest", utcnow() + timedelta(seconds=1))
    assert results == [True, False, False] and next_period is True
