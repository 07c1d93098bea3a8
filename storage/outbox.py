"""The outbox: messages to residents and staff groups, written in the transaction that causes them and
delivered by a worker (bot/outbox.py) with retries. Rows are written only by the actions of this
package; these functions are the outbox's own part of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, OutboxMessage, utcnow

_OUTBOX = cast(Table, OutboxMessage.__table__)
_CASES = cast(Table, Case.__table__)
STAFF_NOTICES = frozenset({"new_case", "rehandle", "appeal", "extension_request", "transfer_alert", "due_soon",
                           "escalation"})
"""Notice kinds that go to a queue's staff groups (storage.actions, storage.loop), not to the case's reporter."""


def to_reporter() -> ColumnElement[bool]:
    """An outbox row that is a notice about a case to its reporter (in a statement that has `cases`)."""
    return and_(OutboxMessage.case_id == Case.id, OutboxMessage.channel == Case.channel,
                OutboxMessage.conversation_id.is_(None), OutboxMessage.kind.not_in(sorted(STAFF_NOTICES)))


async def enqueue(session: AsyncSession, *, channel: str, recipient: str, payload: dict[str, Any],
                  case_id: int | None = None) -> OutboxMessage:
    message = OutboxMessage(channel=channel, recipient=recipient, payload=payload, case_id=case_id,
                            kind=str(payload.get("notice") or "message")[:20])
    session.add(message)
    await session.flush()
    return message


_INSERT_REPLIES = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)
"""Built once: a dialog step's replies are on the path of every update."""


async def enqueue_replies(session: AsyncSession, *, channel: str, recipient: str, conversation_id: int | None,
                          payloads: Sequence[dict[str, Any]], hold: timedelta | None = None) -> list[int]:
    """A dialog step's replies to one resident, in order (the outbox sends by id), in one statement; they
    belong to the conversation and are deleted with it. Returns their ids."""
    if not payloads:
        return []
    now = utcnow()
    due = now + hold if hold is not None else now
    result = await session.execute(_INSERT_REPLIES, [
        {"channel": channel, "recipient": recipient, "payload": payload, "case_id": None, "kind": "reply",
         "conversation_id": conversation_id, "status": "pending", "attempts": 0, "next_attempt_at": due,
         "created_at": now} for payload in payloads])
    return list(result.scalars())


async def deliver_passively(session: AsyncSession, message_id: int, remainder: dict[str, Any] | None, *,
                            hold: timedelta) -> bool:
    """A held reply that the channel is answering in its HTTP response: recorded as delivered, and what did not
    fit into that one answer queued to follow at once. False (nothing done) if the worker has it: delivered,
    released, or leased once its `hold` ran out (a row still held is due exactly `hold` after it was written,
    as `enqueue_replies` wrote it; releasing or leasing it moves that time)."""
    message = await session.get(OutboxMessage, message_id, with_for_update=True, populate_existing=True)
    if message is None or message.status != "pending" or message.next_attempt_at - message.created_at != hold:
        return False
    await mark_sent(session, [message_id])
    if remainder is not None:
        await enqueue_replies(session, channel=message.channel, recipient=message.recipient,
                              conversation_id=message.conversation_id, payloads=[remainder])
    return True


async def withdraw_held(session: AsyncSession, conversation_id: int, hold: timedelta) -> list[dict[str, Any]]:
    """Take back a conversation's replies still held for `hold` (a step whose channel waited for more of what the
    resident sent in one go): deleted unsent, their payloads returned in order for the next step to say what it
    still must. A reply the worker has leased or sent is not taken (its due time moved, as `deliver_passively`
    reads it)."""
    rows = (await session.execute(
        select(OutboxMessage.id, OutboxMessage.payload, OutboxMessage.created_at, OutboxMessage.next_attempt_at)
        .where(OutboxMessage.conversation_id == conversation_id, OutboxMessage.status == "pending",
               OutboxMessage.next_attempt_at > utcnow())
        .order_by(OutboxMessage.id)
        .with_for_update())).all()
    held = [(message_id, payload) for message_id, payload, created_at, due in rows if due - created_at == hold]
    if held:
        await session.execute(delete(_OUTBOX).where(_OUTBOX.c.id.in_([message_id for message_id, _ in held])))
    return [dict(payload) for _, payload in held]


async def release(session: AsyncSession, message_ids: Sequence[int]) -> None:
    """Held replies the channel could not deliver itself: due now, for the worker."""
    if message_ids:
        await session.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(message_ids), _OUTBOX.c.status == "pending")
                              .values(next_attempt_at=utcnow()))


