"""The residents' side of the models, written and read directly on SQLite and the PostgreSQL on 127.0.0.1: a
conversation is idle with an empty draft, one per resident and channel, found by the keyed pseudonym of its
address, with the address and the draft as ciphertext; a processed update is kept only as a keyed hash that a
lookup by what the channel sent still finds, once; a callback nonce is accepted once; a queued message is pending
with no attempts, its recipient deterministically encrypted so one resident's messages can be matched in SQL;
messages go with their conversation and outlive their case; consents allow one notice by default; the throttles'
records are stamped with the time they were written."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from storage.crypto import parse_key
from storage.models import (
    Attachment,
    CallbackNonce,
    Case,
    ClientEvent,
    ClientEventKind,
    Conversation,
    ConversationState,
    NoticeConsent,
    OutboxMessage,
    OutboxStatus,
    ProcessedUpdate,
    StatusGuess,
    utcnow,
)
from tests.conftest import TEST_PSEUDONYM_KEY, stored_value

CHAT = "tg-5550123456"
OTHER_CHAT = "tg-5550999999"
DESCRIPTION = "开福区某街道办事处主任长期在工作时间打麻将。"
PHONE = "13698765432"
OPENID_EVENT = "oPENID-of-a-resident:1732000000:subscribe:"


def keyed(message: str) -> str:
    return hmac.new(parse_key(TEST_PSEUDONYM_KEY), message.encode(), hashlib.sha256).hexdigest()


def a_case(code: str) -> Case:
    return Case(receipt_code_hash=code, channel="telegram", reporter_ref=CHAT, locale="zh", place="某处",
                occurred="今天", description=DESCRIPTION, queue="clean_hall")


async def test_a_new_conversation_is_idle_with_an_empty_draft_and_found_by_its_pseudonym(sessionmaker: Any) -> None:
    before = utcnow()
    async with sessionmaker.begin() as session:
        session.add(Conversation(channel="telegram", user_ref=CHAT))
    async with sessionmaker() as session:
        conversation = (await session.execute(select(Conversation))).scalar_one()
        found = (await session.execute(select(Conversation.id).where(
            Conversation.channel == "telegram", Conversation.user_key == keyed(f"telegram:{CHAT}")))).scalar_one()
    assert found == conversation.id and conversation.user_ref == CHAT
    assert (conversation.state, conversation.draft, conversation.context) == ("idle", {}, {})
    assert (conversation.locale, conversation.draft_updated_at) == (None, None)
    assert conversation.created_at >= before and conversation.updated_at.utcoffset() == timedelta(0)


async def test_a_residents_address_and_draft_are_ciphertext_at_rest(sessionmaker: Any) -> None:
    draft = {"description": DESCRIPTION, "phone": PHONE}
    async with sessionmaker.begin() as session:
        session.add(Conversation(channel="telegram", user_ref=CHAT, state="summary", draft=draft,
                                 context={"page": 2}))
    async with sessionmaker() as session:
        raw = (await session.execute(text("SELECT user_key, user_ref, draft FROM conversations"))).one()
        conversation = (await session.execute(select(Conversation))).scalar_one()
    assert raw.user_ref.startswith("g1.") and CHAT not in raw.user_ref and CHAT not in raw.user_key
    assert stored_value(raw.user_ref, "conversations.user_ref") == CHAT
    assert raw.draft.startswith("g1.") and PHONE not in raw.draft
    assert json.loads(stored_value(raw.draft, "conversations.draft") or "") == draft
    assert (conversation.draft, conversation.context) == (draft, {"page": 2})


async def test_a_resident_has_one_conversation_per_channel(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        session.add_all([Conversation(channel="telegram", user_ref=CHAT), Conversation(channel="web", user_ref=CHAT)])
    with pytest.raises(IntegrityError):
        async with sessionmaker.begin() as session:
            session.add(Conversation(channel="telegram", user_ref=CHAT))
    async with sessionmaker() as session:
        channels = list((await session.execute(select(Conversation.channel).order_by(Conversation.id))).scalars())
    assert channels == ["telegram", "web"]


async def test_a_processed_update_is_kept_as_a_keyed_hash_that_a_lookup_by_the_key_finds_once(
        sessionmaker: Any) -> None:
    already_hashed = "ab" * 32
    async with sessionmaker.begin() as session:
        session.add_all([ProcessedUpdate(channel="wechat", update_key=OPENID_EVENT),
                         ProcessedUpdate(channel="telegram", update_key=OPENID_EVENT),
                         ProcessedUpdate(channel="telegram", update_key=already_hashed)])
    with pytest.raises(IntegrityError):  # redelivered
        async with sessionmaker.begin() as session:
            session.add(ProcessedUpdate(channel="wechat", update_key=OPENID_EVENT))
    async with sessionmaker() as session:
        raw = list((await session.execute(text("SELECT update_key FROM processed_updates"))).scalars())
        found = (await session.execute(select(ProcessedUpdate).where(
            ProcessedUpdate.channel == "wechat", ProcessedUpdate.update_key == OPENID_EVENT))).scalar_one()
    assert sorted(raw) == sorted([keyed(f"update:{OPENID_EVENT}")] * 2 + [already_hashed])
    assert all("oPENID" not in value for value in raw)
    assert found.update_key == keyed(f"update:{OPENID_EVENT}")  # reading gives the hash, never the key
    assert found.processed_at.utcoffset() == timedelta(0)


async def test_a_callback_nonce_is_accepted_once_per_channel(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        session.add_all([CallbackNonce(channel="wechat", nonce_key="1732000000:n1"),
                         CallbackNonce(channel="wecom", nonce_key="1732000000:n1")])
    with pytest.raises(IntegrityError):  # a replay, seen by another process
        async with sessionmaker.begin() as session:
            session.add(CallbackNonce(channel="wechat", nonce_key="1732000000:n1", body_hash="0" * 64))
    async with sessionmaker() as session:
        nonce = (await session.execute(select(CallbackNonce).where(CallbackNonce.channel == "wechat"))).scalar_one()
    assert nonce.body_hash is None and nonce.seen_at.utcoffset() == timedelta(0)


async def test_a_queued_message_is_pending_and_one_residents_messages_are_matched_by_recipient_in_sql(
        sessionmaker: Any) -> None:
    payload = {"text": f"请核对：{PHONE}"}
    async with sessionmaker.begin() as session:
        session.add_all([OutboxMessage(channel="telegram", recipient=CHAT, payload=payload),
                         OutboxMessage(channel="telegram", recipient=CHAT, payload=payload),
                         OutboxMessage(channel="telegram", recipient=OTHER_CHAT, payload=payload,
                                       status=OutboxStatus.WAITING, kind="answer")])
    async with sessionmaker() as session:
        first = (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().first()
        raw = (await session.execute(text("SELECT recipient, payload, status FROM outbox ORDER BY id"))).all()
        to_chat = list((await session.execute(select(OutboxMessage.id).where(
            OutboxMessage.recipient == CHAT))).scalars())
        waiting = (await session.execute(select(OutboxMessage.recipient).where(
            OutboxMessage.status == OutboxStatus.WAITING))).scalar_one()
    assert first is not None
    assert (first.kind, first.status, first.attempts, first.last_error, first.sent_at, first.case_id) == (
        "reply", OutboxStatus.PENDING, 0, None, None, None)
    assert first.next_attempt_at.utcoffset() == timedelta(0) and first.payload == payload
    assert raw[0].recipient == raw[1].recipient != raw[2].recipient and raw[0].recipient.startswith("s1.")
    assert stored_value(raw[2].recipient, "outbox.recipient") == OTHER_CHAT
    assert raw[0].payload != raw[1].payload and raw[0].payload.startswith("g1.") and PHONE not in raw[0].payload
    assert [row.status for row in raw] == ["pending", "pending", "waiting"]
    assert len(to_chat) == 2 and waiting == OTHER_CHAT


async def test_messages_go_with_their_conversation_and_outlive_their_case_and_its_consents_do_not(
        sessionmaker: Any) -> None:
    with pytest.raises(IntegrityError):
        async with sessionmaker.begin() as session:
            session.add(OutboxMessage(channel="telegram", recipient=CHAT, payload={}, conversation_id=999_999))
    async with sessionmaker.begin() as session:
        conversation, case = Conversation(channel="telegram", user_ref=CHAT), a_case("h1")
        session.add_all([conversation, case])
        await session.flush()
        session.add_all([
            OutboxMessage(channel="telegram", recipient=CHAT, payload={"text": "回复"},
                          conversation_id=conversation.id),
            OutboxMessage(channel="telegram", recipient=CHAT, payload={"notice": "answer"}, case_id=case.id,
                          kind="answer"),
            Attachment(conversation_id=conversation.id, stored_name="draft.bin", media_type="image/jpeg",
                       size_bytes=1, sha256="0" * 64),
            NoticeConsent(channel="wechat", user_key="k" * 64, kind="once", template_id="tpl", case_id=case.id,
                          scene=1000),
        ])
        conversation_id, case_id = conversation.id, case.id
    async with sessionmaker.begin() as session:
        await session.execute(delete(Conversation).where(Conversation.id == conversation_id))
        await session.execute(delete(Case).where(Case.id == case_id))
    async with sessionmaker() as session:
        left = (await session.execute(select(OutboxMessage))).scalar_one()
        draft_file = (await session.execute(select(Attachment))).scalar_one()
        consents = (await session.execute(select(NoticeConsent))).all()
    assert (left.kind, left.case_id, left.payload) == ("answer", None, {"notice": "answer"})
    assert draft_file.conversation_id is None
    assert consents == []


async def test_a_consent_allows_one_notice_until_withdrawn(sessionmaker: Any) -> None:
    before = utcnow()
    async with sessionmaker.begin() as session:
        session.add(NoticeConsent(channel="wechat", user_key="k" * 64, kind="subscribe", template_id="tpl"))
    async with sessionmaker() as session:
        consent = (await session.execute(select(NoticeConsent))).scalar_one()
    assert (consent.remaining, consent.long_term, consent.withdrawn_at, consent.case_id) == (1, False, None, None)
    assert consent.granted_at >= before and consent.granted_at.utcoffset() == timedelta(0)


async def test_the_throttles_records_are_stamped_with_the_time_they_were_written(sessionmaker: Any) -> None:
    before = utcnow()
    async with sessionmaker.begin() as session:
        session.add_all([ClientEvent(kind=ClientEventKind.WRONG_CODE, client_key="c" * 64),
                         StatusGuess(channel="telegram", user_key=keyed(f"telegram:{CHAT}"))])
    after = utcnow()
    async with sessionmaker() as session:
        event = (await session.execute(select(ClientEvent))).scalar_one()
        guess = (await session.execute(select(StatusGuess))).scalar_one()
        raw_kind = (await session.execute(text("SELECT kind FROM client_events"))).scalar_one()
    assert raw_kind == "wrong_code" and event.kind == ClientEventKind.WRONG_CODE
    assert before <= event.created_at <= after and before <= guess.created_at <= after


def test_a_conversation_state_waits_for_no_notices_unless_told_and_takes_no_other_field() -> None:
    state = ConversationState(id=1, channel="telegram", user_key="k" * 64, user_ref=CHAT, locale="zh", state="idle",
                              draft={}, context={}, draft_updated_at=None)
    assert state.notices_waiting is False
    state.state = "summary"
    with pytest.raises(AttributeError):
        state.notice_waiting = True  # type: ignore[attr-defined]  # a misspelt field is an error, not a new one
    assert state.state == "summary" and state.notices_waiting is False
