"""A case and what belongs to it: its trace, its evidence, extension requests and internal notes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy import event as orm_event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from storage.crypto import EncryptedJSON, EncryptedText, keyring_of
from storage.models.base import Base, CaseStatus, utcnow

# the predicates of the partial indexes on open cases (the same as `storage.queries.overdue_condition`'s)
_NOT_ACCEPTED_SQL = "status IN ('received', 'routed')"
_UNREAD_SQL = "unread_since IS NOT NULL"
# the open cases whose current deadline (`storage.loop.deadline_of`: accept-by until accepted, then resolve-by) its
# staff were not yet escalated for: the deadline round reads only these (`storage.loop.untold_deadline_case_ids`),
# and a case leaves its index once escalated, however long it then stays overdue. Each is one NOT (…) term: SQLite
# would otherwise read a bare "accepted_at IS NULL" through ix_cases_accepted_at, which it takes for a rare value
ACCEPT_UNESCALATED_SQL = ("NOT (accepted_at IS NOT NULL OR COALESCE(escalated_kind = 'accept' "
                          "AND escalated_due_at = accept_due_at, FALSE))")
RESOLVE_UNESCALATED_SQL = ("NOT ((accepted_at IS NULL AND accept_due_at IS NOT NULL) OR "
                           "COALESCE(escalated_kind = 'resolve' AND escalated_due_at = resolve_due_at, FALSE))")
OPEN_SQL = "status IN ('received', 'routed', 'accepted', 'in_handling', 'answered')"
# what the statistics and the closed loop's figures read of the cases received in a period
# (`storage.statistics`, `storage.loop_stats`)
PERIOD_FIGURES = ("queue", "label", "district", "status", "accepted_at", "closed_at", "accept_due_at",
                  "resolve_due_at", "rating", "rehandle_count", "extension_count", "notices_delivered",
                  "notices_failed", "id")


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
        # the statistics' periods: a case's figures by when it was received, accepted and closed. On PostgreSQL each
        # carries (INCLUDE) every column its figures read, so a year's statistics are index-only scans of the period
        # instead of visits to a table whose rows hold the encrypted texts; SQLite, which has no INCLUDE, reads the
        # period's rows through the date alone
        Index("ix_cases_created_at", "created_at", postgresql_include=list(PERIOD_FIGURES)),
        Index("ix_cases_accepted_at", "accepted_at", postgresql_include=["created_at", "queue"]),
        Index("ix_cases_closed_at", "closed_at",
              postgresql_include=["created_at", "queue", "rating", "resolve_due_at"]),
        Index("ix_cases_assigned_to", "assigned_to_id"),
        # the console's filters by label and by district, alone or with the status (PostgreSQL combines these with
        # ix_cases_status in one bitmap: a city-wide filter reads the few cases that match every condition)
        Index("ix_cases_label", "label"),
        Index("ix_cases_district", "district"),
        Index("ix_cases_label_review", "label_status", "label_confidence"),
        Index("ix_cases_queue_label_review", "queue", "label_status", "label_confidence"),
        Index("ix_cases_open_accept_due", "accept_due_at", postgresql_where=text(_NOT_ACCEPTED_SQL),
              sqlite_where=text(_NOT_ACCEPTED_SQL)),
        Index("ix_cases_open_resolve_due", "resolve_due_at", postgresql_where=text(OPEN_SQL),
              sqlite_where=text(OPEN_SQL)),
        # the overview's unread marks count only the few unread cases
        Index("ix_cases_unread", "queue", postgresql_where=text(_UNREAD_SQL), sqlite_where=text(_UNREAD_SQL)),
        # the overview's per-queue counts of open cases (`queries.queue_counts`) read only this index: every column
        # they need is in it, so the open cases are counted without visiting the table
        Index("ix_cases_open_counts", "queue", "status", "accept_due_at", "resolve_due_at",
              postgresql_where=text(OPEN_SQL), sqlite_where=text(OPEN_SQL)),
        Index("ix_cases_accept_unescalated", "accept_due_at",
              postgresql_where=text(f"{OPEN_SQL} AND {ACCEPT_UNESCALATED_SQL}"),
              sqlite_where=text(f"{OPEN_SQL} AND {ACCEPT_UNESCALATED_SQL}")),
        Index("ix_cases_resolve_unescalated", "resolve_due_at",
              postgresql_where=text(f"{OPEN_SQL} AND {RESOLVE_UNESCALATED_SQL}"),
              sqlite_where=text(f"{OPEN_SQL} AND {RESOLVE_UNESCALATED_SQL}")),
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
    #: the deadline staff were last warned of as it neared, and the one an overdue case last went to the
    #: supervisor for: its kind ("accept" or "resolve") and its time. Each deadline is told once, so an extension
    #: (a new time) or acceptance (the other kind) is told again
    warned_kind: Mapped[str | None] = mapped_column(String(8))
    warned_due_at: Mapped[datetime | None]
    escalated_kind: Mapped[str | None] = mapped_column(String(8))
    escalated_due_at: Mapped[datetime | None]
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    problem_id: Mapped[int | None] = mapped_column(ForeignKey("problems.id", ondelete="SET NULL"), index=True)
    #: the newest follow-up from the reporter that the case's handlers have not seen, None when there is none:
    #: `storage.staff_notices.unread_condition` kept as a column by the actions that change it (a follow-up, an
    #: opening of the case, a new assignee), so that the overview counts the unread cases, not every case
    unread_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # indexed: ix_cases_created_at
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
    #: when the stored file was made free of its metadata (an image re-encoded, a PDF rewritten): when it was taken,
    #: or when `qinglian evidence clean` rewrote a file stored before; None for a file stored before cleaning existed
    cleaned_at: Mapped[datetime | None]

    case: Mapped[Case | None] = relationship(back_populates="attachments", lazy="raise")


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


class InternalNote(Base):
    """Staff-only notes on a case; never shown to the reporter."""

    __tablename__ = "internal_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(EncryptedText("internal_notes.body"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@orm_event.listens_for(Case, "before_insert")


def _case_pseudonym(_mapper: Mapper[Any], connection: Connection, target: Case) -> None:
    if target.reporter_key is None:
        target.reporter_key = keyring_of(connection.dialect).pseudonym(target.channel, target.reporter_ref)
