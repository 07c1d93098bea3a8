"""The staff console's pages under /console: server-rendered Jinja2, one form per action.

Routes are thin: they parse the form or query, check the session's CSRF token on every POST, call
one operation (`console.operations`) or staff action, and render. Every response carries the
console's security headers (see `ConsoleRoute`).
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import time as monotonic_time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup, escape

from bot.runtime import Runtime
from console import operations
from console.auth import (
    SESSION_COOKIE,
    LoginRequired,
    Principal,
    can_see,
    cookie_serializer,
    get_runtime,
    half_logged_in,
    hash_password,
    new_totp_secret,
    page_principal,
    totp_uri,
    verify_password,
    verify_totp,
    visible_queues,
)
from console.operations import LABELS, SETTABLE_STATUSES, OperationError
from handlers.city import CityConfig
from nlp.labels import LABELS as LABEL_NAMES
from storage import queries, staff_actions
from storage.models import (
    CLOSED_STATUSES,
    ApiToken,
    Attachment,
    Case,
    CaseStatus,
    StaffRole,
    StaffUser,
    TraceEvent,
    utcnow,
)

if TYPE_CHECKING:
    from nlp.registry import ModelRegistry

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
LOGIN_COOKIE = "ql_login"
PER_PAGE = 50
AUDIT_PER_PAGE = 100
INLINE_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,59}$")
IP_FAILURE_LIMIT = 20  # failed logins from one address within the lock window before it must wait

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class ConsoleRoute(APIRoute):
    """A route whose every response carries the console's security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            return secure(await handler(request))

        return secured


