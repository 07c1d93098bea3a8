"""Stand-in Telegram Bot API server for tests and benchmarks.

It speaks the real Bot API HTTP protocol, so python-telegram-bot and aiogram work against it
unchanged when pointed at :attr:`TelegramStandIn.root_url`:

* ``<root>/bot<token>/<method>`` with a GET query string, or a POST body that is
  ``application/x-www-form-urlencoded``, ``application/json`` or ``multipart/form-data``;
* ``<root>/file/bot<token>/<file_path>`` for downloads;
* answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": ...}``
  (plus ``"parameters": {"retry_after": N}`` for 429), like Telegram.

Every request is checked against the official machine-readable spec in
``tests/data/telegram-bot-api/api.json``: method exists, required fields present, no unknown
fields, every value parses as one of its listed types (objects recursively), plus the value rules
clients commonly break (text length, entity markup, callback_data size, inline buttons with exactly
one action, ...). A violating request gets HTTP 400 and is recorded in
:attr:`TelegramStandIn.violations`, so a fixture can assert there were none.

The test side drives simulated users through a synchronous, thread-safe API (``send_text``,
``press_button``, ``send_photo`` ...) and inspects what the bot sent (``sent_messages``,
``wait_for_messages``, ``last_buttons``). Updates are served by ``getUpdates`` long polling or
pushed to the bot's webhook, whichever the bot set up.

Webhook mode (after the bot's ``setWebhook``): updates are POSTed as JSON to the URL, with
``X-Telegram-Bot-Api-Secret-Token`` when a secret was set, by ``max_connections`` workers (default
40): in order per chat, chats in parallel, each update retried with a short backoff until a 2xx
answer. A JSON answer carrying ``{"method": ...}`` is executed like Telegram does.

Run as a process for benchmarks (prints ``telegram stand-in listening on URL`` when ready)::

    python -m tests.standins.telegram_server --port 8081 --token 123456:TEST-token

The JSON control API (also served in-process) answers ``{"ok": true, "result": ...}`` unless noted:

* ``POST /_standin/updates`` body = an update or a list of them (``update_id`` optional) -> ids
* ``POST /_standin/send_text`` ``{"chat_id", "text", ...send_text keywords}`` -> update id
* ``POST /_standin/press_button`` ``{"chat_id", "callback_data", "message_id"?}`` -> update id
* ``POST /_standin/fail_next`` ``{"method", "count"?, "status"?, "retry_after"?, "description"?, "delay"?}``
* ``POST /_standin/reset``
* ``GET /_standin/sent?chat_id=N`` -> plain list of sent-message entries (without ``chat_id``:
  ``{chat_id: count}``)
* ``GET /_standin/stats`` -> plain ``{"sent": total, "violations": [...], "errors": [...], ...}``
"""

from __future__ import annotations

import argparse
import asyncio
import html
import inspect
import itertools
import json
import logging
import mimetypes
import re
import secrets
import signal
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = [
    "DEFAULT_SPEC_PATH",
    "ApiSpec",
    "EntityParseError",
    "TelegramStandIn",
    "Upload",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "validate_request",
]

log = logging.getLogger(__name__)

DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "telegram-bot-api" / "api.json"

PRIMITIVES = frozenset({"Integer", "Float", "Boolean", "String"})

#: Parameters removed from the documented API that Telegram still accepts. They are recorded in
#: ``warnings`` (or ``violations`` with ``strict_legacy=True``) instead of being rejected.
LEGACY_PARAMETERS: dict[str, frozenset[str]] = {
    "reply_to_message_id": frozenset({"Integer"}),
    "allow_sending_without_reply": frozenset({"Boolean"}),
    "disable_web_page_preview": frozenset({"Boolean"}),
}

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

#: Update types Telegram delivers when the bot never specified ``allowed_updates``.
_NOT_DELIVERED_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_INLINE_BUTTON_PASSIVE_FIELDS = frozenset({"text", "icon_custom_emoji_id", "style"})

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

_STATUS_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}

JSONDict = dict[str, Any]


# --------------------------------------------------------------------------------------------
# small helpers


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _char_u16(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode(
        "utf-8"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, Upload):
        return value.describe()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _jsonable(value: Any) -> Any:
    """A deep copy of ``value`` that is plain JSON (uploads become descriptors)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Upload):
        return value.describe()
    return value


def _update_kind(update: JSONDict) -> str:
    for key in update:
        if key != "update_id":
            return key
    return ""


def _update_chat_key(update: JSONDict) -> Hashable:
    """Webhook deliveries of updates with the same key are sequential (like Telegram)."""
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        chat = value.get("chat")
        if not isinstance(chat, dict):
            inner = value.get("message")
            chat = inner.get("chat") if isinstance(inner, dict) else None
        if isinstance(chat, dict) and "id" in chat:
            return ("chat", chat["id"])
        user = value.get("from") or value.get("user")
        if isinstance(user, dict) and "id" in user:
            return ("user", user["id"])
    return ("update", update.get("update_id"))


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image, when recognisable."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
                i += 2 if marker != 0xFF else 1
                continue
            (seg_len,) = struct.unpack(">H", data[i + 2 : i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            i += 2 + seg_len
    return None


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes

    def describe(self) -> JSONDict:
        return {"filename": self.filename, "content_type": self.content_type, "size": len(self.data)}

    def __repr__(self) -> str:
        return f"Upload(filename={self.filename!r}, content_type={self.content_type!r}, size={len(self.data)})"


class _ApiError(Exception):
    def __init__(self, code: int, description: str, *, retry_after: int | None = None,
                 delay: float = 0.0) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.delay = delay

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


# --------------------------------------------------------------------------------------------
# entity parsing (mirrors tdlib's parse_html / parse_markdown_v2 / parse_markdown closely enough
# to reject what Telegram rejects, with Telegram's own error texts)


class EntityParseError(ValueError):
    """Raised with Telegram's wording, e.g. ``Unsupported start tag "x" at byte offset 3``."""


_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "tg-emoji",
        "tg-time",
        "code",
        "pre",
        "blockquote",
    }
)
_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_HTML_CHAR_REF = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8})|([a-zA-Z]{2,8}));")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _sorted_entities(entities: list[JSONDict]) -> list[JSONDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Parse Telegram-flavoured HTML into plain text and entities."""
    out: list[str] = []
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, dict[str, str]]] = []
    u16 = 0
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            m = _HTML_CHAR_REF.match(text, i)
            decoded: str | None = None
            if m:
                if m.group(3) is not None:
                    decoded = _HTML_NAMED.get(m.group(3))
                else:
                    code = int(m.group(1)) if m.group(1) is not None else int(m.group(2), 16)
                    if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                        decoded = chr(code)
            if m and decoded is not None:
                out.append(decoded)
                u16 += _char_u16(decoded)
                i = m.end()
            else:
                out.append("&")
                u16 += 1
                i += 1
            continue
        if c != "<":
            out.append(c)
            u16 += _char_u16(c)
            i += 1
            continue
        begin = i
        i += 1
        if i < n and text[i] == "/":
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            j = i + 1
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            end_name = text[i + 1 : j].lower()
            while j < n and text[j].isspace():
                j += 1
            if j >= n or text[j] != ">":
                raise EntityParseError(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            tag, start, open_attrs = stack.pop()
            if end_name and end_name != tag:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{tag}>", found "</{end_name}>"'
                )
            i = j + 1
            if u16 > start:
                entity = _html_entity(tag, open_attrs, start, u16 - start)
                if entity is not None:
                    entities.append(entity)
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        tag = text[i:j].lower()
        if tag not in _HTML_TAGS:
            raise EntityParseError(
                f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
            )
        attrs: dict[str, str] = {}
        i = j
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            if text[i] == ">":
                i += 1
                break
            name_start = i
            while i < n and not text[i].isspace() and text[i] not in "=>":
                i += 1
            name = text[name_start:i].lower()
            if not name:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset '
                    f"{_byte_offset(text, begin)}"
                )
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != "=":
                attrs[name] = ""
                continue
            i += 1
            while i < n and text[i].isspace():
                i += 1
            if i < n and text[i] in "\"'":
                end = text.find(text[i], i + 1)
                if end == -1:
                    raise EntityParseError(
                        f'Unclosed end of attribute value of the tag "{tag}" at byte offset '
                        f"{_byte_offset(text, begin)}"
                    )
                attrs[name] = html.unescape(text[i + 1 : end])
                i = end + 1
            else:
                value_start = i
                while i < n and not text[i].isspace() and text[i] != ">":
                    i += 1
                attrs[name] = html.unescape(text[value_start:i])
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(text, begin)}'
            )
        if tag == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise EntityParseError("Custom emoji entity must contain a valid custom emoji identifier")
        stack.append((tag, u16, attrs))
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), _sorted_entities(entities)


