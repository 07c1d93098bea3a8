"""The problem and hot-issue pages and forms, as staff browsers use them, against SQLite and the PostgreSQL on
127.0.0.1: linking a ticket to a similar case (and leaving the problem again), making a problem of chosen cases,
the problem's page as each viewer sees it (their own cases, a count of the others, the answer form only where
they may answer), one answer to every reporter after its check (sent only with the token of that very text and
problem), and the hot issues as a reviewer sees them. Refusals: no CSRF token (403), cases beyond a reviewer's
queues (404/422, 403 for an answer reaching beyond them), malformed fields (422 naming the field). (The hot-issue
page's content for a supervisor is tests/console/test_hotspots_page.py's; the operations themselves are
tests/console/test_problems.py's and test_api_problems.py's.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from handlers import similar as similar_cases
from storage.models import AuditEntry, Case, OutboxMessage, Problem, StaffRole
from tests.console.conftest import CHECK_TOKEN, location, make_context
from tests.console.routes.office import Office, flash, invalid_fields, page_message
from tests.console.routes.test_kept_text import kept_texts
from tests.factories import file_case
from tests.handlers.test_similar import PLANT, PLANT_AGAIN, WINDOW

PLANT_THIRD = "丽发新城旁边搅拌站晚上一直施工，噪音粉尘太大，小区居民没法睡觉，投诉了也没人管。"
ANSWER = ("经调查核实，丽发新城附近搅拌站确实存在夜间违规生产问题。区生态环境局已责令其停止夜间施工、加装降尘设施，"
          "并处罚款。如有疑问请拨打0731-88888888联系区生态环境局。")
CSRF_REFUSED = "the form has expired or did not come from this site (CSRF check failed)"
CASE_ROW = re.compile(r'<tr><td class="nowrap"><a href="/console/case/([^"]+)">')
PROBLEM_PAGE = re.compile(r"/console/problem/(\d+)\?done=(\w+)")


class Desk(Office):
    """The office of tests/console/routes/office.py with the cases signed as the dialog signs them (for the
    similar cases and hot issues) and what the problems leave behind."""

    async def report(self, description: str, queue: str = "clean_hall", reporter: str = "42",
                     place: str = "丽发新城") -> str:
        async with self.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, queue=queue, reporter_ref=reporter, description=description,
                                      place=place, secret_key=self.context.secret_key)
            await similar_cases.sign_new_case(session, case.id, description, place)
        return str(case.case_number)

    async def problems(self) -> dict[str, int | None]:
        """Each case's problem."""
        async with self.database.read_sessionmaker() as session:
            return {str(number): problem for number, problem in
                    (await session.execute(select(Case.case_number, Case.problem_id))).all()}

    async def problem(self, problem_id: int) -> Problem:
        async with self.database.read_sessionmaker() as session:
            found = await session.get(Problem, problem_id)
        assert found is not None
        return found

    async def answers(self) -> list[tuple[str, str]]:
        """The answers waiting in the outbox: (reporter, answer)."""
        async with self.database.read_sessionmaker() as session:
            return sorted((message.recipient, message.payload["answer"]) for message in
                          (await session.execute(select(OutboxMessage))).scalars()
                          if message.payload.get("notice") == "answer")

    async def audit(self, action: str) -> list[AuditEntry]:
        async with self.database.read_sessionmaker() as session:
            return list((await session.execute(select(AuditEntry).where(AuditEntry.action == action)
                                               .order_by(AuditEntry.id))).scalars())


@pytest.fixture
async def desk(database: Any, tmp_path: Path) -> AsyncIterator[Desk]:
    async with AsyncExitStack() as stack:
        yield Desk(make_context(database, tmp_path), stack)


def _problem_id(response: httpx.Response, done: str) -> int:
    found = PROBLEM_PAGE.fullmatch(location(response))
    assert found and found.group(2) == done, location(response)
    return int(found.group(1))


async def _problem_of(browser: httpx.AsyncClient, csrf: str, cases: list[str], title: str = "") -> int:
    """Make a problem of the cases through the page's form; its id."""
    return _problem_id(await browser.post("/console/problems", data={"csrf": csrf, "cases": cases, "title": title}),
                       "problem_made")


