"""Similar cases, problems, hot issues and the quality check of answers, for the pages and the REST API
(issue 15).

The same rules as `console.operations`: each operation is one transaction opened here, a case outside the
user's queues does not exist for them, and every change is audited. A problem can hold cases of several
queues: a reviewer sees and links only the cases of their own queues, sees how many others the problem has, and
may not answer a problem that has cases outside their queues (a supervisor answers it for everyone).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from console import texts
from console.auth import Principal, can_see, visible_queues
from console.operations import (
    OperationError,
    answer_case,
    load_case,
    require_supervisor,
    score_answer,
    typed_case_number,
)
from handlers import hotspots as hot_issues
from handlers.similar import SimilarCase, similar_to
from handlers.validation import readable
from nlp.reply_quality import ReplyScore
from storage import audit, hotspots, queries, similar, staff_actions
from storage.models import Case, HotIssueRun, Problem, utcnow

SIMILAR_SHOWN = 10
"""Similar cases listed on a ticket, best first."""


# Similar cases and problems -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimilarShown:
    cases: list[SimilarCase]  # in the viewer's queues, best first
    hidden: int  # similar cases in queues the viewer does not work in: counted, never shown


async def similar_cases(principal: Principal, case: Case) -> SimilarShown:
    """The cases similar to `case` that this user may see, and how many others there are."""
    async with principal.context.database.read_sessionmaker() as session:
        found = await similar_to(session, case, principal.context.city.similarity)
    allowed = visible_queues(principal.user)
    shown = [item for item in found if allowed is None or item.queue in allowed]
    return SimilarShown(shown[:SIMILAR_SHOWN], len(found) - len(shown))


@dataclass(frozen=True)
class ProblemView:
    problem: Problem
    cases: list[Case]  # in the viewer's queues, oldest first
    hidden: int  # cases of the problem in other queues
    answerable: bool  # this user may answer the problem (all its cases are theirs to answer)
    answered: int = 0  # cases of the problem (in any queue) whose reporter has had an answer

    @property
    def total(self) -> int:
        return len(self.cases) + self.hidden

    @property
    def answered_badge(self) -> tuple[str, str, str] | None:
        """(Chinese, English, tag class) of the problem's answer: answered once every case of it is; "2 of 3"
        while cases that joined after the answer still wait; None before any answer."""
        if self.problem.answered_at is None and not self.answered:
            return None
        if self.answered >= self.total:
            return (*texts.pair("flag.problem_answered"), "ok")
        values = {"answered": self.answered, "total": self.total, "waiting": self.total - self.answered}
        return (*texts.pair("flag.problem_partly_answered", **values), "warn")


def _view(principal: Principal, problem: Problem, cases: list[Case], answered: int) -> ProblemView:
    shown = [case for case in cases if can_see(principal.user, case)]
    return ProblemView(problem, shown, len(cases) - len(shown), len(shown) == len(cases), answered)


async def _problem(session: AsyncSession, principal: Principal, problem_id: int) -> ProblemView:
    problem = await session.get(Problem, problem_id)
    view = None
    if problem is not None:
        cases = await similar.problem_cases(session, problem_id)
        answered = await queries.answered_case_ids(session, [case.id for case in cases])
        view = _view(principal, problem, cases, len(answered))
    if view is None or not view.cases:
        raise OperationError(404, "no_problem", problem_id=problem_id)
    return view


async def problem_of(principal: Principal, case: Case) -> ProblemView | None:
    """The problem a ticket belongs to, as this user sees it."""
    if case.problem_id is None:
        return None
    async with principal.context.database.read_sessionmaker() as session:
        return await _problem(session, principal, case.problem_id)


async def problem_view(principal: Principal, problem_id: int) -> ProblemView:
    async with principal.context.database.read_sessionmaker() as session:
        return await _problem(session, principal, problem_id)


async def _cases(session: AsyncSession, principal: Principal, numbers: list[str]) -> list[Case]:
    cases: list[Case] = []
    typed = (typed_case_number(number) for number in numbers)
    for number in dict.fromkeys(number for number in typed if number):
        case = await queries.case_by_number(session, number)
        if case is None or not can_see(principal.user, case):
            raise OperationError(422, "no_case", number=number)
        cases.append(case)
    if len(cases) < 2:
        raise OperationError(422, "problem_needs_two")
    return cases


async def group_cases(principal: Principal, case_numbers: list[str], title: str | None = None) -> int:
    """Put the cases into one problem (joining the problem one of them is in already); the problem's id."""
    title = readable(title or "") or None  # as staff's other texts: no control or invisible characters
    if title is not None and len(title) > 200:
        raise OperationError(422, "problem_title_too_long")
    async with principal.write() as session:
        cases = await _cases(session, principal, case_numbers)
        # the problems a merge joins into the oldest: their other cases (of any queue) move along, each audited
        merged = sorted({case.problem_id for case in cases if case.problem_id is not None})[1:]
        chosen = {case.id for case in cases}
        moving = [(case, merged_id) for merged_id in merged
                  for case in await similar.problem_cases(session, merged_id) if case.id not in chosen]
        problem = await similar.join_problem(session, cases, actor=staff_actions.actor_ref(principal.user),
                                             created_by_id=principal.user.id, title=title)
        for case in cases:
            await audit.record(session, principal.user, "case.link_problem", case=case,
                                      detail={"problem": problem.id})
        for case, merged_id in moving:
            await audit.record(session, principal.user, "case.link_problem", case=case,
                               detail={"problem": problem.id, "from": merged_id})
        return problem.id


