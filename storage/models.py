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
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
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
# the predicates of the partial indexes on open cases (the same as `storage.queries.overdue_condition`'s)
_NOT_ACCEPTED_SQL = "status IN ('received', 'routed')"
_OPEN_SQL = "status IN ('received', 'routed', 'accepted', 'in_handling', 'answered')"


class TraceKind(StrEnum):
    """Events of a case's trace; the reporter sees all of them except those whose detail says "internal"."""

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
    REOPENED = "reopened"  # the reporter was not satisfied: handled again
    SOLVED = "solved"  # the reporter said the answer solved it (closes the case)
    TRANSFERRED = "transferred"  # handed to the responsible office (shown once, whatever the internal hops)
    EXTENDED = "extended"  # a supervisor extended the deadline
    APPEALED = "appealed"  # the reporter appealed a rejection
    APPEAL_DECIDED = "appeal_decided"
    NOTE = "note"  # a note of the staff to the reporter
    LINKED = "linked"  # staff put the case into a problem or took it out (internal: the reporter does not see it)


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
    clock-skew window is refused by every process. Rows older than the window are pruned."""

    __tablename__ = "callback_nonces"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    nonce_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Case(Base):
    """A submitted report. The text, the reporter's name, phone and channel address (`reporter_ref`) are
    stored encrypted; `reporter_key`, the pseudonym of channel and user id, is what limits count by."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_reporter_key", "channel", "reporter_key", "created_at"),
        # the console's reads at a city's scale (docs/benchmarks.md, "Console at scale"): a queue's list newest
        # first, its counts by status, the statistics' periods of acceptance and closing, a staff member's cases,
        # the review list, and the overdue checks over open cases only
        Index("ix_cases_queue_created", "queue", "created_at", "id"),
        Index("ix_cases_queue_status", "queue", "status"),
        Index("ix_cases_accepted_at", "accepted_at"),
        Index("ix_cases_closed_at", "closed_at"),
        Index("ix_cases_assigned_to", "assigned_to_id"),
        Index("ix_cases_label_review", "label_status", "label_confidence"),
        Index("ix_cases_open_accept_due", "accept_due_at", postgresql_where=text(_NOT_ACCEPTED_SQL),
              sqlite_where=text(_NOT_ACCEPTED_SQL)),
        Index("ix_cases_open_resolve_due", "resolve_due_at", postgresql_where=text(_OPEN_SQL),
              sqlite_where=text(_OPEN_SQL)),
    )

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
    #: the second most likely label when it was close (`nlp.classifier.CONTRAST_MARGIN`), and the report's phrases
    #: that favoured `predicted_label` over it; None for a clear decision
    label_runner_up: Mapped[str | None] = mapped_column(String(40))
    label_contrast_terms: Mapped[list[Any] | None] = mapped_column(EncryptedJSON("cases.label_contrast_terms"))
    model_version: Mapped[str | None] = mapped_column(String(40))
    label_status: Mapped[str | None] = mapped_column(String(12))  # None, "confirmed" or "corrected"
    predicted_label: Mapped[str | None] = mapped_column(String(40))
    rating: Mapped[int | None] = mapped_column(Integer)
    #: how often the case was reopened after a poor rating, appealed, moved between queues, extended
    rehandle_count: Mapped[int] = mapped_column(Integer, default=0)
    appeal_count: Mapped[int] = mapped_column(Integer, default=0)
    transfer_count: Mapped[int] = mapped_column(Integer, default=0)
    extension_count: Mapped[int] = mapped_column(Integer, default=0)
    #: notices to the reporter delivered / given up whose outbox rows were pruned since (the loop's statistics)
    notices_delivered: Mapped[int] = mapped_column(Integer, default=0)
    notices_failed: Mapped[int] = mapped_column(Integer, default=0)
    #: a rejection's appeal waiting for a supervisor
    appeal_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    #: when staff were warned that a deadline nears, and when an overdue case went to the supervisor: each
    #: is told once per deadline ("accept:<due>" / "resolve:<due>", so an extension warns again)
    warned_for: Mapped[str | None] = mapped_column(String(60))
    escalated_for: Mapped[str | None] = mapped_column(String(60))
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    problem_id: Mapped[int | None] = mapped_column(ForeignKey("problems.id", ondelete="SET NULL"), index=True)
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