# --- linking a ticket to a similar case -------------------------------------------------------------------------


async def test_linking_a_ticket_to_a_similar_case_makes_one_problem_of_both_and_opens_it(desk: Desk) -> None:
    li, csrf = await desk.login("li", StaffRole.REVIEWER, ["clean_hall"])
    first = await desk.report(PLANT, reporter="1")
    again = await desk.report(PLANT_AGAIN, reporter="2")
    await desk.report(WINDOW, reporter="3")

    linked = await li.post(f"/console/case/{again}/link", data={"csrf": csrf, "other": first})

    problem_id = _problem_id(linked, "linked")
    page = await li.get(location(linked))
    assert page.status_code == 200
    assert flash(page.text) == "已将两件案件归并为同一问题。"
    assert f"问题<span class=\"en\">Problem</span></span> #{problem_id}" in page.text
    assert CASE_ROW.findall(page.text) == [first, again]  # oldest first
    assert 'id="answer"' in page.text  # every case is li's: li answers them at once
    assert [number for number, problem in (await desk.problems()).items() if problem == problem_id] == [first, again]
    assert [entry.detail for entry in await desk.audit("case.link_problem")] == [{"problem": problem_id}] * 2


async def test_linking_is_refused_for_a_case_beyond_the_reviewers_queues_for_the_ticket_itself_and_without_a_token(
        desk: Desk) -> None:
    li, csrf = await desk.login("li", StaffRole.REVIEWER, ["clean_hall"])
    mine = await desk.report(PLANT, reporter="1")
    elsewhere = await desk.report(PLANT_THIRD, "clean_projects", reporter="2")

    for ticket, form, status, message in [
            (mine, {"other": elsewhere}, 403, CSRF_REFUSED),
            (mine, {"csrf": "forged", "other": elsewhere}, 403, CSRF_REFUSED),
            (mine, {"csrf": csrf, "other": elsewhere}, 422, f"no case {elsewhere} in your queues"),
            (elsewhere, {"csrf": csrf, "other": mine}, 422, f"no case {elsewhere} in your queues"),
            (mine, {"csrf": csrf, "other": f" {mine} "}, 422, "a problem needs at least two different cases"),
            (mine, {"csrf": csrf, "other": "QL-2026-999999"}, 422, "no case QL-2026-999999 in your queues")]:
        response = await li.post(f"/console/case/{ticket}/link", data=form)
        assert (response.status_code, page_message(response)) == (status, message), (ticket, form)
    assert invalid_fields(await li.post(f"/console/case/{mine}/link", data={"csrf": csrf})) == [["body", "other"]]
    assert invalid_fields(await li.post(f"/console/case/{mine}/link", data={"csrf": csrf, "other": "Q" * 41})) == [
        ["body", "other"]]
    assert set((await desk.problems()).values()) == {None}


async def test_unlinking_takes_the_ticket_out_of_its_problem_and_returns_to_the_ticket(desk: Desk) -> None:
    li, csrf = await desk.login("li", StaffRole.REVIEWER, ["clean_hall"])
    first = await desk.report(PLANT, reporter="1")
    again = await desk.report(PLANT_AGAIN, reporter="2")
    third = await desk.report(PLANT_THIRD, reporter="3")
    problem_id = _problem_id(await li.post(f"/console/case/{again}/link", data={"csrf": csrf, "other": first}),
                             "linked")
    await li.post(f"/console/case/{third}/link", data={"csrf": csrf, "other": first})

    left = await li.post(f"/console/case/{again}/unlink", data={"csrf": csrf})

    assert location(left) == f"/console/case/{again}?done=unlinked"
    ticket = await li.get(location(left))
    assert ticket.status_code == 200 and flash(ticket.text) == "该案件已移出问题。"
    assert await desk.problems() == {first: problem_id, again: None, third: problem_id}
    assert CASE_ROW.findall((await li.get(f"/console/problem/{problem_id}")).text) == [first, third]
    assert [entry.detail for entry in await desk.audit("case.leave_problem")] == [{"problem": problem_id}]


