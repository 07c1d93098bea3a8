"""Mounts the staff console (pages under /console, REST API under /api/v1) on the service's app."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from console import api, api_problems, texts
from console.auth import LoginRequired, PasswordChangeRequired
from console.context import CONTEXT_STATE, ConsoleContext
from console.default_header import DefaultHeader
from console.operations import OperationError
from console.rendering import Names
from console.routes import ROUTERS
from console.routes.common import error_page
from console.throttle import THROTTLE_STATE, build_throttle
from storage.db import timed_out

STATIC_DIR = Path(__file__).resolve().parent / "static"
DOCS_URL = "/api/docs"
DOCS_ASSETS = "/api/docs/assets"
CASE_ACTION = re.compile(r"(/console/case/[^/]+)/[a-z-]+")


def is_console_page(path: str) -> bool:
    """Whether a request's path is one of the console's pages or forms (answered with pages, not JSON)."""
    return path.startswith("/console") and not path.startswith("/console/static")


async def form_error_page(request: Request, errors: list[dict[str, Any]]) -> Response:
    """A console form the browser's own checks would have stopped (a field missing or too long), refused with
    a page that names each field (where FastAPI found it: "body.text", "query.page") and what is wrong with it."""
    fields = [(".".join(str(part) for part in error.get("loc", ())), str(error.get("msg", ""))) for error in errors]
    return await error_page(request, 422, texts.joined("errors.form_invalid"), fields=fields)


MAX_REASONS = 20
"""A refused request is told this many reasons at most, and how many more there were."""


async def invalid_request(request: Request, problem: RequestValidationError) -> Response:
    """A request FastAPI refused, anywhere in the app (the API, the web chat, the console): 422 with the reasons,
    never the submitted values (a refused form can carry a password); a console form gets a page."""
    found = problem.errors()
    errors = [{key: value for key, value in error.items() if key not in ("input", "ctx", "url")}
              for error in found[:MAX_REASONS]]
    if len(found) > MAX_REASONS:  # thousands of reasons (a body of unknown fields) take seconds to write out
        errors.append({"type": "more_reasons", "loc": [],
                       "msg": f"and {len(found) - MAX_REASONS} more reasons like these"})
    if is_console_page(request.url.path):
        return await form_error_page(request, errors)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


API_PREFIX = "/api/v1/"
NO_STORE = (b"cache-control", b"no-store")


def mount_console(app: FastAPI, context: ConsoleContext) -> None:
    """Add the console's routes to `app`; the context and the login throttle live in the app's state. It also
    answers the app's refused requests (`invalid_request`)."""
    setattr(app.state, CONTEXT_STATE, context)
    setattr(app.state, THROTTLE_STATE,
            build_throttle(context.database, context.secret_key, context.city.console.login_lock_minutes * 60,
                           redis_url=context.redis_url))
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(api.router)
    app.include_router(api_problems.router)
    # every answer of the staff API (a report, a reveal's name and phone, an export, the audit log): never kept by a
    # shared proxy or the browser's disk cache; the pages say it themselves (`rendering.SECURITY_HEADERS`)
    app.add_middleware(DefaultHeader, header=NO_STORE, path_prefix=API_PREFIX)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="api-docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def _api_docs() -> Response:
        """The API's Swagger UI, its scripts and styles from the installed package (nothing from a CDN)."""
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/api/openapi.json", title="Qinglian API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
                                   oauth2_redirect_url=None)

    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = "/console/login/2fa" if exc.second_factor else "/console/login"
        return RedirectResponse(f"{target}?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def _password_change_required(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/console/account", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Console pages answer errors with a page, never with the API's JSON: an action's address opened as a
        page (a form's result reloaded, typed, from the history) goes to its ticket."""
        path = request.url.path
        if not is_console_page(path):
            return await http_exception_handler(request, exc)
        action = CASE_ACTION.fullmatch(path)
        if exc.status_code == 405 and request.method in ("GET", "HEAD") and action:
            return RedirectResponse(action.group(1), status_code=303)
        return await error_page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(DBAPIError)
    async def _read_timed_out(request: Request, exc: DBAPIError) -> Response:
        """A page's read stopped at its deadline (`Database.connect`'s `read_timeout`) answers 503 with what to
        change; any other database error stays an error of the server."""
        if not timed_out(exc):
            raise exc
        seconds = f"{context.database.read_timeout:g}"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": texts.get("en", "limits.read_timeout", seconds=seconds)}, status_code=503)
        return await error_page(request, 503, texts.joined("limits.read_timeout", seconds=seconds))

    @app.exception_handler(OperationError)
    async def _operation_error(request: Request, exc: OperationError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.message}, status_code=exc.status_code)
        return await error_page(request, exc.status_code, Names(context.city).refusal(exc), reason=exc.key)
