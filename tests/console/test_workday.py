"""A reviewer's working day, called as the console's pages call it: which cases have unread information from
their reporter and how many per queue the user works in, the assignee's notices, the canned replies of a queue
(kept by supervisors only, refused with the reason), and actions on a selection of cases — refused as a whole
when the request cannot be right, case by case when one case refuses. On SQLite and the PostgreSQL on
127.0.0.1 where cases are involved. (tests/console/test_working_day.py drives the same through the pages.)"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from console import operations, workday
from console.auth import Principal
from console.context import ConsoleContext
from console.operations import OperationError
from console.workday import BulkResult, Reply
from handlers.city import load_city_config
from storage import actions, canned_replies, staff_actions
from storage.db import Database
from storage.models import AuditEntry, Case, CaseStatus, StaffRole, StaffUser
from tests.conftest import city_file, make_test_keyring
from tests.console.conftest import make_context
from tests.factories import create_staff, file_case

IP = "203.0.113.7"


class Day:
    """A console context on the test database with its staff and cases."""

    def __init__(self, context: ConsoleContext) -> None:
        self.context = context
        self.database = context.database

    async def staff(self, username: str, role: StaffRole = StaffRole.REVIEWER, queues: Sequence[str] = ()) -> Principal:
        """A new staff member as a console request from `IP` sees them (with their queues)."""
        async with self.database.sessionmaker.begin() as session:
            await create_staff(session, username, role, queues)
        async with self.database.read_sessionmaker() as session:
            user = await staff_actions.get_staff_by_username(session, username)
        assert user is not None
        return Principal(user=user, session=None, context=self.context, ip=IP)

    async def case(self, queue: str = "clean_hall", reporter: str = "42") -> Case:
        async with self.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, queue=queue, reporter_ref=reporter, secret_key=self.context.secret_key)
        return case

    async def assign(self, case: Case, principal: Principal) -> None:
        async with self.database.sessionmaker.begin() as session:
            found = await session.get(Case, case.id)
            assert found is not None
            await staff_actions.assign_case(session, found, principal.user, actor=principal.user)

    async def follow_up(self, case: Case, text: str = "补充：今天下午又去了一次，还是没人。") -> None:
        """What the dialog does when the reporter adds information to the case."""
        async with self.database.sessionmaker.begin() as session:
            found = await session.get(Case, case.id)
            assert found is not None
            await actions.add_follow_up(session, found, text=text)

    async def found(self, case: Case) -> Case:
        async with self.database.read_sessionmaker() as session:
            found = await session.get(Case, case.id)
        assert found is not None
        return found

    async def audit(self, prefix: str) -> list[AuditEntry]:
        async with self.database.read_sessionmaker() as session:
            entries = (await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
            return [entry for entry in entries if entry.action.startswith(prefix)]


@pytest.fixture
def day(database: Any, tmp_path: Path) -> Day:
    return Day(make_context(database, tmp_path))


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[Principal]:
    """A supervisor on a console whose database is never opened: for what is refused before any case is read."""
    database = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}", make_test_keyring())
    user = StaffUser(id=1, username="wang", display_name="王", role=StaffRole.SUPERVISOR, password_hash="-")
    yield Principal(user=user, session=None, context=make_context(database, tmp_path), ip=IP)
    await database.dispose()


async def _refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(OperationError) as refused:
        await call
    return refused.value.status_code, refused.value.message


# --- what is new ----------------------------------------------------------------------------------------------


async def test_a_follow_up_marks_its_case_unread_in_the_users_queues_and_tells_its_assignee(day: Day) -> None:
    reviewer = await day.staff("li", queues=["clean_hall"])
    colleague = await day.staff("zhao", queues=["clean_hall"])
    supervisor = await day.staff("wang", StaffRole.SUPERVISOR)
    hall, quiet, assigned = [await day.case("clean_hall", str(n)) for n in (1, 2, 3)]
    petition = await day.case("petitions", "4")
    await day.assign(assigned, reviewer)
    for case in (hall, petition, assigned):
        await day.follow_up(case)

    assert await workday.unread_cases(reviewer, [hall, quiet]) == {hall.id}
    assert await workday.unread_cases(reviewer, []) == set()
    assert await workday.unread_by_queue(reviewer) == {"clean_hall": 2}  # not the queue they do not work in
    assert await workday.unread_by_queue(supervisor) == {"clean_hall": 2, "petitions": 1}
    # only the assignee is told; a case assigned to nobody shows its unread mark to the whole queue instead
    await day.follow_up(assigned, "再补充一张照片的说明。")
    told = await workday.notices(reviewer)
    assert [(n.case_number, n.kind, n.read) for n in told] == [(assigned.case_number, "follow_up", False)] * 2
    assert told[0].id > told[1].id  # newest first
    assert await workday.notices(colleague) == [] and await workday.notices(supervisor) == []


# --- canned replies -------------------------------------------------------------------------------------------


async def test_a_supervisor_keeps_replies_per_queue_and_a_reviewer_reads_them(day: Day) -> None:
    supervisor = await day.staff("wang", StaffRole.SUPERVISOR)
    reviewer = await day.staff("li", queues=["clean_hall"])
    await workday.save_reply(supervisor, queue="clean_hall", title="已受理", body="您的举报已受理。", reply_id=None)
    await workday.save_reply(supervisor, queue="petitions", title="信访件", body="已转信访室。", reply_id=None)

    listed = await workday.replies_for(reviewer, ["clean_hall"])
    assert [(r.queue, r.title, r.body, r.editable) for r in listed] == [
        ("clean_hall", "已受理", "您的举报已受理。", True)]
    reply = listed[0]
    assert reply.id is not None and reply.key == str(reply.id)

    await workday.save_reply(supervisor, queue="clean_hall", title="已受理", body="已受理，十五个工作日内答复。",
                             reply_id=reply.id)
    changed = await workday.replies_for(reviewer, ["clean_hall", "petitions"])
    assert [(r.id, r.queue, r.body) for r in changed] == [
        (reply.id, "clean_hall", "已受理，十五个工作日内答复。"), (changed[1].id, "petitions", "已转信访室。")]
    assert await workday.replies_for(reviewer, []) == []

    await workday.delete_reply(supervisor, reply.id)
    assert [r.title for r in await workday.replies_for(reviewer, ["clean_hall", "petitions"])] == ["信访件"]
    entries = await day.audit("canned_reply.")
    assert [(e.action, e.ip) for e in entries] == [("canned_reply.save", IP)] * 3 + [("canned_reply.delete", IP)]


async def test_changing_canned_replies_is_refused_with_the_reason(day: Day) -> None:
    supervisor = await day.staff("wang", StaffRole.SUPERVISOR)
    reviewer = await day.staff("li", queues=["clean_hall"])
    assert await _refusal(workday.save_reply(reviewer, queue="clean_hall", title="t", body="b", reply_id=None)) == (
        403, "only supervisors and administrators may do this")
    assert await _refusal(workday.save_reply(supervisor, queue="mars" * 20, title="t", body="b", reply_id=None)) == (
        422, f"unknown queue {'mars' * 15!r}")  # the name cut to 60 characters
    assert await _refusal(workday.save_reply(supervisor, queue="clean_hall", title="t", body="b", reply_id=999)) == (
        404, "no canned reply 999")
    assert await _refusal(workday.save_reply(supervisor, queue="clean_hall", title=" ", body="b", reply_id=None)) == (
        422, "a canned reply needs a title and a text")
    assert await _refusal(workday.delete_reply(supervisor, 999)) == (404, "no canned reply 999")
    async with day.database.sessionmaker.begin() as session:
        kept = await canned_replies.save(session, queue="clean_hall", title="已受理", body="已受理。",
                                         actor=supervisor.user)
    assert await _refusal(workday.delete_reply(reviewer, kept.id)) == (
        403, "only supervisors and administrators may do this")
    assert [r.title for r in await workday.replies_for(supervisor, ["clean_hall"])] == ["已受理"]
    assert [e.action for e in await day.audit("canned_reply.")] == ["canned_reply.save"]


def test_the_default_city_brings_no_replies_of_its_own(offline: Principal) -> None:
    assert [workday.configured_replies(offline, queue.code) for queue in offline.context.city.queues] == [
        [] for _ in offline.context.city.queues]


def test_a_citys_configuration_brings_read_only_replies(offline: Principal, tmp_path: Path) -> None:
    path = city_file(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        '{ code = "clean_hall", zh',
        '{ code = "clean_hall", canned_replies = [{ title = "转办说明", body = "已转交大厅负责人核查。" }, '
        '{ title = "无正文", body = "" }], zh', 1)
    path.write_text(text, encoding="utf-8")
    principal = dataclasses.replace(offline, context=dataclasses.replace(offline.context,
                                                                         city=load_city_config(path)))
    assert workday.configured_replies(principal, "clean_hall") == [  # the one without a text is left out
        Reply("cfg-clean_hall-0", "clean_hall", "转办说明", "已转交大厅负责人核查。", False)]


# --- actions on a selection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("numbers", "action", "fields", "message"), [
    (["QL-1"], "delete", {}, "unknown bulk action 'delete'"),
    ([" ", ""], "assign", {}, "select at least one case"),
    ([f"QL-{n}" for n in range(201)], "assign", {}, "at most 200 cases at once"),
    (["QL-1"], "move", {"queue": "mars", "reason": "不属于本组"}, "unknown queue 'mars'"),
    (["QL-1"], "move", {"queue": "petitions", "reason": "  "}, "moving cases needs a reason"),
    (["QL-1"], "status", {"note": "统一处理"}, "choose the new status"),
    # 200 cases, some selected twice, are not too many: what is refused is the queue
    ([*(f"QL-{n}" for n in range(200)), " QL-0 ", "QL-1"], "move", {"queue": "mars", "reason": "r"},
     "unknown queue 'mars'"),
])
async def test_a_request_that_cannot_be_right_is_refused_as_a_whole(
        offline: Principal, numbers: list[str], action: str, fields: dict[str, str], message: str) -> None:
    assert await _refusal(workday.bulk(offline, numbers, action, **fields)) == (422, message)


async def test_each_selected_case_is_done_or_reported_and_the_others_go_on(day: Day) -> None:
    reviewer = await day.staff("li", queues=["clean_hall"])
    supervisor = await day.staff("wang", StaffRole.SUPERVISOR)
    first, second = await day.case("clean_hall", "1"), await day.case("clean_hall", "2")
    elsewhere = await day.case("petitions", "3")
    numbers = [str(case.case_number) for case in (first, elsewhere, second)]

    # handing cases to someone else is a supervisor's call: refused outright, nothing changed
    assert await _refusal(workday.bulk(reviewer, numbers, "assign", username="wang")) == (
        403, "only supervisors and administrators may do this")
    taken = await workday.bulk(reviewer, [f" {numbers[0]} ", *numbers, "QL-2026-999999"], "assign", username=" li ")
    assert taken == [
        BulkResult(numbers[0], None), BulkResult(numbers[1], f"no case {numbers[1]} in your queues"),
        BulkResult(numbers[2], None), BulkResult("QL-2026-999999", "no case QL-2026-999999 in your queues")]
    assert [(await day.found(case)).assigned_to_id for case in (first, elsewhere, second)] == [
        reviewer.user.id, None, reviewer.user.id]

    handled = await workday.bulk(reviewer, [numbers[0], numbers[2]], "status", status="in_handling", note=" 已转办 ")
    assert [result.error for result in handled] == [None, None]
    assert [(await day.found(case)).status for case in (first, second)] == [CaseStatus.IN_HANDLING] * 2
    assert await workday.bulk(reviewer, [numbers[0]], "status", status="lost") == [
        BulkResult(numbers[0], "unknown status 'lost'")]
    let_go = await workday.bulk(reviewer, [numbers[0]], "assign", username="")
    assert let_go == [BulkResult(numbers[0], None)] and (await day.found(first)).assigned_to_id is None

    moved = await workday.bulk(supervisor, [numbers[0], numbers[1]], "move", queue="petitions", reason="涉及信访事项")
    assert moved == [BulkResult(numbers[0], None), BulkResult(numbers[1], "the case is in petitions already")]
    assert (await day.found(first)).queue == "petitions"
    assert [(e.detail["reason"], e.ip) for e in await day.audit("case.move")] == [("涉及信访事项", IP)]


async def test_a_supervisor_returns_a_selection_to_triage_with_one_of_the_transfer_reasons(day: Day) -> None:
    supervisor = await day.staff("wang", StaffRole.SUPERVISOR)
    case = await day.case("clean_hall")
    number = str(case.case_number)
    without = await workday.bulk(supervisor, [number], "move", queue="triage", reason="不归本组")
    assert without[0].error is not None and "transfer reasons" in without[0].error
    assert (await day.found(case)).queue == "clean_hall"
    assert await _refusal(workday.bulk(supervisor, [number], "move", queue="triage", reason="不归本组",
                                       reason_code="made up")) == (422, "unknown transfer reason 'made up'")
    # a reason code the city does not have is refused on any move, one case or a selection, leaving or not
    assert await _refusal(operations.move(supervisor, number, "petitions", "不归本组", "made up")) == (
        422, "unknown transfer reason 'made up'")
    code = day.context.city.loop.transfer_reasons[1]  # "分类有误 Wrong category"
    moved = await workday.bulk(supervisor, [number], "move", queue="triage", reason="不归本组", reason_code=code)
    assert moved == [BulkResult(number, None)]
    assert (await day.found(case)).queue == "triage"