async def test_unlinking_is_refused_for_a_ticket_in_no_problem_beyond_the_reviewers_queues_or_without_a_token(
        desk: Desk) -> None:
    wang, wang_csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    li, csrf = await desk.login("li", StaffRole.REVIEWER, ["clean_hall"])
    mine = await desk.report(PLANT, reporter="1")
    elsewhere = await desk.report(PLANT_THIRD, "clean_projects", reporter="2")
    alone = await desk.report(WINDOW, reporter="3")
    problem_id = await _problem_of(wang, wang_csrf, [mine, elsewhere])

    for ticket, form, status, message in [
            (mine, {}, 403, CSRF_REFUSED),
            (elsewhere, {"csrf": csrf}, 404, f"no case {elsewhere} in your queues"),
            (alone, {"csrf": csrf}, 409, f"{alone} is not part of a problem")]:
        response = await li.post(f"/console/case/{ticket}/unlink", data=form)
        assert (response.status_code, page_message(response)) == (status, message), ticket
    assert await desk.problems() == {mine: problem_id, elsewhere: problem_id, alone: None}


# --- making a problem of chosen cases ---------------------------------------------------------------------------


async def test_a_problem_of_the_chosen_cases_has_their_title_and_says_it_was_made(desk: Desk) -> None:
    wang, csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    plant = [await desk.report(text, reporter=str(n)) for n, text in enumerate((PLANT, PLANT_AGAIN, PLANT_THIRD))]

    made = await wang.post("/console/problems", data={"csrf": csrf, "cases": plant, "title": " 丽发新城搅拌站 "})

    problem_id = _problem_id(made, "problem_made")
    page = (await wang.get(location(made))).text
    assert flash(page) == "已将所选案件归并为一个问题。"
    assert f"#{problem_id} · 丽发新城搅拌站" in page
    assert CASE_ROW.findall(page) == plant
    assert f'href="/console/cases?problem={problem_id}"' in page  # to act on all of them from the case list
    assert (await desk.problem(problem_id)).title == "丽发新城搅拌站"


async def test_a_problems_title_loses_invisible_characters_and_one_of_nothing_visible_is_no_title(desk: Desk) -> None:
    """A title pasted with a zero-width space was kept as "#3 · " followed by nothing visible, or with a right-to-left
    override that turned the rest of the heading around."""
    wang, csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    first = [await desk.report(text, reporter=str(n)) for n, text in enumerate((PLANT, PLANT_AGAIN))]
    blank = _problem_id(await wang.post("/console/problems", data={"csrf": csrf, "cases": first,
                                                                   "title": "\u200b\u2060"}), "problem_made")
    assert (await desk.problem(blank)).title is None
    second = [await desk.report(WINDOW, reporter=f"w{n}", place="政务中心") for n in range(2)]
    named = _problem_id(await wang.post("/console/problems", data={"csrf": csrf, "cases": second,
                                                                   "title": "\u202e窗口\x07无人"}), "problem_made")
    assert (await desk.problem(named)).title == "窗口无人"


async def test_making_a_problem_is_refused_with_the_reason_and_nothing_is_grouped(desk: Desk) -> None:
    li, csrf = await desk.login("li", StaffRole.REVIEWER, ["clean_hall"])
    first, again = await desk.report(PLANT, reporter="1"), await desk.report(PLANT_AGAIN, reporter="2")
    elsewhere = await desk.report(PLANT_THIRD, "clean_projects", reporter="3")

    refusals: list[tuple[dict[str, Any], int, str]] = [
        ({"cases": [first, again]}, 403, CSRF_REFUSED),
        ({"csrf": csrf, "cases": [first, first, " "]}, 422, "a problem needs at least two different cases"),
        ({"csrf": csrf, "cases": [first, again, elsewhere]}, 422, f"no case {elsewhere} in your queues")]
    for form, status, message in refusals:
        response = await li.post("/console/problems", data=form)
        assert (response.status_code, page_message(response)) == (status, message), form
    malformed: list[tuple[dict[str, Any], str]] = [
        ({"cases": [first, again], "title": "题" * 201}, "title"), ({"cases": [first, again] * 251}, "cases"),
        ({"title": "丽发新城"}, "cases")]
    for form, field in malformed:
        assert invalid_fields(await li.post("/console/problems", data={"csrf": csrf, **form})) == [["body", field]]
    assert set((await desk.problems()).values()) == {None}


