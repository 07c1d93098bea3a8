"""Staff's work on cases and on accounts in storage, against SQLite and the PostgreSQL on 127.0.0.1: the rules
that refuse an action with the reason, and what each action leaves for the reporter (trace, notice) and
for the audit log. (Tokens and the first administrator: test_staff_actions.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storage import actions, loop, staff_actions
from storage.actions import ActionError
from storage.models import AuditEntry, Case, CaseStatus, OutboxMessage, StaffRole, StaffUser, TraceEvent, utcnow
from tests.factories import file_case


async def _staff(session: Any, username: str = "wang", role: StaffRole = StaffRole.SUPERVISOR) -> StaffUser:
    return await staff_actions.create_staff(session, username=username, display_name=f"{username} 同志", role=role,
                                            password_hash="not-a-hash")


async def _load(session: Any, case_id: int) -> Case:
    case = await actions.get_case(session, case_id)
    assert case is not None
    return case


async def _refused(sessionmaker: Any, action: Any) -> str:
    """The reason an action was refused; the transaction is rolled back."""
    with pytest.raises(ActionError) as refused:
        async with sessionmaker.begin() as session:
            await action(session)
    return str(refused.value)


async def _trace(sessionmaker: Any, case_id: int) -> list[tuple[str, str, str | None]]:
    async with sessionmaker() as session:
        rows = await session.execute(select(TraceEvent.kind, TraceEvent.actor, TraceEvent.body)
                                     .where(TraceEvent.case_id == case_id).order_by(TraceEvent.id))
        return [(kind, actor, body) for kind, actor, body in rows]


async def _audit(sessionmaker: Any) -> list[tuple[str, dict[str, Any]]]:
    async with sessionmaker() as session:
        rows = await session.execute(select(AuditEntry.action, AuditEntry.detail).where(AuditEntry.case_id.is_not(None))
                                     .order_by(AuditEntry.id))
        return [(action, detail) for action, detail in rows]


async def _notices(sessionmaker: Any) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        return [dict(payload) for payload in (await session.execute(
            select(OutboxMessage.payload).where(OutboxMessage.case_id.is_not(None)).order_by(OutboxMessage.id))
        ).scalars()]


async def test_status_changes_are_told_to_the_reporter_and_refused_when_they_change_nothing(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        case, _ = await file_case(session)
        await staff_actions.accept_case(session, case, actor=wang)
        await staff_actions.set_status(session, case, CaseStatus.IN_HANDLING, actor=wang, body="已转交区政务服务中心")
    number = case.case_number

    async def again(session: Any) -> None:
        await staff_actions.set_status(session, await _load(session, case.id), CaseStatus.IN_HANDLING,
                                       actor=wang)

    async def by_hand(session: Any) -> None:
        await staff_actions.set_status(session, await _load(session, case.id), CaseStatus.DUPLICATE,
                                       actor=wang)

    assert await _refused(sessionmaker, again) == "case is already in_handling"
    assert await _refused(sessionmaker, by_hand) == "use mark_duplicate to mark a duplicate"
    assert await _trace(sessionmaker, case.id) == [
        ("received", "reporter", None), ("routed", "system", None), ("accepted", f"staff:{wang.id}", None),
        ("in_handling", f"staff:{wang.id}", "已转交区政务服务中心")]
    assert await _notices(sessionmaker) == [
        {"notice": "status_changed", "locale": "zh", "case_number": number, "status": "accepted"},
        {"notice": "status_changed", "locale": "zh", "case_number": number, "status": "in_handling",
         "note": "已转交区政务服务中心"}]
    assert [action for action, _ in await _audit(sessionmaker)] == ["case.accept", "case.status"]


async def test_a_duplicate_points_to_its_original_and_a_case_cannot_duplicate_itself(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        original, _ = await file_case(session, reporter_ref="1")
        repeat, _ = await file_case(session, reporter_ref="2")
        await staff_actions.mark_duplicate(session, repeat, original, actor=wang)

    async def itself(session: Any) -> None:
        case = await _load(session, original.id)
        await staff_actions.mark_duplicate(session, case, case, actor=wang)

    assert await _refused(sessionmaker, itself) == "a case cannot duplicate itself"
    async with sessionmaker() as session:
        stored = await actions.get_case(session, repeat.id)
    assert stored is not None
    assert (stored.status, stored.duplicate_of_id, stored.closed_at is not None) == ("duplicate", original.id, True)
    assert (await _trace(sessionmaker, repeat.id))[-1] == ("duplicate", f"staff:{wang.id}", original.case_number)


async def test_choosing_the_label_the_case_already_has_is_audited_as_a_confirmation(sessionmaker: Any) -> None:
    """Seen as an administrator: picking the model's own label in the correction form was audited as
    case.correct_label {"from": "slow_service", "to": "slow_service"}, while the case counted as confirmed."""
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        case, _ = await file_case(session, label="slow_service", queue="triage")
        moved = await staff_actions.correct_label(session, case, "slow_service", actor=wang, queue="clean_hall",
                                                  accept_due_at=None, resolve_due_at=None)
    assert moved is not None  # a low-confidence case in triage still goes where its (now confirmed) label routes
    async with sessionmaker() as session:
        stored = await actions.get_case(session, case.id)
    assert stored is not None
    assert (stored.label, stored.label_status, stored.queue) == ("slow_service", "confirmed", "clean_hall")
    assert [(a, d) for a, d in await _audit(sessionmaker) if a.endswith("_label")] == [
        ("case.confirm_label", {"label": "slow_service"})]


async def test_a_label_is_confirmed_only_if_there_is_one_and_correcting_back_confirms_it(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        unlabelled, _ = await file_case(session, label=None, queue="triage")
        labelled, _ = await file_case(session, label="slow_service", queue="clean_hall")
        await staff_actions.correct_label(session, labelled, "formalism", actor=wang, queue="work_style",
                                          accept_due_at=None, resolve_due_at=None)

    async def confirm_nothing(session: Any) -> None:
        await staff_actions.confirm_label(session, await _load(session, unlabelled.id), actor=wang)

    async def same_again(session: Any) -> None:
        case = await _load(session, labelled.id)
        await staff_actions.correct_label(session, case, "formalism", actor=wang, queue="work_style",
                                          accept_due_at=None, resolve_due_at=None)

    assert await _refused(sessionmaker, confirm_nothing) == "the case has no label to confirm"
    assert await _refused(sessionmaker, same_again) == "the label is formalism already"
    async with sessionmaker.begin() as session:
        case = await actions.get_case(session, labelled.id)
        assert case is not None
        await staff_actions.correct_label(session, case, "slow_service", actor=wang, queue="clean_hall",
                                          accept_due_at=None, resolve_due_at=None)
    async with sessionmaker() as session:
        stored = await actions.get_case(session, labelled.id)
    assert stored is not None
    assert (stored.label, stored.label_status, stored.queue) == ("slow_service", "confirmed", "clean_hall")
    assert [(a, d) for a, d in await _audit(sessionmaker) if a == "case.move"] == [
        ("case.move", {"from": "clean_hall", "to": "work_style", "reason": "label slow_service → formalism",
                       "transfers": 1}),
        ("case.move", {"from": "work_style", "to": "clean_hall", "reason": "label formalism → slow_service",
                       "transfers": 2})]


async def test_moving_a_case_needs_a_reason_and_frees_it_with_the_new_queues_deadlines(sessionmaker: Any) -> None:
    due = utcnow() + timedelta(days=10)
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        li = await _staff(session, "li", StaffRole.REVIEWER)
        case, _ = await file_case(session, queue="clean_hall")
        await staff_actions.assign_case(session, case, li, actor=wang)

    async def without_reason(session: Any) -> None:
        await loop.transfer(session, await _load(session, case.id), "petitions", reason="  ", actor=wang)

    async def nowhere(session: Any) -> None:
        await loop.transfer(session, await _load(session, case.id), "clean_hall", reason="留在本组", actor=wang)

    assert await _refused(sessionmaker, without_reason) == "moving a case needs a reason"
    assert await _refused(sessionmaker, nowhere) == "the case is in clean_hall already"
    async with sessionmaker.begin() as session:
        moving = await actions.get_case(session, case.id)
        assert moving is not None
        await loop.transfer(session, moving, "petitions", reason=" 涉及收受礼品 ", actor=wang,
                            deadlines=(due, due + timedelta(days=30)))  # routed anew
    async with sessionmaker() as session:
        moved = await session.get(Case, case.id)
    assert moved is not None
    assert (moved.queue, moved.assigned_to_id) == ("petitions", None)
    assert (moved.accept_due_at, moved.resolve_due_at) == (due, due + timedelta(days=30))
    assert (await _audit(sessionmaker))[-1] == ("case.move", {"from": "clean_hall", "to": "petitions",
                                                               "reason": "涉及收受礼品", "transfers": 1})


@pytest.mark.parametrize("status", [CaseStatus.CLOSED, CaseStatus.REJECTED])
async def test_a_closed_case_is_not_moved_and_a_corrected_label_stays_with_the_queue_that_handled_it(
        sessionmaker: Any, status: CaseStatus) -> None:
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        case, _ = await file_case(session, label="slow_service", queue="clean_hall")
        await staff_actions.set_status(session, case, status, actor=wang, body="已办结")
    before = await _trace(sessionmaker, case.id)

    async def move(session: Any) -> None:
        await loop.transfer(session, await _load(session, case.id), "petitions", reason="涉及收受礼品", actor=wang)

    assert await _refused(sessionmaker, move) == f"case {case.case_number} is {status}: reopen it to move it"
    async with sessionmaker.begin() as session:  # the label is still worth correcting: it is training data
        moved = await staff_actions.correct_label(session, await _load(session, case.id), "bribery_gifts",
                                                  actor=wang, queue="petitions", accept_due_at=None,
                                                  resolve_due_at=None)
    assert moved is None
    async with sessionmaker() as session:
        stored = await _load(session, case.id)
    assert (stored.label, stored.label_status, stored.queue, stored.status, stored.transfer_count) == (
        "bribery_gifts", "corrected", "clean_hall", status, 0)
    assert await _trace(sessionmaker, case.id) == before  # the reporter reads no transfer after the closing
    assert [a for a, _ in await _audit(sessionmaker)][-1] == "case.correct_label"


async def test_a_note_needs_text_and_an_answer_to_a_closed_case_keeps_it_closed(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        case, _ = await file_case(session)
        await staff_actions.set_status(session, case, CaseStatus.CLOSED, actor=wang, body="经核查，已办结。")
        await staff_actions.answer_reporter(session, case, "  补充说明：已对窗口排班作出调整。 ", actor=wang)

    async def blank_note(session: Any) -> None:
        await staff_actions.add_note(session, await _load(session, case.id), " \n ", actor=wang)

    assert await _refused(sessionmaker, blank_note) == "a note needs text"
    async with sessionmaker() as session:
        stored = await session.get(Case, case.id)
    assert stored is not None and stored.status == "closed"
    assert (await _notices(sessionmaker))[-1] == {"notice": "answer", "locale": "zh", "case_number": case.case_number,
                                                  "answer": "补充说明：已对窗口排班作出调整。"}


async def test_an_identity_is_revealed_only_for_a_real_name_report_and_each_reveal_is_audited(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        anonymous, _ = await file_case(session, reporter_ref="1")
        named, _ = await file_case(session, reporter_ref="2", anonymous=False, reporter_name="赵六",
                                   reporter_phone="13811112222")
        revealed = await staff_actions.reveal_identity(session, named, actor=wang, ip="203.0.113.5",
                                                       reason="回访核实")

    async def anonymous_reveal(session: Any) -> None:
        await staff_actions.reveal_identity(session, await _load(session, anonymous.id), actor=wang,
                                            ip="203.0.113.5", reason="回访核实")

    async def reveal_without_reason(session: Any) -> None:
        await staff_actions.reveal_identity(session, await _load(session, named.id), actor=wang,
                                            ip="203.0.113.5", reason=" 核实。")

    assert revealed == ("赵六", "13811112222")
    assert await _refused(sessionmaker, anonymous_reveal) == "the reporter is anonymous"
    assert await _refused(sessionmaker, reveal_without_reason) == (
        "revealing a reporter's identity needs a reason of at least 4 letters or digits")
    async with sessionmaker() as session:
        reveals = list((await session.execute(select(AuditEntry.case_id, AuditEntry.ip, AuditEntry.detail)
                                              .where(AuditEntry.action == "case.reveal_identity"))).all())
    assert [tuple(row) for row in reveals] == [(named.id, "203.0.113.5", {"reason": "回访核实"})]


async def test_disabling_an_account_ends_its_sessions_and_revokes_its_tokens(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        admin = await _staff(session, "root", StaffRole.ADMIN)
        li = await _staff(session, "li", StaffRole.REVIEWER)
        session_token, _ = await staff_actions.start_session(session, li, hours=8, ip=None, second_factor_done=True)
        api_token, _ = await staff_actions.create_api_token(session, li, "dashboard", actor=li)
        await staff_actions.set_active(session, li, False, actor=admin)
        await staff_actions.set_active(session, li, True, actor=admin)
    async with sessionmaker() as session:
        assert await staff_actions.find_session(session, session_token) is None
        assert await staff_actions.find_api_token(session, api_token) is None  # enabling again does not restore it
        stored = await staff_actions.get_staff_by_username(session, "li")
    assert stored is not None and stored.active


async def test_a_new_password_unlocks_the_account_and_ends_its_sessions(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        admin = await _staff(session, "root", StaffRole.ADMIN)
        li = await _staff(session, "li", StaffRole.REVIEWER)
        token, _ = await staff_actions.start_session(session, li, hours=8, ip=None, second_factor_done=True)
        for _ in range(3):
            await staff_actions.record_login(session, li, success=False, username="li", ip=None, attempts=3,
                                             lock_minutes=15)
        assert li.locked_until is not None
        await staff_actions.set_password(session, li, "another-hash", actor=admin)
    async with sessionmaker() as session:
        stored = await staff_actions.get_staff_by_username(session, "li")
        assert await staff_actions.find_session(session, token) is None
    assert stored is not None
    assert (stored.password_hash, stored.failed_logins, stored.locked_until) == ("another-hash", 0, None)


async def test_a_status_follows_the_lifecycle_a_reporter_can_read(sessionmaker: Any) -> None:
    """A reporter told "已办结" or "已答复" must find the result in their trace: a case is marked answered by
    answering it, is closed with its answer or a closing note, and is reopened with the reason. Each refusal
    says why, and nothing is changed or told."""
    async with sessionmaker.begin() as session:
        wang = await _staff(session)
        case, _ = await file_case(session)

    async def set_to(status: CaseStatus, body: str | None = None) -> Any:
        async def action(session: Any) -> None:
            await staff_actions.set_status(session, await _load(session, case.id), status, actor=wang, body=body)
        return action

    told = len(await _notices(sessionmaker))
    assert await _refused(sessionmaker, await set_to(CaseStatus.ANSWERED)) == (
        f"case {case.case_number} has no answer: answer the reporter, which marks it answered")
    assert await _refused(sessionmaker, await set_to(CaseStatus.CLOSED)) == (
        f"case {case.case_number} has no answer: answer the reporter, or close it with a note that tells the result")
    assert len(await _notices(sessionmaker)) == told
    async with sessionmaker.begin() as session:  # a closing note tells the result
        await staff_actions.set_status(session, await _load(session, case.id), CaseStatus.CLOSED, actor=wang,
                                       body="经核查，窗口人员已调整。")
    assert await _refused(sessionmaker, await set_to(CaseStatus.IN_HANDLING)) == (
        f"case {case.case_number} is closed: reopening it needs the reason, which the reporter is told")
    async with sessionmaker.begin() as session:
        await staff_actions.set_status(session, await _load(session, case.id), CaseStatus.IN_HANDLING, actor=wang,
                                       body="收到新的线索，重新核查。")
        await staff_actions.answer_reporter(session, await _load(session, case.id), "已重新核查并处理。", actor=wang)
        await staff_actions.set_status(session, await _load(session, case.id), CaseStatus.IN_HANDLING, actor=wang)
        await staff_actions.set_status(session, await _load(session, case.id), CaseStatus.ANSWERED, actor=wang)
        await staff_actions.set_status(session, await _load(session, case.id), CaseStatus.CLOSED, actor=wang)
    assert [kind for kind, _, _ in await _trace(sessionmaker, case.id)][-6:] == [
        "closed", "in_handling", "answered", "in_handling", "answered", "closed"]


async def test_attempts_on_a_locked_account_are_audited_once_per_lock(sessionmaker: Any) -> None:
    """The first attempt that meets a lock is audited, the others during it not; a new lock (after new failures)
    is audited again, each attempt in its own transaction as the login page writes it."""
    async with sessionmaker.begin() as session:
        li = await _staff(session, "li", StaffRole.REVIEWER)

    async def lock() -> None:
        async with sessionmaker.begin() as session:
            user = await session.get(StaffUser, li.id)
            assert user is not None
            for _ in range(3):
                await staff_actions.record_login(session, user, success=False, username="li", ip=None, attempts=3,
                                                 lock_minutes=15)

    async def attempt(ip: str) -> bool:
        async with sessionmaker.begin() as session:
            user = await session.get(StaffUser, li.id)
            assert user is not None
            return await staff_actions.record_locked_attempt(session, user, username="li", ip=ip, lock_minutes=15)

    await lock()
    first = [await attempt(f"198.51.100.{number}") for number in range(4)]
    async with sessionmaker.begin() as session:  # the lock runs out
        user = await session.get(StaffUser, li.id)
        assert user is not None
        user.locked_until = utcnow() - timedelta(seconds=1)
    await lock()
    second = [await attempt(f"203.0.113.{number}") for number in range(3)]
    async with sessionmaker() as session:
        entries = (await session.execute(select(AuditEntry.ip).where(AuditEntry.action == "login.locked")
                                         .order_by(AuditEntry.id))).scalars().all()
    assert (first, second) == ([True, False, False, False], [True, False, False])
    assert entries == ["198.51.100.0", "203.0.113.0"]
