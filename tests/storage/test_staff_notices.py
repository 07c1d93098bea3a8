"""The unread marks of the overview and the lists (storage/staff_notices.py) against SQLite and PostgreSQL: a
case's follow-up is read by opening that case, never by opening another one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from storage import actions, loop, staff_actions, staff_notices
from storage.models import Case, StaffRole, utcnow
from tests.factories import file_case


async def test_opening_one_case_does_not_read_another_cases_follow_up(sessionmaker: Any) -> None:
    """Issue 14: the unread mark's "seen since" subquery must look at the views of the case itself. Reading it
    against every case made the overview scan all cases once per follow-up (9.6 s at 20,000 cases on SQLite,
    minutes at 100,000) and let any opening of any case after a follow-up mark that follow-up read."""
    async with sessionmaker.begin() as session:
        reviewer = await staff_actions.create_staff(session, username="wang", display_name="王审核",
                                                    role=StaffRole.REVIEWER, password_hash="not-a-hash")
        colleague = await staff_actions.create_staff(session, username="zhao", display_name="赵审核",
                                                     role=StaffRole.REVIEWER, password_hash="not-a-hash")
        unassigned, _ = await file_case(session, queue="clean_hall")
        assigned, _ = await file_case(session, queue="district_kaifu", district="kaifu")
        await staff_actions.assign_case(session, assigned, colleague, actor=colleague)
        other_unassigned, _ = await file_case(session, queue="triage")
        other_assigned, _ = await file_case(session, queue="triage")
        await staff_actions.assign_case(session, other_assigned, reviewer, actor=reviewer)
        await actions.add_follow_up(session, unassigned, text="补充：又去了一次。")
        await actions.add_follow_up(session, assigned, text="补充：还是没人。")
        ids = [unassigned.id, assigned.id, other_unassigned.id, other_assigned.id]
    later = utcnow() + timedelta(minutes=1)
    async with sessionmaker.begin() as session:  # the two cases without news are opened by their handlers
        await staff_notices.case_seen(session, other_unassigned.id, reviewer.id, later)
        await staff_notices.case_seen(session, other_assigned.id, reviewer.id, later)
    async with sessionmaker() as session:
        assert await staff_notices.unread_case_ids(session, ids) == {unassigned.id, assigned.id}
        assert await staff_notices.unread_by_queue(session, None) == {"clean_hall": 1, "district_kaifu": 1}
        assert await staff_notices.unread_by_queue(session, ["clean_hall"]) == {"clean_hall": 1}
    async with sessionmaker.begin() as session:  # its assignee opens one, anyone opens the unassigned one
        await staff_notices.case_seen(session, assigned.id, colleague.id, later)
        await staff_notices.case_seen(session, unassigned.id, reviewer.id, later)
    async with sessionmaker() as session:
        assert await staff_notices.unread_case_ids(session, ids) == set()
        assert await staff_notices.unread_by_queue(session, None) == {}


async def test_a_new_assignee_finds_the_follow_up_unread_until_they_open_the_case(sessionmaker: Any) -> None:
    """The mark follows the case's handlers: a follow-up read by a colleague is news to the reviewer the case is
    then assigned to, and moving the case to another queue (assigned to nobody) keeps it read once anyone has
    seen it."""
    async with sessionmaker.begin() as session:
        wang = await staff_actions.create_staff(session, username="wang", display_name="王审核",
                                                role=StaffRole.REVIEWER, password_hash="not-a-hash")
        zhao = await staff_actions.create_staff(session, username="zhao", display_name="赵审核",
                                                role=StaffRole.REVIEWER, password_hash="not-a-hash")
        case, _ = await file_case(session, queue="clean_hall")
        await actions.add_follow_up(session, case, text="补充：窗口又关了。")
        case_id = case.id
    async with sessionmaker.begin() as session:  # unassigned: anyone's opening reads it
        await staff_notices.case_seen(session, case_id, wang.id, utcnow())
    async with sessionmaker() as session:
        assert await staff_notices.unread_by_queue(session, None) == {}
    async with sessionmaker.begin() as session:
        case = await session.get(Case, case_id)
        await staff_actions.assign_case(session, case, zhao, actor=wang)
    async with sessionmaker() as session:
        assert await staff_notices.unread_by_queue(session, None) == {"clean_hall": 1}
        assert await staff_notices.unread_case_ids(session, [case_id]) == {case_id}
    async with sessionmaker.begin() as session:
        await staff_notices.case_seen(session, case_id, zhao.id, utcnow())
        case = await session.get(Case, case_id)
        await staff_actions.assign_case(session, case, wang, actor=zhao)  # wang saw it too: still read
    async with sessionmaker() as session:
        assert await staff_notices.unread_by_queue(session, None) == {}
    async with sessionmaker.begin() as session:
        case = await session.get(Case, case_id)
        await actions.add_follow_up(session, case, text="再补充：今天还是一样。")
    async with sessionmaker() as session:
        assert await staff_notices.unread_by_queue(session, None) == {"clean_hall": 1}
    async with sessionmaker.begin() as session:  # moved on: assigned to nobody, and nobody saw the new one yet
        case = await session.get(Case, case_id)
        await loop.transfer(session, case, "triage", actor=wang, reason="不属本队列")
    async with sessionmaker() as session:
        assert await staff_notices.unread_by_queue(session, None) == {"triage": 1}
    async with sessionmaker.begin() as session:
        await staff_notices.case_seen(session, case_id, zhao.id, utcnow())
    async with sessionmaker() as session:
        assert await staff_notices.unread_by_queue(session, None) == {}


async def test_a_follow_up_taken_back_takes_its_unread_notice_not_an_earlier_read_one(sessionmaker: Any) -> None:
    """The first part of a cut text, added and taken back for the whole: the assignee keeps one notice for it; the
    notice of an earlier follow-up they already read stays, read."""
    async with sessionmaker.begin() as session:
        wang = await staff_actions.create_staff(session, username="wang", display_name="王审核",
                                                role=StaffRole.REVIEWER, password_hash="not-a-hash")
        case, _ = await file_case(session, queue="clean_hall")
        await staff_actions.assign_case(session, case, wang, actor=wang)
        await actions.add_follow_up(session, case, text="补充：当天下午3点。")
    async with sessionmaker.begin() as session:
        await staff_notices.case_seen(session, case.id, wang.id, utcnow())
    async with sessionmaker.begin() as session:
        loaded = await actions.get_case(session, case.id)
        assert loaded is not None
        part = await actions.add_follow_up(session, loaded, text="补充：窗口人员一直玩手机。" * 200)
    async with sessionmaker.begin() as session:
        await actions.withdraw_follow_up(session, part.id)
    async with sessionmaker.begin() as session:
        loaded = await actions.get_case(session, case.id)
        assert loaded is not None
        await actions.add_follow_up(session, loaded, text="补充：窗口人员一直玩手机。" * 300)
    async with sessionmaker() as session:
        told = await staff_notices.notices_for(session, wang.id)
        assert [notice.read for notice in told] == [False, True]
        assert await staff_notices.unread_notice_count(session, wang.id) == 1
