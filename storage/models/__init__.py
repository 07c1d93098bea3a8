"""SQLAlchemy models. Times are timezone-aware UTC; relationships never load implicitly.

One module per group: `base` (column types, the declarative base, the shared enums), `cases`, `analysis`
(search index, similarity, problems, hot issues, answer scores), `residents` (conversations and the outbox),
`staff` and `service` (the processes' shared bookkeeping). Importing the package maps all of them, which
SQLAlchemy needs to resolve relationships and Alembic to compare the schema; code imports the models from here.
"""

from storage.models.analysis import (
    CaseSignature,
    CaseTerm,
    HotIssueRun,
    Problem,
    ReplyScore,
    SimilarityBand,
    SimilarityPlace,
)
from storage.models.base import CLOSED_STATUSES, Base, CaseStatus, TraceKind, UTCDateTime, utcnow
from storage.models.cases import Attachment, Case, ExtensionRequest, InternalNote, TraceEvent
from storage.models.residents import (
    CASE_STATES,
    DRAFTLESS_STATES,
    RESTING_STATES,
    CallbackNonce,
    ClientEvent,
    ClientEventKind,
    Conversation,
    ConversationState,
    NoticeConsent,
    OutboxMessage,
    OutboxStatus,
    ProcessedUpdate,
    StatusGuess,
)
from storage.models.service import JobRun, RateBudget, WeChatAccessToken
from storage.models.staff import (
    ApiToken,
    AuditEntry,
    CannedReply,
    CaseView,
    LoginFailure,
    QueueAssignment,
    StaffNotice,
    StaffRole,
    StaffSession,
    StaffUser,
)

__all__ = [
    "CASE_STATES",
    "CLOSED_STATUSES",
    "DRAFTLESS_STATES",
    "RESTING_STATES",
    "ApiToken",
    "Attachment",
    "AuditEntry",
    "Base",
    "CallbackNonce",
    "CannedReply",
    "Case",
    "CaseSignature",
    "CaseStatus",
    "CaseTerm",
    "CaseView",
    "ClientEvent",
    "ClientEventKind",
    "Conversation",
    "ConversationState",
    "ExtensionRequest",
    "HotIssueRun",
    "InternalNote",
    "JobRun",
    "LoginFailure",
    "NoticeConsent",
    "OutboxMessage",
    "OutboxStatus",
    "Problem",
    "ProcessedUpdate",
    "QueueAssignment",
    "RateBudget",
    "ReplyScore",
    "SimilarityBand",
    "SimilarityPlace",
    "StaffNotice",
    "StaffRole",
    "StaffSession",
    "StaffUser",
    "StatusGuess",
    "TraceEvent",
    "TraceKind",
    "UTCDateTime",
    "WeChatAccessToken",
    "utcnow",
]
