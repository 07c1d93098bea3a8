"""Who is asking: staff logins (signed HttpOnly cookies bound to a server-side session), API tokens,
CSRF tokens, TOTP second factor, and the permission rules."""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import pyotp
from fastapi import Depends, HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession

from console.context import ConsoleContext, context_of
from handlers.city import CityConfig
from storage import audit, staff_actions, staff_notices
from storage.models import Case, StaffRole, StaffSession, StaffUser, utcnow

SESSION_COOKIE = "ql_staff"


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def totp_step(secret: str, code: str) -> int | None:
    """The time-step whose code `code` is (this one, the one before or the one after: a clock may be 30 s
    off); None when it is none of them. The caller accepts a step once (`staff_actions.accept_totp_step`)."""
    # full-width digits (a Chinese keyboard's) read as the code; digits of other scripts are no code
    code = unicodedata.normalize("NFKC", code).strip().replace(" ", "")
    if not (code.isascii() and code.isdigit()) or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = totp.timecode(utcnow())
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def verify_totp(secret: str, code: str) -> bool:
    return totp_step(secret, code) is not None


# --- cookies ------------------------------------------------------------------------------------


def cookie_serializer(context: ConsoleContext) -> URLSafeTimedSerializer:
    return session_serializer(context.secret_key)


def session_serializer(secret_key: bytes) -> URLSafeTimedSerializer:
    """Signs a staff session's token into its cookie (`cookie_serializer` of a running console)."""
    return URLSafeTimedSerializer(secret_key, salt="qinglian-staff-session")


def enrol_serializer(context: ConsoleContext) -> URLSafeTimedSerializer:
    """Signs a new TOTP secret into the enrolment form, so the server keeps nothing until it is confirmed."""
    return URLSafeTimedSerializer(context.secret_key, salt="qinglian-totp-enrol")


def session_max_age(context: ConsoleContext) -> int:
    return int(context.city.console.session_hours * 3600)


def set_session_cookie(response: Response, context: ConsoleContext, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, cookie_serializer(context).dumps(token), httponly=True, samesite="lax",
                        secure=context.secure_cookies, path="/", max_age=session_max_age(context))


def session_token(request: Request, context: ConsoleContext) -> str | None:
    """The server-side session's token from the signed cookie (whatever its age)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        return str(cookie_serializer(context).loads(raw))
    except BadSignature:
        return None


def totp_enrolment(context: ConsoleContext, username: str, secret: str | None = None,
                   signed: str | None = None) -> dict[str, str]:
    """A TOTP secret, its otpauth:// URI and the secret signed for the enrolment form: a new one, or the one of an
    enrolment whose code was wrong (`secret` and its `signed` form), which the user's authenticator already holds."""
    if secret is None or signed is None:
        secret = new_totp_secret()
        signed = enrol_serializer(context).dumps(secret)
    return {"secret": secret, "uri": totp_uri(secret, username, context.issuer), "signed": signed}


# --- permissions ------------------------------------------------------------------------------


def visible_queues(user: StaffUser) -> set[str] | None:
    """The queues a user works in; None means every queue (supervisors and admins)."""
    if user.role in (StaffRole.SUPERVISOR, StaffRole.ADMIN):
        return None
    return {assignment.queue for assignment in user.queues}


def can_see(user: StaffUser, case: Case) -> bool:
    queues = visible_queues(user)
    return queues is None or case.queue in queues


def can_reveal_identity(user: StaffUser, city: CityConfig) -> bool:
    return user.role in city.console.identity_roles


def has_role(user: StaffUser, *roles: StaffRole) -> bool:
    return user.role in roles


# --- request principals -----------------------------------------------------------------------


