"""The REST API under /api/v1: the console's operations for integrations and scripts.

Authentication is a bearer token (`Authorization: Bearer qlt_…`, made under /api/v1/tokens from a
console login) or the console's own session cookie, with the `X-CSRF-Token` header on every unsafe
call. The permission rules are the pages' rules, from `console.operations`: a case outside the
caller's queues does not exist for them (404). Responses are the schemas of `console.schemas`,
never ORM objects: no case response carries the reporter's identity.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from console import accounts, exports, loop_stats, operations
from console.api_body import plain_json_body
from console.auth import Principal, api_principal, can_reveal_identity, visible_queues
from console.operations import MAX_ID, OperationError
from console.schemas import (
    AnswerIn,
    AppealDecisionIn,
    AssignIn,
    AuditOut,
    CaseDetailOut,
    CaseList,
    CaseStatusCode,
    CaseSummary,
    DecisionIn,
    DuplicateIn,
    ErrorOut,
    ExtensionIn,
    FilterDay,
    IdentityOut,
    LabelCode,
    LabelIn,
    MeOut,
    MoreInfoIn,
    MoveIn,
    NoteIn,
    NoteOut,
    Page,
    QueueOut,
    RevealIn,
    StaffCreateIn,
    StaffOut,
    StaffPatchIn,
    StatusIn,
    TellReporterIn,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    refusals,
    summaries,
    tokens_out,
)
from storage.loop_stats import LoopStatistics
from storage.models import StaffRole
from storage.queries import CaseFilter

CurrentUser = Annotated[Principal, Depends(api_principal)]
CaseNumber = Annotated[str, Path(max_length=32, description=(
    "The case number as the console shows it: the city's case_number_prefix, the year and a serial number."))]


CASE_ERRORS = refusals(401, 403, 404, 409)
ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **CASE_ERRORS,
    204: {"description": "Done, and the case has left your queues as a result (moved or relabelled)."},
}

router = APIRouter(prefix="/api/v1", tags=["console API"], responses=refusals(401),
                   dependencies=[Depends(plain_json_body)])


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _detail_out(principal: Principal, case_number: str, *, ip: str | None,
                      audit_view: bool) -> CaseDetailOut:
    detail = await operations.case_detail(principal, case_number, ip=ip, audit_view=audit_view)
    return CaseDetailOut.from_detail(detail)


async def _after_action(principal: Principal, case_number: str) -> CaseDetailOut | Response:
    """The case as the action left it (the action has its own audit record), or 204 if it left the user's queues."""
    try:
        return await _detail_out(principal, case_number, ip=None, audit_view=False)
    except OperationError as error:
        if error.status_code == 404:
            return Response(status_code=204)
        raise


def _day_start(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0, 0), ZoneInfo(timezone)).astimezone(UTC)


# --- cases --------------------------------------------------------------------------------------


def _case_filter(principal: Principal, *, status: str | None, label: str | None, district: str | None,
                 queue: str | None, created_from: date | None, created_to: date | None, overdue: bool,
                 assigned_to_me: bool, confidence_min: float | None = None, confidence_max: float | None = None,
                 needs_labelling: bool = False, q: str | None = None) -> CaseFilter:
    """The filter of a case list or export from its query parameters; every problem in one 422."""
    city = principal.context.city
    problems = []
    if district is not None and district != "unsure" and city.district(district) is None:
        problems.append(f"unknown district {district!r}")
    if queue is not None and city.queue(queue) is None:
        problems.append(f"unknown queue {queue!r}")
    if created_from and created_to and created_from > created_to:
        problems.append("created_from is after created_to")
    if confidence_min is not None and confidence_max is not None and confidence_min > confidence_max:
        problems.append("confidence_min is above confidence_max")
    if problems:
        raise HTTPException(422, "; ".join(problems))
    return CaseFilter(
        queues={queue} if queue else None, status=status, label=label, district=district,
        created_from=_day_start(created_from, city.timezone) if created_from else None,
        created_to=_day_start(created_to + timedelta(days=1), city.timezone) if created_to else None,
        confidence_at_least=confidence_min, confidence_at_most=confidence_max, overdue=overdue,
        needs_labelling=needs_labelling, assigned_to_id=principal.user.id if assigned_to_me else None,
        text=q.strip() or None if q else None,
    )


