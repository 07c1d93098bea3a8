"""The core of the stand-in Bot API server: its state, lifecycle, HTTP front and request dispatch.

Layers, each a subclass of the one before: ``TelegramCore`` (here) → ``TelegramUpdates``
(getUpdates, webhooks) → ``TelegramMethods`` (what the bot sends) → ``TelegramStandIn`` (simulated
users, inspection, faults; the class tests use, in ``telegram_server``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.standins.telegram_entities import JSONDict
from tests.standins.telegram_spec import ApiSpec, Upload, Validated, _ApiError, _dumps, validate_request

log = logging.getLogger("tests.standins.telegram_server")


class _ExposeSend:
    """Hands the HTTP server's own ``send`` to the app (``scope["standin.send"]``): through it a route
    reaches the connection, to drop it as a server that fails mid-request does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "standin.send": send}
        await self.app(scope, receive, send)


async def _drop_connection(request: Request) -> None:
    """Close the request's connection without an answer (the client sees the server hang up), then
    wait until the server has noticed, so nothing is written afterwards. Under a server that does not
    expose its transport (uvicorn does) the client waits until it gives up: a timeout instead."""
    transport = getattr(getattr(request.scope.get("standin.send"), "__self__", None), "transport", None)
    if transport is not None:
        transport.close()
    while (await request.receive())["type"] != "http.disconnect":
        pass

#: Update types Telegram delivers when the bot never specified ``allowed_updates``.
_NOT_DELIVERED_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_STATUS_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


# --------------------------------------------------------------------------------------------
# server state


@dataclass(slots=True)
class _Entry:
    update_id: int
    update: JSONDict
    chat_key: Hashable
    redelivery: bool = False
    delivered: bool = False
    removed: bool = False


@dataclass(slots=True)
class _Fault:
    status: int
    retry_after: int | None
    description: str | None
    remaining: int
    delay: float = 0.0
    after: int = 0