@dataclass
class Principal:
    user: StaffUser
    session: StaffSession | None  # None for API tokens
    context: ConsoleContext
    ip: str | None = None  # the client's address, written into every audit entry of the request
    unread_notices: int = 0  # of a console session: shown in the page header
    api_token: str | None = None  # the API token the request came with ("<name> (#<id>)"), in every audit entry too
    bulk: dict[str, str | int] | None = None
    """Of an action on a selection of cases: its id and the selection's size, in every audit entry
    (`audit.AUDIT_BULK`)."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction whose audit entries carry this request's client address (and API token, and bulk
        action)."""
        async with self.context.database.sessionmaker.begin() as session:
            session.info[audit.AUDIT_IP] = self.ip
            session.info[audit.AUDIT_API_TOKEN] = self.api_token
            session.info[audit.AUDIT_BULK] = self.bulk
            yield session

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token if self.session else ""

    def check_csrf(self, submitted: str | None) -> None:
        if self.session is None:
            return  # token-authenticated API calls carry no ambient credentials
        if not submitted or not hmac.compare_digest(submitted.encode(), self.session.csrf_token.encode()):
            raise HTTPException(403, "the form has expired or did not come from this site (CSRF check failed)")


PASSWORD_CHANGE_PATHS = frozenset({"/console/account", "/console/account/password"})
"""What an account whose password must be changed may open (logging out needs no principal)."""


class PasswordChangeRequired(Exception):
    """Raised by page dependencies for an account whose password was generated or reset by someone else: the
    app answers with a redirect to the page where its owner chooses a new one."""


class LoginRequired(Exception):
    """Raised by page dependencies; the app answers with a redirect to the login page."""

    def __init__(self, next_path: str, second_factor: bool = False) -> None:
        self.next_path = next_path
        self.second_factor = second_factor


ContextDep = Annotated[ConsoleContext, Depends(context_of)]


def request_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _session_principal(request: Request, context: ConsoleContext, *,
                             allow_half: bool = False) -> Principal | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        token = cookie_serializer(context).loads(raw, max_age=session_max_age(context))
    except BadSignature:
        return None
    async with context.database.read_sessionmaker() as session:
        record = await staff_actions.find_session(session, str(token))
        if record is None:
            return None
        user = await staff_actions.get_staff(session, record.user_id)
        if user is None or not user.active:
            return None
        if not record.second_factor_done and not allow_half:
            return None
        unread = await staff_notices.unread_notice_count(session, user.id, visible_queues(user))
    return Principal(user, record, context, request_ip(request), unread)


async def page_principal(request: Request, context: ContextDep) -> Principal:
    principal = await _session_principal(request, context)
    if principal is None:
        half = await _session_principal(request, context, allow_half=True)
        raise LoginRequired(request.url.path, second_factor=half is not None)
    if principal.user.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise PasswordChangeRequired()
    return principal


async def half_logged_in(request: Request, context: ConsoleContext) -> Principal | None:
    """The principal of a session whose second factor may still be missing (login pages, logout)."""
    principal = await _session_principal(request, context, allow_half=True)
    return principal if principal is not None and principal.session is not None else None


async def api_principal(request: Request, context: ContextDep) -> Principal:
    """A bearer token (integrations) or the console's own session cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        async with context.database.read_sessionmaker() as session:
            record = await staff_actions.find_api_token(session, header[7:].strip())
            user = await staff_actions.get_staff(session, record.user_id) if record else None
        if record is None or user is None or not user.active:
            raise HTTPException(401, "invalid or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        now = utcnow()
        if staff_actions.token_use_is_news(record, now):  # the write lock at most every few minutes per token
            async with context.database.sessionmaker.begin() as session:
                await staff_actions.record_token_use(session, record.id, now)
        return Principal(user, None, context, request_ip(request), api_token=f"{record.name} (#{record.id})")
    principal = await _session_principal(request, context)
    if principal is None:
        raise HTTPException(401, "authentication required: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    if principal.user.must_change_password:
        raise HTTPException(403, "choose a new password in the console (/console/account) first")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        principal.check_csrf(request.headers.get("x-csrf-token"))
    return principal


def require(principal: Principal, *roles: StaffRole) -> None:
    if principal.user.role not in roles:
        raise HTTPException(403, f"this needs the role {' or '.join(str(r) for r in roles)}")
