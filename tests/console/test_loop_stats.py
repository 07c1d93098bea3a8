"""The closed loop's figures for people: the statistics page's table and weekly charts, the CSV export and the
API (reviewers see their own queues), over the hand-counted cases of `tests.storage.test_loop_stats`."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from html import unescape

from console import charts
from storage import staff_actions
from storage.models import StaffRole
from tests.console.conftest import ConsoleHarness
from tests.factories import console_session
from tests.storage.test_loop_stats import END, START, seed_loop

SVG = "{http://www.w3.org/2000/svg}"
PERIOD = {"start": "2026-03-03", "end": "2026-03-15"}  # the city's days of [START, END)
HALL_NAME = "清廉大厅监督组（市行政审批服务局）"
MEDICAL_NAME = "医疗医保监督组（市卫健委、市医保局）"
HALL_NAME_EN = "Clean Hall supervision (Administrative Approval Bureau)"
MEDICAL_NAME_EN = "Clean Medical supervision (Health Commission, Medical Insurance Bureau)"


def _cells(html: str, queue: str) -> list[str]:
    row = re.search(rf'<tr data-queue="{re.escape(queue)}">(.*?)</tr>', html, re.S)
    assert row, f"no row of {queue}"
    shown = re.sub(r'<span class="cell-label">.*?</span>', "", row.group(1))  # the column's name, on phones
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", shown, re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for cell in cells]


async def _token(console: ConsoleHarness, username: str, role: StaffRole,
                 queues: tuple[str, ...] = ()) -> dict[str, str]:
    user = await console.user(username, role, queues)
    async with console.database.sessionmaker.begin() as session:
        token, _ = await staff_actions.create_api_token(session, user, "tests", actor=user)
    return {"Authorization": f"Bearer {token}"}


async def test_statistics_page_shows_the_loop_table_and_weekly_charts(console: ConsoleHarness) -> None:
    await seed_loop(console.database.sessionmaker)
    cookies, _ = await console_session(console.context, await console.staff("sup"))
    async with console.client() as client:
        client.cookies.update(cookies)
        page = await client.get("/console/stats", params=PERIOD)
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert _cells(html, "clean_hall") == [
        f"{HALL_NAME} {HALL_NAME_EN}", "5", "50% 2/4", "67% 2/3", "4.0 小时 h / 39.2 小时 h", "5.9 天 d / 8.4 天 d",
        "1", "33% 1/3", "67% 2/3", "4 / 1 / 4 +1", "0.70 n=2", "0.70 / 0.60 / 0.70 / 1.00"]
    assert _cells(html, "clean_medical") == [
        f"{MEDICAL_NAME} {MEDICAL_NAME_EN}", "1", "100% 1/1", "0% 0/1", "10.0 小时 h / 10.0 小时 h", "— / —", "0",
        "— 0/0", "— 0/0", "0 / 0 / 0 +2", "0.40 n=1", "0.30 / 0.20 / 0.50 / 0.50"]
    assert _cells(html, "*") == [
        "合计 Total", "6", "60% 3/5", "50% 2/4", "7.0 小时 h / 36.6 小时 h", "5.9 天 d / 8.4 天 d", "1", "33% 1/3",
        "67% 2/3", "4 / 1 / 4 +3", "0.60 n=3", "0.57 / 0.47 / 0.63 / 0.75"]
    charts = [ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", html, re.S)]
    weekly = {chart.findtext(f"{SVG}title"): chart for chart in charts}
    cases = weekly["每周收到与办结 Received and resolved per week"]
    shares = weekly["每周按期办结率与满意率 Resolved on time and satisfied per week"]
    points = [point.findtext(f"{SVG}title") for chart in (cases, shares) for point in chart.iter(f"{SVG}circle")]
    # the period begins on a Tuesday: its first week is cut and says so; the second is whole
    first, second = "03-03 (6/7)", "03-09"
    assert points == [
        f"收到 received {first}: 5", f"收到 received {second}: 1", f"办结 resolved {first}: 3",
        f"办结 resolved {second}: 1", f"按期办结 resolved on time {first}: 67%",
        f"按期办结 resolved on time {second}: 0%", f"满意（4–5 星） satisfied (4–5 stars) {first}: 100%",
        f"满意（4–5 星） satisfied (4–5 stars) {second}: 0%"]
    assert cases.get("role") == "img" and len(list(cases.iter(f"{SVG}polyline"))) == 2
    assert 'href="/console/stats/loop.csv?start=2026-03-03&amp;end=2026-03-15"' in html


async def test_loop_csv_of_the_page(console: ConsoleHarness) -> None:
    await seed_loop(console.database.sessionmaker)
    cookies, _ = await console_session(console.context, await console.staff("sup"))
    async with console.client() as client:
        client.cookies.update(cookies)
        exported = await client.get("/console/stats/loop.csv", params=PERIOD)
        reversed_period = await client.get("/console/stats/loop.csv", params={"start": "2026-03-15",
                                                                              "end": "2026-03-03"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"] == 'attachment; filename="qinglian-loop-2026-03-03-2026-03-15.csv"'
    assert exported.text.startswith("\ufeffsection,key,name,metric,metric_name,value\r\n")
    rows = list(csv.reader(io.StringIO(exported.text.removeprefix("\ufeff"))))
    values = {(section, key, metric): value for section, key, _name, metric, _label, value in rows[1:]}
    assert rows[1:4] == [["period", "start", "开始日期", "", "", "2026-03-03"],  # the page's days, not UTC instants
                         ["period", "end", "结束日期（含当日）", "", "", "2026-03-15"],
                         ["period", "timezone", "时区", "", "", "Asia/Shanghai"]]
    assert ["queue", "clean_hall", HALL_NAME, "accepted_on_time_rate", "按期受理率", "0.5"] in rows
    assert {metric: values["queue", "clean_hall", metric] for metric in (
        "received", "resolved_on_time_rate", "hours_to_accept_p90", "hours_to_resolve_median", "extensions",
        "rehandled_rate", "satisfied_rate", "notices_delivered", "notices_waiting", "notices_failed", "reply_score",
        "reply_timeliness")} == {
        "received": "5", "resolved_on_time_rate": "0.6667", "hours_to_accept_p90": "39.2",
        "hours_to_resolve_median": "141", "extensions": "1", "rehandled_rate": "0.3333", "satisfied_rate": "0.6667",
        "notices_delivered": "4", "notices_waiting": "1", "notices_failed": "4", "reply_score": "0.7",
        "reply_timeliness": "1"}
    assert (values["total", "*", "received"], values["queue", "clean_medical", "satisfied_rate"]) == ("6", "")
    assert [(key, values["week", key, "received"], values["week", key, "resolved_on_time_rate"])
            for key in ("2026-W10", "2026-W11")] == [("2026-W10", "5", "0.6667"), ("2026-W11", "1", "0")]
    assert reversed_period.status_code == 422


async def test_api_gives_the_loop_figures_of_a_reviewers_own_queues(console: ConsoleHarness) -> None:
    await seed_loop(console.database.sessionmaker)
    supervisor = await _token(console, "zhang", StaffRole.SUPERVISOR)
    reviewer = await _token(console, "li", StaffRole.REVIEWER, ("clean_medical",))
    async with console.client() as client:
        everything = (await client.get("/api/v1/stats/loop", params=PERIOD, headers=supervisor)).json()
        own = await client.get("/api/v1/stats/loop", params=PERIOD, headers=reviewer)
        own_csv = await client.get("/api/v1/stats/loop.csv", params=PERIOD, headers=reviewer)
        refusals = [await client.get("/api/v1/stats/loop", params=params, headers=supervisor) for params in (
            {"start": "2026-03-15", "end": "2026-03-03"}, {"start": "2026-02-30"}, {"start": "1999-12-31"},
            {"start": "2020-01-01", "end": "2026-03-15"})]
        anonymous = await client.get("/api/v1/stats/loop", params=PERIOD)
    assert [row["queue"] for row in everything["by_queue"]] == ["clean_hall", "clean_medical"]
    hall = everything["by_queue"][0]
    assert (hall["name_zh"], hall["received"], hall["accepted_on_time"], hall["hours_to_accept"]["p90_hours"]) == (
        HALL_NAME, 5, {"hits": 2, "of": 4, "rate": 0.5}, 39.2)
    assert (hall["notices"], hall["extensions"], hall["rehandled"]["hits"], hall["satisfied"]["of"]) == (
        {"delivered": 4, "waiting": 1, "failed": 4, "pending": 1}, 1, 1, 3)
    assert hall["reply_quality"]["answers"] == 2 and abs(hall["reply_quality"]["completeness"] - 0.6) < 1e-9
    assert (everything["start"], everything["end"], everything["queues"]) == (
        START.isoformat().replace("+00:00", "Z"), END.isoformat().replace("+00:00", "Z"), None)
    assert [(week["week"], week["first_day"], week["received"], week["satisfied"]["rate"])
            for week in everything["weeks"]] == [("2026-W10", "2026-03-03", 5, 1.0), ("2026-W11", "2026-03-09", 1, 0.0)]
    assert own.status_code == 200
    mine = own.json()
    assert (mine["queues"], [row["queue"] for row in mine["by_queue"]], mine["total"]["received"]) == (
        ["clean_medical"], ["clean_medical"], 1)
    assert [week["received"] for week in mine["weeks"]] == [0, 1]
    assert "clean_hall" not in own_csv.text and "queue,clean_medical" in own_csv.text
    assert [response.status_code for response in refusals] == [422, 422, 422, 422]
    assert refusals[0].json()["detail"] == "start is after end"
    assert "160 weeks" in refusals[3].json()["detail"]
    assert anonymous.status_code == 401


def test_a_line_chart_breaks_at_missing_values_and_escapes_its_texts() -> None:
    svg = charts.line_chart_svg("<周> & title", ["a", "b", "c", "d"], [("s<1>", [0.5, None, 0.25, 1.0])],
                                    y_title="y", x_title="x", as_share=True)
    chart = ET.fromstring(svg)
    assert chart.findtext(f"{SVG}title") == "<周> & title"
    lines = [line.get("points", "") for line in chart.iter(f"{SVG}polyline")]
    assert len(lines) == 1 and len(lines[0].split()) == 2  # c–d joined; a stands alone after the gap
    assert [point.findtext(f"{SVG}title") for point in chart.iter(f"{SVG}circle")] == [
        "s<1> a: 50%", "s<1> c: 25%", "s<1> d: 100%"]
    ticks = [text.text for text in chart.iter(f"{SVG}text")]
    assert {"0%", "50%", "100%", "x", "y"} <= set(ticks)
    empty = ET.fromstring(charts.line_chart_svg("t", [], [("s", [])], y_title="y", x_title="x"))
    assert "无数据 (no data)" in [text.text for text in empty.iter(f"{SVG}text")]
