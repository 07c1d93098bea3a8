"""Column types, the declarative base and the enums every group of models shares."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase


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
    MORE_INFO = "more_info"  # staff asked the reporter for more information (the question is its body)
    LINKED = "linked"  # staff put the case into a problem or took it out (internal: the reporter does not see it)
    EXTENSION_REFUSED = "extension_refused"  # a supervisor refused an extension (internal, as LINKED)