async def leave_problem(principal: Principal, case_number: str) -> None:
    async with principal.write() as session:
        case = await load_case(session, principal, case_number)
        if case.problem_id is None:
            raise OperationError(409, "not_in_problem", number=case_number)
        left = case.problem_id
        alone = await similar.leave_problem(session, case, actor=staff_actions.actor_ref(principal.user))
        await audit.record(session, principal.user, "case.leave_problem", case=case, detail={"problem": left})
        for other in alone:  # the case left alone in the problem, which is dissolved: of any queue, audited too
            await audit.record(session, principal.user, "case.leave_problem", case=other, detail={"problem": left})


# Reply quality -------------------------------------------------------------------------------------------


def check_token(principal: Principal, target: str, text: str) -> str:
    """What the answer form carries once `text` was checked for `target` (a case or a problem) by this user:
    sending that very text needs no second check."""
    message = f"answer-check\x00{principal.user.id}\x00{target}\x00{text.strip()}".encode()
    return hmac.new(principal.context.secret_key, message, hashlib.sha256).hexdigest()


def was_checked(principal: Principal, target: str, text: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(token.encode(), check_token(principal, target, text).encode())


async def check_answer(principal: Principal, case_number: str, text: str, *, audited: bool = False) -> ReplyScore:
    """How an answer would score against the case's report, before it is sent. Its reasons quote the report (the
    words the answer leaves out): `audited`, the check is recorded as a view of the case (the REST API; the ticket
    page records the view of the page it shows the check on)."""
    if audited:
        async with principal.write() as session:
            case = await load_case(session, principal, case_number)
            await staff_actions.record_view(session, case, actor=principal.user, ip=principal.ip)
    else:
        async with principal.context.database.read_sessionmaker() as session:
            case = await load_case(session, principal, case_number)
    return score_answer(principal, case, text, utcnow())


async def check_problem_answer(principal: Principal, problem_id: int, text: str) -> ReplyScore:
    """A problem's answer scored against its oldest case the user may see (all its cases are about one
    problem; each case's own score is stored when the answer is sent). The reasons quote that case's report: the
    check is recorded as a view of it."""
    async with principal.write() as session:
        view = await _problem(session, principal, problem_id)
        await staff_actions.record_view(session, view.cases[0], actor=principal.user, ip=principal.ip)
    return score_answer(principal, view.cases[0], text, utcnow())


async def answer_problem(principal: Principal, problem_id: int, text: str) -> int:
    """One answer for every case of the problem still waiting for one: each of their reporters is told on their
    channel (a reporter answered before, whose case was in the problem then, is not told again). Refused when the
    problem has cases outside the user's queues, or none waiting. Returns how many reporters were answered."""
    if not text.strip():
        raise OperationError(422, "answer_needs_text")
    if len(text) > 3000:
        raise OperationError(422, "answer_too_long")
    now = utcnow()
    async with principal.write() as session:
        view = await _problem(session, principal, problem_id)
        if not view.answerable:
            raise OperationError(403, "problem_hidden_cases", problem_id=problem_id, hidden=view.hidden)
        answered = await queries.answered_case_ids(session, [case.id for case in view.cases])
        waiting = [case for case in view.cases if case.id not in answered]  # a reporter answered is not told again
        if not waiting:
            raise OperationError(409, "problem_answered", problem_id=problem_id)
        for case in waiting:
            await answer_case(session, principal, case, text, now)
        view.problem.answered_at = now
        await audit.record(session, principal.user, "problem.answer", detail={
            "problem": problem_id, "cases": [case.case_number for case in waiting]})
    principal.context.wake_outbox()
    return len(waiting)


# Hot issues ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HotIssues:
    run: HotIssueRun | None
    issues: list[hot_issues.HotIssue]


async def hot_issue_list(principal: Principal, top: int | None = None) -> HotIssues:
    """The newest refresh as this user sees it: only the groups with at least two cases in their queues."""
    limit = top or principal.context.city.similarity.hotspot_top
    async with principal.context.database.read_sessionmaker() as session:
        run = await hotspots.latest_run(session)
        issues = [] if run is None else await hot_issues.view(session, run, visible_queues(principal.user), limit,
                                                              tz=ZoneInfo(principal.context.city.timezone))
    return HotIssues(run, issues)


async def refresh_hot_issues(principal: Principal) -> HotIssueRun:
    """Group the period now instead of waiting for the background refresh (supervisors)."""
    require_supervisor(principal)
    run = await hot_issues.refresh(principal.context.database.sessionmaker, principal.context.city.similarity,
                                   utcnow(), force=True, tz=ZoneInfo(principal.context.city.timezone))
    assert run is not None
    async with principal.write() as session:
        await audit.record(session, principal.user, "hotspots.refresh",
                                  detail={"cases": run.cases, "groups": len(run.groups)})
    return run
