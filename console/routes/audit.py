"""The audit log (administrators): who saw or did what, when; filtered by user and case."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from console import accounts
from console.operations import require_admin
from console.rendering import render
from console.routes.common import PagePrincipal, page_count, page_router, parse_page

AUDIT_PER_PAGE = 100

router = page_router()


@router.get("/console/audit")
async def audit_log(request: Request, principal: PagePrincipal, user: str = "", case: str = "",
                    page: str = "1") -> Response:
    require_admin(principal)
    number = parse_page(page)
    user, case = user.strip()[:60], case.strip()[:32]
    rows, total = await accounts.audit_log(principal, page=number, per_page=AUDIT_PER_PAGE, actor=user or None,
                                           case_number=case or None)
    kept = {key: value for key, value in (("user", user), ("case", case)) if value}

    def page_url(page_number: int) -> str:
        return f"/console/audit?{urlencode({**kept, 'page': str(page_number)})}"

    return render(request, principal, "audit.html", rows=rows, total=total, page=number,
                  pages=page_count(total, AUDIT_PER_PAGE), page_url=page_url, user_filter=user, case_filter=case)
