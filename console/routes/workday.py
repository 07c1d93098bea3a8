"""The pages of a working day beyond one ticket: notices, canned replies per queue, actions on a selection."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console import workday
from console.auth import visible_queues
from console.operations import MAX_ID, require_supervisor
from console.rendering import redirect, render
from console.routes.common import CsrfField, PagePrincipal, check_csrf, page_router
from handlers.validation import readable

router = page_router()


@router.get("/console/notices")
async def notices(request: Request, principal: PagePrincipal) -> Response:
    """The user's notices: reporters who added information to cases assigned to them (read once opened)."""
    return render(request, principal, "notices.html", notices=await workday.notices(principal))


@router.get("/console/replies")
async def replies(request: Request, principal: PagePrincipal, edit: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
                  ) -> Response:
    """The canned replies of the user's queues; supervisors add, change and delete them."""
    allowed = visible_queues(principal.user)
    queues = [q for q in principal.context.city.queues if allowed is None or q.code in allowed]
    listed = await workday.replies_for(principal, [q.code for q in queues])
    editing = next((reply for reply in listed if reply.id == edit), None) if edit else None
    return render(request, principal, "replies.html", replies=listed, queues=queues, editing=editing)


@router.post("/console/replies")
async def save_reply(principal: PagePrincipal, *, csrf: CsrfField = "", queue: Annotated[str, Form(max_length=60)],
                     title: Annotated[str, Form(max_length=80)], body: Annotated[str, Form(max_length=3000)],
                     reply_id: Annotated[int, Form(ge=0, le=MAX_ID)] = 0) -> Response:
    check_csrf(principal, csrf)
    await workday.save_reply(principal, queue=queue, title=title, body=body, reply_id=reply_id or None)
    return redirect("/console/replies?done=saved")


@router.post("/console/replies/{reply_id}/delete")
async def delete_reply(principal: PagePrincipal, reply_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], *,
                       csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    await workday.delete_reply(principal, reply_id)
    return redirect("/console/replies?done=deleted")


@router.post("/console/cases/bulk")
async def bulk(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
               cases: Annotated[list[str] | None, Form(max_length=workday.MAX_BULK)] = None,
               action: Annotated[str, Form(max_length=20)] = "",
               username: Annotated[str, Form(max_length=60)] = "", status: Annotated[str, Form(max_length=20)] = "",
               note: Annotated[str, Form(max_length=3000)] = "",
               referral: Annotated[str, Form(max_length=1000)] = "", queue: Annotated[str, Form(max_length=60)] = "",
               reason: Annotated[str, Form(max_length=500)] = "",
               reason_code: Annotated[str, Form(max_length=60)] = "",
               back: Annotated[str, Form(max_length=2000)] = "/console/cases") -> Response:
    """Assign, set the status of, or move the selected cases; the result of each on one page."""
    check_csrf(principal, csrf)
    if action == "assign" and username and username != principal.user.username:
        require_supervisor(principal)
    results = await workday.bulk(principal, [number[:32] for number in cases or []], action, username=username,
                                 status=status, note=readable(note), referral=readable(referral), queue=queue,
                                 reason=reason, reason_code=reason_code)
    back = back if back.startswith("/console/") and "//" not in back and "\\" not in back else "/console/cases"
    typed = [(name, value) for name, value in (("note", note), ("referral", referral), ("reason", reason))
             if value.strip()]  # shown again when a case refused them: what was typed for it is not lost
    return render(request, principal, "bulk.html", results=results, action=action, back=back,
                  done_count=sum(1 for result in results if result.error is None), typed=typed)
