"""Reporter data at rest: encrypted, tamper-evident, rotatable; user ids only as keyed pseudonyms."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from handlers.city import load_city_config
from handlers.context import DialogContext
from handlers.routing import RouteDecision
from handlers.routing import route as decide
from handlers.texts import Texts
from storage import actions, housekeeping, outbox
from storage.backup import create_backup, restore_backup
from storage.crypto import DataKey, DecryptionError, KeyRing, generate_key, parse_key
from storage.db import Database, create_engine, create_sessionmaker
from storage.keys import PLAINTEXT, key_status, rotate
from storage.migrate import upgrade
from storage.models import Base, Case, CaseStatus, Conversation, OutboxMessage, TraceEvent
from tests.conftest import TEST_PSEUDONYM_KEY, create_postgres_database, drop_postgres_database, make_test_keyring
from tests.factories import file_case
from tests.handlers.conftest import Clock, DialogHarness

CHAT_ID = "tg-5550123456"
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员王某某向办事群众索要好处费二百元，不给就拖着不办。"
NAME = "欧阳明远"
PHONE = "13912345678"
FOLLOW_UP = "补充：涉事工作人员工号为0327，当天下午三点左右。"
DRAFT_TEXT = "开福区某街道办事处主任长期在工作时间打麻将，群众多次反映无果。"
DRAFT_NAME = "司马光华"
DRAFT_PHONE = "13698765432"
SECRETS = (DESCRIPTION, NAME, PHONE, FOLLOW_UP, CHAT_ID, DRAFT_TEXT, DRAFT_NAME, DRAFT_PHONE)


def ring(current: str, *older: str) -> KeyRing:
    return KeyRing(DataKey(parse_key(current)), [DataKey(parse_key(k)) for k in older],
                   pseudonym_key=parse_key(TEST_PSEUDONYM_KEY))


async def raw_dump(url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every row of every table as the database holds it: plain SQL, no ORM, no column types."""
    engine = create_engine(url, make_test_keyring())
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        async with engine.connect() as connection:
            existing = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
            for table in Base.metadata.sorted_tables:
                if table.name not in existing:
                    continue
                result = await connection.execute(text(f"SELECT * FROM {table.name}"))
                rows += [(table.name, dict(row._mapping)) for row in result]
    finally:
        await engine.dispose()
    return rows


def leaks(rows: list[tuple[str, dict[str, Any]]], secrets: tuple[str, ...]) -> list[str]:
    found = []
    for table_name, row in rows:
        for name, value in row.items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            found += [f"{table_name}.{name}: {secret}" for secret in secrets if secret in shown]
    return found


def make_harness(sessionmaker: Any, tmp_path: Path) -> DialogHarness:
    city = load_city_config(None)
    clock = Clock()
    clock.now = datetime.now(UTC).replace(microsecond=0)

    async def route(text_: str, district: str | None) -> RouteDecision:
        return decide(city, None, district, clock())

    context = DialogContext(city=city, texts=Texts(), secret_key=b"s" * 32, evidence_dir=tmp_path / "evidence",
                            route=route, clock=clock)
    return DialogHarness(sessionmaker, context, clock)


async def file_a_report_through_the_dialog(harness: DialogHarness) -> str:
    resident = harness.resident(CHAT_ID)
    await resident.command("report")
    await resident.press("district:yuelu")
    await resident.say("岳麓区政务服务中心")
    await resident.press("when:today")
    await resident.say(DESCRIPTION)
    await resident.press("evidence:done")
    await resident.press("identity:real")
    await resident.say(NAME)
    await resident.say(PHONE)
    await resident.press("summary:submit")
    match = re.search(r"\d{4} \d{4} \d{4} \d{4}", resident.text())
    assert match, resident.text()
    code = match.group(0)
    await resident.command("status", code)
    await resident.press("case:follow_up")
    await resident.say(FOLLOW_UP)
    await resident.press("follow_up:done")
    await resident.command("status", "0000000000000000")  # a wrong code, remembered by pseudonym
    drafting = harness.resident("tg-5550999999")
    await drafting.command("report")
    await drafting.press("district:kaifu")
    await drafting.say("开福区某街道")
    await drafting.press("when:today")
    await drafting.say(DRAFT_TEXT)
    await drafting.press("evidence:done")
    await drafting.press("identity:real")
    await drafting.say(DRAFT_NAME)
    await drafting.say(DRAFT_PHONE)  # on the summary now: the draft holds everything, not submitted
    return code


