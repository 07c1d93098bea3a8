"""Housekeeping: drafts nobody came back to are deleted with their evidence files; the daily digest."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.jobs import BackgroundJobs, housekeeping_once, send_digests
from console.stats import digest_message
from handlers.city import Limits, load_city_config
from handlers.routing import warning_horizon
from storage import actions, digests, evidence_rows, housekeeping
from storage.models import Attachment, Conversation, utcnow
from tests.factories import file_case
from tests.storage.test_statistics import NOW, make_case, seed


async def _draft(sessionmaker: Any, evidence_dir: Path, user: str, age: timedelta) -> tuple[int, Path]:
    stored = f"2026/11/{user}.jpg"
    (evidence_dir / stored).parent.mkdir(parents=True, exist_ok=True)
    (evidence_dir / stored).write_bytes(b"\xff\xd8\xff")
    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", user)
        attachment = await evidence_rows.add_draft_attachment(
            session, conversation, stored_name=stored, original_name=None, media_type="image/jpeg",
            size_bytes=3, sha256="0" * 64)
        conversation.state = "evidence"
        conversation.draft = {"step": "evidence", "attachments": [attachment.id], "place": "某单位"}
        conversation.draft_updated_at = utcnow() - age
        await actions.finish_step(session, conversation)
    return conversation.id, evidence_dir / stored


async def test_expired_drafts_and_their_files_are_deleted(sessionmaker: Any, tmp_path: Path) -> None:
    old_id, old_file = await _draft(sessionmaker, tmp_path, "old", timedelta(days=8))
    fresh_id, fresh_file = await _draft(sessionmaker, tmp_path, "fresh", timedelta(days=6))
    await housekeeping_once(sessionmaker, tmp_path, Limits(draft_with_files_ttl_hours=7 * 24))
    async with sessionmaker() as session:
        old = await session.get(Conversation, old_id)
        fresh = await session.get(Conversation, fresh_id)
        attachments = [a.stored_name for a in (await session.execute(Attachment.__table__.select())).all()]
    assert old is not None and (old.draft, old.state, old.draft_updated_at) == ({}, "idle", None)
    assert not old_file.exists()
    assert fresh is not None and fresh.draft["place"] == "某单位" and fresh_file.exists()
    assert attachments == ["2026/11/fresh.jpg"]


async def test_abandoned_drafts_holding_files_go_sooner_than_plain_drafts(sessionmaker: Any, tmp_path: Path) -> None:
    with_files_id, files = await _draft(sessionmaker, tmp_path, "with-files", timedelta(hours=25))
    recent_id, recent_files = await _draft(sessionmaker, tmp_path, "recent-files", timedelta(hours=23))
    async with sessionmaker.begin() as session:
        plain = await actions.load_conversation(session, "telegram", "plain")
        plain.state, plain.draft = "place", {"step": "place", "attachments": []}
        plain.draft_updated_at = utcnow() - timedelta(days=3)
        await actions.finish_step(session, plain)
    await housekeeping_once(sessionmaker, tmp_path, Limits())  # files: 24 hours; plain drafts: 7 days
    async with sessionmaker() as session:
        drafts = {c.id: c.draft for c in (await session.execute(Conversation.__table__.select())).all()}
    assert drafts[with_files_id] == {} and not files.exists()
    assert drafts[recent_id]["place"] == "某单位" and recent_files.exists()
    assert drafts[plain.id] == {"step": "place", "attachments": []}


async def test_contact_details_are_erased_after_the_retention_period(sessionmaker: Any, tmp_path: Path) -> None:
    from sqlalchemy import select, update

    from storage.models import AuditEntry, Case, CaseStatus, OutboxMessage

    async with sessionmaker.begin() as session:
        cases = []
        for reporter in ("old", "recent", "open"):
            case, _ = await file_case(
                session, secret_key=b"k" * 32, case_number_prefix="QL", year=2026, channel="telegram",
                reporter_ref=reporter, locale="zh", district=None, place="某处", occurred="今天",
                description="窗口人员态度恶劣，拒不办理。", anonymous=False, reporter_name="张三",
                reporter_phone="13812345678", attachment_ids=[], queue="triage", label=None)
            cases.append(case)
        for case, age in zip(cases[:2], (400, 30), strict=True):
            await actions.reply_to_reporter(session, case, "已办结。", actor="staff:1")
            case.status = CaseStatus.CLOSED
            case.closed_at = utcnow() - timedelta(days=age)
        await session.execute(update(OutboxMessage).values(status="sent"))
    await housekeeping_once(sessionmaker, tmp_path, Limits(contact_retention_days=365))
    await housekeeping_once(sessionmaker, tmp_path, Limits(contact_retention_days=365))  # nothing more to erase
    async with sessionmaker() as session:
        rows = {c.id: c for c in (await session.execute(Case.__table__.select())).all()}
        audits = list((await session.execute(AuditEntry.__table__.select())).all())
        recipients = {m.case_id: m.recipient for m in (await session.execute(select(OutboxMessage))).scalars()}
    old, recent, still_open = (rows[c.id] for c in cases)
    assert (old.reporter_name, old.reporter_phone, old.reporter_ref, old.reporter_key) == (None, None, "erased",
                                                                                          "erased")
    assert recipients == {cases[0].id: "erased", cases[1].id: "recent"}  # also from the delivered messages
    assert (recent.reporter_name, recent.reporter_ref) == ("张三", "recent")
    assert (still_open.reporter_phone, still_open.reporter_ref) == ("13812345678", "open")
    assert [(a.action, a.case_id) for a in audits] == [("retention.erase_contact", cases[0].id)]


async def test_send_digests_enqueues_one_message_per_staff_channel(sessionmaker: Any) -> None:
    from sqlalchemy import select

    from storage.models import OutboxMessage

    city = load_city_config(None)
    await seed(sessionmaker)
    queues = [queue.model_copy(update={"telegram_chat_id": -100123}) if queue.code == "clean_medical"
              else queue.model_copy(update={"wecom_webhook_env": "QINGLIAN_WECOM_HALL"}) if queue.code == "clean_hall"
              else queue for queue in city.queues]
    configured = city.model_copy(update={"queues": queues})
    horizon = warning_horizon(configured, NOW)  # Thu 12 Mar 2026: the end of Mon 16 Mar
    async with sessionmaker.begin() as session:
        due_monday = await make_case(session, queue="clean_medical", label="medical", district="yuelu",
                                     created=NOW - timedelta(days=20), accept_due=horizon,
                                     resolve_due=NOW + timedelta(days=40))
    assert await send_digests(sessionmaker, configured, NOW) == 2
    async with sessionmaker() as session:
        sent = {(m.channel, m.recipient): m.payload for m in (await session.execute(select(OutboxMessage))).scalars()
                if "notice" not in m.payload}
        expected_medical = digest_message(configured, await digests.digest_facts(session, "clean_medical", NOW,
                                                                                  soon_until=horizon))
        expected_hall = digest_message(configured, await digests.digest_facts(session, "clean_hall", NOW,
                                                                               soon_until=horizon))
    assert sent == {("telegram", "-100123"): {"text": expected_medical},
                    ("wecom", "clean_hall"): {"text": expected_hall}}
    assert f"2 个工作日内到期：1 件\n· {due_monday.case_number}　受理期限 2026-03-16" in expected_medical


async def test_staff_are_warned_a_working_day_before_a_breach_and_overdue_cases_go_to_the_supervisor(
        sessionmaker: Any) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select

    from bot.jobs import deadlines_once
    from handlers.routing import add_working_days, due_dates
    from storage.models import AuditEntry, OutboxMessage

    city = load_city_config(None)
    hall = next(q for q in city.queues if q.code == "clean_hall").model_copy(update={"telegram_chat_id": -100777})
    city = city.model_copy(update={
        "queues": [hall if q.code == "clean_hall" else q for q in city.queues],
        "loop": city.loop.model_copy(update={"warn_working_days": 1})})
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # a Tuesday, 17:00 in Changsha
    # A real accept-by date, as routing gives it (the end of a working day, 23:59:59 local): the case routed
    # the day whose deadline is Wednesday — one working day away.
    routed_at = next(now - timedelta(days=back) for back in range(60)
                     if due_dates(city, "clean_hall", now - timedelta(days=back))[0] == add_working_days(city, now, 1))
    tomorrow, _ = due_dates(city, "clean_hall", routed_at)
    assert tomorrow == datetime(2026, 12, 2, 15, 59, 59, tzinfo=UTC)  # Wednesday 23:59:59 in Changsha
    next_week = datetime(2026, 12, 8, 15, 59, tzinfo=UTC)
    yesterday = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        due_soon, _ = await file_case(session, reporter_ref="1", accept_due_at=tomorrow, resolve_due_at=next_week)
        later, _ = await file_case(session, reporter_ref="2", accept_due_at=next_week, resolve_due_at=next_week)
        overdue, _ = await file_case(session, reporter_ref="3", accept_due_at=yesterday, resolve_due_at=next_week)

    assert await deadlines_once(sessionmaker, city, now) == (1, 1)
    assert await deadlines_once(sessionmaker, city, now + timedelta(hours=2)) == (0, 0)  # each told once
    async with sessionmaker() as session:
        notices = [(m.recipient, m.payload["notice"], m.payload["case_number"])
                   for m in (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()]
        escalations = list((await session.execute(select(AuditEntry.case_id)
                                                   .where(AuditEntry.action == "case.escalated"))).scalars())
    assert notices == [("-100777", "due_soon", due_soon.case_number), ("-100777", "escalation", overdue.case_number)]
    assert escalations == [overdue.id] and later.case_number not in {number for _, _, number in notices}


async def test_a_stop_lets_a_round_in_progress_commit_and_leaves_the_database_free(sessionmaker: Any) -> None:
    """Stopping the service (or `qinglian worker`) while a periodic job is half-way through a transaction: the
    round finishes and commits instead of being cancelled mid-statement — which lost its work and, on SQLite,
    could leave the write lock held so that the next writer failed with "database is locked"."""
    started, rounds = asyncio.Event(), []

    async def round_() -> None:
        async with sessionmaker.begin() as session:
            await housekeeping.claim_scheduled_run(session, "first-half", utcnow())
            started.set()
            await asyncio.sleep(0.3)  # the stop arrives here
            await housekeeping.claim_scheduled_run(session, "second-half", utcnow())
        rounds.append(utcnow())

    jobs = BackgroundJobs()
    jobs.every("half-way", 3600, round_)
    await asyncio.wait_for(started.wait(), 10)
    await jobs.stop(grace=10)

    assert len(rounds) == 1  # finished, and no second round after the stop
    async with sessionmaker.begin() as session:  # the database takes the next writer at once
        since = utcnow() - timedelta(minutes=1)
        assert not await housekeeping.claim_scheduled_run(session, "first-half", since)
        assert not await housekeeping.claim_scheduled_run(session, "second-half", since)


async def _run_rounds(name: str, round_: Callable[[], Awaitable[None]], calls: list[int], rounds: int) -> None:
    """`round_` as a background job every 10 ms until it has been called `rounds` times (five seconds at most)."""
    jobs = BackgroundJobs()
    jobs.every(name, 0.01, round_)
    for _ in range(500):
        if len(calls) >= rounds:
            break
        await asyncio.sleep(0.01)
    await jobs.stop()


async def test_a_failed_round_is_logged_and_the_job_runs_again(caplog: Any) -> None:
    calls: list[int] = []

    async def round_() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the database went away")

    await _run_rounds("flaky", round_, calls, 3)
    assert len(calls) >= 3
    assert "background job flaky failed" in caplog.text


async def test_rounds_failing_on_a_full_disk_are_one_line_not_a_traceback_each(caplog: Any) -> None:
    """Seen with the database's disk full: every job logged its traceback every round (the metrics every 15 s)."""
    calls: list[int] = []

    async def round_() -> None:
        calls.append(len(calls))
        if len(calls) <= 3:
            raise OSError(errno.ENOSPC, "No space left on device", "/srv/qinglian/evidence/2026/12/a1b2.bin")

    await _run_rounds("cleanup", round_, calls, 5)
    assert [(record.levelname, record.getMessage(), record.exc_info) for record in caplog.records] == [
        ("ERROR", "background job cleanup: /srv/qinglian/evidence/2026/12/a1b2.bin cannot be written (No space left "
                  "on device): free space in the data directory; it tries again every 0 s", None),
        ("WARNING", "background job cleanup: the disk has room again", None)]


