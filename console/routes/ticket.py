"""The ticket page: a case with its report, classification, evidence, trace, notes and activity, and one form
per action on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup

from console import operations, problems, texts, workday
from console.auth import Principal, can_see, visible_queues
from console.operations import INLINE_IMAGE_TYPES, MAX_ID, SETTABLE_STATUSES
from console.rendering import Names, deadline, highlight, overdue_flags, redirect, render, stacked, staff_name
from console.routes.common import CsrfField, PagePrincipal, check_csrf, client_ip, page_router
from handlers.evidence import display_name
from handlers.validation import readable
from nlp.reply_quality import ReplyScore
from storage import queries
from storage.models import CLOSED_STATUSES, Attachment, StaffUser, TraceEvent, utcnow

router = page_router()


def actor_name(actor: str, staff: dict[int, StaffUser]) -> Markup:
    """Who a trace event's `actor` is, for staff: the reporter, the system (in both languages) or a colleague by
    name."""
    if actor == "reporter":
        return stacked(*texts.pair("actor.reporter"))
    if actor == "system":
        return stacked(*texts.pair("actor.system"))
    if actor.startswith("staff:") and actor[6:].isdigit():
        user = staff.get(int(actor[6:]))
        return staff_name(user) if user else stacked(*texts.pair("actor.staff"))
    return stacked(texts.get("zh", "actor.system"), actor)


def files_brought(attachments: Sequence[Attachment]) -> dict[int, list[Attachment]]:
    """The files each of the reporter's follow-ups brought, by the follow-up's trace event."""
    brought: dict[int, list[Attachment]] = {}
    for attachment in attachments:
        if attachment.trace_event_id is not None:
            brought.setdefault(attachment.trace_event_id, []).append(attachment)
    return brought


@dataclass(frozen=True)
class RevealForm:
    """The reveal form as it was refused: the reason typed, and why it does not do (Chinese, English)."""

    reason: str
    refusal: tuple[str, str]


async def ticket_page(request: Request, principal: Principal, case_number: str, *,
                      revealed: tuple[str | None, str | None] | None = None, reveal_expired: bool = False,
                      reply: str = "", checked: AnswerCheck | None = None, reveal_form: RevealForm | None = None,
                      status_code: int = 200) -> Response:
    detail = await operations.case_detail(principal, case_number, ip=client_ip(request))
    case = detail.case
    staff = await operations.staff_by_id(principal)
    colleagues = [user for user in staff.values() if user.active and can_see(user, case)]
    attachments: Sequence[Attachment] = case.attachments
    trace: Sequence[TraceEvent] = case.trace
    top = [(str(item[0]), float(item[1])) for item in (case.label_top or [])[:3]
           if isinstance(item, list | tuple) and len(item) >= 2]
    terms = [str(t[0] if isinstance(t, list | tuple) else t) for t in (case.label_terms or [])]
    contrast_terms = [str(term) for term in (case.label_contrast_terms or [])]
    city = principal.context.city
    replies = await workday.replies_for(principal, [case.queue])
    return render(request, principal, "case.html", detail=detail, case=case, staff=staff, colleagues=colleagues,
                  images=[a for a in attachments if a.media_type in INLINE_IMAGE_TYPES],
                  files=[a for a in attachments if a.media_type not in INLINE_IMAGE_TYPES],
                  evidence_names={a.id: display_name(position, a.media_type)
                                  for position, a in enumerate(attachments, start=1)},
                  brought=files_brought(attachments),
                  trace=[(event, actor_name(event.actor, staff)) for event in trace],
                  text=highlight(case.description, terms), top=top, terms=terms,
                  runner_up=case.label_runner_up, contrast_terms=contrast_terms, flags=overdue_flags(case, utcnow()),
                  queues=city.queues, statuses=[s.value for s in SETTABLE_STATUSES],
                  closed=case.status in CLOSED_STATUSES, revealed=revealed, reveal_expired=reveal_expired,
                  activity=await operations.case_activity(principal, case, staff),
                  threshold=city.routing.confidence_threshold,
                   can_accept=case.status in queries.NOT_ACCEPTED, transfer_reasons=city.loop.transfer_reasons,
                   deadline=deadline(case, utcnow(), city),
                   replies=replies, similar=await problems.similar_cases(principal, case),
                   problem=await problems.problem_of(principal, case), check=checked,
                   answer_draft=checked.text if checked else next((r.body for r in replies if r.key == reply), ""),
                   reveal_form=reveal_form, status_code=status_code)


@router.get("/console/case/{case_number}")
async def ticket(request: Request, principal: PagePrincipal, case_number: str, shown: str = "",
                 reply: Annotated[str, Query(max_length=80)] = "") -> Response:
    """The ticket; `?reply=<key>` starts the answer with that canned reply of the case's queue."""
    revealed = None
    if shown and revealed_by(principal, case_number, shown):
        revealed = await operations.identity_shown_again(principal, case_number)
    return await ticket_page(request, principal, case_number, revealed=revealed, reveal_expired=bool(shown) and
                             revealed is None, reply=reply)



