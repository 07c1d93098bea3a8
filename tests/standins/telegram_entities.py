"""Telegram's message formatting for the stand-in Bot API server: parse_mode HTML, MarkdownV2 and
Markdown into text and entities, mirroring tdlib's parsers closely enough to reject what Telegram
rejects, with Telegram's own error texts. Offsets and lengths count UTF-16 code units."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

JSONDict = dict[str, Any]


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _char_u16(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))



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