@dataclass(slots=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    mime_type: str
    file_name: str | None = None

    def as_file(self) -> JSONDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


class TelegramCore:
    """The server's state (all of it, for every layer), its thread and loop, and request dispatch."""

    def __init__(
        self,
        token: str = "123456:TEST-token",
        spec_path: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bot_username: str = "qinglian_test_bot",
        bot_first_name: str = "Qinglian",
        strict_legacy: bool = False,
        use_uvloop: bool = True,
        first_update_id: int = 100_000_001,
    ) -> None:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ValueError(f"token {token!r} does not look like a Bot API token")
        self.token = token
        self.spec = ApiSpec(spec_path)
        self.host = host
        self.port = port
        self.strict_legacy = strict_legacy
        self._use_uvloop = use_uvloop
        self.bot_user: JSONDict = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }

        # public logs (append-only lists; read them any time)
        self.requests: list[tuple[str, JSONDict]] = []
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.webhook_deliveries: list[int] = []
        #: every Bot API call as it reached the server: (``time.monotonic()`` at arrival, method, the Host
        #: header, HTTP status of the answer), in order — what a rate limit is counted on
        self.arrivals: list[tuple[float, str, str, int]] = []
        #: calls of a method that arrived while the ``retry_after`` of a 429 it was answered was still
        #: running (real Telegram refuses them and lengthens the pause)
        self.early_retries: list[str] = []

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)

        # updates
        self._next_update_id = first_update_id  # a bot that met another stand-in before needs fresh ids
        self._last_update_id = 0
        self._history: dict[int, JSONDict] = {}
        self._queue: deque[_Entry] = deque()
        self._redeliveries: list[_Entry] = []
        self._confirmed_below = 0
        self._forgotten: set[int] = set()
        self._allowed_updates: frozenset[str] = frozenset(
            t for t in self.spec.update_types if t not in _NOT_DELIVERED_BY_DEFAULT
        )
        self._allowed_updates_explicit: list[str] | None = None
        self.filtered_update_ids: list[int] = []

        # chats and messages
        self._chats: dict[int, JSONDict] = {}
        self._next_message_id: dict[int, int] = {}
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._sent: dict[int, list[JSONDict]] = {}
        self._sent_total = 0
        self._deleted: dict[int, list[int]] = {}
        self._chat_actions: dict[int, list[str]] = {}
        self._blocked: set[int] = set()
        self._callbacks: dict[str, JSONDict] = {}
        self._callback_by_update: dict[int, str] = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._requests_by_method: dict[str, list[JSONDict]] = {}

        # files
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_counter = itertools.count(1)
        #: seconds a file's download takes (by its ``file_path``): a slow download among several at once
        self._download_seconds: dict[str, float] = {}
        self._callback_counter = itertools.count(1)

        # faults
        self._faults: dict[str, deque[_Fault]] = {}
        self._flood_until: dict[str, float] = {}
        self._drops: dict[str, int] = {}
        self.dropped_responses: list[tuple[str, Any]] = []
        self._holding: set[str] = set()
        self._held = 0
        self._release: asyncio.Event | None = None
        """(method, the result the bot never received) for every connection dropped after processing"""

        # webhook
        self._webhook_url = ""
        self._webhook_secret: str | None = None
        self._webhook_max_connections = 40
        self._webhook_last_error: tuple[int, str] | None = None
        self._wh_generation = 0
        self._wh_new: list[_Entry] = []
        self._wh_chats: dict[Hashable, deque[_Entry]] = {}
        self._wh_ready: asyncio.Queue[Hashable] | None = None
        self._wh_tasks: list[asyncio.Task[None]] = []

        # event loop side
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._update_event: asyncio.Event | None = None
        self._wake_pending = False
        self._poll_generation = 0
        self._closing = False

        self._handlers = self._method_handlers()
        self.app = Starlette(routes=self._routes())

    def _method_handlers(self) -> dict[str, Callable[[Validated], Any]]:
        """Bot API method → handler; each layer adds its own, ``"*"`` answers any other method."""
        return {"getMe": self._h_get_me, "logOut": lambda v: True, "close": lambda v: True}

    # ------------------------------------------------------------------ lifecycle

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT``: the value for ``QINGLIAN_TELEGRAM_API_URL``."""
        if self._thread is None:
            raise RuntimeError("the stand-in is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``<root>/bot`` (PTB's ``base_url``)."""
        return f"{self.root_url}/bot"

    @property
    def file_url(self) -> str:
        """``<root>/file/bot`` (PTB's ``base_file_url``)."""
        return f"{self.root_url}/file/bot"

    def start(self) -> None:
        """Serve in a background thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            _ExposeSend(self.app),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=60,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._closing = False
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(sock, failure), name="telegram-standin", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if failure or not self._thread.is_alive():
                self._thread = None
                raise RuntimeError(f"the stand-in failed to start: {failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in did not start within 15 s")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving; waiting long polls return at once."""
        thread, server, loop = self._thread, self._server, self._loop
        if thread is None or server is None:
            return
        self._closing = True
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._stop_on_loop)
        server.should_exit = True
        thread.join(timeout=15)
        self._thread = None
        self._server = None

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket, failure: list[BaseException]) -> None:
        loop: asyncio.AbstractEventLoop
        try:
            if self._use_uvloop:
                import uvloop

                loop = uvloop.new_event_loop()
            else:
                loop = asyncio.new_event_loop()
        except ImportError:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:
            failure.append(exc)
            log.exception("telegram stand-in crashed")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._loop = None
                self._loop_thread_id = None

    async def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        await self._server.serve(sockets=[sock])

    def _stop_on_loop(self) -> None:
        for task in self._wh_tasks:
            task.cancel()
        self._notify_pollers()

    # ------------------------------------------------------------------ wake-ups

    def _on_loop(self) -> bool:
        return self._loop_thread_id == threading.get_ident()

    def _notify_pollers(self) -> None:
        event = self._update_event
        if event is not None:
            self._update_event = asyncio.Event()
            event.set()

    # ------------------------------------------------------------------ HTTP

    def _routes(self) -> list[Route]:
        return [
            Route("/bot{token}/{method}", self._http_api, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self._http_file, methods=["GET"]),
        ]

    @staticmethod
    def _json_response(payload: Any, status: int = 200) -> Response:
        return Response(_dumps(payload), status_code=status, media_type="application/json")

    async def _http_not_found(self, request: Request) -> Response:
        return self._json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _http_api(self, request: Request) -> Response:
        arrived = time.monotonic()
        method_name = request.path_params["method"]
        response = await self._answer_api(request, method_name, arrived)
        with self._cond:
            self.arrivals.append((arrived, self.spec.canonical_method(method_name) or method_name,
                                  request.headers.get("host", ""), response.status_code))
            self._cond.notify_all()
        return response

    async def _answer_api(self, request: Request, method_name: str, arrived: float) -> Response:
        if request.path_params["token"] != self.token:
            self._violation(method_name, "Unauthorized: wrong bot token in the URL", {})
            return self._json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
            )
        try:
            params, files = await self._read_params(request)
        except _ApiError as exc:
            self._violation(method_name, exc.description, {})
            return self._json_response(exc.payload(), exc.code)
        self._note_early_retry(method_name, arrived)
        status, payload = await self._call(method_name, params, files)
        if status == 200 and self._holds(method_name):
            await self._held_until_released()
        if status == 200 and self._take_drop(method_name):
            with self._cond:
                self.dropped_responses.append((self.spec.canonical_method(method_name) or method_name,
                                               payload["result"]))
                self._cond.notify_all()
            await _drop_connection(request)
        return self._json_response(payload, status)

    def _note_early_retry(self, method: str, arrived: float) -> None:
        key = (self.spec.canonical_method(method) or method).lower()
        with self._lock:
            until = self._flood_until.get(key, 0.0)
            # 50 ms of slack: the two sides' timers and clocks are not the same
            if arrived < until - 0.05:
                self.early_retries.append(f"{method} {until - arrived:.2f} s before its retry_after ended")

    def _holds(self, method: str) -> bool:
        key = (self.spec.canonical_method(method) or method).lower()
        with self._lock:
            return key in self._holding

    async def _held_until_released(self) -> None:
        if self._release is None:
            self._release = asyncio.Event()
        release = self._release
        with self._cond:
            self._held += 1
            self._cond.notify_all()
        await release.wait()

    def _take_drop(self, method: str) -> bool:
        key = (self.spec.canonical_method(method) or method).lower()
        with self._lock:
            left = self._drops.get(key, 0)
            if left:
                self._drops[key] = left - 1
            return left > 0

    async def _read_params(self, request: Request) -> tuple[JSONDict, dict[str, Upload]]:
        params: JSONDict = dict(request.query_params)
        files: dict[str, Upload] = {}
        if request.method != "POST":
            return params, files
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            try:
                form = await request.form(max_files=100, max_fields=1000)
            except Exception as exc:
                raise _ApiError(400, f"Bad Request: can't parse multipart body: {exc}") from exc
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    upload = Upload(
                        filename=value.filename or name,
                        content_type=value.content_type or "application/octet-stream",
                        data=await value.read(),
                    )
                    files[name] = upload
                    params[name] = upload
                else:
                    params[name] = value
            await form.close()
            return params, files
        body = await request.body()
        if not body:
            return params, files
        if content_type == "application/json":
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise _ApiError(400, "Bad Request: can't parse JSON request body") from exc
            if not isinstance(data, dict):
                raise _ApiError(400, "Bad Request: JSON request body must be an object")
            params.update(_stringify_json_params(data))
            return params, files
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _ApiError(400, "Bad Request: request body is not valid UTF-8") from exc
        params.update(parse_qsl(text, keep_blank_values=True))
        return params, files

    async def _call(
        self, method_name: str, params: JSONDict, files: dict[str, Upload]
    ) -> tuple[int, JSONDict]:
        method = self.spec.canonical_method(method_name)
        if method is None:
            self._log_request(method_name, dict(params))
            self._violation(method_name, "Not Found: no such Bot API method", params)
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        v = validate_request(self.spec, method, params, files)
        self._log_request(method, v.params)
        if v.problems:
            first = v.problems[0]
            description = f"Bad Request: {first.description}"
            details = "".join(f"; {p.path}: {p.description}" for p in v.problems[1:])
            self._violation(method, f"{description} [at {first.path}{details}]", params)
            return 400, {"ok": False, "error_code": 400, "description": description}
        if v.legacy:
            note = f"{method}: legacy parameter(s) {', '.join(v.legacy)} (not in {self.spec.version})"
            if self.strict_legacy:
                self._violation(method, note, params)
            else:
                self.warnings.append(note)
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)  # a client with a shorter timeout has given up by now
            return fault.code, fault.payload()
        handler = self._handlers.get(method) or self._handlers["*"]
        try:
            result = handler(v)
            if inspect.isawaitable(result):
                result = await result
        except _ApiError as exc:
            self.errors.append(f"{method}: {exc.description}")
            return exc.code, exc.payload()
        except Exception as exc:  # a bug of the stand-in, not of the bot: say so loudly
            log.exception("stand-in failed to handle %s", method)
            self.errors.append(f"{method}: stand-in internal error: {exc!r}")
            return 500, {"ok": False, "error_code": 500, "description": f"Internal Server Error: {exc!r}"}
        return 200, {"ok": True, "result": result}

    def _log_request(self, method: str, params: JSONDict) -> None:
        with self._cond:
            self.requests.append((method, params))
            self._requests_by_method.setdefault(method, []).append(params)
            self._cond.notify_all()

    def _violation(self, method: str, description: str, params: JSONDict) -> None:
        shown = {k: (v.describe() if isinstance(v, Upload) else v) for k, v in params.items()}
        text = f"{method}: {description} (params: {json.dumps(shown, ensure_ascii=False)[:500]})"
        log.warning("Bot API violation: %s", text)
        with self._cond:
            self.violations.append(text)
            self.errors.append(f"{method}: {description}")
            self._cond.notify_all()

    def _take_fault(self, method: str) -> _ApiError | None:
        with self._lock:
            for key in (method.lower(), "*"):
                faults = self._faults.get(key)
                if not faults:
                    continue
                fault = faults[0]
                if fault.after > 0:  # calls it lets through before it fails
                    fault.after -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    faults.popleft()
                description = fault.description
                if description is None:
                    if fault.status == 429:
                        description = f"Too Many Requests: retry after {fault.retry_after or 1}"
                    else:
                        description = _STATUS_DESCRIPTIONS.get(fault.status) or HTTPStatus(
                            fault.status
                        ).phrase
                retry_after = fault.retry_after if fault.status == 429 else None
                if retry_after:
                    self._flood_until[method.lower()] = time.monotonic() + retry_after
                return _ApiError(fault.status, description, retry_after=retry_after, delay=fault.delay)
        return None

    async def _http_file(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return self._json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
            )
        with self._lock:
            stored = self._files_by_path.get(request.path_params["path"])
            seconds = self._download_seconds.get(request.path_params["path"], 0.0)
        if stored is None:
            return self._json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        if seconds:
            await asyncio.sleep(seconds)
        return Response(stored.data, media_type=stored.mime_type or "application/octet-stream")

    # ------------------------------------------------------------------ Bot API handlers

    def _h_get_me(self, v: Validated) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }



def _stringify_json_params(data: JSONDict) -> JSONDict:
    """JSON body values as the Bot API sees them: strings stay, the rest becomes JSON text."""
    out: JSONDict = {}
    for key, value in data.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return out

