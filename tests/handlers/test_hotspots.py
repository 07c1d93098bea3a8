"""Hot issues in the product (issue 15): the background refresh groups a period's reports into problems and a
member of staff sees each group described from the cases of their own queues. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.jobs import hotspots_once
from handlers import hotspots as hot_issues
from handlers import similar as similar_cases
from handlers.city import load_city_config
from storage import hotspots
from storage.models import HotIssueRun, utcnow
from tests.factories import file_case

PLANT = [
    "丽发新城小区旁边的搅拌站每天夜里施工到凌晨，噪音和粉尘严重，居民没法休息。",
    "丽发新城附近的混凝土搅拌站夜间生产，粉尘噪音扰民，多次投诉无人处理。",
    "丽发新城搅拌站粉尘太大了，家里窗台每天都是灰，孩子咳嗽，请环保部门查处。",
    "丽发新城小区的搅拌站半夜还在运转，噪音扰民，希望相关部门管一管。",
]
OTHERS = [
    "政务服务中心社保窗口工作人员上班时间玩手机，群众排长队无人办理。",
    "某村村委会把低保名额给了村干部的亲戚，村民意见很大。",
    "学校强制学生购买指定的教辅资料，每人收费两百元。",
    "医院医生收受病人红包，不给红包就拖着不安排手术。",
]


async def _file_all(sessionmaker: Any) -> list[int]:
    ids = []
    now = utcnow()
    async with sessionmaker.begin() as session:
        for number, text in enumerate(PLANT + OTHERS):
            queue = "district_yuelu" if number % 2 == 0 else "clean_project"
            case, _ = await file_case(session, description=text, place="丽发新城" if number < 4 else "长沙市",
                                      queue=queue, reporter_ref=str(number), now=now - timedelta(days=number))
            await similar_cases.sign_new_case(session, case.id, text, case.place)
            ids.append(case.id)
    return ids


async def test_the_refresh_groups_the_residents_reports_of_one_problem(sessionmaker: Any) -> None:
    ids = await _file_all(sessionmaker)
    city = load_city_config(None)

    assert await hotspots_once(sessionmaker, city, force=True)

    async with sessionmaker() as session:
        run = await hotspots.latest_run(session)
        assert run is not None and run.cases == len(ids)
        issues = await hot_issues.view(session, run, None)
    assert issues, "the four reports of the concrete plant make a hot issue"
    first = issues[0]
    assert sorted(case.case_id for case in first.cases) == sorted(ids[:4])
    assert "丽发新城" in first.place_people
    assert first.residents == 4 and first.hidden == 0
    assert first.queues == {"district_yuelu": 2, "clean_project": 2}
    assert sum(count for _, count in first.weekly) == 4


async def test_a_reviewer_sees_only_the_cases_of_their_queues_and_the_count_of_the_others(sessionmaker: Any) -> None:
    ids = await _file_all(sessionmaker)
    assert await hotspots_once(sessionmaker, load_city_config(None), force=True)

    async with sessionmaker() as session:
        run = await hotspots.latest_run(session)
        assert run is not None
        issues = await hot_issues.view(session, run, ["district_yuelu"])
        nothing = await hot_issues.view(session, run, ["clean_hall"])
    assert [sorted(case.case_id for case in issue.cases) for issue in issues][:1] == [[ids[0], ids[2]]]
    assert issues[0].hidden == 2 and issues[0].queues == {"district_yuelu": 2}
    assert nothing == []


async def test_the_count_of_residents_never_links_an_anonymous_report_to_another(sessionmaker: Any) -> None:
    """Seen as a security tester: one resident filed a report anonymously and another under their name; the hot
    issue said "举报人数 1 · 2 件", so whoever revealed the named one knew who wrote the anonymous one. An anonymous
    report counts as a resident of its own; reports under a name count once per resident."""
    now = utcnow()
    filers = [("same", True), ("same", False), ("other", False), ("other", False)]  # (reporter, anonymous)
    async with sessionmaker.begin() as session:
        for number, (text, (reporter, anonymous)) in enumerate(zip(PLANT, filers, strict=True)):
            case, _ = await file_case(session, description=text, place="丽发新城", queue="district_yuelu",
                                      reporter_ref=reporter, anonymous=anonymous,
                                      reporter_name=None if anonymous else "王小明",
                                      reporter_phone=None if anonymous else "13987654321",
                                      now=now - timedelta(days=number))
            await similar_cases.sign_new_case(session, case.id, text, case.place)
    assert await hotspots_once(sessionmaker, load_city_config(None), force=True)
    async with sessionmaker() as session:
        run = await hotspots.latest_run(session)
        assert run is not None
        [issue] = await hot_issues.view(session, run, ["district_yuelu"])
        [stored] = run.groups
    assert (len(issue.cases), issue.residents) == (4, 3)
    assert stored["residents"] == 3  # the heat counts as the page does: it cannot be read back into a link


async def test_a_refresh_is_not_repeated_within_its_interval_and_old_runs_are_forgotten(sessionmaker: Any) -> None:
    await _file_all(sessionmaker)
    city = load_city_config(None)
    now = utcnow()
    assert await hotspots_once(sessionmaker, city, now)
    assert not await hotspots_once(sessionmaker, city, now + timedelta(minutes=1))
    for minutes in range(1, 8):
        assert await hotspots_once(sessionmaker, city, now + timedelta(minutes=11 * minutes))
    async with sessionmaker() as session:
        runs = (await session.execute(select(HotIssueRun.id))).scalars().all()
    assert len(runs) == hotspots.KEEP_RUNS
