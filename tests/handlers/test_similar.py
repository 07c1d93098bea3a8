"""Similar cases at intake (issue 15): a second resident's report of the same problem at the same place is found,
an unrelated one is not, nothing outside the window is, and the index stores no readable fragment of a report.
Against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from handlers import similar as similar_cases
from handlers.city import Similarity
from storage import similar
from storage.models import CaseSignature, SimilarityBand, SimilarityPlace, utcnow
from tests.factories import file_case

PLANT = ("丽发新城小区旁边的搅拌站每天夜里施工到凌晨，噪音和粉尘严重，附近居民根本没法休息，多次向环保部门反映"
         "都没有处理。")
PLANT_AGAIN = "丽发新城附近的混凝土搅拌站夜间违规生产，粉尘噪音扰民，居民投诉多次无人处理，希望尽快查处。"
WINDOW = "政务服务中心社保窗口工作人员上班时间玩手机，群众排长队无人办理，态度也很差。"


async def _file(session: Any, description: str, place: str, *, district: str | None = "yuelu",
                days_ago: float = 0, reporter: str = "42") -> tuple[int, similar.StoredSignature]:
    now = utcnow() - timedelta(days=days_ago)
    case, _ = await file_case(session, description=description, place=place, district=district, now=now,
                              reporter_ref=reporter)
    signature = await similar_cases.sign_new_case(session, case.id, description, place)
    return case.id, signature


async def test_another_residents_report_of_the_same_problem_is_similar_and_an_unrelated_one_is_not(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        plant, _ = await _file(session, PLANT, "岳麓区丽发新城小区", reporter="1")
        window, _ = await _file(session, WINDOW, "岳麓区政务服务中心", reporter="2")
        again, signature = await _file(session, PLANT_AGAIN, "丽发新城", reporter="3")
        found = await similar_cases.find(session, signature, district="yuelu", created_at=utcnow(),
                                         settings=Similarity(), exclude=again)

    assert [item.case_id for item in found] == [plant]
    assert found[0].same_place and found[0].same_district and found[0].score >= Similarity().threshold
    assert window not in [item.case_id for item in found]


async def test_the_same_place_alone_is_not_a_similar_case(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await _file(session, PLANT, "岳麓区丽发新城小区")
        other, signature = await _file(session, "丽发新城小区物业乱收停车费，每个月多收一百元，还不开发票。",
                                       "丽发新城小区")
        found = await similar_cases.find(session, signature, district="yuelu", created_at=utcnow(),
                                         settings=Similarity(), exclude=other)
    assert found == []


async def test_a_case_older_than_the_window_is_not_looked_at(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await _file(session, PLANT, "岳麓区丽发新城小区", days_ago=40)
        again, signature = await _file(session, PLANT_AGAIN, "丽发新城")
        recent = await similar_cases.find(session, signature, district="yuelu", created_at=utcnow(),
                                          settings=Similarity(window_days=60), exclude=again)
        old = await similar_cases.find(session, signature, district="yuelu", created_at=utcnow(),
                                       settings=Similarity(window_days=30), exclude=again)
    assert len(recent) == 1 and old == []


def _fragments(text: str) -> set[bytes]:
    pieces = {text[index:index + 2] for index in range(len(text) - 1)}
    return {piece.encode(encoding) for piece in pieces for encoding in ("utf-8", "gb18030", "utf-16-le")
            if piece.strip()}


async def test_no_similarity_index_row_holds_a_readable_fragment_of_the_report(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await _file(session, PLANT, "岳麓区丽发新城小区")
        await _file(session, PLANT_AGAIN, "丽发新城")
    async with sessionmaker() as session:
        stored = [bytes(value) for row in await session.execute(select(CaseSignature.minhash, CaseSignature.terms))
                  for value in row]
        stored += [str(key).encode() for key in (await session.execute(select(SimilarityBand.band_key))).scalars()]
        stored += [str(key).encode() for key in (await session.execute(select(SimilarityPlace.place_key))).scalars()]
    blob = b"\x00".join(stored)
    assert len(stored) > 4
    readable = [fragment for fragment in _fragments(PLANT + PLANT_AGAIN + "岳麓区丽发新城小区") if fragment in blob]
    assert readable == []


async def test_a_case_from_before_signatures_is_signed_by_housekeeping_and_then_found(sessionmaker: Any) -> None:
    from bot.jobs import sign_for_similarity

    async with sessionmaker.begin() as session:
        old, _ = await file_case(session, description=PLANT, place="岳麓区丽发新城小区")
    async with sessionmaker() as session:
        assert await similar.signature_of(session, old.id) is None

    assert await sign_for_similarity(sessionmaker) == 1

    async with sessionmaker.begin() as session:
        again, signature = await _file(session, PLANT_AGAIN, "丽发新城")
        found = await similar_cases.find(session, signature, district="yuelu", created_at=utcnow(),
                                         settings=Similarity(), exclude=again)
    assert [item.case_id for item in found] == [old.id]
    assert await sign_for_similarity(sessionmaker) == 0


async def test_the_backfill_signs_every_case_batch_after_batch(sessionmaker: Any) -> None:
    """Each batch starts after the last one's cases: five unsigned cases in batches of two are all signed once."""
    from bot.jobs import sign_for_similarity

    async with sessionmaker.begin() as session:
        cases = [(await file_case(session, description=f"{PLANT}第{number}次", place="岳麓区丽发新城小区"))[0]
                 for number in range(5)]
    assert await sign_for_similarity(sessionmaker, batch=2) == 5
    async with sessionmaker() as session:
        assert all([await similar.signature_of(session, case.id) is not None for case in cases])
        assert await similar.unsigned(session) == []
    assert await sign_for_similarity(sessionmaker, batch=2) == 0
