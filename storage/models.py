"""SQLAlchemy models. Times are timezone-aware UTC; relationships never load implicitly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import event as orm_event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from storage.crypto import EncryptedJSON, EncryptedText, PseudonymisedKey, keyring_of


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back an aware datetime, also from SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class CaseStatus(StrEnum):
    RECEIVED = "received"
    ROUTED = "routed"
    ACCEPTED = "accepted"
    IN_HANDLING = "in_handling"
    ANSWERED = "answered"
    CLOSED = "closed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


CLOSED_STATUSES = frozenset({CaseStatus.CLOSED, CaseStatus.REJECTED, CaseStatus.DUPLICATE})


class TraceKind(StrEnum):
    """Events of a case's trace; all of them are visible to the reporter."""

    RECEIVED = "received"
    ROUTED = "routed"
    ACCEPTED = "accepted"
    IN_HANDLING = "in_handling"
    ANSWERED = "answered"
    CLOSED = "closed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    FOLLOW_UP = "follow_up"
    RATED = "rated"


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


class ProcessedUpdate(Base):
    """Channel updates already handled, so a redelivered one does nothing. A WeChat event's key holds the
    openid, so only a keyed hash of the key is stored."""

    __tablename__ = "processed_updates"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    update_key: Mapped[str] = mapped_column(PseudonymisedKey(), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CallbackNonce(Base):
    """A signed platform callback already accepted, by its (timestamp, nonce): a replay within the
    clock-skew window is refused by every process. Rows older than the window are pruned."""

    __tablename__ = "callback_nonces"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    nonce_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Case(Base):
    """A submitted report. The text, the reporter's name, phone and channel address (`reporter_ref`) are
    stored encrypted; `reporter_key`, the pseudonym of channel and user id, is what limits count by."""

    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_reporter_key", "channel", "reporter_key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    receipt_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    reporter_ref: Mapped[str] = mapped_column(EncryptedText("cases.reporter_ref"))
    reporter_key: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8))
    district: Mapped[str | None] = mapped_column(String(40))
    place: Mapped[str] = mapped_column(EncryptedText("cases.place"))
    occurred: Mapped[str] = mapped_column(EncryptedText("cases.occurred"))
    description: Mapped[str] = mapped_column(EncryptedText("cases.description"))
    anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    reporter_name: Mapped[str | None] = mapped_column(EncryptedText("cases.reporter_name"))
    reporter_phone: Mapped[str | None] = mapped_column(EncryptedText("cases.reporter_phone"))
    status: Mapped[str] = mapped_column(String(20), default=CaseStatus.RECEIVED, index=True)
    queue: Mapped[str] = mapped_column(String(60), index=True)
    label: Mapped[str | None] = mapped_column(String(40))
    label_confidence: Mapped[float | None] = mapped_column(Float)
    label_top: Mapped[list[Any] | None] = mapped_column(JSON)
    label_terms: Mapped[list[Any] | None] = mapped_column(EncryptedJSON("cases.label_terms"))  # the report's words
    model_version: Mapped[str | None] = mapped_column(String(40))
    label_status: Mapped[str | None] = mapped_column(String(12))  # None, "confirmed" or "corrected"
    predicted_label: Mapped[str | None] = mapped_column(String(40))
    rating: Mapped[int | None] = mapped_column(Integer)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    routed_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    accept_due_at: Mapped[datetime | None]
    resolve_due_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    #: the version of the search terms indexed for this case (`storage.search.INDEX_VERSION`); None: not yet
    search_version: Mapped[int | None] = mapped_column(Integer)

    trace: Mapped[list[TraceEvent]] = relationship(
        back_populates="case", lazy="raise", order_by="TraceEvent.id", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="case", lazy="raise", order_by="Attachment.id"
    )


class CaseTerm(Base):
    """The search index of a case: keyed hashes of the words of its place and description (and of what the
    reporter added), so console search finds cases without readable text at rest. A hash is HMAC-SHA256
    of the normalised word under a key derived from the pseudonym key, cut to 63 bits."""

    __tablename__ = "case_terms"
    __table_args__ = (Index("ix_case_terms_case", "case_id"),)

    term: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)


class TraceEvent(Base):
    __tablename__ = "trace_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    body: Mapped[str | None] = mapped_column(EncryptedText("trace_events.body"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(40), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="trace", lazy="raise")