# --- a problem's page and its answer ----------------------------------------------------------------------------


async def test_a_problems_page_shows_each_viewer_their_own_cases_a_count_of_the_others_and_who_may_answer(
        desk: Desk) -> None:
    wang, csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    li = await desk.browser("li", StaffRole.REVIEWER, ["clean_hall"])
    schools = await desk.browser("zhao", StaffRole.REVIEWER, ["clean_schools"])
    first, again = await desk.report(PLANT, reporter="1"), await desk.report(PLANT_AGAIN, reporter="2")
    elsewhere = await desk.report(PLANT_THIRD, "clean_projects", reporter="3")
    problem_id = await _problem_of(wang, csrf, [first, again, elsewhere], "丽发新城搅拌站")

    everything = (await wang.get(f"/console/problem/{problem_id}")).text
    assert CASE_ROW.findall(everything) == [first, again, elsewhere]
    assert "另有" not in everything and 'id="answer"' in everything

    partial = await li.get(f"/console/problem/{problem_id}")
    assert partial.status_code == 200
    assert CASE_ROW.findall(partial.text) == [first, again]
    assert re.search(r"2 · <span class=\"bi\">另有<span class=\"en\">and</span></span> 1 <span class=\"bi\">"
                     r"件在您无权查看的队列", partial.text)
    assert 'id="answer"' not in partial.text and "请由督办人员统一答复" in partial.text

    for browser, address in [(schools, f"/console/problem/{problem_id}"),
                             (wang, f"/console/problem/{problem_id + 1}")]:
        missing = await browser.get(address)
        assert missing.status_code == 404
        assert page_message(missing) == f"no problem {address.rsplit('/', 1)[1]} with cases in your queues"
    for malformed in ("0", "-1", "first"):
        assert invalid_fields(await wang.get(f"/console/problem/{malformed}")) == [["path", "problem_id"]]


async def test_a_problems_answer_is_checked_first_then_sent_to_every_reporter(desk: Desk) -> None:
    wang, csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    plant = [await desk.report(text, queue, reporter=f"resident-{n}") for n, (text, queue) in
             enumerate(((PLANT, "clean_hall"), (PLANT_AGAIN, "clean_hall"), (PLANT_THIRD, "clean_projects")))]
    problem_id = await _problem_of(wang, csrf, plant)
    address = f"/console/problem/{problem_id}/answer"

    checked = await wang.post(address, data={"csrf": csrf, "text": ANSWER, "action": "check"})
    assert checked.status_code == 200
    assert 'id="answer-check"' in checked.text and "答复质量检查" in checked.text
    assert re.search(r'<textarea name="text"[^>]*>' + re.escape(ANSWER) + "</textarea>", checked.text)
    token = CHECK_TOKEN.search(checked.text)
    assert token is not None and await desk.answers() == []  # a check sends nothing

    sent = await wang.post(address, data={"csrf": csrf, "text": ANSWER, "action": "send", "checked": token.group(1)})

    assert location(sent) == f"/console/problem/{problem_id}?done=problem_answered&told=3"
    page = (await wang.get(location(sent))).text
    assert flash(page) == "已答复该问题的每位举报人。" and "已统一答复" in page
    assert await desk.answers() == [(f"resident-{n}", ANSWER) for n in range(3)]
    assert (await desk.problem(problem_id)).answered_at is not None


