"""Problems (groups of cases about one thing) and hot issues: link a ticket to a similar case, open a problem
and answer all its reporters at once, see the period's hot issues and make a problem of one (issue 15)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console import operations, problems
from console.charts import sparkline_svg
from console.operations import MAX_ID
from console.rendering import redirect, render
from console.routes.common import CsrfField, PagePrincipal, check_csrf, page_router
from console.routes.ticket import AnswerCheck, answer_check
from handlers.validation import readable

router = page_router()
ProblemId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def _problem_url(problem_id: int, done: str) -> str:
    return f"/console/problem/{problem_id}?{urlencode({'done': done})}"


@router.post("/console/case/{case_number}/link")
async def link(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
               other: Annotated[str, Form(max_length=40)]) -> Response:
    """Put the ticket and a similar case into one problem (one click from the ticket's similar cases)."""
    check_csrf(principal, csrf)
    problem_id = await problems.group_cases(principal, [case_number, other])
    return redirect(_problem_url(problem_id, "linked"))


@router.post("/console/case/{case_number}/unlink")
async def unlink(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    await problems.leave_problem(principal, case_number)
    return redirect(f"/console/case/{case_number}?{urlencode({'done': 'unlinked'})}")


@router.post("/console/problems")
async def make_problem(principal: PagePrincipal, *, csrf: CsrfField = "",
                       cases: Annotated[list[str], Form(max_length=500)],
                       title: Annotated[str, Form(max_length=200)] = "") -> Response:
    """A problem of the chosen cases (from a hot issue)."""
    check_csrf(principal, csrf)
    if len(cases) > 500:
        raise operations.OperationError(422, "problem_too_many")
    problem_id = await problems.group_cases(principal, cases, title)
    return redirect(_problem_url(problem_id, "problem_made"))


async def _problem_page(request: Request, principal: PagePrincipal, problem_id: int,
                        check: AnswerCheck | None = None) -> Response:
    view = await problems.problem_view(principal, problem_id)
    return render(request, principal, "problem.html", view=view, check=check,
                  answer_draft=check.text if check else "")


@router.get("/console/problem/{problem_id}")
async def problem(request: Request, principal: PagePrincipal, problem_id: ProblemId) -> Response:
    return await _problem_page(request, principal, problem_id)


@router.post("/console/problem/{problem_id}/answer")
async def answer_problem(request: Request, principal: PagePrincipal, problem_id: ProblemId, *,
                         csrf: CsrfField = "", text: Annotated[str, Form(max_length=3000)],
                         action: Annotated[str, Form(pattern="^(check|send)$")] = "check",
                         checked: Annotated[str, Form(max_length=128)] = "") -> Response:
    """One answer to every reporter of the problem, checked first like a ticket's answer."""
    check_csrf(principal, csrf)
    text = readable(text)  # what the reporters would read, as a ticket's answer: no control or invisible characters
    target = f"problem:{problem_id}"
    if action == "send" and problems.was_checked(principal, target, text, checked):
        told = await problems.answer_problem(principal, problem_id, text)
        return redirect(f"/console/problem/{problem_id}?{urlencode({'done': 'problem_answered', 'told': told})}")
    if not text.strip():
        raise operations.OperationError(422, "answer_needs_text")
    score = await problems.check_problem_answer(principal, problem_id, text)
    return await _problem_page(request, principal, problem_id, answer_check(principal, target, text, score))


@router.get("/console/hotspots")
async def hotspots(request: Request, principal: PagePrincipal) -> Response:
    found = await problems.hot_issue_list(principal)
    charts = {issue.rank: sparkline_svg(issue.weekly, title=f"#{issue.rank}") for issue in found.issues}
    return render(request, principal, "hotspots.html", run=found.run, issues=found.issues, charts=charts,
                  settings=principal.context.city.similarity)


@router.post("/console/hotspots/refresh")
async def refresh(principal: PagePrincipal, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    await problems.refresh_hot_issues(principal)
    return redirect("/console/hotspots?done=hotspots_refreshed")