def _html_entity(tag: str, attrs: dict[str, str], offset: int, length: int) -> JSONDict | None:
    entity: JSONDict = {"offset": offset, "length": length}
    if tag == "a":
        href = attrs.get("href", "")
        if not href:
            return None
        entity["type"] = "text_link"
        entity["url"] = href
    elif tag == "tg-emoji":
        entity["type"] = "custom_emoji"
        entity["custom_emoji_id"] = attrs["emoji-id"]
    elif tag == "tg-time":
        entity["type"] = "date_time"
        if attrs.get("unix", "").isdigit():
            entity["unix_time"] = int(attrs["unix"])
    elif tag == "blockquote":
        entity["type"] = "expandable_blockquote" if "expandable" in attrs else "blockquote"
    else:
        entity["type"] = _HTML_ENTITY_TYPES[tag]
        if tag == "pre" and attrs.get("language"):
            entity["language"] = attrs["language"]
    return entity


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_TD_ENTITY_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _reserved(char: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Parse MarkdownV2 into plain text and entities, rejecting unescaped reserved characters."""
    out: list[str] = []
    entities: list[JSONDict] = []
    # [type, start_u16, begin_index, argument, out_position]
    stack: list[list[Any]] = []
    u16 = 0
    n = len(text)
    i = 0
    line_start = True
    quote_start: int | None = None
    quote_expandable = False

    def at(k: int) -> str:
        return text[k] if k < n else ""

    def close_quote() -> None:
        nonlocal quote_start
        if quote_start is not None:
            end = u16 - (1 if out and out[-1] == "\n" else 0)
            if end > quote_start:
                kind = "expandable_blockquote" if quote_expandable else "blockquote"
                entities.append({"type": kind, "offset": quote_start, "length": end - quote_start})
        quote_start = None

    while i < n:
        c = text[i]
        top = stack[-1][0] if stack else None
        if line_start:
            line_start = False
            if top not in ("code", "pre"):
                if c == ">":
                    if quote_start is None:
                        quote_start, quote_expandable = u16, False
                    i += 1
                    continue
                if text.startswith("**>", i):
                    close_quote()
                    quote_start, quote_expandable = u16, True
                    i += 3
                    continue
                close_quote()
        if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.append(text[i + 1])
            u16 += 1
            line_start = text[i + 1] == "\n"
            i += 2
            continue
        reserved = "`" if top in ("code", "pre") else _MDV2_RESERVED
        if c not in reserved:
            out.append(c)
            u16 += _char_u16(c)
            line_start = c == "\n"
            i += 1
            continue
        if (
            c == "|"
            and at(i + 1) == "|"
            and quote_expandable
            and quote_start is not None
            and top != "spoiler"
            and at(i + 2) in ("", "\n")
        ):
            i += 2
            continue
        is_end = False
        if top == "bold":
            is_end = c == "*"
        elif top == "italic":
            is_end = c == "_" and at(i + 1) != "_"
        elif top == "code":
            is_end = c == "`"
        elif top == "pre":
            is_end = c == "`" and at(i + 1) == "`" and at(i + 2) == "`"
        elif top in ("text_link", "custom_emoji"):
            is_end = c == "]"
        elif top == "underline":
            is_end = c == "_" and at(i + 1) == "_"
        elif top == "strikethrough":
            is_end = c == "~"
        elif top == "spoiler":
            is_end = c == "|" and at(i + 1) == "|"
        if not is_end:
            begin = i
            argument: str | None = None
            if c == "_":
                if at(i + 1) == "_":
                    kind, i = "underline", i + 1
                else:
                    kind = "italic"
            elif c == "*":
                kind = "bold"
            elif c == "~":
                kind = "strikethrough"
            elif c == "|":
                if at(i + 1) != "|":
                    raise _reserved(c)
                kind, i = "spoiler", i + 1
            elif c == "[":
                kind = "text_link"
            elif c == "`":
                if at(i + 1) == "`" and at(i + 2) == "`":
                    kind = "pre"
                    i += 3
                    j = i
                    while j < n and not text[j].isspace() and text[j] != "`":
                        j += 1
                    if j != i and j < n and text[j] != "`":
                        argument, i = text[i:j], j
                    if at(i) in ("\n", "\r"):
                        if at(i + 1) in ("\n", "\r") and text[i] != text[i + 1]:
                            i += 2
                        else:
                            i += 1
                    i -= 1
                else:
                    kind = "code"
            elif c == "!" and at(i + 1) == "[":
                kind, i = "custom_emoji", i + 1
            else:
                raise _reserved(c)
            stack.append([kind, u16, begin, argument, len(out)])
            i += 1
            continue
        kind, start, begin, argument, out_pos = stack.pop()
        if kind in ("underline", "spoiler"):
            i += 1
        elif kind == "pre":
            i += 2
        elif kind in ("text_link", "custom_emoji"):
            if at(i + 1) != "(":
                if kind == "custom_emoji":
                    raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                argument = "".join(out[out_pos:])
            else:
                i += 2
                url_begin = i
                chars: list[str] = []
                while i < n and text[i] != ")":
                    if text[i] == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
                        chars.append(text[i + 1])
                        i += 2
                        continue
                    chars.append(text[i])
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Can't find end of a URL at byte offset {_byte_offset(text, url_begin)}"
                    )
                argument = "".join(chars)
        i += 1
        if u16 > start:
            entity: JSONDict = {"type": kind, "offset": start, "length": u16 - start}
            if kind == "text_link":
                entity["url"] = argument or ""
            elif kind == "pre" and argument:
                entity["language"] = argument
            elif kind == "custom_emoji":
                entity["custom_emoji_id"] = (argument or "").removeprefix("tg://emoji?id=")
            entities.append(entity)
    if stack:
        kind, _, begin, _, _ = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_TD_ENTITY_NAMES[kind]} entity at byte offset "
            f"{_byte_offset(text, begin)}"
        )
    close_quote()
    return "".join(out), _sorted_entities(entities)


def parse_markdown(text: str) -> tuple[str, list[JSONDict]]:
    """Parse legacy Markdown (no nesting) into plain text and entities."""
    out: list[str] = []
    entities: list[JSONDict] = []
    u16 = 0
    n = len(text)
    i = 0

    def at(k: int) -> str:
        return text[k] if k < n else ""

    while i < n:
        c = text[i]
        if c == "\\" and at(i + 1) in ("_", "*", "`", "["):
            out.append(text[i + 1])
            u16 += 1
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            u16 += _char_u16(c)
            i += 1
            continue
        begin = i
        end_char = "]" if c == "[" else c
        i += 1
        is_pre = False
        language: str | None = None
        if c == "`" and at(i) == "`" and at(i + 1) == "`":
            i += 2
            is_pre = True
            j = i
            while j < n and not text[j].isspace() and text[j] != "`":
                j += 1
            if j != i and j < n and text[j] != "`":
                language, i = text[i:j], j
            if at(i) in ("\n", "\r"):
                i += 2 if at(i + 1) in ("\n", "\r") and text[i] != text[i + 1] else 1
        start = u16
        while i < n and (text[i] != end_char or (is_pre and not (at(i + 1) == "`" and at(i + 2) == "`"))):
            out.append(text[i])
            u16 += _char_u16(text[i])
            i += 1
        if i >= n:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}"
            )
        url: str | None = None
        if c == "[" and at(i + 1) == "(":
            close = text.find(")", i + 2)
            if close != -1:
                url = text[i + 2 : close]
                i = close
        if u16 > start:
            kind = {"_": "italic", "*": "bold", "`": "pre" if is_pre else "code", "[": "text_link"}[c]
            if kind != "text_link" or url:
                entity: JSONDict = {"type": kind, "offset": start, "length": u16 - start}
                if url:
                    entity["url"] = url
                if language:
                    entity["language"] = language
                entities.append(entity)
        if is_pre:
            i += 2
        i += 1
    return "".join(out), _sorted_entities(entities)


_PARSERS: dict[str, Callable[[str], tuple[str, list[JSONDict]]]] = {
    "html": parse_html,
    "markdownv2": parse_markdown_v2,
    "markdown": parse_markdown,
}


# --------------------------------------------------------------------------------------------
# the spec and request validation


_DISCRIMINATOR_RE = re.compile(r'(?:always|must be)\s+"?\*?([a-z_]+)')


class ApiSpec:
    """The Bot API reference (``api.json`` from PaulSonOfLars/telegram-bot-api-spec)."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or DEFAULT_SPEC_PATH
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        self.version: str = raw.get("version", "")
        self.methods: dict[str, JSONDict] = raw["methods"]
        self.types: dict[str, JSONDict] = raw["types"]
        self._by_lower = {name.lower(): name for name in self.methods}
        self.method_fields: dict[str, dict[str, JSONDict]] = {
            name: {f["name"]: f for f in m.get("fields", [])} for name, m in self.methods.items()
        }
        self.type_fields: dict[str, dict[str, JSONDict]] = {
            name: {f["name"]: f for f in t.get("fields", [])}
            for name, t in self.types.items()
            if "subtypes" not in t
        }
        self.required: dict[str, tuple[str, ...]] = {
            name: tuple(f["name"] for f in t.get("fields", []) if f["required"])
            for name, t in self.types.items()
        }
        # subtype name -> (field, value), e.g. BotCommandScopeChat -> ("type", "chat")
        self.discriminators: dict[str, tuple[str, str]] = {}
        for name, t in self.types.items():
            fields = t.get("fields", [])
            if fields and fields[0]["name"] in ("type", "status", "source") and "subtype_of" in t:
                description = fields[0]["description"]
                if isinstance(description, list):
                    description = " ".join(description)
                m = _DISCRIMINATOR_RE.search(description)
                if m:
                    self.discriminators[name] = (fields[0]["name"], m.group(1))
        self.update_types: tuple[str, ...] = tuple(
            f["name"] for f in self.types["Update"]["fields"] if f["name"] != "update_id"
        )

    def canonical_method(self, name: str) -> str | None:
        """Bot API method names are case-insensitive."""
        return self._by_lower.get(name.lower())

    def returns(self, method: str) -> list[str]:
        return list(self.methods[method].get("returns", []))

    def validate_object(self, value: Any, type_name: str) -> list[str]:
        """Check a decoded JSON value (e.g. an Update this server produces) against a type."""
        checker = _Checker(self, {})
        _, problem = checker.union(value, [type_name], type_name, top=False)
        return [] if problem is None else [f"{problem.path}: {problem.description}"]

    def fake(self, type_name: str, depth: int = 0) -> Any:
        """A minimal value of a type: required fields only, discriminators filled in."""
        if type_name.startswith("Array of "):
            return []
        if type_name == "Integer":
            return 0
        if type_name == "Float":
            return 0.0
        if type_name == "Boolean":
            return False
        if type_name in ("String", "InputFile"):
            return ""
        spec_type = self.types.get(type_name, {})
        if "subtypes" in spec_type:
            for sub in spec_type["subtypes"]:
                if sub in self.types:
                    return self.fake(sub, depth + 1)
            return self.fake(spec_type["subtypes"][0], depth + 1)
        obj: JSONDict = {}
        if depth > 8:
            return obj
        for f in spec_type.get("fields", []):
            if f["required"]:
                obj[f["name"]] = self.fake(f["types"][0], depth + 1)
        if type_name in self.discriminators:
            key, value = self.discriminators[type_name]
            obj[key] = value
        return obj


@dataclass
class Problem:
    description: str
    path: str


class _Checker:
    """Validates values against spec types; converts them to Python values on success."""

    def __init__(self, spec: ApiSpec, files: dict[str, Upload]) -> None:
        self.spec = spec
        self.files = files
        self.referenced: set[str] = set()

    # a field's value against its list of alternative types
    def union(self, value: Any, types: list[str], path: str, top: bool) -> tuple[Any, Problem | None]:
        if len(types) == 1:
            return self.one(value, types[0], path, top)
        if all(t.startswith("Array of ") for t in types):
            # sendMediaGroup's "Array of InputMediaAudio, InputMediaDocument, ... and InputMediaVideo":
            # one array whose items may be of any of the listed types
            return self.array(value, [t[len("Array of ") :] for t in types], path, top)
        decoded = value
        if top and isinstance(value, str) and value[:1] in ("{", "["):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = value
        if isinstance(decoded, dict):
            object_types = [t for t in types if t in self.spec.types]
            ordered = sorted(object_types, key=lambda t: self._fit(decoded, t)) + [
                t for t in types if t not in self.spec.types
            ]
        else:
            ordered = list(types)
        best: Problem | None = None
        for t in ordered:
            converted, problem = self.one(value, t, path, top)
            if problem is None:
                return converted, None
            if best is None:
                best = problem
        if best is not None and (
            isinstance(decoded, dict | list) or best.description.startswith("can't parse")
        ):
            return value, best
        return value, Problem(f'Field "{path}" must be of type {" or ".join(types)}', path)

    def array(self, value: Any, item_types: list[str], path: str, top: bool) -> tuple[Any, Problem | None]:
        if top and isinstance(value, str):
            value, problem = self._decode(value, path)
            if problem:
                return value, problem
        if not isinstance(value, list):
            return value, Problem(f'Field "{path}" must be of type Array of {" or ".join(item_types)}', path)
        out = []
        for index, item in enumerate(value):
            converted, problem = self.union(item, item_types, f"{path}[{index}]", False)
            if problem:
                return value, problem
            out.append(converted)
        return out, None

    def _fit(self, value: JSONDict, type_name: str) -> tuple[int, int]:
        spec_type = self.spec.types[type_name]
        if "subtypes" in spec_type:
            scores = [self._fit(value, s) for s in spec_type["subtypes"] if s in self.spec.types]
            return min(scores) if scores else (1, 0)
        discriminator = self.spec.discriminators.get(type_name)
        mismatch = 0
        if discriminator is not None and value.get(discriminator[0]) != discriminator[1]:
            mismatch = 1
        fields = self.spec.type_fields.get(type_name, {})
        unknown = sum(1 for k, v in value.items() if v is not None and k not in fields)
        missing = sum(1 for k in self.spec.required.get(type_name, ()) if value.get(k) is None)
        return mismatch, unknown + missing

    def _decode(self, value: str, path: str) -> tuple[Any, Problem | None]:
        try:
            return json.loads(value), None
        except ValueError:
            if path == "reply_markup":
                return value, Problem("can't parse reply keyboard markup JSON object", path)
            if path == "entities" or path.endswith("_entities"):
                return value, Problem("can't parse entities JSON object", path)
            return value, Problem(f"can't parse {path} JSON object", path)

    def _attach(self, value: str, path: str) -> tuple[Any, Problem | None]:
        name = value[len("attach://") :]
        upload = self.files.get(name)
        if upload is None:
            return value, Problem(f'Field "{path}": attached file "{name}" not found in the request', path)
        self.referenced.add(name)
        return upload, None

    def one(self, value: Any, t: str, path: str, top: bool) -> tuple[Any, Problem | None]:
        if t.startswith("Array of "):
            return self.array(value, [t[len("Array of ") :]], path, top)
        if t in PRIMITIVES:
            return self._primitive(value, t, path, top)
        if t == "InputFile":
            if isinstance(value, Upload):
                return value, None
            if isinstance(value, str) and value.startswith("attach://"):
                return self._attach(value, path)
            return value, Problem(f'Field "{path}" must be an uploaded file', path)
        spec_type = self.spec.types.get(t)
        if spec_type is None:
            return value, Problem(f'Field "{path}" has unknown type {t}', path)
        if top and isinstance(value, str):
            value, problem = self._decode(value, path)
            if problem:
                return value, problem
        if "subtypes" in spec_type:
            return self.union(value, list(spec_type["subtypes"]), path, False)
        if not isinstance(value, dict):
            return value, Problem(f'Field "{path}" must be of type {t}', path)
        fields = self.spec.type_fields.get(t, {})
        out: JSONDict = {}
        for key, item in value.items():
            if item is None:
                continue
            spec_field = fields.get(key)
            if spec_field is None:
                return value, Problem(f'unknown field "{key}" in {t} at {path}', f"{path}.{key}")
            converted, problem = self.union(item, spec_field["types"], f"{path}.{key}", False)
            if problem:
                return value, problem
            out[key] = converted
        for key in self.spec.required.get(t, ()):
            if key not in out:
                return value, Problem(f'field "{key}" of {t} is required at {path}', f"{path}.{key}")
        discriminator = self.spec.discriminators.get(t)
        if discriminator is not None and out.get(discriminator[0]) != discriminator[1]:
            return value, Problem(
                f'field "{discriminator[0]}" of {t} must be "{discriminator[1]}" at {path}', path
            )
        rule = _TYPE_RULES.get(t)
        if rule is not None:
            problem = rule(out, path)
            if problem:
                return value, problem
        return out, None

    def _primitive(self, value: Any, t: str, path: str, top: bool) -> tuple[Any, Problem | None]:
        bad = Problem(f'Field "{path}" must be of type {t}', path)
        if isinstance(value, Upload):
            return value, bad
        if t == "String":
            if isinstance(value, str):
                if value.startswith("attach://") and not top:
                    _, problem = self._attach(value, path)
                    return value, problem
                return value, None
            if not top and isinstance(value, int | float) and not isinstance(value, bool):
                return str(value), None
            return value, bad
        if t == "Integer":
            if isinstance(value, bool):
                return value, bad
            if isinstance(value, int):
                return value, None
            if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,20}", value.strip()):
                return int(value), None
            return value, bad
        if t == "Float":
            if isinstance(value, bool):
                return value, bad
            if isinstance(value, int | float):
                return float(value), None
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    return value, bad
                if number != number or number in (float("inf"), float("-inf")):
                    return value, bad
                return number, None
            return value, bad
        # Boolean
        if isinstance(value, bool):
            return value, None
        if top and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "1"):
                return True, None
            if lowered in ("false", "0"):
                return False, None
        return value, bad


