"""What every page router shares: the router class, the logged-in principal, the CSRF check of
a form, parsing of query values, paging, and the error page."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from console.auth import LoginRequired, PasswordChangeRequired, Principal, page_principal
from console.context import context_of
from console.operations import OperationError
from console.rendering import ConsoleRoute, render
from console.schemas import FIRST_DAY, LAST_DAY

PER_PAGE = 50

PagePrincipal = Annotated[Principal, Depends(page_principal)]
CsrfField = Annotated[str, Form(alias="csrf")]


def page_router() -> APIRouter:
    """A router of console pages: security headers on every response, not in the API's OpenAPI document."""
    return APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def check_csrf(principal: Principal, submitted: str | None) -> None:
    try:
        principal.check_csrf(submitted)
    except HTTPException:
        raise OperationError(403, "csrf_failed") from None


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def parse_day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise OperationError(422, "date_format", name=name, value=value[:20]) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise OperationError(422, "date_range", name=name, first=FIRST_DAY, last=LAST_DAY)
    return day


def parse_percent(value: str, name: str) -> float | None:
    """A percentage as the pages show confidences ("80", "87.5", "80%"), from 0 to 100; None when empty."""
    if not value:
        return None
    try:
        number = float(value.removesuffix("%").strip())
    except ValueError:
        raise OperationError(422, "percent_format", name=name, value=value[:20]) from None
    if not math.isfinite(number):
        raise OperationError(422, "percent_format", name=name, value=value[:20])
    if not 0.0 <= number <= 100.0:
        raise OperationError(422, "percent_range", name=name)
    return number


def parse_page(value: str) -> int:
    try:
        page = int(value or "1")
    except ValueError:
        raise OperationError(422, "page_format") from None
    if not 1 <= page <= 100_000:
        raise OperationError(422, "page_range")
    return page


def page_count(total: int, per_page: int) -> int:
    return max(1, (total + per_page - 1) // per_page)


_CASE_PAGE = re.compile(r"/console/case/[A-Za-z0-9-]{1,40}")


def back_to(request: Request) -> str | None:
    """Where an error page leads back to: the ticket whose form was refused, or the console page the form was on
    (a path of this site, from the Referer), so that the browser's back button or this link returns to the
    work — not only the overview."""
    ticket = _CASE_PAGE.match(request.url.path)
    if ticket and request.method == "POST":
        return ticket.group(0)
    referer = urlsplit(request.headers.get("referer", ""))
    same_site = referer.netloc == request.url.netloc and referer.path.startswith("/console")
    if same_site and referer.path != request.url.path:
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return None


TYPED_FIELDS = ("text", "body", "question", "note", "reason", "referral", "title")
"""The fields of the console's forms that hold what staff write (answers, notes, questions, reasons, canned
replies): a refused form shows them again. Never a password, a token or a code."""
MAX_TYPED = 20_000


async def typed_text(request: Request) -> list[tuple[str, str]]:
    """What a refused form carried that its author typed, (field, text) in the order of `TYPED_FIELDS`: the form
    as the route read it (Starlette keeps it on the request); nothing when it was not a form or could not be read."""
    if request.method != "POST":
        return []
    try:
        form = await request.form()
    except (HTTPException, RuntimeError, ClientDisconnect, ValueError):  # not read, or not a form to read
        return []
    typed = []
    for name in TYPED_FIELDS:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            typed.append((name, value[:MAX_TYPED]))
    return typed


async def error_page(request: Request, status_code: int, message: str | tuple[str, str],
                     fields: list[tuple[str, str]] | None = None, reason: str | None = None) -> Response:
    """An error as a console page (the app's handler for OperationError on console paths): what went wrong in
    Chinese and English, the precise reason (a (Chinese, English) pair, or one line; and, for a refused form,
    each field's: (where, what)), what the form carried that its author typed (to copy: a refused answer or note is
not lost), and the way back to the page it came from. `reason` is the refusal's key, for
    refusals whose advice is not their status code's (a form of an earlier login is not a matter of the role)."""
    try:
        principal: Principal | None = await page_principal(request, context_of(request))
    except (LoginRequired, PasswordChangeRequired):  # raised here, inside the app's error handler, it was a 500
        principal = None
    return render(request, principal, "error.html", status_code=status_code, status_code_value=status_code,
                  message=message, back=back_to(request), fields=fields or [], reason=reason,
                  typed=await typed_text(request))