router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
PagePrincipal = Annotated[Principal, Depends(page_principal)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CsrfField = Annotated[str, Form(alias="csrf")]


# --- display names and formatting -------------------------------------------------------------

STATUS_NAMES: dict[str, tuple[str, str]] = {
    "received": ("已收到", "Received"),
    "routed": ("待受理", "Routed"),
    "accepted": ("已受理", "Accepted"),
    "in_handling": ("办理中", "In handling"),
    "answered": ("已答复", "Answered"),
    "closed": ("已办结", "Closed"),
    "rejected": ("不予受理", "Rejected (out of scope)"),
    "duplicate": ("重复件", "Duplicate"),
    "follow_up": ("补充材料", "Follow-up"),
    "rated": ("评价", "Rating"),
}
TRACE_NAMES: dict[str, tuple[str, str]] = {**STATUS_NAMES, "received": ("收到举报", "Received"),
                                           "routed": ("分派", "Routed")}
ROUTE_REASONS: dict[str, tuple[str, str]] = {
    "label": ("按分类", "by label"),
    "district": ("按区县", "by district"),
    "low_confidence": ("置信度低，人工分拣", "low confidence"),
    "unclassified": ("未分类", "unclassified"),
    "no_district": ("缺少区县", "no district"),
    "unrouted_label": ("分类无对应队列", "label without queue"),
    "moved": ("人工转办", "moved by staff"),
}
ROLE_NAMES: dict[str, tuple[str, str]] = {
    "reviewer": ("审核员", "Reviewer"),
    "supervisor": ("主管", "Supervisor"),
    "admin": ("管理员", "Administrator"),
}
AUDIT_NAMES: dict[str, str] = {
    "case.view": "查看", "case.download": "下载证据", "case.accept": "受理", "case.status": "设置状态",
    "case.duplicate": "标记重复", "case.confirm_label": "确认分类", "case.correct_label": "更正分类",
    "case.move": "转办", "case.assign": "分配", "case.note": "内部备注", "case.answer": "答复举报人",
    "case.reveal_identity": "查看身份", "login.success": "登录", "login.failure": "登录失败",
    "login.password_ok": "密码通过（待两步验证）", "login.locked": "登录被锁定", "logout": "退出",
    "staff.create": "创建账户", "staff.assign_queues": "设置队列", "staff.enable": "启用账户",
    "staff.disable": "停用账户", "staff.reset_password": "重置密码", "staff.role": "更改角色",
    "staff.totp_enrol": "开启两步验证", "staff.totp_remove": "移除两步验证", "staff.totp_required": "要求两步验证",
    "api_token.create": "创建API令牌", "api_token.revoke": "吊销API令牌", "model.train": "开始训练模型",
    "model.promote": "启用模型", "model.rollback": "回滚模型",
}
DONE_MESSAGES: dict[str, tuple[str, str]] = {
    "accepted": ("已受理。", "Accepted."),
    "label_confirmed": ("分类已确认。", "Label confirmed."),
    "label_corrected": ("分类已更正。", "Label corrected."),
    "moved": ("已转办。", "Moved to the other queue."),
    "status": ("状态已更新。", "Status changed."),
    "duplicate": ("已标记为重复件。", "Marked as a duplicate."),
    "note": ("备注已添加。", "Note added."),
    "assigned": ("已分配。", "Assignment changed."),
    "answered": ("答复已发送给举报人。", "The answer is on its way to the reporter."),
    "password": ("密码已修改。", "Password changed."),
    "totp_on": ("两步验证已开启。", "Two-factor authentication is on."),
    "totp_off": ("两步验证已移除。", "Two-factor authentication removed."),
    "revoked": ("令牌已吊销。", "Token revoked."),
    "saved": ("已保存。", "Saved."),
    "training": ("训练已开始。", "Training started."),
    "promoted": ("模型已启用。", "Model promoted."),
    "rolled_back": ("已回滚到上一个模型。", "Rolled back to the previous model."),
    "moved_away": ("案件已转到您无权查看的队列。", "The case moved to a queue outside yours."),
}


def bilingual(zh: str, en: str) -> Markup:
    """Chinese with the English beside it (smaller, grey); both escaped."""
    return Markup('<span class="bi">{}<span class="en">{}</span></span>').format(zh, en)


@dataclass
class Names:
    """Display names from the city's configuration and the taxonomy, and local times."""

    city: CityConfig

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.city.timezone)

    def queue(self, code: str | None) -> tuple[str, str]:
        queue = self.city.queue(code) if code else None
        return (queue.zh, queue.en) if queue else (code or "—", code or "—")

    def queue_short(self, code: str | None) -> str:
        """The queue's Chinese name without the bodies in brackets, for dense tables."""
        return self.queue(code)[0].split("（")[0].split("(")[0]

    def district(self, code: str | None) -> tuple[str, str]:
        if code is None:
            return ("未选择", "not given")
        district = self.city.district(code)
        return (district.zh, district.en) if district else (code, code)

    def label(self, code: str | None) -> tuple[str, str]:
        if code is None:
            return ("未分类", "unclassified")
        return LABEL_NAMES.get(code, (code, code))

    def status(self, code: str) -> tuple[str, str]:
        return STATUS_NAMES.get(code, (code, code))

    def trace(self, kind: str) -> tuple[str, str]:
        return TRACE_NAMES.get(kind, (kind, kind))

    def role(self, code: str) -> tuple[str, str]:
        return ROLE_NAMES.get(code, (code, code))

    def audit_action(self, code: str) -> str:
        return AUDIT_NAMES.get(code, code)

    def route_reason(self, code: str | None) -> tuple[str, str]:
        return ROUTE_REASONS.get(code or "", (code or "", code or ""))

    def time(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%Y-%m-%d %H:%M") if moment else "—"

    def seconds(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"

    def day(self, moment: datetime | None) -> str:
        return moment.astimezone(self.tz).strftime("%Y-%m-%d") if moment else "—"

    def iso(self, value: object) -> str:
        """An ISO 8601 time from a file (training status, registry events) in local time."""
        try:
            return self.time(datetime.fromisoformat(str(value)))
        except ValueError:
            return "—"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def filesize(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def highlight(text: str, terms: Iterable[Any] | None) -> Markup:
    """The report text with the classifier's key terms in <mark>; every piece of text is escaped."""
    words = sorted({str(t[0] if isinstance(t, list | tuple) else t).strip() for t in terms or ()} - {""},
                   key=len, reverse=True)
    if not words:
        return escape(text)
    pattern = re.compile("|".join(re.escape(word) for word in words), re.IGNORECASE)
    pieces: list[Markup] = []
    position = 0
    for match in pattern.finditer(text):
        pieces.append(escape(text[position:match.start()]))
        pieces.append(Markup("<mark>{}</mark>").format(match.group(0)))
        position = match.end()
    pieces.append(escape(text[position:]))
    return Markup("").join(pieces)


def overdue_flags(case: Case, now: datetime) -> list[tuple[str, str]]:
    flags = []
    if case.status in queries.NOT_ACCEPTED and case.accept_due_at and case.accept_due_at < now:
        flags.append(("受理超期", "accept overdue"))
    if case.status in queries.OPEN_STATUSES and case.resolve_due_at and case.resolve_due_at < now:
        flags.append(("办结超期", "resolve overdue"))
    return flags


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(t=bilingual, percent=percent, filesize=filesize, LABELS=LABELS,
                       SETTABLE_STATUSES=SETTABLE_STATUSES, ROLES=[role.value for role in StaffRole])
    return env


templates = Jinja2Templates(env=_environment())


def render(request: Request, principal: Principal | None, template: str, status_code: int = 200,
           **context: Any) -> Response:
    runtime: Runtime = request.app.state.runtime
    city = runtime.settings.city
    done = DONE_MESSAGES.get(request.query_params.get("done", ""))
    base = {
        "me": principal.user if principal else None,
        "csrf": principal.csrf_token if principal else "",
        "is_supervisor": principal is not None and principal.user.role in (StaffRole.SUPERVISOR, StaffRole.ADMIN),
        "is_admin": principal is not None and principal.user.role == StaffRole.ADMIN,
        "n": Names(city),
        "city": city,
        "city_short": city.city_zh.removesuffix("市"),
        "done": done,
        "path": request.url.path,
    }
    return secure(templates.TemplateResponse(request, template, {**base, **context}, status_code=status_code))


async def error_page(request: Request, status_code: int, message: str) -> Response:
    """An error as a console page (used by the app's handler for OperationError)."""
    runtime: Runtime = request.app.state.runtime
    try:
        principal: Principal | None = await page_principal(request, runtime)
    except LoginRequired:
        principal = None
    return render(request, principal, "error.html", status_code=status_code, status_code_value=status_code,
                  message=message)


def check_csrf(principal: Principal, submitted: str | None) -> None:
    try:
        principal.check_csrf(submitted)
    except HTTPException as refused:
        raise OperationError(403, str(refused.detail)) from None


def redirect(url: str) -> Response:
    return secure(RedirectResponse(url, status_code=303))


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def safe_next(value: str | None) -> str:
    """Where to go after login: a console page (never another site, never a form's POST address)."""
    if not value or not value.startswith("/console") or "\\" in value or value.startswith("/console/login"):
        return "/console"
    path = value.partition("?")[0]
    for route in router.routes:
        if isinstance(route, APIRoute) and "GET" in (route.methods or ()) and route.path_regex.fullmatch(path):
            return value
    case_action = re.fullmatch(r"(/console/case/[^/]+)/[a-z-]+", path)
    return case_action.group(1) if case_action else "/console"


def set_session_cookie(response: Response, runtime: Runtime, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, cookie_serializer(runtime).dumps(token), httponly=True, samesite="lax",
                        secure=runtime.settings.public_url.startswith("https://"), path="/",
                        max_age=int(runtime.settings.city.console.session_hours * 3600))


def session_token(request: Request, runtime: Runtime) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        return str(cookie_serializer(runtime).loads(raw))
    except BadSignature:
        return None


def enrol_serializer(runtime: Runtime) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(runtime.settings.resolved_secret_key(), salt="qinglian-totp-enrol")


# --- login, two factors, logout ---------------------------------------------------------------


@dataclass
class IpThrottle:
    """Failed logins per client address in a sliding window (in this process)."""

    limit: int
    window_seconds: float
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, ip: str) -> deque[float]:
        stamps = self.failures.setdefault(ip, deque())
        cutoff = monotonic_time.monotonic() - self.window_seconds
        while stamps and stamps[0] < cutoff:
            stamps.popleft()
        return stamps

    def blocked(self, ip: str | None) -> bool:
        return ip is not None and len(self._recent(ip)) >= self.limit

    def fail(self, ip: str | None) -> None:
        if ip is None:
            return
        self._recent(ip).append(monotonic_time.monotonic())
        if len(self.failures) > 10_000:
            self.failures.pop(next(iter(self.failures)))


def ip_throttle(request: Request) -> IpThrottle:
    throttle = getattr(request.app.state, "console_ip_throttle", None)
    if throttle is None:
        minutes = request.app.state.runtime.settings.city.console.login_lock_minutes
        throttle = request.app.state.console_ip_throttle = IpThrottle(IP_FAILURE_LIMIT, minutes * 60)
    assert isinstance(throttle, IpThrottle)
    return throttle


def login_page(request: Request, runtime: Runtime, *, next_path: str, error: tuple[str, str] | None = None,
               status_code: int = 200, username: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, None, "login.html", status_code=status_code, login_token=token, next=next_path,
                      error=error, username=username)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path="/console/login",
                        secure=runtime.settings.public_url.startswith("https://"), max_age=3600)
    return response


@router.get("/console/login")
async def login_form(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    principal = await half_logged_in(request, runtime)
    if principal is not None and principal.session is not None:
        return redirect(safe_next(next) if principal.session.second_factor_done
                        else f"/console/login/2fa?{urlencode({'next': safe_next(next)})}")
    return login_page(request, runtime, next_path=safe_next(next))


@router.post("/console/login")
async def login(request: Request, runtime: RuntimeDep, username: Annotated[str, Form(max_length=60)],
                password: Annotated[str, Form(max_length=1000)],
                login_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/console") -> Response:
    next_path = safe_next(next)
    cookie_token = request.cookies.get(LOGIN_COOKIE, "")
    if not login_token or not cookie_token or not hmac.compare_digest(login_token, cookie_token):
        return login_page(request, runtime, next_path=next_path, status_code=403, username=username,
                          error=("登录表单已过期，请重新登录。", "The login form expired; please try again."))
    ip = client_ip(request)
    throttle = ip_throttle(request)
    console = runtime.settings.city.console
    if throttle.blocked(ip):
        return login_page(request, runtime, next_path=next_path, status_code=429, username=username,
                          error=("失败次数过多，请稍后再试。", "Too many failed logins from this address; try later."))
    username = username.strip()
    async with runtime.sessionmaker.begin() as session:
        user = await staff_actions.get_staff_by_username(session, username)
        password_ok = verify_password(user.password_hash if user else None, password)
        locked = user is not None and user.locked_until is not None and user.locked_until > utcnow()
        token: str | None = None
        second_factor = False
        if user is None or locked or not password_ok or not user.active:
            if locked:
                await staff_actions.audit(session, user, "login.locked", detail={"user": username}, ip=ip)
            else:
                await staff_actions.record_login(session, user, success=False, username=username, ip=ip,
                                                 attempts=console.login_attempts,
                                                 lock_minutes=console.login_lock_minutes)
        else:
            second_factor = bool(user.totp_secret) or user.totp_required
            if second_factor:  # the failure count is reset only once the second factor is done too
                await staff_actions.audit(session, user, "login.password_ok", detail={"user": username}, ip=ip)
            else:
                await staff_actions.record_login(session, user, success=True, username=username, ip=ip,
                                                 attempts=console.login_attempts,
                                                 lock_minutes=console.login_lock_minutes)
            token, _ = await staff_actions.start_session(session, user, hours=console.session_hours, ip=ip,
                                                         second_factor_done=not second_factor)
    if token is None:
        throttle.fail(ip)
        return login_page(request, runtime, next_path=next_path, status_code=401, username=username, error=(
            f"用户名或密码错误，或账户已停用。连续失败 {console.login_attempts} 次后账户将锁定 "
            f"{console.login_lock_minutes} 分钟。",
            f"Wrong username or password, or the account is disabled or locked ({console.login_attempts} failures "
            f"lock it for {console.login_lock_minutes} minutes)."))
    target = f"/console/login/2fa?{urlencode({'next': next_path})}" if second_factor else next_path
    response = redirect(target)
    set_session_cookie(response, runtime, token)
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


async def _half(request: Request, runtime: Runtime) -> Principal | None:
    principal = await half_logged_in(request, runtime)
    return principal if principal is not None and principal.session is not None else None


def _second_factor_page(request: Request, principal: Principal, next_path: str, *,
                        error: tuple[str, str] | None = None, status_code: int = 200) -> Response:
    enrol = None
    if not principal.user.totp_secret:
        secret = new_totp_secret()
        enrol = {"secret": secret, "uri": totp_uri(secret, principal.user.username, _issuer(principal.runtime)),
                 "signed": enrol_serializer(principal.runtime).dumps(secret)}
    return render(request, principal, "login_2fa.html", status_code=status_code, next=next_path, enrol=enrol,
                  error=error)


def _issuer(runtime: Runtime) -> str:
    return f"Qinglian {runtime.settings.city.city_en}"


@router.get("/console/login/2fa")
async def second_factor_form(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    principal = await _half(request, runtime)
    if principal is None:
        return redirect(f"/console/login?{urlencode({'next': safe_next(next)})}")
    assert principal.session is not None
    if principal.session.second_factor_done:
        return redirect(safe_next(next))
    return _second_factor_page(request, principal, safe_next(next))


@router.post("/console/login/2fa")
async def second_factor(request: Request, runtime: RuntimeDep, *, csrf: CsrfField = "",
                        code: Annotated[str, Form(max_length=20)], enrol_secret: Annotated[str, Form()] = "",
                        next: Annotated[str, Form()] = "/console") -> Response:
    principal = await _half(request, runtime)
    next_path = safe_next(next)
    if principal is None:
        return redirect(f"/console/login?{urlencode({'next': next_path})}")
    check_csrf(principal, csrf)
    old_token = session_token(request, runtime)
    console = runtime.settings.city.console
    ip = client_ip(request)
    secret: str | None = None
    if enrol_secret:
        try:
            secret = str(enrol_serializer(runtime).loads(enrol_secret, max_age=900))
        except BadSignature:
            return _second_factor_page(request, principal, next_path, status_code=400, error=(
                "设置已过期，请用新的密钥重新设置。", "The enrolment expired; set up again with the new secret."))
    async with runtime.sessionmaker.begin() as session:
        user = await staff_actions.get_staff(session, principal.user.id)
        assert user is not None
        secret = secret if secret and not user.totp_secret else user.totp_secret
        locked = user.locked_until is not None and user.locked_until > utcnow()
        ok = not locked and secret is not None and verify_totp(secret, code)
        new_token: str | None = None
        if ok:
            assert secret is not None
            if not user.totp_secret:
                await staff_actions.set_totp(session, user, secret, actor=user)
            await staff_actions.record_login(session, user, success=True, username=user.username, ip=ip,
                                             attempts=console.login_attempts, lock_minutes=console.login_lock_minutes)
            if old_token:
                await staff_actions.end_session(session, old_token)
            new_token, _ = await staff_actions.start_session(session, user, hours=console.session_hours, ip=ip,
                                                             second_factor_done=True)
        elif not locked:
            await staff_actions.record_login(session, user, success=False, username=user.username, ip=ip,
                                             attempts=console.login_attempts, lock_minutes=console.login_lock_minutes)
        now_locked = user.locked_until is not None and user.locked_until > utcnow()
        if now_locked and old_token:
            await staff_actions.end_session(session, old_token)
    if new_token is not None:
        response = redirect(next_path)
        set_session_cookie(response, runtime, new_token)
        return response
    if now_locked:
        response = login_page(request, runtime, next_path=next_path, status_code=401, error=(
            f"验证码错误次数过多，账户锁定 {console.login_lock_minutes} 分钟。",
            f"Too many wrong codes: the account is locked for {console.login_lock_minutes} minutes."))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    return _second_factor_page(request, principal, next_path, status_code=401,
                               error=("验证码不正确。", "The code is not correct."))


@router.post("/console/logout")
async def logout(request: Request, runtime: RuntimeDep, *, csrf: CsrfField = "") -> Response:
    principal = await _half(request, runtime)
    if principal is not None:
        check_csrf(principal, csrf)
        token = session_token(request, runtime)
        async with runtime.sessionmaker.begin() as session:
            if token:
                await staff_actions.end_session(session, token)
            await staff_actions.audit(session, principal.user, "logout", ip=client_ip(request))
    response = redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- overview and ticket lists ----------------------------------------------------------------


@router.get("/console")
async def overview(request: Request, principal: PagePrincipal) -> Response:
    counts = await operations.overview(principal)
    overdue_total = (await operations.list_cases(principal, queries.CaseFilter(overdue=True), page=1, per_page=1))[1]
    labelling_total = (await operations.list_cases(principal, queries.CaseFilter(needs_labelling=True),
                                                   page=1, per_page=1))[1]
    mine_total = (await operations.list_cases(principal, queries.CaseFilter(assigned_to_id=principal.user.id),
                                              page=1, per_page=1))[1]
    totals = queries.QueueCounts("", sum(c.new for c in counts.values()),
                                 sum(c.in_handling for c in counts.values()), sum(c.overdue for c in counts.values()))
    return render(request, principal, "overview.html", counts=list(counts.values()), totals=totals,
                  overdue_total=overdue_total, labelling_total=labelling_total, mine_total=mine_total)


@dataclass
class ListView:
    title: tuple[str, str]
    action: str
    fixed_queue: str | None = None
    overdue: bool = False
    labelling: bool = False


def _parse_day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise OperationError(422, f"{name}: a date like 2026-11-24, not {value[:20]!r}") from None


def _parse_fraction(value: str, name: str) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise OperationError(422, f"{name}: a number between 0 and 1, not {value[:20]!r}") from None
    if not 0.0 <= number <= 1.0:
        raise OperationError(422, f"{name}: a number between 0 and 1")
    return number


def _parse_page(value: str) -> int:
    try:
        page = int(value or "1")
    except ValueError:
        raise OperationError(422, "page: a whole number") from None
    if not 1 <= page <= 100_000:
        raise OperationError(422, "page: from 1")
    return page


def case_filter(request: Request, principal: Principal, view: ListView) -> tuple[queries.CaseFilter, dict[str, str],
                                                                                  int]:
    """The filter of a list page from its query string; the form's values to show again; the page."""
    city = principal.runtime.settings.city
    params = {key: request.query_params.get(key, "").strip() for key in (
        "queue", "status", "label", "district", "from", "to", "conf_min", "conf_max", "overdue", "labelling", "q",
        "mine", "page")}
    flt = queries.CaseFilter()
    queue = view.fixed_queue or params["queue"]
    if queue:
        if city.queue(queue) is None:
            raise OperationError(404, f"no queue {queue}")
        flt.queues = {queue}
    if params["status"]:
        if params["status"] not in {s.value for s in CaseStatus}:
            raise OperationError(422, f"unknown status {params['status'][:30]!r}")
        flt.status = params["status"]
    if params["label"]:
        if params["label"] not in LABELS:
            raise OperationError(422, f"unknown label {params['label'][:30]!r}")
        flt.label = params["label"]
    if params["district"]:
        if params["district"] != "unsure" and city.district(params["district"]) is None:
            raise OperationError(422, f"unknown district {params['district'][:30]!r}")
        flt.district = params["district"]
    tz = ZoneInfo(city.timezone)
    day_from, day_to = _parse_day(params["from"], "from"), _parse_day(params["to"], "to")
    if day_from:
        flt.created_from = datetime.combine(day_from, time(0), tz).astimezone(UTC)
    if day_to:
        flt.created_to = datetime.combine(day_to + timedelta(days=1), time(0), tz).astimezone(UTC)
    flt.confidence_at_least = _parse_fraction(params["conf_min"], "conf_min")
    flt.confidence_below = _parse_fraction(params["conf_max"], "conf_max")
    flt.overdue = view.overdue or params["overdue"] == "1"
    flt.needs_labelling = view.labelling or params["labelling"] == "1"
    if params["mine"] == "1":
        flt.assigned_to_id = principal.user.id
    if params["q"]:
        flt.text = params["q"][:100]
    return flt, params, _parse_page(params["page"])


async def _staff_names(runtime: Runtime) -> dict[int, StaffUser]:
    async with runtime.sessionmaker() as session:
        return {user.id: user for user in await staff_actions.list_staff(session)}


async def list_page(request: Request, principal: Principal, view: ListView) -> Response:
    flt, params, page = case_filter(request, principal, view)
    cases, total = await operations.list_cases(principal, flt, page=page, per_page=PER_PAGE)
    pages = max(1, (total + PER_PAGE - 1) // PER_PAGE)
    kept = {key: value for key, value in params.items() if value and key != "page"}

    def page_url(number: int) -> str:
        return f"{view.action}?{urlencode({**kept, 'page': str(number)})}"

    allowed = visible_queues(principal.user)
    city = principal.runtime.settings.city
    queues = [q for q in city.queues if allowed is None or q.code in allowed]
    now = utcnow()
    return render(request, principal, "cases.html", view=view, cases=cases, total=total, page=page, pages=pages,
                  params=params, page_url=page_url, queues=queues, staff=await _staff_names(principal.runtime),
                  flags={case.id: overdue_flags(case, now) for case in cases},
                  threshold=city.routing.confidence_threshold, statuses=[s.value for s in CaseStatus],
                  filtered=any(kept.get(k) for k in kept if k not in ("queue",)))


@router.get("/console/cases")
async def all_cases(request: Request, principal: PagePrincipal) -> Response:
    return await list_page(request, principal, ListView(("我的队列", "All my queues"), "/console/cases"))


@router.get("/console/queue/{queue}")
async def queue_cases(request: Request, principal: PagePrincipal, queue: str) -> Response:
    allowed = visible_queues(principal.user)
    found = principal.runtime.settings.city.queue(queue)
    if found is None or (allowed is not None and queue not in allowed):
        raise OperationError(404, f"no queue {queue} among yours")
    return await list_page(request, principal, ListView((found.zh, found.en), f"/console/queue/{queue}",
                                                        fixed_queue=queue))


@router.get("/console/overdue")
async def overdue_cases(request: Request, principal: PagePrincipal) -> Response:
    return await list_page(request, principal, ListView(("超期案件", "Overdue"), "/console/overdue", overdue=True))


# --- the ticket page --------------------------------------------------------------------------


def _actor_name(actor: str, staff: dict[int, StaffUser]) -> tuple[str, str]:
    if actor == "reporter":
        return ("举报人", "reporter")
    if actor == "system":
        return ("系统", "system")
    if actor.startswith("staff:") and actor[6:].isdigit():
        user = staff.get(int(actor[6:]))
        return (user.display_name, user.username) if user else ("工作人员", "staff")
    return ("系统", actor)


async def _case_activity(runtime: Runtime, case: Case) -> list[tuple[Any, str | None]]:
    async with runtime.sessionmaker() as session:
        rows, _ = await queries.audit_log(session, page=1, per_page=200, case_id=case.id)
    return [(entry, username) for entry, username, _number in rows
            if entry.action not in ("case.view", "case.download")]


async def ticket_page(request: Request, principal: Principal, case_number: str, *,
                      revealed: tuple[str | None, str | None] | None = None) -> Response:
    detail = await operations.case_detail(principal, case_number, ip=client_ip(request))
    case = detail.case
    staff = await _staff_names(principal.runtime)
    colleagues = [user for user in staff.values() if user.active and can_see(user, case)]
    attachments: Sequence[Attachment] = case.attachments
    trace: Sequence[TraceEvent] = case.trace
    top = [(str(item[0]), float(item[1])) for item in (case.label_top or [])[:3]
           if isinstance(item, list | tuple) and len(item) >= 2]
    terms = [str(t[0] if isinstance(t, list | tuple) else t) for t in (case.label_terms or [])]
    city = principal.runtime.settings.city
    return render(request, principal, "case.html", detail=detail, case=case, staff=staff, colleagues=colleagues,
                  images=[a for a in attachments if a.media_type in INLINE_IMAGE_TYPES],
                  files=[a for a in attachments if a.media_type not in INLINE_IMAGE_TYPES],
                  trace=[(event, _actor_name(event.actor, staff)) for event in trace],
                  text=highlight(case.description, terms), top=top, terms=terms, flags=overdue_flags(case, utcnow()),
                  queues=city.queues, statuses=[s.value for s in SETTABLE_STATUSES],
                  closed=case.status in CLOSED_STATUSES, revealed=revealed,
                  activity=await _case_activity(principal.runtime, case),
                  threshold=city.routing.confidence_threshold,
                  can_accept=case.status in queries.NOT_ACCEPTED)


@router.get("/console/case/{case_number}")
async def ticket(request: Request, principal: PagePrincipal, case_number: str) -> Response:
    return await ticket_page(request, principal, case_number)


@router.get("/console/case/{case_number}/evidence/{attachment_id}")
async def evidence(request: Request, principal: PagePrincipal, case_number: str, attachment_id: int) -> Response:
    path, stored = await operations.evidence_file(principal, case_number, attachment_id, ip=client_ip(request))
    inline = stored.media_type in INLINE_IMAGE_TYPES
    response = FileResponse(path, media_type=stored.media_type if inline else "application/octet-stream",
                            filename=stored.original_name or f"evidence-{attachment_id}",
                            content_disposition_type="inline" if inline else "attachment")
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


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
               queue: Annotated[str, Form(max_length=60)], reason: Annotated[str, Form(max_length=500)] = ""
               ) -> Response:
    check_csrf(principal, csrf)
    await operations.move(principal, case_number, queue, reason)
    return _after_move(principal, case_number, queue, "moved")


@router.post("/console/case/{case_number}/status")
async def set_status(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                     status: Annotated[str, Form(max_length=20)],
                     note: Annotated[str, Form(max_length=3000)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.set_status(principal, case_number, status, note.strip() or None)
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
    await operations.add_note(principal, case_number, body)
    return redirect(_case_url(case_number, "note", "#notes"))


@router.post("/console/case/{case_number}/assign")
async def assign(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                 username: Annotated[str, Form(max_length=60)] = "") -> Response:
    check_csrf(principal, csrf)
    await operations.assign(principal, case_number, username.strip() or None)
    return redirect(_case_url(case_number, "assigned"))


@router.post("/console/case/{case_number}/answer")
async def answer(principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "",
                 text: Annotated[str, Form(max_length=3000)]) -> Response:
    check_csrf(principal, csrf)
    await operations.answer(principal, case_number, text)
    return redirect(_case_url(case_number, "answered", "#trace"))


@router.post("/console/case/{case_number}/reveal")
async def reveal(request: Request, principal: PagePrincipal, case_number: str, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    identity = await operations.reveal_identity(principal, case_number, ip=client_ip(request))
    return await ticket_page(request, principal, case_number, revealed=identity)


# --- the user's own account -------------------------------------------------------------------


async def _tokens_of(runtime: Runtime, user_id: int) -> list[ApiToken]:
    async with runtime.sessionmaker() as session:
        tokens = await staff_actions.list_api_tokens(session, user_id)
    return sorted(tokens, key=lambda token: (token.revoked, -token.id))


def _enrolment(principal: Principal) -> dict[str, str]:
    secret = new_totp_secret()
    return {"secret": secret, "uri": totp_uri(secret, principal.user.username, _issuer(principal.runtime)),
            "signed": enrol_serializer(principal.runtime).dumps(secret)}


async def account_page(request: Request, principal: Principal, *, status_code: int = 200,
                       error: str | None = None, new_token: str | None = None, enrol: bool = False) -> Response:
    enrolment = _enrolment(principal) if enrol and not principal.user.totp_secret else None
    return render(request, principal, "account.html", status_code=status_code, error=error, new_token=new_token,
                  enrolment=enrolment, tokens=await _tokens_of(principal.runtime, principal.user.id))


@router.get("/console/account")
async def account(request: Request, principal: PagePrincipal, enrol: str = "") -> Response:
    return await account_page(request, principal, enrol=enrol == "1")


@router.post("/console/account/password")
async def change_password(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                          current: Annotated[str, Form(max_length=1000)], new: Annotated[str, Form(max_length=1000)],
                          repeat: Annotated[str, Form(max_length=1000)]) -> Response:
    check_csrf(principal, csrf)
    runtime = principal.runtime
    if not verify_password(principal.user.password_hash, current):
        return await account_page(request, principal, status_code=422,
                                  error="当前密码不正确 The current password is wrong.")
    if new != repeat:
        return await account_page(request, principal, status_code=422,
                                  error="两次输入的新密码不一致 The new passwords differ.")
    try:
        password_hash = await asyncio.to_thread(hash_password, new)
    except ValueError as problem:
        return await account_page(request, principal, status_code=422, error=f"新密码太短 {problem}")
    async with runtime.sessionmaker.begin() as session:
        user = await staff_actions.get_staff(session, principal.user.id)
        assert user is not None
        await staff_actions.set_password(session, user, password_hash, actor=user)  # ends every session
        token, _ = await staff_actions.start_session(session, user, hours=runtime.settings.city.console.session_hours,
                                                     ip=client_ip(request), second_factor_done=True)
    response = redirect("/console/account?done=password")
    set_session_cookie(response, runtime, token)
    return response


@router.post("/console/account/totp")
async def enrol_totp(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                     secret: Annotated[str, Form()], code: Annotated[str, Form(max_length=20)]) -> Response:
    check_csrf(principal, csrf)
    if principal.user.totp_secret:
        raise OperationError(409, "two-factor authentication is on already; remove it first to enrol a new device")
    try:
        plain = str(enrol_serializer(principal.runtime).loads(secret, max_age=900))
    except BadSignature:
        return await account_page(request, principal, status_code=400, enrol=True,
                                  error="设置已过期，请使用新的密钥 The enrolment expired; use the new secret.")
    if not verify_totp(plain, code):
        return await account_page(request, principal, status_code=422, enrol=True, error=(
            "验证码不正确，请用新的密钥重试 The code is not correct; try again with the new secret."))
    async with principal.runtime.sessionmaker.begin() as session:
        user = await staff_actions.get_staff(session, principal.user.id)
        assert user is not None
        await staff_actions.set_totp(session, user, plain, actor=user)
    return redirect("/console/account?done=totp_on")


@router.post("/console/account/totp/remove")
async def remove_totp(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                      password: Annotated[str, Form(max_length=1000)]) -> Response:
    check_csrf(principal, csrf)
    if principal.user.totp_required:
        raise OperationError(409, "an administrator requires two-factor authentication for your account")
    if not verify_password(principal.user.password_hash, password):
        return await account_page(request, principal, status_code=422, error="密码不正确 The password is wrong.")
    async with principal.runtime.sessionmaker.begin() as session:
        user = await staff_actions.get_staff(session, principal.user.id)
        assert user is not None
        await staff_actions.set_totp(session, user, None, actor=user)
    return redirect("/console/account?done=totp_off")


@router.post("/console/account/tokens")
async def create_own_token(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                           name: Annotated[str, Form(max_length=80)]) -> Response:
    check_csrf(principal, csrf)
    if not name.strip():
        raise OperationError(422, "a token needs a name (what uses it)")
    token, _ = await operations.create_api_token(principal, name.strip())
    return await account_page(request, principal, new_token=token)


@router.post("/console/account/tokens/{token_id}/revoke")
async def revoke_own_token(principal: PagePrincipal, *, csrf: CsrfField = "", token_id: int) -> Response:
    check_csrf(principal, csrf)
    await operations.revoke_api_token(principal, token_id)
    return redirect("/console/account?done=revoked")


# --- staff administration (admin) -------------------------------------------------------------


def _role(value: str) -> StaffRole:
    try:
        return StaffRole(value)
    except ValueError:
        raise OperationError(422, f"unknown role {value[:20]!r}") from None


async def _staff_list_page(request: Request, principal: Principal, *, created: tuple[str, str] | None = None,
                           error: str | None = None, status_code: int = 200) -> Response:
    return render(request, principal, "staff.html", users=await operations.list_staff(principal), created=created,
                  error=error, queues=principal.runtime.settings.city.queues, status_code=status_code)


@router.get("/console/staff")
async def staff_list(request: Request, principal: PagePrincipal) -> Response:
    operations.require_admin(principal)
    return await _staff_list_page(request, principal)


@router.post("/console/staff")
async def create_staff(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                       username: Annotated[str, Form(max_length=60)],
                       role: Annotated[str, Form(max_length=20)],
                       display_name: Annotated[str, Form(max_length=80)] = "",
                       queues: Annotated[list[str] | None, Form()] = None,
                       password: Annotated[str, Form(max_length=1000)] = "") -> Response:
    check_csrf(principal, csrf)
    operations.require_admin(principal)
    username = username.strip()
    if not USERNAME_PATTERN.fullmatch(username):
        return await _staff_list_page(request, principal, status_code=422, error=(
            "用户名为 2–60 个字母、数字或 . _ -  A username has 2–60 letters, digits or . _ -"))
    plain = password or secrets.token_urlsafe(12)
    await operations.add_staff(principal, username=username, display_name=display_name.strip() or username,
                               role=_role(role), queues=sorted(set(queues or [])), password=plain)
    return await _staff_list_page(request, principal, created=(username, "" if password else plain))


async def _target(principal: Principal, username: str) -> StaffUser:
    async with principal.runtime.sessionmaker() as session:
        user = await staff_actions.get_staff_by_username(session, username)
    if user is None:
        raise OperationError(404, f"no staff user {username}")
    return user


async def _staff_user_page(request: Request, principal: Principal, username: str, *,
                           new_password: str | None = None, new_token: str | None = None) -> Response:
    user = await _target(principal, username)
    return render(request, principal, "staff_user.html", user=user, queues=principal.runtime.settings.city.queues,
                  user_queues={q.queue for q in user.queues}, tokens=await _tokens_of(principal.runtime, user.id),
                  new_password=new_password, new_token=new_token)


@router.get("/console/staff/{username}")
async def staff_user(request: Request, principal: PagePrincipal, username: str) -> Response:
    operations.require_admin(principal)
    return await _staff_user_page(request, principal, username)


def _staff_url(username: str, done: str = "saved") -> str:
    return f"/console/staff/{quote(username)}?{urlencode({'done': done})}"


@router.post("/console/staff/{username}/role")
async def staff_role(principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                     role: Annotated[str, Form(max_length=20)],
                     queues: Annotated[list[str] | None, Form()] = None) -> Response:
    check_csrf(principal, csrf)
    await operations.update_staff(principal, username, role=_role(role), queues=sorted(set(queues or [])))
    return redirect(_staff_url(username))


@router.post("/console/staff/{username}/active")
async def staff_active(principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                       active: Annotated[str, Form()]) -> Response:
    check_csrf(principal, csrf)
    await operations.update_staff(principal, username, active=active == "1")
    return redirect(_staff_url(username))


@router.post("/console/staff/{username}/totp-required")
async def staff_totp_required(principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                              required: Annotated[str, Form()]) -> Response:
    check_csrf(principal, csrf)
    await operations.update_staff(principal, username, totp_required=required == "1")
    return redirect(_staff_url(username))


async def _change_staff(principal: Principal, username: str,
                        change: Callable[[Any, StaffUser], Awaitable[None]]) -> None:
    operations.require_admin(principal)
    async with principal.runtime.sessionmaker.begin() as session:
        user = await staff_actions.get_staff_by_username(session, username)
        if user is None:
            raise OperationError(404, f"no staff user {username}")
        await change(session, user)


@router.post("/console/staff/{username}/password")
async def staff_password(request: Request, principal: PagePrincipal, username: str, *,
                         csrf: CsrfField = "") -> Response:
    """A new random password, shown to the administrator once; the user's sessions end."""
    check_csrf(principal, csrf)
    operations.require_admin(principal)
    plain = secrets.token_urlsafe(12)
    password_hash = await asyncio.to_thread(hash_password, plain)

    async def change(session: Any, user: StaffUser) -> None:
        await staff_actions.set_password(session, user, password_hash, actor=principal.user)

    await _change_staff(principal, username, change)
    if username == principal.user.username:
        return redirect("/console/login")
    return await _staff_user_page(request, principal, username, new_password=plain)


@router.post("/console/staff/{username}/totp-reset")
async def staff_totp_reset(principal: PagePrincipal, username: str, *, csrf: CsrfField = "") -> Response:
    """Remove a user's second factor (a lost phone); they enrol again at their next login if it is required."""
    check_csrf(principal, csrf)

    async def change(session: Any, user: StaffUser) -> None:
        await staff_actions.set_totp(session, user, None, actor=principal.user)

    await _change_staff(principal, username, change)
    return redirect(_staff_url(username))


@router.post("/console/staff/{username}/tokens")
async def staff_token(request: Request, principal: PagePrincipal, username: str, *, csrf: CsrfField = "",
                      name: Annotated[str, Form(max_length=80)]) -> Response:
    check_csrf(principal, csrf)
    if not name.strip():
        raise OperationError(422, "a token needs a name (what uses it)")
    created: list[str] = []

    async def change(session: Any, user: StaffUser) -> None:
        token, _ = await staff_actions.create_api_token(session, user, name.strip(), actor=principal.user)
        created.append(token)

    await _change_staff(principal, username, change)
    return await _staff_user_page(request, principal, username, new_token=created[0])


@router.post("/console/staff/{username}/tokens/{token_id}/revoke")
async def staff_token_revoke(principal: PagePrincipal, username: str, token_id: int, *,
                             csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)

    async def change(session: Any, user: StaffUser) -> None:
        record = await staff_actions.get_api_token(session, token_id)
        if record is None or record.user_id != user.id:
            raise OperationError(404, f"{username} has no API token {token_id}")
        if not record.revoked:
            await staff_actions.revoke_api_token(session, record, actor=principal.user)

    await _change_staff(principal, username, change)
    return redirect(_staff_url(username, "revoked"))


# --- audit log (admin) ------------------------------------------------------------------------


@router.get("/console/audit")
async def audit_log(request: Request, principal: PagePrincipal, user: str = "", case: str = "",
                    page: str = "1") -> Response:
    operations.require_admin(principal)
    number = _parse_page(page)
    user, case = user.strip()[:60], case.strip()[:32]
    rows, total = await operations.audit_log(principal, page=number, per_page=AUDIT_PER_PAGE, actor=user or None,
                                             case_number=case or None)
    pages = max(1, (total + AUDIT_PER_PAGE - 1) // AUDIT_PER_PAGE)
    kept = {key: value for key, value in (("user", user), ("case", case)) if value}

    def page_url(page_number: int) -> str:
        return f"/console/audit?{urlencode({**kept, 'page': str(page_number)})}"

    return render(request, principal, "audit.html", rows=rows, total=total, page=number, pages=pages,
                  page_url=page_url, user_filter=user, case_filter=case)


# --- statistics (supervisor, admin) -----------------------------------------------------------


async def _statistics(principal: Principal, start: str, end: str) -> tuple[date, date, Any]:
    from console import stats

    city = principal.runtime.settings.city
    today = utcnow().astimezone(ZoneInfo(city.timezone)).date()
    last = _parse_day(end, "end") or today
    first = _parse_day(start, "start") or (last - timedelta(days=29))
    if first > last:
        raise OperationError(422, "the period starts after it ends")
    since, until = stats.local_period(city, first, last)
    async with principal.runtime.sessionmaker() as session:
        result = await stats.compute(session, city, start=since, end=until, queues=visible_queues(principal.user))
    return first, last, result


@router.get("/console/stats")
async def statistics(request: Request, principal: PagePrincipal, start: str = "", end: str = "") -> Response:
    operations.require_supervisor(principal)
    from console import stats

    city = principal.runtime.settings.city
    first, last, result = await _statistics(principal, start, end)
    charts = [Markup(stats.bar_chart_svg(title, stats.chart_items(result, city, dimension)))
              for dimension, title in (("label", "按分类 By label"), ("queue", "按队列 By queue"),
                                       ("district", "按区县 By district"), ("status", "按状态 By status"))]
    presets = []
    for days in (7, 30, 90, 365):
        presets.append((days, urlencode({"start": (last - timedelta(days=days - 1)).isoformat(),
                                         "end": last.isoformat()})))
    return render(request, principal, "stats.html", stats=result, charts=charts, start=first.isoformat(),
                  end=last.isoformat(), presets=presets,
                  csv_url=f"/console/stats.csv?{urlencode({'start': first.isoformat(), 'end': last.isoformat()})}",
                  overdue=[(queue, counts) for queue, counts in result.overdue.items()
                           if counts.accept or counts.resolve])


@router.get("/console/stats.csv")
async def statistics_csv(principal: PagePrincipal, start: str = "", end: str = "") -> Response:
    operations.require_supervisor(principal)
    from console import stats

    first, last, result = await _statistics(principal, start, end)
    return Response(stats.to_csv(result, principal.runtime.settings.city), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="qinglian-{first}-{last}.csv"'})


# --- models and "needs labelling" -------------------------------------------------------------


def _registry(runtime: Runtime) -> ModelRegistry:
    from nlp.registry import ModelRegistry

    return ModelRegistry(runtime.settings.data_dir / "models")


@router.get("/console/labelling")
async def labelling_cases(request: Request, principal: PagePrincipal, page: str = "1") -> Response:
    """Unclassified and low-confidence tickets (least confident first), then corrected ones."""
    from console import training

    number = _parse_page(page)
    city = principal.runtime.settings.city
    async with principal.runtime.sessionmaker() as session:
        items, total = await training.needs_labelling(
            session, threshold=city.routing.confidence_threshold, queues=visible_queues(principal.user),
            limit=PER_PAGE, offset=(number - 1) * PER_PAGE)
        counts = await training.staff_label_counts(session)
    pages = max(1, (total + PER_PAGE - 1) // PER_PAGE)
    return render(request, principal, "labelling.html", items=items, total=total, page=number, pages=pages,
                  counts=counts, threshold=city.routing.confidence_threshold,
                  page_url=lambda n: f"/console/labelling?{urlencode({'page': str(n)})}")


@router.get("/console/models")
async def models(request: Request, principal: PagePrincipal, a: str = "", b: str = "") -> Response:
    operations.require_admin(principal)
    from console import training

    registry = _registry(principal.runtime)
    versions = await asyncio.to_thread(registry.list)
    events = await asyncio.to_thread(registry.events)
    status = await asyncio.to_thread(training.training_status, principal.runtime.settings.data_dir)
    comparison = None
    if a and b:
        known = {info.version for info in versions}
        if a not in known or b not in known:
            raise OperationError(404, "choose two saved model versions to compare")
        comparison = await asyncio.to_thread(training.compare, registry, a, b)
    async with principal.runtime.sessionmaker() as session:
        counts = await training.staff_label_counts(session)
    stage = training.STAGES.get(str(status.get("stage") or ""))
    running = status.get("state") == "running"
    extra: dict[str, Any] = {} if running or request.query_params.get("done") != "training" else {"done": None}
    return render(request, principal, "models.html", versions=list(reversed(versions)),
                  events=list(reversed(events))[:20], comparison=comparison, status=status,
                  stage=stage, running=running, a=a, b=b, counts=counts, **extra)


async def _model_audit(principal: Principal, action: str, detail: dict[str, Any]) -> None:
    async with principal.runtime.sessionmaker.begin() as session:
        await staff_actions.audit(session, principal.user, action, detail=detail)


@router.post("/console/models/train")
async def train(principal: PagePrincipal, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    operations.require_admin(principal)
    from console import training

    try:
        run_id = await training.start_training(principal.runtime)
    except training.TrainingError as problem:
        raise OperationError(409, str(problem)) from None
    await _model_audit(principal, "model.train", {"run": run_id})
    return redirect("/console/models?done=training")


@router.post("/console/models/promote")
async def promote(principal: PagePrincipal, *, csrf: CsrfField = "", version: Annotated[str, Form(max_length=80)],
                  force: Annotated[str, Form()] = "") -> Response:
    check_csrf(principal, csrf)
    operations.require_admin(principal)
    from nlp.errors import NlpError

    registry = _registry(principal.runtime)
    try:
        await asyncio.to_thread(registry.promote, version, force=force == "1")
    except NlpError as problem:
        raise OperationError(409, str(problem)) from None
    await _model_audit(principal, "model.promote", {"version": version, "forced": force == "1"})
    return redirect("/console/models?done=promoted")


@router.post("/console/models/rollback")
async def rollback(principal: PagePrincipal, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    operations.require_admin(principal)
    from nlp.errors import NlpError

    registry = _registry(principal.runtime)
    try:
        info = await asyncio.to_thread(registry.rollback)
    except NlpError as problem:
        raise OperationError(409, str(problem)) from None
    await _model_audit(principal, "model.rollback", {"version": info.version})
    return redirect("/console/models?done=rolled_back")