async def test_cases_told_of_their_deadline_before_never_hide_newer_ones(sessionmaker: Any) -> None:
    """A backlog of overdue cases escalated long ago must not keep newer overdue cases from being escalated:
    the deadline round looks past every case already told of its deadline, a batch at a time."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from bot.jobs import deadlines_once
    from storage.models import AuditEntry

    city = load_city_config(None)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    yesterday = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)
    async with sessionmaker.begin() as session:
        for number in range(5):
            await file_case(session, reporter_ref=f"backlog-{number}", accept_due_at=yesterday,
                            resolve_due_at=yesterday + timedelta(days=60))
    assert await deadlines_once(sessionmaker, city, now, batch=2) == (0, 5)  # three batches in one round
    assert await deadlines_once(sessionmaker, city, now + timedelta(minutes=10), batch=2) == (0, 0)

    async with sessionmaker.begin() as session:
        newest, _ = await file_case(session, reporter_ref="new", accept_due_at=yesterday,
                                    resolve_due_at=yesterday + timedelta(days=60))
    assert await deadlines_once(sessionmaker, city, now + timedelta(minutes=20), batch=2) == (0, 1)
    async with sessionmaker() as session:
        escalated = await session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "case.escalated", AuditEntry.case_id == newest.id))
    assert escalated == 1


async def test_delivered_messages_are_pruned_after_the_configured_retention(sessionmaker: Any, tmp_path: Path) -> None:
    from sqlalchemy import select, update

    from storage.models import OutboxMessage

    async with sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", "resident")
        ids = await actions.finish_step(session, conversation, [{"text": f"回复 {n}", "choices": []} for n in range(3)])
        for message_id, hours in zip(ids, (30, 5), strict=False):  # delivered 30 and 5 hours ago
            await session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id)
                                  .values(status="sent", sent_at=utcnow() - timedelta(hours=hours)))

    async def left() -> list[int]:
        async with sessionmaker() as session:
            return sorted((await session.execute(select(OutboxMessage.id))).scalars())

    await housekeeping_once(sessionmaker, tmp_path, Limits(outbox_retention_hours=24))
    assert await left() == ids[1:]  # older than a day: gone; the pending reply stays whatever its age
    await housekeeping_once(sessionmaker, tmp_path, Limits(outbox_retention_hours=4))
    assert await left() == ids[2:]
