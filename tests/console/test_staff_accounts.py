"""Staff accounts (issue 12.6, 14.10): a TOTP code is good once, passwords are checked for strength, a new
password revokes the account's API tokens, a generated or reset password must be changed at the first login,
and a reviewer without queues is not created without a warning."""

from __future__ import annotations

import re

import pyotp
from sqlalchemy import select

from storage import staff_actions
from storage.models import ApiToken, StaffRole, StaffUser
from tests.console.conftest import PASSWORD, ConsoleHarness, csrf_of, location


async def test_a_totp_code_is_accepted_once(console: ConsoleHarness) -> None:
    secret = pyotp.random_base32()
    await console.user("sup", StaffRole.SUPERVISOR, totp_secret=secret)
    code = pyotp.TOTP(secret).now()

    async def second_factor(client_code: str) -> int:
        async with console.client() as client:
            location(await console.submit_login(client, "sup", PASSWORD))
            page = await client.get("/console/login/2fa")
            response = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": client_code})
            return response.status_code

    assert await second_factor(code) == 303  # logged in
    assert await second_factor(code) == 401  # the same code, seen over a shoulder, does not log in again
    events = [e.action for e in await console.audit() if e.action.startswith("login.")]
    assert events == ["login.password_ok", "login.success", "login.password_ok", "login.failure"]


async def test_the_code_that_confirms_an_enrolment_cannot_log_in(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"], totp_required=True)
    async with console.client() as client:
        location(await console.submit_login(client, "rev", PASSWORD))
        page = await client.get("/console/login/2fa")
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text).group(1)  # type: ignore[union-attr]
        signed = re.search(r'name="enrol_secret" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        code = pyotp.TOTP(secret).now()
        enrolled = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "enrol_secret": signed,
                                                                 "code": code})
        assert location(enrolled) == "/console"
    async with console.client() as client:
        location(await console.submit_login(client, "rev", PASSWORD))
        page = await client.get("/console/login/2fa")
        again = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": code})
        assert again.status_code == 401 and "验证码不正确" in again.text


async def test_weak_passwords_are_refused_with_the_reason_and_without_echo(console: ConsoleHarness) -> None:
    await console.user("wang.fang", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "wang.fang")
        for weak, reason in (("password1234", "too easy to guess"), ("aaaaaaaaaaaaaaaa", "too easy to guess"),
                             ("qwertyuiop123", "too easy to guess"), ("wang.fang-2026-xyz", "username"),
                             ("short", "at least 10 characters")):
            response = await client.post("/console/account/password", data={
                "csrf": csrf, "current": PASSWORD, "new": weak, "repeat": weak})
            assert response.status_code == 422
            assert reason in response.text and "新密码不够安全" in response.text
            assert weak not in response.text
        assert (await client.get("/console/account")).status_code == 200  # still the old password, still in
    async with console.client() as client:
        await console.login(client, "wang.fang", PASSWORD)


