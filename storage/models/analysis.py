"""What is computed from cases: the search index, similarity signatures, problems, hot-issue runs and the
quality scores of answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.crypto import EncryptedJSON, EncryptedText
from storage.models.base import Base, utcnow


class CaseTerm(Base):
    """The search index of a case: keyed hashes of the words of its place and description (and of what the
    reporter added), so console search finds cases without readable text at rest. A hash is HMAC-SHA256
    of the normalised word under a key derived from the pseudonym key, cut to 63 bits. `created_at` is the case's,
    so that a search reads a term's cases newest first (`ix_case_terms_newest`) and stops after a page."""

    __tablename__ = "case_terms"
    __table_args__ = (Index("ix_case_terms_case", "case_id"),
                      Index("ix_case_terms_newest", "term", "created_at", "case_id"))

    term: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime]


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
