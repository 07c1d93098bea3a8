"""Statistics, charts, the CSV export and the daily digest, on SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from console import stats
from handlers.city import CityConfig, load_city_config
from storage import actions, staff_actions
from storage.models import Case, CaseStatus, OutboxMessage, StaffRole, StaffUser
from tests.factories import file_case

KEY = b"k" * 32
T0 = datetime(2026, 3, 2, tzinfo=UTC)  # the period is [T0, T0 + 7 days)
PERIOD_END = T0 + timedelta(days=7)
NOW = T0 + timedelta(days=10)  # 2026-03-12 08:00 in Changsha
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def city() -> CityConfig:
    return load_city_config(None)


async def _staff(session: Any) -> StaffUser:
    return await staff_actions.create_staff(session, username="sup", display_name="主管", role=StaffRole.SUPERVISOR,
                                            password_hash="not-a-hash")


async def _case(session: Any, *, queue: str, label: str | None, district: str | None, created: datetime,
                accept_due: datetime | None = None, resolve_due: datetime | None = None,
                anonymous: bool = True) -> Case:
    case, _ = await file_case(
        session, secret_key=KEY, case_number_prefix="QL", year=2026, channel="telegram", reporter_ref="4242",
        locale="zh", district=district, place="某单位", occurred="上周",
        description="窗口工作人员推诿扯皮，让群众多次跑腿",
        anonymous=anonymous, reporter_name=None if anonymous else "张三",
        reporter_phone=None if anonymous else "13800138000", attachment_ids=[], queue=queue, label=label,
        confidence=0.9, top=[], accept_due_at=accept_due, resolve_due_at=resolve_due)
    case.created_at = created
    return case


async def _accept(session: Any, case: Case, staff: StaffUser, at: datetime) -> None:
    await staff_actions.accept_case(session, case, actor=staff)
    case.accepted_at = at


async def _close(session: Any, case: Case, staff: StaffUser, at: datetime, *, status: CaseStatus = CaseStatus.CLOSED,
                 rating: int | None = None) -> None:
    await staff_actions.set_status(session, case, status, actor=staff)
    case.closed_at = at
    if rating is not None:
        await actions.rate_case(session, case, rating)


async def _seed(sessionmaker: Any) -> dict[str, str]:
    """Five reports in the period, one before it (accepted and closed in it), one after it."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    numbers: dict[str, str] = {}
    async with sessionmaker.begin() as session:
        staff = await _staff(session)
        a = await _case(session, queue="clean_hall", label="slow_service", district="yuelu", created=T0 + hour,
                        accept_due=T0 + 5 * day, resolve_due=T0 + 30 * day)
        await _accept(session, a, staff, a.created_at + 2 * hour)
        await _close(session, a, staff, a.created_at + 10 * hour, rating=4)
        b = await _case(session, queue="clean_hall", label="slow_service", district="furong", created=T0 + day,
                        accept_due=T0 + 6 * day, resolve_due=T0 + 60 * day)
        await _accept(session, b, staff, b.created_at + 4 * hour)
        c = await _case(session, queue="clean_medical", label="medical", district=None, created=T0 + 2 * day,
                        accept_due=T0 + 3 * day, resolve_due=T0 + 60 * day, anonymous=False)
        d = await _case(session, queue="clean_medical", label="medical", district="yuelu", created=T0 + 3 * day,
                        accept_due=T0 + 3 * day + hour, resolve_due=T0 + 3 * day + 20 * hour)
        await _accept(session, d, staff, d.created_at + 8 * hour)
        await _close(session, d, staff, d.created_at + 30 * hour, rating=2)
        e = await _case(session, queue="triage", label=None, district="kaifu", created=T0 + 4 * day,
                        accept_due=T0 + 10 * day, resolve_due=T0 + 60 * day)
        await _close(session, e, staff, e.created_at + 6 * hour, status=CaseStatus.REJECTED)
        f = await _case(session, queue="clean_schools", label="education", district="tianxin", created=T0 - day,
                        accept_due=T0 + 10 * day, resolve_due=T0 + 60 * day)
        await _accept(session, f, staff, T0 + hour)
        await _close(session, f, staff, T0 + 2 * day, rating=5)
        await _case(session, queue="clean_medical", label="medical", district="yuelu", created=T0 + 8 * day,
                    accept_due=T0 + 9 * day)
        for name, case in zip("abcdef", (a, b, c, d, e, f), strict=True):
            assert case.case_number is not None
            numbers[name] = case.case_number
    return numbers


