"""Canned replies: prepared answers to reporters, per queue, that supervisors keep in the console. The city's
configuration may bring its own (read-only) ones; these are the ones edited in the console."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.actions import ActionError
from storage.models import CannedReply, StaffUser

MAX_TITLE = 80
MAX_BODY = 3000


async def for_queues(session: AsyncSession, queues: Collection[str] | None) -> list[CannedReply]:
    """The replies of these queues (None: every queue), by queue and title."""
    query = select(CannedReply).order_by(CannedReply.queue, CannedReply.title, CannedReply.id)
    if queues is not None:
        query = query.where(CannedReply.queue.in_(list(queues)))
    return list((await session.execute(query)).scalars())


async def get(session: AsyncSession, reply_id: int) -> CannedReply | None:
    return await session.get(CannedReply, reply_id)


async def save(session: AsyncSession, *, queue: str, title: str, body: str, actor: StaffUser,
               reply: CannedReply | None = None) -> CannedReply:
    """A new reply of `queue`, or `reply` changed; audited."""
    title, body = title.strip(), body.strip()
    if not title or not body:
        raise ActionError.of("canned_reply_incomplete")
    if len(title) > MAX_TITLE or len(body) > MAX_BODY:
        raise ActionError.of("canned_reply_too_long", title_max=MAX_TITLE, body_max=MAX_BODY)
    if reply is None:
        reply = CannedReply(queue=queue, title=title, body=body, updated_by_id=actor.id)
        session.add(reply)
    else:
        reply.queue, reply.title, reply.body, reply.updated_by_id = queue, title, body, actor.id
    await session.flush()
    await audit.record(session, actor, "canned_reply.save", detail={"queue": queue, "title": title, "id": reply.id})
    return reply


async def delete(session: AsyncSession, reply: CannedReply, *, actor: StaffUser) -> None:
    await audit.record(session, actor, "canned_reply.delete", detail={"queue": reply.queue, "title": reply.title})
    await session.delete(reply)
    await session.flush()
