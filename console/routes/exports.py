"""Exports of the console: the cases of a list's filter as CSV or XLSX (supervisors and administrators). With the
reporters' identity, the export asks why first (a form), and the reason goes with the export into the audit log."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import Response

from console import exports, texts
from console.auth import Principal, can_reveal_identity
from console.operations import PAGE_KEYS, OperationError, require_supervisor
from console.rendering import Names, render, secure
from console.routes.cases import FILTER_KEYS, ListView, case_filter, old_fractions
from console.routes.common import CsrfField, PagePrincipal, check_csrf, client_ip, page_router
from handlers.validation import readable
from storage import queries

router = page_router()


def download(export: exports.Export) -> Response:
    return secure(Response(export.content, media_type=export.media_type, headers={
        "Content-Disposition": f'attachment; filename="{export.filename}"'}))


def _filter(request: Request, principal: Principal) -> tuple[queries.CaseFilter, dict[str, str]]:
    flt, params = case_filter(request, principal, ListView(texts.pair("list.all_my_queues"), "/console/cases"))
    described = {key: value for key, value in params.items() if value and key in FILTER_KEYS and key not in PAGE_KEYS}
    return flt, described


def _identity_form(request: Request, principal: Principal, fmt: str, described: dict[str, str], *, reason: str = "",
                   refusal: tuple[str, str] | None = None) -> Response:
    """The form that asks why the reporters' identities are needed, before an export holds them."""
    if not can_reveal_identity(principal.user, principal.context.city):
        raise OperationError(403, "identity_forbidden")
    return render(request, principal, "export_identity.html", status_code=422 if refusal else 200, fmt=fmt,
                  described=described, reason=reason, refusal=refusal,
                  action=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
                  back=f"/console/cases?{urlencode(described)}" if described else "/console/cases")


def _nothing_to_export(request: Request, principal: Principal, fmt: str, described: dict[str, str],
                       lang: str, refused: OperationError) -> Response:
    """What a filter that matches no case answers instead of a file of nothing but its header: that nothing matches,
    the filter in words (with what an old bookmark's confidence fraction means, and the export it meant), and the
    list of the same filter."""
    language = {"lang": lang} if lang != "zh" else {}
    return render(request, principal, "export_empty.html", status_code=refused.status_code,
                  message=Names(principal.context.city).refusal(refused), described=described,
                  old_fractions=old_fractions(f"/console/export.{fmt}", {**described, **language}),
                  list_url=f"/console/cases?{urlencode(described)}" if described else "/console/cases")


@router.get("/console/export.{fmt}")
async def export_cases(request: Request, principal: PagePrincipal, fmt: Literal["csv", "xlsx"],
                       identity: str = "", lang: str = "zh") -> Response:
    """The cases of the list filter in the query (the list pages' parameters) in the user's queues, in Chinese or
    with `lang=en` in English; with `identity=1`, the form that asks why first (the export itself is its POST)."""
    require_supervisor(principal)
    flt, described = _filter(request, principal)
    if identity == "1":
        return _identity_form(request, principal, fmt, described)
    try:
        return download(await exports.export_cases(principal, flt, fmt=fmt, identity=False,
                                                   ip=client_ip(request), described=described, locale=lang,
                                                   refuse_empty=True))
    except OperationError as refused:
        if refused.key != "export_empty":
            raise
        return _nothing_to_export(request, principal, fmt, described, lang, refused)


@router.post("/console/export.{fmt}")
async def export_cases_with_identity(request: Request, principal: PagePrincipal, fmt: Literal["csv", "xlsx"], *,
                                     csrf: CsrfField = "", lang: str = "zh",
                                     reason: Annotated[str, Form(max_length=500)] = "") -> Response:
    """The cases of the filter in the query with their reporters' identities, for the reason given; a reason that
    does not do shows the form again with what was typed and why."""
    check_csrf(principal, csrf)
    require_supervisor(principal)
    flt, described = _filter(request, principal)
    reason = readable(reason)
    try:
        export = await exports.export_cases(principal, flt, fmt=fmt, identity=True,
                                            ip=client_ip(request), described=described, reason=reason,
                                            locale=lang, refuse_empty=True)
    except OperationError as refused:
        if refused.key == "export_empty":
            return _nothing_to_export(request, principal, fmt, described, lang, refused)
        if refused.status_code != 422 or refused.key != "export_identity_needs_reason":
            raise
        return _identity_form(request, principal, fmt, described, reason=reason,
                              refusal=Names(principal.context.city).refusal(refused))
    return download(export)