async def test_a_problems_answer_reaches_the_reporters_without_invisible_characters_and_nothing_visible_is_refused(
        desk: Desk) -> None:
    """A ticket's answer loses its control and invisible characters before it is checked and sent; a problem's answer
    kept them (a zero-width space pasted from a chat, a bell character), and one of nothing but a zero-width space
    was sent to every reporter of the problem as an empty answer."""
    wang, csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    plant = [await desk.report(text, reporter=f"resident-{n}") for n, text in enumerate((PLANT, PLANT_AGAIN))]
    problem_id = await _problem_of(wang, csrf, plant)
    address = f"/console/problem/{problem_id}/answer"

    for action in ("check", "send"):
        empty = await wang.post(address, data={"csrf": csrf, "text": "\u200b\u2060", "action": action})
        assert (empty.status_code, page_message(empty)) == (422, "an answer needs text"), action

    dirty = "\u200b" + ANSWER.replace("。", "。\x07", 1) + "\u202e"
    checked = await wang.post(address, data={"csrf": csrf, "text": dirty, "action": "check"})
    assert re.search(r'<textarea name="text"[^>]*>' + re.escape(ANSWER) + "</textarea>", checked.text)
    token = CHECK_TOKEN.search(checked.text)
    assert token is not None
    sent = await wang.post(address, data={"csrf": csrf, "text": dirty, "action": "send", "checked": token.group(1)})
    assert location(sent) == f"/console/problem/{problem_id}?done=problem_answered&told=2"
    assert await desk.answers() == [(f"resident-{n}", ANSWER) for n in range(2)]


async def test_a_case_that_joins_an_answered_problem_shows_the_problem_as_answered_only_in_part(desk: Desk) -> None:
    """The badge said "已统一答复" although a case that joined the problem after its answer had none: it now says
    how many of the problem's cases were answered, until the reporters still waiting are answered too."""
    wang, csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    first, again = await desk.report(PLANT, reporter="1"), await desk.report(PLANT_AGAIN, reporter="2")
    problem_id = await _problem_of(wang, csrf, [first, again])
    address = f"/console/problem/{problem_id}"
    checked = await wang.post(f"{address}/answer", data={"csrf": csrf, "text": ANSWER, "action": "check"})
    token = CHECK_TOKEN.search(checked.text)
    assert token is not None
    await wang.post(f"{address}/answer", data={"csrf": csrf, "text": ANSWER, "action": "send",
                                               "checked": token.group(1)})
    assert "已统一答复" in (await wang.get(address)).text

    late = await desk.report(PLANT_THIRD, reporter="3")
    assert await _problem_of(wang, csrf, [first, late]) == problem_id  # joins the answered problem
    page = (await wang.get(address)).text
    assert "已统一答复" not in page
    assert re.search(r'<span class="tag warn"><span class="bi">已答复 2/3，1 件待答复<span class="en">'
                     r"2 of 3 answered, 1 waiting</span></span>", page)

    checked = await wang.post(f"{address}/answer", data={"csrf": csrf, "text": ANSWER, "action": "check"})
    token = CHECK_TOKEN.search(checked.text)
    assert token is not None
    sent = await wang.post(f"{address}/answer", data={"csrf": csrf, "text": ANSWER, "action": "send",
                                                     "checked": token.group(1)})
    assert location(sent) == f"{address}?done=problem_answered&told=1"  # only the reporter still waiting
    assert "已统一答复" in (await wang.get(address)).text


async def test_an_answer_is_sent_only_with_the_token_of_that_very_text_and_problem(desk: Desk) -> None:
    wang, csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    first, again = await desk.report(PLANT, reporter="1"), await desk.report(PLANT_AGAIN, reporter="2")
    other = [await desk.report(WINDOW, reporter="3"), await desk.report(WINDOW, reporter="4")]
    problem_id = await _problem_of(wang, csrf, [first, again])
    other_id = await _problem_of(wang, csrf, other)
    checked = await wang.post(f"/console/problem/{problem_id}/answer", data={"csrf": csrf, "text": ANSWER})
    token = CHECK_TOKEN.search(checked.text)
    assert token is not None

    for target, text, sent_token in [(problem_id, ANSWER, ""), (problem_id, ANSWER, "0" * 64),
                                     (problem_id, ANSWER + "补充。", token.group(1)),
                                     (other_id, ANSWER, token.group(1))]:
        again_checked = await wang.post(f"/console/problem/{target}/answer", data={
            "csrf": csrf, "text": text, "action": "send", "checked": sent_token})
        assert again_checked.status_code == 200 and 'id="answer-check"' in again_checked.text  # checked, not sent
    assert await desk.answers() == []

    for form, status, message in [({"text": ANSWER, "action": "send", "checked": token.group(1)}, 403, CSRF_REFUSED),
                                  ({"csrf": csrf, "text": " \n "}, 422, "an answer needs text")]:
        response = await wang.post(f"/console/problem/{problem_id}/answer", data=form)
        assert (response.status_code, page_message(response)) == (status, message)
    for form, field in [({"text": ANSWER, "action": "publish"}, "action"), ({"text": "字" * 3001}, "text"),
                        ({"action": "check"}, "text")]:
        response = await wang.post(f"/console/problem/{problem_id}/answer", data={"csrf": csrf, **form})
        assert invalid_fields(response) == [["body", field]]
    assert await desk.answers() == [] and (await desk.problem(problem_id)).answered_at is None


