"""The audit log (who saw or did what, when): `record` writes an entry in the transaction of what it records —
every staff action in `storage` goes through it, or through `record_many` for one action on many cases, so
each entry carries the client's address the edge put on the session — and the reads the console's audit pages
use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry, Case, StaffUser

AUDIT_IP = "audit_ip"
"""Key of `AsyncSession.info` under which the edge puts the client's address: `record` writes it into every
entry of the transaction that does not name one."""


AUDIT_VIA = "audit_via"
"""Key of `AsyncSession.info` under which a command puts who ran it ("command line (<account>)"): `record` writes
it as `detail["via"]` into every entry of the transaction that does not say otherwise."""
AUDIT_API_TOKEN = "audit_api_token"
"""Key of `AsyncSession.info` under which the API puts the token a request came with ("<name> (#<id>)"): `record`
writes it as `detail["api_token"]` into every entry of the transaction."""
AUDIT_BULK = "audit_bulk"
"""Key of `AsyncSession.info` under which an action on a selection of cases (the console's bulk form) puts what marks
each of its entries as part of it — `{"bulk": <the bulk action's id>, "selection": <how many cases were selected>}`:
`record` writes these items into every entry of the transaction, so that the audit log tells a bulk action's entries
from the same action on one ticket, and which entries belong to the same bulk action; the id also into the entry's
plain column `bulk_id`, which the audit log is filtered by (the detail is encrypted)."""
_SESSION_DETAIL = ((AUDIT_VIA, "via"), (AUDIT_API_TOKEN, "api_token"))


def _with_via(session: AsyncSession, detail: dict[str, Any] | None) -> dict[str, Any]:
    """`detail` with what the edge put on the session (who ran a command, the API token, the bulk action), where it
    says nothing of its own under that name."""
    extra = {name: session.info[key] for key, name in _SESSION_DETAIL if session.info.get(key) is not None}
    extra |= session.info.get(AUDIT_BULK) or {}
    extra = {name: value for name, value in extra.items() if name not in (detail or {})}
    return {**(detail or {}), **extra} if extra else detail or {}


def _bulk_id(session: AsyncSession) -> dict[str, str]:
    """The entry's `bulk_id` column, named only for a bulk action's entries: the other entries' INSERT leaves it
    out, so that `db backup` can still audit itself on a schema older than the column (a backup taken before the
    upgrade that adds it)."""
    bulk = session.info.get(AUDIT_BULK) or {}
    return {"bulk_id": str(bulk["bulk"])} if bulk.get("bulk") is not None else {}


async def record(session: AsyncSession, actor: StaffUser | None, action: str, *, case: Case | None = None,
                 detail: dict[str, Any] | None = None, ip: str | None = None) -> int:
    """Write one entry; returns its id. An INSERT of the columns it names (not the ORM's, which names every column
    of the model), after a flush of what it may refer to (a case filed in this transaction)."""
    if ip is None:
        ip = session.info.get(AUDIT_IP)
    await session.flush()
    entry_id = await session.scalar(
        insert(cast(Table, AuditEntry.__table__)).values(
            actor_id=actor.id if actor else None, action=action, case_id=case.id if case else None,
            detail=_with_via(session, detail), ip=ip, **_bulk_id(session))
        .returning(AuditEntry.__table__.c.id))
    return int(cast(int, entry_id))


async def record_many(session: AsyncSession, actor: StaffUser | None, action: str, case_ids: Sequence[int], *,
                      detail: dict[str, Any] | None = None, ip: str | None = None) -> None:
    """The same action on many cases, one entry each with the same `detail`, written in one INSERT without loading
    the cases (the retention job's batches, the reveals of an export with identities)."""
    if not case_ids:
        return
    if ip is None:
        ip = session.info.get(AUDIT_IP)
    detail, bulk_id = _with_via(session, detail), _bulk_id(session)
    await session.execute(insert(cast(Table, AuditEntry.__table__)), [
        {"actor_id": actor.id if actor else None, "action": action, "case_id": case_id, "detail": detail,
         "ip": ip, **bulk_id} for case_id in case_ids])


AuditRow = tuple[AuditEntry, str | None, str | None]
"""An entry with the username of its actor and the number of its case (None when there is none)."""


@dataclass(frozen=True)
class AuditFilter:
    actor_id: int | None = None
    case_id: int | None = None
    action: str | None = None  # an action ("case.view"), or a group of them ("case.")
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    bulk_id: str | None = None  # the entries of one action on a selection of cases


def _filtered(query: Select[Any], flt: AuditFilter) -> Select[Any]:
    if flt.actor_id is not None:
        query = query.where(AuditEntry.actor_id == flt.actor_id)
    if flt.case_id is not None:
        query = query.where(AuditEntry.case_id == flt.case_id)
    if flt.action:
        if flt.action.endswith("."):
            query = query.where(AuditEntry.action.startswith(flt.action, autoescape=True))
        else:
            query = query.where(AuditEntry.action == flt.action)
    if flt.bulk_id is not None:
        query = query.where(AuditEntry.bulk_id == flt.bulk_id)
    if flt.since is not None:
        query = query.where(AuditEntry.created_at >= flt.since)
    if flt.until is not None:
        query = query.where(AuditEntry.created_at < flt.until)
    return query


async def audit_log(session: AsyncSession, *, page: int, per_page: int, actor_id: int | None = None,
                    case_id: int | None = None, flt: AuditFilter | None = None) -> tuple[list[AuditRow], int]:
    """One page of entries, newest first, and the total that match (`flt`, or just an actor and a case)."""
    flt = flt or AuditFilter(actor_id=actor_id, case_id=case_id)
    total = int(await session.scalar(select(func.count()).select_from(_filtered(select(AuditEntry), flt).subquery()))
                or 0)
    query: Any = (select(AuditEntry, StaffUser.username, Case.case_number)
                  .outerjoin(StaffUser, StaffUser.id == AuditEntry.actor_id)
                  .outerjoin(Case, Case.id == AuditEntry.case_id)
                  .order_by(AuditEntry.id.desc()).offset((page - 1) * per_page).limit(per_page))
    rows = (await session.execute(_filtered(query, flt))).all()
    return [(row[0], row[1], row[2]) for row in rows], total


async def newest_action(session: AsyncSession, *, actor_id: int, actions: Sequence[str],
                        since: datetime) -> str | None:
    """Which of `actions` the newest of the actor's entries of them since `since` is (None: none)."""
    query = (select(AuditEntry.action).where(AuditEntry.actor_id == actor_id, AuditEntry.action.in_(actions),
                                             AuditEntry.created_at >= since)
             .order_by(AuditEntry.id.desc()).limit(1))
    return (await session.execute(query)).scalar_one_or_none()


async def last_entry_at(session: AsyncSession, *, actor_id: int, case_id: int, action: str) -> datetime | None:
    """When `actor_id` last did `action` on the case (None: never)."""
    query = (select(AuditEntry.created_at).where(AuditEntry.actor_id == actor_id, AuditEntry.case_id == case_id,
                                                 AuditEntry.action == action)
             .order_by(AuditEntry.id.desc()).limit(1))
    return (await session.execute(query)).scalar_one_or_none()