@router.get("/cases", response_model=CaseList[CaseSummary], summary="List cases in your queues",
            responses=refusals(401, 403))
async def list_cases(
    request: Request,
    principal: CurrentUser,
    status: Annotated[CaseStatusCode | None, Query(description="Only cases in this status.")] = None,
    label: Annotated[LabelCode | None, Query(description="Only cases with this label.")] = None,
    district: Annotated[str | None, Query(max_length=40,
                                          description="A configured district code, or `unsure`.")] = None,
    queue: Annotated[str | None, Query(max_length=60, description="A configured queue code.")] = None,
    created_from: Annotated[FilterDay | None, Query(description="Filed on or after this day (city time).")] = None,
    created_to: Annotated[FilterDay | None, Query(description="Filed on or before this day (city time).")] = None,
    confidence_min: Annotated[float | None, Query(ge=0, le=1, description=(
        "Classifier confidence at least this, as a fraction 0–1 (the console's pages show 0.87 as 87%)."))] = None,
    confidence_max: Annotated[float | None, Query(ge=0, le=1, description=(
        "Classifier confidence at most this, as a fraction 0–1: 1 includes the cases classified at 100%."))] = None,
    overdue: Annotated[bool, Query(description="Only cases past a deadline.")] = False,
    needs_labelling: Annotated[bool, Query(
        description="Only low-confidence and corrected cases whose label staff should review.")] = False,
    assigned_to_me: Annotated[bool, Query(description="Only cases assigned to you.")] = False,
    q: Annotated[str | None, Query(max_length=100, description="Text in the case number, place or description.")]
    = None,
    after: Annotated[str | None, Query(max_length=200, description="A `next_cursor`: the page after it.")] = None,
    before: Annotated[str | None, Query(max_length=200, description="A `prev_cursor`: the page before it.")]
    = None,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CaseList[CaseSummary]:
    """Newest first, paged by cursor. Only ever your queues, whatever `queue` asks for; an unknown code, or a
    cursor this list did not hand out, is a 422."""
    flt = _case_filter(principal, status=status, label=label, district=district, queue=queue,
                       created_from=created_from, created_to=created_to, overdue=overdue,
                       assigned_to_me=assigned_to_me, confidence_min=confidence_min, confidence_max=confidence_max,
                       needs_labelling=needs_labelling, q=q)
    listed, total = await operations.case_page(principal, flt, after=after, before=before, per_page=per_page)
    cases = listed.cases
    usernames = await accounts.staff_usernames(principal, {c.assigned_to_id for c in cases if c.assigned_to_id})
    next_cursor = operations.cursor_param(listed.older) if listed.older else None
    prev_cursor = operations.cursor_param(listed.newer) if listed.newer else None

    def link(key: str, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        query = [(k, v) for k, v in request.query_params.multi_items() if k not in operations.PAGE_KEYS]
        return f"{request.url.path}?{urlencode([*query, (key, cursor)])}"

    return CaseList[CaseSummary](items=summaries(cases, usernames), total=total.value, total_capped=total.capped,
                                 per_page=per_page, next_cursor=next_cursor, prev_cursor=prev_cursor,
                                 next=link("after", next_cursor), prev=link("before", prev_cursor))


@router.get("/cases/{case_number}", response_model=CaseDetailOut, summary="A case with its trace, evidence and notes",
            responses=refusals(401, 404))
async def get_case(principal: CurrentUser, case_number: CaseNumber, request: Request) -> CaseDetailOut:
    """Every view is recorded in the audit log."""
    return await _detail_out(principal, case_number, ip=_ip(request), audit_view=True)


@router.post("/cases/{case_number}/accept", response_model=CaseDetailOut, summary="Accept a case",
             responses=ACTION_RESPONSES)
async def accept(principal: CurrentUser, case_number: CaseNumber) -> CaseDetailOut | Response:
    await operations.accept(principal, case_number)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/label", response_model=CaseDetailOut, summary="Confirm or correct the label",
             responses=ACTION_RESPONSES)
async def label(principal: CurrentUser, case_number: CaseNumber, body: LabelIn) -> CaseDetailOut | Response:
    """A corrected label becomes training data and moves an open case where the routing rules send that label (a
    closed case stays with the queue that closed it)."""
    if body.action == "confirm":
        await operations.confirm_label(principal, case_number, expected=body.label)
    elif body.label is None:
        raise HTTPException(422, "correcting needs the new label")
    else:
        await operations.correct_label(principal, case_number, body.label)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/move", response_model=CaseDetailOut, summary="Move a case to another queue",
             responses=ACTION_RESPONSES)
