"""The statistics page and its CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from html import unescape

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


async def test_statistics_page_names_each_queue_and_bar_in_english_too(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.case("clean_medical", label="medical", overdue=True)
    async with console.client() as client:
        await console.login(client, "sup")
        today = utcnow().date()
        page = await client.get(f"/console/stats?start={today - timedelta(days=3)}&end={today + timedelta(days=1)}")
    html = unescape(page.text)
    overdue_row = re.search(r'<a href="/console/queue/clean_medical">(.*?)</a>', html, re.S)
    assert overdue_row is not None
    assert " ".join(re.sub(r"<[^>]+>", " ", overdue_row.group(1)).split()) == (
        "医疗医保监督组（市卫健委、市医保局） Clean Medical supervision (Health Commission, Medical Insurance Bureau)")
    bars = re.findall(r"<g><title>(.*?)</title>", html)
    assert "医疗医保 Hospitals and medical insurance: 1" in bars
    assert "芙蓉区 Furong: 1" in bars


async def test_a_period_too_long_for_the_weekly_loop_is_said_in_chinese_too_with_the_longest_period(
        console: ConsoleHarness) -> None:
    """A supervisor asks for the statistics since 2020: the page's loop section (and its CSV) said why not in
    English only, also on the Chinese side."""
    await console.user("sup", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "sup")
        page = unescape((await client.get("/console/stats?start=2020-01-01")).text)
        csv = await client.get("/console/stats/loop.csv?start=2020-01-01")
    refused = re.search(r'<p class="empty"><span class="bi">([^<]*)<span class="en">([^<]*)</span>', page)
    assert refused is not None
    chinese, english = refused.groups()
    assert "160 周" in chinese and not re.search(r"[A-Za-z]{3}", chinese)
    assert "160 weeks" in english
    assert csv.status_code == 422 and "160 周" in unescape(csv.text)


async def test_the_overdue_table_links_to_the_cases_still_overdue_with_their_number(console: ConsoleHarness) -> None:
    """The table counts the period's cases dealt with late as well as those still late; its link listed fewer
    cases than the number beside it without a word. Now the link says how many are still overdue, and lists
    exactly those of the period."""
    await console.user("sup", StaffRole.SUPERVISOR)
    for _ in range(2):
        await console.case("clean_hall", overdue=True)
    closed_late = await console.case("clean_hall", overdue=True)
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        closed = await client.post(f"/console/case/{closed_late}/status",
                                   data={"csrf": csrf, "status": "closed", "note": "已办结"})
        assert closed.status_code == 303
        page = unescape((await client.get("/console/stats")).text)
        section = page[page.index("各队列超期情况"):]
        row = re.search(r"<tr>(?:(?!</tr>).)*清廉大厅监督组(?:(?!</tr>).)*</tr>", section, re.S)
        assert row is not None, "no overdue row of the queue"
        cells = re.findall(r'<td class="num">(.*?)</td>', row.group(0), re.S)
        assert [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells[:2]] == ["3", "3"]
        link = re.search(r'<a href="(/console/queue/clean_hall\?[^"]*overdue=1[^"]*)"[^>]*>(\d+)', row.group(0))
        assert link is not None and link.group(2) == "2"
        listed = (await client.get(link.group(1))).text
        assert "共 2 件" in listed


async def test_the_csv_says_the_period_in_the_citys_days_as_the_page_does(console: ConsoleHarness) -> None:
    """The page showed 2026-11-07, its CSV files "2026-11-06T16:00:00+00:00" (midnight in Changsha as a UTC instant):
    a supervisor read a period that began the day before. Both files now say the city's days and its time zone."""
    await console.user("sup", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "sup")
        day = {"start": "2026-11-07", "end": "2026-11-07"}
        files = {path: await client.get(path, params=day) for path in ("/console/stats.csv", "/console/stats/loop.csv")}
        english = await client.get("/console/stats.csv", params={**day, "lang": "en"})
    for path, answer in files.items():
        rows = list(csv.reader(io.StringIO(answer.text.removeprefix("\ufeff"))))
        period = [(row[1], row[2], row[-1]) for row in rows if row[0] == "period"]
        assert period == [("start", "开始日期", "2026-11-07"), ("end", "结束日期（含当日）", "2026-11-07"),
                          ("timezone", "时区", "Asia/Shanghai"), ("queues", "队列范围", "all")], path
    english_rows = list(csv.reader(io.StringIO(english.text.removeprefix("\ufeff"))))
    assert [row[1:] for row in english_rows if row[0] == "period"][:3] == [
        ["start", "first day", "2026-11-07"], ["end", "last day (included)", "2026-11-07"],
        ["timezone", "time zone", "Asia/Shanghai"]]
