"""The REST API of issue 15 under /api/v1: a case's similar cases, the quality check of an answer, problems
(groups of cases answered once) and the hot issues. Same authentication and permission rules as `console.api`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from console import problems
from console.api import CASE_ERRORS, CaseNumber, CurrentUser
from console.api_body import plain_json_body
from console.operations import case_detail
from console.schemas import Visible, refusals
from nlp.reply_quality import ReplyScore

router = APIRouter(prefix="/api/v1", tags=["similar cases, problems, hot issues"], responses=refusals(401),
                   dependencies=[Depends(plain_json_body)])
ProblemId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The problem's id.")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SimilarOut(_Out):
    case_number: str
    score: float = Field(description="Text similarity combined with same place, same district and time apart, 0–1.")
    text_similarity: float = Field(description="Estimated Jaccard similarity of the two reports' word shingles.")
    same_place: bool
    same_district: bool
    queue: str
    status: str
    created_at: datetime
    problem_id: int | None


class SimilarListOut(_Out):
    cases: list[SimilarOut]
    hidden: int = Field(description="Similar cases in queues the caller does not work in (counted, not shown).")


class AnswerCheckIn(_In):
    text: Visible = Field(min_length=1, max_length=3000, description="The draft answer (without control and "
                                                                     "invisible characters, as it is sent).")


class ReasonOut(_Out):
    code: str = Field(description="e.g. missing_phrases, no_basis, no_contact, late.")
    zh: str
    en: str


class ScoreOut(_Out):
    score: float = Field(description="Overall quality 0–1, higher is better.")
    relevance: float
    completeness: float
    clarity: float
    timeliness: float | None = Field(description="Working days since receipt against the case's deadline (15 "
                                                 "working days for a case without one); 1 within it, 0 at twice it.")
    working_days: int | None
    reasons: list[ReasonOut] = Field(description="What lowered the scores.")

    @classmethod
    def build(cls, score: ReplyScore) -> ScoreOut:
        data = score.to_json()
        data["reasons"] = [ReasonOut(code=reason.code, zh=reason.text("zh"), en=reason.text("en"))
                           for reason in score.reasons]
        return cls(**data, working_days=score.working_days)


class ProblemIn(_In):
    cases: list[Annotated[str, Field(max_length=32)]] = Field(min_length=2, max_length=500,
                                                              description="Case numbers, at least two.")
    title: str | None = Field(default=None, max_length=200)


class ProblemCaseOut(_Out):
    case_number: str
    queue: str
    status: str
    created_at: datetime


class ProblemOut(_Out):
    id: int
    title: str | None
    answered_at: datetime | None = Field(description="When the problem was last answered; cases that joined it "
                                                    "later may still wait (see answered_cases).")
    answered_cases: int = Field(description="Cases of the problem, in any queue, whose reporter has had an answer.")
    cases: list[ProblemCaseOut]
    hidden: int = Field(description="Cases of the problem in queues the caller does not work in.")
    answerable: bool = Field(description="Whether the caller may answer every reporter of the problem.")


class ProblemAnsweredOut(_Out):
    id: int
    told: int = Field(description="How many reporters the answer was sent to.")


class HotCaseOut(_Out):
    case_number: str
    queue: str
    status: str
    created_at: datetime
    problem_id: int | None


class HotIssueOut(_Out):
    rank: int
    heat: float = Field(description="The heat index (docs/mining.md): residents, duration, recency, seriousness.")
    first: datetime
    last: datetime
    place_people: str
    description: str
    residents: int
    cases: list[HotCaseOut]
    hidden: int
    queues: dict[str, int]
    statuses: dict[str, int]
    weekly: list[tuple[date, int]] = Field(description="Cases per week, by the week's Monday.")
    problem_ids: list[int]


class HotIssuesOut(_Out):
    computed_at: datetime | None = Field(description="When the shown refresh was computed; null before the first.")
    since: datetime | None
    until: datetime | None
    issues: list[HotIssueOut]


@router.get("/cases/{case_number}/similar", response_model=SimilarListOut, summary="Similar cases",
            responses=CASE_ERRORS)
async def similar_cases(principal: CurrentUser, case_number: CaseNumber) -> SimilarListOut:
    """Open and recent cases about the same problem, best first: only those in the caller's queues are listed."""
    detail = await case_detail(principal, case_number, ip=principal.ip)
    found = await problems.similar_cases(principal, detail.case)
    return SimilarListOut(cases=[SimilarOut(
        case_number=item.case_number or "", score=item.score, text_similarity=item.text_similarity,
        same_place=item.same_place, same_district=item.same_district, queue=item.queue, status=item.status,
        created_at=item.created_at, problem_id=item.problem_id) for item in found.cases], hidden=found.hidden)


