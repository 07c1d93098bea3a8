"""The console's reads against SQLite and the PostgreSQL on 127.0.0.1: ticket lists with every filter and
the text search (the description is encrypted), counts per queue, a ticket with its trace and notes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nlp.search import query_terms
from storage import actions, queries, staff_actions
from storage.models import Case, CaseStatus, StaffRole, utcnow
from tests.factories import file_case

NOW = utcnow()
LONG_AGO = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


async def _cases(sessionmaker: Any) -> dict[str, str]:
    """Five cases of different kinds; returns name → case number."""
    made: dict[str, Case] = {}
    async with sessionmaker.begin() as session:
        made["hall"], _ = await file_case(session, queue="clean_hall", label="slow_service", confidence=0.92,
                                          place="芙蓉区政务服务中心", now=LONG_AGO,
                                          description="The counter clerk left for two hours.")
        made["unsure"], _ = await file_case(session, queue="triage", label="other", confidence=0.31, district=None,
                                            place="某街道办事处", description="街道办工作人员推诿扯皮，拖着不办。")
        made["village"], _ = await file_case(session, queue="district_kaifu", label="village_affairs",
                                             confidence=0.88, district="kaifu", place="开福区某村",
                                             description="村务公开栏半年没有更新，低保名单不公示。",
                                             accept_due_at=NOW - timedelta(days=1))
        made["unlabelled"], _ = await file_case(session, queue="triage", label=None, confidence=None,
                                                place="岳麓区某局", description="局里办事要找熟人，否则一直拖。")
        made["closed"], _ = await file_case(session, queue="clean_hall", label="slow_service", confidence=0.95,
                                            place="天心区税务大厅", description="税务大厅叫号系统坏了没人管。",
                                            resolve_due_at=NOW - timedelta(days=3))
        await actions.change_status(session, made["closed"], CaseStatus.CLOSED, actor="staff:1")
        staff = await staff_actions.create_staff(session, username="li", display_name="李审核", role=StaffRole.REVIEWER,
                                                 password_hash="not-a-hash")
        await staff_actions.assign_case(session, made["village"], staff, actor=staff)
        await staff_actions.correct_label(session, made["unsure"], "lazy_procrastination", actor=staff,
                                          queue="triage", accept_due_at=None, resolve_due_at=None)
    return {name: str(case.case_number) for name, case in made.items()}


async def _listed(sessionmaker: Any, numbers: dict[str, str], **filters: Any) -> list[str]:
    by_number = {number: name for name, number in numbers.items()}
    if filters.get("text"):  # the words of the query, as the console looks them up in the search index
        filters["terms"] = tuple(query_terms(filters["text"]))
    async with sessionmaker() as session:
        cases = (await queries.list_cases(session, queries.CaseFilter(**filters), per_page=50,
                                          threshold=0.5)).cases
        total = await queries.count_cases(session, queries.CaseFilter(**filters), threshold=0.5)
    assert total == queries.CaseCount(len(cases))
    return [by_number[str(case.case_number)] for case in cases]


async def test_cases_are_listed_newest_first_page_after_page_and_back(sessionmaker: Any) -> None:
    numbers = await _cases(sessionmaker)
    every = queries.CaseFilter()
    async with sessionmaker() as session:
        first = await queries.list_cases(session, every, per_page=2)
        assert first.older is not None and first.newer is None
        second = await queries.list_cases(session, every, per_page=2, after=first.older)
        assert second.older is not None and second.newer is not None
        last = await queries.list_cases(session, every, per_page=2, after=second.older)
        back = await queries.list_cases(session, every, per_page=2, before=second.newer)
        assert back.older is not None
        again = await queries.list_cases(session, every, per_page=2, after=back.older)
        total = await queries.count_cases(session, every)
        capped = await queries.count_cases(session, every, cap=3)
    assert [case.case_number for case in first.cases] == [numbers["closed"], numbers["unlabelled"]]
    assert [case.case_number for case in last.cases] == [numbers["hall"]]  # filed long ago
    assert (last.older, last.newer is not None) == (None, True)
    assert [case.case_number for case in back.cases] == [case.case_number for case in first.cases]
    assert back.newer is None  # the newest page again: nothing before it
    assert [case.case_number for case in again.cases] == [case.case_number for case in second.cases]
    assert len({case.id for case in first.cases + second.cases + last.cases}) == 5
    assert (total, str(total), capped, str(capped)) == (queries.CaseCount(5), "5", queries.CaseCount(3, True), "3+")


async def test_each_filter_keeps_only_the_matching_cases(sessionmaker: Any) -> None:
    numbers = await _cases(sessionmaker)
    assert await _listed(sessionmaker, numbers, queues={"clean_hall"}) == ["closed", "hall"]
    assert await _listed(sessionmaker, numbers, queues=set()) == []
    assert await _listed(sessionmaker, numbers, status="closed") == ["closed"]
    assert await _listed(sessionmaker, numbers, label="village_affairs") == ["village"]
    assert await _listed(sessionmaker, numbers, district="unsure") == ["unsure"]
    assert await _listed(sessionmaker, numbers, district="kaifu") == ["village"]
    assert await _listed(sessionmaker, numbers, created_to=NOW - timedelta(days=30)) == ["hall"]
    assert await _listed(sessionmaker, numbers, created_from=NOW - timedelta(days=30)) == [
        "closed", "unlabelled", "village", "unsure"]
    assert await _listed(sessionmaker, numbers, confidence_at_most=0.5) == ["unsure"]
    assert await _listed(sessionmaker, numbers, confidence_at_least=0.9) == ["closed", "hall"]
    assert await _listed(sessionmaker, numbers, confidence_at_most=0.92) == ["village", "unsure", "hall"]  # ≤: 0.92 too
    assert await _listed(sessionmaker, numbers, overdue=True) == ["village"]  # a closed case is never overdue
    async with sessionmaker() as session:
        li = await staff_actions.get_staff_by_username(session, "li")
    assert li is not None
    assert await _listed(sessionmaker, numbers, assigned_to_id=li.id) == ["village"]
    assert await _listed(sessionmaker, numbers, assigned_to_id=li.id + 1) == []


async def test_cases_that_need_labelling_are_the_corrected_and_the_unsure_unreviewed(sessionmaker: Any) -> None:
    numbers = await _cases(sessionmaker)
    assert await _listed(sessionmaker, numbers, needs_labelling=True) == ["unlabelled", "unsure"]


async def test_the_text_search_reads_the_encrypted_description_the_place_and_the_number(sessionmaker: Any) -> None:
    numbers = await _cases(sessionmaker)
    assert await _listed(sessionmaker, numbers, text="低保名单") == ["village"]
    assert await _listed(sessionmaker, numbers, text="COUNTER CLERK") == ["hall"]  # any case
    assert await _listed(sessionmaker, numbers, text="税务大厅") == ["closed"]  # the place too
    assert await _listed(sessionmaker, numbers, text=numbers["unsure"]) == ["unsure"]
    assert await _listed(sessionmaker, numbers, text=numbers["unsure"].split("-", 1)[1]) == ["unsure"]  # a part
    assert await _listed(sessionmaker, numbers, text=numbers["village"][-6:].lower()) == ["village"]
    assert await _listed(sessionmaker, numbers, text="拖", queues={"triage"}) == ["unlabelled", "unsure"]
    assert await _listed(sessionmaker, numbers, text="拖", queues={"clean_hall"}) == []
    assert await _listed(sessionmaker, numbers, text="火星") == []
    assert await _listed(sessionmaker, numbers, text="%") == []  # a wildcard alone matches nothing
    assert await _listed(sessionmaker, numbers, text="_") == []


async def test_a_search_pages_through_its_matches_newest_first(sessionmaker: Any) -> None:
    numbers = await _cases(sessionmaker)
    flt = queries.CaseFilter(text="拖", terms=tuple(query_terms("拖")))
    async with sessionmaker() as session:
        first = await queries.list_cases(session, flt, per_page=1)
        assert first.older is not None
        second = await queries.list_cases(session, flt, per_page=1, after=first.older)
        back = await queries.list_cases(session, flt, per_page=1, before=second.newer)
        count = await queries.count_cases(session, flt)
    assert [case.case_number for case in first.cases + second.cases] == [numbers["unlabelled"], numbers["unsure"]]
    assert second.older is None and [case.case_number for case in back.cases] == [numbers["unlabelled"]]
    assert count == queries.CaseCount(2)
    async with sessionmaker() as session:  # a search's count stops sooner than a list's
        assert await queries.count_cases(session, flt, search_cap=1) == queries.CaseCount(1, capped=True)
        assert await queries.count_cases(session, queries.CaseFilter(), search_cap=1) == queries.CaseCount(5)


async def test_queue_counts_new_in_handling_and_overdue(sessionmaker: Any) -> None:
    numbers = await _cases(sessionmaker)
    async with sessionmaker.begin() as session:
        hall = await queries.case_by_number(session, numbers["hall"])
        assert hall is not None
        await actions.change_status(session, hall, CaseStatus.IN_HANDLING, actor="staff:1")
    async with sessionmaker() as session:
        every = await queries.queue_counts(session, None)
        some = await queries.queue_counts(session, {"triage", "work_style"})
    assert every == {
        "clean_hall": queries.QueueCounts("clean_hall", 0, 1, 0),
        "triage": queries.QueueCounts("triage", 2, 0, 0),
        "district_kaifu": queries.QueueCounts("district_kaifu", 1, 0, 1),
    }
    assert some == {"triage": queries.QueueCounts("triage", 2, 0, 0)}


async def test_a_ticket_comes_with_its_trace_and_its_notes_with_their_authors(sessionmaker: Any) -> None:
    numbers = await _cases(sessionmaker)
    async with sessionmaker.begin() as session:
        case = await queries.case_by_number(session, numbers["village"])
        author = await staff_actions.get_staff_by_username(session, "li")
        assert case is not None and author is not None
        await staff_actions.add_note(session, case, "先联系村委会核实名单", actor=author)
    async with sessionmaker() as session:
        found = await queries.case_by_number(session, numbers["village"])
        assert found is not None
        notes = await queries.notes_for(session, found.id)
        case_id = await queries.case_id_by_number(session, numbers["village"])
        missing = await queries.case_by_number(session, "QL-2026-999999")
    assert [event.kind for event in found.trace] == ["received", "routed"] and found.attachments == []
    assert [(note.body, name) for note, name in notes] == [("先联系村委会核实名单", "李审核")]
    assert (case_id, missing) == (found.id, None)
