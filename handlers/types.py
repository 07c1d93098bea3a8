"""What channels hand to the dialog and what they get back: no transport detail crosses this line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

AttachmentKind = Literal["photo", "document", "sticker", "voice", "video", "audio", "location", "contact", "other"]


@dataclass(frozen=True)
class SharedContact:
    """A contact card the resident shared (Telegram's "share contact"): a name and a phone number, and whether
    it is their own — the platform says the card belongs to the sender."""

    name: str
    phone: str
    own: bool


@dataclass(frozen=True)
class Attachment:
    """A file the resident sent; `fetch` downloads its bytes only when the dialog accepts it."""

    kind: AttachmentKind
    media_type: str | None = None
    size_bytes: int | None = None
    file_name: str | None = None
    fetch: Callable[[], Awaitable[bytes]] | None = None
    place: str | None = None
    """A shared location's address (or its coordinates, without one): the answer to "where", where that is
    the question."""
    contact: SharedContact | None = None
    """A shared contact card: the answer to "your name and number", where that is the question."""


def coordinates(latitude: float, longitude: float) -> str | None:
    """A shared location without an address, as the place staff read (and can map); None outside the globe."""
    return f"{latitude:.5f}, {longitude:.5f}" if abs(latitude) <= 90 and abs(longitude) <= 180 else None


@dataclass(frozen=True)
class Inbound:
    channel: str
    user_ref: str
    locale: str | None = None
    text: str | None = None
    choice: str | None = None
    attachment: Attachment | None = None
    command: str | None = None
    command_arg: str | None = None
    update_key: str | None = None
    #: the key the platform gives the files sent together in one go (Telegram's album, its `media_group_id`):
    #: their steps are answered once (`dialog.handle`'s `gather`)
    group: str | None = None
    #: a text as long as the channel's apps cut a pasted text at: its rest may follow in further messages
    may_be_cut: bool = False
    #: the message's number in the chat and when the platform says it was sent (Telegram's `message_id` and `date`),
    #: where the channel knows them: the rest of a cut text is the chat's next message, sent moments after
    sequence: int | None = None
    sent_at: datetime | None = None
    #: the client's IP address where the channel knows it, for the per-address limits: the resident's own
    #: (the web chat) or a platform server that relays many residents (`shared_address`, WeChat's callbacks)
    client_ip: str | None = None
    shared_address: bool = False


@dataclass(frozen=True)
class Choice:
    key: str
    label: str


@dataclass(frozen=True)
class Outbound:
    text: str
    choices: tuple[Choice, ...] = ()
    columns: int = 1
    #: a case whose progress notices the resident may subscribe to here (a channel with a reply window,
    #: WeChat, adds its authorisation link; others ignore it)
    notice_offer: int | None = None
    #: the language it is in, where known (a channel that adds words of its own, WeChat's "reply with a number",
    #: adds them in it); not stored with a payload, and not part of a message's equality
    locale: str | None = field(default=None, compare=False)
    #: what the next step of the same burst says anew (a question, a running count): when that step takes this
    #: one's held replies back, it is not repeated; other replies (a file refused, and why) are
    restated: bool = field(default=False, compare=False)

    def to_payload(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "text": self.text,
            "choices": [[c.key, c.label] for c in self.choices],
            "columns": self.columns,
        }
        if self.notice_offer is not None:
            payload["notice_offer"] = self.notice_offer
        if self.restated:
            payload["restated"] = True
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, object]) -> Outbound:
        raw_choices = payload.get("choices") or []
        assert isinstance(raw_choices, list)
        columns = payload.get("columns", 1)
        offer = payload.get("notice_offer")
        return cls(
            text=str(payload["text"]),
            choices=tuple(Choice(str(k), str(v)) for k, v in raw_choices),
            columns=int(columns) if isinstance(columns, int) else 1,
            notice_offer=offer if isinstance(offer, int) else None,
            restated=payload.get("restated") is True,
        )


Packer = Callable[[list[Outbound]], list[dict[str, object]]]
"""How a channel that sends later wants a step's replies stored: one payload per message, or fewer."""


@dataclass
class Reply:
    messages: list[Outbound] = field(default_factory=list)

    def add(self, text: str, choices: tuple[Choice, ...] = (), columns: int = 1) -> None:
        self.messages.append(Outbound(text, choices, columns))


def parse_command(text: str) -> tuple[str, str | None] | None:
    """`/status 1234 5678` → ("status", "1234 5678"): after a leading slash (or the full-width "／" of a Chinese
    keyboard, as the web chat's page reads it too) the command's name and, after a space or a line break, its
    argument; None for a text that is no command ("hello /report", "/", "/ status")."""
    stripped = text.strip()
    if stripped[:1] not in ("/", "／") or not stripped[1:2] or stripped[1].isspace():
        return None
    head, *rest = stripped[1:].split(maxsplit=1)
    return head.lower(), (rest[0].strip() if rest else "") or None