async def test_a_full_report_leaves_no_plaintext_in_the_database(database_url: str, sessionmaker: Any,
                                                                 tmp_path: Path) -> None:
    harness = make_harness(sessionmaker, tmp_path)
    await file_a_report_through_the_dialog(harness)
    async with sessionmaker.begin() as session:
        case = (await session.execute(select(Case))).scalar_one()
        case = await actions.get_case(session, case.id)
        assert case is not None
        await actions.reply_to_reporter(session, case, "已受理，正在调查。", actor="staff:1")
        await actions.change_status(session, case, CaseStatus.IN_HANDLING, actor="staff:1")

    rows = await raw_dump(database_url)
    assert leaks(rows, SECRETS) == []
    cases = [row for table_name, row in rows if table_name == "cases"]
    assert cases[0]["description"].startswith("g1.") and cases[0]["reporter_ref"].startswith("g1.")
    assert cases[0]["reporter_key"] == hmac.new(parse_key(TEST_PSEUDONYM_KEY), f"test:{CHAT_ID}".encode(),
                                                hashlib.sha256).hexdigest()
    outbox = [row for table_name, row in rows if table_name == "outbox"]
    assert len(outbox) == 2 and all(row["recipient"].startswith("s1.") for row in outbox)
    assert outbox[0]["recipient"] == outbox[1]["recipient"]  # deterministic: delivery orders by recipient

    # what the service reads is the plaintext
    async with sessionmaker() as session:
        case = (await session.execute(select(Case))).scalar_one()
        assert (case.description, case.reporter_name, case.reporter_phone, case.reporter_ref) == (
            DESCRIPTION, NAME, PHONE, CHAT_ID)
        bodies = [e.body for e in (await session.execute(select(TraceEvent).order_by(TraceEvent.id))).scalars()]
        assert FOLLOW_UP in bodies
        messages = list((await session.execute(select(OutboxMessage))).scalars())
        assert {m.recipient for m in messages} == {CHAT_ID}
        assert {m.payload["notice"] for m in messages} == {"answer", "status_changed"}
        drafts = {c.user_ref: c.draft for c in (await session.execute(select(Conversation))).scalars()}
        assert drafts["tg-5550999999"]["description"] == DRAFT_TEXT
        assert (drafts["tg-5550999999"]["name"], drafts["tg-5550999999"]["phone"]) == (DRAFT_NAME, DRAFT_PHONE)


async def test_pseudonym_lookups_find_the_conversation_and_the_limits(sessionmaker: Any) -> None:
    since = datetime.now(UTC) - timedelta(days=1)
    async with sessionmaker.begin() as session:
        first = await actions.load_conversation(session, "telegram", "4242")
        first.draft = {"description": DESCRIPTION}
        await actions.finish_step(session, first)
        await actions.record_wrong_code(session, "telegram", "4242")
        await file_case(
            session, secret_key=b"k" * 32, case_number_prefix="QL", year=2026, channel="telegram",
            reporter_ref="4242", locale="zh", district=None, place="某处", occurred="今天", description=DESCRIPTION,
            anonymous=True, reporter_name=None, reporter_phone=None, attachment_ids=[], queue="triage", label=None)
    async with sessionmaker.begin() as session:
        again = await actions.load_conversation(session, "telegram", "4242")
        other_channel = await actions.load_conversation(session, "wechat", "4242")
        assert again.id == first.id and again.draft == {"description": DESCRIPTION} and again.user_ref == "4242"
        assert other_channel.id != first.id
        assert (await actions.recent_wrong_codes(session, "telegram", "4242", since))[0] == 1
        assert (await actions.recent_wrong_codes(session, "telegram", "4243", since))[0] == 0
        assert await actions.count_recent_reports(session, "telegram", "4242", since) == 1
        assert await actions.count_recent_reports(session, "wechat", "4242", since) == 0
        raw = (await session.execute(text("SELECT user_key, user_ref FROM conversations ORDER BY id"))).all()
    ring = make_test_keyring()
    assert raw[0][0] == ring.pseudonym("telegram", "4242") != ring.pseudonym("wechat", "4242") == raw[1][0]
    assert "4242" not in raw[0][1]


