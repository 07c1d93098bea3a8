"""The HTTP side of the callback: `GET /wechat` (URL verification) and `POST /wechat` (messages)."""

from __future__ import annotations

import asyncio
import logging
from html import escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from bot.channels.wechat.channel import WeChatChannel
from bot.channels.wechat.messages import CallbackRejected
from bot.channels.wechat.notices import CALLBACK as SUBSCRIBED_PATH
from handlers.validation import whole_number

CALLBACK_PATH = "/wechat"
MAX_BODY_BYTES = 64 * 1024


log = logging.getLogger(__name__)





async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    size = whole_number(declared) if declared is not None else None
    if declared is not None and (size is None or size > limit):
        raise CallbackRejected(413, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise CallbackRejected(413, f"body larger than {limit} bytes")
    return bytes(body)


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def build_router(channel: WeChatChannel) -> APIRouter:
    router = APIRouter()

    def rejected(problem: CallbackRejected, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        log.warning("wechat callback from %s refused: %s", client, problem.reason)
        return PlainTextResponse(problem.reason, status_code=problem.status)

    @router.get(CALLBACK_PATH, include_in_schema=False)
    async def verify(request: Request) -> Response:
        try:
            return PlainTextResponse(channel.verify_url(request.query_params))
        except CallbackRejected as problem:
            return rejected(problem, request)

    @router.get(SUBSCRIBED_PATH, include_in_schema=False)
    async def subscribed(request: Request) -> Response:
        """Where WeChat sends a resident back from the one-time subscription page."""
        status, text = await channel.once_authorised(request.query_params)
        page = ("<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
                f"<p>{escape(text)}</p>")
        return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})

    @router.post(CALLBACK_PATH, include_in_schema=False)
    async def callback(request: Request) -> Response:
        received_at = asyncio.get_running_loop().time()
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
            disconnected = asyncio.ensure_future(_until_disconnected(request))
            try:
                xml, reply = await channel.handle_callback(request.query_params, body, received_at, disconnected,
                                                           request.client.host if request.client else None)
            finally:
                disconnected.cancel()
        except CallbackRejected as problem:
            return rejected(problem, request)
        if xml is None or reply is None:
            return PlainTextResponse("success")
        return Response(xml, media_type="application/xml")

    return router
