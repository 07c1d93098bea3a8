"""Similar-case lookup at scale, on the product's own path: N synthetic cases in PostgreSQL, migrated to the
product's schema, stored encrypted with their keyed signatures in `case_signatures`, `similarity_bands` and
`similarity_places`, and how fast a new report finds its similar cases with `handlers.similar.find` (the one
statement of `storage.similar.candidates`, then the ranking by `combined_score`) — what the dialog runs at submit.

    python -m benchmarks.similarity_speed [--cases 10000] [--queries 300] \
        [--database-url postgresql+asyncpg://postgres@127.0.0.1/postgres]

It creates a throwaway database next to the one in the URL (dropped at the end unless --keep). The queries are
half reports of a stored case's problem at its place in other words (another resident reporting it) and half new
reports. It prints the build rates, the table sizes and the lookup's p50/p95/p99. The texts come from word lists
in this file (invented places, units, people and misconduct). --keep keeps the database; --reuse NAME times
lookups on it again without building.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from handlers import similar as similar_cases
from handlers.city import Similarity
from nlp.similarity import SimilarityHasher
from nlp.tokenizer import warm_up
from storage.crypto import DataKey, KeyRing
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import Case, CaseSignature, SimilarityBand, SimilarityPlace
from storage.similar import SIGNATURE_VERSION

DISTRICTS = ["东湖区", "西岭区", "南江区", "北塘区", "青山县", "云溪县", "白沙市", "临川区", "桃源县", "金水区"]
DISTRICT_CODES = [f"district{index}" for index in range(10)]
ESTATE_FIRST = list("青南东金阳和新华江山湖桂明安兴福瑞景星锦翠碧龙凤松竹梅兰泉溪月云")
ESTATE_SECOND = list("苑庭湾城府园郡轩居阁")
ESTATE_KIND = ["小区", "花园", "家园", "新村", "公馆", "", "", ""]
ROADS = ["人民路", "解放路", "建设大道", "滨江路", "文化街", "迎宾路", "工业大道", "环城北路", "学府路", "新民街"]
UNITS = [
    "区市场监管局", "区住建局", "街道办事处", "社区居委会", "派出所", "镇卫生院", "第三中学", "实验小学",
    "不动产登记中心", "政务服务中心", "区城管执法大队", "区人社局社保窗口", "区医保局", "镇政府", "村委会",
    "区教育局", "区自然资源局", "区生态环境分局", "公交公司", "燃气公司",
]
PEOPLE = [
    "工作人员", "窗口人员", "负责人", "科长", "村支书", "村主任", "社区书记", "城管队员", "班主任", "校长", "医生",
    "物业经理", "施工单位", "开发商", "包工头", "站长", "所长", "会计", "网格员", "保安",
]
MISCONDUCT = [
    "上班时间玩手机不理群众", "要求先送红包才给盖章", "把不动产证拖了半年不办", "违规收取所谓的加急费",
    "夜间施工到凌晨还在浇筑", "把低保名额给了自己亲戚", "强制学生参加收费补课", "乱收检查费还不给报销",
    "态度恶劣不一次性告知材料", "截留扶贫资金不发给贫困户", "没有招标就把工程包给熟人", "周末开公车去钓鱼",
    "对举报的违建多年不查处", "让垃圾站臭气熏天没人管", "挖开道路后一直不恢复", "少发征地补偿款",
    "违规收取停车费", "把食堂承包给领导亲属", "让社保转移来回跑了好几次", "停发拆迁过渡费",
    "在验收时收受好处费", "虚报冒领养老补贴", "在评优评先中弄虚作假", "推诿扯皮让群众多跑路",
    "私自倒卖公共车位", "占用消防通道摆摊", "给不合格的房子发验收证", "克扣环卫工人工资", "接受宴请后放松检查",
    "强迫商户订购指定商品", "在招聘考试中照顾关系户", "把集体土地私自出租", "拖欠农民工工资",
    "对噪音扰民的投诉置之不理", "收了钱却不开发票", "随意罚款不开罚单", "用公款发购物卡",
    "擅自提高收费标准", "把救灾物资分给熟人", "在办证时故意刁难",
]
CONSEQUENCES = [
    "群众意见很大", "老人孩子都受影响", "我们多次反映没有结果", "附近居民晚上睡不着", "造成了很大的经济损失",
    "影响非常恶劣", "大家都敢怒不敢言", "很多人因此耽误了工作", "存在很大的安全隐患", "严重损害政府形象",
]
DETAILS = [
    "我已经反映了{n}次", "前后跑了{n}趟", "等了{n}个小时", "已经持续{n}个月", "涉及{n}户居民", "多次打电话都没人接",
    "希望有关部门尽快调查处理", "请纪委监委介入", "周边很多居民都有意见", "我们有照片和录音可以作证",
    "负责人说这是上面的规定", "工作人员互相推诿", "去年也发生过同样的事情", "请给我们一个明确的答复",
    "上个月{n}号又发生了", "金额大约{n}千元", "同事和邻居也遇到过", "投诉电话一直占线",
]
NUMBERS = ["两", "三", "四", "五", "六", "十", "2", "3", "5", "8"]


@dataclass(frozen=True)
class SyntheticReport:
    text: str
    place: str
    district: int
    created_at: datetime
    problem: int  # index into MISCONDUCT
    site: str  # the place without its district


def _estate(rng: random.Random) -> str:
    return rng.choice(ESTATE_FIRST) + rng.choice(ESTATE_FIRST) + rng.choice(ESTATE_SECOND) + rng.choice(ESTATE_KIND)


def synthetic_report(rng: random.Random, created_at: datetime, *, site: str | None = None,
                     problem: int | None = None, district: int | None = None) -> SyntheticReport:
    """One invented report: a place (an estate, a road or a unit in a district), who did what there, what it
    caused and some details, in one of several orders."""
    district = rng.randrange(len(DISTRICTS)) if district is None else district
    if site is None:
        kind = rng.random()
        if kind < 0.45:
            site = _estate(rng)
        elif kind < 0.7:
            site = rng.choice(ROADS) + _estate(rng)
        else:
            site = DISTRICTS[district][:2] + rng.choice(UNITS)
    problem = rng.randrange(len(MISCONDUCT)) if problem is None else problem
    person = rng.choice(PEOPLE)
    details = [detail.format(n=rng.choice(NUMBERS)) for detail in rng.sample(DETAILS, rng.randint(1, 3))]
    consequence = rng.choice(CONSEQUENCES)
    opening = rng.choice(["反映", "投诉", "举报", "我要反映", "关于", ""])
    place = DISTRICTS[district] + site
    if rng.random() < 0.5:
        text = f"{opening}{place}的{person}{MISCONDUCT[problem]}，{consequence}。{'，'.join(details)}。"
    else:
        text = f"{'，'.join(details)}。{place}{person}{MISCONDUCT[problem]}，{consequence}，{opening}一下。"
    return SyntheticReport(text, place, district, created_at, problem, site)


def synthetic_reports(count: int, seed: int = 1, *, days: int = 365, end: datetime | None = None
                      ) -> list[SyntheticReport]:
    """`count` invented reports spread over `days` days before `end`; one in ten repeats an earlier report's place
    and problem in other words (another resident reporting the same thing)."""
    rng = random.Random(seed)
    end = end or datetime(2025, 1, 1, tzinfo=UTC)
    reports: list[SyntheticReport] = []
    for _ in range(count):
        created_at = end - timedelta(seconds=rng.randrange(days * 86400))
        if reports and rng.random() < 0.1:
            earlier = rng.choice(reports)
            reports.append(synthetic_report(rng, created_at, site=earlier.site, problem=earlier.problem,
                                            district=earlier.district))
        else:
            reports.append(synthetic_report(rng, created_at))
    reports.sort(key=lambda report: report.created_at)  # case ids grow with time, as in the product
    return reports


WINDOW_DAYS = 180
BENCHMARK_KEYS = KeyRing(DataKey(b"b" * 32, "benchmark"), pseudonym_key=b"p" * 32)  # not secrets: a throwaway DB


def _case_row(case_id: int, report: SyntheticReport) -> dict[str, object]:
    return {"id": case_id, "case_number": f"QL-B-{case_id:07d}", "receipt_code_hash": f"{case_id:064x}",
            "channel": "web", "reporter_ref": f"bench-{case_id}", "reporter_key": f"{case_id:064x}", "locale": "zh",
            "district": DISTRICT_CODES[report.district], "place": report.place, "occurred": "",
            "description": report.text, "status": "received", "queue": "clean_hall",
            "created_at": report.created_at, "updated_at": report.created_at}


async def build(sessionmaker: async_sessionmaker[AsyncSession], reports: list[SyntheticReport],
                hasher: SimilarityHasher, batch: int) -> tuple[float, float]:
    """The cases (encrypted as the product stores them) and their signatures in the product's tables."""
    signing = inserting = 0.0
    for start in range(0, len(reports), batch):
        chunk = reports[start:start + batch]
        began = time.perf_counter()
        signed = []
        for report in chunk:
            terms = hasher.term_hashes(report.text)
            signed.append(similar_cases.stored(hasher.signature_of_terms(terms, report.place), terms))
        signing += time.perf_counter() - began
        began = time.perf_counter()
        async with sessionmaker.begin() as session:
            await session.execute(insert(Case), [_case_row(start + offset + 1, report)
                                                 for offset, report in enumerate(chunk)])
            await session.execute(insert(CaseSignature), [
                {"case_id": start + offset + 1, "minhash": item.minhash, "terms": item.terms,
                 "version": SIGNATURE_VERSION} for offset, item in enumerate(signed)])
            await session.execute(insert(SimilarityBand), [
                {"band_key": key, "case_id": start + offset + 1}
                for offset, item in enumerate(signed) for key in set(item.band_keys)])
            await session.execute(insert(SimilarityPlace), [
                {"place_key": key, "case_id": start + offset + 1}
                for offset, item in enumerate(signed) for key in set(item.place_keys)])
        inserting += time.perf_counter() - began
        if (start // batch) % 20 == 0:
            print(f"  {start + len(chunk):>9,} cases stored", flush=True)
    async with sessionmaker.begin() as session:
        await session.execute(text("ANALYZE"))
    return signing, inserting


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def run(arguments: argparse.Namespace) -> None:
    warm_up()
    url = make_url(arguments.database_url)
    database = arguments.reuse or f"qinglian_simbench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    if not arguments.reuse:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{database}"'))
    target = url.set(database=database).render_as_string(hide_password=False)
    engine = create_engine(target, BENCHMARK_KEYS, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    settings = Similarity(window_days=WINDOW_DAYS)
    try:
        if not arguments.reuse:
            await asyncio.to_thread(upgrade, target, BENCHMARK_KEYS)
        reports = synthetic_reports(arguments.cases, seed=arguments.seed)
        hasher = SimilarityHasher(BENCHMARK_KEYS.similarity_key)  # what handlers.similar.hasher_for gives
        print(f"{arguments.cases:,} synthetic cases in the product's schema (migrations to head)")
        if not arguments.reuse:
            began = time.perf_counter()
            signing, inserting = await build(sessionmaker, reports, hasher, arguments.batch)
            print(f"built in {time.perf_counter() - began:.0f} s: signatures {len(reports) / signing:,.0f}/s, "
                  f"inserts {len(reports) / inserting:,.0f} cases/s")
        async with engine.connect() as connection:
            sizes = (await connection.execute(text(
                "SELECT pg_size_pretty(pg_total_relation_size('cases')), "
                "pg_size_pretty(pg_total_relation_size('case_signatures')), "
                "pg_size_pretty(pg_total_relation_size('similarity_bands')), "
                "pg_size_pretty(pg_total_relation_size('similarity_places'))"))).one()
        print(f"table sizes with indexes: cases {sizes[0]}, signatures {sizes[1]}, bands {sizes[2]}, "
              f"places {sizes[3]}")
        rng = random.Random(arguments.seed + 1)
        latencies: list[float] = []
        found_original = 0
        results = 0
        end = max(report.created_at for report in reports)
        for number in range(arguments.queries):
            if number % 2 == 0:
                original_id = rng.randrange(len(reports)) + 1
                original = reports[original_id - 1]
                query = synthetic_report(rng, original.created_at + timedelta(days=rng.randint(0, 20)),
                                         site=original.site, problem=original.problem, district=original.district)
            else:
                original_id = -1
                query = synthetic_report(rng, end)
            terms = hasher.term_hashes(query.text)
            signature = similar_cases.stored(hasher.signature_of_terms(terms, query.place), terms)
            began = time.perf_counter()
            async with sessionmaker() as session:  # the product's lookup: one statement, then the ranking
                similar = await similar_cases.find(session, signature, district=DISTRICT_CODES[query.district],
                                                   created_at=query.created_at, settings=settings)
            latencies.append((time.perf_counter() - began) * 1000)
            results += len(similar)
            if original_id >= 0 and any(item.case_id == original_id for item in similar):
                found_original += 1
        print(f"lookup over {arguments.queries} new reports: p50 {_percentile(latencies, 0.5):.1f} ms, "
              f"p95 {_percentile(latencies, 0.95):.1f} ms, p99 {_percentile(latencies, 0.99):.1f} ms, "
              f"mean {statistics.fmean(latencies):.1f} ms; {results / arguments.queries:.1f} similar cases per "
              f"report; the copied case found for {found_original}/{(arguments.queries + 1) // 2} near-copies")
    finally:
        await engine.dispose()
        if not arguments.keep and not arguments.reuse:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        else:
            print(f"kept database {database}")
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1/postgres")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", metavar="DATABASE", help="time lookups on a database kept by --keep (same --cases "
                        "and --seed), without building it again")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
