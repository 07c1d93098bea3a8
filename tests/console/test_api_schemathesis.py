"""Schemathesis against the service's own OpenAPI document: no request, however odd, gets a 5xx.

Every operation under /api/v1 and the web chat's /chat/api/* is called in-process (ASGI, lifespan and
all) with an administrator's Bearer token, with examples generated from the schema, and with a few
real cases in the database so that some generated case numbers and attachment ids hit real rows.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.schemas import APIOperation

from bot.config import load_settings
from storage import staff_actions
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import Attachment, StaffRole, utcnow
from tests.conftest import make_test_keyring, staff_password_hashing
from tests.factories import file_case

PATHS = r"^/(api/v1|chat/api)/"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
MAX_EXAMPLES = 25  # per operation
TOKENS: dict[str, str] = {}


async def _seed(database_url: str, secret_key: bytes, evidence_dir: Path) -> str:
    """An administrator with an API token, a reviewer, and two routed cases (one with evidence)."""
    engine = create_engine(database_url, make_test_keyring())
    try:
        async with create_sessionmaker(engine).begin() as session:
            admin = await staff_actions.create_staff(
                session, username="root", display_name="root 同志", role=StaffRole.ADMIN,
                password_hash=staff_password_hashing().hash("schema kiwi 26"))
            token, _ = await staff_actions.create_api_token(session, admin, "schemathesis", actor=admin)
            reviewer = await staff_actions.create_staff(session, username="li", display_name="li 同志",
                                                        role=StaffRole.REVIEWER, password_hash="x")
            await staff_actions.set_queues(session, reviewer, ["clean_hall"])
            attachment = Attachment(stored_name="evidence-1.jpg", original_name="photo.jpg", media_type="image/jpeg",
                                    size_bytes=len(JPEG), sha256="0" * 64)
            session.add(attachment)
            await session.flush()
            for number, ids in enumerate(([attachment.id], [])):
                await file_case(
                    session, secret_key=secret_key, case_number_prefix="QL", year=2026, channel="telegram",
                    reporter_ref=f"8811223{number}", locale="zh", district="yuelu", place="岳麓区政务服务中心3号窗口",
                    occurred="今天", description="政务服务中心窗口工作人员上班时间玩手机，群众排队两小时。",
                    anonymous=bool(number), reporter_name=None if number else "欧阳明月",
                    reporter_phone=None if number else "13987654321", attachment_ids=ids, queue="clean_hall",
                    label="slow_service", confidence=0.9, top=[["slow_service", 0.9], ["other", 0.1]],
                    terms=["玩手机"], model_version="test-1", accept_due_at=utcnow() + timedelta(days=15),
                    resolve_due_at=utcnow() + timedelta(days=60))
        return token
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    from bot.app import create_app

    with pytest.MonkeyPatch.context() as monkeypatch:
        for variable in ("QINGLIAN_TELEGRAM_TOKEN", "QINGLIAN_DATABASE_URL", "QINGLIAN_CONFIG_FILE",
                         "QINGLIAN_WECHAT_TOKEN"):
            monkeypatch.delenv(variable, raising=False)
        app_settings = load_settings(data_dir=tmp_path_factory.mktemp("schemathesis"), secret_key="s" * 40)
    upgrade(app_settings.resolved_database_url, make_test_keyring())
    app_settings.evidence_dir.mkdir(parents=True, exist_ok=True)
    (app_settings.evidence_dir / "evidence-1.jpg").write_bytes(JPEG)
    TOKENS["admin"] = asyncio.run(_seed(app_settings.resolved_database_url, app_settings.resolved_secret_key(),
                                        app_settings.evidence_dir))
    app = create_app(app_settings)
    yield schemathesis.openapi.from_asgi("/api/openapi.json", app)
    schemathesis_asgi.shutdown_lifespans()  # the app's lifespan runs on schemathesis's own event loop thread
    TOKENS.clear()


def _strategy(operation: APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    """Valid requests and requests that break the schema on purpose (wrong types, missing fields)."""
    return st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))


def _fuzzer(operation: APIOperation, headers: dict[str, str], statuses: Counter[int]) -> Callable[[], None]:
    """A Hypothesis test of one operation: every response, valid request or not, is below 500."""

    @given(case=_strategy(operation))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
        statuses[response.status_code] += 1

    return fuzz


def test_no_operation_answers_with_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    """Each operation is fuzzed on its own; every one is tried, then every failure is reported together
    (schemathesis's message has the failing request as a curl command)."""
    headers = {"Authorization": f"Bearer {TOKENS['admin']}"}
    operations = []
    for result in api_schema.include(path_regex=PATHS).get_all_operations():
        assert isinstance(result, Ok), result  # every operation's schema is valid
        operations.append(result.ok())
    labels = {operation.label for operation in operations}
    assert {"GET /api/v1/cases", "POST /api/v1/cases/{case_number}/answer", "PATCH /api/v1/staff/{username}",
            "POST /chat/api/message"} <= labels
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for operation in operations:
        try:
            _fuzzer(operation, headers, statuses[operation.label])()
        except Exception as failure:  # noqa: BLE001 - collected, reported below with the operation
            failures.append(f"{operation.label}:\n{failure}")
    assert not failures, "\n\n".join(failures)
    # the token was accepted: the fuzzing reached the handlers, not only the authentication
    assert statuses["GET /api/v1/me"][200] and statuses["GET /api/v1/cases"][200], dict(statuses)
    print({label: dict(counts) for label, counts in sorted(statuses.items())})
