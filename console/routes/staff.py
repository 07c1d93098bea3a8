"""Staff administration (administrators): accounts, their roles, queues, second factor, passwords and
API tokens."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Form, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from console import accounts, texts
from console.auth import Principal
from console.operations import MAX_ID, OperationError, require_admin
from console.rendering import Names, redirect, render, weak_password_message
from console.routes.common import CsrfField, PagePrincipal, check_csrf, page_router
from storage.models import StaffRole

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,59}$")

router = page_router()


def _role(value: str) -> StaffRole:
    try:
        return StaffRole(value)
    except ValueError:
        raise OperationError(422, "unknown_role", code=value[:20]) from None


async def _staff_list_page(request: Request, principal: Principal, *, created: tuple[str, str] | None = None,
                           error: str | None = None, status_code: int = 200,
                           form: dict[str, object] | None = None) -> Response:
    """The staff list with the form for a new account (`form`: what was entered, never the password, when
    the form comes back with a question or an error)."""
    return render(request, principal, "staff.html", users=await accounts.list_staff(principal), created=created,
                  error=error, queues=principal.context.city.queues, status_code=status_code, form=form or {})


@router.get("/console/staff")
async def staff_list(request: Request, principal: PagePrincipal) -> Response:
    require_admin(principal)
    return await _staff_list_page(request, principal)


@router.post("/console/staff")
async def create_staff(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                       username: Annotated[str, Form(max_length=60)],
                       role: Annotated[str, Form(max_length=20)],
                       display_name: Annotated[str, Form(max_length=80)] = "",
                       queues: Annotated[list[str] | None, Form()] = None,
                       password: Annotated[str, Form(max_length=1000)] = "",
                       no_queues_ok: Annotated[str, Form(max_length=1)] = "") -> Response:
    """A new account; its owner changes the password at the first login. A reviewer without queues is
    created only once the administrator confirms it (the form comes back with the question)."""
    check_csrf(principal, csrf)
    require_admin(principal)
    username = username.strip()
    entered: dict[str, object] = {"username": username, "display_name": display_name, "role": role,
                                  "queues": sorted(set(queues or []))}
    if not USERNAME_PATTERN.fullmatch(username):
        return await _staff_list_page(request, principal, status_code=422, error=texts.joined("staff.bad_username"),
                                      form=entered)
    plain = password or secrets.token_urlsafe(12)
    try:
        await accounts.add_staff(principal, username=username, display_name=display_name.strip() or username,
                                 role=_role(role), queues=sorted(set(queues or [])), password=plain,
                                 no_queues_ok=no_queues_ok == "1")
    except accounts.NoQueuesWarning:
        return await _staff_list_page(request, principal, status_code=422, error=texts.joined("staff.no_queues"),
                                      form={**entered, "ask_no_queues": True})
    except OperationError as refused:
        if refused.status_code != 422:
            raise
        return await _staff_list_page(request, principal, status_code=422, form=entered,
                                      error=weak_password_message(Names(principal.context.city).refusal(refused)))
    return await _staff_list_page(request, principal, created=(username, "" if password else plain))


async def _staff_user_page(request: Request, principal: Principal, username: str, *,
                           new_password: str | None = None, new_token: str | None = None,
                           tokens_revoked: int = 0) -> Response:
    user = await accounts.staff_user(principal, username)
    return render(request, principal, "staff_user.html", user=user, queues=principal.context.city.queues,
                  user_queues={q.queue for q in user.queues}, tokens=await accounts.tokens_of(principal, user.id),
                  new_password=new_password, new_token=new_token, tokens_revoked=tokens_revoked)


@router.get("/console/staff/{username}")
async def staff_user(request: Request, principal: PagePrincipal, username: str) -> Response:
    require_admin(principal)
    return await _staff_user_page(request, principal, username)


def _staff_url(username: str, done: str = "saved") -> str:
    return f"/console/staff/{quote(username)}?{urlencode({'done': done})}"


@router.post("/console/staff/{username}/role")
async def staff_role(principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                     role: Annotated[str, Form(max_length=20)],
                     queues: Annotated[list[str] | None, Form()] = None) -> Response:
    check_csrf(principal, csrf)
    await accounts.update_staff(principal, username, role=_role(role), queues=sorted(set(queues or [])))
    return redirect(_staff_url(username))


@router.post("/console/staff/{username}/active")
async def staff_active(principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                       active: Annotated[str, Form()]) -> Response:
    check_csrf(principal, csrf)
    await accounts.update_staff(principal, username, active=active == "1")
    return redirect(_staff_url(username))


@router.post("/console/staff/{username}/totp-required")
async def staff_totp_required(principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                              required: Annotated[str, Form()]) -> Response:
    check_csrf(principal, csrf)
    await accounts.update_staff(principal, username, totp_required=required == "1")
    return redirect(_staff_url(username))


@router.post("/console/staff/{username}/password")
async def staff_password(request: Request, principal: PagePrincipal, username: str, *,
                         csrf: CsrfField = "") -> Response:
    """A new random password, shown to the administrator once: the user's sessions end, their API tokens are
    revoked and they choose their own password at the next login."""
    check_csrf(principal, csrf)
    require_admin(principal)
    plain = secrets.token_urlsafe(12)
    password_hash = await asyncio.to_thread(principal.context.passwords.hash, plain)
    revoked = await accounts.reset_password(principal, username, password_hash)
    if username == principal.user.username:
        return redirect("/console/login")
    return await _staff_user_page(request, principal, username, new_password=plain, tokens_revoked=revoked)


@router.post("/console/staff/{username}/totp-reset")
async def staff_totp_reset(principal: PagePrincipal, username: str, *, csrf: CsrfField = "") -> Response:
    """Remove a user's second factor (a lost phone); they enrol again at their next login if it is required."""
    check_csrf(principal, csrf)
    await accounts.reset_totp(principal, username)
    return redirect(_staff_url(username))


@router.post("/console/staff/{username}/tokens")
async def staff_token(request: Request, principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                      name: Annotated[str, Form(max_length=80)]) -> Response:
    check_csrf(principal, csrf)
    if not name.strip():
        raise OperationError(422, "token_needs_name")
    token = await accounts.create_token_for(principal, username, name.strip())
    return await _staff_user_page(request, principal, username, new_token=token)


@router.post("/console/staff/{username}/tokens/{token_id}/revoke")
async def staff_token_revoke(principal: PagePrincipal, username: str,
                             token_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], *,
                             csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    await accounts.revoke_token_of(principal, username, token_id)
    return redirect(_staff_url(username, "revoked"))
