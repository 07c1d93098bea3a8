"""The user's own account: password, second factor and API tokens."""

from __future__ import annotations

import re

import pyotp

from storage.models import StaffRole
from tests.console.conftest import PASSWORD, ConsoleHarness, csrf_of, location


async def test_own_account_password_totp_and_tokens(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        wrong = await client.post("/console/account/password", data={"csrf": csrf, "current": "nope",
                                                                     "new": "x" * 12, "repeat": "x" * 12})
        assert wrong.status_code == 422
        changed = await client.post("/console/account/password", data={
            "csrf": csrf, "current": PASSWORD, "new": "a new password 2026", "repeat": "a new password 2026"})
        assert location(changed) == "/console/account?done=password"
        page = await client.get("/console/account?enrol=1")
        assert page.status_code == 200  # still logged in with a fresh session
        csrf = csrf_of(page.text)
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text).group(1)  # type: ignore[union-attr]
        signed = re.search(r'name="secret" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert (await client.post("/console/account/totp", data={"csrf": csrf, "secret": signed,
                                                                 "code": "000000"})).status_code == 422
        enrolled = await client.post("/console/account/totp", data={"csrf": csrf, "secret": signed,
                                                                    "code": pyotp.TOTP(secret).now()})
        assert location(enrolled) == "/console/account?done=totp_on"
        created = await client.post("/console/account/tokens", data={"csrf": csrf, "name": "my script"})
        token = re.search(r'<code class="secret">(qlt_[^<]+)</code>', created.text)
        assert token
        api = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"})
        assert api.status_code == 200
        token_id = re.search(r'/console/account/tokens/(\d+)/revoke', created.text).group(1)  # type: ignore[union-attr]
        await client.post(f"/console/account/tokens/{token_id}/revoke", data={"csrf": csrf})
        api = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"})
        assert api.status_code == 401
    async with console.client() as client:
        response = await console.submit_login(client, "rev", "a new password 2026")
        assert location(response).startswith("/console/login/2fa")
    assert (await console.staff("rev")).totp_secret == secret
