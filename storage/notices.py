"""Notices to residents outside a platform's reply window: their consents, the messages that wait for the
resident's next message, and every notice's delivery state for the ticket."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.crypto import session_keyring
from storage.models import Case, NoticeConsent, OutboxMessage, OutboxStatus, utcnow
from storage.outbox import to_reporter

SUBSCRIBE = "subscribe"
"""WeChat's subscription notices (订阅通知): consent per template, given in a pop-up."""
ONCE = "once"
"""WeChat's one-time subscription messages (一次性订阅消息): consent per case, one message each."""


@dataclass(frozen=True)
class Consent:
    id: int
    kind: str
    template_id: str
    scene: int | None


def _user_key(session: AsyncSession, channel: str, user_ref: str) -> str:
    return session_keyring(session).pseudonym(channel, user_ref)


async def record_consent(session: AsyncSession, *, channel: str, user_ref: str, kind: str, template_id: str,
                         long_term: bool = False, case_id: int | None = None, scene: int | None = None) -> None:
    """A resident accepted notices: a long-term subscription stays until withdrawn; a one-time one allows one
    more notice (accepts add up); a one-time subscription message allows one message for its case and scene
    (authorising again in the same scene does not add one)."""
    user_key = _user_key(session, channel, user_ref)
    query = select(NoticeConsent).where(
        NoticeConsent.channel == channel, NoticeConsent.user_key == user_key, NoticeConsent.kind == kind,
        NoticeConsent.template_id == template_id, NoticeConsent.withdrawn_at.is_(None),
        NoticeConsent.case_id.is_(None) if case_id is None else NoticeConsent.case_id == case_id,
    ).with_for_update()
    if kind == ONCE:
        query = query.where(NoticeConsent.scene == scene)
    existing = (await session.execute(query)).scalars().first()
    if existing is None:
        session.add(NoticeConsent(channel=channel, user_key=user_key, kind=kind, template_id=template_id,
                                  case_id=case_id, scene=scene, long_term=long_term, remaining=1))
    elif kind == SUBSCRIBE and not long_term:
        existing.remaining += 1
    else:
        existing.remaining = 1
        existing.long_term = long_term
    await session.flush()


async def withdraw_consent(session: AsyncSession, *, channel: str, user_ref: str, template_id: str) -> None:
    """The resident refused a template (in the pop-up or later in WeChat's settings): what is left goes."""
    await session.execute(update(NoticeConsent).where(
        NoticeConsent.channel == channel, NoticeConsent.user_key == _user_key(session, channel, user_ref),
        NoticeConsent.template_id == template_id, NoticeConsent.withdrawn_at.is_(None),
    ).values(withdrawn_at=utcnow(), remaining=0))


async def usable_consents(session: AsyncSession, *, channel: str, user_ref: str,
                          case_id: int | None) -> list[Consent]:
    """Consents that allow a notice about `case_id` now, the long-term subscriptions first."""
    user_key = _user_key(session, channel, user_ref)
    rows = await session.execute(select(NoticeConsent).where(
        NoticeConsent.channel == channel, NoticeConsent.user_key == user_key, NoticeConsent.withdrawn_at.is_(None),
        (NoticeConsent.long_term.is_(True)) | (NoticeConsent.remaining > 0),
    ).order_by(NoticeConsent.long_term.desc(), NoticeConsent.id))
    return [Consent(row.id, row.kind, row.template_id, row.scene) for row in rows.scalars()
            if row.kind == SUBSCRIBE or row.case_id == case_id]


async def use_consent(session: AsyncSession, consent_id: int) -> None:
    consent = await session.get(NoticeConsent, consent_id, with_for_update=True)
    if consent is not None and not consent.long_term:
        consent.remaining = max(0, consent.remaining - 1)
        await session.flush()


async def refused(session: AsyncSession, consent_id: int) -> None:
    """The platform said the resident refuses (WeChat 43101): the consent no longer holds."""
    await session.execute(update(NoticeConsent).where(NoticeConsent.id == consent_id)
                          .values(withdrawn_at=utcnow(), remaining=0))


def waiting_for(channel: Any, recipient: Any) -> ColumnElement[bool]:
    """The outbox rows of notices waiting for this resident's next message (`channel` and `recipient` are
    values or bound parameters): what `take_waiting` takes and what a dialog step's conversation read flags."""
    return and_(OutboxMessage.channel == channel, OutboxMessage.recipient == recipient,
                OutboxMessage.status == OutboxStatus.WAITING)


_WAITING = (select(OutboxMessage.id, OutboxMessage.case_id, OutboxMessage.payload)
            .where(waiting_for(bindparam("channel"), bindparam("recipient"))).order_by(OutboxMessage.id))
"""Built once: a dialog step asks whenever its conversation says notices wait."""


@dataclass(frozen=True)
class WaitingNotice:
    """A notice that waited for the resident's next message: its case and what it said (its payload)."""

    case_id: int | None
    payload: dict[str, Any]


async def take_waiting(session: AsyncSession, channel: str, recipient: str) -> list[WaitingNotice]:
    """The notices waiting for this resident's next message, oldest first; they count as delivered with the
    answer to it, which tells what each said and the newest state of each case."""
    # No row lock: the resident's conversation row, locked by the step, already keeps their steps in turn.
    rows = (await session.execute(_WAITING, {"channel": channel, "recipient": recipient})).all()
    if not rows:
        return []
    await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_([row[0] for row in rows])).values(
        status=OutboxStatus.SENT, sent_at=utcnow(), payload={},
        last_error="delivered with the resident's next message"))
    return [WaitingNotice(case_id, dict(payload or {})) for _, case_id, payload in rows]


@dataclass(frozen=True)
class NoticeState:
    """A message to the reporter about their case, as staff see it on the ticket."""

    created_at: datetime
    notice: str
    status: str
    reason: str | None
    attempts: int
    sent_at: datetime | None


async def notice_states(session: AsyncSession, case_id: int) -> list[NoticeState]:
    """Every notice of a case to its reporter (`outbox.to_reporter`: not a staff group's, even on the reporter's
    channel), oldest first, with its delivery state."""
    rows = (await session.execute(select(OutboxMessage).join(Case, to_reporter()).where(Case.id == case_id)
                                  .order_by(OutboxMessage.id))).scalars()
    return [NoticeState(message.created_at, message.kind, message.status, message.last_error, message.attempts,
                        message.sent_at) for message in rows]
