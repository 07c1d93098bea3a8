"""The audit log (administrators): who saw or did what, when, from which address; filtered by user, action,
case, period and bulk action, and exported as CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response

from console import accounts, exports, operations
from console.auth import Principal
from console.operations import OperationError, require_admin
from console.rendering import render, secure
from console.routes.common import PagePrincipal, client_ip, page_count, page_router, parse_day, parse_page

AUDIT_PER_PAGE = 100
ACTION_GROUPS = (("case.", "案件", "cases"), ("problem.", "问题", "problems"), ("hotspots.", "热点", "hot issues"),
                 ("login.", "登录", "sign-in"), ("account.", "账户", "own account"), ("staff.", "人员", "staff"),
                 ("api_token.", "令牌", "API tokens"), ("model.", "模型", "models"),
                 ("canned_reply.", "常用答复", "canned replies"), ("evidence.", "证据文件", "evidence files"),
                 ("retention.", "到期删除", "retention"), ("db.", "数据库备份", "backups"),
                 ("keys.", "密钥", "encryption keys"), ("audit.", "审计", "audit"))
"""The filter's choices: groups of actions; one action is chosen by clicking it in a row."""
FILTERS = ("user", "action", "case", "from", "to", "bulk")

router = page_router()


def _day_start(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(timezone)).astimezone(UTC)


def audit_filter(request: Request, principal: Principal) -> tuple[dict[str, Any], dict[str, str]]:
    """The audit filter of the query string as `accounts.audit_log` takes it, and the values to show again."""
    params = {key: request.query_params.get(key, "").strip() for key in FILTERS}
    params = {"user": params["user"][:60], "action": params["action"][:40], "case": params["case"][:32],
              "from": params["from"][:10], "to": params["to"][:10], "bulk": params["bulk"][:16]}
    first, last = parse_day(params["from"], "from"), parse_day(params["to"], "to")
    if first and last and first > last:
        raise OperationError(422, "period_reversed")
    zone = principal.context.city.timezone
    filters = {"actor": params["user"] or None, "case_number": params["case"] or None,
               "action": params["action"] or None, "since": _day_start(first, zone) if first else None,
               "until": _day_start(last + timedelta(days=1), zone) if last else None, "bulk": params["bulk"] or None}
    return filters, params


@router.get("/console/audit")
async def audit_log(request: Request, principal: PagePrincipal, page: str = "1") -> Response:
    require_admin(principal)
    number = parse_page(page)
    filters, params = audit_filter(request, principal)
    rows, total = await accounts.audit_log(principal, page=number, per_page=AUDIT_PER_PAGE, **filters)
    kept = {key: value for key, value in params.items() if value}

    def page_url(page_number: int) -> str:
        return f"/console/audit?{urlencode({**kept, 'page': str(page_number)})}"

    return render(request, principal, "audit.html", rows=rows, total=total, page=number,
                  pages=page_count(total, AUDIT_PER_PAGE), page_url=page_url, user_filter=params["user"],
                  case_filter=params["case"], params=params, groups=ACTION_GROUPS,
                  staff=await operations.staff_by_id(principal),
                  export_url=f"/console/audit.csv?{urlencode(kept)}",
                  export_en_url=f"/console/audit.csv?{urlencode({**kept, 'lang': 'en'})}")


@router.get("/console/audit.csv")
async def audit_csv(request: Request, principal: PagePrincipal, lang: str = "zh") -> Response:
    """The entries of the filter as CSV: column names in Chinese and English and the actions and details said in
    both, or with `lang=en` all in English."""
    require_admin(principal)
    locale = exports.check_language(lang)
    filters, params = audit_filter(request, principal)
    content = await accounts.audit_export(principal, ip=client_ip(request), locale=locale,
                                          described={k: v for k, v in params.items() if v}, **filters)
    return secure(Response(content, media_type="text/csv; charset=utf-8",
                           headers={"Content-Disposition": 'attachment; filename="qinglian-audit.csv"'}))
