"""The user's own account: password, second factor, API tokens."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated

from fastapi import Form, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from itsdangerous import BadSignature

from console import accounts, signin, texts
from console.auth import (
    Principal,
    enrol_serializer,
    set_session_cookie,
    totp_enrolment,
    totp_step,
)
from console.operations import MAX_ID, OperationError
from console.passwords import WeakPassword
from console.rendering import redirect, render, weak_password_message
from console.routes.common import CsrfField, PagePrincipal, check_csrf, client_ip, page_router
from console.routes.login import ENROL_MAX_AGE

router = page_router()


async def account_page(request: Request, principal: Principal, *, status_code: int = 200,
                       error: str | None = None, new_token: str | None = None, enrol: bool = False,
                       enrolling: tuple[str, str] | None = None) -> Response:
    """The account page; `enrol` shows a new second factor's secret, or the one of `enrolling` (the secret and its
    signed form) after a wrong code."""
    secret, signed = enrolling or (None, None)
    enrolment = totp_enrolment(principal.context, principal.user.username, secret, signed) \
        if enrol and not principal.user.totp_secret else None
    must_change = texts.pair("account.must_change") if principal.user.must_change_password else None
    return render(request, principal, "account.html", status_code=status_code, error=error, new_token=new_token,
                  enrolment=enrolment, tokens=await accounts.tokens_of(principal, principal.user.id),
                  must_change=must_change)


@router.get("/console/account")
async def account(request: Request, principal: PagePrincipal, enrol: str = "") -> Response:
    return await account_page(request, principal, enrol=enrol == "1")


@router.post("/console/account/password")
async def change_password(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                          current: Annotated[str, Form(max_length=1000)], new: Annotated[str, Form(max_length=1000)],
                          repeat: Annotated[str, Form(max_length=1000)]) -> Response:
    check_csrf(principal, csrf)
    confirmation = await signin.confirm_own_password(principal.context, principal.user.id, current,
                                                     purpose="password change", ip=client_ip(request))
    if confirmation.locked:
        return redirect("/console/login")
    if not confirmation.ok:
        return await account_page(request, principal, status_code=422,
                                  error=texts.joined("account.wrong_current_password"))
    if new != repeat:
        return await account_page(request, principal, status_code=422, error=texts.joined("account.passwords_differ"))
    if new == current:
        return await account_page(request, principal, status_code=422, error=texts.joined("account.password_same"))
    user = principal.user
    try:
        password_hash = await asyncio.to_thread(partial(principal.context.passwords.hash, new,
                                                        user_inputs=(user.username, user.display_name)))
    except WeakPassword as problem:
        return await account_page(request, principal, status_code=422, error=weak_password_message(problem.pair()))
    token = await signin.new_password(principal.context, principal.user.id, password_hash, ip=client_ip(request))
    response = redirect("/console/account?done=password")
    set_session_cookie(response, principal.context, token)
    return response


@router.post("/console/account/totp")
async def enrol_totp(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                     secret: Annotated[str, Form()], code: Annotated[str, Form(max_length=20)]) -> Response:
    check_csrf(principal, csrf)
    if principal.user.totp_secret:
        raise OperationError(409, "totp_on_already")
    try:
        plain = str(enrol_serializer(principal.context).loads(secret, max_age=ENROL_MAX_AGE))
    except BadSignature:
        return await account_page(request, principal, status_code=400, enrol=True,
                                  error=texts.joined("account.enrol_expired"))
    step = totp_step(plain, code)
    if step is None:
        return await account_page(request, principal, status_code=422, enrol=True, enrolling=(plain, secret),
                                  error=texts.joined("account.wrong_code"))
    await signin.set_own_totp(principal.context, principal.user.id, plain, ip=client_ip(request), confirmed_step=step)
    return redirect("/console/account?done=totp_on")


@router.post("/console/account/totp/remove")
async def remove_totp(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                      password: Annotated[str, Form(max_length=1000)]) -> Response:
    check_csrf(principal, csrf)
    if principal.user.totp_required:
        raise OperationError(409, "totp_required")
    confirmation = await signin.confirm_own_password(principal.context, principal.user.id, password,
                                                     purpose="second factor removal", ip=client_ip(request))
    if confirmation.locked:
        return redirect("/console/login")
    if not confirmation.ok:
        return await account_page(request, principal, status_code=422, error=texts.joined("account.wrong_password"))
    await signin.set_own_totp(principal.context, principal.user.id, None, ip=client_ip(request))
    return redirect("/console/account?done=totp_off")


@router.post("/console/account/tokens")
async def create_own_token(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                           name: Annotated[str, Form(max_length=80)]) -> Response:
    check_csrf(principal, csrf)
    if not name.strip():
        raise OperationError(422, "token_needs_name")
    token, _ = await accounts.create_api_token(principal, name.strip())
    return await account_page(request, principal, new_token=token)


@router.post("/console/account/tokens/{token_id}/revoke")
async def revoke_own_token(principal: PagePrincipal, *, csrf: CsrfField = "",
                           token_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]) -> Response:
    check_csrf(principal, csrf)
    await accounts.revoke_api_token(principal, token_id)
    return redirect("/console/account?done=revoked")
