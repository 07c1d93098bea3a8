"""Small holes (issue 12.8): dates outside what a datetime can hold and ids larger than a database integer are
a 422 with the reason, not a 500; a refused form or request never echoes a password back."""

from __future__ import annotations

import base64

import pytest

from storage.models import StaffRole
from tests.console.conftest import PASSWORD, ConsoleHarness

HUGE_ID = str(2**64)


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=0001-01-01", "from=9999-12-31", "to=0001-01-01"])
async def test_out_of_range_dates_in_the_case_filters_are_422(console: ConsoleHarness, query: str) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "sup")
        for page in ("/console/cases", "/console/queue/clean_hall", "/console/overdue"):
            response = await client.get(f"{page}?{query}")
            assert response.status_code == 422, (page, response.status_code)
            assert "a date between 2000-01-01 and 2999-12-31" in response.text and "<html" in response.text


@pytest.mark.parametrize("query", ["end=9999-12-31", "start=0001-01-01"])
async def test_out_of_range_dates_in_statistics_are_422(console: ConsoleHarness, query: str) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "sup")
        for page in ("/console/stats", "/console/stats.csv"):
            assert (await client.get(f"{page}?{query}")).status_code == 422


async def test_oversized_ids_are_422(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        for url in (f"/console/case/{number}/evidence/{HUGE_ID}", f"/console/case/{number}/thumb/{HUGE_ID}",
                    f"/api/v1/cases/{number}/evidence/{HUGE_ID}"):
            assert (await client.get(url)).status_code == 422, url
        for url in (f"/console/account/tokens/{HUGE_ID}/revoke", f"/console/staff/boss/tokens/{HUGE_ID}/revoke"):
            assert (await client.post(url, data={"csrf": csrf})).status_code == 422, url
        assert (await client.delete(f"/api/v1/tokens/{HUGE_ID}", headers={"x-csrf-token": csrf})).status_code == 422


async def test_refused_passwords_are_never_echoed(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        headers = {"x-csrf-token": csrf}
        for password in ("Secret-9ch", "password1234", "x" * 201):
            refused = await client.post("/api/v1/staff", headers=headers, json={
                "username": "newbie", "queues": ["clean_hall"], "password": password})
            assert refused.status_code == 422 and password not in refused.text
            page = await client.post("/console/staff", data={"csrf": csrf, "username": "newbie", "role": "reviewer",
                                                             "queues": ["clean_hall"], "password": password})
            assert page.status_code == 422 and password not in page.text
            changed = await client.post("/console/account/password", data={
                "csrf": csrf, "current": PASSWORD, "new": password, "repeat": password})
            assert changed.status_code == 422 and password not in changed.text
        too_long = "y" * 1001
        for url, form in (("/console/account/password", {"current": too_long, "new": too_long, "repeat": too_long}),
                          ("/console/account/totp/remove", {"password": too_long})):
            refused = await client.post(url, data={"csrf": csrf, **form})
            assert refused.status_code == 422 and too_long not in refused.text
        wrong = await client.post("/console/account/password", data={
            "csrf": csrf, "current": "not my password at all", "new": "x", "repeat": "x"})
        assert wrong.status_code == 422 and "not my password at all" not in wrong.text


@pytest.mark.parametrize("problem", ["²", "①", "12x", str(2**64)])
async def test_a_problem_filter_that_is_not_a_problem_number_is_422(console: ConsoleHarness, problem: str) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "sup")
        response = await client.get("/console/cases", params={"problem": problem})
        assert response.status_code == 422 and "not a problem number" in response.text


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", ["2026-01-01T00:00:00+00:00|99999999999999999999999",
                                 "9999-12-31T23:59:59-14:00|5", "0001-01-01T00:00:00+14:00|5",
                                 "2026-01-01T00:00:00+00:00|0", "2026-01-01T00:00:00|5", "garbage"])
async def test_a_list_cursor_the_list_did_not_hand_out_is_422(console: ConsoleHarness, raw: str) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "sup")
        for key in ("after", "before"):
            response = await client.get("/console/cases", params={key: _cursor(raw)})
            assert response.status_code == 422 and "not a cursor of this list" in response.text, (key, raw)