async def move(principal: CurrentUser, case_number: CaseNumber, body: MoveIn) -> CaseDetailOut | Response:
    """The case keeps its deadlines (a transfer is not an extension); its reporter reads "transferred to the
    responsible office" once. A closed, rejected or duplicate case is not moved (409): it is reopened first."""
    await operations.move(principal, case_number, body.queue, body.reason, body.reason_code)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/tell-reporter", response_model=CaseDetailOut,
             summary="A note for the reporter (in their trace, sent to them)", responses=ACTION_RESPONSES)
async def tell_reporter(principal: CurrentUser, case_number: CaseNumber,
                        body: TellReporterIn) -> CaseDetailOut | Response:
    await operations.tell_reporter(principal, case_number, body.text)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/more-info", response_model=CaseDetailOut,
             summary="Ask the reporter for more information", responses=ACTION_RESPONSES)
async def ask_for_information(principal: CurrentUser, case_number: CaseNumber,
                              body: MoreInfoIn) -> CaseDetailOut | Response:
    """The question is in the reporter's trace and sent to them on their channel (a WeChat subscription notice
    when the city notifies of `more_info`), with a button to add information to the case."""
    await operations.ask_for_information(principal, case_number, body.question)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/extension", response_model=CaseDetailOut,
             summary="Ask a supervisor to extend the resolve-by date", responses=ACTION_RESPONSES)
async def request_extension(principal: CurrentUser, case_number: CaseNumber,
                            body: ExtensionIn) -> CaseDetailOut | Response:
    await operations.request_extension(principal, case_number, body.until, body.reason)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/extension/{request_id}", response_model=CaseDetailOut,
             summary="Approve or refuse an extension (supervisors)", responses=ACTION_RESPONSES)
async def decide_extension(principal: CurrentUser, case_number: CaseNumber, request_id: Annotated[int, Path(ge=1)],
                           body: DecisionIn) -> CaseDetailOut | Response:
    await operations.decide_extension(principal, case_number, request_id, body.approve, body.note)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/appeal-decision", response_model=CaseDetailOut,
             summary="Decide a reporter's appeal of a rejection (supervisors)", responses=ACTION_RESPONSES)
async def decide_appeal(principal: CurrentUser, case_number: CaseNumber,
                        body: AppealDecisionIn) -> CaseDetailOut | Response:
    await operations.decide_appeal(principal, case_number, body.uphold, body.reason)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/status", response_model=CaseDetailOut, summary="Set the status",
             responses=ACTION_RESPONSES)
async def set_status(principal: CurrentUser, case_number: CaseNumber, body: StatusIn) -> CaseDetailOut | Response:
    """The reporter is told of the new status (with the note, if any) on their channel."""
    await operations.set_status(principal, case_number, body.status, body.note, body.referral)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/duplicate", response_model=CaseDetailOut,
             summary="Mark as a duplicate of another case", responses=ACTION_RESPONSES)
