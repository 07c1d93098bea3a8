"""The one ASGI application, in-process without its workers (its start-up, model and all, is what every
`LiveService` and console test runs): health, who may read /metrics, the Telegram webhook when it is off, and
refused forms answered without the values they carried."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import console_context, create_app
from bot.config import Settings
from nlp.registry import MODEL_FILE, ModelRegistry
from storage.migrate import upgrade
from storage.models import StaffRole
from tests.conftest import free_port, make_test_keyring, shared_models_dir
from tests.factories import console_session, create_staff

METRICS_TOKEN = "scraper-token-for-tests-0123456789"

Client = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def service(tmp_path: Path) -> Client:
    """A client of the service's app on `database_url` (default: a migrated SQLite database), calling from
    `client_ip`, with the metrics token set or not."""

    @asynccontextmanager
    async def client(database_url: str | None = None, client_ip: str = "203.0.113.7",
                     metrics_token: str | None = METRICS_TOKEN) -> AsyncIterator[httpx.AsyncClient]:
        url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        if database_url is None:
            await asyncio.to_thread(upgrade, url, make_test_keyring())
        settings = Settings(data_dir=tmp_path, database_url=url, secret_key="app-secret-" + "a" * 40,
                            telegram_token=None, wechat_token=None, metrics_token=metrics_token)
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
                yield http
        finally:
            await app.state.runtime.close()

    return client


async def test_health_is_ok_while_the_database_answers(service: Client) -> None:
    async with service() as client:
        response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "model": None})  # no model loaded yet


async def test_health_is_unavailable_while_the_database_cannot_be_reached(service: Client) -> None:
    unreachable = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/qinglian"
    async with service(database_url=unreachable) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


@pytest.mark.parametrize(("metrics_token", "client_ip", "authorization", "status"), [
    (METRICS_TOKEN, "203.0.113.7", f"Bearer {METRICS_TOKEN}", 200),
    (METRICS_TOKEN, "203.0.113.7", "Bearer wrong", 401),
    (METRICS_TOKEN, "127.0.0.1", None, 401),  # with a token set, even a local scraper sends it
    (None, "127.0.0.1", None, 200),  # without one, only this machine may read
    (None, "203.0.113.7", None, 401),
])
async def test_metrics_are_read_with_the_token_or_from_this_machine(
        service: Client, metrics_token: str | None, client_ip: str, authorization: str | None, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with service(metrics_token=metrics_token, client_ip=client_ip) as client:
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert "qinglian_outbox_lag_seconds 0.0" in response.text
    else:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_the_telegram_webhook_is_not_there_without_a_webhook(service: Client) -> None:
    async with service() as client:
        response = await client.post("/telegram/webhook", json={"update_id": 1})
    assert (response.status_code, response.json()) == (404, {"detail": "the Telegram webhook is not enabled"})


async def test_a_refused_form_is_answered_with_the_reasons_and_without_the_values(service: Client) -> None:
    password = "my secret password " + "x" * 1000
    async with service() as client:
        page = await client.post("/console/login", data={"username": "wang", "password": password})
        api = await client.post("/chat/api/message", json={"text": password * 20},  # over the 20,000 characters
                                headers={"X-Qinglian-Chat": "1"})
    # a console form: a page naming the field and what is wrong with it
    assert page.status_code == 422 and '<li data-loc="body.password">' in page.text and "at most 1000" in page.text
    assert "my secret password" not in page.text
    details: list[dict[str, Any]] = api.json()["detail"]  # elsewhere: the reasons as JSON
    assert api.status_code == 422
    assert [(detail["loc"], detail["type"]) for detail in details] == [(["body", "text"], "string_too_long")]
    assert "my secret password" not in api.text


async def test_a_chat_message_of_thousands_of_unknown_fields_is_refused_with_one_reason(service: Client) -> None:
    """Each unknown field was a reason of its own: 800 KB of them came back as 6.7 MB of reasons, and the service
    answered nobody else for the 4 s it took to write them."""
    fields = {f"k{number}": 0 for number in range(20_000)}
    async with service() as client:
        answer = await client.post("/chat/api/message", json={"text": "hi", **fields},
                                   headers={"X-Qinglian-Chat": "1"})
    assert answer.status_code == 422 and len(answer.content) < 1000
    [reason] = answer.json()["detail"]
    assert "text, choice, command" in reason["msg"]


async def test_the_web_chat_and_the_console_are_served(service: Client) -> None:
    async with service() as client:
        chat = await client.get("/")
        console = await client.get("/console")
    assert chat.status_code == 200 and chat.headers["content-type"].startswith("text/html")
    assert (console.status_code, console.headers["location"]) == (303, "/console/login?next=/console")


async def test_the_chat_page_cannot_be_framed_by_another_site_and_no_answer_is_sniffed(service: Client) -> None:
    """Another site that framed the chat page could lay its own buttons over the resident's (clickjacking); a JSON
    answer or a refusal read as another type by an old browser could run as a page."""
    async with service() as client:
        page = await client.get("/")
        api = await client.post("/chat/api/message", json={"command": "start"}, headers={"X-Qinglian-Chat": "1"},
                                cookies=page.cookies)
        refused = await client.post("/chat/api/message", json={"command": "start"})
        missing = await client.get("/no/such/page")
    policy = {part.strip().split(" ", 1)[0]: part.strip()
              for part in page.headers["content-security-policy"].split(";")}
    assert policy["frame-ancestors"] == "frame-ancestors 'none'" and page.headers["x-frame-options"] == "DENY"
    assert policy["object-src"] == "object-src 'none'" and policy["base-uri"] == "base-uri 'none'"
    assert [answer.status_code for answer in (api, refused, missing)] == [200, 400, 404]
    assert [answer.headers.get("x-content-type-options") for answer in (page, api, refused, missing)] == ["nosniff"] * 4


async def test_a_promoted_model_this_process_cannot_load_shows_on_health_and_the_model_page(tmp_path: Path) -> None:
    """The service keeps classifying with the model it has, and says so: /healthz names the promoted version it
    could not load and, to this machine or the metrics token, why, and the administrator's model page warns of it,
    until a loadable one is promoted."""
    shutil.copytree(shared_models_dir(), tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    current = registry.promoted()
    assert current is not None
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    await asyncio.to_thread(upgrade, url, make_test_keyring())
    app = create_app(Settings(data_dir=tmp_path, database_url=url, secret_key="app-secret-" + "a" * 40,
                              telegram_token=None, wechat_token=None))
    runtime = app.state.runtime
    try:
        await runtime.classifier.ensure_ready()
        broken = "29990101-000000-0b0b0b"
        shutil.copytree(tmp_path / "models" / current.version, tmp_path / "models" / broken)
        metadata = json.loads((tmp_path / "models" / broken / "metadata.json").read_text(encoding="utf-8"))
        (tmp_path / "models" / broken / "metadata.json").write_text(json.dumps({**metadata, "version": broken}),
                                                                    encoding="utf-8")
        await asyncio.to_thread(registry.promote, broken)
        with (tmp_path / "models" / broken / MODEL_FILE).open("ab") as handle:
            handle.write(b"altered after promotion")
        assert await runtime.classifier.reload_if_changed() is False

        async with runtime.sessionmaker.begin() as session:
            admin = await create_staff(session, "admin.li", StaffRole.ADMIN)
        cookies, _ = await console_session(console_context(runtime), admin)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test", cookies=cookies) as http:
            health = (await http.get("/healthz")).json()
            page = await http.get("/console/models")
        outside = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=outside, base_url="http://service.test") as http:
            anonymous = (await http.get("/healthz")).json()
    finally:
        await runtime.close()

    assert health["status"] == "ok" and health["model"] == current.version
    assert health["model_not_loaded"]["version"] == broken and health["model_not_loaded"]["reason"]
    # a visitor from elsewhere (health is public behind the proxy) is told that, not the error: it can name the
    # data directory's paths and the libraries' versions
    assert anonymous == {"status": "ok", "model": current.version, "model_not_loaded": {"version": broken}}
    assert page.status_code == 200
    warning = page.text.split('id="model-not-loaded"', 1)[1].split("</p>", 1)[0]
    assert broken in warning and current.version in warning
