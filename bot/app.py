"""The one ASGI application: web chat, Telegram webhook, health; and its background workers."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from bot import metrics
from bot.body_limits import BodyLimit, limits_by_path
from bot.channels import web
from bot.channels.wecom import CHANNEL as WECOM_CHANNEL
from bot.channels.wecom import WeComSender
from bot.config import Settings
from bot.jobs import background_jobs
from bot.logs import one_line
from bot.outbox import plain
from bot.runtime import Runtime
from bot.security_headers import NOSNIFF
from bot.staff_cli import ensure_first_admin
from console.app import mount_console
from console.context import ConsoleContext
from console.default_header import DefaultHeader
from storage.migrate import upgrade

log = logging.getLogger(__name__)


_released = False


def release_free_memory() -> None:
    """Hand back to the system the heap that start-up (imports, loading the model) used and freed: glibc's allocator
    keeps freed memory in the process otherwise, a few megabytes here. Once per process: the imports happen once,
    and a process that builds the app again (a test suite builds hundreds) would only pay a full collection and a
    walk of the heap each time for nothing new.

    What start-up left alive (modules, the model, the word tables) lives as long as the process: `gc.freeze` moves it
    out of the collector's generations, so that a full collection while residents are served walks only what serving
    made, not the few hundred thousand start-up objects again (a pause of tens of milliseconds in a resident's
    step). A model replaced later by a promotion is still freed, by reference counting (a fitted pipeline holds no
    reference cycles, the one thing a frozen object's collector would have to find)."""
    global _released
    if _released:
        return
    _released = True
    gc.collect()
    gc.freeze()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        log.debug("malloc_trim is not available (not glibc)")
        return
    trim(0)



def console_context(runtime: Runtime) -> ConsoleContext:
    """What the staff console gets from the shell."""
    settings = runtime.settings
    return ConsoleContext(
        city=settings.city, database=runtime.database, secret_key=settings.resolved_secret_key(),
        evidence_dir=settings.evidence_dir, data_dir=settings.data_dir, public_url=settings.public_url,
        environment=settings.environment, wake_outbox=runtime.outbox.wake, redis_url=settings.redis_url,
        classifier=runtime.classifier, passwords=settings.password_hashing)


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime.build(settings)
    database_gauges = metrics.DatabaseGauges(runtime.database)  # this app's: exported while it holds the lease
    telegram_channel: Any = None
    wechat_channel: Any = None
    if settings.wechat_token:
        from bot.channels.wechat.channel import WeChatChannel

        wechat_channel = WeChatChannel(settings, runtime)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal telegram_channel
        await asyncio.to_thread(upgrade, settings.resolved_database_url, settings.resolved_keyring())
        await runtime.classifier.ensure_ready()
        first_admin = await ensure_first_admin(runtime.database, settings.environment, settings.password_hashing)
        if first_admin:  # one line (a log collector reads each line as a record); it says "with password <pw>"
            log.warning("%s", one_line(first_admin))
        # the timing reference of sign-ins with an unknown username, made before the first one can come
        await asyncio.to_thread(settings.password_hashing.prepare)
        runtime.outbox.start()
        background = background_jobs(runtime.sessionmaker, settings.city, settings.evidence_dir,
                                     runtime.outbox.wake, runtime.read_sessionmaker)
        # a promotion or rollback made by any process or command reaches this one within check_seconds
        background.every("classifier-model", runtime.classifier.check_seconds, runtime.classifier.check,
                         delay=runtime.classifier.check_seconds)
        # the gauges are counted in the background (a scrape before the first round counts them itself): a
        # database that does not answer yet delays no start-up, /healthz says so
        background.every("metrics", database_gauges.interval, database_gauges.refresh)
        wecom = WeComSender(settings.city)
        if wecom.enabled():
            runtime.outbox.register(WECOM_CHANNEL, plain(wecom.send))
        if settings.telegram_token:
            from bot.channels.telegram import TelegramChannel

            telegram_channel = TelegramChannel(settings, runtime, max_rate=settings.telegram_max_rate)
            await telegram_channel.start()
        if wechat_channel is not None:
            await wechat_channel.start()
        release_free_memory()
        try:
            yield
        finally:
            await background.stop()  # between rounds: nothing is cancelled in the middle of a transaction
            await runtime.outbox.stop()  # first: a round in progress still has its channels to finish with
            await wecom.close()
            if telegram_channel is not None:
                await telegram_channel.stop()
            if wechat_channel is not None:
                await wechat_channel.stop()
            await runtime.close()

    # the API documentation (/api/docs) is the console's, served with its assets from the installed package
    app = FastAPI(title="Qinglian", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.runtime = runtime

    # a request FastAPI refuses (422) is answered by the console's handler, which mount_console installs: JSON
    # with the reasons (never the values) everywhere, a page for a console form
    mount_console(app, console_context(runtime))
    app.include_router(web.build_router(runtime))
    if wechat_channel is not None:
        from bot.channels.wechat.router import build_router as wechat_router

        app.include_router(wechat_router(wechat_channel))

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> JSONResponse:
        """Ready when the database answers; `model` is the classifier version this process classifies with
        right now (it follows a promotion within `QINGLIAN_MODEL_CHECK_SECONDS` plus the time to load it), and
        `model_not_loaded` the promoted version it could not load (it keeps classifying with `model`), with why
        only to whoever may read /metrics: the proxy serves /healthz to anyone, and the reason can name the data
        directory's paths and the libraries' versions."""
        try:
            await runtime.database.ping()
        except Exception as exc:  # noqa: BLE001 - reported as unhealthy
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
        health: dict[str, object] = {"status": "ok", "model": runtime.classifier.version}
        if runtime.classifier.load_failure is not None:
            version, reason = runtime.classifier.load_failure
            not_loaded = {"version": version}
            if settings.metrics_authorised(request.headers.get("authorization"),
                                           request.client.host if request.client else None):
                not_loaded["reason"] = reason
            health["model_not_loaded"] = not_loaded
        return JSONResponse(health)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        if not settings.metrics_authorised(request.headers.get("authorization"),
                                           request.client.host if request.client else None):
            raise HTTPException(401, "metrics need the bearer token (QINGLIAN_METRICS_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        await database_gauges.refresh_if_stale()
        body, content_type = metrics.render(database_gauges)
        return Response(body, media_type=content_type)

    @app.post("/telegram/webhook", include_in_schema=False)
    async def telegram_webhook(request: Request) -> JSONResponse:
        from bot.channels.telegram import SECRET_HEADER

        if telegram_channel is None or not telegram_channel.webhook_mode:
            raise HTTPException(404, "the Telegram webhook is not enabled")
        if not telegram_channel.check_secret(request.headers.get(SECRET_HEADER)):
            raise HTTPException(403, "wrong secret token")
        try:
            data = await request.json()
        except ValueError:
            raise HTTPException(400, "body is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise HTTPException(400, "not a Telegram update")
        if not await telegram_channel.process_webhook(data):  # a full disk: Telegram delivers it again later
            return JSONResponse({"ok": False, "description": "the update cannot be stored now (disk full)"},
                                status_code=503, headers={"Retry-After": "30"})
        return JSONResponse({"ok": True})

    app.add_middleware(BodyLimit, limit_for=limits_by_path(settings.city.limits.max_attachment_bytes))
    app.add_middleware(DefaultHeader, header=NOSNIFF)  # outermost: a 413 of the body limit carries it too
    return app