async def test_statistics_of_a_period_count_every_dimension_with_medians_and_overdue(
        sessionmaker: Any, city: CityConfig) -> None:
    await _seed(sessionmaker)
    async with sessionmaker() as session:
        result = await stats.compute(session, city, start=T0, end=PERIOD_END, queues=None, now=NOW)
    assert result.total == 5
    assert result.by_label == {"medical": 2, "slow_service": 2, "unlabelled": 1}
    assert result.by_district == {"yuelu": 2, "furong": 1, "kaifu": 1, "unsure": 1}
    assert result.by_queue == {"clean_hall": 2, "clean_medical": 2, "triage": 1}
    assert list(result.by_status.items()) == [("routed", 1), ("accepted", 1), ("closed", 2), ("rejected", 1)]
    # accepted in the period: 2 h, 4 h, 8 h and 25 h (filed the day before the period)
    assert (result.median_hours_to_accept, result.accepted_count) == (6.0, 4)
    # closed in the period: 10 h, 30 h, 6 h (rejected) and 48 h
    assert (result.median_hours_to_close, result.closed_count) == (20.0, 4)
    assert result.overdue == {"clean_hall": stats.OverdueCounts(0, 0), "clean_medical": stats.OverdueCounts(2, 1),
                              "triage": stats.OverdueCounts(0, 0)}
    assert (result.overdue_accept_total, result.overdue_resolve_total) == (2, 1)
    assert (result.average_rating, result.rating_count) == (11 / 3, 3)


async def test_statistics_keep_to_the_chosen_queues_and_say_none_without_data(
        sessionmaker: Any, city: CityConfig) -> None:
    await _seed(sessionmaker)
    async with sessionmaker() as session:
        medical = await stats.compute(session, city, start=T0, end=PERIOD_END, queues={"clean_medical"}, now=NOW)
        empty = await stats.compute(session, city, start=T0 + timedelta(days=20), end=T0 + timedelta(days=21),
                                    queues=None, now=NOW)
    assert (medical.total, medical.by_queue) == (2, {"clean_medical": 2})
    assert medical.by_district == {"unsure": 1, "yuelu": 1}
    assert (medical.median_hours_to_accept, medical.median_hours_to_close, medical.average_rating) == (8.0, 30.0, 2.0)
    assert medical.overdue == {"clean_medical": stats.OverdueCounts(2, 1)}
    assert (empty.total, empty.by_label, empty.median_hours_to_accept, empty.median_hours_to_close,
            empty.average_rating, empty.overdue) == (0, {}, None, None, None, {})


async def test_overdue_counts_only_deadlines_passed_by_the_end_of_the_period(
        sessionmaker: Any, city: CityConfig) -> None:
    await _seed(sessionmaker)
    async with sessionmaker() as session:
        early = await stats.compute(session, city, start=T0, end=PERIOD_END, queues=None,
                                    now=T0 + 3 * timedelta(days=1) + timedelta(minutes=30))
    # by then only c's deadline to accept (T0 + 3 days) had passed
    assert early.overdue["clean_medical"] == stats.OverdueCounts(1, 0)


async def test_a_period_is_local_days_and_needs_aware_times_in_order(city: CityConfig) -> None:
    assert stats.local_period(city, T0.date(), T0.date()) == (T0 - timedelta(hours=8), T0 + timedelta(hours=16))
    with pytest.raises(ValueError, match="timezone-aware"):
        await stats.compute(None, city, start=datetime(2026, 3, 1), end=PERIOD_END, queues=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must end after"):
        await stats.compute(None, city, start=PERIOD_END, end=T0, queues=None)  # type: ignore[arg-type]


async def test_csv_export_is_tidy_utf8_with_bom_and_chinese_names(sessionmaker: Any, city: CityConfig) -> None:
    await _seed(sessionmaker)
    async with sessionmaker() as session:
        result = await stats.compute(session, city, start=T0, end=PERIOD_END, queues=None, now=NOW)
    exported = stats.to_csv(result, city)
    assert exported.startswith("\ufeffdimension,key,name,value\r\n")
    assert exported.encode("utf-8").startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(exported.removeprefix("\ufeff"))))
    medical_queue = "医疗医保监督组（市卫健委、市医保局）"
    hall_queue = "清廉大厅监督组（市行政审批服务局）"
    assert rows == [
        ["dimension", "key", "name", "value"],
        ["period", "start", "开始", "2026-03-02T00:00:00+00:00"],
        ["period", "end", "结束", "2026-03-09T00:00:00+00:00"],
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
        ["status", "routed", "已分派", "1"],
        ["status", "accepted", "已受理", "1"],
        ["status", "closed", "已办结", "2"],
        ["status", "rejected", "不予受理（不属于受理范围）", "1"],
        ["overdue_accept", "clean_hall", hall_queue, "0"],
        ["overdue_accept", "clean_medical", medical_queue, "2"],
        ["overdue_accept", "triage", "人工分拣", "0"],
        ["overdue_resolve", "clean_hall", hall_queue, "0"],
        ["overdue_resolve", "clean_medical", medical_queue, "1"],
        ["overdue_resolve", "triage", "人工分拣", "0"],
    ]


