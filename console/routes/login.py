"""Logging in (password, then the second factor where the account has or needs one) and out."""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from itsdangerous import BadSignature

from console import signin, texts
from console.auth import (
    SESSION_COOKIE,
    ContextDep,
    Principal,
    enrol_serializer,
    half_logged_in,
    session_token,
    set_session_cookie,
    totp_enrolment,
)
from console.context import ConsoleContext
from console.rendering import redirect, render
from console.routes.common import CsrfField, check_csrf, client_ip, page_router
from console.throttle import LoginThrottle, login_throttle

LOGIN_COOKIE = "ql_login"
ENROL_MAX_AGE = 900  # seconds a signed enrolment secret is good for

router = page_router()
ThrottleDep = Annotated[LoginThrottle, Depends(login_throttle)]


def safe_next(value: str | None) -> str:
    """Where to go after login: a console page (never another site, never a form's POST address)."""
    from console.routes import ROUTERS  # every page router, this one included

    if not value or not value.startswith("/console") or "\\" in value or value.startswith("/console/login"):
        return "/console"
    path = value.partition("?")[0]
    for route in (route for router in ROUTERS for route in router.routes):
        if isinstance(route, APIRoute) and "GET" in (route.methods or ()) and route.path_regex.fullmatch(path):
            return value
    case_action = re.fullmatch(r"(/console/case/[^/]+)/[a-z-]+", path)
    return case_action.group(1) if case_action else "/console"


def login_page(request: Request, context: ConsoleContext, *, next_path: str, error: tuple[str, str] | None = None,
               status_code: int = 200, username: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, None, "login.html", status_code=status_code, login_token=token, next=next_path,
                      error=error, username=username)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/console/login",
                        secure=context.secure_cookies, max_age=3600)
    return response


@router.get("/console/login")
async def login_form(request: Request, context: ContextDep, next: str | None = None) -> Response:
    principal = await half_logged_in(request, context)
    if principal is not None and principal.session is not None:
        return redirect(safe_next(next) if principal.session.second_factor_done
                        else f"/console/login/2fa?{urlencode({'next': safe_next(next)})}")
    return login_page(request, context, next_path=safe_next(next))


@router.post("/console/login")
async def login(request: Request, context: ContextDep, throttle: ThrottleDep,
                username: Annotated[str, Form(max_length=60)], password: Annotated[str, Form(max_length=1000)],
                login_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/console") -> Response:
    next_path = safe_next(next)
    cookie_token = request.cookies.get(LOGIN_COOKIE, "")
    if not login_token or not cookie_token or not hmac.compare_digest(login_token.encode(), cookie_token.encode()):
        return login_page(request, context, next_path=next_path, status_code=403, username=username,
                          error=texts.pair("login.form_expired"))
    ip = client_ip(request)
    if await throttle.blocked(ip):
        return login_page(request, context, next_path=next_path, status_code=429, username=username,
                          error=texts.pair("login.throttled"))
    username = username.strip()
    step = await signin.password_step(context, username, password, ip=ip)
    if step.token is None:
        console = context.city.console
        failures = await throttle.fail(ip)
        if failures >= throttle.limit:  # this failure throttles the address: audited once (console.throttle)
            await signin.address_throttled(context, username, ip=ip, failures=failures,
                                           minutes=round(throttle.window_seconds / 60))
        return login_page(request, context, next_path=next_path, status_code=401, username=username,
                          error=texts.pair("login.failed", attempts=console.login_attempts,
                                           minutes=console.login_lock_minutes))
    target = f"/console/login/2fa?{urlencode({'next': next_path})}" if step.second_factor else next_path
    response = redirect(target)
    set_session_cookie(response, context, step.token)
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


def _second_factor_page(request: Request, principal: Principal, next_path: str, *,
                        error: tuple[str, str] | None = None, status_code: int = 200,
                        enrolling: tuple[str, str] | None = None) -> Response:
    """The second factor's form; for a user without one, its enrolment: a new secret, or the one of `enrolling`
    (the secret and its signed form) after a wrong code."""
    secret, signed = enrolling or (None, None)
    enrol = None if principal.user.totp_secret else totp_enrolment(principal.context, principal.user.username,
                                                                   secret, signed)
    return render(request, principal, "login_2fa.html", status_code=status_code, next=next_path, enrol=enrol,
                  error=error)


@router.get("/console/login/2fa")
async def second_factor_form(request: Request, context: ContextDep, next: str | None = None) -> Response:
    principal = await half_logged_in(request, context)
    if principal is None:
        return redirect(f"/console/login?{urlencode({'next': safe_next(next)})}")
    assert principal.session is not None
    if principal.session.second_factor_done:
        return redirect(safe_next(next))
    return _second_factor_page(request, principal, safe_next(next))


@router.post("/console/login/2fa")
async def second_factor(request: Request, context: ContextDep, *, csrf: CsrfField = "",
                        code: Annotated[str, Form(max_length=20)], enrol_secret: Annotated[str, Form()] = "",
                        next: Annotated[str, Form()] = "/console") -> Response:
    principal = await half_logged_in(request, context)
    next_path = safe_next(next)
    if principal is None:
        return redirect(f"/console/login?{urlencode({'next': next_path})}")
    check_csrf(principal, csrf)
    secret: str | None = None
    if enrol_secret:
        try:
            secret = str(enrol_serializer(context).loads(enrol_secret, max_age=ENROL_MAX_AGE))
        except BadSignature:
            return _second_factor_page(request, principal, next_path, status_code=400,
                                       error=texts.pair("login.enrol_expired"))
    step = await signin.second_factor_step(context, principal.user.id, code, enrol_secret=secret,
                                           old_token=session_token(request, context), ip=client_ip(request))
    if step.token is not None:
        response = redirect(next_path)
        set_session_cookie(response, context, step.token)
        return response
    if step.locked:
        response = login_page(request, context, next_path=next_path, status_code=401, error=texts.pair(
            "login.code_locked", minutes=context.city.console.login_lock_minutes))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    return _second_factor_page(request, principal, next_path, status_code=401, error=texts.pair("login.wrong_code"),
                               enrolling=(secret, enrol_secret) if secret is not None else None)


@router.post("/console/logout")
async def logout(request: Request, context: ContextDep, *, csrf: CsrfField = "") -> Response:
    principal = await half_logged_in(request, context)
    if principal is not None:
        check_csrf(principal, csrf)
        await signin.log_out(context, principal.user, session_token(request, context), ip=client_ip(request))
    response = redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
