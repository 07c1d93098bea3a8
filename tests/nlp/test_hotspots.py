"""Hot issues: reports about one place become one group, ranked by a heat index that counts residents."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nlp.hotspots import (
    CaseRecord,
    HeatParameters,
    Message,
    case_record,
    find_hotspots,
    group_cases,
    weekly_counts,
)
from nlp.similarity import SimilarityHasher

START = datetime(2024, 3, 4, 9, 0)  # a Monday

PLANT = [  # six residents about one asphalt plant next to one estate
    ("金桂苑小区旁沥青搅拌厂夜间生产扰民", "金桂苑小区旁边的沥青搅拌厂每天夜里生产到凌晨，噪音和臭味让居民无法入睡。"),
    ("投诉金桂苑附近沥青搅拌厂噪音", "金桂苑附近新建的沥青搅拌厂机器声音很大，夜里也不停工，请环保部门查处。"),
    ("金桂苑小区沥青搅拌厂臭味太大", "金桂苑小区的居民每天闻到沥青搅拌厂的刺鼻臭味，孩子咳嗽不止。"),
    ("金桂苑旁的沥青搅拌厂是否合法", "想问一下金桂苑旁边的沥青搅拌厂有没有环评手续，夜间生产噪音扰民。"),
    ("金桂苑小区附近沥青搅拌厂严重污染", "金桂苑小区附近沥青搅拌厂粉尘和臭味严重污染环境，居民多次反映无果。"),
    ("再次反映金桂苑沥青搅拌厂扰民", "金桂苑的沥青搅拌厂还在夜里生产，噪音臭味依旧，希望尽快处理。"),
]
SCHOOL = [  # four parents about fees at one school
    ("育才实验中学强制收取资料费", "育才实验中学要求每个学生交八百元资料费，不交就不发教材。"),
    ("育才实验中学乱收资料费", "育才实验中学班主任通知交资料费八百元，家长很有意见。"),
    ("举报育才实验中学收资料费", "育才实验中学以资料费名义收钱，每人八百，没有收据。"),
    ("育才实验中学资料费问题", "孩子在育才实验中学读书，学校又要交八百元资料费，请教育局调查。"),
]
OTHERS = [
    ("社保窗口办事难", "去区政务中心社保窗口转移社保关系，跑了四次还没办好。"),
    ("道路开挖后未恢复", "滨江路开挖三个月了一直没有恢复，车辆无法通行。"),
    ("村干部优亲厚友", "青松村的低保名额都给了村干部的亲戚。"),
    ("公车私用", "周末看到街道办的公车停在水库钓鱼。"),
    ("医院乱收费", "县医院检查费收了两次，医保也报不了。"),
    ("不动产证迟迟不办", "不动产登记中心半年没给办证，每次都说系统故障。"),
    ("拆迁过渡费停发", "东岭片区拆迁户的过渡费已经停发五个月。"),
    ("城管执法粗暴", "城管队员在夜市推翻小贩的摊位。"),
    ("物业乱收停车费", "翠湖湾物业擅自提高停车费，业委会不知情。"),
    ("公交站点撤销", "迎宾路的公交站突然撤销，老人出行很不方便。"),
]


def _messages() -> list[Message]:
    messages = []
    for number, (title, text) in enumerate(PLANT):
        messages.append(Message(f"plant-{number}", title, text, START + timedelta(days=20 + 2 * number), likes=3,
                                author=f"resident-p{number}"))
    for number, (title, text) in enumerate(SCHOOL):
        messages.append(Message(f"school-{number}", title, text, START + timedelta(days=3 * number), likes=1,
                                author=f"resident-s{number}"))
    for number, (title, text) in enumerate(OTHERS):
        messages.append(Message(f"other-{number}", title, text, START + timedelta(days=number), likes=0,
                                author=f"resident-o{number}"))
    return messages


def test_reports_about_one_place_become_one_group_ranked_by_heat() -> None:
    messages = _messages()
    hotspots = find_hotspots(messages, top=5)
    assert [hotspot.rank for hotspot in hotspots] == list(range(1, len(hotspots) + 1))
    first, second = hotspots[:2]
    assert sorted(first.message_ids) == [f"plant-{number}" for number in range(6)]  # type: ignore[type-var]
    assert sorted(second.message_ids) == [f"school-{number}" for number in range(4)]  # type: ignore[type-var]
    assert "金桂苑" in first.place_people
    assert "育才实验中学" in second.place_people
    assert first.description in {title for title, _ in PLANT}
    assert first.time_range == (START + timedelta(days=20), START + timedelta(days=30))
    assert first.residents == 6
    assert first.likes == 18
    assert first.heat > second.heat


def test_weekly_trend_counts_every_week_of_the_group() -> None:
    plant = find_hotspots(_messages(), top=1)[0]
    assert plant.weekly == [(date(2024, 3, 18), 1), (date(2024, 3, 25), 3), (date(2024, 4, 1), 2)]


def test_one_resident_repeating_a_report_is_not_a_hot_issue() -> None:
    messages = [replace(message, author="the same resident") if message.id.startswith("plant") else message  # type: ignore[attr-defined]
                for message in _messages()]
    hotspots = find_hotspots(messages, top=5)
    assert sorted(hotspots[0].message_ids) == [f"school-{number}" for number in range(4)]  # type: ignore[type-var]
    assert [i for hotspot in hotspots for i in hotspot.message_ids if str(i).startswith("plant")] == []


def test_more_residents_likes_and_recency_raise_the_heat() -> None:
    hasher = SimilarityHasher(b"test key: thirty-two bytes long!")
    messages = _messages()
    records = [case_record(message, hasher) for message in messages]
    now = START + timedelta(days=40)
    base = {tuple(sorted(map(str, group.case_ids))): group.heat for group in group_cases(records, now=now)}
    school_ids = tuple(f"school-{number}" for number in range(4))
    liked = [replace(record, likes=500) if str(record.id).startswith("school") else record for record in records]
    liked_heat = {tuple(sorted(map(str, g.case_ids))): g.heat for g in group_cases(liked, now=now)}
    assert liked_heat[school_ids] > base[school_ids]
    later = {tuple(sorted(map(str, g.case_ids))): g.heat for g in group_cases(records, now=now + timedelta(days=200))}
    assert later[school_ids] < base[school_ids]
    serious = [replace(record, label="bribery_gifts") if str(record.id).startswith("school") else record
               for record in records]
    serious_heat = {tuple(sorted(map(str, g.case_ids))): g.heat for g in group_cases(serious, now=now)}
    assert serious_heat[school_ids] == pytest.approx(base[school_ids] * 1.5)


def test_a_problem_reported_over_a_longer_time_is_hotter() -> None:
    """Persistence: the same residents with the same last report, but spread over 12 weeks instead of 9 days."""
    hasher = SimilarityHasher(b"test key: thirty-two bytes long!")
    records = [case_record(message, hasher) for message in _messages()]
    school_ids = tuple(f"school-{number}" for number in range(4))
    last = max(record.time for record in records if str(record.id) in school_ids)
    stretched = [replace(record, time=last - timedelta(weeks=4 * (3 - int(str(record.id)[-1]))))
                 if str(record.id) in school_ids else record for record in records]
    heat = HeatParameters(recency_half_life_days=30)  # the same recency whatever the period's length
    now = START + timedelta(days=40)

    def heat_of_school(chosen: list[CaseRecord]) -> float:
        return {tuple(sorted(map(str, g.case_ids))): g.heat for g in group_cases(chosen, now=now, heat=heat)}[
            school_ids]

    short, long = heat_of_school(records), heat_of_school(stretched)
    assert long > short
    assert long / short == pytest.approx((1 + 0.1 * math.log1p(84 / 7)) / (1 + 0.1 * math.log1p(9 / 7)))


def test_a_refresh_on_stored_features_finds_the_same_groups_without_text() -> None:
    hasher = SimilarityHasher(b"test key: thirty-two bytes long!")
    messages = _messages()
    records = [case_record(message, hasher) for message in messages]
    groups = group_cases(records, top=2, heat=HeatParameters())
    hotspots = find_hotspots(messages, top=2, hasher=hasher)
    assert [group.case_ids for group in groups] == [hotspot.message_ids for hotspot in hotspots]
    assert groups[0].central_id in groups[0].case_ids


def test_the_command_line_shape_of_a_hot_issue() -> None:
    plant = find_hotspots(_messages(), top=1)[0]
    line = plant.to_json()
    assert sorted(line) == ["description", "heat", "message_ids", "place_people", "rank", "time_range"]
    assert line["time_range"] == "2024-03-24至2024-04-03"
    assert line["rank"] == 1


def test_no_messages_no_hot_issues() -> None:
    assert find_hotspots([], top=5) == []


def test_the_weeks_of_a_group_are_the_citys_weeks() -> None:
    """Reports received on a Monday morning in Changsha (a Sunday night in UTC) were charted in the week before."""
    monday_morning = [datetime(2026, 12, 6, 18, 55, tzinfo=UTC), datetime(2026, 12, 6, 19, 0, tzinfo=UTC)]
    assert weekly_counts(monday_morning, ZoneInfo("Asia/Shanghai")) == [(date(2026, 12, 7), 2)]
    assert weekly_counts(monday_morning) == [(date(2026, 11, 30), 2)]  # without a zone: the times' own