async def test_processed_update_keys_are_stored_hashed(database_url: str, sessionmaker: Any) -> None:
    wechat_event_key = "oPENID-of-a-resident:1732000000:subscribe:"
    async with sessionmaker.begin() as session:
        assert await actions.claim_update(session, "wechat", wechat_event_key)
    async with sessionmaker.begin() as session:
        assert not await actions.claim_update(session, "wechat", wechat_event_key)
        assert await actions.claim_update(session, "wechat", "another")
    assert leaks(await raw_dump(database_url), ("oPENID",)) == []


async def test_tampered_or_moved_ciphertext_is_rejected(sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        await file_case(
            session, secret_key=b"k" * 32, case_number_prefix="QL", year=2026, channel="telegram",
            reporter_ref="4242", locale="zh", district=None, place="某处", occurred="今天", description=DESCRIPTION,
            anonymous=False, reporter_name=NAME, reporter_phone=PHONE, attachment_ids=[], queue="triage", label=None)
    async with sessionmaker.begin() as session:
        stored = (await session.execute(text("SELECT description, reporter_name FROM cases"))).one()
        body = stored.description
        flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
        await session.execute(text("UPDATE cases SET description = :value"), {"value": flipped})
    async with sessionmaker() as session:
        with pytest.raises(DecryptionError, match=r"cases\.description .*altered"):
            (await session.execute(select(Case))).scalars().all()
    async with sessionmaker.begin() as session:  # the name's valid ciphertext moved into the description
        await session.execute(text("UPDATE cases SET description = :value"), {"value": stored.reporter_name})
    async with sessionmaker() as session:
        with pytest.raises(DecryptionError):
            (await session.execute(select(Case))).scalars().all()
    async with sessionmaker.begin() as session:  # another key id in the header
        await session.execute(text("UPDATE cases SET description = :value"),
                              {"value": "g1.00000000." + body[12:]})
    async with sessionmaker() as session:
        with pytest.raises(DecryptionError, match="not in the key ring"):
            (await session.execute(select(Case))).scalars().all()


def test_ciphertexts_differ_each_time_except_where_deterministic() -> None:
    keys = make_test_keyring()
    first = keys.encrypt(DESCRIPTION, purpose="cases.description")
    assert first != keys.encrypt(DESCRIPTION, purpose="cases.description")
    assert keys.decrypt(first, purpose="cases.description") == DESCRIPTION
    same = keys.encrypt(CHAT_ID, purpose="outbox.recipient", deterministic=True)
    assert same == keys.encrypt(CHAT_ID, purpose="outbox.recipient", deterministic=True)
    assert keys.decrypt(same, purpose="outbox.recipient") == CHAT_ID
    with pytest.raises(DecryptionError):
        keys.decrypt(same, purpose="conversations.user_ref")
    with pytest.raises(DecryptionError):
        keys.decrypt(first[:-4], purpose="cases.description")
    with pytest.raises(DecryptionError, match="not encrypted"):
        keys.decrypt(DESCRIPTION, purpose="cases.description")


async def _seed(sessionmaker: Any, count: int) -> None:
    for n in range(count):
        async with sessionmaker.begin() as session:
            conversation = await actions.load_conversation(session, "telegram", f"chat-{n}")
            conversation.draft = {"description": f"{DRAFT_TEXT} #{n}"}
            await actions.finish_step(session, conversation)
            case, _ = await file_case(
                session, secret_key=b"k" * 32, case_number_prefix="QL", year=2026, channel="telegram",
                reporter_ref=f"chat-{n}", locale="zh", district=None, place="某处", occurred="今天",
                description=f"{DESCRIPTION} #{n}", anonymous=False, reporter_name=NAME, reporter_phone=PHONE,
                attachment_ids=[], queue="triage", label=None)
            await actions.reply_to_reporter(session, case, f"答复 #{n}", actor="staff:1")


async def _read_everything(sessionmaker: Any) -> list[Any]:
    async with sessionmaker() as session:
        cases = [(c.description, c.reporter_name, c.reporter_phone, c.reporter_ref)
                 for c in (await session.execute(select(Case).order_by(Case.id))).scalars()]
        drafts = [c.draft["description"] for c in
                  (await session.execute(select(Conversation).order_by(Conversation.id))).scalars()]
        messages = [(m.recipient, m.payload["answer"]) for m in
                    (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()]
        bodies = [e.body for e in (await session.execute(select(TraceEvent).order_by(TraceEvent.id))).scalars()]
    return [cases, drafts, messages, bodies]


async def test_rotation_moves_every_value_to_the_new_key_and_the_old_key_can_go(
        database_url: str, sessionmaker: Any) -> None:
    old, new = generate_key(), generate_key()
    old_ring, new_ring = ring(old), ring(new, old)
    old_database = Database.connect(database_url, old_ring)
    await _seed(old_database.sessionmaker, 5)
    before = await _read_everything(old_database.sessionmaker)
    await old_database.dispose()
    engine = create_engine(database_url, new_ring)
    try:
        status = await key_status(engine)
        assert status["cases.description"] == {old_ring.current.key_id: 5}
        assert status["outbox.recipient"] == {old_ring.current.key_id: 5}
        # the service restarted with the new key as current, then the operator rotates; the first
        # attempt is interrupted after one batch and simply run again
        with pytest.raises(RuntimeError, match="interrupted"):
            await rotate(engine, new_ring, new_ring.current, batch_size=2,
                         on_batch=lambda table, done: (_ for _ in ()).throw(RuntimeError("interrupted")))
        partial = await key_status(engine)
        assert sum(partial["conversations.user_ref"].values()) == 5
        assert partial["conversations.user_ref"].get(new_ring.current.key_id) == 2
        changed = await rotate(engine, new_ring, new_ring.current, batch_size=2)
        # every table with encrypted columns is visited; 10 trace events have no text
        assert {table: rows for table, rows in changed.items() if rows} == {
            "conversations": 3, "cases": 5, "trace_events": 5, "outbox": 5}
        after = await key_status(engine)
        assert all(set(counts) <= {new_ring.current.key_id} for counts in after.values()), after  # only the new key
        again = await rotate(engine, new_ring, new_ring.current)
        assert set(again) == set(changed) and set(again.values()) == {0}
    finally:
        await engine.dispose()
    new_database = Database.connect(database_url, ring(new))  # the old key removed from the settings
    try:
        assert await _read_everything(new_database.sessionmaker) == before
        async with new_database.sessionmaker.begin() as session:  # deterministic lookups work under the new key
            assert len(await outbox.take_web_messages(session, "chat-1")) == 0
            rows = (await session.execute(select(OutboxMessage).where(OutboxMessage.recipient == "chat-1"))).all()
            assert len(rows) == 1
    finally:
        await new_database.dispose()


async def test_rotation_refuses_values_under_a_key_it_does_not_have(database_url: str, sessionmaker: Any) -> None:
    lost, current = generate_key(), generate_key()
    lost_database = Database.connect(database_url, ring(lost))
    await _seed(lost_database.sessionmaker, 1)
    await lost_database.dispose()
    engine = create_engine(database_url, ring(current))
    try:
        with pytest.raises(DecryptionError, match="not in the key ring"):
            await rotate(engine, ring(current), ring(current).current)
    finally:
        await engine.dispose()


async def test_rotation_refuses_a_tampered_value_instead_of_reencrypting_it(database_url: str,
                                                                            sessionmaker: Any) -> None:
    await _seed(sessionmaker, 1)
    async with sessionmaker.begin() as session:
        await session.execute(text("UPDATE cases SET reporter_phone = :value"), {"value": "g1.0000" + PHONE})
    engine = create_engine(database_url, make_test_keyring())
    try:
        with pytest.raises(DecryptionError, match=r"cases\.reporter_phone"):
            await rotate(engine, make_test_keyring(), DataKey(parse_key(generate_key())))
    finally:
        await engine.dispose()


# --- migration of a deployed database ------------------------------------------------------------


LEGACY_ROWS = [
    ("INSERT INTO conversations (id, channel, user_ref, locale, state, draft, context, draft_updated_at, "
     "created_at, updated_at) VALUES (1, 'telegram', :chat, 'zh', 'summary', :draft, '{}', :now, :now, :now)"),
    ("INSERT INTO conversations (id, channel, user_ref, locale, state, draft, context, created_at, updated_at) "
     "VALUES (2, 'telegram', 'erased-resident', 'zh', 'idle', '{}', '{}', :now, :now)"),
    ("INSERT INTO cases (id, case_number, receipt_code_hash, channel, reporter_ref, locale, place, occurred, "
     "description, anonymous, reporter_name, reporter_phone, status, queue, created_at, updated_at) "
     "VALUES (1, 'QL-2026-000001', 'h1', 'telegram', :chat, 'zh', '某处', '今天', :description, :false, :name, "
     ":phone, 'routed', 'triage', :now, :now)"),
    ("INSERT INTO cases (id, case_number, receipt_code_hash, channel, reporter_ref, locale, place, occurred, "
     "description, anonymous, status, queue, created_at, updated_at, closed_at) "
     "VALUES (2, 'QL-2025-000002', 'h2', 'telegram', 'erased', 'zh', '某处', '去年', '旧案的举报内容，已办结多年。', "
     ":true, 'closed', 'triage', :now, :now, :now)"),
    ("INSERT INTO trace_events (id, case_id, kind, body, detail, actor, created_at) "
     "VALUES (1, 1, 'follow_up', :follow_up, '{}', 'reporter', :now)"),
    ("INSERT INTO trace_events (id, case_id, kind, body, detail, actor, created_at) "
     "VALUES (2, 1, 'received', NULL, '{}', 'reporter', :now)"),
    ("INSERT INTO outbox (id, channel, recipient, payload, case_id, status, attempts, next_attempt_at, created_at) "
     "VALUES (1, 'telegram', :chat, :payload, 1, 'pending', 0, :now, :now)"),
    "INSERT INTO status_guesses (id, channel, user_ref, created_at) VALUES (1, 'telegram', :chat, :now)",
    ("INSERT INTO processed_updates (channel, update_key, processed_at) "
     "VALUES ('wechat', :event_key, :now)"),
]


async def _insert_legacy(url: str) -> None:
    engine = create_engine(url, make_test_keyring())
    values = {"chat": CHAT_ID, "now": datetime.now(UTC), "description": DESCRIPTION, "name": NAME, "phone": PHONE,
              "follow_up": FOLLOW_UP, "true": True, "false": False,
              "draft": json.dumps({"step": "summary", "description": DRAFT_TEXT, "name": DRAFT_NAME,
                                   "phone": DRAFT_PHONE, "anonymous": False}, ensure_ascii=False),
              "payload": json.dumps({"text": f"请核对：{DESCRIPTION}", "choices": []}, ensure_ascii=False),
              "event_key": f"{CHAT_ID}:1732000000:subscribe:"}
    try:
        async with engine.begin() as connection:
            for statement in LEGACY_ROWS:
                names = [name for name in values if f":{name}" in statement]
                await connection.execute(text(statement), {name: values[name] for name in names})
            if connection.dialect.name == "postgresql":  # rows with explicit ids: move the sequences on
                for table_name in ("conversations", "cases", "trace_events", "outbox", "status_guesses"):
                    await connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), "
                                                  f"(SELECT MAX(id) FROM {table_name}))"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def legacy_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database created at revision 0002, before encryption."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}"
        upgrade(url, make_test_keyring(), "0002")
        yield url
        return
    admin = request.getfixturevalue("postgres_server")
    name, url = create_postgres_database(admin)
    try:
        upgrade(url, make_test_keyring(), "0002")
        yield url
    finally:
        drop_postgres_database(admin, name)


async def test_migration_encrypts_a_deployed_database_in_place(legacy_database_url: str) -> None:
    database_url = legacy_database_url
    await _insert_legacy(database_url)
    assert leaks(await raw_dump(database_url), (DESCRIPTION,)) != []
    await asyncio.to_thread(upgrade, database_url, make_test_keyring())
    rows = await raw_dump(database_url)
    assert leaks(rows, SECRETS) == []
    engine = create_engine(database_url, make_test_keyring())
    sessionmaker = create_sessionmaker(engine)
    try:
        status = await key_status(engine)
        assert PLAINTEXT not in {key for counts in status.values() for key in counts}
        since = datetime.now(UTC) - timedelta(days=1)
        async with sessionmaker.begin() as session:
            conversation = await actions.load_conversation(session, "telegram", CHAT_ID)
            assert conversation.id == 1 and conversation.state == "summary"
            assert conversation.draft["description"] == DRAFT_TEXT and conversation.draft["phone"] == DRAFT_PHONE
            case = await actions.get_case(session, 1)
            assert case is not None
            assert (case.description, case.reporter_name, case.reporter_phone, case.reporter_ref) == (
                DESCRIPTION, NAME, PHONE, CHAT_ID)
            assert [e.body for e in case.trace] == [FOLLOW_UP, None]
            assert await actions.count_recent_reports(session, "telegram", CHAT_ID, since) == 1
            assert (await actions.recent_wrong_codes(session, "telegram", CHAT_ID, since))[0] == 1
            assert not await actions.claim_update(session, "wechat", f"{CHAT_ID}:1732000000:subscribe:")
            message = (await session.execute(select(OutboxMessage))).scalar_one()
            assert (message.recipient, message.payload["text"]) == (CHAT_ID, f"请核对：{DESCRIPTION}")
            erased = await actions.get_case(session, 2)
            assert erased is not None and erased.reporter_key == "erased"
            # the retention job does not erase it again
            assert await housekeeping.erase_old_contacts(session, datetime.now(UTC) + timedelta(days=1)) == 0
            # a new conversation next to the converted ones
            newcomer = await actions.load_conversation(session, "telegram", "someone-new")
            assert newcomer.id not in (1, 2)
    finally:
        await engine.dispose()


async def test_migration_downgrade_restores_plaintext(legacy_database_url: str) -> None:
    database_url = legacy_database_url
    await _insert_legacy(database_url)
    await asyncio.to_thread(upgrade, database_url, make_test_keyring())
    from alembic import command

    from storage.migrate import alembic_config

    await asyncio.to_thread(command.downgrade, alembic_config(database_url, make_test_keyring()), "0002")
    rows = await raw_dump(database_url)
    cases = {row["id"]: row for table_name, row in rows if table_name == "cases"}
    assert (cases[1]["description"], cases[1]["reporter_name"], cases[1]["reporter_ref"]) == (DESCRIPTION, NAME,
                                                                                              CHAT_ID)
    conversations = {row["id"]: row for table_name, row in rows if table_name == "conversations"}
    draft = conversations[1]["draft"]
    assert (json.loads(draft) if isinstance(draft, str) else draft)["description"] == DRAFT_TEXT
    await asyncio.to_thread(upgrade, database_url, make_test_keyring())  # and up again
    assert leaks(await raw_dump(database_url), SECRETS) == []


# --- backups ---------------------------------------------------------------------------------------


def _archive_text(path: Path) -> str:
    with tarfile.open(path) as archive:
        return "".join(archive.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
                       for member in archive.getmembers() if member.name.startswith("tables/"))


async def test_a_backup_stays_encrypted_and_restores_with_the_same_keys(database_url: str, sessionmaker: Any,
                                                                        tmp_path: Path) -> None:
    await _seed(sessionmaker, 2)
    before = await _read_everything(sessionmaker)
    archive = tmp_path / "backup.tar.gz"
    await asyncio.to_thread(create_backup, database_url, tmp_path / "data", archive)
    assert leaks([("archive", {"text": _archive_text(archive)})], (DESCRIPTION, NAME, PHONE, "chat-1", DRAFT_TEXT)) \
        == []
    target = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
    await asyncio.to_thread(restore_backup, target, tmp_path / "restored-data", archive, make_test_keyring())
    restored = create_engine(target, make_test_keyring())
    try:
        assert await _read_everything(create_sessionmaker(restored)) == before
        async with create_sessionmaker(restored).begin() as session:  # lookups by pseudonym still find them
            conversation = await actions.load_conversation(session, "telegram", "chat-1")
            assert conversation.draft == {"description": f"{DRAFT_TEXT} #1"}
    finally:
        await restored.dispose()
    other_keys = create_engine(target, ring(generate_key()))  # other keys: nothing readable
    try:
        with pytest.raises(DecryptionError):
            await _read_everything(create_sessionmaker(other_keys))
    finally:
        await other_keys.dispose()


async def test_a_backup_from_before_encryption_is_encrypted_when_restored(legacy_database_url: str,
                                                                          tmp_path: Path) -> None:
    await _insert_legacy(legacy_database_url)
    archive = tmp_path / "legacy.tar.gz"
    summary = await asyncio.to_thread(create_backup, legacy_database_url, tmp_path / "data", archive)
    assert summary.revision == "0002" and DESCRIPTION in _archive_text(archive)
    target = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
    await asyncio.to_thread(restore_backup, target, tmp_path / "restored-data", archive, make_test_keyring())
    assert leaks(await raw_dump(target), SECRETS) == []
    engine = create_engine(target, make_test_keyring())
    try:
        async with create_sessionmaker(engine).begin() as session:
            conversation = await actions.load_conversation(session, "telegram", CHAT_ID)
            assert conversation.id == 1 and conversation.draft["name"] == DRAFT_NAME
            case = await actions.get_case(session, 1)
            assert case is not None and (case.description, case.reporter_phone) == (DESCRIPTION, PHONE)
    finally:
        await engine.dispose()
