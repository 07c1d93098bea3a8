"""An ASGI middleware that adds a header to every answer (under a path prefix) that does not set it itself.

Used by the shell for `X-Content-Type-Options: nosniff` on everything (`bot/security_headers.py`) and by the
console for `Cache-Control: no-store` on the staff API (`console/app.py`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class DefaultHeader:
    def __init__(self, app: ASGIApp, *, header: tuple[bytes, bytes], path_prefix: str = "") -> None:
        self.app = app
        self.header = header
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return
        name = self.header[0].lower()

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(given.lower() == name for given, _ in headers):
                    message = {**message, "headers": [*headers, self.header]}
            await send(message)

        await self.app(scope, receive, with_header)