class CaseSignature(Base):
    """A case's similarity signature, computed once at intake by the room above (`nlp.similarity`) under a key
    derived from the pseudonym key: the keyed MinHash of its words and bigrams (`minhash`, 32-bit values) and
    the sorted keyed 32-bit hashes of those shingles (`terms`, what hot-issue grouping compares). Integers only:
    without the key no value can be matched to a word."""

    __tablename__ = "case_signatures"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    minhash: Mapped[bytes] = mapped_column(LargeBinary)
    terms: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)


class SimilarityBand(Base):
    """One keyed hash per band of a case's MinHash: cases sharing one are near-copies of each other."""

    __tablename__ = "similarity_bands"
    __table_args__ = (Index("ix_similarity_bands_case", "case_id"),)

    band_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)


class SimilarityPlace(Base):
    """Keyed hashes of the names a case's place goes by (`nlp.similarity.place_names`)."""

    __tablename__ = "similarity_places"
    __table_args__ = (Index("ix_similarity_places_case", "case_id"),)

    place_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)


class Problem(Base):
    """A group of cases about one problem (ten residents reporting one construction site): staff link cases to
    it from the similar cases of a ticket or from a hot issue, and answer it once for every reporter in it."""

    __tablename__ = "problems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str | None] = mapped_column(EncryptedText("problems.title"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]


class HotIssueRun(Base):
    """One refresh of the hot issues (`nlp.hotspots.group_cases` over a period's signatures): the ranked
    groups as case ids, heat and counts. No text: the console describes a group from its cases when it shows it."""

    __tablename__ = "hot_issue_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    since: Mapped[datetime]
    until: Mapped[datetime]
    cases: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    groups: Mapped[list[Any]] = mapped_column(JSON, default=list)


class RateBudget(Base):
    """A send rate shared by every process (the Telegram Bot API's ~30 messages a second, 20 a minute per
    group): `next_at` is the earliest time, in seconds since the epoch, the next request may go out."""

    __tablename__ = "rate_budgets"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)


class ReplyScore(Base):
    """How a staff answer scored before it was sent (`nlp.reply_quality`): kept with the answer for the
    statistics. The reasons quote the report's phrases, so they are encrypted."""

    __tablename__ = "reply_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trace_event_id: Mapped[int] = mapped_column(ForeignKey("trace_events.id", ondelete="CASCADE"), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    queue: Mapped[str] = mapped_column(String(60))
    score: Mapped[float] = mapped_column(Float)
    relevance: Mapped[float] = mapped_column(Float)
    completeness: Mapped[float] = mapped_column(Float)
    clarity: Mapped[float] = mapped_column(Float)
    timeliness: Mapped[float | None] = mapped_column(Float)  # None: no deadline to measure against
    reasons: Mapped[list[Any]] = mapped_column(EncryptedJSON("reply_scores.reasons"), default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TraceEvent(Base):
    __tablename__ = "trace_events"
    # the unread marks (`storage.staff_notices.unread_condition`) start from the few follow-ups, not every case
    __table_args__ = (Index("ix_trace_events_follow_ups", "case_id", "created_at",
                            postgresql_where=text("kind = 'follow_up'"), sqlite_where=text("kind = 'follow_up'")),)

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
    __table_args__ = (Index("ix_attachments_draft_client", "client_key", postgresql_where=text("case_id IS NULL"),
                            sqlite_where=text("case_id IS NULL")),)

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


class OutboxStatus(StrEnum):
    PENDING = "pending"  # queued, or being retried
    SENT = "sent"
    WAITING = "waiting"  # the platform will not take it now (WeChat's 48 hours): goes with the resident's next message
    FAILED = "failed"  # given up, with the platform's reason in last_error


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


class ExtensionRequest(Base):
    """A reviewer's request to move a case's resolve-by date, with the reason; a supervisor approves or
    refuses it (both audited, both in the case's trace)."""

    __tablename__ = "extension_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(EncryptedText("extension_requests.reason"))
    resolve_due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending, approved, refused
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
