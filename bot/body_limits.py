"""Request bodies are limited while they stream, before anything is spooled or parsed.

A pure ASGI middleware in front of the whole application: a declared `Content-Length` over the limit is
answered 413 at once; a body that arrives without one (chunked) is counted as it is received, and the
request ends with 413 the moment it passes the limit. The limits are by path: the web chat's evidence
upload takes a file of the configured size, a Telegram webhook update at most 1 MB, anything else 1 MB.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_LIMIT = 1_000_000
MULTIPART_OVERHEAD = 64 * 1024
"""Room for a multipart form's boundaries and headers around an uploaded file."""


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


def limits_by_path(upload_bytes: int) -> Callable[[str], int]:
    def limit(path: str) -> int:
        if path == "/chat/api/upload":
            return upload_bytes + MULTIPART_OVERHEAD
        return DEFAULT_LIMIT

    return limit


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body parsing: FastAPI passes an HTTPException through, and
                    # the exception middleware answers it; nothing more of the body is read.
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                          (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
