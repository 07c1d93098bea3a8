"""Housekeeping actions against SQLite and the PostgreSQL on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from storage import actions, evidence_rows, housekeeping, loop, notices, outbox, search, staff_actions
from storage.crypto import session_keyring
from storage.models import (
    Attachment,
    Case,
    CaseStatus,
    Conversation,
    InternalNote,
    NoticeConsent,
    OutboxMessage,
    StaffRole,
    TraceEvent,
    TraceKind,
    utcnow,
)
from tests.factories import create_staff, file_case


async def test_a_scheduled_job_runs_once_per_period(sessionmaker: Any) -> None:
    period = utcnow() - timedelta(hours=1)
    results = []
    for _ in range(3):
        async with sessionmaker.begin() as session:
            results.append(await housekeeping.claim_scheduled_run(session, "daily_digest", period))
    async with sessionmaker.begin() as session:
        next_period = await housekeeping.claim_scheduled_run(session, "daily_digest", utcnow() + timedelta(seconds=1))
    assert results == [True, False, False] and next_period is True


async def test_sqlite_gets_planner_statistics_from_housekeeping_and_postgresql_keeps_its_own(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for reporter in range(3):
            await file_case(session, reporter_ref=str(reporter))
        sqlite = session.get_bind().dialect.name == "sqlite"
        first = await housekeeping.optimize(session)
    async with sessionmaker.begin() as session:
        again = await housekeeping.optimize(session)
        indexes = set((await session.execute(text(
            "SELECT idx FROM sqlite_stat1 WHERE tbl = 'cases'"))).scalars()) if sqlite else set()
    assert (first, again) == (sqlite, sqlite)
    if sqlite:
        assert {"ix_cases_queue_created", "ix_cases_accepted_at"} <= indexes


async def test_one_process_holds_a_lease_until_it_stops_renewing_it(sessionmaker: Any) -> None:
    now = utcnow()
    stale = now - timedelta(seconds=30)
    async with sessionmaker.begin() as session:
        first = await housekeeping.hold_lease(session, "gauges", held_at=None, expired_before=stale)
        other = await housekeeping.hold_lease(session, "gauges", held_at=None, expired_before=stale)
        renewed = await housekeeping.hold_lease(session, "gauges", held_at=first,
                                                expired_before=now - timedelta(seconds=30))
        taken_over = await housekeeping.hold_lease(session, "gauges", held_at=None,
                                                   expired_before=utcnow() + timedelta(seconds=1))
        lost = await housekeeping.hold_lease(session, "gauges", held_at=renewed,
                                             expired_before=now - timedelta(seconds=30))
    assert first is not None and renewed is not None and taken_over is not None
    assert (other, lost) == (None, None)


async def _consents(session: Any) -> list[tuple[str, int]]:
    """Who may still be notified: (the resident's channel address, the case or 0) of every consent row."""
    keyring = session_keyring(session)
    names = {keyring.pseudonym("wechat", openid): openid for openid in ("o-idle", "o-reporter", "o-talking")}
    rows = (await session.execute(select(NoticeConsent.user_key, NoticeConsent.case_id))).all()
    return sorted((names.get(user_key, user_key), case_id or 0) for user_key, case_id in rows)


async def test_an_erased_conversation_takes_its_residents_consents_to_notices_along(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for openid in ("o-idle", "o-reporter"):
            await actions.load_conversation(session, "wechat", openid)
            await notices.record_consent(session, channel="wechat", user_ref=openid, kind=notices.SUBSCRIBE,
                                         template_id="status-template", long_term=True)
        case, _ = await file_case(session, channel="wechat", reporter_ref="o-reporter")  # still open
        await notices.record_consent(session, channel="wechat", user_ref="o-reporter", kind=notices.ONCE,
                                     template_id="once-template", case_id=case.id, scene=1)
    async with sessionmaker.begin() as session:
        assert await housekeeping.erase_idle_conversations(session, utcnow() + timedelta(seconds=1)) == 2
    async with sessionmaker() as session:
        # the idle resident can be reached no more: their pseudonym is gone; the reporter's case may still
        # need a notice, so their consents stay until the case's contact is erased
        assert await _consents(session) == [("o-reporter", 0), ("o-reporter", case.id)]


async def test_erasing_an_old_cases_contact_erases_the_consents_to_notices_about_it(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        gone, _ = await file_case(session, channel="wechat", reporter_ref="o-reporter")
        talking, _ = await file_case(session, channel="wechat", reporter_ref="o-talking")
        await actions.load_conversation(session, "wechat", "o-talking")  # this resident still writes
        for openid, case in (("o-reporter", gone), ("o-talking", talking)):
            await notices.record_consent(session, channel="wechat", user_ref=openid, kind=notices.SUBSCRIBE,
                                         template_id="status-template", long_term=True)
            await notices.record_consent(session, channel="wechat", user_ref=openid, kind=notices.ONCE,
                                         template_id="once-template", case_id=case.id, scene=1)
        await session.execute(update(Case).values(status=CaseStatus.CLOSED, closed_at=utcnow() - timedelta(days=2)))
    async with sessionmaker.begin() as session:
        assert await housekeeping.erase_old_contacts(session, utcnow() - timedelta(days=1)) == 2
    async with sessionmaker() as session:
        # the closed cases' consents go; the resident who still has a conversation keeps their subscription
        assert await _consents(session) == [("o-talking", 0)]


async def test_erasing_an_old_cases_contact_leaves_nothing_that_ties_the_reporter_to_it(sessionmaker: Any) -> None:
    """After the retention time nothing says who filed the case: not the keyed hash of the address the evidence
    came from, nor the reporter's conversation (their chat id) still pointing at the case."""
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", "4242")
        evidence = await evidence_rows.add_draft_attachment(session, conversation, stored_name="2026/12/x.jpg",
                                                      original_name=None, media_type="image/jpeg", size_bytes=10,
                                                      sha256="0" * 64, client_key="f" * 40)
        case, _ = await file_case(session, reporter_ref="4242", attachment_ids=[evidence.id], anonymous=False,
                                  reporter_name="王秀英", reporter_phone="13812345678", client_key="f" * 40)
        await session.execute(update(Case).values(status=CaseStatus.CLOSED, closed_at=utcnow() - timedelta(days=2)))
        case.status = CaseStatus.CLOSED
        await loop.offer_rating(session, case, labels=[str(n) for n in range(7)])  # the chat waits for a rating
    async with sessionmaker.begin() as session:
        assert await housekeeping.erase_old_contacts(session, utcnow() - timedelta(days=1)) == 1
    async with sessionmaker() as session:
        assert (await session.execute(select(Attachment.case_id, Attachment.client_key))).all() == [(case.id, None)]
        chat = (await session.execute(select(Conversation))).scalar_one()
        assert (chat.state, chat.context.get("case_id"), chat.context.get("case_until")) == ("idle", None, None)


async def test_the_reporters_own_name_and_phone_leave_the_cases_texts_and_its_search_index(sessionmaker: Any) -> None:
    """A resident who reported under their name often writes it, and their phone, into the report and its
    follow-ups, and staff into their notes. The erasure dropped the contact fields and left these: the case still
    said who filed it, and a search for the phone number still found it."""
    phone_said = ["请打１３８ １２３４ ５６７８找我", "电话+86 138-1234-5678"]
    async with sessionmaker.begin() as session:
        staff = await create_staff(session, "li", StaffRole.REVIEWER, ["clean_hall"])
        cases = []
        for unnamed in (False, True):  # an anonymous case's number is not known to be the reporter's own
            case, _ = await file_case(session, anonymous=unnamed, reporter_name=None if unnamed else "王秀英",
                                      reporter_phone=None if unnamed else "13812345678",
                                      description=f"窗口推诿拖延，我王秀英跑了三趟。{phone_said[0]}",
                                      terms=[["推诿", 0.9], ["13812345678", 0.4], ["王秀英", 0.3]])
            await actions.add_follow_up(session, case, text=f"补充：{phone_said[1]}，王秀英",
                                        search_terms=["13812345678", "王秀英"])
            await staff_actions.add_note(session, case, "已电话联系王秀英（13812345678），她说还没办好", actor=staff)
            cases.append(case)
        await session.execute(update(Case).values(status=CaseStatus.CLOSED, closed_at=utcnow() - timedelta(days=2)))
    async with sessionmaker.begin() as session:
        assert await housekeeping.erase_old_contacts(session, utcnow() - timedelta(days=1)) == 2

    real_name, anonymous = cases
    async with sessionmaker() as session:
        erased = await session.get(Case, real_name.id)
        assert erased is not None
        assert erased.description == "窗口推诿拖延，我〔已删除〕跑了三趟。请打〔已删除〕找我"
        assert erased.label_terms == [["推诿", 0.9]]
        bodies = (await session.execute(select(TraceEvent.body).where(
            TraceEvent.case_id == real_name.id, TraceEvent.kind == TraceKind.FOLLOW_UP))).scalars().all()
        assert bodies == ["补充：电话〔已删除〕，〔已删除〕"]
        notes = (await session.execute(select(InternalNote.body).where(
            InternalNote.case_id == real_name.id))).scalars().all()
        assert notes == ["已电话联系〔已删除〕（〔已删除〕），她说还没办好"]
        # the index forgets the case's words until housekeeping indexes it again, from the texts as they are now
        for words in (["13812345678"], ["王秀英"], ["窗口"]):
            assert list((await session.execute(search.cases_with(await search.rarest_first(session, words))))
                        .scalars()) == [anonymous.id]
        scrubbed = ["窗口推诿拖延，我〔已删除〕跑了三趟。请打〔已删除〕找我", "补充：电话〔已删除〕，〔已删除〕"]
        assert [(case_id, texts[1:]) for case_id, texts in await search.unindexed(session)] == [
            (real_name.id, scrubbed)]
        kept = await session.get(Case, anonymous.id)
        assert kept is not None and kept.description == f"窗口推诿拖延，我王秀英跑了三趟。{phone_said[0]}"


async def test_a_conversation_busy_during_the_erasure_forgets_the_case_in_a_later_round(database: Any) -> None:
    """The erasure does not wait for a resident's step that holds their conversation (PostgreSQL's row lock): it
    skips it. The conversation kept pointing at the erased case, its chat id tied to it, and no later round came
    back to it, since the case was no longer among those to erase."""
    if database.sessionmaker.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no row is ever locked while another transaction writes")
    sessionmaker = database.sessionmaker
    async with sessionmaker.begin() as session:
        await actions.load_conversation(session, "telegram", "4242")
        case, _ = await file_case(session, reporter_ref="4242", anonymous=False, reporter_name="王秀英",
                                  reporter_phone="13812345678")
        await session.execute(update(Case).values(status=CaseStatus.CLOSED, closed_at=utcnow() - timedelta(days=2)))
        case.status = CaseStatus.CLOSED
        await loop.offer_rating(session, case, labels=[str(n) for n in range(7)])  # the chat waits for a rating
    async with sessionmaker.begin() as busy:  # the resident's step, holding the conversation meanwhile
        await busy.execute(select(Conversation).with_for_update())
        async with sessionmaker.begin() as session:
            assert await housekeeping.erase_old_contacts(session, utcnow() - timedelta(days=1)) == 1
    async with sessionmaker.begin() as session:  # the next housekeeping round
        assert await housekeeping.erase_old_contacts(session, utcnow() - timedelta(days=1)) == 0
        assert await housekeeping.forget_erased_cases(session) == 1
    async with sessionmaker() as session:
        chat = (await session.execute(select(Conversation))).scalar_one()
        assert (chat.state, chat.context.get("case_id"), chat.context.get("case_until")) == ("idle", None, None)
    async with sessionmaker.begin() as session:  # nothing left: the round after finds nothing to do
        assert await housekeeping.forget_erased_cases(session) == 0


async def test_an_answer_a_web_reporter_never_came_back_for_is_not_kept_for_them_past_the_erasure(
        sessionmaker: Any) -> None:
    """A web-chat message waits (pending) until the browser asks for it; one whose reporter never came back kept
    the browser's address and the answer tied to the case after the erasure, and was still handed to that browser
    when it came back years later."""
    async with sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="li", display_name="李", role=StaffRole.ADMIN,
                                                 password_hash="x")
        case, _ = await file_case(session, channel="web", reporter_ref="browser-7")
        await staff_actions.answer_reporter(session, case, "经核查，情况属实，已处理。", actor=staff)
        await session.execute(update(Case).values(status=CaseStatus.CLOSED, closed_at=utcnow() - timedelta(days=2)))
    async with sessionmaker.begin() as session:
        assert await housekeeping.erase_old_contacts(session, utcnow() - timedelta(days=1)) == 1
    async with sessionmaker.begin() as session:
        assert await outbox.take_web_messages(session, "browser-7") == []
    async with sessionmaker() as session:
        rows = (await session.execute(select(OutboxMessage.recipient, OutboxMessage.status)
                                      .where(OutboxMessage.case_id == case.id))).all()
        assert [tuple(row) for row in rows] == [(actions.ERASED, "failed")]
