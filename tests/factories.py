"""Test data built through the product's own actions: a filed case is what `storage.actions.submit_report`
writes when a resident submits, so tests see what production sees."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from console.auth import SESSION_COOKIE, cookie_serializer
from console.context import ConsoleContext
from handlers.routing import RouteDecision
from nlp.search import index_terms
from storage import actions, staff_actions
from storage.models import Case, StaffRole, StaffUser

SECRET_KEY = b"k" * 32
"""The receipt-code key of cases filed by `file_case` (pass another to match a service's settings)."""

DEFAULT_DESCRIPTION = "窗口工作人员擅离岗位两个小时，群众排队无人办理。"


async def file_case(
    session: AsyncSession,
    *,
    channel: str = "telegram",
    reporter_ref: str = "42",
    locale: str = "zh",
    district: str | None = "yuelu",
    place: str = "岳麓区政务服务中心",
    occurred: str = "今天",
    description: str = DEFAULT_DESCRIPTION,
    anonymous: bool = True,
    reporter_name: str | None = None,
    reporter_phone: str | None = None,
    attachment_ids: Sequence[int] = (),
    queue: str = "clean_hall",
    reason: str = "label",
    label: str | None = "slow_service",
    confidence: float | None = 0.9,
    top: list[Any] | None = None,
    terms: list[Any] | None = None,
    model_version: str | None = "test-model-1",
    runner_up: str | None = None,
    contrast_terms: list[Any] | None = None,
    accept_due_at: datetime | None = None,
    resolve_due_at: datetime | None = None,
    staff_targets: Sequence[tuple[str, str]] = (),
    secret_key: bytes = SECRET_KEY,
    case_number_prefix: str = "QL",
    year: int = 2026,
    now: datetime | None = None,
    client_key: str | None = None,
) -> tuple[Case, str]:
    """A submitted, routed case; returns it (with its trace loaded) and its receipt code."""
    report = actions.NewReport(
        channel=channel, reporter_ref=reporter_ref, locale=locale, district=district, place=place,
        occurred=occurred, description=description, anonymous=anonymous, reporter_name=reporter_name,
        reporter_phone=reporter_phone, attachment_ids=attachment_ids,
    )
    if top is None and label is not None and confidence is not None:
        top = [[label, confidence], ["other", round(1 - confidence, 4)]]
    routing = actions.Routing(
        queue=queue, reason=reason, label=label, confidence=confidence if label else None, top=top,
        terms=terms, model_version=model_version if label else None, runner_up=runner_up if label else None,
        contrast_terms=contrast_terms if label else None, accept_due_at=accept_due_at,
        resolve_due_at=resolve_due_at, staff_targets=staff_targets,
    )
    submitted = await actions.submit_report(
        session, report, routing, secret_key=secret_key, case_number_prefix=case_number_prefix, year=year,
        staff_locale="zh", now=now, client_key=client_key, search_terms=index_terms([place, description]),
    )
    case = await actions.get_case(session, submitted.case_id)
    assert case is not None
    return case, submitted.receipt_code


def decided(decision: RouteDecision) -> dict[str, Any]:
    """`file_case`'s routing arguments for a decision of `handlers.routing.route`."""
    routing = decision.as_routing()
    return {"queue": routing.queue, "reason": routing.reason, "label": routing.label,
            "confidence": routing.confidence, "top": routing.top or [], "terms": routing.terms,
            "model_version": routing.model_version, "runner_up": routing.runner_up,
            "contrast_terms": routing.contrast_terms, "accept_due_at": routing.accept_due_at,
            "resolve_due_at": routing.resolve_due_at, "staff_targets": routing.staff_targets}


async def create_staff(session: AsyncSession, username: str, role: StaffRole = StaffRole.REVIEWER,
                       queues: Sequence[str] = (), *, password_hash: str = "not-a-hash", active: bool = True,
                       actor: StaffUser | None = None) -> StaffUser:
    """A staff account working in `queues`, made by `storage.staff_actions` as the console makes one (the
    default password hash opens no login: tests that log in through the form pass a real one)."""
    user = await staff_actions.create_staff(session, username=username, display_name=f"{username} 同志", role=role,
                                            password_hash=password_hash, actor=actor)
    await staff_actions.set_queues(session, user, list(queues), actor=actor)
    if not active:
        await staff_actions.set_active(session, user, False, actor=actor)
    return user


async def console_session(context: ConsoleContext, user: StaffUser, *, second_factor_done: bool = True,
                          hours: float = 8.0) -> tuple[dict[str, str], str]:
    """A console login of `user` as the login page leaves it: (the signed session cookie, its CSRF token)."""
    async with context.database.sessionmaker.begin() as session:
        token, record = await staff_actions.start_session(session, user, hours=hours, ip=None,
                                                          second_factor_done=second_factor_done)
    return {SESSION_COOKIE: cookie_serializer(context).dumps(token)}, record.csrf_token