@router.get("/console/case/{case_number}/evidence/{attachment_id}")
async def evidence(request: Request, principal: PagePrincipal, case_number: str,
                   attachment_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]) -> Response:
    found = await operations.evidence_file(principal, case_number, attachment_id, ip=client_ip(request))
    inline = found.stored.media_type in INLINE_IMAGE_TYPES
    return await operations.evidence_download(
        principal, found, inline=inline,
        media_type=found.stored.media_type if inline else "application/octet-stream",
        headers={"Content-Security-Policy": "default-src 'none'; sandbox"})


@router.get("/console/case/{case_number}/thumb/{attachment_id}")
async def thumbnail(principal: PagePrincipal, case_number: str,
                    attachment_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]) -> Response:
    """An image of the ticket shown in the ticket page: part of the ticket's (audited) view, not a download of
    the evidence. Without a view of the ticket moments before, it is audited as a download. A small JPEG made
    from the image (at most 320 pixels a side, without metadata), not the file itself."""
    found = await operations.thumbnail_file(principal, case_number, attachment_id)
    return await operations.evidence_thumbnail(principal, found, headers={
        "Content-Security-Policy": "default-src 'none'; sandbox"})


def _case_url(case_number: str, done: str, anchor: str = "") -> str:
    return f"/console/case/{case_number}?{urlencode({'done': done})}{anchor}"