class Attachment(Base):
    """An evidence file: uploaded into a draft first (no case yet), then attached on submit."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    trace_event_id: Mapped[int | None] = mapped_column(ForeignKey("trace_events.id", ondelete="SET NULL"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"))
    stored_name: Mapped[str] = mapped_column(String(200))
    original_name: Mapped[str | None] = mapped_column(EncryptedText("attachments.original_name"))
    media_type: Mapped[str] = mapped_column(String(80))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: the keyed hash of the client address a draft's file came from (where known), for the draft quotas
    client_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case | None] = relationship(back_populates="attachments", lazy="raise")


class OutboxMessage(Base):
    """A message to a resident or a staff group, written in the transaction that caused it and delivered by
    a worker.

    The payload (a dialog reply can quote the report, the receipt code or the reporter's name) is encrypted
    and emptied once the message is delivered; so is the recipient's address, deterministically, because
    delivery compares recipients in SQL to keep each one's messages in order. A dialog reply belongs to its
    conversation and goes with it; delivered rows are deleted after `limits.outbox_retention_hours`."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(EncryptedText("outbox.recipient", deterministic=True), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("outbox.payload"))  # replies quote the report
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                        index=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class StatusGuess(Base):
    """A wrong receipt code entered by a resident (by their pseudonym); recent ones throttle further guesses."""

    __tablename__ = "status_guesses"
    __table_args__ = (Index("ix_status_guess_user_time", "channel", "user_key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    user_key: Mapped[str] = mapped_column(String(64))
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


class StaffRole(StrEnum):
    REVIEWER = "reviewer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(12))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    #: the TOTP time-step of the last code accepted: a code is good once, not again within its 90 seconds
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    #: the password was generated or set by someone else: the console asks for a new one before anything else
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)

    queues: Mapped[list[QueueAssignment]] = relationship(lazy="raise", cascade="all, delete-orphan")


class QueueAssignment(Base):
    __tablename__ = "queue_assignments"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    queue: Mapped[str] = mapped_column(String(60), primary_key=True)


class StaffSession(Base):
    """A console login: the cookie carries the token, the database only its hash."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    second_factor_done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ip: Mapped[str | None] = mapped_column(String(64))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class InternalNote(Base):
    """Staff-only notes on a case; never shown to the reporter."""

    __tablename__ = "internal_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(EncryptedText("internal_notes.body"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who saw or did what, when: written in the transaction of the action it records."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(40), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("audit_log.detail"), default=dict)  # reasons
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class LoginFailure(Base):
    """A failed console login from one client address (by its keyed hash, as in storage/client_limits.py):
    the address throttle counts these rows, so it holds across every process."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_time", "client_key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CaseView(Base):
    """When a staff member last opened a case: new information from the reporter after it is unread."""

    __tablename__ = "case_views"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffNotice(Base):
    """A notice to one staff member in the console (the reporter added information to a case of theirs);
    read once they open the case."""

    __tablename__ = "staff_notices"
    __table_args__ = (Index("ix_staff_notices_user_unread", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]


class CannedReply(Base):
    """A prepared answer to reporters of one queue, kept by supervisors in the console."""

    __tablename__ = "canned_replies"
    __table_args__ = (Index("ix_canned_replies_queue", "queue"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue: Mapped[str] = mapped_column(String(60))
    title: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobRun(Base):
    """The last run of a scheduled job, so a schedule fires once across workers."""

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_run_at: Mapped[datetime]


class WeChatAccessToken(Base):
    """The Official Account's API access token, shared by every process: each token WeChat issues
    retires the previous one within minutes, so processes must not fetch their own."""

    __tablename__ = "wechat_access_tokens"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)


@orm_event.listens_for(Conversation, "before_insert")
def _conversation_pseudonym(_mapper: Mapper[Any], connection: Connection, target: Conversation) -> None:
    if target.user_key is None:
        target.user_key = keyring_of(connection.dialect).pseudonym(target.channel, target.user_ref)


@orm_event.listens_for(Case, "before_insert")
def _case_pseudonym(_mapper: Mapper[Any], connection: Connection, target: Case) -> None:
    if target.reporter_key is None:
        target.reporter_key = keyring_of(connection.dialect).pseudonym(target.channel, target.reporter_ref)
