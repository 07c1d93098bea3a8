"""What one dialog step works with: the services it may call and the turn's own state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.city import CityConfig
from handlers.routing import RouteDecision
from handlers.texts import Texts
from handlers.types import Choice, Inbound, Outbound
from handlers.validation import Invalid, named_option
from storage.models import ConversationState, utcnow

Router = Callable[[str, str | None], Awaitable[RouteDecision]]


@dataclass
class DialogContext:
    """Long-lived services for the dialog, built once by the application."""

    city: CityConfig
    texts: Texts
    secret_key: bytes
    evidence_dir: Path
    route: Router
    clock: Callable[[], datetime] = utcnow

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.city.timezone)


@dataclass
class Turn:
    """One inbound message being handled: the session, the resident's conversation and the reply."""

    session: AsyncSession
    inbound: Inbound
    conversation: ConversationState
    ctx: DialogContext
    messages: list[Outbound] = field(default_factory=list)
    #: what the earlier steps of the burst this message continues recorded (an album's files taken and refused,
    #: a cut text's parts), where it continues one whose replies were still held; None otherwise
    continued: dict[str, Any] | None = None
    #: this step's record for a further message of the same burst, where the channel may send one; None otherwise
    gathering: dict[str, Any] | None = None

    @property
    def locale(self) -> str:
        return self.conversation.locale or "zh"

    def t(self, key: str, **values: object) -> str:
        return self.ctx.texts.get_on(self.inbound.channel, self.locale, key, **values)

    def words(self, key: str) -> list[str]:
        """The words a text lists for typing an answer ("完成|跳过|done"), in the resident's language."""
        return [word for word in self.t(key).split("|") if word.strip()]

    def typed_one_of(self, text: str | None, words_key: str) -> bool:
        """Whether `text` is one of the words the texts list under `words_key` ("完成|跳过|done"), as typed (its
        letters: "完成。" and "Done!" count)."""
        return named_option(text, ([word, word] for word in self.words(words_key))) is not None

    @property
    def parts(self) -> int:
        """How many messages the text being answered came in: more than one for a pasted text the resident's app
        cut, gathered whole (`dialog._gather`)."""
        cut = self.gathering if self.gathering is not None and self.gathering.get("group") is None else None
        return int(cut.get("parts", 1)) if cut is not None else 1

    def refusal(self, problem: Invalid, parts_key: str = "error_description_long_parts") -> str:
        """What a check refused, said: a text over its limit that came in several messages is said to have, with
        the whole's length (`parts_key`), so the resident knows it was judged whole."""
        if problem.text_key == "error_description_long" and self.parts > 1:
            return self.t(parts_key, parts=self.parts, **problem.values)
        return self.t(problem.text_key, **problem.values)

    def say(self, text: str, *, notice_offer: int | None = None, restated: bool = False) -> None:
        self.messages.append(Outbound(text, notice_offer=notice_offer, locale=self.locale, restated=restated))

    def ask(self, text: str, choices: list[Choice] | None = None, columns: int = 1) -> None:
        """A question; its choices are remembered so a typed number or label also answers it."""
        self.messages.append(Outbound(text, tuple(choices or ()), columns, locale=self.locale, restated=True))
        context = dict(self.conversation.context or {})
        context["choices"] = [[c.key, c.label] for c in choices or ()]
        self.conversation.context = context

    def set_state(self, state: str) -> None:
        self.conversation.state = state

    @property
    def draft(self) -> dict[str, Any]:
        return self.conversation.draft or {}

    def update_draft(self, **changes: Any) -> None:
        draft = dict(self.conversation.draft or {})
        draft.update(changes)
        self.conversation.draft = draft
        self.conversation.draft_updated_at = self.ctx.clock()

    def clear_draft(self) -> None:
        self.conversation.draft = {}
        self.conversation.draft_updated_at = None

    def context_get(self, key: str) -> Any:
        return (self.conversation.context or {}).get(key)

    def context_set(self, **changes: Any) -> None:
        context = dict(self.conversation.context or {})
        for key, value in changes.items():
            if value is None:
                context.pop(key, None)
            else:
                context[key] = value
        self.conversation.context = context

    def local_now(self) -> datetime:
        return self.ctx.clock().astimezone(self.ctx.tz)

    def format_time(self, moment: datetime) -> str:
        return moment.astimezone(self.ctx.tz).strftime("%Y-%m-%d %H:%M")

    def format_day(self, moment: datetime) -> str:
        return moment.astimezone(self.ctx.tz).strftime("%Y-%m-%d")
