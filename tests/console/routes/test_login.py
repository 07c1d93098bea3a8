"""Logging in: the first administrator, the login form and its token, account locks and the address
throttle, the second factor (enrolled at login when required), logging out; security headers."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from sqlalchemy import select

from bot.app import create_app
from console.throttle import IP_FAILURE_LIMIT
from storage import staff_actions
from storage.models import StaffRole, StaffSession, utcnow
from tests.console.conftest import (
    PASSWORD,
    ConsoleHarness,
    csrf_of,
    fresh_data_dir,
    location,
    make_settings,
)
from tests.factories import console_session


async def test_first_start_creates_a_marked_demo_admin_who_must_choose_a_password(
        tmp_path: Path, data_template: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The demo administrator's password was generated and printed to a log others may read: like any generated
    password (issue 14.10), it opens only the page where its owner chooses a new one."""
    settings = make_settings(fresh_data_dir(data_template, tmp_path / "data"))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        printed = caplog.text  # one line of the service's log (bot.app)
        caplog.clear()
        found = re.search(r"administrator 'demo-admin' with password (\S+)", printed)
        assert "DEMO ONLY" in printed and found, printed
        assert "change it when you first sign in" in printed
        generated = found.group(1)
        harness = ConsoleHarness(app, settings, "")
        async with harness.client() as client:
            assert (await harness.submit_login(client, "demo-admin", generated)).status_code == 303
            assert location(await client.get("/console/staff")) == "/console/account"
            page = await client.get("/console/account")
            assert "请先设置自己的新密码" in page.text, page.text
            changed = await client.post("/console/account/password", data={
                "csrf": csrf_of(page.text), "current": generated, "new": "demo admin's own 2026",
                "repeat": "demo admin's own 2026"})
            assert location(changed) == "/console/account?done=password"
            assert "人员" in (await client.get("/console/staff")).text
        async with harness.client() as client:
            assert (await harness.submit_login(client, "demo-admin", generated)).status_code == 401
            await harness.login(client, "demo-admin", "demo admin's own 2026")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert "demo-admin" not in caplog.text  # only on an empty staff table


