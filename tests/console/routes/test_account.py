"""The user's own account: password, second factor and API tokens."""

from __future__ import annotations

import html
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


async def test_wrong_passwords_on_the_account_page_lock_the_account_like_wrong_logins(console: ConsoleHarness) -> None:
    """Whoever holds a session (a console left open) cannot guess its password on the account page without
    limit: each wrong password counts towards the account's lock and is audited with the address, and at the
    limit the account locks and the session ends."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    new = "Another-Strong-Phrase-4417"
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        for attempt in range(4):
            page = await client.post("/console/account/password", data={
                "csrf": csrf, "current": f"wrong-{attempt}", "new": new, "repeat": new})
            assert page.status_code == 422
        # the second factor's removal asks for the password too, and counts as well
        locked = await client.post("/console/account/totp/remove", data={"csrf": csrf, "password": "wrong-4"})
        assert location(locked).startswith("/console/login")
        assert location(await client.get("/console/account")).startswith("/console/login")  # the session ended
    failures = await console.audit("account.password_refused")
    assert len(failures) == 5
    assert {entry.ip for entry in failures} == {"127.0.0.1"}
    assert (await console.staff("rev")).locked_until is not None
    async with console.client() as client:
        refused = await console.submit_login(client, "rev", PASSWORD)
        assert refused.status_code == 401  # locked: even the right password is refused now


async def test_a_right_password_after_wrong_ones_on_the_account_page_still_works(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    new = "Another-Strong-Phrase-4417"
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        wrong = await client.post("/console/account/password", data={
            "csrf": csrf, "current": "wrong", "new": new, "repeat": new})
        assert wrong.status_code == 422
        assert "当前密码不正确" in wrong.text or "current password" in wrong.text.lower()
        changed = await client.post("/console/account/password", data={
            "csrf": csrf, "current": PASSWORD, "new": new, "repeat": new})
        assert location(changed) == "/console/account?done=password"
    assert (await console.staff("rev")).failed_logins == 0


ALERT = re.compile(r'<p class="flash bad" role="alert">([^<]*)</p>')


async def test_a_weak_new_password_gets_zxcvbns_advice_in_chinese_with_the_english_after_it(
        console: ConsoleHarness) -> None:
    """Seen by a reviewer: "新密码不够安全： the password is too easy to guess (Sequences like "abc" or "6543" are easy
    to guess); use a longer phrase of uncommon words" — zxcvbn's advice in English only, after a Chinese heading."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        refused = await client.post("/console/account/password", data={
            "csrf": csrf, "current": PASSWORD, "new": "abcdefghij", "repeat": "abcdefghij"})
    assert refused.status_code == 422
    assert [html.unescape(alert) for alert in ALERT.findall(refused.text)] == [
        "新密码不够安全：密码太容易被猜到：像“abc”或“6543”这样的序列很容易被猜到。"
        "再加一两个词，不常用的词更好。避免使用序列。 "
        'The new password is not good enough: the password is too easy to guess: Sequences like "abc" or "6543" are '
        "easy to guess. Add another word or two. Uncommon words are better. Avoid sequences."]


SECRET = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')


async def test_a_mistyped_code_at_enrolment_keeps_the_secret_already_in_the_authenticator(
        console: ConsoleHarness) -> None:
    """A reviewer scanned the key, mistyped one digit, and the page answered with a different key: the entry in her
    authenticator app could never give a right code again, and the message said nothing about it at login."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        page = await client.get("/console/account?enrol=1")
        scanned = SECRET.search(page.text).group(1)  # type: ignore[union-attr]
        signed = re.search(r'name="secret" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        wrong = await client.post("/console/account/totp", data={"csrf": csrf, "secret": signed, "code": "000000"})
        assert wrong.status_code == 422
        assert SECRET.search(wrong.text).group(1) == scanned  # type: ignore[union-attr]
        assert "new secret" not in wrong.text and "新的密钥" not in wrong.text
        again = re.search(r'name="secret" value="([^"]+)"', wrong.text).group(1)  # type: ignore[union-attr]
        enrolled = await client.post("/console/account/totp", data={"csrf": csrf, "secret": again,
                                                                    "code": pyotp.TOTP(scanned).now()})
        assert location(enrolled) == "/console/account?done=totp_on"
    assert (await console.staff("rev")).totp_secret == scanned
