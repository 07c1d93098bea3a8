"""The console's REST API called in-process as an integration calls it: the console mounted on an app of its own
(httpx through the ASGI app, no server), staff holding API tokens, cases filed and signed for similarity as the
dialog's submit does."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from console.app import mount_console
from console.context import ConsoleContext
from handlers import similar as similar_cases
from storage import staff_actions
from storage.models import Case, StaffRole, utcnow
from tests.factories import create_staff, file_case
from tests.handlers.test_similar import PLANT


class ApiClient:
    def __init__(self, context: ConsoleContext) -> None:
        self.context = context
        self.app = FastAPI()
        mount_console(self.app, context)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://console.test")
        self.tokens: dict[str, str] = {}

    async def staff(self, username: str, role: StaffRole, queues: tuple[str, ...] = ()) -> None:
        async with self.context.database.sessionmaker.begin() as session:
            user = await create_staff(session, username, role, queues)
            self.tokens[username], _ = await staff_actions.create_api_token(session, user, "tests", actor=user)

    async def case(self, description: str = PLANT, place: str = "丽发新城", queue: str = "clean_hall",
                   reporter: str = "resident-1", *, due_in_days: int | None = None) -> str:
        """A case filed (due in `due_in_days`, if given) and signed for similarity as the dialog's submit does."""
        due = utcnow() + timedelta(days=due_in_days) if due_in_days is not None else None
        async with self.context.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, secret_key=self.context.secret_key, queue=queue, description=description,
                                      place=place, district="yuelu", reporter_ref=reporter, resolve_due_at=due)
            await similar_cases.sign_new_case(session, case.id, description, place)
        return str(case.case_number)

    async def call(self, who: str, method: str, path: str, body: Any = None,
                   params: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.request(method, f"/api/v1/{path}", json=body, params=params,
                                         headers={"Authorization": f"Bearer {self.tokens[who]}"})

    async def count(self, what: Any) -> int:
        async with self.context.database.read_sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(what)) or 0)

    async def created_at(self, case_number: str) -> datetime:
        async with self.context.database.read_sessionmaker() as session:
            created = await session.scalar(select(Case.created_at).where(Case.case_number == case_number))
        assert created is not None
        return created