async def lease(
    session: AsyncSession, *, channels: Sequence[str], limit: int, lease: timedelta, now: datetime | None = None
) -> list[tuple[int, str, str, dict[str, Any], int | None]]:
    """Take a batch for delivery: (id, channel, recipient, payload, case id) of due messages, oldest first, leased until
    now + `lease` so no other worker takes them while they are sent. None of a recipient's messages is taken
    while an earlier one of theirs waits for a retry; rows are locked with SKIP LOCKED where supported."""
    now = now or utcnow()
    blocked = (
        select(OutboxMessage.recipient)
        .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at > now)
        .scalar_subquery()
    )
    due = (
        select(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.payload,
               OutboxMessage.case_id)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.channel.in_(channels),
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.recipient.not_in(blocked),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = [(row[0], row[1], row[2], row[3], row[4]) for row in await session.execute(due)]
    if rows:
        await session.execute(
            update(_OUTBOX).where(_OUTBOX.c.id.in_([row[0] for row in rows])).values(next_attempt_at=now + lease)
        )
    return rows


DELIVERED: dict[str, Any] = {}
"""A delivered message's payload: what it said (a receipt code, a summary quoting the report) is not kept."""


async def renew_lease(session: AsyncSession, message_ids: Sequence[int], lease: timedelta) -> None:
    """Messages still being sent stay leased for `lease` more."""
    if message_ids:
        await session.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(message_ids), _OUTBOX.c.status == "pending")
                              .values(next_attempt_at=utcnow() + lease))


_MARK_SENT = (update(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
              .values(attempts=_OUTBOX.c.attempts + 1))
"""Built once (the columns to set come as parameters): every sent message is settled with it."""


async def mark_sent(session: AsyncSession, message_ids: Sequence[int]) -> None:
    """Delivered: one statement for the whole batch; the payloads are emptied."""
    if message_ids:
        await session.execute(_MARK_SENT, {"ids": list(message_ids), "sent_at": utcnow(), "status": "sent",
                                           "last_error": None, "payload": DELIVERED})


async def messages(session: AsyncSession, message_ids: Sequence[int]) -> dict[int, OutboxMessage]:
    rows = await session.execute(select(OutboxMessage).where(OutboxMessage.id.in_(message_ids)))
    return {message.id: message for message in rows.scalars()}


def mark_retry(message: OutboxMessage, *, error: str, delay: timedelta) -> None:
    message.attempts += 1
    message.last_error = error[:500]
    message.next_attempt_at = utcnow() + delay


def mark_failed(message: OutboxMessage, *, error: str) -> None:
    """Given up on: the reason stays for staff, a dialog reply's text goes (it was meant for that moment)."""
    message.attempts += 1
    message.status = "failed"
    message.last_error = error[:500]
    if message.conversation_id is not None:
        message.payload = DELIVERED


def mark_waiting(message: OutboxMessage, *, reason: str) -> None:
    """The platform will not take the message now (WeChat's 48-hour window, no consent to notices): it waits
    for the resident's next message, which is answered with the newest state of the case."""
    message.attempts += 1
    message.status = "waiting"
    message.last_error = reason[:500]


def postpone(message: OutboxMessage, delay: timedelta) -> None:
    """Not attempted (an earlier message of the same recipient failed): it waits behind that one."""
    message.next_attempt_at = utcnow() + delay


async def take_web_messages(session: AsyncSession, recipient: str) -> list[dict[str, Any]]:
    """The payloads of pending messages for a web-chat browser, oldest first; the browser fetching them is
    their delivery."""
    query = (
        select(OutboxMessage.id, OutboxMessage.payload)
        .where(OutboxMessage.channel == "web", OutboxMessage.recipient == recipient,
               OutboxMessage.status == "pending")
        .order_by(OutboxMessage.id)
        .with_for_update(skip_locked=True)
    )
    taken = (await session.execute(query)).all()
    await mark_sent(session, [message_id for message_id, _ in taken])
    return [dict(payload) for _, payload in taken]


async def prune_delivered(session: AsyncSession, *, sent_before: datetime, failed_before: datetime) -> int:
    """Delete delivered messages older than `sent_before` and given-up ones older than `failed_before`; their cases
    keep how many of these were notices to the reporter (`Case.notices_delivered`, `Case.notices_failed`)."""
    delivered = (OutboxMessage.status == "sent") & (OutboxMessage.sent_at < sent_before)
    given_up = (OutboxMessage.status == "failed") & (OutboxMessage.created_at < failed_before)
    for tally, pruned in ((_CASES.c.notices_delivered, delivered), (_CASES.c.notices_failed, given_up)):
        count = select(func.count()).select_from(_OUTBOX).where(to_reporter(), pruned).scalar_subquery()
        cases = select(OutboxMessage.case_id).where(pruned, OutboxMessage.case_id.is_not(None))
        await session.execute(update(_CASES).where(_CASES.c.id.in_(cases)).values({tally: tally + count}))
    result = await session.execute(delete(OutboxMessage).where(delivered | given_up))
    return int(getattr(result, "rowcount", 0) or 0)