def _rule_inline_button(button: JSONDict, path: str) -> Problem | None:
    if not button.get("text"):
        return Problem("can't parse inline keyboard button: Text must be non-empty", path)
    actions = [k for k in button if k not in _INLINE_BUTTON_PASSIVE_FIELDS]
    if not actions:
        return Problem(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
            path,
        )
    if len(actions) > 1:
        return Problem(
            "can't parse inline keyboard button: exactly one of the optional fields must be used, "
            f"got {', '.join(actions)}",
            path,
        )
    if "callback_data" in button:
        size = len(str(button["callback_data"]).encode("utf-8"))
        if not 1 <= size <= 64:
            return Problem("BUTTON_DATA_INVALID", f"{path}.callback_data")
    if "url" in button and not button["url"]:
        return Problem("BUTTON_URL_INVALID", f"{path}.url")
    return None


def _rule_keyboard_button(button: JSONDict, path: str) -> Problem | None:
    if not button.get("text"):
        return Problem("can't parse keyboard button: Text must be non-empty", path)
    return None


def _rule_bot_command(command: JSONDict, path: str) -> Problem | None:
    if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
        return Problem("BOT_COMMAND_INVALID", f"{path}.command")
    if not 1 <= len(str(command.get("description", ""))) <= 256:
        return Problem("BOT_COMMAND_DESCRIPTION_INVALID", f"{path}.description")
    return None


_TYPE_RULES: dict[str, Callable[[JSONDict, str], Problem | None]] = {
    "InlineKeyboardButton": _rule_inline_button,
    "KeyboardButton": _rule_keyboard_button,
    "BotCommand": _rule_bot_command,
}


@dataclass
class Validated:
    """The outcome of checking one request."""

    method: str
    params: JSONDict
    files: dict[str, Upload] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    legacy: list[str] = field(default_factory=list)
    #: field name ("text" / "caption") -> (plain text after entity parsing, entities)
    formatted: dict[str, tuple[str, list[JSONDict]]] = field(default_factory=dict)


def _format(params: JSONDict, name: str, entities_name: str) -> tuple[str, list[JSONDict]]:
    text = params[name]
    if entities_name in params:
        return text, list(params[entities_name])
    mode = str(params.get("parse_mode") or "").lower()
    parser = _PARSERS.get(mode)
    if parser is None:
        return text, []
    try:
        return parser(text)
    except EntityParseError as exc:
        raise _ApiError(400, f"Bad Request: can't parse entities: {exc}") from exc


