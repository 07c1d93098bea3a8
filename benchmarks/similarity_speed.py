"""Similar-case lookup at scale: N synthetic cases' similarity signatures in PostgreSQL, and how fast a new
report finds its similar cases.

    python -m benchmarks.similarity_speed [--cases 10000] [--queries 300] \
        [--database-url postgresql+asyncpg://postgres@127.0.0.1/postgres]

It creates a throwaway database next to the one in the URL (dropped at the end unless --keep), builds

    similarity_cases(case_id bigint primary key, created_at timestamptz, district smallint, minhash bytea)
    similarity_bands(band_key bigint, case_id bigint)      -- index (band_key, case_id): one row per case and band
    similarity_places(place_key bigint, case_id bigint)    -- index (place_key, case_id): one per case and place

with SQLAlchemy Core on asyncpg, then times the lookup of a new report: one statement fetching the cases that
share at least one band key with it (the 200 sharing most, among the newest 200 per key) or one place key (the
newest 200 per key), created within the last 180 days, then ranking them in Python by `combined_score`. The
queries are half reports of a stored case's problem at its place in other words (another resident reporting it)
and half new reports. It prints the build rates and the lookup's p50/p95/p99. The texts come from word lists in
this file (invented places, units, people and misconduct). --keep keeps the database; --reuse NAME times lookups
on it again without building.
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

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from nlp.similarity import SIMILAR_THRESHOLD, Signature, SimilarityHasher, combined_score, similarities
from nlp.tokenizer import warm_up

DISTRICTS = ["东湖区", "西岭区", "南江区", "北塘区", "青山县", "云溪县", "白沙市", "临川区", "桃源县", "金水区"]
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


metadata = MetaData()
cases_table = Table(
    "similarity_cases", metadata,
    Column("case_id", BigInteger, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("district", SmallInteger),
    Column("minhash", LargeBinary, nullable=False),
)
bands_table = Table(
    "similarity_bands", metadata,
    Column("band_key", BigInteger, nullable=False),
    Column("case_id", BigInteger, nullable=False),
    Index("ix_similarity_bands_key_case", "band_key", "case_id"),
)
places_table = Table(
    "similarity_places", metadata,
    Column("place_key", BigInteger, nullable=False),
    Column("case_id", BigInteger, nullable=False),
    Index("ix_similarity_places_key_case", "place_key", "case_id"),
)
CANDIDATES = 200
PER_KEY = 200
WINDOW_DAYS = 180


def lookup_statement() -> object:
    """Cases sharing a band key (at most PER_KEY of the newest per key, then the CANDIDATES sharing most) and cases
    sharing a place key (at most PER_KEY of the newest per key), created since :since. Reading at most PER_KEY
    rows per key through the (key, case_id) indexes bounds the work when a key is common."""
    keys = ARRAY(BigInteger)
    band_key = func.unnest(bindparam("bands", type_=keys)).table_valued("key").render_derived(name="band_key")
    newest_bands = (select(bands_table.c.case_id).where(bands_table.c.band_key == band_key.c.key)
                    .order_by(bands_table.c.case_id.desc()).limit(PER_KEY).lateral("newest_bands"))
    shared = (select(newest_bands.c.case_id, func.count().label("shared"))
              .select_from(band_key.join(newest_bands, true()))
              .group_by(newest_bands.c.case_id).order_by(func.count().desc()).limit(CANDIDATES).subquery())
    by_band = (select(cases_table, shared.c.shared).join(shared, shared.c.case_id == cases_table.c.case_id)
               .where(cases_table.c.created_at >= bindparam("since")))
    place_key = func.unnest(bindparam("places", type_=keys)).table_valued("key").render_derived(name="place_key")
    newest_places = (select(places_table.c.case_id).where(places_table.c.place_key == place_key.c.key)
                     .order_by(places_table.c.case_id.desc()).limit(PER_KEY).lateral("newest_places"))
    same_place = (select(cases_table, literal(0).label("shared"))
                  .select_from(place_key.join(newest_places, true())
                               .join(cases_table, cases_table.c.case_id == newest_places.c.case_id))
                  .where(cases_table.c.created_at >= bindparam("since")))
    return union_all(by_band, same_place)


async def build(engine: AsyncEngine, reports: list[SyntheticReport], hasher: SimilarityHasher,
                batch: int) -> tuple[float, float]:
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    signing = inserting = 0.0
    for start in range(0, len(reports), batch):
        chunk = reports[start:start + batch]
        began = time.perf_counter()
        chunk_signatures = [hasher.signature(report.text, report.place) for report in chunk]
        signing += time.perf_counter() - began
        began = time.perf_counter()
        async with engine.begin() as connection:
            await connection.execute(insert(cases_table), [
                {"case_id": start + offset, "created_at": report.created_at, "district": report.district,
                 "minhash": signature.minhash_bytes()}
                for offset, (report, signature) in enumerate(zip(chunk, chunk_signatures, strict=True))])
            await connection.execute(insert(bands_table), [
                {"band_key": key, "case_id": start + offset}
                for offset, signature in enumerate(chunk_signatures) for key in signature.band_keys])
            await connection.execute(insert(places_table), [
                {"place_key": key, "case_id": start + offset}
                for offset, signature in enumerate(chunk_signatures) for key in set(signature.place_keys)])
        inserting += time.perf_counter() - began
        if (start // batch) % 20 == 0:
            print(f"  {start + len(chunk):>9,} cases stored", flush=True)
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))
    return signing, inserting


async def lookup(engine: AsyncEngine, statement: object, signature: Signature, district: int,
                 created_at: datetime) -> list[tuple[int, float]]:
    """Similar cases of a new report: (case id, combined score) from SIMILAR_THRESHOLD up, best first."""
    async with engine.connect() as connection:
        rows = (await connection.execute(statement, {  # type: ignore[call-overload]
            "bands": list(signature.band_keys), "places": list(signature.place_keys),
            "since": created_at - timedelta(days=WINDOW_DAYS)})).all()
    if not rows:
        return []
    unique = {row.case_id: row for row in rows}
    candidates = list(unique.values())
    minhashes = np.frombuffer(b"".join(row.minhash for row in candidates), dtype="<u4").reshape(len(candidates), -1)
    text_similarity = similarities(signature, minhashes)
    place_ids = {row.case_id for row in rows if row.shared == 0}
    scored = []
    for row, similarity in zip(candidates, text_similarity, strict=True):
        days = abs((created_at - row.created_at).total_seconds()) / 86400
        score = combined_score(float(similarity), row.case_id in place_ids, row.district == district, days)
        if score >= SIMILAR_THRESHOLD:
            scored.append((row.case_id, score))
    scored.sort(key=lambda item: -item[1])
    return scored


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
    engine = create_async_engine(url.set(database=database), pool_size=2)
    try:
        reports = synthetic_reports(arguments.cases, seed=arguments.seed)
        hasher = SimilarityHasher(b"benchmark key, not a secret....", num_perm=arguments.num_perm,
                                  bands=arguments.bands)
        print(f"{arguments.cases:,} synthetic cases, {arguments.num_perm} permutations, {arguments.bands} bands")
        if not arguments.reuse:
            began = time.perf_counter()
            signing, inserting = await build(engine, reports, hasher, arguments.batch)
            print(f"built in {time.perf_counter() - began:.0f} s: signatures {len(reports) / signing:,.0f}/s, "
                  f"inserts {len(reports) / inserting:,.0f} cases/s")
        async with engine.connect() as connection:
            sizes = (await connection.execute(text(
                "SELECT pg_size_pretty(pg_total_relation_size('similarity_cases')), "
                "pg_size_pretty(pg_total_relation_size('similarity_bands')), "
                "pg_size_pretty(pg_total_relation_size('similarity_places'))"))).one()
        print(f"table sizes with indexes: cases {sizes[0]}, bands {sizes[1]}, places {sizes[2]}")
        statement = lookup_statement()
        rng = random.Random(arguments.seed + 1)
        latencies: list[float] = []
        found_original = 0
        results = 0
        end = max(report.created_at for report in reports)
        for number in range(arguments.queries):
            if number % 2 == 0:
                original_id = rng.randrange(len(reports))
                original = reports[original_id]
                query = synthetic_report(rng, original.created_at + timedelta(days=rng.randint(0, 20)),
                                         site=original.site, problem=original.problem, district=original.district)
            else:
                original_id = -1
                query = synthetic_report(rng, end)
            signature = hasher.signature(query.text, query.place)
            began = time.perf_counter()
            similar = await lookup(engine, statement, signature, query.district, query.created_at)
            latencies.append((time.perf_counter() - began) * 1000)
            results += len(similar)
            if original_id >= 0 and any(case_id == original_id for case_id, _ in similar):
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
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--bands", type=int, default=32)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", metavar="DATABASE", help="time lookups on a database kept by --keep (same --cases "
                        "and --seed), without building it again")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
