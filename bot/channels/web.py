"""Web chat: a page at `/` and a small JSON API, one conversation per browser (an HttpOnly cookie).

The replies of a step come back in the HTTP response; messages that arrive later (staff answers,
status changes) wait in the outbox until the page fetches `/chat/api/inbox`. While the database is
unavailable a step answers 503 with `Retry-After` and a "try again shortly" text: nothing was stored,
the draft is as it was, and the page offers to send the message again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable
from html import escape
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Header, HTTPException, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse
from itsdangerous import BadSignature, Signer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.runtime import Runtime
from handlers.notices import render
from handlers.texts import normalise_locale
from handlers.types import Attachment, Inbound, Outbound
from storage import outbox
from storage.db import DATABASE_UNAVAILABLE, unwritable

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "web"
COOKIE = "ql_chat"
SECURE_COOKIE = "__Host-ql_chat"
"""The cookie's name behind https. A browser takes a `__Host-` cookie only from a secure page of this very host
(Secure, Path=/, no Domain): someone on the resident's network who answers her plain-http request cannot plant
one, as they could plant `ql_chat` with a value the service gave them, and read the conversation it names."""
STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE = STATIC / "chat.html"
ASSETS = {"chat.css": "text/css; charset=utf-8", "chat.js": "text/javascript; charset=utf-8",
          "chat-net.js": "text/javascript; charset=utf-8"}
"""The page's style and scripts (`/chat/static/<name>`), the only files served from the package's static folder."""
PAGE_CSP = ("default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""No inline style or script: the page's own come from `ASSETS`, so a text that slipped into the page runs nothing.
frame-ancestors: no other site may frame the page and lay its own buttons over it (it does not fall back to
default-src)."""
MAX_TEXT = 20000
"""The longest text one message carries (the page carries it as `data-max-text` and says so before sending a longer
one).
Far over what a step keeps of a text (a report's description, 3,000 characters in the default configuration, keeps
what fits and says where the rest begins; information added to a case is added whole, in parts): a resident's
pasted account of several pages arrives and is answered, as Telegram's split parts and WeChat's one message are."""
RETRY_AFTER_SECONDS = 5
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
LANGUAGE_TAGS = {"zh": "zh-CN", "en": "en"}
"""Our locales as the page marks them (`lang`), so that a screen reader reads each message with the right voice."""


class ChoiceOut(BaseModel):
    key: str
    label: str


class MessageOut(BaseModel):
    text: str
    choices: list[ChoiceOut]
    columns: int
    lang: str | None  # the message's language where known (`LANGUAGE_TAGS`)


