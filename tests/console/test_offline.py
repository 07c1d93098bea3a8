"""Works offline (issue 14.9): the API documentation's Swagger UI comes from the installed package, and no page
of the console, the API documentation or the web chat names anything outside the service."""

from __future__ import annotations

import re

from storage.models import StaffRole
from tests.console.conftest import ConsoleHarness

EXTERNAL = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", re.IGNORECASE)


async def test_api_docs_are_served_from_the_package(console: ConsoleHarness) -> None:
    async with console.client() as client:
        docs = await client.get("/api/docs")
        assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
        assert "cdn.jsdelivr.net" not in docs.text and EXTERNAL.search(docs.text) is None
        assets = re.findall(r"""(?:src|href)=["'](/api/docs/assets/[^"']+)["']""", docs.text)
        assert sorted(assets) == ["/api/docs/assets/favicon-32x32.png", "/api/docs/assets/swagger-ui-bundle.js",
                                  "/api/docs/assets/swagger-ui.css"]
        for asset in assets:
            fetched = await client.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 500
        assert (await client.get("/redoc")).status_code == 404  # ReDoc would load from a CDN: not offered
        assert (await client.get("/api/openapi.json")).status_code == 200


async def test_no_page_names_anything_outside_the_service(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    number = await console.case("clean_hall")
    async with console.client() as client:
        pages = [(await client.get(url)).text for url in ("/", "/console/login")]
        await console.login(client, "boss")
        for url in ("/console", "/console/cases", f"/console/case/{number}", "/console/stats", "/console/models",
                    "/console/staff", "/console/audit", "/console/account", "/console/replies", "/console/notices"):
            response = await client.get(url)
            assert response.status_code == 200, url
            pages.append(response.text)
        pages.append((await client.get("/console/static/console.css")).text)
    assert [EXTERNAL.findall(page) for page in pages] == [[] for _ in pages]
