"""A reviewer's working day beyond one ticket: what is new (unread follow-ups, notices), canned replies per
queue, and actions on a selection of tickets. One transaction per operation, opened here, as in
`console.operations`."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from console import operations
from console.auth import Principal, visible_queues
from console.operations import OperationError, require_supervisor
from handlers.validation import readable
from storage import audit, canned_replies, staff_notices
from storage.actions import ActionError
from storage.models import Case

MAX_BULK = 200
BULK_ACTIONS = ("assign", "status", "move")


async def unread_cases(principal: Principal, cases: Sequence[Case]) -> set[int]:
    """The ids of those cases with information from the reporter their handlers have not seen."""
    async with principal.context.database.read_sessionmaker() as session:
        return await staff_notices.unread_case_ids(session, [case.id for case in cases])


async def unread_by_queue(principal: Principal) -> dict[str, int]:
    async with principal.context.database.read_sessionmaker() as session:
        return await staff_notices.unread_by_queue(session, visible_queues(principal.user))


async def notices(principal: Principal) -> list[staff_notices.Notice]:
    async with principal.context.database.read_sessionmaker() as session:
        return await staff_notices.notices_for(session, principal.user.id, queues=visible_queues(principal.user))


# --- canned replies ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    key: str  # "<id>" of an edited reply, "cfg-<queue>-<n>" of a configured one
    queue: str
    title: str
    body: str
    editable: bool
    id: int | None = None


def configured_replies(principal: Principal, queue: str) -> list[Reply]:
    """The queue's replies from the city's configuration (`canned_replies = [{title, body}, …]` of a queue),
    when the configuration has any."""
    configured = principal.context.city.queue(queue)
    items = configured.canned_replies if configured is not None else []
    replies = [Reply(f"cfg-{queue}-{number}", queue, item.title.strip(), item.body.strip(), False)
               for number, item in enumerate(items)]
    return [reply for reply in replies if reply.title and reply.body]


async def replies_for(principal: Principal, queues: Collection[str]) -> list[Reply]:
    """Every reply of these queues: the configured ones first, then the ones supervisors keep."""
    async with principal.context.database.read_sessionmaker() as session:
        stored = await canned_replies.for_queues(session, queues)
    configured = [reply for queue in sorted(queues) for reply in configured_replies(principal, queue)]
    return configured + [Reply(str(reply.id), reply.queue, reply.title, reply.body, True, reply.id)
                         for reply in stored]


def _check_queue(principal: Principal, queue: str) -> None:
    if principal.context.city.queue(queue) is None:
        raise OperationError(422, "unknown_queue", code=queue[:60])


async def save_reply(principal: Principal, *, queue: str, title: str, body: str, reply_id: int | None) -> None:
    require_supervisor(principal)
    _check_queue(principal, queue)
    title, body = readable(title), readable(body)  # an answer started from it is what reporters read
    async with principal.write() as session:
        existing = await canned_replies.get(session, reply_id) if reply_id is not None else None
        if reply_id is not None and existing is None:
            raise OperationError(404, "no_canned_reply", reply_id=reply_id)
        try:
            await canned_replies.save(session, queue=queue, title=title, body=body, actor=principal.user,
                                      reply=existing)
        except ActionError as error:
            raise OperationError.refused(422, error) from None


async def delete_reply(principal: Principal, reply_id: int) -> None:
    require_supervisor(principal)
    async with principal.write() as session:
        existing = await canned_replies.get(session, reply_id)
        if existing is None:
            raise OperationError(404, "no_canned_reply", reply_id=reply_id)
        await canned_replies.delete(session, existing, actor=principal.user)


# --- actions on a selection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkResult:
    case_number: str
    error: str | None  # None: done; else the reason in English
    refusal: OperationError | None = field(default=None, compare=False)  # the reason, to say in each language


async def bulk(principal: Principal, case_numbers: Sequence[str], action: str, *, username: str = "",
               status: str = "", note: str = "", referral: str = "", queue: str = "", reason: str = "",
               reason_code: str = "") -> list[BulkResult]:
    """Assign, set the status of (a rejection with the note as its reason and the referral: where the reporter
    can turn instead), or move (with the reason, and one of the city's transfer reasons where a move
    to triage or out of the user's queues needs it) each selected case, each in its own transaction with its own
    trace event and audit record; a case that refuses (closed, not in the user's queues, …) is reported and the
    others go on."""
    if action not in BULK_ACTIONS:
        raise OperationError(422, "unknown_bulk_action", code=action[:20])
    numbers = list(dict.fromkeys(number.strip() for number in case_numbers if number.strip()))
    if not numbers:
        raise OperationError(422, "select_cases")
    if len(numbers) > MAX_BULK:
        raise OperationError(422, "bulk_too_many", limit=MAX_BULK)
    if action == "move":
        _check_queue(principal, queue)
        reason = readable(reason)  # as a ticket's move form reads it: invisible characters are no reason
        if not reason:
            raise OperationError(422, "bulk_move_needs_reason")
        operations.check_transfer_reason(principal, reason_code)  # refused for the whole selection
    if action == "status" and not status:
        raise OperationError(422, "bulk_needs_status")
    # every entry the selection writes carries the bulk action's id and the selection's size, and one more entry
    # (`case.bulk`, with the same two) says what was done to how many: the audit log tells the selection apart
    # from single-ticket actions and groups its entries
    marked = dataclasses.replace(principal, bulk={"bulk": secrets.token_hex(4), "selection": len(numbers)})
    results = []
    try:
        for number in numbers:
            try:
                if action == "assign":
                    await operations.assign(marked, number, username.strip() or None)
                elif action == "status":
                    await operations.set_status(marked, number, status, note.strip() or None,
                                                referral.strip() or None)
                else:
                    await operations.move(marked, number, queue, reason, reason_code or None)
            except OperationError as refused:
                if refused.status_code == 403:
                    raise
                results.append(BulkResult(number, refused.message, refused))
            else:
                results.append(BulkResult(number, None))
    finally:
        done = sum(1 for result in results if result.error is None)
        detail: dict[str, str | int | None] = {"bulk_action": action}
        if action == "status":
            detail["status"] = status
        else:
            detail["to"] = queue if action == "move" else username.strip() or None
        detail["done"] = done
        detail["refused"] = len(numbers) - done
        async with marked.write() as session:
            await audit.record(session, principal.user, "case.bulk", detail=detail)
    return results