def validate_request(
    spec: ApiSpec, method: str, params: JSONDict, files: dict[str, Upload] | None = None
) -> Validated:
    """Check one call of ``method`` (canonical name) with raw ``params``.

    ``params`` values are strings as they arrive in a query string or form (JSON bodies are
    converted to that form first) or :class:`Upload` for file parts; ``files`` holds every file
    part by name, for ``attach://<name>`` references.
    """
    files = files or {}
    fields = spec.method_fields[method]
    checker = _Checker(spec, files)
    result = Validated(method=method, params={}, files=files)
    for name, spec_field in fields.items():
        if name not in params:
            if spec_field["required"]:
                if name == "chat_id":
                    result.problems.append(Problem("chat_id is empty", name))
                elif name == "text" and method == "sendMessage":
                    result.problems.append(Problem("message text is empty", name))
                else:
                    result.problems.append(Problem(f'parameter "{name}" is required', name))
            continue
        converted, problem = checker.union(params[name], spec_field["types"], name, top=True)
        if problem is not None:
            result.problems.append(_top_problem(name, problem))
            result.params[name] = params[name]
        else:
            result.params[name] = converted
    for name, value in params.items():
        if name in fields:
            continue
        if isinstance(value, Upload) and name in checker.referenced:
            continue
        if name in LEGACY_PARAMETERS:
            converted, problem = checker.union(value, sorted(LEGACY_PARAMETERS[name]), name, True)
            if problem is not None:
                result.problems.append(problem)
            result.params[name] = converted
            result.legacy.append(name)
            continue
        if isinstance(value, Upload):
            result.problems.append(Problem(f'unexpected file "{name}" in the request', name))
        else:
            result.problems.append(Problem(f'unknown parameter "{name}"', name))
    if not result.problems:
        try:
            problem = _method_rules(method, result)
        except _ApiError as exc:
            problem = Problem(exc.description.removeprefix("Bad Request: "), "text")
        if problem is not None:
            result.problems.append(problem)
    return result


def _top_problem(name: str, problem: Problem) -> Problem:
    if problem.path == name or problem.description.startswith("can't parse"):
        return problem
    # nested structural problems keep Telegram's "can't parse ..." framing
    if problem.description.isupper():  # e.g. BUTTON_DATA_INVALID
        return problem
    return Problem(f"can't parse {name}: {problem.description}", problem.path)


def _method_rules(method: str, v: Validated) -> Problem | None:
    p = v.params
    chat_id = p.get("chat_id")
    if isinstance(chat_id, str) and not chat_id.startswith("@"):
        return Problem("chat not found", "chat_id")
    parse_mode = p.get("parse_mode")
    if parse_mode and str(parse_mode).lower() not in _PARSERS:
        return Problem("unsupported parse_mode", "parse_mode")
    if "text" in p and method in ("sendMessage", "editMessageText"):
        plain, entities = _format(p, "text", "entities")
        if not plain.strip():
            return Problem("message text is empty", "text")
        if len(plain) > 4096:  # characters (code points) after entity parsing
            return Problem("message is too long", "text")
        v.formatted["text"] = (plain, entities)
    elif method == "editMessageText" and "rich_message" not in p:
        return Problem("message text is empty", "text")
    if "caption" in p and isinstance(p["caption"], str):
        plain, entities = _format(p, "caption", "caption_entities")
        if len(plain) > 1024:
            return Problem("message caption is too long", "caption")
        v.formatted["caption"] = (plain, entities)
    fields = v.params
    spec_has_inline = method.startswith("editMessage") or method in ("stopPoll", "stopMessageLiveLocation")
    if spec_has_inline and "inline_message_id" not in fields:
        if "chat_id" not in fields or "message_id" not in fields:
            return Problem("message identifier is not specified", "message_id")
    if method == "sendChatAction" and p.get("action") not in CHAT_ACTIONS:
        return Problem("wrong parameter action in request", "action")
    if method == "answerCallbackQuery" and len(str(p.get("text", ""))) > 200:
        return Problem("MESSAGE_TOO_LONG", "text")
    if method == "setWebhook":
        url = str(p.get("url", ""))
        if url and not re.match(r"https?://[^/\s]+", url):
            return Problem("bad webhook: An HTTPS URL must be provided for webhook", "url")
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            return Problem("secret token contains unallowed characters", "secret_token")
        if "max_connections" in p and not 1 <= int(p["max_connections"]) <= 100:
            return Problem("bad webhook: max_connections must be between 1 and 100", "max_connections")
    if method == "sendMediaGroup":
        media = p.get("media", [])
        if not 2 <= len(media) <= 10:
            return Problem("media group must include 2-10 items", "media")
        kinds = {item.get("type") for item in media}
        for lonely in ("audio", "document"):
            if lonely in kinds and len(kinds) > 1:
                return Problem(f"{lonely} can't be mixed with other media types", "media")
    if method == "setMyCommands" and len(p.get("commands", [])) > 100:
        return Problem("too many commands", "commands")
    return None


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


