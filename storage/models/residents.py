"""The residents' side: conversations, processed updates and callbacks, receipt-code guesses, client events,
notice consents and the outbox of messages to them (and to staff channels)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import event as orm_event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from storage.crypto import EncryptedJSON, EncryptedText, PseudonymisedKey, keyring_of
from storage.models.base import Base, utcnow

CASE_STATES = ("case_menu", "follow_up", "rating", "rating_comment", "appeal")
"""The dialog's states that act on the case the conversation opened (`context["case_id"]`): `handlers.tracking`
answers in them, and the retention's erasure takes a conversation out of them (`storage.housekeeping`)."""
RESTING_STATES = ("idle", "case_menu", "status_code")
"""The dialog's states in which a conversation is in the middle of nothing a notice would cut short (at the menu, at a
case's menu, asked for a receipt code): a notice about a case that asks the reporter something (a rating, more
information) makes such a conversation wait for the answer about that case (`storage.loop`); a conversation in any
other state (filing a report, adding information, rating another case, choosing a language) is left where it is."""
DRAFTLESS_STATES = (*RESTING_STATES, "follow_up", "rating", "language")
"""The dialog's states that do not need the report draft: when an unfinished draft expires (`storage.housekeeping`),
a conversation in one of them stays where it is, one in any other state (a step of the report wizard, the offer to
resume it) goes back to `idle`. The resting states among them by construction: a conversation at rest is filing
nothing."""


class Conversation(Base):
    """One resident on one channel: where they are in the dialog and their unfinished draft.

    `user_key` (the keyed pseudonym of channel and user id) is what lookups use; `user_ref`, the address
    messages go to, and the draft are stored encrypted (storage/crypto.py).
    """

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel", "user_key", name="uq_conversation_user_key"),
                      Index("ix_conversations_updated_at", "updated_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    user_key: Mapped[str] = mapped_column(String(64))
    user_ref: Mapped[str] = mapped_column(EncryptedText("conversations.user_ref"))
    locale: Mapped[str | None] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(32), default="idle")
    draft: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("conversations.draft"), default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    draft_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(slots=True)


class ConversationState:
    """A conversation as a dialog step reads and changes it: `actions.load_conversation` gives it out and
    `actions.save_conversation` writes it back. A plain object, not a tracked `Conversation`: building an
    ORM instance cost a tenth of a step's CPU (docs/benchmarks-telegram.md)."""

    id: int
    channel: str
    user_key: str
    user_ref: str
    locale: str | None
    state: str
    draft: dict[str, Any]
    context: dict[str, Any]
    draft_updated_at: datetime | None
    notices_waiting: bool = False
    """Whether notices wait in the outbox for the resident's next message (read with the conversation)."""


class ProcessedUpdate(Base):
    """Channel updates already handled, so a redelivered one does nothing. A WeChat event's key holds the
    openid, so only a keyed hash of the key is stored."""

    __tablename__ = "processed_updates"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    update_key: Mapped[str] = mapped_column(PseudonymisedKey(), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CallbackNonce(Base):
    """A signed platform callback already accepted, by its (timestamp, nonce): a replay within the
    clock-skew window is refused by every process, unless it repeats the first body exactly (the platform
    resending a request it got no answer to; `body_hash` is a keyed hash of that body). Rows older than the
    window are pruned."""

    __tablename__ = "callback_nonces"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    nonce_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    body_hash: Mapped[str | None] = mapped_column(String(64))


class StatusGuess(Base):
    """A wrong receipt code entered by a resident (by their pseudonym); recent ones throttle further guesses."""

    __tablename__ = "status_guesses"
    __table_args__ = (Index("ix_status_guess_user_time", "channel", "user_key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    user_key: Mapped[str] = mapped_column(String(128))  # 64 characters; the column was widened for the old refs
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClientEventKind(StrEnum):
    REPORT = "report"
    WRONG_CODE = "wrong_code"


class ClientEvent(Base):
    """A report filed or a wrong receipt code entered from one client address (by its keyed hash, see
    storage/client_limits.py)."""

    __tablename__ = "client_events"
    __table_args__ = (Index("ix_client_events_key_time", "kind", "client_key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    client_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class NoticeConsent(Base):
    """A resident's consent to be notified outside a platform's reply window: WeChat's subscription notices
    (订阅通知, per template; one-time ones allow one notice per accept) and one-time subscription messages
    (一次性订阅消息, per case and scene). Found by the pseudonym of the resident's channel address."""

    __tablename__ = "notice_consents"
    __table_args__ = (Index("ix_notice_consents_user", "channel", "user_key", "template_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    user_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # "subscribe" (订阅通知) or "once" (一次性订阅消息)
    template_id: Mapped[str] = mapped_column(String(128))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    scene: Mapped[int | None] = mapped_column(Integer)
    long_term: Mapped[bool] = mapped_column(Boolean, default=False)
    remaining: Mapped[int] = mapped_column(Integer, default=1)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None]


class OutboxStatus(StrEnum):
    PENDING = "pending"  # queued, or being retried
    SENT = "sent"
    WAITING = "waiting"  # the platform will not take it now (WeChat's 48 hours): goes with the resident's next message
    FAILED = "failed"  # given up, with the platform's reason in last_error


class OutboxMessage(Base):
    """A message to a resident or a staff group, written in the transaction that caused it and delivered by
    a worker.

    The payload (a dialog reply can quote the report, the receipt code or the reporter's name) is encrypted
    and emptied once the message is delivered; so is the recipient's address, deterministically, because
    delivery compares recipients in SQL to keep each one's messages in order. A dialog reply belongs to its
    conversation and goes with it; delivered rows are deleted after `limits.outbox_retention_hours`."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"), Index("ix_outbox_case", "case_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(EncryptedText("outbox.recipient", deterministic=True), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("outbox.payload"))  # replies quote the report
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                        index=True)
    #: "reply" (a dialog step's answer) or the notice's name ("answer", "status_changed", …): kept after the
    #: payload is emptied, so the ticket shows what each delivery state is about
    kind: Mapped[str] = mapped_column(String(20), default="reply")
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


@orm_event.listens_for(Conversation, "before_insert")


def _conversation_pseudonym(_mapper: Mapper[Any], connection: Connection, target: Conversation) -> None:
    if target.user_key is None:
        target.user_key = keyring_of(connection.dialect).pseudonym(target.channel, target.user_ref)
