"""Request bodies limited while they stream, in front of an application as the service puts it in front of
its own: a declared length over the limit is refused at once, a streamed body the moment it passes the
limit, and the evidence upload takes a file of the configured size where other paths take 1 MB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from bot.body_limits import DEFAULT_LIMIT, MULTIPART_OVERHEAD, BodyLimit, limits_by_path

UPLOAD_BYTES = 2 * 1024 * 1024
CHUNK = b"\0" * (64 * 1024)
TOO_LARGE = {"detail": f"request body larger than {DEFAULT_LIMIT} bytes"}


class Received:
    def __init__(self) -> None:
        self.bodies: list[int] = []


@pytest.fixture
async def service() -> AsyncIterator[tuple[httpx.AsyncClient, Received]]:
    received = Received()
    app = FastAPI()

    @app.post("/chat/api/upload")
    @app.post("/telegram/webhook")
    async def read(request: Request) -> dict[str, int]:
        body = await request.body()
        received.bodies.append(len(body))
        return {"received": len(body)}

    app.add_middleware(BodyLimit, limit_for=limits_by_path(UPLOAD_BYTES))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as client:
        yield client, received


async def _streamed(size: int) -> AsyncIterator[bytes]:
    """A body without a Content-Length, sent in chunks."""
    sent = 0
    while sent < size:
        chunk = CHUNK[: size - sent]
        sent += len(chunk)
        yield chunk


async def test_a_body_within_the_limit_reaches_the_application_whole(
        service: tuple[httpx.AsyncClient, Received]) -> None:
    client, received = service
    declared = await client.post("/telegram/webhook", content=b"x" * DEFAULT_LIMIT)
    streamed = await client.post("/telegram/webhook", content=_streamed(DEFAULT_LIMIT))
    assert (declared.json(), streamed.json()) == ({"received": DEFAULT_LIMIT}, {"received": DEFAULT_LIMIT})
    assert received.bodies == [DEFAULT_LIMIT, DEFAULT_LIMIT]


async def test_a_declared_length_over_the_limit_is_refused_before_the_application_sees_it(
        service: tuple[httpx.AsyncClient, Received]) -> None:
    client, received = service
    over = await client.post("/telegram/webhook", content=b"x" * (DEFAULT_LIMIT + 1))
    nonsense = await client.post("/telegram/webhook", content=b"{}", headers={"Content-Length": "two"})
    for response in (over, nonsense):
        assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert received.bodies == []


async def test_a_streamed_body_is_refused_once_it_passes_the_limit(service: tuple[httpx.AsyncClient, Received]) -> None:
    client, received = service
    response = await client.post("/telegram/webhook", content=_streamed(DEFAULT_LIMIT + 1))
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert received.bodies == []


async def test_the_evidence_upload_takes_a_file_of_the_configured_size(
        service: tuple[httpx.AsyncClient, Received]) -> None:
    client, received = service
    upload_limit = UPLOAD_BYTES + MULTIPART_OVERHEAD
    taken = await client.post("/chat/api/upload", content=_streamed(upload_limit))
    refused = await client.post("/chat/api/upload", content=_streamed(upload_limit + 1))
    elsewhere = await client.post("/telegram/webhook", content=_streamed(UPLOAD_BYTES))

    assert taken.json() == {"received": upload_limit}
    assert (refused.status_code, elsewhere.status_code) == (413, 413)
    assert refused.json() == {"detail": f"request body larger than {upload_limit} bytes"}
    assert received.bodies == [upload_limit]
