"""The case model and what belongs to it, written and read directly on SQLite and the PostgreSQL on 127.0.0.1: a
new case is received, anonymous and unhandled with every counter at zero and its times set; its reporter is
found by the keyed pseudonym of channel and address, filled in when not given; what the reporter wrote (and the
staff's notes, requests and file names) is ciphertext at rest; a case number and a receipt code belong to one
case; the trace and the evidence load only when asked for, in order; removing a case or a staff member takes
their rows along or empties the references to them."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm import selectinload

from storage.crypto import parse_key
from storage.models import (
    Attachment,
    Case,
    CaseStatus,
    ExtensionRequest,
    InternalNote,
    StaffRole,
    StaffUser,
    TraceEvent,
    TraceKind,
    utcnow,
)
from tests.conftest import TEST_PSEUDONYM_KEY, stored_value

PLACE = "岳麓区政务服务中心三号窗口"
OCCURRED = "上周四下午三点"
DESCRIPTION = "窗口工作人员王某某向办事群众索要好处费二百元，不给就拖着不办。"
NAME = "欧阳明远"
PHONE = "13912345678"
CHAT = "tg-5550123456"


def a_case(code: str, **values: Any) -> Case:
    """A case with only what the database requires of one, and `values`."""
    required: dict[str, Any] = {"receipt_code_hash": code, "channel": "telegram", "reporter_ref": CHAT,
                                "locale": "zh", "place": PLACE, "occurred": OCCURRED, "description": DESCRIPTION,
                                "queue": "clean_hall"}
    return Case(**{**required, **values})


def a_staff_member(username: str) -> StaffUser:
    return StaffUser(username=username, display_name=f"{username} 同志", role=StaffRole.REVIEWER,
                     password_hash="not-a-hash")


def pseudonym(channel: str, address: str) -> str:
    return hmac.new(parse_key(TEST_PSEUDONYM_KEY), f"{channel}:{address}".encode(), hashlib.sha256).hexdigest()


async def test_a_new_case_is_received_anonymous_and_unhandled_with_its_counters_at_zero(sessionmaker: Any) -> None:
    before = utcnow()
    async with sessionmaker.begin() as session:
        session.add(a_case("h1"))
    after = utcnow()
    async with sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
        raw_status = (await session.execute(text("SELECT status FROM cases"))).scalar_one()
    assert case.status == CaseStatus.RECEIVED and raw_status == "received"
    assert case.anonymous is True and case.appeal_pending is False
    assert (case.rehandle_count, case.appeal_count, case.transfer_count, case.extension_count,
            case.notices_delivered, case.notices_failed) == (0, 0, 0, 0, 0, 0)
    assert (case.case_number, case.reporter_name, case.reporter_phone, case.label, case.rating, case.assigned_to_id,
            case.routed_at, case.accepted_at, case.closed_at, case.unread_since, case.search_version) == (None,) * 11
    for moment in (case.created_at, case.updated_at):
        assert moment.utcoffset() == timedelta(0) and before <= moment <= after


async def test_the_reporter_is_known_by_the_keyed_pseudonym_of_channel_and_address(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        session.add_all([a_case("h1", channel="telegram"), a_case("h2", channel="wechat"),
                         a_case("h3", reporter_key="erased")])
    async with sessionmaker() as session:
        keys = list((await session.execute(select(Case.reporter_key).order_by(Case.id))).scalars())
    assert keys == [pseudonym("telegram", CHAT), pseudonym("wechat", CHAT), "erased"]
    assert keys[0] != keys[1] and CHAT not in keys[0]


async def test_what_the_reporter_and_the_staff_wrote_is_ciphertext_at_rest_bound_to_its_column(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case = a_case("h1", anonymous=False, reporter_name=NAME, reporter_phone=PHONE,
                      label_terms=[["好处费", 0.8]], label_contrast_terms=[["排队", 0.3]])
        twin = a_case("h2")
        session.add_all([case, twin])
        await session.flush()
        session.add_all([TraceEvent(case_id=case.id, kind=TraceKind.FOLLOW_UP, body="补充：工号0327"),
                         InternalNote(case_id=case.id, body="内部：已调取监控"),
                         ExtensionRequest(case_id=case.id, reason="需要调取银行流水",
                                          resolve_due_at=datetime(2026, 12, 1, tzinfo=UTC)),
                         Attachment(case_id=case.id, stored_name="a1.bin", original_name="收据.jpg",
                                    media_type="image/jpeg", size_bytes=10, sha256="0" * 64)])
    written = {
        "cases.place": PLACE, "cases.occurred": OCCURRED, "cases.description": DESCRIPTION,
        "cases.reporter_name": NAME, "cases.reporter_phone": PHONE, "cases.reporter_ref": CHAT,
        "cases.label_terms": '[["好处费",0.8]]', "cases.label_contrast_terms": '[["排队",0.3]]',
        "trace_events.body": "补充：工号0327", "internal_notes.body": "内部：已调取监控",
        "extension_requests.reason": "需要调取银行流水", "attachments.original_name": "收据.jpg",
    }
    async with sessionmaker() as session:
        for column, plaintext in written.items():
            table, name = column.split(".")
            raw = (await session.execute(text(f"SELECT {name} FROM {table} ORDER BY id"))).scalars().first()
            assert raw.startswith("g1.") and plaintext not in raw, column
            assert stored_value(raw, column) == plaintext, column
        places = list((await session.execute(text("SELECT place FROM cases ORDER BY id"))).scalars())
        assert places[0] != places[1]  # the same place in two cases: no equal ciphertexts to match them by
        read = (await session.execute(select(Case).where(Case.id == case.id))).scalar_one()
        request = (await session.execute(select(ExtensionRequest))).scalar_one()
    assert (read.place, read.occurred, read.description, read.reporter_name, read.reporter_phone,
            read.reporter_ref) == (PLACE, OCCURRED, DESCRIPTION, NAME, PHONE, CHAT)
    assert read.label_terms == [["好处费", 0.8]] and read.label_contrast_terms == [["排队", 0.3]]
    assert (request.reason, request.status, request.decided_at) == ("需要调取银行流水", "pending", None)


async def test_changing_a_case_moves_its_updated_time_and_keeps_its_received_time(sessionmaker: Any) -> None:
    received = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        session.add(a_case("h1", created_at=received, updated_at=received))
    before_change = utcnow()
    async with sessionmaker.begin() as session:
        case = (await session.execute(select(Case))).scalar_one()
        case.status = CaseStatus.IN_HANDLING
    async with sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
        raw_status = (await session.execute(text("SELECT status FROM cases"))).scalar_one()
    assert case.created_at == received
    assert case.updated_at >= before_change and case.updated_at.utcoffset() == timedelta(0)
    assert raw_status == "in_handling" and case.status == CaseStatus.IN_HANDLING


async def test_a_case_number_and_a_receipt_code_belong_to_one_case_only(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:  # cases not numbered yet may be many
        session.add_all([a_case("h1", case_number="QL-2026-000001"), a_case("h2"), a_case("h3")])
    for duplicate in (a_case("h1"), a_case("h4", case_number="QL-2026-000001")):
        with pytest.raises(IntegrityError):
            async with sessionmaker.begin() as session:
                session.add(duplicate)
    async with sessionmaker() as session:
        assert list((await session.execute(select(Case.receipt_code_hash).order_by(Case.id))).scalars()) == [
            "h1", "h2", "h3"]


async def test_a_case_without_its_receipt_code_queue_or_text_is_refused(sessionmaker: Any) -> None:
    for missing in ("receipt_code_hash", "queue", "description", "place"):
        case = a_case("h1")
        setattr(case, missing, None)
        with pytest.raises(IntegrityError):
            async with sessionmaker.begin() as session:
                session.add(case)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 0


async def test_a_trace_event_belongs_to_an_existing_case_and_is_the_systems_by_default(sessionmaker: Any) -> None:
    with pytest.raises(IntegrityError):
        async with sessionmaker.begin() as session:
            session.add(TraceEvent(case_id=999_999, kind=TraceKind.NOTE))
    async with sessionmaker.begin() as session:
        case = a_case("h1")
        session.add(case)
        await session.flush()
        session.add(TraceEvent(case_id=case.id, kind=TraceKind.FOLLOW_UP))
    async with sessionmaker() as session:
        event = (await session.execute(select(TraceEvent))).scalar_one()
        raw_kind = (await session.execute(text("SELECT kind FROM trace_events"))).scalar_one()
    assert (event.actor, event.detail, event.body) == ("system", {}, None)
    assert raw_kind == "follow_up" and event.created_at.utcoffset() == timedelta(0)


async def test_the_trace_and_the_evidence_load_only_when_asked_for_in_the_order_they_came(
        sessionmaker: Any) -> None:
    nine = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        case = a_case("h1")
        session.add(case)
        await session.flush()
        # written in this order, though the clocks of their writers disagree
        for kind, minutes in ((TraceKind.RECEIVED, 30), (TraceKind.ROUTED, 10), (TraceKind.FOLLOW_UP, 20)):
            session.add(TraceEvent(case_id=case.id, kind=kind, created_at=nine + timedelta(minutes=minutes)))
            await session.flush()
        for name in ("b.bin", "a.bin"):
            session.add(Attachment(case_id=case.id, stored_name=name, media_type="image/jpeg", size_bytes=1,
                                   sha256="0" * 64))
            await session.flush()
    async with sessionmaker.begin() as session:
        plain = (await session.execute(select(Case))).scalar_one()
        for relationship in ("trace", "attachments"):
            with pytest.raises(InvalidRequestError, match="lazy='raise'"):
                getattr(plain, relationship)
    async with sessionmaker.begin() as session:
        loaded = select(Case).options(selectinload(Case.trace), selectinload(Case.attachments))
        case = (await session.execute(loaded)).scalar_one()
        assert [event.kind for event in case.trace] == ["received", "routed", "follow_up"]
        assert [attachment.stored_name for attachment in case.attachments] == ["b.bin", "a.bin"]
        case.trace.remove(case.trace[1])  # an event taken out of the trace is deleted
    async with sessionmaker() as session:
        assert list((await session.execute(select(TraceEvent.kind).order_by(TraceEvent.id))).scalars()) == [
            "received", "follow_up"]


async def test_removing_a_case_removes_what_belongs_to_it_and_frees_its_duplicates(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        original, other = a_case("h1"), a_case("h2")
        session.add_all([original, other])
        await session.flush()
        duplicate = a_case("h3", duplicate_of_id=original.id, status=CaseStatus.DUPLICATE)
        session.add(duplicate)
        for case in (original, other):
            event = TraceEvent(case_id=case.id, kind=TraceKind.FOLLOW_UP, body="补充")
            session.add(event)
            await session.flush()
            session.add_all([Attachment(case_id=case.id, trace_event_id=event.id, stored_name=f"{case.id}.bin",
                                        media_type="image/jpeg", size_bytes=1, sha256="0" * 64),
                             InternalNote(case_id=case.id, body="内部"),
                             ExtensionRequest(case_id=case.id, reason="理由", resolve_due_at=utcnow())])
        original_id, other_id, duplicate_id = original.id, other.id, duplicate.id
    async with sessionmaker.begin() as session:
        await session.execute(delete(Case).where(Case.id == original_id))
    async with sessionmaker() as session:
        for model in (TraceEvent, Attachment, InternalNote, ExtensionRequest):
            owners = list((await session.execute(select(model.case_id))).scalars())  # type: ignore[attr-defined]
            assert owners == [other_id], model.__name__
        kept = (await session.execute(select(Case).where(Case.id == duplicate_id))).scalar_one()
    assert kept.duplicate_of_id is None and kept.status == CaseStatus.DUPLICATE


async def test_a_removed_staff_member_leaves_the_cases_notes_and_requests_without_a_name(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        reviewer, supervisor = a_staff_member("wang"), a_staff_member("li")
        session.add_all([reviewer, supervisor])
        await session.flush()
        case = a_case("h1", assigned_to_id=reviewer.id)
        session.add(case)
        await session.flush()
        session.add_all([InternalNote(case_id=case.id, author_id=reviewer.id, body="已约谈"),
                         ExtensionRequest(case_id=case.id, requested_by_id=reviewer.id, reason="理由",
                                          resolve_due_at=utcnow(), decided_by_id=reviewer.id)])
        reviewer_id = reviewer.id
    async with sessionmaker.begin() as session:
        await session.execute(delete(StaffUser).where(StaffUser.id == reviewer_id))
    async with sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
        note = (await session.execute(select(InternalNote))).scalar_one()
        request = (await session.execute(select(ExtensionRequest))).scalar_one()
    assert case.assigned_to_id is None
    assert (note.author_id, note.body) == (None, "已约谈")
    assert (request.requested_by_id, request.decided_by_id, request.reason) == (None, None, "理由")


async def test_an_attachment_waits_in_a_draft_without_a_case_and_may_hold_a_file_over_four_gigabytes(
        sessionmaker: Any) -> None:
    five_gigabytes = 5 * 1024 ** 3
    async with sessionmaker.begin() as session:
        session.add(Attachment(stored_name="draft.bin", media_type="video/mp4", size_bytes=five_gigabytes,
                               sha256="f" * 64, client_key="c" * 64))
    async with sessionmaker() as session:
        draft = (await session.execute(select(Attachment))).scalar_one()
        assert await session.scalar(select(func.count()).select_from(Case)) == 0
    assert (draft.case_id, draft.original_name, draft.size_bytes) == (None, None, five_gigabytes)
    assert draft.created_at.utcoffset() == timedelta(0)