async def test_production_first_start_prints_instructions_and_creates_nobody(
        tmp_path: Path, data_template: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(fresh_data_dir(data_template, tmp_path / "data"), environment="production",
                             secret_key="ZCZC6UKxcwPhPOcM8n6l22BAie7ui-V-mGQbm5-O0qxCy3ds")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert "qinglian staff add <username> --role admin" in caplog.text
        harness = ConsoleHarness(app, settings, "")
        async with harness.client() as client:
            response = await harness.submit_login(client, "demo-admin", "anything-at-all")
            assert response.status_code == 401


async def test_pages_need_a_login_and_carry_security_headers(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        assert location(await client.get("/console/cases")) == "/console/login?next=/console/cases"
        login_page = await client.get("/console/login")
        for page in (login_page,):
            assert page.headers["content-security-policy"].startswith("default-src 'self'")
            assert "unsafe-inline" not in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert page.headers["cache-control"] == "no-store"
        response = await console.submit_login(client, "rev", PASSWORD)
        cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith("ql_staff="))
        # Lax, so the link in a staff-group notice opens the ticket; every POST still needs the CSRF token
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
        page = await client.get("/console")
        assert page.status_code == 200
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text


async def test_after_login_the_page_asked_for_opens(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        target = location(await client.get(f"/console/case/{number}"))
        assert target == f"/console/login?next=/console/case/{number}"
        form = await client.get(target)
        assert f'name="next" value="/console/case/{number}"' in form.text
        token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        listing = "/console/queue/clean_hall?status=routed"
        for next_path, expected in ((f"/console/case/{number}/accept", f"/console/case/{number}"),
                                    ("https://evil.example/", "/console"), ("//evil.example/", "/console"),
                                    (listing, listing)):
            response = await client.post("/console/login", data={"username": "rev", "password": PASSWORD,
                                                                  "login_token": token, "next": next_path})
            assert location(response) == expected
            client.cookies.set("ql_login", token, path="/console/login")


async def test_login_form_without_its_token_is_refused(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        response = await client.post("/console/login", data={"username": "rev", "password": PASSWORD})
        assert response.status_code == 403
        assert "ql_staff" not in response.cookies


async def test_failed_logins_lock_the_account(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    attempts = console.settings.city.console.login_attempts
    async with console.client() as client:
        for _ in range(attempts):
            assert (await console.submit_login(client, "rev", "wrong password!")).status_code == 401
        refused = await console.submit_login(client, "rev", PASSWORD)
        assert refused.status_code == 401 and "锁定" in refused.text
    assert len(await console.audit("login.failure")) == attempts
    assert len(await console.audit("login.locked")) == 1
    user = await console.staff("rev")
    assert user.locked_until is not None and user.locked_until > utcnow() + timedelta(minutes=10)
    async with console.database.sessionmaker.begin() as session:  # the lock runs out
        stored = await session.get(type(user), user.id)
        assert stored is not None
        stored.locked_until = utcnow() - timedelta(seconds=1)
    async with console.client() as client:
        await console.login(client, "rev")


async def test_a_locked_account_is_audited_once_per_lock_however_many_attempts_and_addresses_meet_it(
        console: ConsoleHarness) -> None:
    """Attempts on a locked account from ever new addresses (which the address throttle does not stop) are each
    refused as before, but only the first writes `login.locked`; once the lock has run out and the account is locked
    again, the first attempt that meets the new lock writes one more."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    attempts = console.settings.city.console.login_attempts

    def client_from(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=console.app, client=(address, 40000)),
                                 base_url="http://testserver")

    async def lock_and_try(round_number: int) -> None:
        async with console.client() as client:
            for _ in range(attempts):
                assert (await console.submit_login(client, "rev", "wrong password!")).status_code == 401
        for number in range(6):
            async with client_from(f"198.51.100.{10 * round_number + number}") as client:
                refused = await console.submit_login(client, "rev", PASSWORD if number % 2 else "wrong password!")
                assert refused.status_code == 401 and "用户名或密码错误" in refused.text  # the same refusal

    await lock_and_try(1)
    [locked] = await console.audit("login.locked")
    assert (locked.ip, locked.detail) == ("198.51.100.10", {"user": "rev"})
    user = await console.staff("rev")
    async with console.database.sessionmaker.begin() as session:  # the lock runs out
        stored = await session.get(type(user), user.id)
        assert stored is not None
        stored.locked_until = utcnow() - timedelta(seconds=1)
    await lock_and_try(2)
    assert [(entry.ip, entry.detail) for entry in await console.audit("login.locked")] == [
        ("198.51.100.10", {"user": "rev"}), ("198.51.100.20", {"user": "rev"})]
    assert len(await console.audit("login.failure")) == 2 * attempts


async def test_failed_logins_from_one_address_are_throttled(console: ConsoleHarness) -> None:
    async with console.client() as client:
        for number in range(IP_FAILURE_LIMIT):
            assert (await console.submit_login(client, f"nobody{number}", "wrong password!")).status_code == 401
        refused = await console.submit_login(client, "nobody", "wrong password!")
        assert refused.status_code == 429 and "失败次数过多" in refused.text
    assert len(await console.audit("login.failure")) == IP_FAILURE_LIMIT  # the refused one is not even tried


async def test_a_throttled_address_is_audited_once_per_lock_with_the_address_and_the_username_tried(
        console: ConsoleHarness) -> None:
    """An auditor sees brute force on the audit page and in its export: the failures, and one entry when the address
    is throttled (the refused requests after it write nothing, so an attacker cannot fill the database)."""
    admin = await console.user("boss", StaffRole.ADMIN)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    minutes = console.settings.city.console.login_lock_minutes
    async with console.client() as client:
        for number in range(IP_FAILURE_LIMIT - 1):
            assert (await console.submit_login(client, f"nobody{number}", "wrong password!")).status_code == 401
        assert (await console.submit_login(client, "rev", "wrong password!")).status_code == 401
        for _ in range(5):
            assert (await console.submit_login(client, "rev", PASSWORD)).status_code == 429
    [throttled] = await console.audit("login.throttled")
    assert throttled.ip == "127.0.0.1" and throttled.actor_id == (await console.staff("rev")).id
    assert throttled.detail == {"user": "rev", "failures": IP_FAILURE_LIMIT, "minutes": minutes}
    cookies, _ = await console_session(console.context, admin)  # the address cannot log in now
    async with console.client() as client:
        client.cookies.update(cookies)
        page = (await client.get("/console/audit", params={"action": "login."})).text
        exported = (await client.get("/console/audit.csv", params={"action": "login.throttled"})).text
    row = page[page.rindex("<tr", 0, page.index("<code class=\"dim\">login.throttled</code>")):]
    row = row[:row.index("</tr>")]
    assert ('<span class="bi">登录被限制（该地址失败次数过多）<span class="en">sign-ins refused (too many failures '
            'from the address)</span></span>') in row
    assert (f'<span class="bi">账号：rev · 失败次数：{IP_FAILURE_LIMIT} · 限制时长（分钟）：{minutes}'
            f'<span class="en">account: rev · failures: {IP_FAILURE_LIMIT} · refused for (minutes): {minutes}'
            '</span></span>') in row and "127.0.0.1" in row
    [_header, line] = list(csv.reader(io.StringIO(exported.removeprefix("\ufeff"))))
    assert line[1:4] == ["rev", "login.throttled", ""] and line[5] == "127.0.0.1"
    assert line[6:] == ["登录被限制（该地址失败次数过多） sign-ins refused (too many failures from the address)",
                        f"账号：rev · 失败次数：{IP_FAILURE_LIMIT} · 限制时长（分钟）：{minutes} / "
                        f"account: rev · failures: {IP_FAILURE_LIMIT} · refused for (minutes): {minutes}"]


async def test_the_failure_that_locks_an_account_and_a_disabled_account_s_attempts_say_so(
        console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    await console.user("gone", StaffRole.REVIEWER, ["clean_hall"])
    async with console.database.sessionmaker.begin() as session:
        gone = await staff_actions.get_staff_by_username(session, "gone")
        assert gone is not None
        await staff_actions.set_active(session, gone, False)
    attempts = console.settings.city.console.login_attempts
    async with console.client() as client:
        for _ in range(attempts):
            await console.submit_login(client, "rev", "wrong password!")
        await console.submit_login(client, "gone", PASSWORD)
    failures = [entry.detail for entry in await console.audit("login.failure")]
    assert failures == [{"user": "rev"}] * (attempts - 1) + [{"user": "rev", "locked": True},
                                                             {"user": "gone", "account_disabled": True}]


async def test_with_redis_down_logins_work_and_failures_are_still_throttled(
        tmp_path: Path, data_template: Path, password_hash: str, caplog: pytest.LogCaptureFixture) -> None:
    """Seen deploying: QINGLIAN_REDIS_URL set and Redis down, every console login answered 500. The failures
    are counted in the database meanwhile (which every process sees), so a Redis made unavailable does not
    lift the throttle."""
    settings = make_settings(fresh_data_dir(data_template, tmp_path / "data"),
                             redis_url="redis://127.0.0.1:1/0")  # nothing listens there: a refused connection
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        console = ConsoleHarness(app, settings, password_hash)
        await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
        async with console.client() as client:
            await console.login(client, "rev")
        async with console.client() as client:
            for number in range(IP_FAILURE_LIMIT):
                assert (await console.submit_login(client, f"nobody{number}", "wrong password!")).status_code == 401
            refused = await console.submit_login(client, "rev", PASSWORD)
            assert refused.status_code == 429 and "失败次数过多" in refused.text
    warnings = [record.getMessage() for record in caplog.records
                if record.name == "console.throttle" and record.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("Redis (QINGLIAN_REDIS_URL) does not answer")


async def test_totp_login(console: ConsoleHarness) -> None:
    secret = pyotp.random_base32()
    await console.user("sup", StaffRole.SUPERVISOR, totp_secret=secret)
    async with console.client() as client:
        response = await console.submit_login(client, "sup", PASSWORD)
        assert location(response).startswith("/console/login/2fa")
        assert location(await client.get("/console")).startswith("/console/login/2fa")  # half logged in
        page = await client.get("/console/login/2fa")
        assert secret not in page.text
        wrong = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": "000000"})
        assert wrong.status_code == 401
        no_csrf = await client.post("/console/login/2fa", data={"code": pyotp.TOTP(secret).now()})
        assert no_csrf.status_code == 403
        right = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text),
                                                               "code": pyotp.TOTP(secret).now()})
        assert location(right) == "/console"
        assert (await client.get("/console")).status_code == 200
    assert [e.action for e in await console.audit() if e.action.startswith("login.")] == [
        "login.password_ok", "login.failure", "login.success"]


async def test_wrong_codes_lock_the_account_too(console: ConsoleHarness) -> None:
    secret = pyotp.random_base32()
    await console.user("sup", StaffRole.SUPERVISOR, totp_secret=secret)
    async with console.client() as client:
        await console.submit_login(client, "sup", PASSWORD)
        page = await client.get("/console/login/2fa")
        for _ in range(console.settings.city.console.login_attempts):
            response = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": "000000"})
        assert response.status_code == 401 and "锁定" in response.text
        assert location(await client.get("/console")).startswith("/console/login?")
        # the password alone does not reset the count while the second factor is pending
        assert (await console.submit_login(client, "sup", PASSWORD)).status_code == 401


async def test_required_totp_is_enrolled_at_login(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"], totp_required=True)
    async with console.client() as client:
        location(await console.submit_login(client, "rev", PASSWORD))
        page = await client.get("/console/login/2fa")
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text)
        assert secret and "otpauth://totp/" in page.text
        response = await client.post("/console/login/2fa", data={
            "csrf": csrf_of(page.text), "enrol_secret": re.search(r'name="enrol_secret" value="([^"]+)"',
                                                                  page.text).group(1),  # type: ignore[union-attr]
            "code": pyotp.TOTP(secret.group(1)).now()})
        assert location(response) == "/console"
        assert (await client.get("/console")).status_code == 200
    assert (await console.staff("rev")).totp_secret == secret.group(1)
    assert len(await console.audit("staff.totp_enrol")) == 1


async def test_logout_needs_the_csrf_token_and_ends_the_session(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        assert (await client.post("/console/logout", data={"csrf": "forged"})).status_code == 403
        assert (await client.get("/console")).status_code == 200
        assert location(await client.post("/console/logout", data={"csrf": csrf})) == "/console/login"
        assert location(await client.get("/console")).startswith("/console/login")
    async with console.database.read_sessionmaker() as session:
        assert (await session.execute(select(StaffSession))).scalars().all() == []


async def test_a_mistyped_code_at_the_enrolment_of_login_keeps_the_secret_already_scanned(
        console: ConsoleHarness) -> None:
    """The login's enrolment answered a mistyped code with "验证码不正确" and a different key: the key scanned could
    never give a right code, and each further try counted towards locking the account."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"], totp_required=True)
    enrol_field = re.compile(r'name="enrol_secret" value="([^"]+)"')
    async with console.client() as client:
        location(await console.submit_login(client, "rev", PASSWORD))
        page = await client.get("/console/login/2fa")
        scanned = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text).group(1)  # type: ignore[union-attr]
        wrong = await client.post("/console/login/2fa", data={
            "csrf": csrf_of(page.text), "enrol_secret": enrol_field.search(page.text).group(1),  # type: ignore[union-attr]
            "code": "000000"})
        assert wrong.status_code == 401
        shown = re.search(r'<code class="secret">([A-Z2-7]+)</code>', wrong.text).group(1)  # type: ignore[union-attr]
        assert shown == scanned
        response = await client.post("/console/login/2fa", data={
            "csrf": csrf_of(wrong.text), "enrol_secret": enrol_field.search(wrong.text).group(1),  # type: ignore[union-attr]
            "code": pyotp.TOTP(scanned).now()})
        assert location(response) == "/console"
    assert (await console.staff("rev")).totp_secret == scanned


async def test_tokens_and_codes_of_other_alphabets_are_refused_or_read_not_a_server_error(
        console: ConsoleHarness) -> None:
    """Seen as an attacker (attack1): a login token, a form's CSRF token or a second-factor code with a character
    outside ASCII answered 500 (the comparison of secrets takes ASCII text only). They are refused as a wrong
    token or code — and a code typed in full-width digits, as a Chinese phone keyboard can, is read as the code."""
    secret = pyotp.random_base32()
    await console.user("sup", StaffRole.SUPERVISOR, totp_secret=secret)
    async with console.client() as client:
        await client.get("/console/login")
        foreign_token = await client.post("/console/login", data={
            "username": "sup", "password": PASSWORD, "login_token": "密", "next": "/console"})
        assert foreign_token.status_code == 403 and "过期" in foreign_token.text
        await console.submit_login(client, "sup", PASSWORD)
        page = await client.get("/console/login/2fa")
        foreign_csrf = await client.post("/console/login/2fa", data={"csrf": "密", "code": "000000"})
        assert foreign_csrf.status_code == 403
        arabic_digits = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": "٠١٢٣٤٥"})
        assert arabic_digits.status_code == 401
        full_width = pyotp.TOTP(secret).now().translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
        right = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": full_width})
        assert location(right) == "/console"
