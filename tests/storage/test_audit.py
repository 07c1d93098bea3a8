"""Reading the audit log against SQLite and the PostgreSQL on 127.0.0.1: newest first, with who and which
case, filtered by person or case, a page at a time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from storage import audit, loop, staff_actions
from storage.models import Case, StaffRole, TraceEvent, TraceKind, utcnow
from tests.factories import file_case


async def _history(sessionmaker: Any) -> tuple[int, int, int, int]:
    """Two staff members at work on two cases, and an action of the system; returns their ids."""
    async with sessionmaker.begin() as session:
        wang = await staff_actions.create_staff(session, username="wang", display_name="王主任",
                                                role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        li = await staff_actions.create_staff(session, username="li", display_name="李审核", role=StaffRole.REVIEWER,
                                              password_hash="not-a-hash", actor=wang)
        first, _ = await file_case(session, reporter_ref="1")
        second, _ = await file_case(session, reporter_ref="2")
        await staff_actions.record_view(session, first, actor=li, ip="203.0.113.9")
        await staff_actions.accept_case(session, first, actor=li)
        await staff_actions.add_note(session, second, "请李审核跟进", actor=wang)
        await staff_actions.assign_case(session, second, li, actor=wang)
    return wang.id, li.id, first.id, second.id


async def test_entries_come_newest_first_with_the_actor_and_the_case(sessionmaker: Any) -> None:
    await _history(sessionmaker)
    async with sessionmaker() as session:
        rows, total = await audit.audit_log(session, page=1, per_page=50)
    assert total == 6
    assert [(entry.action, actor, number) for entry, actor, number in rows] == [
        ("case.assign", "wang", "QL-2026-000002"),
        ("case.note", "wang", "QL-2026-000002"),
        ("case.accept", "li", "QL-2026-000001"),
        ("case.view", "li", "QL-2026-000001"),
        ("staff.create", "wang", None),
        ("staff.create", None, None),  # the first account, made by no one
    ]
    assert rows[3][0].ip == "203.0.113.9"


async def test_entries_are_filtered_by_person_and_case_and_paged(sessionmaker: Any) -> None:
    wang, li, first, second = await _history(sessionmaker)
    async with sessionmaker() as session:
        by_li, li_total = await audit.audit_log(session, page=1, per_page=50, actor_id=li)
        on_second, second_total = await audit.audit_log(session, page=1, per_page=50, case_id=second)
        both, both_total = await audit.audit_log(session, page=1, per_page=50, actor_id=wang, case_id=first)
        page_two, paged_total = await audit.audit_log(session, page=2, per_page=4)
    assert ([e.action for e, _, _ in by_li], li_total) == (["case.accept", "case.view"], 2)
    assert ([e.action for e, _, _ in on_second], second_total) == (["case.assign", "case.note"], 2)
    assert (both, both_total) == ([], 0)
    assert ([e.action for e, _, _ in page_two], paged_total) == (["staff.create", "staff.create"], 6)


async def test_every_staff_action_on_a_case_records_the_staff_members_address(sessionmaker: Any) -> None:
    """The closed loop's actions (transfer, extension, note to the reporter, rejection) are audited with the
    address the console put on the session, like every other staff action."""
    async with sessionmaker.begin() as session:
        wang = await staff_actions.create_staff(session, username="wang", display_name="王主任",
                                                role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        case, _ = await file_case(session, queue="clean_hall")
    async with sessionmaker.begin() as session:
        session.info[audit.AUDIT_IP] = "198.51.100.7"
        moving = await session.get(Case, case.id)
        assert moving is not None
        await loop.transfer(session, moving, "petitions", actor=wang, reason="职责不符")
        await loop.tell_reporter(session, moving, "正在核查", actor=wang)
        await loop.request_extension(session, moving, actor=wang, reason="需现场核查",
                                     resolve_due_at=utcnow() + timedelta(days=20))
        await loop.reject(session, moving, actor=wang, reason="不属受理范围", referral="请联系12345")
    async with sessionmaker() as session:
        rows, _ = await audit.audit_log(session, page=1, per_page=50, case_id=case.id)
    assert sorted(entry.action for entry, _, _ in rows) == [
        "case.extension_requested", "case.move", "case.note_to_reporter", "case.status"]
    assert {entry.ip for entry, _, _ in rows} == {"198.51.100.7"}


async def test_a_supervisors_extension_decisions_are_audited_with_who_which_case_and_why(sessionmaker: Any) -> None:
    """Approving and refusing an extension each leave an entry: the supervisor, the case, the decision and the
    supervisor's reason; the request itself is the reviewer's entry with the reviewer's reason. The refusal is
    a trace event for the staff only (marked internal), the approval one the reporter reads."""
    async with sessionmaker.begin() as session:
        wang = await staff_actions.create_staff(session, username="wang", display_name="王主任",
                                                role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        li = await staff_actions.create_staff(session, username="li", display_name="李审核", role=StaffRole.REVIEWER,
                                              password_hash="not-a-hash", actor=wang)
        case, _ = await file_case(session, queue="clean_hall", resolve_due_at=utcnow() + timedelta(days=60))
    later = utcnow() + timedelta(days=80)
    async with sessionmaker.begin() as session:
        extending = await session.get(Case, case.id)
        assert extending is not None
        first = await loop.request_extension(session, extending, actor=li, reason="需调取监控录像",
                                             resolve_due_at=later)
        await loop.decide_extension(session, first, extending, actor=wang, approve=False, note="先完成初步核查")
        second = await loop.request_extension(session, extending, actor=li, reason="监控录像需公安协助调取",
                                              resolve_due_at=later)
        await loop.decide_extension(session, second, extending, actor=wang, approve=True, note="同意延期")
    async with sessionmaker() as session:
        rows, _ = await audit.audit_log(session, page=1, per_page=50, case_id=case.id)
        trace = (await session.execute(select(TraceEvent).where(TraceEvent.case_id == case.id)
                                       .order_by(TraceEvent.id))).scalars().all()
    entries = [(entry.action, actor, number, entry.detail.get("reason") or entry.detail.get("note"))
               for entry, actor, number in reversed(rows)]
    assert entries == [
        ("case.extension_requested", "li", case.case_number, "需调取监控录像"),
        ("case.extension_refused", "wang", case.case_number, "先完成初步核查"),
        ("case.extension_requested", "li", case.case_number, "监控录像需公安协助调取"),
        ("case.extension_approved", "wang", case.case_number, "同意延期"),
    ]
    decided = [entry for entry, _, _ in reversed(rows) if entry.action != "case.extension_requested"]
    assert [entry.detail["request_id"] for entry in decided] == [first.id, second.id]
    assert {entry.detail["until"] for entry in decided} == {later.isoformat()}
    refused, extended = [event for event in trace if event.kind in (TraceKind.EXTENSION_REFUSED, TraceKind.EXTENDED)]
    assert (refused.kind, refused.body, refused.detail.get("internal")) == (
        TraceKind.EXTENSION_REFUSED, "先完成初步核查", True)
    assert (extended.kind, extended.detail.get("internal")) == (TraceKind.EXTENDED, None)
    assert refused.actor == extended.actor == f"staff:{wang.id}"


async def test_the_entries_of_one_bulk_action_are_filtered_by_its_id(sessionmaker: Any) -> None:
    """An action on a selection marks its entries (those `record` and `record_many` write) with the bulk action's id,
    which selects them alone — with any other filter, and none of another selection's or a single case's."""
    async with sessionmaker.begin() as session:
        wang = await staff_actions.create_staff(session, username="wang", display_name="王主任",
                                                role=StaffRole.SUPERVISOR, password_hash="not-a-hash")
        first, _ = await file_case(session, reporter_ref="1")
        second, _ = await file_case(session, reporter_ref="2")
    for bulk_id, case in (("0a1b2c3d", first), ("4e5f6a7b", second)):
        async with sessionmaker.begin() as session:
            session.info[audit.AUDIT_BULK] = {"bulk": bulk_id, "selection": 2}
            await audit.record(session, wang, "case.assign", case=case)
            await audit.record_many(session, wang, "case.reveal_identity", [first.id, second.id])
            await audit.record(session, wang, "case.bulk", detail={"bulk_action": "assign"})
    async with sessionmaker.begin() as session:
        await audit.record(session, wang, "case.assign", case=first)
    async with sessionmaker() as session:
        rows, total = await audit.audit_log(session, page=1, per_page=50, flt=audit.AuditFilter(bulk_id="0a1b2c3d"))
        moves, moves_total = await audit.audit_log(session, page=1, per_page=50, flt=audit.AuditFilter(
            bulk_id="4e5f6a7b", action="case.assign"))
        nothing, _ = await audit.audit_log(session, page=1, per_page=50, flt=audit.AuditFilter(bulk_id="0a1b2c3"))
    assert total == 4 and {entry.detail["bulk"] for entry, _, _ in rows} == {"0a1b2c3d"}
    assert sorted((entry.action, number) for entry, _, number in rows) == [
        ("case.assign", "QL-2026-000001"), ("case.bulk", None), ("case.reveal_identity", "QL-2026-000001"),
        ("case.reveal_identity", "QL-2026-000002")]
    assert [(entry.action, number) for entry, _, number in moves] == [("case.assign", "QL-2026-000002")]
    assert (moves_total, nothing) == (1, [])