class MessagesOut(BaseModel):
    messages: list[MessageOut]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a field this page never sends is a client's mistake: said, not dropped

    text: str | None = Field(default=None, max_length=MAX_TEXT)
    choice: str | None = Field(default=None, max_length=64)
    command: str | None = Field(default=None, pattern=r"^[a-z]{1,20}$")
    argument: str | None = Field(default=None, max_length=MAX_TEXT)  # "/report <what happened>" typed in the page

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        # one reason for a body of many unknown fields, not one each: thousands of reasons took seconds to write,
        # while the service answered nobody else
        if isinstance(data, dict) and not set(data) <= set(cls.model_fields):
            unknown = sorted(str(name) for name in set(data) - set(cls.model_fields))
            shown = ", ".join(name[:40] for name in unknown[:3]) + (", …" if len(unknown) > 3 else "")
            raise ValueError(f"unknown field(s) {shown}: a message has only text, choice, command and argument")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> MessageIn:
        given = [value for value in (self.text, self.choice, self.command) if value is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of text, choice or command")
        return self


def client_ip(request: Request) -> str | None:
    """The client's address for the per-address limits (storage/client_limits.py).

    Behind a reverse proxy this is the address the proxy put in `X-Forwarded-For` only when the server
    trusts that proxy: uvicorn's proxy-headers middleware (on in `qinglian serve`) rewrites the client of a
    request from an address in `FORWARDED_ALLOW_IPS` (default 127.0.0.1), and leaves any other request's
    header unread, so a resident cannot choose the address they are counted by.
    """
    return request.client.host if request.client else None


def _out(messages: list[Outbound]) -> MessagesOut:
    return MessagesOut(messages=[
        MessageOut(text=m.text, choices=[ChoiceOut(key=c.key, label=c.label) for c in m.choices], columns=m.columns,
                   lang=LANGUAGE_TAGS.get(m.locale or ""))
        for m in messages
    ])


def asset_version(name: str) -> str:
    """A short digest of an asset's content: the page names `chat.js?v=<digest>`, so a browser that cached the
    file keeps it until the file changes, and then fetches the new one at once."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def page_html(locale: str, max_file_bytes: int, city_zh: str, city_en: str) -> str:
    html = (PAGE.read_text(encoding="utf-8")
            .replace("{{lang}}", LANGUAGE_TAGS.get(locale, "zh-CN"))
            .replace("{{max_file_bytes}}", str(max_file_bytes))
            .replace("{{max_text}}", str(MAX_TEXT))
            .replace("{{title_zh}}", escape("清廉" + city_zh.removesuffix("市")))
            .replace("{{title_en}}", escape("Clean " + city_en)))
    for name in ASSETS:
        html = html.replace("{{v_" + re.sub(r"[.-]", "_", name) + "}}", asset_version(name))
    return html


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    key = runtime.settings.resolved_secret_key()
    secure_cookie = runtime.settings.public_url.startswith("https://")
    signer = Signer(key, salt="qinglian-web-chat")
    # its own salt: a value the service signs for `__Host-ql_chat` is no `ql_chat` cookie anyone could plant
    secure_signer = Signer(key, salt="qinglian-web-chat-host")
    cookie_name, cookie_signer = (SECURE_COOKIE, secure_signer) if secure_cookie else (COOKIE, signer)

    def set_cookie(response: Response, token: str) -> None:
        response.set_cookie(cookie_name, cookie_signer.sign(token).decode(), max_age=60 * 60 * 24 * 30,
                            httponly=True, samesite="strict", secure=secure_cookie)

    def unsigned(value: str | None, by: Signer) -> str | None:
        if not value:
            return None
        try:
            return by.unsign(value[:200]).decode()
        except BadSignature:
            return None

    def token_of(request: Request, response: Response) -> str | None:
        """The token of the browser's cookie, if it is one we signed (None when it has none or not ours). Behind
        https a `ql_chat` cookie given before the site moved there (signed with the other salt: the service has not
        signed one since) is carried over to `__Host-ql_chat` and removed."""
        token = unsigned(request.cookies.get(cookie_name), cookie_signer)
        if token is None and secure_cookie:
            token = unsigned(request.cookies.get(COOKIE), signer)
            if token is not None:
                set_cookie(response, token)
                response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=True)
        return token

    def user_ref(request: Request, response: Response) -> str:
        """The conversation a browser's signed cookie names. A cookie that is not ours (unsigned, forged,
        altered, or behind https one without the `__Host-` prefix the service did not give) names none: the
        browser gets a new one and a fresh conversation."""
        if not request.cookies.get(cookie_name) and not request.cookies.get(COOKIE):
            raise HTTPException(401, "no chat session: open the chat page first")
        token = token_of(request, response)
        if token is None:
            token = secrets.token_urlsafe(32)
            set_cookie(response, token)
        return hmac.new(key, b"web:" + token.encode(), hashlib.sha256).hexdigest()[:40]

    async def database_step(work: Awaitable[T], ref: str, locale: str) -> T:
        """`work` (one transaction), or 503 "try again shortly" (in the resident's language, `Runtime.busy_text`)
        when the database is unavailable or a file of the data directory cannot be written."""
        try:
            return await work
        except DATABASE_UNAVAILABLE as problem:
            what = unwritable(problem)  # a file of the data directory (full or read-only), or the database's disk
            if what is not None:
                log.warning("web chat: %s", what)
            else:
                # The type only: a database error's text can quote the statement and the resident's words.
                log.warning("web chat: the database is unavailable (%s)", type(problem).__name__)
            raise HTTPException(503, runtime.busy_text(CHANNEL, ref, locale),
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None

    def update_key(ref: str, message_id: str | None) -> str | None:
        """The key that makes a message the page sends again (its retry after a request that timed out, whose
        answer it never got) the same message: handled once (`Runtime.handle`'s `restate`)."""
        if message_id is None:
            return None
        if not MESSAGE_ID.fullmatch(message_id):
            raise HTTPException(400, "X-Qinglian-Message-Id must be 8 to 64 letters, digits, '-' or '_'")
        return f"{ref}:{message_id}"

    def require_header(value: str | None) -> None:
        # A custom header cannot be sent cross-site without a CORS preflight, which we never allow.
        if value != "1":
            raise HTTPException(400, "missing X-Qinglian-Chat header")

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> Any:
        city = runtime.settings.city
        locale = normalise_locale(request.headers.get("accept-language"), city.default_locale)
        html = page_html(locale, city.limits.max_attachment_bytes, city.city_zh, city.city_en)
        result = HTMLResponse(html, headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": PAGE_CSP,
            "X-Frame-Options": "DENY",  # the same as frame-ancestors, to browsers without CSP 2
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        })
        if token_of(request, result) is None:
            set_cookie(result, secrets.token_urlsafe(32))
        return result

    @router.get("/chat/static/{name}", include_in_schema=False)
    async def asset(name: str, v: str | None = None) -> Response:
        """The page's style and scripts. Asked for with the version the page names, the browser keeps it for a
        year (a new version has a new address); any other request is checked again each time."""
        media_type = ASSETS.get(name)
        if media_type is None:
            return PlainTextResponse("no such file", status_code=404)
        content = (STATIC / name).read_bytes()
        version = hashlib.sha256(content).hexdigest()[:12]
        cache = "public, max-age=31536000, immutable" if v == version else "no-cache"
        return Response(content, media_type=media_type, headers={
            "Cache-Control": cache, "ETag": f'"{version}"', "X-Content-Type-Options": "nosniff"})

    @router.post("/chat/api/message", response_model=MessagesOut)
    async def message(
        body: MessageIn,
        request: Request,
        response: Response,
        x_qinglian_chat: Annotated[str | None, Header()] = None,
        x_qinglian_message_id: Annotated[str | None, Header()] = None,
    ) -> MessagesOut:
        require_header(x_qinglian_chat)
        locale = normalise_locale(request.headers.get("accept-language"), runtime.settings.city.default_locale)
        ref = user_ref(request, response)
        address, key = client_ip(request), update_key(ref, x_qinglian_message_id)
        if body.command is not None:
            inbound = Inbound(CHANNEL, ref, locale, command=body.command, command_arg=body.argument, client_ip=address,
                              update_key=key)
        elif body.choice is not None:
            inbound = Inbound(CHANNEL, ref, locale, choice=body.choice, client_ip=address, update_key=key)
        else:
            assert body.text is not None
            inbound = Inbound(CHANNEL, ref, locale, text=body.text, client_ip=address, update_key=key)
        step = await database_step(runtime.handle(inbound, restate=True), ref, locale)
        return _out(step.messages if step else [])

    @router.post("/chat/api/upload", response_model=MessagesOut)
    async def upload(
        request: Request,
        response: Response,
        file: Annotated[UploadFile, File()],
        x_qinglian_chat: Annotated[str | None, Header()] = None,
        x_qinglian_message_id: Annotated[str | None, Header()] = None,
    ) -> MessagesOut:
        require_header(x_qinglian_chat)
        ref = user_ref(request, response)
        key = update_key(ref, x_qinglian_message_id)
        limit = runtime.settings.city.limits.max_attachment_bytes
        content = await file.read(limit + 1)
        locale = normalise_locale(request.headers.get("accept-language"), runtime.settings.city.default_locale)

        async def fetch() -> bytes:
            return content

        media_type = file.content_type or "application/octet-stream"
        kind = "photo" if media_type.startswith("image/") else "document"
        attachment = Attachment(kind, media_type, len(content), file.filename, fetch)  # type: ignore[arg-type]
        step = await database_step(
            runtime.handle(Inbound(CHANNEL, ref, locale, attachment=attachment, client_ip=client_ip(request),
                                   update_key=key), restate=True),
            ref, locale)
        return _out(step.messages if step else [])

    @router.get("/chat/api/inbox", response_model=MessagesOut)
    async def inbox(
        request: Request,
        response: Response,
        x_qinglian_chat: Annotated[str | None, Header()] = None,
    ) -> MessagesOut:
        require_header(x_qinglian_chat)
        ref = user_ref(request, response)
        locale = normalise_locale(request.headers.get("accept-language"), runtime.settings.city.default_locale)

        async def take() -> list[Outbound]:
            async with runtime.sessionmaker.begin() as session:
                pending = await outbox.take_web_messages(session, ref)
                return [render(payload, runtime.texts, city=runtime.settings.city, channel=CHANNEL)
                        for payload in pending]

        return _out(await database_step(take(), ref, locale))

    return router
