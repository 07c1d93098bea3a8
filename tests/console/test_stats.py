"""Statistics for people: local periods, the CSV export, chart names, the SVG charts and the daily digest's
wording (from the facts `storage.digests` reads), on SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest

from console import charts, stats
from handlers.city import CityConfig, load_city_config
from handlers.routing import warning_horizon
from storage import digests, statistics
from storage.statistics import Statistics
from tests.storage.test_statistics import NOW, PERIOD_END, T0, make_case, seed

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def city() -> CityConfig:
    return load_city_config(None)


async def _digest(session: Any, city: CityConfig, queue: str) -> str:
    return stats.digest_message(city, await digests.digest_facts(session, queue, NOW))


def test_a_period_is_local_days_in_order(city: CityConfig) -> None:
    assert stats.local_period(city, T0.date(), T0.date()) == (T0 - timedelta(hours=8), T0 + timedelta(hours=16))
    assert stats.local_period(city, T0.date(), T0.date() + timedelta(days=6)) == (
        T0 - timedelta(hours=8), PERIOD_END - timedelta(hours=8))
    with pytest.raises(ValueError, match="ends before it starts"):
        stats.local_period(city, T0.date(), T0.date() - timedelta(days=1))


async def test_csv_export_is_tidy_utf8_with_bom_and_chinese_names(sessionmaker: Any, city: CityConfig) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session:
        result = await statistics.compute(session, start=T0, end=PERIOD_END, queues=None, now=NOW)
    exported = stats.to_csv(result, city)
    assert exported.startswith("\ufeffdimension,key,name,value\r\n")
    assert exported.encode("utf-8").startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(exported.removeprefix("\ufeff"))))
    medical_queue = "医疗医保监督组（市卫健委、市医保局）"
    hall_queue = "清廉大厅监督组（市行政审批服务局）"
    assert rows == [
        ["dimension", "key", "name", "value"],
        ["period", "start", "开始日期", "2026-03-02"],  # the city's days the period covers (it began at 08:00 there)
        ["period", "end", "结束日期（含当日）", "2026-03-09"],
        ["period", "timezone", "时区", "Asia/Shanghai"],
        ["period", "queues", "队列范围", "all"],
        ["summary", "total", "报告总数", "5"],
        ["summary", "median_hours_to_accept", "受理用时中位数（小时）", "6"],
        ["summary", "accepted_count", "期间受理数", "4"],
        ["summary", "median_hours_to_close", "办结用时中位数（小时）", "20"],
        ["summary", "closed_count", "期间办结数", "4"],
        ["summary", "overdue_accept", "受理超期数", "2"],
        ["summary", "overdue_resolve", "办结超期数", "1"],
        ["summary", "average_rating", "平均评价", "3.67"],
        ["summary", "rating_count", "评价数", "3"],
        ["label", "medical", "医疗医保", "2"],
        ["label", "slow_service", "窗口服务问题", "2"],
        ["label", "unlabelled", "未分类", "1"],
        ["district", "yuelu", "岳麓区", "2"],
        ["district", "furong", "芙蓉区", "1"],
        ["district", "kaifu", "开福区", "1"],
        ["district", "unsure", "不确定", "1"],
        ["queue", "clean_hall", hall_queue, "2"],
        ["queue", "clean_medical", medical_queue, "2"],
        ["queue", "triage", "人工分拣", "1"],
        ["status", "routed", "待受理", "1"],  # as the lists and tickets name it
        ["status", "accepted", "已受理", "1"],
        ["status", "closed", "已办结", "2"],
        ["status", "rejected", "不予受理", "1"],
        ["overdue_accept", "clean_hall", hall_queue, "0"],
        ["overdue_accept", "clean_medical", medical_queue, "2"],
        ["overdue_accept", "triage", "人工分拣", "0"],
        ["overdue_resolve", "clean_hall", hall_queue, "0"],
        ["overdue_resolve", "clean_medical", medical_queue, "1"],
        ["overdue_resolve", "triage", "人工分拣", "0"],
    ]


def test_csv_cells_from_data_cannot_become_spreadsheet_formulas(city: CityConfig) -> None:
    result = Statistics(start=T0, end=PERIOD_END, queues=None, total=1, by_label={"=HYPERLINK(\"x\")": 1})
    rows = list(csv.reader(io.StringIO(stats.to_csv(result, city).removeprefix("\ufeff"))))
    assert ["label", "'=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")", "1"] in rows


def test_chart_items_name_each_key(city: CityConfig) -> None:
    result = Statistics(start=T0, end=PERIOD_END, queues=None, by_district={"yuelu": 3, "unsure": 1},
                              by_status={"in_handling": 2})
    assert stats.chart_items(result, city, "district") == [("岳麓区", 3), ("不确定", 1)]
    assert stats.chart_items(result, city, "district", "en") == [("Yuelu", 3), ("Not sure", 1)]
    assert stats.chart_items(result, city, "status") == [("办理中", 2)]
    with pytest.raises(ValueError, match="unknown dimension"):
        stats.chart_items(result, city, "colour")


def test_bar_chart_is_well_formed_svg_with_inert_labels_and_values() -> None:
    markup = charts.bar_chart_svg("按区县 <b>统计</b>", [
        ("<script>alert(1)</script>", 3), ("芙蓉区", 10), ("a & \"b\" 'c'\x00", 0)])
    root = ET.fromstring(markup)
    assert root.tag == f"{SVG}svg"
    tags = {element.tag for element in root.iter()}
    assert tags == {f"{SVG}{name}" for name in ("svg", "title", "rect", "text", "g")}
    assert "<script>" not in markup and "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert texts == ["按区县 <b>统计</b>", "<script>alert(1)</script>", "3", "芙蓉区", "10", "a & \"b\" 'c'", "0"]
    bars = [float(rect.attrib["width"]) for rect in root.iter(f"{SVG}rect")][1:]
    assert bars[1] > 0 and bars[0] == pytest.approx(bars[1] * 0.3, abs=0.1) and bars[2] == 0
    assert "Noto Sans CJK SC" in root.attrib["font-family"] and "Microsoft YaHei" in root.attrib["font-family"]


def test_bar_chart_shortens_long_labels_and_shows_an_empty_chart() -> None:
    long_name = "清廉大厅监督组（市行政审批服务局）" * 3
    root = ET.fromstring(charts.bar_chart_svg("队列", [(long_name, 1)], width=400))
    label = [element.text or "" for element in root.iter(f"{SVG}text")][1]
    assert label.endswith("…") and len(label) < len(long_name)
    assert [element.text for element in root.iter(f"{SVG}title")][1] == f"{long_name}: 1"
    empty = ET.fromstring(charts.bar_chart_svg("空", []))
    assert "无数据" in "".join(element.text or "" for element in empty.iter(f"{SVG}text"))


async def test_digest_lists_new_open_and_overdue_cases_without_the_reporter(
        sessionmaker: Any, city: CityConfig) -> None:
    numbers = await seed(sessionmaker)
    async with sessionmaker.begin() as session:
        await make_case(session, queue="clean_medical", label="medical", district="yuelu",
                        created=NOW - timedelta(hours=2), accept_due=NOW + timedelta(days=20),
                        resolve_due=NOW + timedelta(days=60))
    async with sessionmaker() as session:
        text = await _digest(session, city, "clean_medical")
        quiet = await _digest(session, city, "petitions")
    assert text == "\n".join([
        "【长沙市·每日摘要】医疗医保监督组（市卫健委、市医保局）",
        "截至 2026-03-12 08:00",
        "过去 24 小时新增：1 件",
        "未办结：3 件（待受理 3 件，办理中 0 件）",
        "已超期：2 件",
        f"· {numbers['c']}　受理超期（期限 2026-03-05）",
        "· QL-2026-000007　受理超期（期限 2026-03-11）",
        "请登录后台处理。",
    ])
    assert "张三" not in text and "13800138000" not in text and "4242" not in text
    assert quiet.splitlines()[2:] == [
        "过去 24 小时新增：0 件", "未办结：0 件（待受理 0 件，办理中 0 件）", "已超期：0 件", "今日无待办案件。"]


async def test_digest_warns_of_the_cases_due_within_the_warning_working_days(
        sessionmaker: Any, city: CityConfig) -> None:
    horizon = warning_horizon(city, NOW)  # Thursday 12 March 2026, 08:00: two working days end on Monday 16
    async with sessionmaker.begin() as session:
        monday = await make_case(session, queue="petitions", label="bribery_gifts", district="yuhua",
                                 created=NOW - timedelta(days=20), accept_due=horizon,
                                 resolve_due=NOW + timedelta(days=40))
        friday = await make_case(session, queue="petitions", label="bribery_gifts", district="yuhua",
                                 created=NOW - timedelta(days=20), accept_due=NOW + timedelta(days=1),
                                 resolve_due=NOW + timedelta(days=40))
        await make_case(session, queue="petitions", label="bribery_gifts", district="yuhua",
                        created=NOW - timedelta(days=20), accept_due=horizon + timedelta(days=1),
                        resolve_due=NOW + timedelta(days=40))
    async with sessionmaker() as session:
        text = stats.digest_message(city, await digests.digest_facts(session, "petitions", NOW, soon_until=horizon))
    assert text.splitlines()[4:] == [
        "已超期：0 件",
        "2 个工作日内到期：2 件",
        f"· {friday.case_number}　受理期限 2026-03-13",
        f"· {monday.case_number}　受理期限 2026-03-16",
        "请登录后台处理。",
    ]


async def test_digest_lists_at_most_twenty_overdue_cases_most_overdue_first(
        sessionmaker: Any, city: CityConfig) -> None:
    async with sessionmaker.begin() as session:
        for index in range(23):
            await make_case(session, queue="petitions", label="bribery_gifts", district="yuhua",
                            created=T0 + timedelta(hours=index), accept_due=T0 + timedelta(days=1, hours=index))
    async with sessionmaker() as session:
        lines = (await _digest(session, city, "petitions")).splitlines()
    listed = [line for line in lines if line.startswith("· ")]
    assert "已超期：23 件" in lines and len(listed) == 20
    assert listed[0].startswith("· QL-2026-000001　") and listed[-1].startswith("· QL-2026-000020　")
    assert lines[-2] == "……另有 3 件超期案件未列出，请在后台查看。"