async def duplicate(principal: CurrentUser, case_number: CaseNumber, body: DuplicateIn) -> CaseDetailOut | Response:
    await operations.mark_duplicate(principal, case_number, body.of)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/notes", response_model=CaseDetailOut, status_code=201,
             summary="Add an internal note (staff only)", responses=ACTION_RESPONSES)
async def add_note(principal: CurrentUser, case_number: CaseNumber, body: NoteIn) -> CaseDetailOut | Response:
    await operations.add_note(principal, case_number, body.body)
    return await _after_action(principal, case_number)


@router.get("/cases/{case_number}/notes", response_model=list[NoteOut], summary="Internal notes of a case",
            responses=refusals(401, 404))
async def notes(principal: CurrentUser, case_number: CaseNumber, request: Request) -> list[NoteOut]:
    """Recorded in the audit log as a view of the case, as reading the case is."""
    detail = await operations.case_detail(principal, case_number, ip=_ip(request), audit_view=True)
    return [NoteOut.build(note, author) for note, author in detail.notes]


@router.post("/cases/{case_number}/assign", response_model=CaseDetailOut, summary="Assign to a colleague",
             responses=ACTION_RESPONSES)
async def assign(principal: CurrentUser, case_number: CaseNumber, body: AssignIn) -> CaseDetailOut | Response:
    """The colleague must be active and work in the case's queue; `null` unassigns."""
    await operations.assign(principal, case_number, body.username or None)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/answer", response_model=CaseDetailOut, summary="Answer the reporter",
             responses=ACTION_RESPONSES)
async def answer(principal: CurrentUser, case_number: CaseNumber, body: AnswerIn) -> CaseDetailOut | Response:
    """Delivered on the reporter's channel through the outbox (retried until delivered) and shown by /status.
    The case becomes `answered` unless it is closed."""
    await operations.answer(principal, case_number, body.text)
    return await _after_action(principal, case_number)


@router.post("/cases/{case_number}/reveal-identity", response_model=IdentityOut,
             summary="Reveal a real-name reporter's identity (audited)",
             responses={**refusals(401, 403, 404, 409), 422: {"model": ErrorOut, "description": "No reason given."}})
async def reveal_identity(principal: CurrentUser, case_number: CaseNumber, request: Request,
                          body: RevealIn | None = None) -> IdentityOut:
    """Only for the roles configured in `console.identity_roles`, with the reason (422 without one); 409 for an
    anonymous reporter. Every reveal is recorded in the audit log with its reason."""
    name, phone = await operations.reveal_identity(principal, case_number, ip=_ip(request),
                                                   reason=body.reason if body else None)
    return IdentityOut(case_number=operations.typed_case_number(case_number), name=name, phone=phone)


@router.get("/cases/{case_number}/evidence/{attachment_id}", response_class=StreamingResponse,
            summary="Download an evidence file (audited)", responses={
                **refusals(401, 404, 410), 200: {"description": "The file, as an attachment, with its stored type.",
                                                "content": {"application/octet-stream": {}}}})
