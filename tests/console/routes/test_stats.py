"""The statistics page and its CSV export."""

from __future__ import annotations

from datetime import timedelta

from storage.models import StaffRole, utcnow
from tests.console.conftest import ConsoleHarness


async def test_statistics_page_and_csv(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.case("clean_hall")
    await console.case("clean_medical", label="medical")
    async with console.client() as client:
        await console.login(client, "sup")
        page = await client.get("/console/stats")
        assert page.status_code == 200 and "<svg" in page.text and "医疗医保" in page.text
        today = utcnow().date()
        csv = await client.get(f"/console/stats.csv?start={today - timedelta(days=3)}&end={today + timedelta(days=1)}")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert "label,medical" in csv.text
        assert (await client.get("/console/stats?start=2026-02-01&end=2026-01-01")).status_code == 422
