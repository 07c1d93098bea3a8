"""Staff administration through the pages."""

from __future__ import annotations

import re

from sqlalchemy import select

from storage.models import ApiToken, StaffRole
from tests.console.conftest import ConsoleHarness


async def test_admin_manages_staff_through_the_pages(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        created = await client.post("/console/staff", data={
            "csrf": csrf, "username": "li.si", "display_name": "李四", "role": "reviewer",
            "queues": ["clean_hall", "petitions"]})
        assert created.status_code == 200
        password = re.search(r'<code class="secret">([^<]+)</code>', created.text)
        assert password
        user = await console.staff("li.si")
        assert (user.role, sorted(q.queue for q in user.queues)) == ("reviewer", ["clean_hall", "petitions"])

        await client.post("/console/staff/li.si/role", data={"csrf": csrf, "role": "supervisor",
                                                             "queues": ["clean_hall"]})
        assert (await console.staff("li.si")).role == "supervisor"
        await client.post("/console/staff/li.si/totp-required", data={"csrf": csrf, "required": "1"})
        assert (await console.staff("li.si")).totp_required
        token_page = await client.post("/console/staff/li.si/tokens", data={"csrf": csrf, "name": "ticket system"})
        assert re.search(r'<code class="secret">qlt_', token_page.text)
        async with console.database.read_sessionmaker() as session:
            token = (await session.execute(select(ApiToken))).scalar_one()
        await client.post(f"/console/staff/li.si/tokens/{token.id}/revoke", data={"csrf": csrf})
        reset = await client.post("/console/staff/li.si/password", data={"csrf": csrf})
        new_password = re.search(r'<code class="secret">([^<]+)</code>', reset.text)
        assert new_password and new_password.group(1) != password.group(1)
        await client.post("/console/staff/li.si/active", data={"csrf": csrf, "active": "0"})
        assert not (await console.staff("li.si")).active
        refused = await client.post("/console/staff/boss/active", data={"csrf": csrf, "active": "0"})
        assert refused.status_code == 409
        assert (await client.get("/console/staff/nobody")).status_code == 404
        duplicate = await client.post("/console/staff", data={"csrf": csrf, "username": "li.si", "role": "reviewer"})
        assert duplicate.status_code == 409
        alike = await client.post("/console/staff", data={"csrf": csrf, "username": "Li.Si", "role": "reviewer",
                                                          "queues": "clean_hall"})
        assert alike.status_code == 409  # it would read like li.si in the audit log and every list
        assert "differ only in letter case" in alike.text
    async with console.database.read_sessionmaker() as session:
        assert (await session.execute(select(ApiToken))).scalar_one().revoked
    boss = await console.staff("boss")
    actions = [entry.action for entry in await console.audit()
               if entry.actor_id == boss.id and entry.action.startswith(("staff.", "api_token."))]
    assert actions == ["staff.create", "staff.assign_queues", "staff.role", "staff.assign_queues",
                       "staff.totp_required", "api_token.create", "api_token.revoke", "staff.reset_password",
                       "staff.disable"]
    # whose token was revoked, and which: names are the owner's choice and repeat across accounts
    [created_entry] = await console.audit("api_token.create")
    [revoked_entry] = await console.audit("api_token.revoke")
    assert created_entry.detail == {"user": "li.si", "name": "ticket system", "token_id": token.id}
    assert revoked_entry.detail == {"user": "li.si", "name": "ticket system", "token_id": token.id}
