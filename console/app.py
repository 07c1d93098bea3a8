"""Mounts the staff console (pages under /console, REST API under /api/v1) on the service's app."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from console.auth import LoginRequired
from console.operations import OperationError

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_console(app: FastAPI) -> None:
    from console import api, pages

    app.include_router(pages.router)
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
        return await pages.error_page(request, exc.status_code, exc.message)
