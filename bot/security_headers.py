"""`X-Content-Type-Options: nosniff` on every answer of the service that does not say it already.

The JSON of the chat API, its refusals, a 404, the health and metrics answers: a browser that guessed another
type for one of them (an old one sniffing HTML in a JSON body that quotes a request) could run it as a page of
this origin. The pages set their own headers (the chat page in `bot/channels/web.py`, the console its own).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")


class NoSniff:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == NOSNIFF[0] for name, _ in headers):
                    headers.append(NOSNIFF)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_header)
