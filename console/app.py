"""Mounts the staff console (pages under /console, REST API under /api/v1) on the service's app."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from console import api
from console.auth import LoginRequired
from console.context import CONTEXT_STATE, ConsoleContext
from console.operations import OperationError
from console.routes import ROUTERS
from console.routes.common import error_page
from console.throttle import IP_FAILURE_LIMIT, THROTTLE_STATE, LoginThrottle

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_console(app: FastAPI, context: ConsoleContext) -> None:
    """Add the console's routes to `app`; the context and the login throttle live in the app's state."""
    setattr(app.state, CONTEXT_STATE, context)
    setattr(app.state, THROTTLE_STATE,
            LoginThrottle(IP_FAILURE_LIMIT, context.city.console.login_lock_minutes * 60))
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(api.router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = "/console/login/2fa" if exc.second_factor else "/console/login"
        return RedirectResponse(f"{target}?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(OperationError)
    async def _operation_error(request: Request, exc: OperationError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.message}, status_code=exc.status_code)
        return await error_page(request, exc.status_code, exc.message)
