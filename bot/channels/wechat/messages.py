"""WeChat's XML: parsing callbacks safely, passive-reply XML, rendering replies as text with numbered
choices, splitting long text, and turning a callback's fields into an `Inbound`."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn
from xml.parsers import expat

from handlers.texts import Texts, written_language
from handlers.types import Attachment, Inbound, Outbound, coordinates, parse_command
from handlers.validation import whole_number

CHANNEL = "wechat"
MAX_TEXT_BYTES = 2048
"""The longest text WeChat takes in one message (longer ones fail with 45002)."""
MENU_COMMANDS = {"REPORT": "report", "STATUS": "status", "HELP": "help"}


class CallbackRejected(Exception):
    """A callback we do not act on; `status` is the HTTP answer (4xx)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- XML --------------------------------------------------------------------------------------


class _Refused(Exception):
    pass


def _refuse(*_args: object) -> NoReturn:
    raise _Refused("DTDs and entity declarations are not accepted")


def parse_xml(data: bytes, *, max_fields: int = 200) -> dict[str, str]:
    """The fields of a WeChat message `<xml><Name>value</Name>…</xml>`; nested ones as `Outer.Inner`, the n-th
    of repeated `<List>` items as `Outer.List<n>.Inner`.

    The stdlib expat parser with every DTD refused: a document with `<!DOCTYPE` (where entity
    definitions, and so entity-expansion bombs and external entities, would live) is rejected before
    anything is expanded. WeChat never sends one. This is what defusedxml does, without the package.
    Raises `CallbackRejected(400)` for anything that is not such a message.
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.buffer_text = True
    path: list[str] = []
    texts: list[list[str]] = []
    fields: dict[str, str] = {}

    lists: dict[str, int] = {}

    def start(name: str, _attributes: dict[str, str]) -> None:
        if not path and name != "xml":
            raise _Refused(f"root element <{name}>, not <xml>")
        if len(path) >= 4 or len(fields) >= max_fields:
            raise _Refused("too deep or too many fields")
        if name == "List":  # repeated items (subscription events): List0, List1, …
            parent = ".".join(path)
            lists[parent] = lists.get(parent, -1) + 1
            name = f"List{lists[parent]}"
        path.append(name)
        texts.append([])

    def end(_name: str) -> None:
        text = "".join(texts.pop())
        if len(path) > 1:
            name = ".".join(path[1:])
            fields[name] = text if name == "Content" else text.strip()
        path.pop()

    def characters(text: str) -> None:
        if texts:
            texts[-1].append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(data, True)
    except (_Refused, expat.ExpatError) as problem:
        raise CallbackRejected(400, f"malformed XML: {problem}") from None
    return fields


_XML_FORBIDDEN = {code: None for code in (*range(0, 9), 11, 12, *range(14, 32), 0xFFFE, 0xFFFF)}


def cdata(text: str) -> str:
    clean = text.translate(_XML_FORBIDDEN)
    return "<![CDATA[" + clean.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply_xml(to_user: str, from_user: str, content: str, create_time: int | None = None) -> str:
    return (f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{cdata(content)}</Content></xml>")


# --- rendering --------------------------------------------------------------------------------


def _looks_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def reads_english(text: str | None) -> bool:
    """Whether a resident's text is English (three words or more, no Chinese): her language, which WeChat does not
    tell (`handlers.texts.written_language`, with the shorter texts a hint may answer)."""
    return text is not None and written_language(text, english_words=3) == "en"


def _choice_number(key: str, position: int) -> int:
    """A choice's number. A rating option answers to its value (the dialog reads a typed digit in
    the rating question as the stars), everything else to its position."""
    stars = whole_number(key[5:]) if key.startswith("rate:") else None
    return position if stars is None else stars


OfferLink = Callable[[int], str | None]
"""The one-time subscription authorisation link for a case, or None when the account has no such template."""


def render_message(message: Outbound, texts: Texts, offer_link: OfferLink | None = None) -> str:
    """A dialog message as WeChat text: its choices as numbered lines and a hint to reply with one, and,
    where the message offers notices about a case, the link to subscribe to them.

    The hint's language is the message's (or, where it does not say, guessed from its text).
    """
    lines = [message.text]
    locale = message.locale or ("zh" if _looks_chinese(message.text) else "en")
    if message.notice_offer is not None and offer_link is not None:
        link = offer_link(message.notice_offer)
        # without a one-time notice to subscribe to, she is told at least why news may wait for her next message
        lines.append(texts.get(locale, "wechat_subscribe_offer", link=link) if link else
                     texts.get(locale, "wechat_window_note"))
    if not message.choices:
        return "\n".join(lines)
    lines += [f"{_choice_number(choice.key, position)}. {choice.label}"
              for position, choice in enumerate(message.choices, 1)]
    lines.append(texts.get(locale, "wechat_choice_hint"))
    return "\n".join(lines)


def render_replies(messages: list[Outbound], texts: Texts, offer_link: OfferLink | None = None) -> str:
    """One dialog step's messages as one text: WeChat answers a message once and counts every
    customer-service message against a small quota."""
    return "\n\n".join(text for text in (render_message(m, texts, offer_link) for m in messages) if text)


def _prefix_within(text: str, limit: int) -> int:
    size = 0
    for index, char in enumerate(text):
        size += len(char.encode())
        if size > limit:
            return max(index, 1)
    return len(text)


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut between lines where possible."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode()) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current)
        while len(line.encode()) > limit:
            cut = _prefix_within(line, limit)
            chunks.append(line[:cut])
            line = line[cut:]
        current = line
    if current.strip():
        chunks.append(current)
    return [chunk for chunk in chunks if chunk.strip()]


# --- inbound ----------------------------------------------------------------------------------


Fetcher = Callable[[str], Callable[[], Awaitable[bytes]]]


def _location_place(fields: Mapping[str, str]) -> str | None:
    """The address WeChat gives a shared location (`Label`), or its coordinates (`Location_X` is the latitude)."""
    label = " ".join(fields.get("Label", "").split())
    if label:
        return label
    try:
        latitude, longitude = float(fields.get("Location_X", "")), float(fields.get("Location_Y", ""))
    except ValueError:
        return None
    return coordinates(latitude, longitude)


UNSUPPORTED_PLACEHOLDER = re.compile(r"[【\[]收到不支持的消息类型，暂无法显示[】\]]")
"""The text WeChat posts in place of what it does not pass on to official accounts (custom stickers, mostly)."""


_ENVELOPE = frozenset({"ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "Encrypt"})


def _key_without_msgid(fields: Mapping[str, str], user: str, created: str, msg_type: str) -> str:
    """A message WeChat gave no MsgId is known by its sender, second, type and a digest of what it carries: a
    redelivery has the same key, and a second message of the same second (a photo right after a text) another."""
    content = "\x1f".join(f"{name}={fields[name]}" for name in sorted(set(fields) - _ENVELOPE))
    return f"{user}:{created}:{msg_type}:{hashlib.sha256(content.encode()).hexdigest()[:16]}"


def _shared_link(fields: Mapping[str, str]) -> str:
    """A link message's title, summary and address, a line each (what the resident shared and where it is)."""
    parts = (" ".join(fields.get(name, "").split()) for name in ("Title", "Description", "Url"))
    return "\n".join(part for part in parts if part)