async def test_a_new_password_revokes_the_accounts_api_tokens(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    await console.user("li", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "li")
        created = await client.post("/console/account/tokens", data={"csrf": csrf, "name": "my script"})
        token = re.search(r'<code class="secret">(qlt_[^<]+)</code>', created.text).group(1)  # type: ignore[union-attr]
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/me", headers=bearer)).status_code == 200
        account = await client.get("/console/account")
        assert "API 令牌将全部吊销" in account.text  # the page says so before the change
        changed = await client.post("/console/account/password", data={
            "csrf": csrf, "current": PASSWORD, "new": "lotus pond at dusk 7", "repeat": "lotus pond at dusk 7"})
        assert location(changed) == "/console/account?done=password"
        assert (await client.get("/api/v1/me", headers=bearer)).status_code == 401
        csrf = csrf_of((await client.get("/console/account")).text)
        created = await client.post("/console/account/tokens", data={"csrf": csrf, "name": "second script"})
        assert "qlt_" in created.text
    async with console.client() as client:  # an administrator's reset revokes them too, and says how many
        csrf = await console.login(client, "boss")
        reset = await client.post("/console/staff/li/password", data={"csrf": csrf})
        assert "已吊销 1 个 API 令牌" in reset.text
    async with console.database.read_sessionmaker() as session:
        assert [token.revoked for token in (await session.execute(select(ApiToken))).scalars()] == [True, True]
    assert [e.action for e in await console.audit() if e.action.endswith("_password")] == [
        "staff.change_password", "staff.reset_password"]


async def test_a_generated_password_must_be_changed_at_the_first_login(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        created = await client.post("/console/staff", data={"csrf": csrf, "username": "zhou", "role": "reviewer",
                                                           "queues": ["clean_hall"]})
        password = re.search(r'<code class="secret">([^<]+)</code>', created.text).group(1)  # type: ignore[union-attr]
    async with console.client() as client:
        assert location(await console.submit_login(client, "zhou", password)) == "/console"
        assert location(await client.get("/console")) == "/console/account"
        assert location(await client.get("/console/cases")) == "/console/account"
        page = await client.get("/console/account")
        assert page.status_code == 200 and 'id="must-change"' in page.text
        csrf = csrf_of(page.text)
        api = await client.get("/api/v1/me")
        assert (api.status_code, api.json()) == (
            403, {"detail": "choose a new password in the console (/console/account) first"})
        assert location(await client.post("/console/account/tokens", data={"csrf": csrf, "name": "x"})) == \
            "/console/account"
        changed = await client.post("/console/account/password", data={
            "csrf": csrf, "current": password, "new": "river stones in autumn 9", "repeat": "river stones in autumn 9"})
        assert location(changed) == "/console/account?done=password"
        assert (await client.get("/console/cases")).status_code == 200
        assert 'id="must-change"' not in (await client.get("/console/account")).text


async def test_a_reset_password_must_be_changed_too(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    await console.user("li", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        reset = await client.post("/console/staff/li/password", data={"csrf": csrf})
        password = re.search(r'<code class="secret">([^<]+)</code>', reset.text).group(1)  # type: ignore[union-attr]
    async with console.client() as client:
        location(await console.submit_login(client, "li", password))
        assert location(await client.get("/console/queue/clean_hall")) == "/console/account"


async def test_a_reviewer_without_queues_needs_a_confirmation(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        asked = await client.post("/console/staff", data={"csrf": csrf, "username": "empty", "display_name": "空队列",
                                                         "role": "reviewer", "password": "tea garden path 42"})
        assert asked.status_code == 422
        assert "没有队列的审核员看不到任何案件" in asked.text and 'name="no_queues_ok"' in asked.text
        assert 'value="empty"' in asked.text and 'value="空队列"' in asked.text  # the form keeps what was entered
        assert "tea garden path 42" not in asked.text  # but never the password
        assert "empty" not in [user.username for user in await _staff(console)]
        created = await client.post("/console/staff", data={"csrf": csrf, "username": "empty", "role": "reviewer",
                                                           "password": "tea garden path 42", "no_queues_ok": "1"})
        assert created.status_code == 200 and "已创建账户" in created.text
        supervisor = await client.post("/console/staff", data={"csrf": csrf, "username": "chief",
                                                              "role": "supervisor"})
        assert supervisor.status_code == 200  # supervisors see every queue: nothing to ask
    async with console.client() as client:
        admin = await console.login(client, "boss")
        refused = await client.post("/api/v1/staff", headers={"x-csrf-token": admin}, json={
            "username": "nobody", "password": "tea garden path 42"})
        assert refused.status_code == 422 and "without queues" in refused.json()["detail"]
        made = await client.post("/api/v1/staff", headers={"x-csrf-token": admin}, json={
            "username": "nobody", "password": "tea garden path 42", "no_queues_ok": True})
        assert (made.status_code, made.json()["queues"]) == (201, [])


async def _staff(console: ConsoleHarness) -> list[StaffUser]:
    async with console.database.read_sessionmaker() as session:
        return await staff_actions.list_staff(session)
