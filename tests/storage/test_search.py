"""The console's search index (`storage.search`), on SQLite and the PostgreSQL on 127.0.0.1: a case is stored
under keyed integer hashes of its words (each once, dated like the case), never the words; a search finds the
cases that have every word asked for, not a part of a word, reading the rarest word's cases first; cases from
before the index (or an older version of its terms) are listed with their texts until they are indexed again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update

from storage import actions, search
from storage.models import Case, CaseTerm
from tests.factories import file_case

FILED = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


async def _case_with_words(session: Any, reporter: str, words: Sequence[str]) -> int:
    """A filed case whose index holds exactly `words` (instead of those of the factory's description)."""
    case, _ = await file_case(session, reporter_ref=reporter, now=FILED)
    await search.reindex(session, [(case.id, words)])
    return case.id


async def _found(session: Any, words: Sequence[str]) -> list[int]:
    """The ids of the cases that have every one of `words`, each word probed on the index (`having`)."""
    hashes = await search.rarest_first(session, words)
    return sorted((await session.execute(select(Case.id).where(*search.having(Case.id, hashes)))).scalars())


async def _listed(session: Any, words: Sequence[str]) -> list[int]:
    """The ids of the cases `cases_with` lists for `words` (it reads the first word's list of cases)."""
    hashes = await search.rarest_first(session, words)
    return sorted((await session.execute(search.cases_with(hashes))).scalars())


async def test_a_case_is_indexed_by_keyed_hashes_of_its_words_each_once_dated_like_the_case(sessionmaker: Any,
                                                                                            keyring: Any) -> None:
    async with sessionmaker.begin() as session:
        case_id = await _case_with_words(session, "1", ["窗口", "推诿", "窗口"])
        await search.add_terms(session, case_id, FILED, ["推诿", "拖延"])  # a follow-up: 推诿 is known already
        await search.add_terms(session, case_id, FILED, [])  # nothing to add is no error
    async with sessionmaker() as session:
        rows = (await session.execute(select(CaseTerm.term, CaseTerm.case_id, CaseTerm.created_at))).all()
        raw = (await session.execute(text("SELECT * FROM case_terms"))).all()
    assert sorted(term for term, _, _ in rows) == sorted(keyring.search_hash(word) for word in ("窗口", "推诿", "拖延"))
    assert {(case, created) for _, case, created in rows} == {(case_id, FILED)}
    assert all(0 <= term < 2**63 for term, _, _ in rows)  # fits a signed 64-bit column
    stored = " ".join(str(value) for row in raw for value in row)
    assert not any(word in stored for word in ("窗口", "推诿", "拖延", "窗", "推", "拖"))


async def test_a_search_finds_the_cases_with_every_word_reading_the_rarest_words_list_first(sessionmaker: Any,
                                                                                           keyring: Any) -> None:
    async with sessionmaker.begin() as session:
        hall = await _case_with_words(session, "1", ["窗口", "推诿", "服务"])
        canteen = await _case_with_words(session, "2", ["窗口", "食堂"])
        school = await _case_with_words(session, "3", ["食堂"])
        clinic = await _case_with_words(session, "4", ["窗口"])
    async with sessionmaker() as session:
        assert await _found(session, ["窗口"]) == [hall, canteen, clinic]
        assert await _found(session, ["窗口", "食堂"]) == [canteen]
        assert await _found(session, ["服务", "推诿", "窗口"]) == [hall]
        assert await _found(session, ["窗"]) == []  # a part of a word is not a word of the case
        assert await _found(session, ["窗口", "火星"]) == []  # every word must be there
        assert await _listed(session, ["食堂"]) == [canteen, school]
        assert await _listed(session, ["窗"]) == []
        # the word with the fewest cases first: 推诿 (1 case), 食堂 (2), 窗口 (3); one never seen (0) before all
        window, canteen_, shirking, mars = (keyring.search_hash(word) for word in ("窗口", "食堂", "推诿", "火星"))
        assert await search.rarest_first(session, ["窗口", "推诿"]) == [shirking, window]
        assert await search.rarest_first(session, ["窗口", "食堂"]) == [canteen_, window]
        assert await search.rarest_first(session, ["窗口", "火星", "推诿"]) == [mars, shirking, window]
        assert await search.rarest_first(session, ["窗口", "窗口"]) == [window]  # a repeated word counts once
        assert await search.rarest_first(session, []) == []


async def test_cases_with_lists_only_the_cases_that_have_every_word(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await _case_with_words(session, "1", ["窗口", "推诿"])
        canteen = await _case_with_words(session, "2", ["窗口", "食堂"])
        await _case_with_words(session, "3", ["食堂"])
    async with sessionmaker() as session:
        assert await _listed(session, ["窗口", "食堂"]) == [canteen]


async def test_cases_not_indexed_under_this_version_are_listed_with_their_texts_until_reindexed(
        sessionmaker: Any, keyring: Any) -> None:
    async with sessionmaker.begin() as session:
        await file_case(session, reporter_ref="1", place="开福区税务大厅", description="大厅无人值守。")  # indexed
        never, _ = await file_case(session, reporter_ref="2", place="岳麓区政务服务中心", description="窗口推诿。")
        older, _ = await file_case(session, reporter_ref="3", place="天心区医院", description="医生收红包。")
        await actions.add_follow_up(session, never, text="补充：下午又没人。")
        await actions.add_follow_up(session, never, text=None)  # a photo alone: no text
        await actions.reply_to_reporter(session, never, "已转交办理。", actor="staff:1")  # not the reporter's
        await session.execute(update(Case).where(Case.id == never.id).values(search_version=None))
        await session.execute(update(Case).where(Case.id == older.id).values(search_version=search.INDEX_VERSION - 1))
    async with sessionmaker() as session:
        assert await search.unindexed(session) == [
            (never.id, ["岳麓区政务服务中心", "窗口推诿。", "补充：下午又没人。"]),
            (older.id, ["天心区医院", "医生收红包。"])]
        assert [case_id for case_id, _ in await search.unindexed(session, limit=1)] == [never.id]
    async with sessionmaker.begin() as session:
        await search.reindex(session, [(never.id, ["下午", "没人"]),
                                       (never.id + 1000, ["下午"])])  # erased meanwhile: nothing to index
    async with sessionmaker() as session:
        assert [case_id for case_id, _ in await search.unindexed(session)] == [older.id]
        assert await session.scalar(select(Case.search_version).where(Case.id == never.id)) == search.INDEX_VERSION
        terms = (await session.execute(select(CaseTerm.term, CaseTerm.created_at)
                                       .where(CaseTerm.case_id == never.id))).all()
        assert sorted(terms) == sorted((keyring.search_hash(word), never.created_at) for word in ("下午", "没人"))
        assert await _found(session, ["窗口"]) == []  # the words it had before are replaced
        assert await _found(session, ["下午"]) == [never.id]
        assert await session.scalar(select(func.count()).select_from(CaseTerm).where(
            CaseTerm.case_id == never.id + 1000)) == 0


async def test_a_batch_reindexed_at_once_gives_each_case_its_own_terms_and_date(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        first, _ = await file_case(session, reporter_ref="a", now=FILED, description="窗口推诿。")
        second, _ = await file_case(session, reporter_ref="b", now=FILED + timedelta(days=3),
                                    description="医生收红包。")
        untouched, _ = await file_case(session, reporter_ref="c", now=FILED, description="学校乱收费。")
        await session.execute(update(Case).values(search_version=None))
        await search.reindex(session, [(first.id, ["窗口", "推诿"]), (second.id, ["红包", "窗口"])])
    async with sessionmaker() as session:
        assert [case_id for case_id, _ in await search.unindexed(session)] == [untouched.id]
        assert await _found(session, ["窗口"]) == [first.id, second.id]
        dates = dict((await session.execute(select(CaseTerm.case_id, CaseTerm.created_at).distinct().where(
            CaseTerm.case_id != untouched.id))).tuples().all())
        assert dates == {first.id: first.created_at, second.id: second.created_at}  # each case's own date
        assert await _found(session, ["红包"]) == [second.id]
        assert await _found(session, ["推诿", "窗口"]) == [first.id]
        assert await _found(session, ["医生"]) == []  # the factory's words were replaced by the batch's