@router.post("/cases/{case_number}/answer/check", response_model=ScoreOut, summary="Check an answer's quality",
             responses=CASE_ERRORS)
async def check_answer(principal: CurrentUser, case_number: CaseNumber, body: AnswerCheckIn) -> ScoreOut:
    """Scores a draft answer against the case's report before it is sent; nothing is sent. The reasons quote the
    report: the check is recorded in the audit log as a view of the case."""
    return ScoreOut.build(await problems.check_answer(principal, case_number, body.text, audited=True))


def _problem_out(view: problems.ProblemView) -> ProblemOut:
    return ProblemOut(id=view.problem.id, title=view.problem.title, answered_at=view.problem.answered_at,
                      answered_cases=view.answered,
                      cases=[ProblemCaseOut(case_number=case.case_number or "", queue=case.queue, status=case.status,
                                            created_at=case.created_at) for case in view.cases],
                      hidden=view.hidden, answerable=view.answerable)


@router.post("/problems", response_model=ProblemOut, status_code=201, summary="Group cases into one problem",
             responses={**refusals(401, 403), 422: {"description": "A case is not in your queues, or fewer than two."}})
async def make_problem(principal: CurrentUser, body: ProblemIn) -> ProblemOut:
    """The cases join one problem (the problem one of them is in already, merging others, or a new one)."""
    problem_id = await problems.group_cases(principal, body.cases, body.title)
    return _problem_out(await problems.problem_view(principal, problem_id))


@router.get("/problems/{problem_id}", response_model=ProblemOut, summary="A problem and its cases",
            responses=refusals(401, 404))
async def problem(principal: CurrentUser, problem_id: ProblemId) -> ProblemOut:
    return _problem_out(await problems.problem_view(principal, problem_id))


@router.post("/problems/{problem_id}/answer/check", response_model=ScoreOut, summary="Check a problem's answer",
             responses=refusals(401, 404))
async def check_problem_answer(principal: CurrentUser, problem_id: ProblemId, body: AnswerCheckIn) -> ScoreOut:
    return ScoreOut.build(await problems.check_problem_answer(principal, problem_id, body.text))


@router.post("/problems/{problem_id}/answer", response_model=ProblemAnsweredOut,
             summary="Answer every reporter of a problem", responses=refusals(401, 403, 404))
async def answer_problem(principal: CurrentUser, problem_id: ProblemId, body: AnswerCheckIn) -> ProblemAnsweredOut:
    """One answer sent to every reporter of the problem on their channel; each case's answer is stored with its
    quality scores. 403 when the problem has cases outside the caller's queues."""
    return ProblemAnsweredOut(id=problem_id, told=await problems.answer_problem(principal, problem_id, body.text))


@router.delete("/cases/{case_number}/problem", status_code=204, summary="Take a case out of its problem",
               responses=CASE_ERRORS)
async def leave_problem(principal: CurrentUser, case_number: CaseNumber) -> None:
    await problems.leave_problem(principal, case_number)


@router.get("/hotspots", response_model=HotIssuesOut, summary="Hot issues of the period")
async def hotspots(principal: CurrentUser,
                   top: Annotated[int | None, Query(ge=1, le=50, description="How many groups (default: the "
                                                                             "city's hotspot_top).")] = None
                   ) -> HotIssuesOut:
    """The newest refresh's groups with at least two cases in the caller's queues, described from those cases."""
    found = await problems.hot_issue_list(principal, top)
    run = found.run
    return HotIssuesOut(
        computed_at=run.computed_at if run else None, since=run.since if run else None,
        until=run.until if run else None,
        issues=[HotIssueOut(
            rank=issue.rank, heat=issue.heat, first=issue.first, last=issue.last, place_people=issue.place_people,
            description=issue.description, residents=issue.residents,
            cases=[HotCaseOut(case_number=item.case_number or "", queue=item.queue, status=item.status,
                              created_at=item.created_at, problem_id=item.problem_id) for item in issue.cases],
            hidden=issue.hidden, queues=issue.queues, statuses=issue.statuses, weekly=issue.weekly,
            problem_ids=issue.problem_ids) for issue in found.issues])


@router.post("/hotspots/refresh", response_model=HotIssuesOut, summary="Recompute the hot issues now",
             responses=refusals(401, 403))
async def refresh(principal: CurrentUser) -> HotIssuesOut:
    """Supervisors: group the period now instead of waiting for the background refresh."""
    await problems.refresh_hot_issues(principal)
    return await hotspots(principal, None)

