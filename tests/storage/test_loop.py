"""The closed loop of a case in storage (storage/loop.py), on SQLite and the PostgreSQL on 127.0.0.1: what each
action leaves — the trace event the reporter reads, the notices to the reporter and to the queue's staff groups,
the audit record — and the refusals with their reasons: the rating offered and given (a poor one reopening the
case), "solved", a rejection and its appeal, an extension requested and decided, a note and a question for the
reporter, transfers, and the deadlines the staff are warned of and escalated.

(The same loop driven through the dialog: tests/handlers/test_closed_loop.py; a transfer's refusals and new
deadlines: test_staff_actions_cases.py; the audit entries' actors and addresses: test_audit.py.)"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storage import actions, loop, staff_actions
from storage.actions import ActionError, ActionInputError
from storage.models import (
    AuditEntry,
    Case,
    CaseStatus,
    ExtensionRequest,
    OutboxMessage,
    StaffRole,
    TraceEvent,
    utcnow,
)
from tests.factories import create_staff, file_case

GROUPS = [("telegram", "-1001234567"), ("wecom", "hall-supervisors")]
LABELS = ["★★★★★", "★★★★", "★★★", "★★", "★", "问题没有解决", "以后再评，返回菜单"]
CHOICES = [["rate:5", "★★★★★"], ["rate:4", "★★★★"], ["rate:3", "★★★"], ["rate:2", "★★"], ["rate:1", "★"],
           ["rate:unsolved", "问题没有解决"], ["rate:later", "以后再评，返回菜单"]]


def _at(hours: float) -> datetime:
    """A moment `hours` from now, to the second (as the deadlines are compared and told)."""
    return (utcnow() + timedelta(hours=hours)).replace(microsecond=0)


async def _refused(action: Awaitable[Any]) -> ActionError:
    with pytest.raises(ActionError) as refused:
        await action
    return refused.value


async def _trace(session: Any, case_id: int) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    rows = await session.execute(select(TraceEvent.kind, TraceEvent.actor, TraceEvent.body, TraceEvent.detail)
                                 .where(TraceEvent.case_id == case_id).order_by(TraceEvent.id))
    return [(kind, actor, body, detail) for kind, actor, body, detail in rows]


async def _outbox(session: Any, case_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await session.execute(select(OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.payload)
                                 .where(OutboxMessage.case_id == case_id).order_by(OutboxMessage.id))
    return [(channel, recipient, payload) for channel, recipient, payload in rows]


async def _audit(session: Any, case_id: int) -> list[tuple[str, int | None, dict[str, Any]]]:
    rows = await session.execute(select(AuditEntry.action, AuditEntry.actor_id, AuditEntry.detail)
                                 .where(AuditEntry.case_id == case_id).order_by(AuditEntry.id))
    return [(action, actor_id, detail) for action, actor_id, detail in rows]


async def _load(session: Any, case_id: int) -> Case:
    case = await actions.get_case(session, case_id)
    assert case is not None
    return case


async def _closed(session: Any, reporter_ref: str = "42", *, rating_follows: bool = False, **kwargs: Any) -> Case:
    case, _ = await file_case(session, reporter_ref=reporter_ref, **kwargs)
    await actions.change_status(session, case, CaseStatus.CLOSED, actor="staff:test", rating_follows=rating_follows)
    return case


def _to_groups(notice: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(channel, recipient, notice) for channel, recipient in GROUPS]


# --- the rating -----------------------------------------------------------------------------------------------


async def test_offering_a_rating_sends_the_buttons_and_an_idle_conversation_waits_for_the_answer(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        idle = await actions.load_conversation(session, "telegram", "42")
        idle.context = {"language_return": "idle", "shown_page": 2}
        await actions.finish_step(session, idle)
        drafting = await actions.load_conversation(session, "telegram", "43")
        drafting.state, drafting.context, drafting.draft_updated_at = "report_place", {"district": "yuelu"}, utcnow()
        drafting.draft = {"district": "yuelu"}
        await actions.finish_step(session, drafting)
    async with sessionmaker.begin() as session:
        # closed, and the rating asked for under the closing notice (as the console does it)
        waiting = await _closed(session, "42", rating_follows=True)
        busy = await _closed(session, "43", rating_follows=True)
        stranger = await _closed(session, "44", rating_follows=True)  # never wrote to the bot here: no conversation
        before = utcnow()
        for case in (waiting, busy, stranger):
            await loop.offer_rating(session, case, labels=LABELS, status_told=True)
        after = utcnow()
        with pytest.raises(ValueError):  # five ratings and "not solved" need six labels
            await loop.offer_rating(session, waiting, labels=LABELS[:5])
    async with sessionmaker.begin() as session:
        written = {case.id: await _outbox(session, case.id) for case in (waiting, busy, stranger)}
        notices = {case_id: rows[1:] for case_id, rows in written.items()}
        idle_after = await actions.load_conversation(session, "telegram", "42")
        drafting_after = await actions.load_conversation(session, "telegram", "43")
    for case, recipient in ((waiting, "42"), (busy, "43"), (stranger, "44")):
        assert notices[case.id] == [("telegram", recipient, {
            "notice": "rate_request", "locale": "zh", "case_number": case.case_number,
            "choices": [[f"{key}@{case.id}", label] for key, label in CHOICES],
            "status_told": True})]  # each names its case; the closing notice before it told the status
        assert written[case.id][0][2] == {"notice": "status_changed", "locale": "zh", "case_number": case.case_number,
                                          "status": "closed", "rating_follows": True}
    assert idle_after.state == "rating"
    until = datetime.fromisoformat(idle_after.context.pop("case_until"))
    assert before + timedelta(days=30) <= until <= after + timedelta(days=30)
    assert idle_after.context == {"shown_page": 2, "case_id": waiting.id,
                                  "choices": [[f"{key}@{waiting.id}", label] for key, label in CHOICES]}
    assert (drafting_after.state, drafting_after.context) == ("report_place", {"district": "yuelu"})


async def test_a_closing_makes_a_conversation_adding_to_that_case_wait_for_the_rating_and_says_so(
        sessionmaker: Any) -> None:
    """A conversation adding information to (or appealing) the case that closes waits for the rating, its report
    draft kept; one adding information to another case is left where it is. A rating asked for on its own (no
    closing notice told with it) still says the case closed."""
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, reporter_ref="42")
        other, _ = await file_case(session, reporter_ref="43")
        second, _ = await file_case(session, reporter_ref="43")
        for ref, state, about in (("42", "follow_up", case), ("43", "follow_up", other)):
            conversation = await actions.load_conversation(session, "telegram", ref)
            conversation.state, conversation.context = state, {"case_id": about.id, "case_until": "2099-01-01"}
            conversation.draft, conversation.draft_updated_at = {"district": "yuelu"}, utcnow()
            await actions.finish_step(session, conversation)
    async with sessionmaker.begin() as session:
        for closing in (case, second):
            await actions.change_status(session, closing, CaseStatus.CLOSED, actor="staff:test", rating_follows=True)
            await loop.offer_rating(session, closing, labels=LABELS, status_told=True)
    async with sessionmaker.begin() as session:
        told = [payload for _, _, payload in await _outbox(session, case.id)][-2:]
        adding = await actions.load_conversation(session, "telegram", "42")
        elsewhere = await actions.load_conversation(session, "telegram", "43")
    assert told[0]["rating_follows"] is True and told[1]["cut_short"] == "follow_up" and told[1]["status_told"]
    assert (adding.state, adding.context["case_id"], adding.context["cut_short"]) == ("rating", case.id, case.id)
    assert adding.draft == {"district": "yuelu"}
    assert (elsewhere.state, elsewhere.context["case_id"]) == ("follow_up", other.id)

    async with sessionmaker.begin() as session:
        reopened = await _load(session, second.id)
        await actions.change_status(session, reopened, CaseStatus.IN_HANDLING, actor="staff:test", body="重新核查")
    async with sessionmaker.begin() as session:  # the rating asked for apart from its closing
        await actions.change_status(session, await _load(session, second.id), CaseStatus.CLOSED, actor="staff:test")
        await loop.offer_rating(session, await _load(session, second.id), labels=LABELS)
    async with sessionmaker.begin() as session:
        alone = [payload for _, _, payload in await _outbox(session, second.id)][-2:]
    assert "rating_follows" not in alone[0] and "status_told" not in alone[1]


async def test_only_an_answered_case_closes_as_solved_and_only_a_closed_unrated_case_takes_a_rating_of_1_to_5(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session)
        assert str(await _refused(loop.close_as_solved(session, case))) == \
            "only an answered case can be closed by its reporter"
        refused = await _refused(loop.rate(session, case, 5, rehandle_limit=1))
        assert not isinstance(refused, ActionInputError) and str(refused) == "only a closed case can be rated"
        await actions.reply_to_reporter(session, case, "已责令窗口整改。", actor="staff:test")
        event = await loop.close_as_solved(session, case)
        assert str(await _refused(loop.close_as_solved(session, case))) == \
            "only an answered case can be closed by its reporter"
        for rating in (0, 6, -1):
            refused = await _refused(loop.rate(session, case, rating, rehandle_limit=1))
            assert isinstance(refused, ActionInputError) and str(refused) == "rating must be 1 to 5"
        refused = await _refused(loop.rate(session, case, None, rehandle_limit=1))
        assert isinstance(refused, ActionInputError) and str(refused) == "a rating or 'not solved' is needed"
        assert await loop.rate(session, case, 4, rehandle_limit=1) is False
        refused = await _refused(loop.rate(session, case, 5, rehandle_limit=1))
        assert not isinstance(refused, ActionInputError) and str(refused) == "case already rated"
    async with sessionmaker() as session:
        stored = await _load(session, case.id)
        trace = await _trace(session, case.id)
    assert (stored.status, stored.closed_at is not None, stored.rating) == ("closed", True, 4)
    assert event.kind == "solved" and trace[-2:] == [("solved", "reporter", None, {}),
                                                     ("rated", "reporter", None, {"rating": 4, "unsolved": False})]


async def test_a_poor_rating_reopens_the_case_tells_its_staff_groups_and_when_asked_the_reporter(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        poor = await _closed(session, "42")
        unsolved = await _closed(session, "43")
        assert await loop.rate(session, poor, 2, comment="窗口还是没人。", rehandle_limit=1, staff_targets=GROUPS,
                               staff_locale="en", tell_reporter=True) is True
        assert await loop.rate(session, unsolved, None, unsolved=True, rehandle_limit=1, staff_targets=GROUPS) is True
    async with sessionmaker() as session:
        cases = [await _load(session, poor.id), await _load(session, unsolved.id)]
        poor_trace, unsolved_trace = await _trace(session, poor.id), await _trace(session, unsolved.id)
        poor_notices = (await _outbox(session, poor.id))[1:]  # after the closing's notice
        unsolved_notices = (await _outbox(session, unsolved.id))[1:]
    # handled again in its queue, to be rated again when it closes again
    assert [(c.status, c.rating, c.rehandle_count, c.closed_at) for c in cases] == [("in_handling", None, 1, None)] * 2
    assert poor_trace[-2:] == [("rated", "reporter", "窗口还是没人。", {"rating": 2, "unsolved": False}),
                               ("reopened", "reporter", "窗口还是没人。", {"rating": 2, "unsolved": False})]
    assert unsolved_trace[-2:] == [("rated", "reporter", None, {"rating": None, "unsolved": True}),
                                   ("reopened", "reporter", None, {"rating": None, "unsolved": True})]
    assert poor_notices == [
        *_to_groups({"notice": "rehandle", "locale": "en", "case_number": poor.case_number, "queue": "clean_hall",
                     "rating": 2, "unsolved": False}),
        ("telegram", "42", {"notice": "reopened", "locale": "zh", "case_number": poor.case_number})]
    assert unsolved_notices == _to_groups({"notice": "rehandle", "locale": "zh", "case_number": unsolved.case_number,
                                           "queue": "clean_hall", "rating": None, "unsolved": True})


async def test_a_fair_rating_or_a_poor_one_past_the_rehandling_limit_or_of_a_rejected_case_is_only_recorded(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        staff = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        fair = await _closed(session, "1")
        assert await loop.rate(session, fair, 3, comment=" 处理及时，但态度一般。\n", rehandle_limit=1,
                               staff_targets=GROUPS, tell_reporter=True) is False
        handled_once = await _closed(session, "2")
        assert await loop.rate(session, handled_once, 1, rehandle_limit=1) is True
        await actions.change_status(session, handled_once, CaseStatus.CLOSED, actor="staff:test")
        assert await loop.rate(session, handled_once, 1, rehandle_limit=1, staff_targets=GROUPS,
                               tell_reporter=True) is False
        never = await _closed(session, "3")
        assert await loop.rate(session, never, None, unsolved=True, comment="   ", rehandle_limit=0,
                               staff_targets=GROUPS) is False  # a comment of spaces is no comment
        rejected, _ = await file_case(session, reporter_ref="4")
        await loop.reject(session, rejected, actor=staff, reason="属于民事纠纷", referral="请拨打12345")
        assert await loop.rate(session, rejected, 1, rehandle_limit=5, staff_targets=GROUPS) is False
    async with sessionmaker() as session:
        stored = [await _load(session, case.id) for case in (fair, handled_once, never, rejected)]
        traces = [await _trace(session, case.id) for case in stored]
        told = [[payload["notice"] for *_, payload in await _outbox(session, case.id)] for case in stored]
    assert [(c.status, c.rating, c.rehandle_count) for c in stored] == [
        ("closed", 3, 0), ("closed", 1, 1), ("closed", 1, 0), ("rejected", 1, 0)]  # "not solved" rates lowest
    assert [[kind for kind, *_ in trace].count("reopened") for trace in traces] == [0, 1, 0, 0]
    assert [trace[-1] for trace in traces] == [
        ("rated", "reporter", "处理及时，但态度一般。", {"rating": 3, "unsolved": False}),
        ("rated", "reporter", None, {"rating": 1, "unsolved": False}),
        ("rated", "reporter", None, {"rating": None, "unsolved": True}),
        ("rated", "reporter", None, {"rating": 1, "unsolved": False})]
    assert told == [["status_changed"], ["status_changed", "status_changed"], ["status_changed"], ["status_changed"]]


# --- rejection and appeal -------------------------------------------------------------------------------------


async def test_a_rejection_needs_its_reason_and_referral_and_its_appeal_waits_for_one_supervisors_decision(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        wang = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        case, _ = await file_case(session)
        assert str(await _refused(loop.appeal(session, case, "不服", appeal_limit=1))) == \
            "only a rejected case can be appealed"
        for reason, referral in (("  ", "请拨打12345"), ("属于民事纠纷", " ")):
            refused = await _refused(loop.reject(session, case, actor=wang, reason=reason, referral=referral))
            assert isinstance(refused, ActionInputError)
            assert str(refused) == "a rejection needs its reason and where the reporter can turn instead"
        await loop.reject(session, case, actor=wang, reason=" 属于民事纠纷 ", referral=" 请拨打12345市民热线 ")
        event = await loop.appeal(session, case, "  这不是民事纠纷，是索要好处。 ", appeal_limit=1,
                                  staff_targets=GROUPS)
        assert (case.appeal_count, case.appeal_pending, event.body) == (1, True, "这不是民事纠纷，是索要好处。")
        assert str(await _refused(loop.appeal(session, case, "再次申请", appeal_limit=3))) == \
            "the appeal is being decided"
        refused = await _refused(loop.decide_appeal(session, case, actor=wang, uphold=True, reason=" "))
        assert isinstance(refused, ActionInputError) and str(refused) == "a decision on an appeal needs its reason"
        await loop.decide_appeal(session, case, actor=wang, uphold=True, reason=" 经复核，维持不予受理。 ")
        assert str(await _refused(loop.appeal(session, case, "再次申请", appeal_limit=1))) == \
            "the case was appealed already"
        assert str(await _refused(loop.decide_appeal(session, case, actor=wang, uphold=False, reason="改判"))) == \
            "no appeal is waiting"
    async with sessionmaker() as session:
        stored = await _load(session, case.id)
        trace = await _trace(session, case.id)
        notices = await _outbox(session, case.id)
        audited = await _audit(session, case.id)
    assert (stored.status, stored.appeal_count, stored.appeal_pending) == ("rejected", 1, False)
    assert stored.closed_at is not None
    assert trace[-3:] == [("rejected", f"staff:{wang.id}", "属于民事纠纷\n请拨打12345市民热线", {}),
                          ("appealed", "reporter", "这不是民事纠纷，是索要好处。", {}),
                          ("appeal_decided", f"staff:{wang.id}", "经复核，维持不予受理。", {"upheld": True})]
    number = case.case_number
    assert notices == [
        ("telegram", "42", {"notice": "status_changed", "locale": "zh", "case_number": number, "status": "rejected",
                            "note": "属于民事纠纷\n请拨打12345市民热线"}),
        *_to_groups({"notice": "appeal", "locale": "zh", "case_number": number, "queue": "clean_hall"}),
        ("telegram", "42", {"notice": "appeal_decided", "locale": "zh", "case_number": number, "upheld": True,
                            "reason": "经复核，维持不予受理。"})]
    assert audited == [
        ("case.status", wang.id, {"status": "rejected", "reason": "属于民事纠纷", "referral": "请拨打12345市民热线"}),
        ("case.appeal_decided", wang.id, {"upheld": True, "reason": "经复核，维持不予受理。"})]


async def test_an_appeal_granted_for_an_accepted_case_puts_it_back_in_handling(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        wang = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        case, _ = await file_case(session)
        await staff_actions.accept_case(session, case, actor=wang)
        await loop.reject(session, case, actor=wang, reason="不属受理范围", referral="请联系区信访办")
        await loop.appeal(session, case, "", appeal_limit=2)
        await loop.decide_appeal(session, case, actor=wang, uphold=False, reason="经复核，转窗口监督组办理。")
    async with sessionmaker() as session:
        stored = await _load(session, case.id)
        trace = await _trace(session, case.id)
        last = (await _outbox(session, case.id))[-1]
    assert (stored.status, stored.closed_at, stored.appeal_pending, stored.appeal_count) == (
        "in_handling", None, False, 1)
    assert trace[-2:] == [("appealed", "reporter", None, {}),
                          ("appeal_decided", f"staff:{wang.id}", "经复核，转窗口监督组办理。", {"upheld": False})]
    assert last[2] == {"notice": "appeal_decided", "locale": "zh", "case_number": case.case_number, "upheld": False,
                       "reason": "经复核，转窗口监督组办理。"}


# --- extensions -----------------------------------------------------------------------------------------------


async def test_an_extension_needs_a_reason_and_a_later_date_and_waits_alone_for_a_supervisor(
        sessionmaker: Any) -> None:
    due = _at(24 * 15)
    async with sessionmaker.begin() as session:
        li = await create_staff(session, "li", StaffRole.REVIEWER)
        case, _ = await file_case(session, resolve_due_at=due)
        undated, _ = await file_case(session, reporter_ref="2", resolve_due_at=None)
        closed = await _closed(session, "3", resolve_due_at=due)
        refused = await _refused(loop.request_extension(session, case, actor=li, reason=" ", resolve_due_at=_at(999)))
        assert isinstance(refused, ActionInputError) and str(refused) == "an extension needs a reason"
        for not_later in (due, due - timedelta(days=1)):
            refused = await _refused(loop.request_extension(session, case, actor=li, reason="需现场核查",
                                                            resolve_due_at=not_later))
            assert isinstance(refused, ActionInputError)
            assert str(refused) == "the new date must be later than the current resolve-by date"
        too_far = await _refused(loop.request_extension(session, case, actor=li, reason="需现场核查",
                                                         resolve_due_at=due + timedelta(days=31), max_days=30))
        assert isinstance(too_far, ActionInputError)  # 9999-12-31 was taken: a case that could never be overdue
        assert str(too_far) == "an extension adds at most 30 days to the current resolve-by date"
        assert str(await _refused(loop.request_extension(session, closed, actor=li, reason="需现场核查",
                                                         resolve_due_at=due + timedelta(days=9)))) == \
            f"case {closed.case_number} is closed"
        request = await loop.request_extension(session, case, actor=li, reason=" 需公安协助调取监控 ",
                                               resolve_due_at=due + timedelta(days=10), staff_targets=GROUPS)
        refused = await _refused(loop.request_extension(session, case, actor=li, reason="再延一次",
                                                        resolve_due_at=due + timedelta(days=20)))
        assert not isinstance(refused, ActionInputError)
        assert str(refused) == "an extension request of this case is waiting for a supervisor"
        await loop.request_extension(session, undated, actor=li, reason="需现场核查", resolve_due_at=_at(1))
    async with sessionmaker() as session:
        requests = await loop.extension_requests(session, case.id)
        stored = await _load(session, case.id)
        notices = await _outbox(session, case.id)
        audited = await _audit(session, case.id)
        assert [r.status for r in await loop.extension_requests(session, undated.id)] == ["pending"]
        assert await loop.extension_requests(session, closed.id) == []
    until = (due + timedelta(days=10)).isoformat()
    assert [(r.id, r.status, r.reason, r.requested_by_id, r.resolve_due_at, r.decided_at) for r in requests] == [
        (request.id, "pending", "需公安协助调取监控", li.id, due + timedelta(days=10), None)]
    assert (stored.resolve_due_at, stored.extension_count) == (due, 0)  # nothing moves before a supervisor decides
    assert notices == _to_groups({"notice": "extension_request", "locale": "zh", "case_number": case.case_number,
                                  "queue": "clean_hall", "until": until})
    assert audited == [("case.extension_requested", li.id,
                        {"request_id": request.id, "until": until, "reason": "需公安协助调取监控"})]


async def test_an_extension_is_decided_once_and_the_waiting_ones_are_listed_by_queue(sessionmaker: Any) -> None:
    due = _at(24 * 15)
    async with sessionmaker.begin() as session:
        li = await create_staff(session, "li", StaffRole.REVIEWER)
        wang = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        hall, _ = await file_case(session, reporter_ref="1", queue="clean_hall", resolve_due_at=due)
        petition, _ = await file_case(session, reporter_ref="2", queue="petitions", resolve_due_at=due)
        first = await loop.request_extension(session, hall, actor=li, reason="需调取监控",
                                             resolve_due_at=due + timedelta(days=20))
        other = await loop.request_extension(session, petition, actor=li, reason="需现场核查",
                                             resolve_due_at=due + timedelta(days=5))
    async with sessionmaker.begin() as session:
        listed = [(r.id, c.id) for r, c in await loop.pending_extensions(session, None)]
        assert listed == [(first.id, hall.id), (other.id, petition.id)]
        assert [(r.id, c.id) for r, c in await loop.pending_extensions(session, ["petitions"])] == [
            (other.id, petition.id)]
        assert await loop.pending_extensions(session, []) == []
        case = await _load(session, hall.id)
        request = await session.get(ExtensionRequest, first.id)
        assert request is not None
        await loop.decide_extension(session, request, case, actor=wang, approve=True, note=" 同意 ")
        assert str(await _refused(loop.decide_extension(session, request, case, actor=wang, approve=False))) == \
            "the request was decided already"
        second = await loop.request_extension(session, case, actor=li, reason="仍需公安协助",
                                              resolve_due_at=due + timedelta(days=30))
        await loop.decide_extension(session, second, case, actor=wang, approve=False, note="先完成初步核查")
    async with sessionmaker() as session:
        stored = await _load(session, hall.id)
        decided = await loop.extension_requests(session, hall.id)
        pending = [(r.id, c.id) for r, c in await loop.pending_extensions(session, None)]
        trace = await _trace(session, hall.id)
        to_reporter = [payload for channel, recipient, payload in await _outbox(session, hall.id)
                       if (channel, recipient) == ("telegram", "1")]
    until = (due + timedelta(days=20)).isoformat()
    assert (stored.resolve_due_at, stored.extension_count) == (due + timedelta(days=20), 1)
    assert [(r.status, r.decided_by_id, r.decided_at is not None) for r in decided] == [
        ("approved", wang.id, True), ("refused", wang.id, True)]
    assert pending == [(other.id, petition.id)]
    assert ("extended", f"staff:{wang.id}", None, {"until": until}) in trace
    assert to_reporter == [{"notice": "extended", "locale": "zh", "case_number": hall.case_number, "until": until}]


async def test_an_extension_cannot_be_approved_once_its_case_is_closed(sessionmaker: Any) -> None:
    due = _at(24 * 15)
    async with sessionmaker.begin() as session:
        li = await create_staff(session, "li", StaffRole.REVIEWER)
        wang = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        case, _ = await file_case(session, resolve_due_at=due)
        request = await loop.request_extension(session, case, actor=li, reason="需调取监控",
                                               resolve_due_at=due + timedelta(days=20))
        await staff_actions.set_status(session, case, CaseStatus.CLOSED, actor=wang, body="经核查，已办结。")
    with pytest.raises(ActionError):  # refused, whatever the reason given (the case is closed, the request lapsed)
        async with sessionmaker.begin() as session:
            await loop.decide_extension(session, request, await _load(session, case.id), actor=wang, approve=True)
    async with sessionmaker() as session:
        stored = await _load(session, case.id)
        kinds = [payload["notice"] for *_, payload in await _outbox(session, case.id)]
    assert (stored.resolve_due_at, stored.extension_count) == (due, 0) and "extended" not in kinds
    async with sessionmaker.begin() as session:  # not waiting for a supervisor any more, but it can be refused
        assert await loop.pending_extensions(session, None) == []
        pending = await session.get(ExtensionRequest, request.id)
        await loop.decide_extension(session, pending, await _load(session, case.id), actor=wang, approve=False)
    async with sessionmaker() as session:
        assert [r.status for r in await loop.extension_requests(session, case.id)] == ["refused"]


# --- notes and questions for the reporter ---------------------------------------------------------------------


async def test_a_note_and_a_question_for_the_reporter_need_their_text_and_a_question_needs_an_open_case(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", "42")
        await actions.finish_step(session, conversation)
    async with sessionmaker.begin() as session:
        li = await create_staff(session, "li", StaffRole.REVIEWER)
        case, _ = await file_case(session)
        closed = await _closed(session, "43")
        refused = await _refused(loop.tell_reporter(session, case, " \n ", actor=li))
        assert isinstance(refused, ActionInputError) and str(refused) == "a note for the reporter needs text"
        refused = await _refused(loop.ask_for_information(session, case, "  ", actor=li, add_label="补充材料"))
        assert isinstance(refused, ActionInputError)
        assert str(refused) == "asking the reporter for more information needs the question"
        refused = await _refused(loop.ask_for_information(session, closed, "请提供小票", actor=li,
                                                          add_label="补充材料"))
        assert str(refused) == f"case {closed.case_number} is closed"
        await loop.tell_reporter(session, case, " 预计下周反馈核查结果。 ", actor=li)
        await loop.ask_for_information(session, case, " 请提供排队小票的照片。 ", actor=li, add_label="补充材料")
        await loop.tell_reporter(session, closed, "已对窗口排班作出调整。", actor=li)  # a note after closing is fine
    async with sessionmaker.begin() as session:
        trace = await _trace(session, case.id)
        notices = await _outbox(session, case.id)
        audited = await _audit(session, case.id)
        waiting = await actions.load_conversation(session, "telegram", "42")
        closed_notices = await _outbox(session, closed.id)
    number = case.case_number
    assert trace[-2:] == [("note", f"staff:{li.id}", "预计下周反馈核查结果。", {}),
                          ("more_info", f"staff:{li.id}", "请提供排队小票的照片。", {})]
    assert notices == [
        ("telegram", "42", {"notice": "note", "locale": "zh", "case_number": number, "note": "预计下周反馈核查结果。"}),
        ("telegram", "42", {"notice": "more_info", "locale": "zh", "case_number": number,
                            "question": "请提供排队小票的照片。",
                            "choices": [[f"case:follow_up@{case.id}", "补充材料"]]})]
    assert audited == [("case.note_to_reporter", li.id, {}),
                       ("case.more_info_asked", li.id, {"question": "请提供排队小票的照片。"})]
    assert waiting.state == "case_menu"
    assert (waiting.context["case_id"], waiting.context["choices"]) == (case.id,
                                                                        [[f"case:follow_up@{case.id}", "补充材料"]])
    assert closed_notices[-1][2]["note"] == "已对窗口排班作出调整。"


# --- transfers ------------------------------------------------------------------------------------------------


async def test_transfers_are_told_to_the_reporter_once_and_alert_the_new_queues_staff_from_the_set_count(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        li = await create_staff(session, "li", StaffRole.REVIEWER)
        case, _ = await file_case(session, queue="clean_hall")
        hops = [("petitions", "wrong_category", 2), ("work_style", None, 2), ("clean_hall", None, 2),
                ("petitions", None, None)]
        events = [await loop.transfer(session, case, queue, actor=li, reason="职责不符", reason_code=code,
                                      alert_after=alert_after, staff_targets=GROUPS)
                  for queue, code, alert_after in hops]
    async with sessionmaker() as session:
        stored = await _load(session, case.id)
        trace = await _trace(session, case.id)
        notices = await _outbox(session, case.id)
        moves = [detail for action, _, detail in await _audit(session, case.id) if action == "case.move"]
    assert (stored.queue, stored.transfer_count) == ("petitions", 4)
    assert [event.kind for event in events] == ["routed"] * 4
    staff = f"staff:{li.id}"
    assert trace[2:] == [
        ("routed", staff, None, {"queue": "petitions", "reason": "moved", "from": "clean_hall", "internal": True}),
        ("transferred", staff, None, {}),  # what the reporter reads, once
        ("routed", staff, None, {"queue": "work_style", "reason": "moved", "from": "petitions", "internal": True}),
        ("routed", staff, None, {"queue": "clean_hall", "reason": "moved", "from": "work_style", "internal": True}),
        ("routed", staff, None, {"queue": "petitions", "reason": "moved", "from": "clean_hall", "internal": True})]
    number = case.case_number
    assert notices == _to_groups({"notice": "transfer_alert", "locale": "zh", "case_number": number,
                                  "queue": "work_style", "transfers": 2, "source": "petitions"}) + _to_groups(
        {"notice": "transfer_alert", "locale": "zh", "case_number": number, "queue": "clean_hall", "transfers": 3,
         "source": "work_style"})
    assert moves[0] == {"from": "clean_hall", "to": "petitions", "reason": "职责不符", "transfers": 1,
                        "reason_code": "wrong_category"}
    assert moves[1] == {"from": "petitions", "to": "work_style", "reason": "职责不符", "transfers": 2}


# --- deadlines ------------------------------------------------------------------------------------------------


def test_the_deadline_worked_towards_is_acceptance_until_accepted_then_resolution_and_none_once_closed() -> None:
    accept_by, resolve_by, accepted = _at(24), _at(24 * 15), _at(-1)
    assert loop.deadline_of(Case(status="routed", accepted_at=None, accept_due_at=accept_by,
                                 resolve_due_at=resolve_by)) == ("accept", accept_by)
    assert loop.deadline_of(Case(status="accepted", accepted_at=accepted, accept_due_at=accept_by,
                                 resolve_due_at=resolve_by)) == ("resolve", resolve_by)
    assert loop.deadline_of(Case(status="routed", accepted_at=None, accept_due_at=None,
                                 resolve_due_at=resolve_by)) == ("resolve", resolve_by)
    assert loop.deadline_of(Case(status="in_handling", accepted_at=accepted, accept_due_at=accept_by,
                                 resolve_due_at=None)) is None
    for status in ("closed", "rejected", "duplicate"):
        assert loop.deadline_of(Case(status=status, accepted_at=None, accept_due_at=accept_by,
                                     resolve_due_at=resolve_by)) is None


async def test_staff_are_warned_and_escalated_once_per_deadline_and_again_for_the_next_one(sessionmaker: Any) -> None:
    accept_by, resolve_by = _at(5), _at(24 * 15)
    async with sessionmaker.begin() as session:
        wang = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        case, _ = await file_case(session, accept_due_at=accept_by, resolve_due_at=resolve_by)
        closed = await _closed(session, "43", accept_due_at=_at(-5), resolve_due_at=resolve_by)
        assert await loop.warn(session, case, staff_targets=GROUPS, staff_locale="en") is True
        assert await loop.warn(session, case, staff_targets=GROUPS, staff_locale="en") is False
        await staff_actions.accept_case(session, case, actor=wang)
        assert await loop.warn(session, case, staff_targets=GROUPS, staff_locale="en") is True  # now the resolve-by
        assert await loop.escalate(session, case, staff_targets=GROUPS, staff_locale="zh") is True
        assert await loop.escalate(session, case, staff_targets=GROUPS, staff_locale="zh") is False
        assert await loop.warn(session, closed, staff_targets=GROUPS, staff_locale="zh") is False
        assert await loop.escalate(session, closed, staff_targets=GROUPS, staff_locale="zh") is False
    async with sessionmaker() as session:
        stored = await _load(session, case.id)
        to_staff = [(channel, recipient, payload) for channel, recipient, payload in await _outbox(session, case.id)
                    if payload["notice"] in ("due_soon", "escalation")]
        escalations = [entry for entry in await _audit(session, case.id) if entry[0] == "case.escalated"]
        closed_told = [payload["notice"] for *_, payload in await _outbox(session, closed.id)]
        closed_audit = await _audit(session, closed.id)
    number = case.case_number
    assert (stored.warned_kind, stored.warned_due_at, stored.escalated_kind, stored.escalated_due_at) == (
        "resolve", resolve_by, "resolve", resolve_by)
    assert to_staff == _to_groups({"notice": "due_soon", "locale": "en", "case_number": number, "queue": "clean_hall",
                                   "deadline": "accept", "until": accept_by.isoformat()}) + _to_groups(
        {"notice": "due_soon", "locale": "en", "case_number": number, "queue": "clean_hall", "deadline": "resolve",
         "until": resolve_by.isoformat()}) + _to_groups(
        {"notice": "escalation", "locale": "zh", "case_number": number, "queue": "clean_hall", "deadline": "resolve",
         "until": resolve_by.isoformat()})
    assert escalations == [("case.escalated", None, {"deadline": "resolve", "due": resolve_by.isoformat()})]
    assert closed_told == ["status_changed"] and closed_audit == []


async def test_the_deadline_scan_finds_only_the_open_cases_whose_staff_were_not_told_of_their_deadline(
        sessionmaker: Any) -> None:
    now = utcnow()
    async with sessionmaker.begin() as session:
        wang = await create_staff(session, "wang", StaffRole.SUPERVISOR)

        async def filed(ref: str, accept_in: float | None, resolve_in: float | None = 24 * 30) -> Case:
            case, _ = await file_case(session, reporter_ref=ref, accept_due_at=None if accept_in is None else
                                      _at(accept_in), resolve_due_at=None if resolve_in is None else _at(resolve_in))
            return case

        overdue = await filed("overdue", -1)  # past its accept-by date, no one told
        warned = await filed("warned", 2)
        await loop.warn(session, warned, staff_targets=(), staff_locale="zh")  # told before, not due yet
        escalated = await filed("escalated", -2)
        await loop.escalate(session, escalated, staff_targets=(), staff_locale="zh")
        warned_then_overdue = await filed("warned-then-overdue", -3)
        await loop.warn(session, warned_then_overdue, staff_targets=(), staff_locale="zh")
        await filed("later", 24 * 3)  # due after the horizon
        closed = await filed("closed", -1)
        await actions.change_status(session, closed, CaseStatus.CLOSED, actor="staff:test")
        accepted = await filed("accepted", -4)  # its accept-by date is past, but it works towards its resolve-by
        await staff_actions.accept_case(session, accepted, actor=wang)
        resolving = await filed("resolving", -4, resolve_in=5)
        await staff_actions.accept_case(session, resolving, actor=wang)
    async with sessionmaker() as session:
        untold = await loop.untold_deadline_case_ids(session, now + timedelta(days=1), now)
        everything = await loop.cases_by_id(session, untold)
    # not: warned (told, not due yet), escalated (told), later (after the horizon), closed, accepted (works towards
    # its resolve-by date, a month away)
    assert untold == [overdue.id, warned_then_overdue.id, resolving.id]
    assert [case.id for case in everything] == untold
    assert all(isinstance(case, Case) and case.reporter_ref for case in everything)  # whole cases, to tell of them