def to_inbound(fields: Mapping[str, str], fetcher: Fetcher) -> Inbound | None:
    """The channel-neutral form of a WeChat message or event; None for events the dialog ignores."""
    user = fields.get("FromUserName", "")
    msg_type = fields.get("MsgType", "").lower()
    created = fields.get("CreateTime", "")
    if not user or not msg_type or whole_number(created) is None or len(user) > 128:
        raise CallbackRejected(400, "not a WeChat message (FromUserName, MsgType, CreateTime)")
    if msg_type == "event":
        event = fields.get("Event", "").lower()
        key = f"{user}:{created}:{event}:{fields.get('EventKey', '')}"[:128]
        if event == "subscribe":
            return Inbound(CHANNEL, user, command="start", update_key=key)
        clicked = MENU_COMMANDS.get(fields.get("EventKey", "")) if event == "click" else None
        if clicked is None:
            return None
        return Inbound(CHANNEL, user, command=clicked, update_key=key)
    msg_id = fields.get("MsgId", "")
    key = msg_id if whole_number(msg_id) is not None else _key_without_msgid(fields, user, created, msg_type)
    if msg_type == "text":
        text = fields.get("Content", "")
        if UNSUPPORTED_PLACEHOLDER.fullmatch(text.strip()):  # a sticker, as WeChat hands it to an account
            return Inbound(CHANNEL, user, attachment=Attachment("sticker"), update_key=key)
        command = parse_command(text)
        if command is not None:
            return Inbound(CHANNEL, user, command=command[0], command_arg=command[1], update_key=key)
        return Inbound(CHANNEL, user, text=text, update_key=key)
    if msg_type == "link" and (shared := _shared_link(fields)):  # an article shared into the chat, as text
        return Inbound(CHANNEL, user, text=shared, update_key=key)
    heard = fields.get("Recognition", "").strip() if msg_type == "voice" else ""
    if heard:  # 接收语音识别结果: WeChat sends the words of a voice message; they are the resident's answer
        return Inbound(CHANNEL, user, text=heard, update_key=key)
    attachment: Attachment
    if msg_type == "image" and fields.get("MediaId"):
        attachment = Attachment("photo", fetch=fetcher(fields["MediaId"]))
    elif msg_type == "voice":
        attachment = Attachment("voice")
    elif msg_type in ("video", "shortvideo"):
        attachment = Attachment("video")
    elif msg_type == "location":
        attachment = Attachment("location", place=_location_place(fields))
    else:
        attachment = Attachment("other")
    return Inbound(CHANNEL, user, attachment=attachment, update_key=key)


def subscription_choices(fields: dict[str, str]) -> list[tuple[str, str]]:
    """(template id, "accept" or "reject") of a `subscribe_msg_popup_event` or `subscribe_msg_change_event`,
    whose items WeChat wraps in `SubscribeMsgPopupEvent` (its documentation shows that name for the change
    event too) or `SubscribeMsgChangeEvent`."""
    choices = []
    for wrapper in ("SubscribeMsgPopupEvent", "SubscribeMsgChangeEvent"):
        number = 0
        while f"{wrapper}.List{number}.TemplateId" in fields:
            template_id = fields[f"{wrapper}.List{number}.TemplateId"]
            status = fields.get(f"{wrapper}.List{number}.SubscribeStatusString", "").lower()
            if template_id and status in ("accept", "reject"):
                choices.append((template_id, status))
            number += 1
    return choices
