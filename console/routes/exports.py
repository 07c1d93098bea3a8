"""Exports of the console: the cases of a list's filter as CSV or XLSX (supervisors and administrators)."""

from __future__ import annotations

from typing import Literal

from fastapi import Request
from fastapi.responses import Response

from console import exports, texts
from console.operations import PAGE_KEYS, require_supervisor
from console.rendering import secure
from console.routes.cases import FILTER_KEYS, ListView, case_filter
from console.routes.common import PagePrincipal, client_ip, page_router

router = page_router()


def download(export: exports.Export) -> Response:
    return secure(Response(export.content, media_type=export.media_type, headers={
        "Content-Disposition": f'attachment; filename="{export.filename}"'}))


@router.get("/console/export.{fmt}")
async def export_cases(request: Request, principal: PagePrincipal, fmt: Literal["csv", "xlsx"],
                       identity: str = "") -> Response:
    """The cases of the list filter in the query (the list pages' parameters) in the user's queues."""
    require_supervisor(principal)
    flt, params = case_filter(request, principal, ListView(texts.pair("list.all_my_queues"), "/console/cases"))
    described = {key: value for key, value in params.items() if value and key in FILTER_KEYS and key not in PAGE_KEYS}
    return download(await exports.export_cases(principal, flt, fmt=fmt, identity=identity == "1",
                                               ip=client_ip(request), described=described))