async def evidence(principal: CurrentUser, case_number: CaseNumber, request: Request,
                   attachment_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    found = await operations.evidence_file(principal, case_number, attachment_id, ip=_ip(request))
    return await operations.evidence_download(principal, found, inline=False, media_type=found.stored.media_type,
                                              headers={"X-Content-Type-Options": "nosniff",
                                                       "Cache-Control": "private, no-store",
                                                       "Content-Security-Policy": "default-src 'none'; sandbox"})


EXPORT_PARAMETERS = ("format", "identity", "reason", "status", "label", "district", "queue", "created_from",
                     "created_to", "overdue", "assigned_to_me", "lang")

@router.get("/export/cases", response_class=Response, summary="Cases of a filter as CSV or XLSX (supervisors)",
            tags=["export"], responses={**refusals(401, 403), 200: {"description": "The spreadsheet.", "content": {
                "text/csv": {}, exports.MEDIA_TYPES["xlsx"]: {}}}})
async def export_cases(
    principal: CurrentUser, request: Request,
    format: Annotated[Literal["csv", "xlsx"], Query(description="The spreadsheet's format.")] = "csv",
    lang: Annotated[Literal["zh", "en"], Query(description=(
        "The spreadsheet's language: `zh`, columns named in Chinese and English and values in Chinese, or `en`, "
        "both in English. Place and summary stay as the reporter wrote them."))] = "zh",
    identity: Annotated[bool, Query(description=(
        "Add the reporters' names and phones: only for the roles that may reveal identities (403 otherwise); "
        "audited, as a reveal of each case whose reporter's identity the file holds: needs `reason`, and from a "
        "console session the `X-CSRF-Token` header, as an unsafe call does."))] = False,
    reason: Annotated[str | None, Query(max_length=500, description=(
        "Why the identities are needed (with `identity`): at least 4 letters or digits, 422 otherwise; recorded "
        "with the export and with each case's reveal."))] = None,
    status: Annotated[CaseStatusCode | None, Query()] = None,
    label: Annotated[LabelCode | None, Query()] = None,
    district: Annotated[str | None, Query(max_length=40)] = None,
    queue: Annotated[str | None, Query(max_length=60)] = None,
    created_from: Annotated[FilterDay | None, Query(description="Filed on or after this day (city time).")] = None,
    created_to: Annotated[FilterDay | None, Query(description="Filed on or before this day (city time).")] = None,
    overdue: Annotated[bool, Query()] = False,
    assigned_to_me: Annotated[bool, Query()] = False,
) -> Response:
    """The columns supervisors report on, times in the city's time zone; text that a spreadsheet would run as
    a formula starts with an apostrophe. At most 10,000 cases (422 beyond). Every export is audited."""
    operations.require_supervisor(principal)
    if identity:  # it records reveals: a link on another site must not make a logged-in browser do it (a GET)
        principal.check_csrf(request.headers.get("x-csrf-token"))
    unknown = sorted(set(request.query_params) - set(EXPORT_PARAMETERS))
    if unknown:  # a misspelt filter would export more than was meant, and the audit would record it as asked
        raise OperationError(422, "unknown_query_parameter", name=unknown[0][:40], known=", ".join(EXPORT_PARAMETERS))
    flt = _case_filter(principal, status=status, label=label, district=district, queue=queue,
                       created_from=created_from, created_to=created_to, overdue=overdue,
                       assigned_to_me=assigned_to_me)
    described = {key: str(value) for key, value in request.query_params.items()
                 if key not in ("format", "reason", "lang")}
    export = await exports.export_cases(principal, flt, fmt=format, identity=identity, ip=_ip(request),
                                        described=described, reason=reason, locale=lang)
    return Response(export.content, media_type=export.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{export.filename}"'})


# --- statistics -----------------------------------------------------------------------------------


async def _loop_period(principal: Principal, start: date | None, end: date | None) -> tuple[date, date, LoopStatistics]:
    last = end or datetime.now(UTC).astimezone(ZoneInfo(principal.context.city.timezone)).date()
    first = start or last - timedelta(days=29)
    if first > last:
        raise HTTPException(422, "start is after end")
    return first, last, await loop_stats.figures(principal, first, last)


LoopStart = Annotated[FilterDay | None, Query(description="The first day (city time); default: 29 days before end.")]
LoopEnd = Annotated[FilterDay | None, Query(description="The last day (city time), inclusive; default: today.")]
LOOP_ERRORS = {**refusals(401), 422: {"model": ErrorOut, "description": "A bad day, or a period over 160 weeks."}}


@router.get("/stats/loop", response_model=loop_stats.LoopStatsOut, tags=["statistics"], responses=LOOP_ERRORS,
            summary="The closed loop's figures per queue and per week")
async def loop_figures(principal: CurrentUser, start: LoopStart = None, end: LoopEnd = None) -> loop_stats.LoopStatsOut:
    """Per queue, over the cases received in the period: on-time acceptance and resolution, median and p90 hours,
    extensions, re-handling, satisfaction, notices to the reporters by delivery state; the average reply-quality
    scores of the answers sent in it; and per ISO week of the city: received, resolved, on time, satisfied.
    Reviewers get their own queues only."""
    first, last, result = await _loop_period(principal, start, end)
    return loop_stats.LoopStatsOut.build(principal.context.city, first, last, result)


CsvLanguage = Annotated[Literal["zh", "en"], Query(description=(
    "The file's language: `zh`, names in Chinese (the audit log's columns and actions in Chinese and English), or "
    "`en`, everything in English. What staff and residents wrote stays as written."))]


@router.get("/stats/loop.csv", response_class=Response, tags=["statistics"], summary="The same as CSV",
            responses={**LOOP_ERRORS, 200: {"content": {"text/csv": {}}, "description": "Tidy CSV with a BOM."}})
async def loop_figures_csv(principal: CurrentUser, start: LoopStart = None, end: LoopEnd = None,
                           lang: CsvLanguage = "zh") -> Response:
    first, last, result = await _loop_period(principal, start, end)
    return Response(loop_stats.to_csv(result, principal.context.city, lang), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="qinglian-loop-{first}-{last}.csv"'})


# --- queues and the user ------------------------------------------------------------------------


@router.get("/queues", response_model=list[QueueOut], summary="Your queues with their counts")
async def queues(principal: CurrentUser) -> list[QueueOut]:
    city = principal.context.city
    result = []
    for code, counts in (await operations.overview(principal)).items():
        configured = city.queue(code)
        result.append(QueueOut(code=code, name_zh=configured.zh if configured else code,
                               name_en=configured.en if configured else code, new=counts.new,
                               in_handling=counts.in_handling, overdue=counts.overdue))
    return result


@router.get("/me", response_model=MeOut, summary="Who you are, your role and your queues")
async def me(principal: CurrentUser) -> MeOut:
    user = principal.user
    allowed = visible_queues(user)
    return MeOut(username=user.username, display_name=user.display_name, role=user.role,  # type: ignore[arg-type]
                 queues=sorted(allowed) if allowed is not None else None,
                 can_reveal_identity=can_reveal_identity(user, principal.context.city),
                 totp_enabled=user.totp_secret is not None,
                 authenticated_by="session" if principal.session else "token")


@router.get("/tokens", response_model=list[TokenOut], summary="Your API tokens", tags=["tokens"])
async def list_tokens(principal: CurrentUser) -> list[TokenOut]:
    return tokens_out(await accounts.api_tokens(principal))


@router.post("/tokens", response_model=TokenCreatedOut, status_code=201, summary="Create an API token",
             tags=["tokens"], responses=refusals(401, 403))
async def create_token(principal: CurrentUser, body: TokenIn) -> TokenCreatedOut:
    """Only from a console login (cookie and `X-CSRF-Token`), not with another token. The secret is in this
    response only; the service keeps its hash."""
    secret, record = await accounts.create_api_token(principal, body.name)
    return TokenCreatedOut(id=record.id, name=record.name, created_at=record.created_at,
                           last_used_at=record.last_used_at, revoked=record.revoked, token=secret)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke one of your API tokens", tags=["tokens"],
               responses=refusals(401, 403, 404))
async def revoke_token(principal: CurrentUser, token_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    await accounts.revoke_api_token(principal, token_id)
    return Response(status_code=204)


# --- administration -------------------------------------------------------------------------------


@router.get("/audit", response_model=Page[AuditOut], summary="The audit log (administrators)", tags=["admin"],
            responses=refusals(401, 403))
async def audit(
    principal: CurrentUser,
    actor: Annotated[str | None, Query(max_length=60, description="Only this staff member's entries.")] = None,
    case: Annotated[str | None, Query(max_length=32, description="Only entries about this case number.")] = None,
    action: Annotated[str | None, Query(max_length=40, description=(
        "Only this action (`case.view`), or a group of them ending in a dot (`case.`).")) ] = None,
    from_: Annotated[FilterDay | None, Query(alias="from", description="On or after this day (city time).")] = None,
    to: Annotated[FilterDay | None, Query(description="On or before this day (city time).")] = None,
    bulk: Annotated[str | None, Query(max_length=16, description=(
        "Only the entries of this bulk action (its id, `detail.bulk` of its entries): each case's entry and the "
        "`case.bulk` entry that sums it up."))] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[AuditOut]:
    """Who saw or did what, when, from which address; newest first."""
    filters = _audit_filters(principal, actor, case, action, from_, to, bulk)
    rows, total = await accounts.audit_log(principal, page=page, per_page=per_page, **filters)
    return Page[AuditOut].of([AuditOut.build(entry, user, number) for entry, user, number in rows], total=total,
                             page=page, per_page=per_page)


def _audit_filters(principal: Principal, actor: str | None, case: str | None, action: str | None,
                   first: date | None, last: date | None, bulk: str | None) -> dict[str, Any]:
    if first and last and first > last:
        raise HTTPException(422, "from is after to")
    zone = principal.context.city.timezone
    return {"actor": actor, "case_number": case, "action": action,
            "since": _day_start(first, zone) if first else None,
            "until": _day_start(last + timedelta(days=1), zone) if last else None, "bulk": bulk}


@router.get("/audit.csv", response_class=Response, summary="The audit log as CSV (administrators)", tags=["admin"],
            responses={**refusals(401, 403), 200: {"content": {"text/csv": {}}, "description": "The entries."}})
async def audit_csv(
    principal: CurrentUser, request: Request,
    actor: Annotated[str | None, Query(max_length=60)] = None,
    case: Annotated[str | None, Query(max_length=32)] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    from_: Annotated[FilterDay | None, Query(alias="from")] = None,
    to: Annotated[FilterDay | None, Query()] = None,
    bulk: Annotated[str | None, Query(max_length=16)] = None,
    lang: CsvLanguage = "zh",
) -> Response:
    """The entries of the filter (as for `/audit`), times in the city's time zone; the export is audited."""
    filters = _audit_filters(principal, actor, case, action, from_, to, bulk)
    described = {key: str(value) for key, value in (("actor", actor), ("case", case), ("action", action),
                                                    ("from", from_), ("to", to), ("bulk", bulk)) if value}
    content = await accounts.audit_export(principal, ip=_ip(request), described=described, locale=lang, **filters)
    return Response(content, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="qinglian-audit.csv"'})


@router.get("/staff", response_model=list[StaffOut], summary="Staff accounts (administrators)", tags=["admin"],
            responses=refusals(401, 403))
async def list_staff(principal: CurrentUser) -> list[StaffOut]:
    return [StaffOut.build(user) for user in await accounts.list_staff(principal)]


@router.post("/staff", response_model=StaffOut, status_code=201, summary="Create a staff account (administrators)",
             tags=["admin"], responses=refusals(401, 403, 409))
async def create_staff(principal: CurrentUser, body: StaffCreateIn) -> StaffOut:
    user = await accounts.add_staff(principal, username=body.username,
                                      display_name=body.display_name or body.username, role=StaffRole(body.role),
                                      queues=body.queues, password=body.password, no_queues_ok=body.no_queues_ok)
    return StaffOut.build(user)


@router.patch("/staff/{username}", response_model=StaffOut, summary="Change a staff account (administrators)",
              tags=["admin"], responses=refusals(401, 403, 404, 409))
async def update_staff(principal: CurrentUser, username: Annotated[str, Path(max_length=60)],
                       body: StaffPatchIn) -> StaffOut:
    """Fields left out stay as they are. Disabling ends the account's sessions and revokes its tokens; an
    administrator cannot demote or disable their own account."""
    user = await accounts.update_staff(principal, username, role=StaffRole(body.role) if body.role else None,
                                         queues=body.queues, active=body.active, totp_required=body.totp_required)
    return StaffOut.build(user)
