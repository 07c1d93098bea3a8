"""The console app in-process (lifespan and all), staff users of each role and cases in chosen queues,
created through the storage actions; a console context of its own for tests without the app."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.config import Settings
from console.context import CONTEXT_STATE, ConsoleContext
from handlers.city import load_city_config
from handlers.routing import due_dates, route
from nlp.types import Tag
from storage import actions, evidence_rows, staff_actions
from storage.db import Database
from storage.models import AuditEntry, Case, StaffRole, StaffUser, TraceEvent, utcnow
from tests.conftest import make_test_keyring, shared_models_dir, staff_password_hashing
from tests.factories import decided, file_case, plain_photo

PASSWORD = "correct horse battery staple"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
LOGIN_TOKEN_FIELD = re.compile(r'name="login_token" value="([^"]+)"')
JPEG = plain_photo()
PDF = b"%PDF-1.4\n" + b"1 0 obj\n" * 20
OTHER_QUEUE = "work_style"

# Every form on the ticket page, with values that would change the case.
ACTIONS: list[tuple[str, dict[str, str]]] = [
    ("accept", {}),
    ("confirm-label", {}),
    ("correct-label", {"label": "medical"}),
    ("move", {"queue": "petitions", "reason": "不属于本组"}),
    ("status", {"status": "in_handling", "note": "已转交"}),
    ("duplicate", {"original": "QL-2026-000001"}),
    ("note", {"body": "内部备注"}),
    ("assign", {"username": "rev"}),
    ("answer", {"text": "已核实"}),
    ("more-info", {"question": "请提供现场照片"}),
    ("reveal", {}),
]


@pytest.fixture(scope="session")
def password_hash() -> str:
    return staff_password_hashing().hash(PASSWORD)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "secret_key": "test-secret-" + "x" * 40,
                              "environment": "development", "telegram_token": None, "wechat_token": None,
                              **overrides}
    return Settings(**values)


class NoClassifier:
    """A console without a classifier: nothing serves, nothing to reload."""

    version: str | None = None
    load_failure: tuple[str, str] | None = None
    load_error: Exception | None = None

    async def reload_if_changed(self) -> bool:
        return False


def make_context(database: Database, data_dir: Path, *, woken: list[str] | None = None) -> ConsoleContext:
    """A console context on `database`, as the shell would build it, without a classifier."""

    def wake() -> None:
        if woken is not None:
            woken.append("outbox")

    return ConsoleContext(
        city=load_city_config(None), database=database, secret_key=b"test-secret-" + b"x" * 40,
        evidence_dir=data_dir / "evidence", data_dir=data_dir, public_url="http://127.0.0.1:8000",
        environment="development", wake_outbox=wake, classifier=NoClassifier())


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return response.headers["location"]


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


CHECK_TOKEN = re.compile(r'name="checked" value="([0-9a-f]{64})"')


async def answer_on_page(client: httpx.AsyncClient, csrf: str, action: str, text: str) -> httpx.Response:
    """Answer as a reviewer does on a ticket or problem page (`action` is the form's address): check the draft
    first, then send the checked text. Returns the page of the send."""
    checked = await client.post(action, data={"csrf": csrf, "text": text, "action": "check"})
    assert checked.status_code == 200, checked.text[:500]
    token = CHECK_TOKEN.search(checked.text)
    assert token is not None, "the check page carries no token to send the checked text with"
    return await client.post(action, data={"csrf": csrf, "text": text, "action": "send", "checked": token.group(1)})


class ConsoleHarness:
    """The app with the context it mounted the console with, and factories for staff and cases."""

    def __init__(self, app: Any, settings: Settings, password_hash: str) -> None:
        self.app = app
        self.settings = settings
        self.context: ConsoleContext = getattr(app.state, CONTEXT_STATE)
        self.database = self.context.database
        self.password_hash = password_hash
        self._cases = 0

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver")

    async def user(self, username: str, role: StaffRole = StaffRole.REVIEWER, queues: Sequence[str] = (), *,
                   totp_secret: str | None = None, totp_required: bool = False) -> StaffUser:
        async with self.database.sessionmaker.begin() as session:
            user = await staff_actions.create_staff(session, username=username, display_name=f"{username} 同志",
                                                    role=role, password_hash=self.password_hash)
            await staff_actions.set_queues(session, user, list(queues))
            if totp_secret:
                await staff_actions.set_totp(session, user, totp_secret, actor=None)
            if totp_required:
                await staff_actions.require_totp(session, user, True, actor=None)
        return user

    async def case(self, queue: str = "clean_hall", *, label: str | None = "slow_service", confidence: float = 0.9,
                   description: str = "办证窗口工作人员长时间不在岗，群众排队两个小时无人办理。",
                   district: str | None = "furong", anonymous: bool = True, name: str | None = None,
                   phone: str | None = None, terms: Sequence[str] = ("窗口", "不在岗"),
                   attachments: Sequence[tuple[str, str, bytes]] = (), overdue: bool = False) -> str:
        """A routed case in `queue`; returns its case number."""
        self._cases += 1
        async with self.database.sessionmaker.begin() as session:
            conversation = await actions.load_conversation(session, "telegram", f"tg-user-{self._cases}")
            ids = []
            self.settings.evidence_dir.mkdir(parents=True, exist_ok=True)
            for original, media_type, content in attachments:
                stored = secrets.token_hex(12)
                (self.settings.evidence_dir / stored).write_bytes(content)
                attachment = await evidence_rows.add_draft_attachment(
                    session, conversation, stored_name=stored, original_name=original, media_type=media_type,
                    size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest())
                ids.append(attachment.id)
            now = utcnow() - (timedelta(days=90) if overdue else timedelta(0))
            accept_due, resolve_due = due_dates(self.settings.city, queue, now)
            case, _code = await file_case(
                session, secret_key=self.settings.resolved_secret_key(), case_number_prefix="QL", year=2026,
                channel="telegram", reporter_ref=f"tg-user-{self._cases}", locale="zh", district=district,
                place="芙蓉区政务服务中心", occurred="上周三上午", description=description, anonymous=anonymous,
                reporter_name=name, reporter_phone=phone, attachment_ids=ids, queue=queue, label=label,
                confidence=confidence, terms=list(terms) if label else None,
                accept_due_at=accept_due, resolve_due_at=resolve_due)
            assert case.case_number is not None
            return case.case_number

    async def classified_case(self, description: str, district: str = "furong") -> tuple[str, Tag]:
        """A case as the dialog files it: the report classified by the promoted model and routed by the city's
        rules; returns its case number and the classifier's tag."""
        from nlp.registry import ModelRegistry

        classifier = await asyncio.to_thread(ModelRegistry(self.context.models_dir).load_promoted)
        tag = classifier.classify(description)
        self._cases += 1
        now = utcnow()
        async with self.database.sessionmaker.begin() as session:
            case, _code = await file_case(
                session, secret_key=self.settings.resolved_secret_key(), reporter_ref=f"tg-user-{self._cases}",
                district=district, description=description, now=now,
                **decided(route(self.settings.city, tag, district, now)))
            assert case.case_number is not None
            return case.case_number, tag

    async def get_case(self, case_number: str) -> Case:
        async with self.database.read_sessionmaker() as session:
            found = (await session.execute(select(Case).where(Case.case_number == case_number))).scalar_one()
            return found

    async def trace(self, case_number: str) -> list[TraceEvent]:
        async with self.database.read_sessionmaker() as session:
            query = (select(TraceEvent).join(Case, Case.id == TraceEvent.case_id)
                     .where(Case.case_number == case_number).order_by(TraceEvent.id))
            return list((await session.execute(query)).scalars())

    async def audit(self, action: str | None = None, case_number: str | None = None) -> list[AuditEntry]:
        async with self.database.read_sessionmaker() as session:
            query = select(AuditEntry).order_by(AuditEntry.id)
            if action:
                query = query.where(AuditEntry.action == action)
            if case_number:
                query = query.join(Case, Case.id == AuditEntry.case_id).where(Case.case_number == case_number)
            return list((await session.execute(query)).scalars())

    async def staff(self, username: str) -> StaffUser:
        async with self.database.read_sessionmaker() as session:
            user = await staff_actions.get_staff_by_username(session, username)
            assert user is not None
            return user

    async def login(self, client: httpx.AsyncClient, username: str, password: str = PASSWORD, *,
                    totp_secret: str | None = None) -> str:
        """Log in through the pages; returns the session's CSRF token."""
        response = await self.submit_login(client, username, password)
        assert response.status_code == 303, response.text
        if totp_secret is not None:
            assert response.headers["location"].startswith("/console/login/2fa")
            page = await client.get(response.headers["location"])
            response = await client.post("/console/login/2fa", data={
                "csrf": csrf_of(page.text), "code": pyotp.TOTP(totp_secret).now(), "next": "/console"})
            assert response.status_code == 303, response.text
        overview = await client.get("/console")
        assert overview.status_code == 200, overview.text
        return csrf_of(overview.text)

    async def submit_login(self, client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
        form = await client.get("/console/login")
        token = LOGIN_TOKEN_FIELD.search(form.text)
        assert token
        return await client.post("/console/login", data={"username": username, "password": password,
                                                         "login_token": token.group(1), "next": "/console"})


@pytest.fixture(scope="session")
def data_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the promoted default model (the run's, `shared_models_dir`) and a migrated database,
    made once per session (the service would train the model at every start otherwise)."""
    from storage.migrate import upgrade

    template = tmp_path_factory.mktemp("console-template") / "data"
    shutil.copytree(shared_models_dir(), template / "models")
    upgrade(make_settings(template).resolved_database_url, make_test_keyring())
    return template


def fresh_data_dir(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


@pytest.fixture
async def console(tmp_path: Path, password_hash: str, data_template: Path,
                  capsys: pytest.CaptureFixture[str]) -> AsyncIterator[ConsoleHarness]:
    settings = make_settings(fresh_data_dir(data_template, tmp_path / "data"))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        capsys.readouterr()  # the demo administrator's notice; test_first_start checks it
        # the lifespan's end stops the app's periodic jobs between their rounds, as a stopping service does
        yield ConsoleHarness(app, settings, password_hash)