def test_csv_cells_from_data_cannot_become_spreadsheet_formulas(city: CityConfig) -> None:
    result = stats.Statistics(start=T0, end=PERIOD_END, queues=None, total=1, by_label={"=HYPERLINK(\"x\")": 1})
    rows = list(csv.reader(io.StringIO(stats.to_csv(result, city).removeprefix("\ufeff"))))
    assert ["label", "'=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")", "1"] in rows


def test_chart_items_name_each_key(city: CityConfig) -> None:
    result = stats.Statistics(start=T0, end=PERIOD_END, queues=None, by_district={"yuelu": 3, "unsure": 1},
                              by_status={"in_handling": 2})
    assert stats.chart_items(result, city, "district") == [("岳麓区", 3), ("不确定", 1)]
    assert stats.chart_items(result, city, "district", "en") == [("Yuelu", 3), ("Not sure", 1)]
    assert stats.chart_items(result, city, "status") == [("办理中", 2)]
    with pytest.raises(ValueError, match="unknown dimension"):
        stats.chart_items(result, city, "colour")


def test_bar_chart_is_well_formed_svg_with_inert_labels_and_values() -> None:
    markup = stats.bar_chart_svg("按区县 <b>统计</b>", [
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
    root = ET.fromstring(stats.bar_chart_svg("队列", [(long_name, 1)], width=400))
    label = [element.text or "" for element in root.iter(f"{SVG}text")][1]
    assert label.endswith("…") and len(label) < len(long_name)
    assert [element.text for element in root.iter(f"{SVG}title")][1] == f"{long_name}: 1"
    empty = ET.fromstring(stats.bar_chart_svg("空", []))
    assert "无数据" in "".join(element.text or "" for element in empty.iter(f"{SVG}text"))


async def test_digest_lists_new_open_and_overdue_cases_without_the_reporter(
        sessionmaker: Any, city: CityConfig) -> None:
    numbers = await _seed(sessionmaker)
    async with sessionmaker.begin() as session:
        await _case(session, queue="clean_medical", label="medical", district="yuelu", created=NOW - timedelta(hours=2),
                    accept_due=NOW + timedelta(days=20), resolve_due=NOW + timedelta(days=60))
    async with sessionmaker() as session:
        text = await stats.digest(session, city, "clean_medical", NOW)
        quiet = await stats.digest(session, city, "petitions", NOW)
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


async def test_digest_lists_at_most_twenty_overdue_cases_most_overdue_first(
        sessionmaker: Any, city: CityConfig) -> None:
    async with sessionmaker.begin() as session:
        for index in range(23):
            await _case(session, queue="petitions", label="bribery_gifts", district="yuhua",
                        created=T0 + timedelta(hours=index), accept_due=T0 + timedelta(days=1, hours=index))
    async with sessionmaker() as session:
        lines = (await stats.digest(session, city, "petitions", NOW)).splitlines()
    listed = [line for line in lines if line.startswith("· ")]
    assert "已超期：23 件" in lines and len(listed) == 20
    assert listed[0].startswith("· QL-2026-000001　") and listed[-1].startswith("· QL-2026-000020　")
    assert lines[-2] == "……另有 3 件超期案件未列出，请在后台查看。"


async def test_send_digests_enqueues_one_message_per_staff_channel(sessionmaker: Any, city: CityConfig) -> None:
    await _seed(sessionmaker)
    queues = [queue.model_copy(update={"telegram_chat_id": -100123}) if queue.code == "clean_medical"
              else queue.model_copy(update={"wecom_webhook_env": "QINGLIAN_WECOM_HALL"}) if queue.code == "clean_hall"
              else queue for queue in city.queues]
    configured = city.model_copy(update={"queues": queues})
    assert await stats.send_digests(sessionmaker, configured, NOW) == 2
    async with sessionmaker() as session:
        sent = {(m.channel, m.recipient): m.payload for m in (await session.execute(select(OutboxMessage))).scalars()
                if "notice" not in m.payload}
        expected_medical = await stats.digest(session, configured, "clean_medical", NOW)
        expected_hall = await stats.digest(session, configured, "clean_hall", NOW)
    assert sent == {("telegram", "-100123"): {"text": expected_medical},
                    ("wecom", "clean_hall"): {"text": expected_hall}}
