"""The staff's side of the closed loop (issue 13), done against a running service's database with the same
storage actions the console calls, for the end-to-end tests that drive a resident on each channel through
the stand-in servers: an extension requested and approved, a warning before a deadline at an injected time,
an answer and closing that asks for a rating, a question for the reporter."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.jobs import deadlines_once
from handlers import tracking
from handlers.city import CityConfig, load_city_config
from handlers.routing import is_working_day
from handlers.texts import Texts
from storage import actions, loop, staff_actions
from storage.db import create_engine, create_sessionmaker
from storage.models import Case, CaseStatus, StaffRole, StaffUser
from tests.conftest import LiveService, make_test_keyring
from tests.factories import create_staff

T = TypeVar("T")


def _database_url(service: LiveService) -> str:
    return f"sqlite+aiosqlite:///{service.data_dir / 'qinglian.db'}"


def act(service: LiveService, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the service's database (the service sees it once committed)."""

    async def run() -> T:
        engine = create_engine(_database_url(service), make_test_keyring())
        try:
            async with create_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def city_of(service: LiveService) -> CityConfig:
    configured = service.env.get("QINGLIAN_CONFIG_FILE") or os.environ.get("QINGLIAN_CONFIG_FILE")
    return load_city_config(Path(configured) if configured else None)


def latest_case(service: LiveService) -> tuple[int, str]:
    """(id, case number) of the case filed last."""

    async def work(session: AsyncSession) -> tuple[int, str]:
        case = (await session.execute(select(Case).order_by(Case.id.desc()).limit(1))).scalar_one()
        assert case.case_number is not None
        return case.id, case.case_number

    return act(service, work)


async def _staff(session: AsyncSession, name: str, role: StaffRole) -> StaffUser:
    return await staff_actions.get_staff_by_username(session, name) or await create_staff(session, name, role)


async def _case(session: AsyncSession, case_id: int) -> Case:
    case = await actions.get_case(session, case_id)
    assert case is not None
    return case


def extend(service: LiveService, case_id: int, days: int = 20) -> str:
    """A reviewer asks for `days` more days and a supervisor approves; returns the new date in the city's time.
    As in the console, the new resolve-by date is the end of a day in the city's time."""
    tz = ZoneInfo(city_of(service).timezone)

    async def work(session: AsyncSession) -> str:
        case = await _case(session, case_id)
        assert case.resolve_due_at is not None
        reviewer = await _staff(session, "loop-reviewer", StaffRole.REVIEWER)
        supervisor = await _staff(session, "loop-supervisor", StaffRole.SUPERVISOR)
        day = case.resolve_due_at.astimezone(tz).date() + timedelta(days=days)
        later = datetime.combine(day, time(23, 59, 59), tz).astimezone(UTC)
        request = await loop.request_extension(session, case, actor=reviewer, reason="需公安协助调取监控录像",
                                               resolve_due_at=later)
        await loop.decide_extension(session, request, case, actor=supervisor, approve=True)
        return day.isoformat()

    return act(service, work)


def ask_for_information(service: LiveService, case_id: int, question: str) -> None:
    async def work(session: AsyncSession) -> None:
        case = await _case(session, case_id)
        label = Texts(city_of(service).texts).get(case.locale, "case_follow_up")
        await loop.ask_for_information(session, case, question, actor=await _staff(
            session, "loop-reviewer", StaffRole.REVIEWER), add_label=label)

    act(service, work)


def reply_or_close(service: LiveService, case_id: int, *, answer: str | None = None, close: bool = False) -> None:
    """The service's own actions (no staff account): an answer to the reporter and/or closing the case."""

    async def work(session: AsyncSession) -> None:
        case = await _case(session, case_id)
        if answer:
            await actions.reply_to_reporter(session, case, answer, actor="staff:test")
        if close:
            await actions.change_status(session, case, CaseStatus.CLOSED, actor="staff:test")

    act(service, work)


def answer_and_close(service: LiveService, case_id: int, answer: str) -> None:
    """A reviewer answers and closes the case, which asks the reporter to rate it (as the console does)."""

    async def work(session: AsyncSession) -> None:
        case = await _case(session, case_id)
        reviewer = await _staff(session, "loop-reviewer", StaffRole.REVIEWER)
        await staff_actions.answer_reporter(session, case, answer, actor=reviewer)
        await staff_actions.set_status(session, case, CaseStatus.CLOSED, actor=reviewer)
        labels = tracking.rating_labels(Texts(city_of(service).texts), case.locale)
        await loop.offer_rating(session, case, labels=labels)

    act(service, work)


def case_state(service: LiveService, case_id: int) -> tuple[str, int, list[str]]:
    """(status, times re-handled, trace kinds) of a case."""

    async def work(session: AsyncSession) -> tuple[str, int, list[str]]:
        case = await _case(session, case_id)
        return case.status, case.rehandle_count, [event.kind for event in case.trace]

    return act(service, work)


def warn_before_deadline(service: LiveService, case_id: int, *,
                         staff_chat: int | None = None) -> list[bool]:
    """The deadline job at injected times, with staff warned one working day ahead: two working days before
    the case's accept-by day, then one working day before it. The queue's staff group is `staff_chat` (a
    Telegram chat) when given. Returns whether the case's staff were warned by then, at each time."""
    city = city_of(service)
    tz = ZoneInfo(city.timezone)

    async def due(session: AsyncSession) -> tuple[datetime, str]:
        case = await _case(session, case_id)
        assert case.accept_due_at is not None and case.accepted_at is None
        return case.accept_due_at, case.queue

    deadline, queue_code = act(service, due)
    queues = [q.model_copy(update={"telegram_chat_id": staff_chat}) if q.code == queue_code and staff_chat else q
              for q in city.queues]
    city = city.model_copy(update={"queues": queues, "loop": city.loop.model_copy(update={"warn_working_days": 1})})
    days: list[date] = []
    day = deadline.astimezone(tz).date()
    while len(days) < 2:
        day -= timedelta(days=1)
        if is_working_day(city, day):
            days.append(day)
    times = [datetime.combine(day, time(10, 0), tz) for day in reversed(days)]  # two days before, then one

    async def job() -> list[bool]:
        engine = create_engine(_database_url(service), make_test_keyring())
        warned = []
        try:
            sessionmaker = create_sessionmaker(engine)
            for now in times:
                await deadlines_once(sessionmaker, city, now)
                async with sessionmaker() as session:
                    warned.append(tuple((await session.execute(select(Case.warned_kind, Case.warned_due_at)
                                                                .where(Case.id == case_id))).one())
                                  == ("accept", deadline))
        finally:
            await engine.dispose()
        return warned

    return asyncio.run(job())
