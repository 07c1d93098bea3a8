"""The models page: administrators only; promoting and rolling back refuse what cannot be done."""

from __future__ import annotations

from storage.models import StaffRole
from tests.console.conftest import ConsoleHarness


async def test_models_page_for_admins(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        page = await client.get("/console/models")
        assert page.status_code == 200 and "立即训练新版本" in page.text
        refused = await client.post("/console/models/promote", data={"csrf": csrf, "version": "nope"})
        assert refused.status_code == 409
        assert (await client.post("/console/models/rollback", data={"csrf": csrf})).status_code == 409