class TelegramStandIn:
    """A Telegram Bot API server in a background thread, with a test-side user simulator.

    All public methods are synchronous and thread-safe. From async tests call them via
    ``asyncio.to_thread`` where they block (``wait_for_*``); the others return immediately.
    """

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

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)

        # updates
        self._next_update_id = first_update_id  # a bot that met another stand-in before needs fresh ids
        self._last_update_id = 0
        self._history: dict[int, JSONDict] = {}
        self._queue: deque[_Entry] = deque()
        self._redeliveries: list[_Entry] = []
        self._confirmed_below = 0
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
        self._callback_counter = itertools.count(1)

        # faults
        self._faults: dict[str, deque[_Fault]] = {}

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

        self._handlers: dict[str, Callable[[Validated], Any]] = {
            "getMe": self._h_get_me,
            "logOut": lambda v: True,
            "close": lambda v: True,
            "getUpdates": self._h_get_updates,
            "setWebhook": self._h_set_webhook,
            "deleteWebhook": self._h_delete_webhook,
            "getWebhookInfo": self._h_get_webhook_info,
            "sendMessage": self._h_send_message,
            "editMessageText": self._h_edit_message_text,
            "editMessageReplyMarkup": self._h_edit_message_reply_markup,
            "editMessageCaption": self._h_edit_message_caption,
            "deleteMessage": self._h_delete_message,
            "answerCallbackQuery": self._h_answer_callback_query,
            "sendPhoto": self._h_send_photo,
            "sendDocument": self._h_send_document,
            "sendChatAction": self._h_send_chat_action,
            "setMyCommands": self._h_set_my_commands,
            "getMyCommands": self._h_get_my_commands,
            "deleteMyCommands": self._h_delete_my_commands,
            "getFile": self._h_get_file,
            "getChat": self._h_get_chat,
        }
        self.app = Starlette(routes=self._routes())

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
            self.app,
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

    def __enter__(self) -> TelegramStandIn:
        self.start()
        return self

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
        self._update_event = asyncio.Event()
        self._wh_ready = asyncio.Queue()
        try:
            with self._lock:
                webhook_active = bool(self._webhook_url)
            if webhook_active:
                self._restart_webhook_workers()
            await self._server.serve(sockets=[sock])
        finally:
            for task in self._wh_tasks:
                task.cancel()
            self._wh_tasks = []

    def _stop_on_loop(self) -> None:
        for task in self._wh_tasks:
            task.cancel()
        self._notify_pollers()

    # ------------------------------------------------------------------ wake-ups

    def _on_loop(self) -> bool:
        return self._loop_thread_id == threading.get_ident()

    def _schedule_wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._on_loop():
            self._wake()
            return
        with self._lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # loop closed meanwhile
            pass

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
            new, self._wh_new = self._wh_new, []
        if new:
            self._wh_feed(new)
        self._notify_pollers()

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
            Route("/_standin/updates", self._ctl_updates, methods=["POST"]),
            Route("/_standin/send_text", self._ctl_send_text, methods=["POST"]),
            Route("/_standin/press_button", self._ctl_press_button, methods=["POST"]),
            Route("/_standin/fail_next", self._ctl_fail_next, methods=["POST"]),
            Route("/_standin/reset", self._ctl_reset, methods=["POST"]),
            Route("/_standin/sent", self._ctl_sent, methods=["GET"]),
            Route("/_standin/stats", self._ctl_stats, methods=["GET"]),
            Route("/{rest:path}", self._http_not_found, methods=["GET", "POST", "HEAD"]),
        ]

    @staticmethod
    def _json_response(payload: Any, status: int = 200) -> Response:
        return Response(_dumps(payload), status_code=status, media_type="application/json")

    async def _http_not_found(self, request: Request) -> Response:
        return self._json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _http_api(self, request: Request) -> Response:
        method_name = request.path_params["method"]
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
        status, payload = await self._call(method_name, params, files)
        return self._json_response(payload, status)

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
        handler = self._handlers.get(method)
        try:
            result = handler(v) if handler is not None else self._h_generic(v)
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
                return _ApiError(fault.status, description, retry_after=retry_after, delay=fault.delay)
        return None

    async def _http_file(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return self._json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
            )
        with self._lock:
            stored = self._files_by_path.get(request.path_params["path"])
        if stored is None:
            return self._json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        return Response(stored.data, media_type=stored.mime_type or "application/octet-stream")

    # ------------------------------------------------------------------ control API (JSON)

    async def _control(self, request: Request, action: Callable[[Any], Any]) -> Response:
        """Run a control-API action on the JSON body; bad input is a 400 with the reason."""
        try:
            body = json.loads(await request.body() or b"null")
            result = action(body)
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            return self._json_response({"ok": False, "description": f"{type(exc).__name__}: {exc}"}, 400)
        return self._json_response({"ok": True, "result": result})

    async def _ctl_updates(self, request: Request) -> Response:
        def push(body: Any) -> list[int]:
            updates = body if isinstance(body, list) else [body]
            return [self.push_raw_update(u) for u in updates]

        return await self._control(request, push)

    async def _ctl_send_text(self, request: Request) -> Response:
        def send(body: JSONDict) -> int:
            return self.send_text(int(body.pop("chat_id")), str(body.pop("text")), **body)

        return await self._control(request, send)

    async def _ctl_press_button(self, request: Request) -> Response:
        def press(body: JSONDict) -> int:
            return self.press_button(int(body.pop("chat_id")), str(body.pop("callback_data")), **body)

        return await self._control(request, press)

    async def _ctl_fail_next(self, request: Request) -> Response:
        def fail(body: JSONDict) -> None:
            self.fail_next(str(body.pop("method")), **body)

        return await self._control(request, fail)

    async def _ctl_reset(self, request: Request) -> Response:
        self.reset()
        return self._json_response({"ok": True})

    async def _ctl_sent(self, request: Request) -> Response:
        chat_id = request.query_params.get("chat_id")
        if chat_id is None:
            with self._lock:
                counts = {str(k): len(v) for k, v in self._sent.items()}
            return self._json_response(counts)
        return self._json_response(self.sent_messages(int(chat_id)))

    async def _ctl_stats(self, request: Request) -> Response:
        return self._json_response(self.stats())

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

    async def _h_get_updates(self, v: Validated) -> list[JSONDict]:
        p = v.params
        if self._webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(p.get("offset", 0))
        limit = min(max(int(p.get("limit", 100)), 1), 100)
        timeout = max(float(p.get("timeout", 0)), 0.0)
        if "allowed_updates" in p:
            self._set_allowed_updates(p["allowed_updates"])
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify_pollers()  # an older long poll gets "terminated by other getUpdates request"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._lock:
            self._confirm(offset)
        while True:
            with self._lock:
                batch = self._take_batch(limit)
            if batch or self._closing:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._update_event
            assert event is not None
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            if self._webhook_url:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )

    def _confirm(self, offset: int) -> None:
        queue = self._queue
        if offset < 0:
            live = [e for e in queue if not self._dead(e)]
            for e in live[:offset]:
                e.removed = True
        elif offset > 0:
            self._confirmed_below = max(self._confirmed_below, offset)
            keep: list[_Entry] = []
            for e in self._redeliveries:
                if e.delivered and e.update_id < offset:
                    e.removed = True
                elif not e.removed:
                    keep.append(e)
            self._redeliveries = keep
        while queue and self._dead(queue[0]):
            queue.popleft()

    def _dead(self, e: _Entry) -> bool:
        return e.removed or (not e.redelivery and e.update_id < self._confirmed_below)

    def _take_batch(self, limit: int) -> list[JSONDict]:
        batch: list[_Entry] = []
        for e in self._queue:
            if self._dead(e):
                continue
            batch.append(e)
            if len(batch) >= limit:
                break
        for e in batch:
            e.delivered = True
        batch.sort(key=lambda e: e.update_id)
        return [e.update for e in batch]

    def _set_allowed_updates(self, names: list[str]) -> None:
        with self._lock:
            self._allowed_updates_explicit = list(names)
            if names:
                self._allowed_updates = frozenset(n for n in names if n in self.spec.update_types)
            else:
                self._allowed_updates = frozenset(
                    t for t in self.spec.update_types if t not in _NOT_DELIVERED_BY_DEFAULT
                )

    def _drop_pending(self) -> None:
        with self._lock:
            for e in self._queue:
                e.removed = True
            self._queue.clear()
            self._redeliveries = []
            self._wh_new = []

    def _h_set_webhook(self, v: Validated) -> bool:
        p = v.params
        if p.get("drop_pending_updates"):
            self._drop_pending()
        if "allowed_updates" in p:
            self._set_allowed_updates(p["allowed_updates"])
        with self._lock:
            self._webhook_url = str(p.get("url", ""))
            self._webhook_secret = p.get("secret_token")
            self._webhook_max_connections = int(p.get("max_connections", 40))
            self._webhook_last_error = None
        self._restart_webhook_workers()
        self._notify_pollers()
        return True

    def _h_delete_webhook(self, v: Validated) -> bool:
        if v.params.get("drop_pending_updates"):
            self._drop_pending()
        with self._lock:
            self._webhook_url = ""
            self._webhook_secret = None
        self._restart_webhook_workers()
        return True

    def _h_get_webhook_info(self, v: Validated) -> JSONDict:
        with self._lock:
            info: JSONDict = {
                "url": self._webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": self.pending_update_count(),
            }
            if self._webhook_url:
                info["max_connections"] = self._webhook_max_connections
                info["ip_address"] = "127.0.0.1"
            if self._webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_last_error
            if self._allowed_updates_explicit is not None:
                info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    # messages sent by the bot

    def _chat_id(self, v: Validated) -> int:
        chat_id = v.params["chat_id"]
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat not found")
        if chat_id in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _chat_obj(self, chat_id: int) -> JSONDict:
        known = self._chats.get(chat_id)
        if known is not None:
            return dict(known)
        if chat_id > 0:
            return {"id": chat_id, "first_name": "Test", "type": "private"}
        if str(chat_id).startswith("-100"):
            return {"id": chat_id, "title": "Test Supergroup", "type": "supergroup"}
        return {"id": chat_id, "title": "Test Group", "type": "group"}

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _reply_to(self, chat_id: int, v: Validated) -> JSONDict | None:
        p = v.params
        reply = p.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            target_chat = reply.get("chat_id", chat_id)
            allow = bool(reply.get("allow_sending_without_reply"))
        else:
            message_id = p.get("reply_to_message_id")
            target_chat = chat_id
            allow = False
        if message_id is None:
            return None
        allow = allow or bool(p.get("allow_sending_without_reply"))
        target = None
        if isinstance(target_chat, int):
            target = self._messages.get((target_chat, int(message_id)))
        if target is None:
            if allow:
                return None
            raise _ApiError(400, "Bad Request: message to be replied not found")
        quoted = dict(target)
        quoted.pop("reply_to_message", None)
        return quoted

    def _bot_message(self, chat_id: int, v: Validated, **content: Any) -> JSONDict:
        """Create, store and record a message sent by the bot (call with the lock held)."""
        p = v.params
        reply_to = self._reply_to(chat_id, v)
        message: JSONDict = {
            "message_id": self._new_message_id(chat_id),
            "from": dict(self.bot_user),
            "chat": self._chat_obj(chat_id),
            "date": int(time.time()),
        }
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if isinstance(p.get("message_thread_id"), int):
            message["message_thread_id"] = p["message_thread_id"]
        message.update({k: val for k, val in content.items() if val is not None})
        if "caption" in v.formatted:
            caption, entities = v.formatted["caption"]
            message["caption"] = caption
            if entities:
                message["caption_entities"] = entities
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        if p.get("protect_content"):
            message["has_protected_content"] = True
        self._messages[(chat_id, message["message_id"])] = message
        self._record(chat_id, message, v)
        return dict(message)

    def _record(self, chat_id: int, message: JSONDict, v: Validated) -> None:
        p = v.params
        entry: JSONDict = {
            "message_id": message["message_id"],
            "text": message.get("text", message.get("caption")),
            "reply_markup": p.get("reply_markup") if isinstance(p.get("reply_markup"), dict) else None,
            "method": v.method,
            "chat_id": chat_id,
            "date": int(time.time()),
            "parse_mode": p.get("parse_mode"),
            "raw_text": p.get("text", p.get("caption")),
            "entities": message.get("entities", message.get("caption_entities", [])),
            "params": _jsonable(p),
        }
        for media in ("photo", "document", "sticker", "voice", "audio", "video", "animation", "location"):
            if media in message:
                entry["media"] = {"type": media, "value": message[media]}
                break
        with self._cond:
            self._sent.setdefault(chat_id, []).append(entry)
            self._sent_total += 1
            self._cond.notify_all()

    def _h_send_message(self, v: Validated) -> JSONDict:
        chat_id = self._chat_id(v)
        text, entities = v.formatted["text"]
        with self._lock:
            content: JSONDict = {"text": text}
            if entities:
                content["entities"] = entities
            if isinstance(v.params.get("link_preview_options"), dict):
                content["link_preview_options"] = v.params["link_preview_options"]
            return self._bot_message(chat_id, v, **content)

    def _editable(self, v: Validated) -> tuple[int, JSONDict]:
        chat_id = self._chat_id(v)
        message = self._messages.get((chat_id, int(v.params["message_id"])))
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.bot_user["id"]:
            raise _ApiError(400, "Bad Request: message can't be edited")
        return chat_id, message

    def _apply_edit(self, chat_id: int, message: JSONDict, changes: JSONDict, v: Validated) -> JSONDict:
        markup = v.params.get("reply_markup")
        changes = dict(changes)
        changes["reply_markup"] = markup if isinstance(markup, dict) and markup.get("inline_keyboard") else None
        if all(message.get(k) == (val or None) for k, val in changes.items()):
            raise _ApiError(400, _NOT_MODIFIED)
        for key, val in changes.items():
            if val:
                message[key] = val
            else:
                message.pop(key, None)
        message["edit_date"] = int(time.time())
        self._record(chat_id, message, v)
        return dict(message)

    def _h_edit_message_text(self, v: Validated) -> JSONDict | bool:
        if "inline_message_id" in v.params:
            return True
        with self._lock:
            chat_id, message = self._editable(v)
            if "text" not in v.formatted:  # rich_message edits are not simulated
                return dict(message)
            text, entities = v.formatted["text"]
            if "text" not in message:
                raise _ApiError(400, "Bad Request: there is no text in the message to edit")
            return self._apply_edit(chat_id, message, {"text": text, "entities": entities}, v)

    def _h_edit_message_caption(self, v: Validated) -> JSONDict | bool:
        if "inline_message_id" in v.params:
            return True
        caption, entities = v.formatted.get("caption", ("", []))
        with self._lock:
            chat_id, message = self._editable(v)
            if "text" in message:
                raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
            return self._apply_edit(
                chat_id, message, {"caption": caption, "caption_entities": entities}, v
            )

    def _h_edit_message_reply_markup(self, v: Validated) -> JSONDict | bool:
        if "inline_message_id" in v.params:
            return True
        with self._lock:
            chat_id, message = self._editable(v)
            return self._apply_edit(chat_id, message, {}, v)

    def _h_delete_message(self, v: Validated) -> bool:
        chat_id = self._chat_id(v)
        with self._lock:
            message = self._messages.pop((chat_id, int(v.params["message_id"])), None)
            if message is None:
                raise _ApiError(400, "Bad Request: message to delete not found")
            self._deleted.setdefault(chat_id, []).append(message["message_id"])
        return True

    def _h_answer_callback_query(self, v: Validated) -> bool:
        query_id = str(v.params["callback_query_id"])
        with self._cond:
            query = self._callbacks.get(query_id)
            if query is None or query["answer"] is not None:
                raise _ApiError(
                    400,
                    "Bad Request: query is too old and response timeout expired or query ID is invalid",
                )
            query["answer"] = _jsonable(v.params)
            self._cond.notify_all()
        return True

    def _file_param(self, value: Any, kind: str, *, default_name: str, v: Validated | None = None) -> StoredFile:
        """Resolve an ``InputFile or String`` parameter (or an ``attach://`` name) to a stored file."""
        if isinstance(value, str) and value.startswith("attach://") and v is not None:
            value = v.files.get(value[len("attach://") :], value)
        if isinstance(value, Upload):
            return self._store_file(
                value.data,
                kind=kind,
                mime_type=value.content_type,
                file_name=value.filename or default_name,
            )
        text = str(value)
        if re.match(r"https?://", text):
            name = text.rsplit("/", 1)[-1] or default_name
            return self._store_file(b"", kind=kind, mime_type=mimetypes.guess_type(name)[0] or "", file_name=name)
        stored = self._files.get(text)
        if stored is None:
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return stored

    def _photo_sizes(self, stored: StoredFile) -> list[JSONDict]:
        width, height = _image_size(stored.data) or (1280, 720)
        scale = 90 / max(width, height, 1)
        thumb = self._store_file(stored.data, kind="photo", mime_type=stored.mime_type)
        return [
            {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.file_unique_id,
                "file_size": len(thumb.data),
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
            },
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data),
                "width": width,
                "height": height,
            },
        ]

    def _h_send_photo(self, v: Validated) -> JSONDict:
        chat_id = self._chat_id(v)
        with self._lock:
            stored = self._file_param(v.params["photo"], "photo", default_name="photo.jpg", v=v)
            return self._bot_message(chat_id, v, photo=self._photo_sizes(stored))

    def _document(self, stored: StoredFile) -> JSONDict:
        document: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        return document

    def _h_send_document(self, v: Validated) -> JSONDict:
        chat_id = self._chat_id(v)
        with self._lock:
            stored = self._file_param(v.params["document"], "document", default_name="document", v=v)
            return self._bot_message(chat_id, v, document=self._document(stored))

    def _h_send_chat_action(self, v: Validated) -> bool:
        chat_id = self._chat_id(v)
        with self._lock:
            self._chat_actions.setdefault(chat_id, []).append(str(v.params["action"]))
        return True

    @staticmethod
    def _commands_key(v: Validated) -> tuple[str, str]:
        scope = v.params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(v.params.get("language_code", ""))

    def _h_set_my_commands(self, v: Validated) -> bool:
        with self._lock:
            self._commands[self._commands_key(v)] = list(v.params["commands"])
        return True

    def _h_get_my_commands(self, v: Validated) -> list[JSONDict]:
        with self._lock:
            return list(self._commands.get(self._commands_key(v), []))

    def _h_delete_my_commands(self, v: Validated) -> bool:
        with self._lock:
            self._commands.pop(self._commands_key(v), None)
        return True

    def _h_get_file(self, v: Validated) -> JSONDict:
        with self._lock:
            stored = self._files.get(str(v.params["file_id"]))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        return stored.as_file()

    def _h_get_chat(self, v: Validated) -> JSONDict:
        chat_id = v.params["chat_id"]
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat not found")
        with self._lock:
            chat = self._chat_obj(chat_id)
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _h_generic(self, v: Validated) -> Any:
        """Any other method: a plausible result of the type the spec says it returns."""
        returns = self.spec.returns(v.method)
        p = v.params
        if not returns or returns[0] == "Boolean" or ("Boolean" in returns and "inline_message_id" in p):
            return True
        result_type = returns[0]
        if result_type == "Message" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return self._bot_message(chat_id, v, **self._generic_content(v))
        if result_type == "Array of Message" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return [self._bot_message(chat_id, v, **self._media_content(item, v)) for item in p.get("media", [])]
        if result_type == "MessageId" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return {"message_id": self._bot_message(chat_id, v)["message_id"]}
        if result_type == "Array of MessageId" and "chat_id" in p:
            chat_id = self._chat_id(v)
            with self._lock:
                return [
                    {"message_id": self._bot_message(chat_id, v)["message_id"]}
                    for _ in p.get("message_ids", [])
                ]
        return self.spec.fake(result_type)

    def _media_content(self, item: Any, v: Validated) -> JSONDict:
        """Message content for one InputMedia item of sendMediaGroup."""
        if not isinstance(item, dict) or "media" not in item:
            return {}
        kind = str(item.get("type", "document"))
        stored = self._file_param(item["media"], kind, default_name=kind, v=v)
        content: JSONDict = {}
        if kind == "photo":
            content["photo"] = self._photo_sizes(stored)
        elif kind == "document":
            content["document"] = self._document(stored)
        elif kind in self.spec.type_fields["Message"]:
            content[kind] = self._file_object(kind, stored)
        if item.get("caption"):
            content["caption"] = item["caption"]
        return content

    def _generic_content(self, v: Validated) -> JSONDict:
        p = v.params
        content: JSONDict = {}
        if v.method == "sendLocation":
            content["location"] = {"latitude": p["latitude"], "longitude": p["longitude"]}
        elif v.method == "sendContact":
            content["contact"] = {"phone_number": p["phone_number"], "first_name": p["first_name"]}
        elif v.method == "sendDice":
            content["dice"] = {"emoji": p.get("emoji", "🎲"), "value": 1}
        message_fields = self.spec.type_fields["Message"]
        for name in ("audio", "animation", "video", "video_note", "voice", "sticker"):
            if name in p and name in message_fields:
                stored = self._file_param(p[name], name, default_name=name, v=v)
                content[name] = self._file_object(name, stored)
        return content

    def _file_object(self, message_field: str, stored: StoredFile) -> JSONDict:
        """An Audio/Video/Sticker/... object (per the spec's required fields) for a stored file."""
        obj = self.spec.fake(self.spec.type_fields["Message"][message_field]["types"][0])
        obj.update({"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(stored.data)})
        if stored.mime_type and "mime_type" in self.spec.type_fields.get(message_field.title().replace("_", ""), {}):
            obj["mime_type"] = stored.mime_type
        return obj

    # ------------------------------------------------------------------ files

    def _store_file(
        self, data: bytes, *, kind: str, mime_type: str = "", file_name: str | None = None
    ) -> StoredFile:
        number = next(self._file_counter)
        extension = {
            "photo": ".jpg",
            "sticker": ".webp",
            "voice": ".oga",
            "video_note": ".mp4",
            "video": ".mp4",
            "animation": ".mp4",
        }.get(kind)
        if extension is None:
            extension = Path(file_name or "").suffix or (mimetypes.guess_extension(mime_type or "") or "")
        folder = {"photo": "photos", "sticker": "stickers", "voice": "voice"}.get(kind, f"{kind}s")
        prefix = {"photo": "AgAC", "document": "BQAC", "sticker": "CAAC", "voice": "AwAC"}.get(kind, "BAAC")
        stored = StoredFile(
            file_id=f"{prefix}AgIAAxkB{number:08d}{secrets.token_urlsafe(18)}",
            file_unique_id=f"AQAD{number:08d}",
            file_path=f"{folder}/file_{number}{extension}",
            data=data,
            mime_type=mime_type,
            file_name=file_name,
        )
        with self._lock:
            self._files[stored.file_id] = stored
            self._files_by_path[stored.file_path] = stored
        return stored

    def file_content(self, file_id: str) -> bytes:
        """The bytes of a file the server knows (uploaded by a user or by the bot)."""
        with self._lock:
            return self._files[file_id].data

    # ------------------------------------------------------------------ queuing updates

    def _enqueue(self, update: JSONDict, *, redelivery: bool = False, deliver: bool = True) -> int:
        return self._enqueue_checked(update, redelivery=redelivery, deliver=deliver)[0]

    def _enqueue_checked(
        self, update: JSONDict, *, redelivery: bool = False, deliver: bool = True
    ) -> tuple[int, bool]:
        """Queue an update; returns its id and whether it was queued (not filtered out).

        With ``deliver=False`` the update gets its id and is remembered (``update()``), but the
        server does not deliver it: the test delivers it itself, when and as often as it likes.
        """
        with self._lock:
            update_id = update.get("update_id")
            if update_id is None:
                update_id = max(self._next_update_id, self._last_update_id + 1)
                update = {"update_id": update_id, **update}
            update_id = int(update_id)
            out_of_order = update_id <= self._last_update_id
            self._last_update_id = max(self._last_update_id, update_id)
            self._next_update_id = self._last_update_id + 1
            if not redelivery and _update_kind(update) not in self._allowed_updates:
                self.filtered_update_ids.append(update_id)
                self._history[update_id] = update
                return update_id, False
            self._history[update_id] = update
            if not deliver:
                return update_id, True
            entry = _Entry(update_id, update, _update_chat_key(update), redelivery or out_of_order)
            self._queue.append(entry)
            if entry.redelivery:
                self._redeliveries.append(entry)
            if self._webhook_url:
                self._wh_new.append(entry)
        self._schedule_wake()
        return update_id, True

    def pending_update_count(self) -> int:
        with self._lock:
            return sum(1 for e in self._queue if not self._dead(e))

    # ------------------------------------------------------------------ webhook delivery

    def _restart_webhook_workers(self) -> None:
        """(Re)start delivery after setWebhook/deleteWebhook; runs on the server loop."""
        for task in self._wh_tasks:
            task.cancel()
        self._wh_tasks = []
        self._wh_ready = asyncio.Queue()
        self._wh_chats = {}
        with self._lock:
            self._wh_generation += 1
            self._wh_new = []
            url = self._webhook_url
            pending = [e for e in self._queue if not self._dead(e)]
            workers = self._webhook_max_connections
        if not url:
            return
        loop = asyncio.get_running_loop()
        self._wh_tasks = [
            loop.create_task(self._wh_worker(), name=f"standin-webhook-{i}") for i in range(workers)
        ]
        self._wh_feed(pending)

    def _wh_feed(self, entries: Iterable[_Entry]) -> None:
        ready = self._wh_ready
        if ready is None:
            return
        for entry in entries:
            chat_queue = self._wh_chats.get(entry.chat_key)
            if chat_queue is None:
                self._wh_chats[entry.chat_key] = deque([entry])
                ready.put_nowait(entry.chat_key)
            else:
                chat_queue.append(entry)

    async def _wh_worker(self) -> None:
        """One of ``max_connections`` delivery workers, with its own keep-alive connection."""
        ready = self._wh_ready
        assert ready is not None
        client = _WebhookClient()
        try:
            while True:
                key = await ready.get()
                chat_queue = self._wh_chats.get(key)
                if chat_queue is None:
                    continue
                while chat_queue and chat_queue[0].removed:
                    chat_queue.popleft()
                if chat_queue:
                    await self._wh_deliver(client, chat_queue[0])
                    chat_queue.popleft()
                if chat_queue:
                    ready.put_nowait(key)
                else:
                    self._wh_chats.pop(key, None)
        finally:
            client.close()

    async def _wh_deliver(self, client: _WebhookClient, entry: _Entry) -> None:
        """POST one update until the webhook answers 2xx (or the update is dropped)."""
        attempt = 0
        body = _dumps(entry.update)
        while not entry.removed:
            with self._lock:
                url, secret = self._webhook_url, self._webhook_secret
            headers = {"Content-Type": "application/json"}
            if secret:
                headers["X-Telegram-Bot-Api-Secret-Token"] = secret
            error: str
            try:
                answer = await client.post(url, body, headers)
            except (OSError, EOFError, ValueError, TimeoutError, ssl.SSLError) as exc:
                client.close()
                error = f"Connection failed: {type(exc).__name__}: {exc}".strip()
            else:
                if 200 <= answer.status < 300:
                    with self._cond:
                        entry.removed = True
                        self.webhook_deliveries.append(entry.update_id)
                        while self._queue and self._dead(self._queue[0]):
                            self._queue.popleft()
                        self._cond.notify_all()
                    await self._webhook_reply(answer)
                    return
                error = f"Wrong response from the webhook: {answer.status} {answer.reason}"
            with self._lock:
                self._webhook_last_error = (int(time.time()), error)
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            attempt += 1

    async def _webhook_reply(self, answer: _HttpAnswer) -> None:
        """Telegram executes a method call given in the webhook's answer."""
        if "json" not in answer.headers.get("content-type", ""):
            return
        try:
            data = json.loads(answer.body)
        except ValueError:
            return
        if not isinstance(data, dict) or "method" not in data:
            return
        method = str(data.pop("method"))
        await self._call(method, _stringify_json_params(data), {})

    # ------------------------------------------------------------------ simulated users

    def _user(
        self,
        user_id: int,
        first_name: str,
        language_code: str | None,
        last_name: str | None,
        username: str | None,
    ) -> JSONDict:
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        return user

    def _user_message(self, chat_id: int, user: JSONDict, content: JSONDict) -> JSONDict:
        """Create and store a message from a user (call with the lock held)."""
        if chat_id > 0:
            chat: JSONDict = {"id": chat_id, "first_name": user["first_name"], "type": "private"}
            for key in ("last_name", "username"):
                if key in user:
                    chat[key] = user[key]
            self._chats[chat_id] = chat
        else:
            chat = self._chat_obj(chat_id)
        message: JSONDict = {
            "message_id": self._new_message_id(chat_id),
            "from": user,
            "chat": dict(chat),
            "date": int(time.time()),
            **content,
        }
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _user_id(self, chat_id: int, user_id: int | None) -> int:
        if user_id is not None:
            return user_id
        return chat_id if chat_id > 0 else 987_654_321

    def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        user_id: int | None = None,
        reply_to_message_id: int | None = None,
        deliver: bool = True,
    ) -> int:
        """A user sends ``text``; a leading ``/command`` gets a ``bot_command`` entity.

        ``deliver=False``: the update is made but not delivered (see ``update()``)."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, last_name, username)
        content: JSONDict = {"text": text}
        command = re.match(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?", text)
        if command:
            content["entities"] = [
                {"offset": 0, "length": _utf16_len(command.group(0)), "type": "bot_command"}
            ]
        with self._lock:
            if reply_to_message_id is not None:
                target = self._messages.get((chat_id, reply_to_message_id))
                if target is not None:
                    quoted = dict(target)
                    quoted.pop("reply_to_message", None)
                    content["reply_to_message"] = quoted
            message = self._user_message(chat_id, user, content)
        return self._enqueue({"message": message}, deliver=deliver)

    def press_button(
        self,
        chat_id: int,
        callback_data: str,
        *,
        message_id: int | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
        deliver: bool = True,
    ) -> int:
        """A user presses an inline button: a ``callback_query`` update.

        Without ``message_id`` the newest message of the chat whose current inline keyboard has a
        button with ``callback_data`` is used (AssertionError if there is none).
        ``deliver=False``: the update is made but not delivered (see ``update()``).
        """
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        with self._lock:
            message: JSONDict | None = None
            if message_id is not None:
                message = self._messages.get((chat_id, message_id))
                if message is None:
                    message = {"chat": self._chat_obj(chat_id), "message_id": message_id, "date": 0}
            else:
                seen: set[int] = set()
                for entry in reversed(self._sent.get(chat_id, [])):
                    mid = entry["message_id"]
                    if mid in seen:
                        continue
                    seen.add(mid)
                    current = self._messages.get((chat_id, mid))
                    if current is not None and callback_data in _callback_datas(current):
                        message = current
                        break
                if message is None:
                    raise AssertionError(
                        f"no message in chat {chat_id} has a button with callback_data "
                        f"{callback_data!r}; buttons now: {self.last_buttons(chat_id)}"
                    )
            query_id = f"{self.bot_user['id']}{next(self._callback_counter):010d}"
            query = {
                "id": query_id,
                "from": user,
                "message": dict(message),
                "chat_instance": str(abs(hash((chat_id, self.bot_user["id"]))) % 10**18),
                "data": callback_data,
            }
            update_id, queued = self._enqueue_checked({"callback_query": query}, deliver=deliver)
            if queued:  # a query the bot never receives (allowed_updates) needs no answer
                self._callbacks[query_id] = {
                    "chat_id": chat_id,
                    "data": callback_data,
                    "answer": None,
                    "update_id": update_id,
                }
                self._callback_by_update[update_id] = query_id
        return update_id

    def send_photo(
        self,
        chat_id: int,
        content: bytes,
        *,
        caption: str | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a photo; it is stored and its sizes reference downloadable files."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(content, kind="photo", mime_type="image/jpeg")
        with self._lock:
            extra: JSONDict = {"photo": self._photo_sizes(stored)}
            if caption:
                extra["caption"] = caption
            message = self._user_message(chat_id, user, extra)
        return self._enqueue({"message": message})

    def send_document(
        self,
        chat_id: int,
        content: bytes,
        file_name: str,
        mime_type: str,
        *,
        caption: str | None = None,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a file."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(content, kind="document", mime_type=mime_type, file_name=file_name)
        with self._lock:
            extra: JSONDict = {"document": self._document(stored)}
            if caption:
                extra["caption"] = caption
            message = self._user_message(chat_id, user, extra)
        return self._enqueue({"message": message})

    def send_sticker(
        self,
        chat_id: int,
        *,
        emoji: str = "👍",
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a (static) sticker."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(b"RIFF\x00\x00\x00\x00WEBPVP8 ", kind="sticker", mime_type="image/webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "StandInStickers",
            "file_size": len(stored.data),
        }
        with self._lock:
            message = self._user_message(chat_id, user, {"sticker": sticker})
        return self._enqueue({"message": message})

    def send_voice(
        self,
        chat_id: int,
        content: bytes = b"OggS\x00\x02stand-in voice",
        *,
        duration: int = 2,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user sends a voice message."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        stored = self._store_file(content, kind="voice", mime_type="audio/ogg")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(stored.data),
        }
        with self._lock:
            message = self._user_message(chat_id, user, {"voice": voice})
        return self._enqueue({"message": message})

    def send_location(
        self,
        chat_id: int,
        lat: float,
        lon: float,
        *,
        language_code: str = "zh-hans",
        first_name: str = "Test",
        user_id: int | None = None,
    ) -> int:
        """A user shares a location."""
        user = self._user(self._user_id(chat_id, user_id), first_name, language_code, None, None)
        location = {"latitude": float(lat), "longitude": float(lon)}
        with self._lock:
            message = self._user_message(chat_id, user, {"location": location})
        return self._enqueue({"message": message})

    def push_raw_update(self, update: JSONDict) -> int:
        """Queue any update as is (``update_id`` is assigned when missing)."""
        update = dict(update)
        with self._lock:
            for value in update.values():
                if isinstance(value, dict) and isinstance(value.get("chat"), dict):
                    chat_id = value["chat"].get("id")
                    message_id = value.get("message_id")
                    if isinstance(chat_id, int) and isinstance(message_id, int):
                        self._messages.setdefault((chat_id, message_id), value)
                        if self._next_message_id.get(chat_id, 1) <= message_id:
                            self._next_message_id[chat_id] = message_id + 1
        return self._enqueue(update)

    def update(self, update_id: int) -> JSONDict:
        """The update with this id as the server made it (delivered or not), for delivering it by hand."""
        with self._lock:
            return json.loads(_dumps(self._history[update_id]))

    def redeliver(self, update_id: int) -> None:
        """Queue the identical update again (same ``update_id``), as Telegram does on retries."""
        with self._lock:
            update = self._history[update_id]
        self._enqueue(update, redelivery=True)

    # ------------------------------------------------------------------ inspection

    def sent_messages(self, chat_id: int) -> list[JSONDict]:
        """Every message the bot sent to (or edited in) the chat, in order.

        Entries: ``message_id``, ``text`` (after entity parsing; the caption for media),
        ``reply_markup`` (parsed dict or None), ``method`` (``sendMessage``,
        ``editMessageText`` ...), plus ``raw_text``, ``parse_mode``, ``entities``, ``media``,
        ``params``, ``date``, ``chat_id``.
        """
        with self._lock:
            return [dict(e) for e in self._sent.get(chat_id, [])]

    def sent_count(self) -> int:
        with self._lock:
            return self._sent_total

    def message(self, chat_id: int, message_id: int) -> JSONDict | None:
        """The current state of a message (after edits), as Telegram would return it."""
        with self._lock:
            message = self._messages.get((chat_id, message_id))
            return None if message is None else dict(message)

    def wait_for_messages(self, chat_id: int, count: int, timeout: float = 10.0) -> list[JSONDict]:
        """Block until at least ``count`` messages were sent to the chat."""
        with self._cond:
            done = self._cond.wait_for(lambda: len(self._sent.get(chat_id, [])) >= count, timeout)
            got = [dict(e) for e in self._sent.get(chat_id, [])]
        if not done:
            texts = [(e["method"], e["text"]) for e in got]
            raise AssertionError(
                f"expected {count} message(s) in chat {chat_id} within {timeout}s, got "
                f"{len(got)}: {texts}; violations: {self.violations}; errors: {self.errors}"
            )
        return got

    def wait_for_request(self, method: str, count: int = 1, timeout: float = 10.0) -> list[JSONDict]:
        """Block until the bot called ``method`` at least ``count`` times; returns their params."""
        canonical = self.spec.canonical_method(method) or method
        with self._cond:
            done = self._cond.wait_for(
                lambda: len(self._requests_by_method.get(canonical, [])) >= count, timeout
            )
            got = list(self._requests_by_method.get(canonical, []))
        if not done:
            raise AssertionError(
                f"expected {count} {canonical} call(s) within {timeout}s, got {len(got)}; "
                f"violations: {self.violations}"
            )
        return got

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Block until ``predicate()`` holds; it is re-checked whenever the bot makes a request, a
        message is recorded or a webhook delivery succeeds."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"{what} not reached within {timeout}s; violations: {self.violations}")

    def requests_for(self, method: str) -> list[JSONDict]:
        canonical = self.spec.canonical_method(method) or method
        with self._lock:
            return list(self._requests_by_method.get(canonical, []))

    def last_buttons(self, chat_id: int) -> list[tuple[str, str]]:
        """(text, callback_data) of the newest message whose current inline keyboard is not empty.

        Buttons without callback_data show their other action (url, ...) as the second item.
        """
        with self._lock:
            seen: set[int] = set()
            for entry in reversed(self._sent.get(chat_id, [])):
                mid = entry["message_id"]
                if mid in seen:
                    continue
                seen.add(mid)
                message = self._messages.get((chat_id, mid))
                if message is None:
                    continue
                keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
                buttons = [
                    (str(b.get("text", "")), _button_action(b)) for row in keyboard for b in row
                ]
                if buttons:
                    return buttons
        return []

    def chat_actions(self, chat_id: int) -> list[str]:
        with self._lock:
            return list(self._chat_actions.get(chat_id, []))

    def deleted_messages(self, chat_id: int) -> list[int]:
        with self._lock:
            return list(self._deleted.get(chat_id, []))

    def callback_answer(self, update_id: int) -> JSONDict | None:
        """The answerCallbackQuery params for a press_button update, or None if unanswered."""
        with self._lock:
            query_id = self._callback_by_update.get(update_id)
            if query_id is None:
                raise KeyError(f"update {update_id} is not a callback query made by press_button")
            return self._callbacks[query_id]["answer"]

    def unanswered_callbacks(self) -> list[int]:
        """update_ids of press_button queries the bot has not answered yet."""
        with self._lock:
            return [q["update_id"] for q in self._callbacks.values() if q["answer"] is None]

    def my_commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code)
        with self._lock:
            return list(self._commands.get(key, []))

    @property
    def webhook_url(self) -> str:
        return self._webhook_url

    def stats(self) -> JSONDict:
        with self._lock:
            return {
                "sent": self._sent_total,
                "violations": list(self.violations),
                "errors": list(self.errors),
                "requests": len(self.requests),
                "pending_updates": self.pending_update_count(),
                "last_update_id": self._last_update_id,
                "webhook_url": self._webhook_url,
                "webhook_deliveries": len(self.webhook_deliveries),
            }

    # ------------------------------------------------------------------ faults and state

    def fail_next(
        self,
        method: str,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``count`` valid calls of ``method`` (``"*"`` = any) with an error.

        429 carries ``parameters.retry_after``; the default descriptions are Telegram's
        (``Too Many Requests: retry after N``, ``Internal Server Error``, ``Bad Gateway`` ...).
        With ``delay`` the answer comes that many seconds late: longer than the client's read
        timeout, it is a timeout (``status=504`` is the natural choice). A failed call has no
        effect (nothing is sent), also when it timed out.
        """
        if delay < 0:
            raise ValueError("delay must not be negative")
        key = "*" if method == "*" else (self.spec.canonical_method(method) or method).lower()
        with self._lock:
            self._faults.setdefault(key, deque()).append(
                _Fault(status=status, retry_after=retry_after, description=description, remaining=count,
                       delay=float(delay))
            )

    def block_user(self, chat_id: int) -> None:
        """Further sends to this chat fail with 403 "Forbidden: bot was blocked by the user"."""
        with self._lock:
            self._blocked.add(chat_id)

    def reset(self) -> None:
        """Forget logs, sent messages, callback queries, faults, blocks and pending updates.

        Files, chats, message history (ids keep increasing), commands and the webhook stay.
        """
        self._drop_pending()
        with self._cond:
            self.requests.clear()
            self.violations.clear()
            self.errors.clear()
            self.warnings.clear()
            self.webhook_deliveries.clear()
            self.filtered_update_ids.clear()
            self._sent.clear()
            self._sent_total = 0
            self._requests_by_method.clear()
            self._deleted.clear()
            self._chat_actions.clear()
            self._callbacks.clear()
            self._callback_by_update.clear()
            self._faults.clear()
            self._blocked.clear()


@dataclass(slots=True)
class _HttpAnswer:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class _WebhookClient:
    """A minimal keep-alive HTTP/1.1 client for webhook POSTs (much lighter than a general client)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._target: tuple[str, str, int] | None = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = self._target = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> _HttpAnswer:
        timeout = self.timeout
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported webhook URL {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.scheme, parts.hostname, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (head + "Connection: keep-alive\r\n\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            reused = self._writer is not None and self._target == target
            if not reused:
                self.close()
                context = ssl.create_default_context() if parts.scheme == "https" else None
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(parts.hostname, port, ssl=context), timeout
                )
                self._target = target
            try:
                return await asyncio.wait_for(self._exchange(request), timeout)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if not reused or attempt == 2:  # a kept-alive connection may have been closed: retry once
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, request: bytes) -> _HttpAnswer:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(request)
        await writer.drain()
        status_line = (await reader.readuntil(b"\r\n")).decode("latin-1").rstrip("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code)
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close" and version != "HTTP/1.0"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            payload = b"".join(chunks)
        elif "content-length" in headers:
            payload = await reader.readexactly(int(headers["content-length"]))
        elif status in (204, 304) or status < 200:
            payload = b""
        else:
            payload = await reader.read()
            keep_alive = False
        if not keep_alive:
            self.close()
        return _HttpAnswer(status, reason or HTTPStatus(status).phrase, headers, payload)


def _stringify_json_params(data: JSONDict) -> JSONDict:
    """JSON body values as the Bot API sees them: strings stay, the rest becomes JSON text."""
    out: JSONDict = {}
    for key, value in data.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return out


def _button_action(button: JSONDict) -> str:
    if "callback_data" in button:
        return str(button["callback_data"])
    for key, value in button.items():
        if key not in _INLINE_BUTTON_PASSIVE_FIELDS:
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""


def _callback_datas(message: JSONDict) -> set[str]:
    keyboard = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return {str(b["callback_data"]) for row in keyboard for b in row if "callback_data" in b}


# --------------------------------------------------------------------------------------------
# process entry point


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stand-in Telegram Bot API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123456:TEST-token")
    parser.add_argument("--spec", type=Path, default=None, help="path of api.json")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    server = TelegramStandIn(token=args.token, spec_path=args.spec, host=args.host, port=args.port)
    server.start()
    print(f"telegram stand-in listening on {server.root_url} (token {server.token})", flush=True)
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