async def test_a_reviewer_cannot_send_an_answer_once_the_problem_reaches_beyond_their_queues(desk: Desk) -> None:
    wang, wang_csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    li, csrf = await desk.login("li", StaffRole.REVIEWER, ["clean_hall"])
    mine, again = await desk.report(PLANT, reporter="1"), await desk.report(PLANT_AGAIN, reporter="2")
    elsewhere = await desk.report(PLANT_THIRD, "clean_projects", reporter="3")
    problem_id = _problem_id(await li.post(f"/console/case/{again}/link", data={"csrf": csrf, "other": mine}),
                             "linked")
    address = f"/console/problem/{problem_id}/answer"
    checked = await li.post(address, data={"csrf": csrf, "text": ANSWER})
    token = CHECK_TOKEN.search(checked.text)
    assert checked.status_code == 200 and token is not None
    # meanwhile a supervisor adds another queue's case to the problem
    assert await _problem_of(wang, wang_csrf, [elsewhere, mine]) == problem_id

    refused = await li.post(address, data={"csrf": csrf, "text": ANSWER, "action": "send", "checked": token.group(1)})

    assert refused.status_code == 403
    assert page_message(refused) == f"problem {problem_id} has 1 case outside your queues; a supervisor answers it"
    assert ANSWER in kept_texts(refused.text)  # the checked answer is on the refusal, to copy or hand on
    assert await desk.answers() == []
    rechecked = await li.post(address, data={"csrf": csrf, "text": ANSWER})  # the page no longer offers to send
    assert rechecked.status_code == 200 and CHECK_TOKEN.search(rechecked.text) is None
    assert "请由督办人员统一答复" in rechecked.text


# --- hot issues ---------------------------------------------------------------------------------------------------


async def test_a_reviewer_sees_the_hot_issues_of_their_queues_and_may_not_recompute_them(desk: Desk) -> None:
    wang, wang_csrf = await desk.login("wang", StaffRole.SUPERVISOR)
    li, csrf = await desk.login("li", StaffRole.REVIEWER, ["clean_hall"])
    schools = await desk.browser("zhao", StaffRole.REVIEWER, ["clean_schools"])
    plant = [await desk.report(text, reporter=str(n)) for n, text in enumerate((PLANT, PLANT_AGAIN, PLANT_THIRD))]
    await desk.report(WINDOW, reporter="9", place="岳麓区政务服务中心")

    for form, status, message in [({"csrf": csrf}, 403, "only supervisors and administrators may do this"),
                                  ({}, 403, CSRF_REFUSED)]:
        refused = await (li if form else wang).post("/console/hotspots/refresh", data=form)
        assert (refused.status_code, page_message(refused)) == (status, message)
    assert "尚未计算" in (await li.get("/console/hotspots")).text and await desk.audit("hotspots.refresh") == []

    refreshed = await wang.post("/console/hotspots/refresh", data={"csrf": wang_csrf})
    assert location(refreshed) == "/console/hotspots?done=hotspots_refreshed"
    assert flash((await wang.get(location(refreshed))).text) == "热点问题已重新计算。"
    [entry] = await desk.audit("hotspots.refresh")
    assert entry.detail["cases"] == 4 and entry.detail["groups"] >= 1

    seen = (await li.get("/console/hotspots")).text
    assert 'id="hot-1"' in seen and 'id="hot-2"' not in seen
    assert sorted(re.findall(r'<input type="checkbox" name="cases" value="([^"]+)"', seen)) == sorted(plant)
    assert 'action="/console/hotspots/refresh"' not in seen  # no button for a reviewer
    nothing = (await schools.get("/console/hotspots")).text
    assert 'id="hot-1"' not in nothing and "暂无热点问题" in nothing