@router.post("/console/case/{case_number}/accept")
async def accept(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    await operations.accept(principal, case_number)
    return redirect(_case_url(case_number, "accepted"))


@router.post("/console/case/{case_number}/confirm-label")
async def confirm_label(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    await operations.confirm_label(principal, case_number)
    return redirect(_case_url(case_number, "label_confirmed"))


def _after_move(principal: Principal, case_number: str, queue: str, done: str) -> Response:
    allowed = visible_queues(principal.user)
    if allowed is not None and queue not in allowed:
        return redirect(f"/console?{urlencode({'done': 'moved_away'})}")
    return redirect(_case_url(case_number, done))


@router.post("/console/case/{case_number}/correct-label")
async def correct_label(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                        label: Annotated[str, Form(max_length=40)]) -> Response:
    check_csrf(principal, csrf)
    queue = await operations.correct_label(principal, case_number, label)
    return _after_move(principal, case_number, queue, "label_corrected")


@router.post("/console/case/{case_number}/move")
async def move(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
               queue: Annotated[str, Form(max_length=60)], reason: Annotated[str, Form(max_length=500)] = "",
               reason_code: Annotated[str, Form(max_length=200)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.move(principal, case_number, queue, readable(reason), reason_code or None)
    return _after_move(principal, case_number, queue, "moved")


@router.post("/console/case/{case_number}/tell-reporter")
async def tell_reporter(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                        text: Annotated[str, Form(max_length=3000)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.tell_reporter(principal, case_number, readable(text))
    return redirect(_case_url(case_number, "told", "#delivery"))


@router.post("/console/case/{case_number}/more-info")
async def ask_for_information(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                              question: Annotated[str, Form(max_length=3000)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.ask_for_information(principal, case_number, readable(question))
    return redirect(_case_url(case_number, "more_info_asked", "#delivery"))


@router.post("/console/case/{case_number}/extension")
async def request_extension(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                            until: Annotated[date, Form()], reason: Annotated[str, Form(max_length=1000)] = ""
                            ) -> Response:
    check_csrf(principal, csrf)
    await operations.request_extension(principal, case_number, until, readable(reason))
    return redirect(_case_url(case_number, "extension_requested"))


@router.post("/console/case/{case_number}/extension/{request_id}")
async def decide_extension(principal: PagePrincipal, case_number: str, request_id: int, *, csrf: CsrfField = "",
                           decision: Annotated[str, Form(pattern="^(approve|refuse)$")],
                           note: Annotated[str, Form(max_length=1000)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.decide_extension(principal, case_number, request_id, decision == "approve", readable(note))
    return redirect(_case_url(case_number, "extension_decided"))


@router.post("/console/case/{case_number}/appeal")
async def decide_appeal(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                        decision: Annotated[str, Form(pattern="^(uphold|reopen)$")],
                        reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.decide_appeal(principal, case_number, decision == "uphold", readable(reason))
    return redirect(_case_url(case_number, "appeal_decided"))


@router.post("/console/case/{case_number}/status")
async def set_status(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                     status: Annotated[str, Form(max_length=20)],
                     note: Annotated[str, Form(max_length=3000)] = "",
                     referral: Annotated[str, Form(max_length=1000)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.set_status(principal, case_number, status, readable(note) or None, readable(referral) or None)
    return redirect(_case_url(case_number, "status"))


@router.post("/console/case/{case_number}/duplicate")
async def duplicate(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                    original: Annotated[str, Form(max_length=40)]) -> Response:
    check_csrf(principal, csrf)
    await operations.mark_duplicate(principal, case_number, original)
    return redirect(_case_url(case_number, "duplicate"))


@router.post("/console/case/{case_number}/note")
async def note(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
               body: Annotated[str, Form(max_length=10_000)]) -> Response:
    check_csrf(principal, csrf)
    await operations.add_note(principal, case_number, readable(body))
    return redirect(_case_url(case_number, "note", "#notes"))


@router.post("/console/case/{case_number}/assign")
async def assign(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                 username: Annotated[str, Form(max_length=60)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.assign(principal, case_number, username.strip() or None)
    return redirect(_case_url(case_number, "assigned"))


@dataclass(frozen=True)
class AnswerCheck:
    """An answer's quality check, shown above the answer form: the scores with their reasons in both
    languages, and the token that lets this very text be sent without a second check."""

    text: str
    score: ReplyScore
    token: str
    reasons: list[tuple[str, str]]


def answer_check(principal: Principal, target: str, text: str, score: ReplyScore) -> AnswerCheck:
    return AnswerCheck(text, score, problems.check_token(principal, target, text),
                       list(zip(score.reason_texts("zh"), score.reason_texts("en"), strict=True)))


@router.post("/console/case/{case_number}/answer")
async def answer(request: Request, principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                 text: Annotated[str, Form(max_length=3000)],
                 action: Annotated[str, Form(pattern="^(check|send)$")] = "check",
                 checked: Annotated[str, Form(max_length=128)] = "") -> Response:
    """An answer is checked first (scores and reasons shown with the draft); "send" sends the checked text.
    A text changed after its check is checked again before it can be sent."""
    check_csrf(principal, csrf)
    text = readable(text)  # what the reporter would read: no control or invisible characters
    if action == "send" and problems.was_checked(principal, case_number, text, checked):
        await operations.answer(principal, case_number, text)
        return redirect(_case_url(case_number, "answered", "#trace"))
    if not text.strip():
        raise operations.OperationError(422, "answer_needs_text")
    score = await problems.check_answer(principal, case_number, text)
    return await ticket_page(request, principal, case_number, checked=answer_check(principal, case_number, text, score))


REVEAL_SHOWN_SECONDS = 600
"""How long after a reveal the ticket page (reloaded, or opened from the browser's history) still shows the
identity without a new reveal."""


def _reveal_serializer(principal: Principal) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(principal.context.secret_key, salt="qinglian-identity-shown")


def reveal_ticket(principal: Principal, case_number: str) -> str:
    """What the ticket's address carries after a reveal: signed, for this user and case, for a few minutes."""
    return str(_reveal_serializer(principal).dumps([principal.user.id, case_number]))


def revealed_by(principal: Principal, case_number: str, ticket: str) -> bool:
    try:
        value = _reveal_serializer(principal).loads(ticket, max_age=REVEAL_SHOWN_SECONDS)
    except BadSignature:
        return False
    return value == [principal.user.id, case_number]


@router.post("/console/case/{case_number}/reveal")
async def reveal(request: Request, principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                 reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    """Reveal a real-name reporter's identity, with the reason (audited); then the ticket page shows it. A reason
    that does not do (too short) shows the ticket again, its form holding what was typed and why it was refused."""
    check_csrf(principal, csrf)
    reason = readable(reason)
    try:
        await operations.reveal_identity(principal, case_number, ip=client_ip(request), reason=reason)
    except operations.OperationError as refused:
        if refused.status_code != 422:
            raise
        return await ticket_page(request, principal, case_number, status_code=422,
                                 reveal_form=RevealForm(reason, Names(principal.context.city).refusal(refused)))
    query = urlencode({"done": "revealed", "shown": reveal_ticket(principal, case_number)})
    return redirect(f"/console/case/{case_number}?{query}#identity")
